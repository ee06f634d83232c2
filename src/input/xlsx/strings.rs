//! The shared-strings table of an `.xlsx` (`sharedStrings.xml`), kept in bounded memory: text
//! cells point into it by index, so it must be at hand before the first row, and a sheet of
//! unique notes makes it as large as the text of the sheet (about 50 MB at Excel's row limit).
//!
//! Strings go in once, in table order ([`StringTable::push`]); the first [`IN_MEMORY`] bytes of
//! them stay in memory and the rest go to an unnamed temporary file that the system deletes when
//! it is closed. Cells come out by index ([`StringTable::get`]). Spreadsheet programs add strings
//! to the table in the order the sheet first uses them, so the strings a sheet repeats (owners,
//! regions, codes) are near the start, in memory, and the ones past it are asked for in file
//! order: one read-ahead window serves them with few reads.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

/// Bytes of strings held in memory before the rest goes to disk.
pub(crate) const IN_MEMORY: usize = 16 << 20;

/// Bytes read from the temporary file at a time.
const WINDOW: usize = 256 * 1024;

/// Why a shared string could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StringsError {
    #[error("the shared-strings table could not be kept in a temporary file: {0}")]
    Spill(#[from] std::io::Error),
    #[error("a cell refers to shared string {index}, but the table holds {len}")]
    Missing { index: usize, len: usize },
    #[error("shared string {0} is not valid UTF-8 where it was kept")]
    NotText(usize),
}

/// The table: see the module comment.
pub(crate) struct StringTable {
    /// Where each string starts in the table's bytes, and where the last one ends: string `i` is
    /// `starts[i]..starts[i + 1]`.
    starts: Vec<u64>,
    /// The table's bytes up to the budget (whole strings only).
    head: Vec<u8>,
    /// Bytes the head may hold.
    budget: usize,
    /// Where the bytes past the head went, once they did.
    spill: Option<Spill>,
}

/// The part of the table on disk.
struct Spill {
    /// Table offset of the file's first byte.
    from: u64,
    /// Written through a buffer while the table is read, then read back.
    file: SpillFile,
    /// Bytes of the file held for reading, and the table offset of the first.
    window: Vec<u8>,
    window_at: u64,
}

enum SpillFile {
    Writing(BufWriter<File>),
    Reading(File),
}

impl StringTable {
    /// An empty table that keeps up to `budget` bytes in memory.
    pub(crate) fn new(budget: usize) -> StringTable {
        StringTable {
            starts: vec![0],
            head: Vec::new(),
            budget,
            spill: None,
        }
    }

    /// Strings in the table.
    pub(crate) fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// Adds the next string of the table.
    pub(crate) fn push(&mut self, text: &str) -> Result<(), StringsError> {
        let end = self.starts[self.starts.len() - 1] + text.len() as u64;
        if self.spill.is_none() && self.head.len() + text.len() <= self.budget {
            self.head.extend_from_slice(text.as_bytes());
        } else {
            if self.spill.is_none() {
                self.spill = Some(Spill {
                    from: self.head.len() as u64,
                    file: SpillFile::Writing(BufWriter::with_capacity(
                        WINDOW,
                        tempfile::tempfile()?,
                    )),
                    window: Vec::new(),
                    window_at: 0,
                });
            }
            if let Some(Spill {
                file: SpillFile::Writing(out),
                ..
            }) = &mut self.spill
            {
                out.write_all(text.as_bytes())?;
            }
        }
        self.starts.push(end);
        Ok(())
    }

    /// Ends adding: what was written to disk is flushed and read from then on.
    pub(crate) fn finish(&mut self) -> Result<(), StringsError> {
        if let Some(spill) = &mut self.spill
            && let SpillFile::Writing(out) = &mut spill.file
        {
            out.flush()?;
            let file = out.get_ref().try_clone()?;
            spill.file = SpillFile::Reading(file);
        }
        self.starts.shrink_to_fit();
        self.head.shrink_to_fit();
        Ok(())
    }

    /// String `index` of the table.
    pub(crate) fn get(&mut self, index: usize) -> Result<&str, StringsError> {
        let (Some(&start), Some(&end)) = (self.starts.get(index), self.starts.get(index + 1))
        else {
            return Err(StringsError::Missing {
                index,
                len: self.len(),
            });
        };
        let bytes = match &mut self.spill {
            Some(spill) if end > spill.from => spill.read(start, end)?,
            _ => &self.head[start as usize..end as usize],
        };
        std::str::from_utf8(bytes).map_err(|_| StringsError::NotText(index))
    }
}

impl Spill {
    /// Table bytes `start..end`, all past `from`: from the window, refilled from `start` when
    /// they are not in it (a string longer than the window gets a window of its own size).
    fn read(&mut self, start: u64, end: u64) -> Result<&[u8], StringsError> {
        let in_window = start >= self.window_at && end <= self.window_at + self.window.len() as u64;
        if !in_window {
            let SpillFile::Reading(file) = &mut self.file else {
                return Err(StringsError::Spill(std::io::Error::other(
                    "the table was read before it was finished",
                )));
            };
            let want = usize::try_from(end - start)
                .unwrap_or(usize::MAX)
                .max(WINDOW);
            file.seek(SeekFrom::Start(start - self.from))?;
            self.window.clear();
            file.take(want as u64).read_to_end(&mut self.window)?;
            self.window_at = start;
            if self.window.len() < (end - start) as usize {
                return Err(StringsError::Spill(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the temporary file is shorter than what was written to it",
                )));
            }
        }
        let from = (start - self.window_at) as usize;
        Ok(&self.window[from..from + (end - start) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_come_back_by_index_from_memory_and_from_disk() {
        // A budget of 10 bytes: "alpha" and "beta" stay in memory, the rest go to disk.
        let mut table = StringTable::new(10);
        let strings = ["alpha", "beta", "", "gamma ray", "δέλτα", "epsilon"];
        for s in strings {
            table.push(s).unwrap();
        }
        table.finish().unwrap();
        assert!(table.spill.is_some());
        assert_eq!(table.len(), strings.len());
        // Out of order, and back again: the window is refilled as needed.
        for i in [5, 0, 3, 4, 1, 2, 5, 3] {
            assert_eq!(table.get(i).unwrap(), strings[i]);
        }
        let err = table.get(6).unwrap_err().to_string();
        assert!(err.contains("string 6") && err.contains("holds 6"), "{err}");
    }

    #[test]
    fn a_string_longer_than_the_window_is_read_whole() {
        let mut table = StringTable::new(0);
        let long = "x".repeat(WINDOW * 2 + 3);
        table.push("short").unwrap();
        table.push(&long).unwrap();
        table.push("after").unwrap();
        table.finish().unwrap();
        assert_eq!(table.get(1).unwrap(), long);
        assert_eq!(table.get(0).unwrap(), "short");
        assert_eq!(table.get(2).unwrap(), "after");
    }

    #[test]
    fn a_small_table_stays_in_memory() {
        let mut table = StringTable::new(IN_MEMORY);
        table.push("one").unwrap();
        table.finish().unwrap();
        assert!(table.spill.is_none());
        assert_eq!(table.get(0).unwrap(), "one");
    }
}
