//! The `--leads` input of export and the delete commands: which leads to work on.
//!
//! The flag's text comes in either as a comma-separated list of lead ids or as the path of a CSV
//! file; a list of distinct, lowercase, hyphenated lead ids comes out, in the order given (a lead
//! named twice is worked on once). Every id is checked to be a GUID before anything is sent; a
//! bad one in a file is reported with the file, row and column, so it can be found and fixed.
//! [`parse_lead_reader`] does the work on any reader, so it is tested without the filesystem.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Header names (compared case-insensitively) of the column that holds the lead id, in order of
/// preference: an export or import file uses `RelatedProspectId`, a lead export `ProspectId`.
const LEAD_COLUMNS: [&str; 4] = ["RelatedProspectId", "ProspectId", "LeadId", "Id"];

/// Why the `--leads` input cannot be used. Raised before anything is sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LeadsError {
    /// The file named by `--leads` could not be read.
    #[error("cannot read leads file {path}: {message}")]
    Read {
        /// The file as given.
        path: PathBuf,
        /// The operating system's or the CSV reader's reason.
        message: String,
    },
    /// The file has several columns and none of them is named like a lead id column.
    #[error(
        "leads file {path}: no lead id column (expected one of {}; found {found})",
        LEAD_COLUMNS.join(", ")
    )]
    NoLeadColumn {
        /// The file as given.
        path: PathBuf,
        /// The header as found, for the message.
        found: String,
    },
    /// A cell of the file that is not a GUID.
    #[error("leads file {path}, row {row}, column {column}: {value:?} is not a lead id (a GUID)")]
    BadIdInFile {
        /// The file as given.
        path: PathBuf,
        /// 1-based data row (the header is not counted).
        row: u64,
        /// The column's header, or its 1-based number when the file has no header.
        column: String,
        /// The cell as written.
        value: String,
    },
    /// An item of a comma-separated list that is not a GUID.
    #[error(
        "--leads: item {position} ({value:?}) is not a lead id (a GUID), nor a file that exists"
    )]
    BadIdInList {
        /// 1-based position in the list.
        position: usize,
        /// The item as written.
        value: String,
    },
    /// Nothing to work on.
    #[error("--leads names no lead")]
    Empty,
}

/// The file the `--leads` argument names, or `None` when it is a list of ids: an existing
/// path, a `.csv` name or anything with a path separator is a file.
pub(crate) fn leads_file(arg: &str) -> Option<&Path> {
    let path = Path::new(arg.trim());
    let looks_like_file = path.exists()
        || arg.trim().to_ascii_lowercase().ends_with(".csv")
        || arg.contains(std::path::MAIN_SEPARATOR);
    looks_like_file.then_some(path)
}

/// Reads the `--leads` argument: an existing file, or a comma-separated list of ids.
pub(crate) fn parse_leads_arg(arg: &str) -> Result<Vec<String>, LeadsError> {
    if let Some(path) = leads_file(arg) {
        let file = std::fs::File::open(path).map_err(|e| LeadsError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        return parse_lead_reader(path, file);
    }
    parse_lead_list(arg)
}

/// A comma-separated list of lead ids.
pub(crate) fn parse_lead_list(text: &str) -> Result<Vec<String>, LeadsError> {
    let mut leads = Distinct::default();
    for (i, item) in text.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let id = normalise(item).ok_or_else(|| LeadsError::BadIdInList {
            position: i + 1,
            value: item.to_string(),
        })?;
        leads.push(id);
    }
    leads.finish()
}

