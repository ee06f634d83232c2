//! The shape of input rows, shared by every reader (CSV, spreadsheets, JSON Lines) and by the
//! stages after them: a [`SourceRow`] as read, the [`RowScan`] of its bytes, the [`InputLimits`]
//! that bound memory whatever a file holds, and the [`InputError`] that stops a file as a whole.
//!
//! Kept apart from the dispatcher (`input`) so that the readers it dispatches to, and the
//! settings, can name these types without depending on the dispatcher.

use std::io;
use std::path::PathBuf;

use csv::ByteRecord;

use crate::ledger::StoredRow;

/// One data row as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRow {
    /// 1-based data-row number (the header is not counted): the report's `RowNumber`.
    pub number: u64,
    /// 1-based line of the file where the row starts, for messages a person can find.
    pub line: u64,
    /// The fields as read.
    pub record: ByteRecord,
}

impl SourceRow {
    /// A row the ledger recorded, as the input held it (number, line, fields): the one way a
    /// recorded row goes back to the stages that read input rows (validation, the report).
    pub(crate) fn of(row: &StoredRow) -> SourceRow {
        SourceRow {
            number: row.number,
            line: row.line,
            record: row.record.clone(),
        }
    }
}

impl From<StoredRow> for SourceRow {
    /// [`SourceRow::of`], without copying the fields.
    fn from(row: StoredRow) -> SourceRow {
        SourceRow {
            number: row.number,
            line: row.line,
            record: row.record,
        }
    }
}

/// What one pass over all of a row's bytes found, so that later stages need not look at each
/// cell for it: whether the row is plain ASCII, holds a NUL byte, and holds a byte that CSV must
/// quote (comma, quote, CR or LF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowScan {
    pub ascii: bool,
    pub nul: bool,
    pub needs_quotes: bool,
}

impl RowScan {
    /// What a row is assumed to be when it was not scanned: anything.
    pub(crate) const UNKNOWN: RowScan = RowScan {
        ascii: false,
        nul: true,
        needs_quotes: true,
    };

    /// Scans the row's bytes, eight at a time.
    pub(crate) fn of(record: &ByteRecord) -> RowScan {
        RowScan::of_bytes(record.as_slice())
    }

    /// The scan of any bytes (one cell, a whole row).
    pub(crate) fn of_bytes(bytes: &[u8]) -> RowScan {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // Hacker's Delight's zero-byte test: a high bit survives where a byte of `word` is 0.
        let zero_in = |word: u64| word.wrapping_sub(ONES) & !word & HIGH != 0;
        let with = |word: u64, byte: u8| zero_in(word ^ (ONES * u64::from(byte)));
        let mut high = 0u64;
        let mut nul = false;
        let mut quote = false;
        let mut take = |word: u64| {
            high |= word & HIGH;
            nul |= zero_in(word);
            quote |= with(word, b',') | with(word, b'"') | with(word, b'\n') | with(word, b'\r');
        };
        let word_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        if bytes.len() >= 8 {
            for at in (0..bytes.len() - 7).step_by(8) {
                take(word_at(at));
            }
            // The last word overlaps the one before it rather than being padded.
            take(word_at(bytes.len() - 8));
        } else {
            // Padded with `a`, which is none of the bytes looked for.
            let word = bytes
                .iter()
                .rev()
                .fold(ONES * u64::from(b'a'), |word, byte| {
                    (word << 8) | u64::from(*byte)
                });
            take(word);
        }
        RowScan {
            ascii: high == 0,
            nul,
            needs_quotes: quote,
        }
    }

    /// Only whether the row is ASCII and holds a NUL: half the work of [`RowScan::of`], for a
    /// row that will not be quoted cell by cell (`needs_quotes` is taken to be true).
    pub(crate) fn text_of(record: &ByteRecord) -> RowScan {
        let bytes = record.as_slice();
        RowScan {
            ascii: bytes.is_ascii(),
            nul: memchr::memchr(0, bytes).is_some(),
            needs_quotes: true,
        }
    }

    /// Every cell of the row is text (UTF-8 without NUL) without looking at each.
    pub(crate) fn all_text(&self) -> bool {
        self.ascii && !self.nul
    }
}

/// Ceilings that keep memory bounded whatever a file holds. The defaults are far above what a
/// spreadsheet writes (Excel: 32,767 characters a cell, 16,384 columns; Google Sheets: 50,000
/// characters, 18,278 columns), so only a broken or hostile file meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Largest cell in bytes; a larger one makes its row invalid (the row is still delimited).
    pub max_cell_bytes: usize,
    /// Largest row in bytes as written in the file. Past it the file stops with an error naming
    /// the row's line, before the row is all in memory: where such a row ends cannot be trusted
    /// (a quote that is never closed is the usual cause).
    pub max_row_bytes: usize,
    /// Most columns the header may have.
    pub max_columns: usize,
}

impl InputLimits {
    /// A header of `columns` columns (at `line` of `path`) within `max_columns`.
    pub(crate) fn check_header(
        &self,
        path: &std::path::Path,
        line: u64,
        columns: usize,
    ) -> Result<(), InputError> {
        if columns > self.max_columns {
            return Err(InputError::TooManyColumns {
                path: path.to_path_buf(),
                line,
                columns,
                limit: self.max_columns,
            });
        }
        Ok(())
    }
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_cell_bytes: 1 << 20,
            max_row_bytes: 4 << 20,
            max_columns: 20_000,
        }
    }
}

/// A problem with the file as a whole.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: the file is empty; expected a header row first")]
    Empty { path: PathBuf },
    #[error("{path}: cannot read line {line}: {message}")]
    Read {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error(
        "{path}: the row starting at line {line} is longer than {limit} bytes (the limit, \
         [input] max_row_bytes); a quote that is never closed is the usual cause"
    )]
    RowTooLong {
        path: PathBuf,
        line: u64,
        limit: usize,
    },
    #[error(
        "{path}: a quote opened in the row starting at line {line} is never closed, so every \
         line after it would be read as part of one cell"
    )]
    UnclosedQuote { path: PathBuf, line: u64 },
    #[error(
        "{path}: line {line}: the header has {columns} columns, more than the limit of {limit} \
         ([input] max_columns)"
    )]
    TooManyColumns {
        path: PathBuf,
        line: u64,
        columns: usize,
        limit: usize,
    },
    #[error(
        "{path}: line {line}: the header holds NUL bytes; the file is probably UTF-16 \
         (Excel's \"Unicode Text\"): save it as \"CSV UTF-8\""
    )]
    NotUtf8Csv { path: PathBuf, line: u64 },
    #[error("{path}: {message}")]
    Sheet { path: PathBuf, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// One pass over a row finds what looking at each byte finds.
        #[test]
        fn a_row_scan_finds_what_each_byte_says(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"ab ,\"\r\n\x00\x7F\x80\xE9\xFF".to_vec()), 0..40),
        ) {
            let record = ByteRecord::from(vec![bytes.clone()]);
            let full = RowScan::of(&record);
            let naive = RowScan {
                ascii: bytes.is_ascii(),
                nul: bytes.contains(&0),
                needs_quotes: bytes.iter().any(|b| b",\"\r\n".contains(b)),
            };
            proptest::prop_assert_eq!(full, naive);
            let text = RowScan::text_of(&record);
            proptest::prop_assert_eq!((text.ascii, text.nul, text.all_text()),
                (naive.ascii, naive.nul, naive.ascii && !naive.nul));
        }
    }
}
