//! Validate stage: turns a raw [`SourceRow`] into an [`ActivityItem`] ready to post, or into a
//! [`RowProblem`] naming the column and what is wrong. Pure: no I/O, no server.
//!
//! [`Schema::from_headers`] reads the header once: which column is which field (names matched
//! case-insensitively), which are `mx_Custom_<n>` custom fields, and which are carried into the
//! report only. A header that cannot work (a required column missing, a column twice) is a
//! [`SchemaError`] for the whole file, before anything is sent.
//!
//! [`check_csv`] chains the read stage and this one, raw CSV bytes in, checked rows out, for the
//! fuzz target and the property tests.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use csv::ByteRecord;

use crate::api::{ActivityItem, DATE_TIME_FORMAT, FieldValue};
use crate::input::{CsvSource, InputError, InputLimits, SourceRow};

/// Highest custom field number the API defines (`mx_Custom_1` .. `mx_Custom_50`).
pub const MAX_CUSTOM_FIELD: u32 = 50;

/// Column positions of the fields lsq-sync sends.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Header names as written in the file, for messages.
    names: Vec<String>,
    lead_id: usize,
    event: usize,
    note: Option<usize>,
    owner: Option<usize>,
    date_time: Option<usize>,
    /// `(column, SchemaName)` of each custom field column, SchemaName spelled as the API does.
    custom: Vec<(usize, String)>,
    /// Largest cell accepted, in bytes (`InputLimits::max_cell_bytes`).
    max_cell_bytes: usize,
}

/// Why a header cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("required column {name} is missing (columns found: {found})")]
    Missing { name: &'static str, found: String },
    #[error("column {name} appears twice (columns {first} and {second})")]
    Duplicate {
        name: String,
        first: usize,
        second: usize,
    },
    #[error("header of column {column} is not valid UTF-8")]
    NotUtf8 { column: usize },
    #[error(
        "column {column} ({name}): custom fields are mx_Custom_1 to mx_Custom_{MAX_CUSTOM_FIELD}"
    )]
    BadCustomField { column: usize, name: String },
}

/// What is wrong with one row; shown in the report's Error column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// The column at fault, as named in the file's header; `None` for the row as a whole.
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(column) => write!(f, "{column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    LeadId,
    Event,
    Note,
    Owner,
    DateTime,
}

impl Known {
    fn name(self) -> &'static str {
        match self {
            Known::LeadId => "RelatedProspectId",
            Known::Event => "ActivityEvent",
            Known::Note => "ActivityNote",
            Known::Owner => "ActivityOwnerEmail",
            Known::DateTime => "ActivityDateTime",
        }
    }

    fn recognise(header: &str) -> Option<Known> {
        [
            Known::LeadId,
            Known::Event,
            Known::Note,
            Known::Owner,
            Known::DateTime,
        ]
        .into_iter()
        .find(|k| k.name().eq_ignore_ascii_case(header))
    }
}

/// `mx_Custom_7` in any letter case -> `Some(Ok("mx_Custom_7"))`; out of range -> `Some(Err)`.
fn custom_field_name(header: &str) -> Option<Result<String, ()>> {
    let prefix = "mx_custom_";
    // Byte-wise: a header may have a multi-byte character where the prefix would end.
    let (head, digits) = (
        header.as_bytes().get(..prefix.len())?,
        header.as_bytes().get(prefix.len()..)?,
    );
    if digits.is_empty() || !head.eq_ignore_ascii_case(prefix.as_bytes()) {
        return None;
    }
    let digits = std::str::from_utf8(digits).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match digits.parse::<u32>() {
        Ok(n) if (1..=MAX_CUSTOM_FIELD).contains(&n) => Ok(format!("mx_Custom_{n}")),
        _ => Err(()),
    })
}

impl Schema {
    pub fn from_headers(headers: &ByteRecord) -> Result<Schema, SchemaError> {
        let mut names = Vec::with_capacity(headers.len());
        for (i, raw) in headers.iter().enumerate() {
            let name =
                std::str::from_utf8(raw).map_err(|_| SchemaError::NotUtf8 { column: i + 1 })?;
            names.push(name.trim().to_string());
        }

        let mut known: Vec<(Known, usize)> = Vec::new();
        let mut custom: Vec<(usize, String)> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if let Some(k) = Known::recognise(name) {
                if let Some(&(_, first)) = known.iter().find(|(seen, _)| *seen == k) {
                    return Err(SchemaError::Duplicate {
                        name: k.name().to_string(),
                        first: first + 1,
                        second: i + 1,
                    });
                }
                known.push((k, i));
            } else if let Some(field) = custom_field_name(name) {
                let field = field.map_err(|()| SchemaError::BadCustomField {
                    column: i + 1,
                    name: name.clone(),
                })?;
                if let Some((first, _)) = custom.iter().find(|(_, f)| *f == field) {
                    return Err(SchemaError::Duplicate {
                        name: field,
                        first: first + 1,
                        second: i + 1,
                    });
                }
                custom.push((i, field));
            }
        }

