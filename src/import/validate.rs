//! Validate stage: turns a raw [`SourceRow`] into an [`ActivityItem`] ready to post, or into a
//! [`RowProblem`] naming the column and what is wrong. Pure: no I/O, no server.
//!
//! [`Schema::from_headers`] reads the header once: which column is which field (names matched
//! case-insensitively), which are `mx_Custom_<n>` custom fields, and which are carried into the
//! report only. A header that cannot work (a required column missing, a column twice) is a
//! [`SchemaError`] for the whole file, before anything is sent.
//!
//! The run's [`InputSettings`] shape this: `--map` renames headers to fields before they are
//! recognised (messages and the report keep the file's own names), `--set` constants fill
//! fields no column gives, `--match-by` makes the lead a `SearchByValue` instead of an id, and
//! dates are read with the run's format and time zone (`dates`).
//!
//! [`Schema::check`] is [`Schema::inspect`], which only borrows from the row, plus
//! [`ValidRow::to_item`]; `validate` stops at the first, so that a million rows cost no million
//! activities.
//!
//! [`check_csv`] chains the read stage and this one, raw CSV bytes in, checked rows out, for the
//! fuzz target and the property tests.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use csv::ByteRecord;

use crate::config::InputSettings;
use crate::input::CsvSource;
use crate::input::dates::{DateProblem, DateReader, SENT_DATE_FORMAT, SentDate};
use crate::input::mapping::SEARCH_BY_VALUE;
use crate::input::rows::{InputError, InputLimits, RowScan, SourceRow};
use crate::lsq::api::MAX_CUSTOM_FIELD;
use crate::lsq::api::{ActivityItem, FieldValue};

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cell {
    /// The column at this position.
    Column(usize),
    /// The same value for every row (`--set`, `[constants]`).
    Constant { field: String, value: String },
}

/// How the lead of a row is named.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LeadKey {
    /// By its id, a GUID (`RelatedProspectId`).
    Id,
    /// By the value of this lead field (`--match-by`), sent as `SearchByValue`.
    Field(String),
}

/// Where each field lsq-sync sends comes from, and how dates are read.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    /// Header names as written in the file, for messages.
    names: Vec<String>,
    lead_key: LeadKey,
    lead_id: Cell,
    event: Cell,
    note: Option<Cell>,
    owner: Option<Cell>,
    date_time: Option<Cell>,
    /// `(source, SchemaName)` of each custom field, SchemaName spelled as the API does.
    custom: Vec<(Cell, String)>,
    /// Reads `ActivityDateTime` with the run's format and time zone.
    dates: DateReader,
    /// Largest cell accepted, in bytes (`InputLimits::max_cell_bytes`).
    max_cell_bytes: usize,
}