/// A CSV file of leads: either one column of ids without a header, or a header naming the id
/// column (`RelatedProspectId`, `ProspectId`, `LeadId` or `Id`); other columns are ignored, so
/// an import or export file can be used as it is. Empty cells are skipped.
pub(crate) fn parse_lead_reader(path: &Path, read: impl Read) -> Result<Vec<String>, LeadsError> {
    let read_error = |e: csv::Error| LeadsError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(read);
    let mut records = reader.records();
    let Some(first) = records.next().transpose().map_err(read_error)? else {
        return Err(LeadsError::Empty);
    };
    let first_cell = first
        .get(0)
        .unwrap_or_default()
        .trim_start_matches('\u{feff}');
    // A first row whose first cell is an id is data: the file has no header.
    let (column, column_name, pending_first) =
        if first.len() == 1 && normalise(first_cell).is_some() {
            (0, "1".to_string(), Some(first))
        } else {
            let names: Vec<String> = first
                .iter()
                .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
                .collect();
            let position = LEAD_COLUMNS.iter().find_map(|want| {
                names
                    .iter()
                    .position(|name| name.eq_ignore_ascii_case(want))
            });
            let position = match position {
                Some(p) => p,
                None if names.len() == 1 => 0,
                None => {
                    return Err(LeadsError::NoLeadColumn {
                        path: path.to_path_buf(),
                        found: names.join(","),
                    });
                }
            };
            (position, names[position].clone(), None)
        };
    let mut leads = Distinct::default();
    let mut row: u64 = 0;
    let mut check = |record: &csv::StringRecord, row: u64| -> Result<(), LeadsError> {
        let cell = record.get(column).unwrap_or_default().trim();
        let cell = cell.trim_start_matches('\u{feff}');
        if cell.is_empty() {
            return Ok(());
        }
        let id = normalise(cell).ok_or_else(|| LeadsError::BadIdInFile {
            path: path.to_path_buf(),
            row,
            column: column_name.clone(),
            value: cell.to_string(),
        })?;
        leads.push(id);
        Ok(())
    };
    if let Some(first) = pending_first {
        row += 1;
        check(&first, row)?;
    }
    for record in records {
        let record = record.map_err(read_error)?;
        row += 1;
        check(&record, row)?;
    }
    leads.finish()
}

/// The id in the form lsq-sync sends: lowercase, hyphenated; `None` if it is not a GUID.
pub(crate) fn normalise(text: &str) -> Option<String> {
    uuid::Uuid::try_parse(text.trim())
        .ok()
        .map(|id| id.hyphenated().to_string())
}

/// Ids in first-seen order, each once.
#[derive(Default)]
struct Distinct {
    /// The ids, in order.
    ids: Vec<String>,
    /// What `ids` holds, for the duplicate check.
    seen: HashSet<String>,
}

impl Distinct {
    fn push(&mut self, id: String) {
        if self.seen.insert(id.clone()) {
            self.ids.push(id);
        }
    }

    fn finish(self) -> Result<Vec<String>, LeadsError> {
        if self.ids.is_empty() {
            Err(LeadsError::Empty)
        } else {
            Ok(self.ids)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3aee22bd-8419-422a-8242-c510df9af021";
    const B: &str = "3a6d5ea2-400e-4a2f-a728-fbfa0b0c1ddf";

    fn parse(text: &str) -> Result<Vec<String>, LeadsError> {
        parse_lead_reader(Path::new("leads.csv"), text.as_bytes())
    }

    #[test]
    fn a_list_is_split_normalised_and_deduplicated() {
        let upper = A.to_ascii_uppercase();
        let leads = parse_lead_list(&format!("{A}, {B},{upper},")).unwrap();
        assert_eq!(leads, vec![A.to_string(), B.to_string()]);
    }

    #[test]
    fn a_bad_list_item_is_named_by_position() {
        let err = parse_lead_list(&format!("{A},nope")).unwrap_err();
        assert!(
            matches!(&err, LeadsError::BadIdInList { position: 2, value } if value == "nope"),
            "{err}"
        );
    }

    #[test]
    fn a_headerless_single_column_file_is_read() {
        assert_eq!(parse(&format!("{A}\n{B}\n")).unwrap(), vec![A, B]);
    }

    #[test]
    fn the_id_column_is_found_by_name_among_others() {
        let text =
            format!("ActivityEvent,relatedprospectid,Note\n201,{A},x\n202,{B},y\n201,{A},z\n");
        assert_eq!(parse(&text).unwrap(), vec![A, B]);
    }

    #[test]
    fn a_bad_cell_names_file_row_and_column() {
        let text = format!("Name,LeadId\nx,{A}\ny,not-a-guid\n");
        let err = parse(&text).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("leads.csv")
                && message.contains("row 2")
                && message.contains("LeadId"),
            "{message}"
        );
    }

    #[test]
    fn several_columns_without_an_id_column_are_refused() {
        assert!(matches!(
            parse("Name,Email\nx,y\n"),
            Err(LeadsError::NoLeadColumn { .. })
        ));
    }

    #[test]
    fn an_empty_file_is_refused() {
        assert!(matches!(parse(""), Err(LeadsError::Empty)));
        assert!(matches!(parse("LeadId\n"), Err(LeadsError::Empty)));
    }
}