        let find = |k: Known| known.iter().find(|(seen, _)| *seen == k).map(|&(_, i)| i);
        let require = |k: Known| {
            find(k).ok_or_else(|| SchemaError::Missing {
                name: k.name(),
                found: names.join(", "),
            })
        };
        Ok(Schema {
            lead_id: require(Known::LeadId)?,
            event: require(Known::Event)?,
            note: find(Known::Note),
            owner: find(Known::Owner),
            date_time: find(Known::DateTime),
            custom,
            names,
            max_cell_bytes: InputLimits::default().max_cell_bytes,
        })
    }

    /// The same schema with another cell size limit.
    pub fn with_max_cell_bytes(mut self, max_cell_bytes: usize) -> Schema {
        self.max_cell_bytes = max_cell_bytes;
        self
    }

    /// Number of columns in the header.
    pub fn width(&self) -> usize {
        self.names.len()
    }

    /// Checks one row and builds the activity to post.
    pub fn check(&self, row: &SourceRow) -> Result<ActivityItem, RowProblem> {
        let record = &row.record;
        if record.len() != self.width() {
            return Err(RowProblem {
                column: None,
                message: format!(
                    "the row has {} fields but the header has {} (line {})",
                    record.len(),
                    self.width(),
                    row.line
                ),
            });
        }
        if let Some((i, cell)) = record
            .iter()
            .enumerate()
            .find(|(_, cell)| cell.len() > self.max_cell_bytes)
        {
            return Err(self.problem(
                i,
                format!(
                    "the cell is {} bytes, more than the limit of {} ([input] max_cell_bytes)",
                    cell.len(),
                    self.max_cell_bytes
                ),
            ));
        }
        let text = |i: usize| -> Result<&str, RowProblem> {
            let text = std::str::from_utf8(&record[i]).map_err(|e| {
                self.problem(
                    i,
                    format!(
                        "the cell is not valid UTF-8 text (byte {} of the cell; a file saved as \
                         Latin-1 or Windows-1252? save it as \"CSV UTF-8\")",
                        e.valid_up_to() + 1
                    ),
                )
            })?;
            if text.contains('\0') {
                return Err(self.problem(
                    i,
                    "the cell holds a NUL character (a damaged or binary file?)",
                ));
            }
            Ok(text)
        };
        let optional = |i: Option<usize>| -> Result<Option<&str>, RowProblem> {
            match i {
                Some(i) => text(i).map(|t| Some(t).filter(|t| !t.trim().is_empty())),
                None => Ok(None),
            }
        };

        let lead = text(self.lead_id)?.trim();
        if lead.is_empty() {
            return Err(self.problem(self.lead_id, "required, but the cell is empty"));
        }
        let lead = uuid::Uuid::try_parse(lead).map_err(|_| {
            self.problem(
                self.lead_id,
                format!(
                    "{} is not a lead id (expected a GUID like 3aee22bd-8419-422a-8242-c510df9af021)",
                    quoted(lead)
                ),
            )
        })?;

        let event = text(self.event)?.trim();
        if event.is_empty() {
            return Err(self.problem(self.event, "required, but the cell is empty"));
        }
        let activity_event = match event.parse::<u32>() {
            Ok(code) if code > 0 && event.bytes().all(|b| b.is_ascii_digit()) => i64::from(code),
            _ => {
                return Err(self.problem(
                    self.event,
                    format!(
                        "{} is not an activity code (a positive whole number such as 201)",
                        quoted(event)
                    ),
                ));
            }
        };

        let activity_date_time = match optional(self.date_time)? {
            None => None,
            Some(value) => Some(parse_date_time(value.trim()).ok_or_else(|| {
                self.problem(
                    self.date_time.unwrap_or(0),
                    format!(
                        "{} is not a real date and time in the form yyyy-MM-dd HH:mm:ss (UTC)",
                        quoted(value)
                    ),
                )
            })?),
        };

        let activity_owner_email = match optional(self.owner)? {
            None => None,
            Some(value) => {
                let value = value.trim();
                if !looks_like_email(value) {
                    return Err(self.problem(
                        self.owner.unwrap_or(0),
                        format!("{} is not an e-mail address", quoted(value)),
                    ));
                }
                Some(value.to_string())
            }
        };

        let activity_note = optional(self.note)?.map(str::to_string);

        let mut fields = Vec::new();
        for (i, schema_name) in &self.custom {
            let value = text(*i)?;
            if !value.is_empty() {
                fields.push(FieldValue {
                    schema_name: schema_name.clone(),
                    value: value.to_string(),
                });
            }
        }

        Ok(ActivityItem {
            related_prospect_id: lead.hyphenated().to_string(),
            activity_event,
            activity_note,
            activity_owner_email,
            activity_date_time,
            fields,
        })
    }

    fn problem(&self, column: usize, message: impl Into<String>) -> RowProblem {
        RowProblem {
            column: Some(self.names.get(column).cloned().unwrap_or_default()),
            message: message.into(),
        }
    }
}