/// Why a header cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("required column {name} is missing (columns found: {found})")]
    Missing { name: String, found: String },
    #[error(
        "mapped column {header:?} (--map or [mapping]) is not in the file (columns found: {found})"
    )]
    MappedColumnMissing { header: String, found: String },
    #[error(
        "{field} is given both as a constant (--set or [constants]) and by column {column} ({name}); keep one"
    )]
    ConstantAndColumn {
        field: String,
        column: usize,
        name: String,
    },
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

    /// The field's name as this run calls it: under `--match-by` the lead is `SearchByValue`.
    fn field_name(self, lead_key: &LeadKey) -> String {
        match (self, lead_key) {
            (Known::LeadId, LeadKey::Field(_)) => SEARCH_BY_VALUE.to_string(),
            _ => self.name().to_string(),
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
    /// The schema of a file read as it is: no mapping, constants or time zone.
    pub(crate) fn from_headers(headers: &ByteRecord) -> Result<Schema, SchemaError> {
        Schema::for_input(headers, &InputSettings::default())
    }

    /// The schema of a file under the run's input settings: mapped headers, constants, lead
    /// matching and date reading.
    pub(crate) fn for_input(
        headers: &ByteRecord,
        input: &InputSettings,
    ) -> Result<Schema, SchemaError> {
        let mut names = Vec::with_capacity(headers.len());
        for (i, raw) in headers.iter().enumerate() {
            let name =
                std::str::from_utf8(raw).map_err(|_| SchemaError::NotUtf8 { column: i + 1 })?;
            names.push(name.trim().to_string());
        }
        let columns = &input.columns;
        let fields =
            columns
                .field_names(&names)
                .map_err(|header| SchemaError::MappedColumnMissing {
                    header,
                    found: names.join(", "),
                })?;
        let lead_key = match columns.match_by() {
            Some(field) => LeadKey::Field(field.to_string()),
            None => LeadKey::Id,
        };
        let recognise = |field: &str| -> Option<Known> {
            if columns.is_search_key(field) {
                return Some(Known::LeadId);
            }
            Known::recognise(field).filter(|k| *k != Known::LeadId || lead_key == LeadKey::Id)
        };

        let mut known: Vec<(Known, usize)> = Vec::new();
        let mut custom: Vec<(Cell, String)> = Vec::new();
        let custom_column = |custom: &[(Cell, String)], field: &str| {
            custom.iter().find_map(|(cell, f)| match cell {
                Cell::Column(i) if f == field => Some(*i),
                _ => None,
            })
        };
        for (i, field) in fields.iter().enumerate() {
            if let Some(k) = recognise(field) {
                if let Some(&(_, first)) = known.iter().find(|(seen, _)| *seen == k) {
                    return Err(SchemaError::Duplicate {
                        name: k.field_name(&lead_key),
                        first: first + 1,
                        second: i + 1,
                    });
                }
                known.push((k, i));
            } else if let Some(field) = custom_field_name(field) {
                let field = field.map_err(|()| SchemaError::BadCustomField {
                    column: i + 1,
                    name: names[i].clone(),
                })?;
                if let Some(first) = custom_column(&custom, &field) {
                    return Err(SchemaError::Duplicate {
                        name: field,
                        first: first + 1,
                        second: i + 1,
                    });
                }
                custom.push((Cell::Column(i), field));
            }
        }

        let mut constants: Vec<(Known, Cell)> = Vec::new();
        for (field, value) in columns.constants() {
            let cell = Cell::Constant {
                field: field.clone(),
                value: value.clone(),
            };
            let column = match recognise(field) {
                Some(k) => {
                    constants.push((k, cell));
                    known.iter().find(|(seen, _)| *seen == k).map(|&(_, i)| i)
                }
                None => {
                    let column = custom_column(&custom, field);
                    custom.push((cell, field.clone()));
                    column
                }
            };
            if let Some(i) = column {
                return Err(SchemaError::ConstantAndColumn {
                    field: field.clone(),
                    column: i + 1,
                    name: names[i].clone(),
                });
            }
        }

        let find = |k: Known| {
            known
                .iter()
                .find(|(seen, _)| *seen == k)
                .map(|&(_, i)| Cell::Column(i))
                .or_else(|| {
                    constants
                        .iter()
                        .find(|(seen, _)| *seen == k)
                        .map(|(_, cell)| cell.clone())
                })
        };
        let require = |k: Known| {
            find(k).ok_or_else(|| SchemaError::Missing {
                name: match &lead_key {
                    LeadKey::Field(field) if k == Known::LeadId => {
                        format!("{SEARCH_BY_VALUE} (or {field})")
                    }
                    _ => k.name().to_string(),
                },
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
            lead_key,
            dates: input.dates.clone(),
            max_cell_bytes: InputLimits::default().max_cell_bytes,
        })
    }

    /// The same schema with another cell size limit.
    pub(crate) fn with_max_cell_bytes(mut self, max_cell_bytes: usize) -> Schema {
        self.max_cell_bytes = max_cell_bytes;
        self
    }

    /// Where the input gives custom field `field` (`mx_Custom_<n>`, API spelling): the column's
    /// name, or `--set` for a constant; `None` if it gives none.
    pub(crate) fn custom_field_source(&self, field: &str) -> Option<String> {
        self.custom
            .iter()
            .find(|(_, f)| f == field)
            .map(|(cell, _)| match cell {
                Cell::Column(i) => format!("column {:?}", self.names[*i]),
                Cell::Constant { .. } => "--set".to_string(),
            })
    }

    /// Number of columns in the header.
    pub(crate) fn width(&self) -> usize {
        self.names.len()
    }

    /// Checks one row and builds the activity to post.
    pub(crate) fn check(&self, row: &SourceRow) -> Result<ActivityItem, RowProblem> {
        self.inspect(row).map(|valid| valid.to_item())
    }

    /// Checks one row without building anything: the valid row borrows its text from `row`.
    /// [`Schema::check`] is this plus [`ValidRow::to_item`]; `validate` stops here, so judging a
    /// million rows allocates nothing for the rows that pass.
    pub(crate) fn inspect<'r>(&'r self, row: &'r SourceRow) -> Result<ValidRow<'r>, RowProblem> {
        self.inspect_scanned(row, RowScan::of(&row.record))
    }

    /// [`Schema::inspect`] of a row whose bytes are already scanned ([`RowScan::of`], or
    /// [`RowScan::text_of`]), as the dry run does once per row for its writer as well.
    pub(crate) fn inspect_scanned<'r>(
        &'r self,
        row: &'r SourceRow,
        scan: RowScan,
    ) -> Result<ValidRow<'r>, RowProblem> {
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
        // No cell is over the limit when the whole row is not, nearly always.
        if let Some((i, cell)) = record
            .iter()
            .enumerate()
            .take_while(|_| record.as_slice().len() > self.max_cell_bytes)
            .find(|(_, cell)| cell.len() > self.max_cell_bytes)
        {
            return Err(self.problem(
                &Cell::Column(i),
                format!(
                    "the cell is {} bytes, more than the limit of {} ([input] max_cell_bytes)",
                    cell.len(),
                    self.max_cell_bytes
                ),
            ));
        }
        let text = |cell| self.text(record, cell, scan);
        let optional = |cell| self.optional(record, cell, scan);

        let lead_text = trim(text(&self.lead_id)?);
        if lead_text.is_empty() {
            return Err(self.problem(&self.lead_id, "required, but the cell is empty"));
        }
        let lead = match &self.lead_key {
            LeadKey::Id => Lead::Id(uuid::Uuid::try_parse(lead_text).map_err(|_| {
                self.problem(
                    &self.lead_id,
                    format!(
                        "{} is not a lead id (expected a GUID like 3aee22bd-8419-422a-8242-c510df9af021)",
                        quoted(lead_text)
                    ),
                )
            })?),
            LeadKey::Field(field) => {
                if field.eq_ignore_ascii_case("EmailAddress") && !looks_like_email(lead_text) {
                    return Err(self.problem(
                        &self.lead_id,
                        format!("{} is not an e-mail address", quoted(lead_text)),
                    ));
                }
                Lead::Value(lead_text)
            }
        };

        let event = trim(text(&self.event)?);
        if event.is_empty() {
            return Err(self.problem(&self.event, "required, but the cell is empty"));
        }
        let event = match event.parse::<u32>() {
            Ok(code) if code > 0 && event.bytes().all(|b| b.is_ascii_digit()) => i64::from(code),
            _ => {
                return Err(self.problem(
                    &self.event,
                    format!(
                        "{} is not an activity code (a positive whole number such as 201)",
                        quoted(event)
                    ),
                ));
            }
        };

        let date = match (optional(self.date_time.as_ref())?, &self.date_time) {
            (Some(value), Some(cell)) => {
                let value = trim(value);
                Some(self.dates.read_utc(value).map_err(|why| {
                    let at_row = match why {
                        DateProblem::NotADate { .. } => String::new(),
                        _ => format!(" (row {})", row.number),
                    };
                    self.problem(cell, format!("{}{at_row} {why}", quoted(value)))
                })?)
            }
            _ => None,
        };

        let owner = match (optional(self.owner.as_ref())?, &self.owner) {
            (Some(value), Some(cell)) => {
                let value = trim(value);
                if !looks_like_email(value) {
                    return Err(
                        self.problem(cell, format!("{} is not an e-mail address", quoted(value)))
                    );
                }
                Some(value)
            }
            _ => None,
        };

        // The note and custom fields are carried, not read, so only need to be text. A row of
        // ASCII without NUL, nearly every row, is text in every cell; the scan of the whole row
        // spares a look at each cell.
        if !scan.all_text() {
            optional(self.note.as_ref())?;
            for (cell, _) in &self.custom {
                text(cell)?;
            }
        }

        Ok(ValidRow {
            schema: self,
            record,
            lead,
            event,
            owner,
            date,
        })
    }

    /// The text of a field in `record`, or the constant. `scan` is what is known of the whole
    /// row ([`RowScan::UNKNOWN`] for nothing).
    fn text<'a>(
        &'a self,
        record: &'a ByteRecord,
        cell: &'a Cell,
        scan: RowScan,
    ) -> Result<&'a str, RowProblem> {
        match cell {
            Cell::Column(i) => {
                let text = std::str::from_utf8(&record[*i]).map_err(|e| {
                    self.problem(
                        cell,
                        format!(
                            "the cell is not valid UTF-8 text (byte {} of the cell; a file saved as \
                             Latin-1 or Windows-1252? save it as \"CSV UTF-8\")",
                            e.valid_up_to() + 1
                        ),
                    )
                })?;
                if scan.nul && text.contains('\0') {
                    return Err(self.problem(
                        cell,
                        "the cell holds a NUL character (a damaged or binary file?)",
                    ));
                }
                Ok(text)
            }
            Cell::Constant { value, .. } => Ok(value),
        }
    }

    /// The text of an optional field, `None` when it is absent or blank.
    fn optional<'a>(
        &'a self,
        record: &'a ByteRecord,
        cell: Option<&'a Cell>,
        scan: RowScan,
    ) -> Result<Option<&'a str>, RowProblem> {
        match cell {
            Some(cell) => self
                .text(record, cell, scan)
                .map(|t| Some(t).filter(|t| !trim(t).is_empty())),
            None => Ok(None),
        }
    }

    fn problem(&self, cell: &Cell, message: impl Into<String>) -> RowProblem {
        let column = match cell {
            Cell::Column(i) => self.names.get(*i).cloned().unwrap_or_default(),
            Cell::Constant { field, .. } => format!("{field} (constant)"),
        };
        RowProblem {
            column: Some(column),
            message: message.into(),
        }
    }
}

