//! Column mapping: how a sheet's own headers and a few constants become the API fields
//! lsq-sync sends, and which lead field `--match-by` finds leads by.
//!
//! Settings come in as `SHEET HEADER=ApiField` pairs (`--map`, `[mapping]`) and
//! `ApiField=VALUE` pairs (`--set`, `[constants]`); [`ColumnMap::new`] checks every target
//! against the fields the API knows, before any file is read. [`ColumnMap::field_names`] then
//! gives the header `validate::Schema` recognises for each column of a file; the report keeps
//! the file's own headers. Pure: no I/O.

use crate::lsq::api::MAX_CUSTOM_FIELD;

/// The target named when leads are found by a lead field (`--match-by`).
pub(crate) const SEARCH_BY_VALUE: &str = "SearchByValue";

/// The API fields a column or constant may fill, besides `mx_Custom_<n>` and, with
/// `--match-by`, `SearchByValue`.
const FIELDS: [&str; 5] = [
    "RelatedProspectId",
    "ActivityEvent",
    "ActivityNote",
    "ActivityOwnerEmail",
    "ActivityDateTime",
];

/// A mapping or constant that cannot work; found before anything is read or sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("{source_name}: {target:?} is not an API field lsq-sync can fill; valid: {valid}")]
    UnknownTarget {
        /// `--map`, `--set`, `config file [mapping]`, ...
        source_name: String,
        target: String,
        valid: String,
    },
    #[error("{source_name}: {text:?} is not NAME=VALUE")]
    NotAPair { source_name: String, text: String },
    #[error("{source_name}: both {first:?} and {second:?} are mapped to {target}")]
    TwoSources {
        source_name: String,
        target: String,
        first: String,
        second: String,
    },
    #[error(
        "{source_name}: {target} is not used with --match-by {field}: leads are found by {SEARCH_BY_VALUE} (or a {field} column)"
    )]
    LeadIdWithMatchBy {
        source_name: String,
        target: String,
        field: String,
    },
    #[error(
        "--match-by {0:?}: not a lead field name (letters, digits and _, e.g. EmailAddress, Phone, Mobile)"
    )]
    BadMatchField(String),
}

/// Sheet headers renamed to API fields, and constant fields; checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnMap {
    /// `(sheet header, API field)`, the field spelled canonically.
    renames: Vec<(String, String)>,
    /// `(API field, value)` for fields no column gives.
    constants: Vec<(String, String)>,
    /// The lead field of `--match-by`, when leads are found by it instead of by id.
    match_by: Option<String>,
}

/// Splits `NAME=VALUE` at the first `=` (sheet headers may not contain one; values may).
pub(crate) fn parse_pair(source_name: &str, text: &str) -> Result<(String, String), MappingError> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(MappingError::NotAPair {
            source_name: source_name.to_string(),
            text: text.to_string(),
        }),
    }
}

impl ColumnMap {
    /// Checks the targets. `renames` and `constants` carry the name of their source (a flag or
    /// a config table) for messages; a later pair for the same header or field wins, so flags
    /// given after the config's pairs override them.
    pub(crate) fn new(
        renames: Vec<(String, String, String)>,
        constants: Vec<(String, String, String)>,
        match_by: Option<String>,
    ) -> Result<ColumnMap, MappingError> {
        let match_by = match match_by.map(|f| f.trim().to_string()) {
            Some(f) if is_field_name(&f) => Some(f),
            Some(f) => return Err(MappingError::BadMatchField(f)),
            None => None,
        };
        let mut map = ColumnMap {
            renames: Vec::new(),
            constants: Vec::new(),
            match_by,
        };
        for (source_name, header, target) in renames {
            let target = map.target(&source_name, &target)?;
            map.renames
                .retain(|(h, _)| !h.eq_ignore_ascii_case(&header));
            if let Some((first, _)) = map.renames.iter().find(|(_, t)| *t == target) {
                return Err(MappingError::TwoSources {
                    source_name,
                    target,
                    first: first.clone(),
                    second: header,
                });
            }
            map.renames.push((header, target));
        }
        for (source_name, target, value) in constants {
            let target = map.target(&source_name, &target)?;
            map.constants.retain(|(t, _)| *t != target);
            map.constants.push((target, value));
        }
        Ok(map)
    }

    /// The lead field leads are matched by, if not by id.
    pub(crate) fn match_by(&self) -> Option<&str> {
        self.match_by.as_deref()
    }

    /// Constant fields, `(API field, value)`.
    pub(crate) fn constants(&self) -> &[(String, String)] {
        &self.constants
    }

    /// Renamed headers, `(sheet header, API field)`.
    pub(crate) fn renames(&self) -> &[(String, String)] {
        &self.renames
    }

    /// Whether `name` (a column's field name after mapping) is the lead key under `--match-by`:
    /// `SearchByValue` or the match field's own name.
    pub(crate) fn is_search_key(&self, name: &str) -> bool {
        self.match_by.as_deref().is_some_and(|field| {
            name.eq_ignore_ascii_case(SEARCH_BY_VALUE) || name.eq_ignore_ascii_case(field)
        })
    }

    /// The field name of each header, as `Schema` should read it: mapped headers renamed to
    /// their target, the others unchanged. A mapped header the file lacks is an `Err` naming it.
    pub(crate) fn field_names(&self, headers: &[String]) -> Result<Vec<String>, String> {
        if let Some((missing, _)) = self
            .renames
            .iter()
            .find(|(h, _)| !headers.iter().any(|name| name.eq_ignore_ascii_case(h)))
        {
            return Err(missing.clone());
        }
        Ok(headers
            .iter()
            .map(|name| {
                self.renames
                    .iter()
                    .find(|(h, _)| h.eq_ignore_ascii_case(name))
                    .map_or_else(|| name.clone(), |(_, target)| target.clone())
            })
            .collect())
    }