/// One row of a file and what validation made of it.
#[derive(Debug, Clone)]
pub struct CheckedRow {
    pub source: SourceRow,
    pub result: Result<ActivityItem, RowProblem>,
}

/// Why a file cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{path}: {source}")]
    Schema { path: PathBuf, source: SchemaError },
}

/// Raw CSV bytes to checked rows, through the reader and the checks an import uses; what the
/// fuzz target and the property tests drive. Holds the whole result in memory, so it is for
/// tests and small inputs; the import streams the same stages instead.
pub fn check_csv(
    name: &Path,
    bytes: &[u8],
    limits: InputLimits,
) -> Result<Vec<CheckedRow>, FileError> {
    let source = CsvSource::from_reader_limited(
        name,
        Box::new(std::io::Cursor::new(bytes.to_vec())),
        limits,
    )?;
    let schema = Schema::from_headers(source.headers())
        .map_err(|e| FileError::Schema {
            path: name.to_path_buf(),
            source: e,
        })?
        .with_max_cell_bytes(limits.max_cell_bytes);
    source
        .map(|row| {
            let row = row?;
            let result = schema.check(&row);
            Ok(CheckedRow {
                source: row,
                result,
            })
        })
        .collect()
}

/// Strictly `yyyy-MM-dd HH:mm:ss`, and a date that exists (no 30 February).
fn parse_date_time(value: &str) -> Option<String> {
    let shape_ok = value.len() == 19
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    NaiveDateTime::parse_from_str(value, DATE_TIME_FORMAT)
        .ok()
        .map(|dt| dt.format(DATE_TIME_FORMAT).to_string())
}