/// How a row names its lead, borrowed from the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lead<'r> {
    Id(uuid::Uuid),
    /// The value of the `--match-by` field, trimmed.
    Value(&'r str),
}

/// A row that passed every check ([`Schema::inspect`]), its values still in the row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValidRow<'r> {
    schema: &'r Schema,
    record: &'r ByteRecord,
    lead: Lead<'r>,
    event: i64,
    owner: Option<&'r str>,
    date: Option<SentDate>,
}

impl ValidRow<'_> {
    /// The activity to post.
    pub(crate) fn to_item(self) -> ActivityItem {
        let related_prospect_id = match self.lead {
            Lead::Id(id) => id.hyphenated().to_string(),
            Lead::Value(value) => value.to_string(),
        };
        let fields = self
            .schema
            .custom
            .iter()
            // Every custom cell is text (`inspect` saw to it), so none is left out here but the
            // empty ones, which the API is not sent.
            .filter_map(|(cell, schema_name)| {
                let value = self.schema.text(self.record, cell, RowScan::UNKNOWN).ok()?;
                (!value.is_empty()).then(|| FieldValue {
                    schema_name: schema_name.clone(),
                    value: value.to_string(),
                })
            })
            .collect();
        ActivityItem {
            related_prospect_id,
            activity_event: self.event,
            activity_note: self
                .schema
                .optional(self.record, self.schema.note.as_ref(), RowScan::UNKNOWN)
                .ok()
                .flatten()
                .map(str::to_string),
            activity_owner_email: self.owner.map(str::to_string),
            activity_date_time: self.date.map(|date| date.api_text()),
            fields,
        }
    }

    /// Where the report must show something other than the cell as read: the column of
    /// `ActivityDateTime` and the UTC value sent, when a time zone or date format converted it,
    /// written with a `Z` so that a `retry` of the report reads the same instant.
    pub(crate) fn shown_date(&self) -> Option<(usize, String)> {
        let date = self.date.filter(|date| !date.as_written)?;
        match self.schema.date_time {
            Some(Cell::Column(column)) => Some((column, shown_date(date.utc))),
            _ => None,
        }
    }

    /// The row as the report should show it ([`ValidRow::shown_date`] in place); `None` when
    /// it is shown as read.
    pub(crate) fn as_sent(&self) -> Option<ByteRecord> {
        let (column, shown) = self.shown_date()?;
        Some(
            self.record
                .iter()
                .enumerate()
                .map(|(i, field)| if i == column { shown.as_bytes() } else { field })
                .collect(),
        )
    }
}

