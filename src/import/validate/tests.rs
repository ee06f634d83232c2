//! Unit tests of `validate`.

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
            &[LEAD, "201", "", "", "2020-01-01T10:00:00", "", ""],
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

fn input(
    map: &[(&str, &str)],
    set: &[(&str, &str)],
    match_by: Option<&str>,
    zone: Option<&str>,
) -> InputSettings {
    let triples = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(a, b)| ("test".to_string(), a.to_string(), b.to_string()))
            .collect()
    };
    InputSettings {
        columns: crate::input::mapping::ColumnMap::new(
            triples(map),
            triples(set),
            match_by.map(str::to_string),
        )
        .unwrap(),
        dates: DateReader {
            format: crate::input::dates::DateFormat::parse("dd/MM/yyyy HH:mm").unwrap(),
            zone: zone.map(|z| crate::input::dates::parse_zone(z).unwrap()),
        },
        sheet: None,
        format: None,
    }
}

#[test]
fn mapped_headers_and_constants_fill_the_fields() {
    let settings = input(
        &[
            ("Lead ID", "RelatedProspectId"),
            ("When", "ActivityDateTime"),
        ],
        &[("ActivityEvent", "203"), ("mx_Custom_1", "import 2024")],
        None,
        Some("Asia/Kolkata"),
    );
    let s = Schema::for_input(&headers(&["Lead ID", "When", "Note"]), &settings).unwrap();
    let r = row(&[LEAD, "10/03/2024 09:30", "ignored"]);
    let valid = s.inspect(&r).unwrap();
    let item = valid.to_item();
    assert_eq!(item.related_prospect_id, LEAD);
    assert_eq!(item.activity_event, 203);
    assert_eq!(
        item.activity_date_time.as_deref(),
        Some("2024-03-10 04:00:00")
    );
    assert_eq!(item.fields[0].value, "import 2024");
    // The report shows the UTC value sent, in a form a retry reads back as the same instant.
    let shown = valid.as_sent().unwrap();
    assert_eq!(&shown[1], b"2024-03-10T04:00:00Z");
    assert_eq!(&shown[0], LEAD.as_bytes());
    let again = s.check(&SourceRow { record: shown, ..r }).unwrap();
    assert_eq!(again, item);
    // Problems name the file's own header, and constants as such.
    let err = s.check(&row(&["x", "", ""])).unwrap_err().to_string();
    assert!(err.starts_with("Lead ID: \"x\" is not a lead id"), "{err}");
    let settings = input(
        &[("Lead ID", "RelatedProspectId")],
        &[("ActivityEvent", "abc")],
        None,
        None,
    );
    let s = Schema::for_input(&headers(&["Lead ID"]), &settings).unwrap();
    let err = s.check(&row(&[LEAD])).unwrap_err().to_string();
    assert!(
        err.starts_with("ActivityEvent (constant): \"abc\""),
        "{err}"
    );
}

#[test]
fn mapping_problems_are_file_level() {
    let settings = input(&[("Lead ID", "RelatedProspectId")], &[], None, None);
    let err = Schema::for_input(&headers(&["LeadID", "ActivityEvent"]), &settings).unwrap_err();
    assert!(
        err.to_string().starts_with("mapped column \"Lead ID\""),
        "{err}"
    );
    let settings = input(&[], &[("ActivityEvent", "201")], None, None);
    let err = Schema::for_input(
        &headers(&["RelatedProspectId", "Code", "activityevent"]),
        &settings,
    )
    .unwrap_err();
    assert!(
        matches!(err, SchemaError::ConstantAndColumn { column: 3, .. }),
        "{err}"
    );
}

#[test]
fn match_by_takes_the_lead_from_search_by_value_or_the_field_column() {
    let settings = input(&[], &[], Some("EmailAddress"), None);
    let s = Schema::for_input(
        &headers(&["EmailAddress", "ActivityEvent", "RelatedProspectId"]),
        &settings,
    )
    .unwrap();
    let item = s
        .check(&row(&[" lead3@example.com ", "201", "not used"]))
        .unwrap();
    assert_eq!(item.related_prospect_id, "lead3@example.com");
    let err = s
        .check(&row(&["lead3", "201", ""]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("EmailAddress: \"lead3\" is not an e-mail"),
        "{err}"
    );
    let err = s.check(&row(&["", "201", ""])).unwrap_err().to_string();
    assert!(err.starts_with("EmailAddress: required"), "{err}");

    let settings = input(&[], &[], Some("Phone"), None);
    let s = Schema::for_input(&headers(&["SearchByValue", "ActivityEvent"]), &settings).unwrap();
    let item = s.check(&row(&["+91 80000 00001", "201"])).unwrap();
    assert_eq!(item.related_prospect_id, "+91 80000 00001");
    let err = Schema::for_input(&headers(&["RelatedProspectId", "ActivityEvent"]), &settings)
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("required column SearchByValue (or Phone) is missing"),
        "{err}"
    );
}

#[test]
fn a_local_time_the_zone_skips_is_invalid_naming_row_column_value_and_why() {
    let settings = input(&[], &[], None, Some("America/New_York"));
    let s = Schema::for_input(
        &headers(&["RelatedProspectId", "ActivityEvent", "ActivityDateTime"]),
        &settings,
    )
    .unwrap();
    let err = s
        .check(&row(&[LEAD, "201", "10/03/2024 02:30"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "ActivityDateTime: \"10/03/2024 02:30\" (row 1) does not exist in America/New_York"
        ),
        "{err}"
    );
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

/// `looks_like_email` as first written, before it was made to run in one pass: the
/// definition the fast one is held to.
fn looks_like_email_by_definition(value: &str) -> bool {
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

proptest::proptest! {
    #[test]
    fn the_email_check_and_the_trim_agree_with_their_definitions(
        value in "[a@. \t\u{b}\u{a0}\u{2003}é]{0,12}",
    ) {
        proptest::prop_assert_eq!(
            looks_like_email(&value),
            looks_like_email_by_definition(&value),
            "{:?}", value
        );
        proptest::prop_assert_eq!(trim(&value), value.trim());
    }
}
