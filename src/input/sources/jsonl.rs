//! JSON Lines input (`.jsonl`, `.ndjson`, or `--format jsonl`): one JSON object per line, its
//! keys the column names, into the same [`SourceRow`]s as a CSV file, so validation, the
//! ledger, resume and the report work unchanged.
//!
//! A file enters and is read twice: the first pass checks every line and collects the header
//! (every key seen, in the order first seen, so a key that only later objects carry still gets
//! a column); the second yields rows with the cells in header order, a missing key as an empty
//! cell. Only the set of keys is held in memory, never the file. Values: a string as written, a
//! whole number as written (`201`), a fraction in its shortest form (`201.0` stays `201.0`, which
//! validation refuses as an activity code, as it does in CSV), `true`/`false`, `null` as empty.
//! A line that is not a JSON object, or a value that is an array or an object, stops the file
//! with an [`InputError`] naming the file, the line and the column, before anything is sent.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use csv::ByteRecord;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::input::rows::{InputError, InputLimits, SourceRow};

/// File name endings read as JSON Lines without `--format`.
pub(crate) const JSONL_EXTENSIONS: [&str; 2] = ["jsonl", "ndjson"];

/// Whether `path` is read as JSON Lines, by its extension.
pub(crate) fn is_jsonl(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| JSONL_EXTENSIONS.iter().any(|j| j.eq_ignore_ascii_case(e)))
}

/// An open JSON Lines file, iterated row by row.
pub(crate) struct JsonlSource {
    path: PathBuf,
    lines: Lines,
    headers: ByteRecord,
    /// Column of each key of the header.
    columns: HashMap<String, usize>,
    rows_read: u64,
}

/// Lines of a file with their 1-based numbers, each at most `max_row_bytes` long.
struct Lines {
    reader: BufReader<Box<dyn Read + Send>>,
    line: u64,
    max_row_bytes: usize,
    buffer: Vec<u8>,
}

impl Lines {
    fn new(read: Box<dyn Read + Send>, max_row_bytes: usize) -> Lines {
        Lines {
            reader: BufReader::new(read),
            line: 0,
            max_row_bytes,
            buffer: Vec::new(),
        }
    }

    /// The next line that holds something, without its line break; `None` at the end.
    fn next_line(&mut self, path: &Path) -> Result<Option<(u64, &[u8])>, InputError> {
        loop {
            self.buffer.clear();
            self.line += 1;
            // Two bytes past the limit leave room for a line of exactly the limit and its CRLF,
            // and a line is never read further: memory stays bounded whatever the file holds.
            let limit = self.max_row_bytes as u64 + 2;
            let read = (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut self.buffer)
                .map_err(|e| InputError::Read {
                    path: path.to_path_buf(),
                    line: self.line,
                    message: e.to_string(),
                })?;
            if read == 0 {
                return Ok(None);
            }
            let begin = if self.line == 1 && self.buffer.starts_with(b"\xEF\xBB\xBF") {
                3
            } else {
                0
            };
            let ends = self.buffer.ends_with(b"\n");
            let text = self.buffer[begin..].trim_ascii_end();
            if text.len() > self.max_row_bytes || (!ends && read as u64 == limit) {
                return Err(InputError::RowTooLong {
                    path: path.to_path_buf(),
                    line: self.line,
                    limit: self.max_row_bytes,
                });
            }
            if text.trim_ascii_start().is_empty() {
                continue;
            }
            let end = begin + text.len();
            return Ok(Some((self.line, &self.buffer[begin..end])));
        }
    }
}

/// One line's object: its keys and cells, in the order written.
struct Object(Vec<(String, Cell)>);

/// One value, as a cell's text, or what kind of value cannot be one.
enum Cell {
    Text(String),
    Nested(&'static str),
}

impl<'de> serde::Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Object, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object ({\"column\": value, ...})")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
                let mut pairs = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    pairs.push((key, map.next_value::<Cell>()?));
                }
                Ok(Object(pairs))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