/// A converted date as a report shows it: UTC with an explicit `Z`.
fn shown_date(utc: NaiveDateTime) -> String {
    utc.format(SENT_DATE_FORMAT).to_string()
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

/// `str::trim`, but a cell that starts and ends with a visible ASCII character, nearly every
/// cell, is returned at once: `trim` decodes characters from both ends to find out.
fn trim(cell: &str) -> &str {
    let visible = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_graphic());
    let bytes = cell.as_bytes();
    if visible(bytes.first()) && visible(bytes.last()) {
        cell
    } else {
        cell.trim()
    }
}

fn looks_like_email(value: &str) -> bool {
    // This runs on every row with an owner. Whitespace is a byte at or below a space, or a
    // character beyond ASCII; one comparison a byte finds whether there can be any, and the
    // compiler runs it over many bytes at a time.
    let bytes = value.as_bytes();
    let suspect = bytes
        .iter()
        .fold(false, |suspect, b| suspect | !(0x21..0x80).contains(b));
    if suspect && value.chars().any(char::is_whitespace) {
        return false;
    }
    let Some(at) = memchr::memchr(b'@', bytes) else {
        return false;
    };
    let domain = &bytes[at + 1..];
    at > 0
        && memchr::memchr(b'@', domain).is_none()
        && memchr::memchr(b'.', domain).is_some()
        && !domain.starts_with(b".")
        && !domain.ends_with(b".")
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
mod tests;