fn looks_like_email(value: &str) -> bool {
    match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !value.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// A cell value for a message: quoted, and cut short so a huge cell cannot flood the report.
fn quoted(value: &str) -> String {
    const MAX: usize = 60;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}... ({} characters)", value.chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAD: &str = "3aee22bd-8419-422a-8242-c510df9af021";

    fn headers(names: &[&str]) -> ByteRecord {
        ByteRecord::from(names.to_vec())
    }

    fn row(fields: &[&str]) -> SourceRow {
        SourceRow {
            number: 1,
            line: 2,
            record: ByteRecord::from(fields.to_vec()),
        }
    }

    fn schema() -> Schema {
        Schema::from_headers(&headers(&[
            "relatedprospectid",
            "ActivityEvent",
            "ActivityNote",
            "ActivityOwnerEmail",
            "ActivityDateTime",
            "MX_CUSTOM_2",
            "Region",
        ]))
        .unwrap()
    }

    #[test]
    fn builds_the_item_with_custom_fields_and_leaves_empty_ones_out() {
        let s = schema();
        let item = s
            .check(&row(&[
                LEAD,
                "201",
                "Called, left a \"message\"",
                "a@b.co",
                "2024-03-01 09:30:00",
                "gold",
                "EMEA",
            ]))
            .unwrap();
        assert_eq!(item.related_prospect_id, LEAD);
        assert_eq!(item.activity_event, 201);
        assert_eq!(
            item.activity_note.as_deref(),
            Some("Called, left a \"message\"")
        );
        assert_eq!(
            item.activity_date_time.as_deref(),
            Some("2024-03-01 09:30:00")
        );
        assert_eq!(
            item.fields,
            vec![FieldValue {
                schema_name: "mx_Custom_2".into(),
                value: "gold".into()
            }]
        );

        let item = s
            .check(&row(&[LEAD, "201", "", "", "", "", "EMEA"]))
            .unwrap();
        assert!(item.fields.is_empty());
        assert!(item.activity_note.is_none() && item.activity_date_time.is_none());
    }

    #[test]
    fn normalises_guid_case_and_braces() {
        let s = schema();
        let upper = format!("{{{}}}", LEAD.to_uppercase());
        let item = s.check(&row(&[&upper, "201", "", "", "", "", ""])).unwrap();
        assert_eq!(item.related_prospect_id, LEAD);
    }

    #[test]
    fn each_bad_cell_names_its_column() {
        let s = schema();
        let cases: &[(&[&str], &str)] = &[
            (
                &["", "201", "", "", "", "", ""],
                "relatedprospectid: required",
            ),
            (
                &["not-a-guid", "201", "", "", "", "", ""],
                "relatedprospectid: \"not-a-guid\" is not a lead id",
            ),
            (&[LEAD, "", "", "", "", "", ""], "ActivityEvent: required"),
            (
                &[LEAD, "201.0", "", "", "", "", ""],
                "ActivityEvent: \"201.0\" is not an activity code",
            ),
            (&[LEAD, "-5", "", "", "", "", ""], "ActivityEvent: \"-5\""),
            (&[LEAD, "1e3", "", "", "", "", ""], "ActivityEvent: \"1e3\""),
            (
                &[LEAD, "+201", "", "", "", "", ""],
                "ActivityEvent: \"+201\"",
            ),
            (
                &[LEAD, "201", "", "", "2020-02-30 10:00:00", "", ""],
                "ActivityDateTime: \"2020-02-30 10:00:00\" is not a real date",
            ),
            (
                &[LEAD, "201", "", "", "2020-01-01T10:00:00Z", "", ""],
                "ActivityDateTime:",
            ),
            (
                &[LEAD, "201", "", "", "2020-1-1 10:00:00", "", ""],
                "ActivityDateTime:",
            ),
            (
                &[LEAD, "201", "", "not mail", "", "", ""],
                "ActivityOwnerEmail: \"not mail\" is not an e-mail",
            ),
            (
                &[LEAD, "201"],
                "the row has 2 fields but the header has 7 (line 2)",
            ),
        ];
        for (fields, expected) in cases {
            let problem = s.check(&row(fields)).unwrap_err().to_string();
            assert!(problem.starts_with(expected), "{fields:?}: {problem}");
        }
    }

    #[test]
    fn invalid_utf8_in_a_cell_is_a_row_problem() {
        let s = schema();
        let mut r = row(&[LEAD, "201", "", "", "", "", ""]);
        let mut record = ByteRecord::new();
        for (i, f) in r.record.iter().enumerate() {
            record.push_field(if i == 2 { b"\xE9t\xE9" } else { f });
        }
        r.record = record;
        let problem = s.check(&r).unwrap_err().to_string();
        assert!(
            problem.starts_with("ActivityNote: the cell is not valid UTF-8 text (byte 1 "),
            "{problem}"
        );
    }

    #[test]
    fn header_problems_are_file_level() {
        let err = Schema::from_headers(&headers(&["ActivityEvent", "Note"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "required column RelatedProspectId is missing (columns found: ActivityEvent, Note)"
        );
        let err = Schema::from_headers(&headers(&[
            "RelatedProspectId",
            "ActivityEvent",
            "relatedProspectID",
        ]))
        .unwrap_err();
        assert!(
            matches!(
                err,
                SchemaError::Duplicate {
                    first: 1,
                    second: 3,
                    ..
                }
            ),
            "{err}"
        );
        let err = Schema::from_headers(&headers(&[
            "RelatedProspectId",
            "ActivityEvent",
            "mx_Custom_51",
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("column 3 (mx_Custom_51)"), "{err}");
    }

    #[test]
    fn a_multibyte_character_where_the_custom_prefix_ends_is_just_a_column() {
        // Found by the fuzz target: slicing the header as text panicked.
        let s = Schema::from_headers(&headers(&[
            "RelatedProspectId",
            "ActivityEvent",
            "Act?ivity\u{feff}X",
            "mx_custom\u{e9}1",
        ]));
        assert!(s.is_ok());
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let s = schema();
        let long = "x".repeat(10_000);
        let problem = s
            .check(&row(&[&long, "201", "", "", "", "", ""]))
            .unwrap_err()
            .to_string();
        assert!(
            problem.len() < 300 && problem.contains("(10000 characters)"),
            "{problem}"
        );
    }
}