impl<'de> serde::Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Cell, D::Error> {
        struct CellVisitor;
        impl<'de> Visitor<'de> for CellVisitor {
            type Value = Cell;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell, E> {
                Ok(Cell::Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Cell, E> {
                Ok(Cell::Text(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell, E> {
                Ok(Cell::Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell, E> {
                Ok(Cell::Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell, E> {
                // Debug keeps the `.0` of `201.0`: a fraction stays visibly a fraction, and
                // validation refuses it where a whole number is needed, as it does in CSV.
                Ok(Cell::Text(format!("{v:?}")))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cell, E> {
                Ok(Cell::Text(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Cell, E> {
                Ok(Cell::Text(String::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Cell, E> {
                Ok(Cell::Text(String::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Cell::Nested("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Cell::Nested("an object"))
            }
        }
        deserializer.deserialize_any(CellVisitor)
    }
}

/// Parses one line into its object, or the reason it is not one (naming the column where a
/// value is the problem).
fn parse_line(path: &Path, line: u64, text: &[u8]) -> Result<Object, InputError> {
    let bad = |message: String| InputError::Read {
        path: path.to_path_buf(),
        line,
        message,
    };
    let object: Object = serde_json::from_slice(text).map_err(|e| {
        // serde_json places the error at "line 1 column N" of the one line it was given; the
        // file's line is already in the message, so only the column is worth keeping.
        let text = e.to_string();
        let message = text.split(" at line ").next().unwrap_or(&text);
        bad(format!(
            "not a JSON object: {message} (at character {})",
            e.column()
        ))
    })?;
    let mut seen = std::collections::HashSet::new();
    for (key, cell) in &object.0 {
        if let Cell::Nested(kind) = cell {
            return Err(bad(format!(
                "column {key:?}: the value is {kind}; a cell holds a string, number, boolean or null"
            )));
        }
        if !seen.insert(key.as_str()) {
            return Err(bad(format!("column {key:?} appears twice in the object")));
        }
    }
    Ok(object)
}

impl JsonlSource {
    /// Opens `path`, checks every line and collects the header.
    pub(crate) fn open(path: &Path, limits: InputLimits) -> Result<JsonlSource, InputError> {
        let open = || {
            File::open(path)
                .map(|f| Box::new(f) as Box<dyn Read + Send>)
                .map_err(|source| InputError::Open {
                    path: path.to_path_buf(),
                    source,
                })
        };
        let mut first = Lines::new(open()?, limits.max_row_bytes);
        let mut headers = ByteRecord::new();
        let mut columns = HashMap::new();
        while let Some((line, text)) = first.next_line(path)? {
            for (key, _) in parse_line(path, line, text)?.0 {
                if !columns.contains_key(&key) {
                    if columns.len() == limits.max_columns {
                        return Err(InputError::TooManyColumns {
                            path: path.to_path_buf(),
                            line,
                            columns: columns.len() + 1,
                            limit: limits.max_columns,
                        });
                    }
                    headers.push_field(key.as_bytes());
                    columns.insert(key, columns.len());
                }
            }
        }
        if headers.is_empty() {
            return Err(InputError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(JsonlSource {
            path: path.to_path_buf(),
            lines: Lines::new(open()?, limits.max_row_bytes),
            headers,
            columns,
            rows_read: 0,
        })
    }

    /// Every key of the file, in the order first seen.
    pub(crate) fn headers(&self) -> &ByteRecord {
        &self.headers
    }

    fn read(&mut self) -> Result<Option<SourceRow>, InputError> {
        let Some((line, text)) = self.lines.next_line(&self.path)? else {
            return Ok(None);
        };
        let object = parse_line(&self.path, line, text)?;
        let mut cells = vec![String::new(); self.headers.len()];
        for (key, cell) in object.0 {
            // The first pass saw every key; one missing now means the file changed under us.
            let column = self
                .columns
                .get(&key)
                .copied()
                .ok_or_else(|| InputError::Read {
                    path: self.path.clone(),
                    line,
                    message: format!("column {key:?} was not in the file when it was first read"),
                })?;
            if let Cell::Text(text) = cell {
                cells[column] = text;
            }
        }
        self.rows_read += 1;
        Ok(Some(SourceRow {
            number: self.rows_read,
            line,
            record: cells.iter().map(String::as_bytes).collect(),
        }))
    }
}

impl Iterator for JsonlSource {
    type Item = Result<SourceRow, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Result<(tempfile::TempDir, JsonlSource), InputError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, text).expect("write");
        let source = JsonlSource::open(&path, InputLimits::default())?;
        Ok((dir, source))
    }

    fn cells(row: &SourceRow) -> Vec<String> {
        row.record
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    }

    #[test]
    fn keys_become_columns_and_values_cells() {
        let (_dir, mut src) = source(
            "\u{feff}{\"RelatedProspectId\":\"abc\",\"ActivityEvent\":201,\"Score\":1.5}\n\
             \n\
             {\"ActivityEvent\":201.0,\"Flag\":true,\"RelatedProspectId\":null,\"Late\":-7}\r\n",
        )
        .expect("opens");
        let headers: Vec<_> = src.headers().iter().map(|h| h.to_vec()).collect();
        assert_eq!(
            headers,
            [
                &b"RelatedProspectId"[..],
                b"ActivityEvent",
                b"Score",
                b"Flag",
                b"Late"
            ]
        );
        let first = src.next().expect("row").expect("ok");
        assert_eq!((first.number, first.line), (1, 1));
        assert_eq!(cells(&first), ["abc", "201", "1.5", "", ""]);
        let second = src.next().expect("row").expect("ok");
        assert_eq!((second.number, second.line), (2, 3));
        assert_eq!(cells(&second), ["", "201.0", "", "true", "-7"]);
        assert!(src.next().is_none());
    }

    #[test]
    fn bad_lines_name_the_file_line_and_column() {
        let err = source("{\"a\":1}\n{\"a\":2,}\n").err().expect("refused");
        let text = err.to_string();
        assert!(text.contains("in.jsonl: cannot read line 2"), "{text}");
        let err = source("{\"a\":1}\n[1,2]\n").err().expect("refused");
        assert!(
            err.to_string().contains("line 2: not a JSON object"),
            "{err}"
        );
        let err = source("{\"a\":1}\n\n{\"a\":{\"b\":1}}\n")
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("line 3") && text.contains("column \"a\"") && text.contains("an object"),
            "{text}"
        );
        let err = source("{\"a\":1,\"a\":2}\n").err().expect("refused");
        assert!(err.to_string().contains("appears twice"), "{err}");
    }

    #[test]
    fn empty_files_and_giant_lines_are_refused() {
        assert!(matches!(source("\n\n"), Err(InputError::Empty { .. })));
        assert!(matches!(source("{}\n"), Err(InputError::Empty { .. })));
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big.jsonl");
        let long = format!("{{\"a\":\"{}\"}}\n", "x".repeat(200));
        std::fs::write(&path, &long).expect("write");
        let limits = InputLimits {
            max_row_bytes: 100,
            ..InputLimits::default()
        };
        assert!(matches!(
            JsonlSource::open(&path, limits),
            Err(InputError::RowTooLong { line: 1, .. })
        ));
    }
}