    /// The canonical spelling of a target, or why it is none.
    fn target(&self, source_name: &str, target: &str) -> Result<String, MappingError> {
        let target = target.trim();
        if let Some(known) = FIELDS.iter().find(|f| f.eq_ignore_ascii_case(target)) {
            if let Some(field) = &self.match_by
                && *known == FIELDS[0]
            {
                return Err(MappingError::LeadIdWithMatchBy {
                    source_name: source_name.to_string(),
                    target: known.to_string(),
                    field: field.clone(),
                });
            }
            return Ok(known.to_string());
        }
        if let Some(n) = custom_number(target) {
            return Ok(format!("mx_Custom_{n}"));
        }
        if self.is_search_key(target) {
            return Ok(SEARCH_BY_VALUE.to_string());
        }
        Err(MappingError::UnknownTarget {
            source_name: source_name.to_string(),
            target: target.to_string(),
            valid: self.valid_targets(),
        })
    }

    fn valid_targets(&self) -> String {
        let mut valid: Vec<String> = FIELDS.iter().map(|f| f.to_string()).collect();
        valid.push(format!("mx_Custom_1..mx_Custom_{MAX_CUSTOM_FIELD}"));
        match &self.match_by {
            Some(_) => {
                valid.remove(0);
                valid.push(SEARCH_BY_VALUE.to_string());
            }
            None => valid.push(format!("{SEARCH_BY_VALUE} (with --match-by)")),
        }
        valid.join(", ")
    }
}

/// `mx_Custom_7` in any letter case, 1..=50 -> 7.
fn custom_number(name: &str) -> Option<u32> {
    let prefix = "mx_custom_";
    let head = name.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let digits = &name[prefix.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse()
        .ok()
        .filter(|n| (1..=MAX_CUSTOM_FIELD).contains(n))
}

/// A lead field's schema name: it goes into the `searchBy` query parameter.
fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String, String)> {
        list.iter()
            .map(|(a, b)| ("--map".to_string(), a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn targets_are_checked_and_spelled_canonically() {
        let map = ColumnMap::new(
            pairs(&[("Lead ID", "relatedprospectid"), ("Score", "MX_CUSTOM_3")]),
            pairs(&[("activityevent", "201")]),
            None,
        )
        .unwrap();
        let headers = vec!["Lead ID".to_string(), "score".into(), "Other".into()];
        assert_eq!(
            map.field_names(&headers).unwrap(),
            vec!["RelatedProspectId", "mx_Custom_3", "Other"]
        );
        assert_eq!(map.constants(), &[("ActivityEvent".into(), "201".into())]);
    }

    #[test]
    fn an_unknown_target_names_it_and_lists_the_valid_ones() {
        let err = ColumnMap::new(pairs(&[("Lead", "LeadId")]), vec![], None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("--map: \"LeadId\" is not an API field"),
            "{text}"
        );
        assert!(
            text.contains("RelatedProspectId") && text.contains("mx_Custom_1..mx_Custom_50"),
            "{text}"
        );
        for bad in ["mx_Custom_51", "mx_Custom_", "SearchByValue"] {
            assert!(
                ColumnMap::new(pairs(&[("x", bad)]), vec![], None).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn match_by_adds_search_by_value_and_refuses_lead_ids() {
        let map = ColumnMap::new(
            pairs(&[("E-mail", "SearchByValue")]),
            vec![],
            Some("EmailAddress".into()),
        )
        .unwrap();
        assert!(map.is_search_key("emailaddress") && map.is_search_key("SearchByValue"));
        let map = ColumnMap::new(
            pairs(&[("E-mail", "EmailAddress")]),
            vec![],
            Some("EmailAddress".into()),
        )
        .unwrap();
        assert_eq!(
            map.field_names(&["E-mail".to_string()]).unwrap(),
            vec!["SearchByValue"]
        );
        let err = ColumnMap::new(
            pairs(&[("Lead", "RelatedProspectId")]),
            vec![],
            Some("Phone".into()),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("not used with --match-by Phone"),
            "{err}"
        );
        assert!(ColumnMap::new(vec![], vec![], Some("Email Address".into())).is_err());
    }

    #[test]
    fn later_pairs_override_earlier_ones_and_two_sources_for_one_field_are_refused() {
        let map = ColumnMap::new(
            pairs(&[("Note", "ActivityNote"), ("note", "mx_Custom_1")]),
            pairs(&[("ActivityEvent", "201"), ("ActivityEvent", "202")]),
            None,
        )
        .unwrap();
        assert_eq!(
            map.field_names(&["Note".to_string()]).unwrap(),
            vec!["mx_Custom_1"]
        );
        assert_eq!(map.constants(), &[("ActivityEvent".into(), "202".into())]);
        let err = ColumnMap::new(
            pairs(&[("A", "ActivityNote"), ("B", "activitynote")]),
            vec![],
            None,
        )
        .unwrap_err();
        assert!(matches!(err, MappingError::TwoSources { .. }), "{err}");
    }

    #[test]
    fn a_mapped_header_missing_from_the_file_is_named() {
        let map = ColumnMap::new(pairs(&[("Lead ID", "RelatedProspectId")]), vec![], None).unwrap();
        assert_eq!(
            map.field_names(&["LeadId".to_string()]).unwrap_err(),
            "Lead ID"
        );
    }

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_pair("--set", "ActivityNote=a=b").unwrap(),
            ("ActivityNote".into(), "a=b".into())
        );
        assert!(parse_pair("--set", "=x").is_err());
        assert!(parse_pair("--map", "Lead ID").is_err());
    }
}
