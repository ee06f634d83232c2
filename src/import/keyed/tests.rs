//! Unit tests of the keyed sync's classification: the rule (`decide`), what a row's entry
//! holds, and a whole run classified against a key map in a temp ledger.

use super::*;
use crate::ledger::{Durability, RowUpdate};
use crate::lsq::api::FieldValue;

const LEAD_A: &str = "2bf6a491-c144-4ac9-90f9-f52b6fc44413";
const LEAD_B: &str = "75b830bc-e03a-4b69-a80e-b7503a6cbdd9";

fn item(lead: &str, note: &str, fields: &[(&str, &str)]) -> ActivityItem {
    ActivityItem {
        related_prospect_id: lead.to_string(),
        activity_event: 201,
        activity_note: Some(note.to_string()),
        activity_owner_email: Some("Asha.Rao@example.com".to_string()),
        activity_date_time: Some("2024-05-01 10:00:00".to_string()),
        fields: fields
            .iter()
            .map(|(n, v)| FieldValue {
                schema_name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
    }
}

fn known(key: &str, entry: KeyEntry) -> KnownKey {
    KnownKey {
        key: key.to_string(),
        activity_id: "act-1".to_string(),
        entry,
    }
}

#[test]
fn entries_compare_content_not_field_order_and_leave_the_key_field_out() {
    let a = entry_of(
        &item(LEAD_A, "n", &[("mx_Custom_1", "x"), ("mx_Custom_2", "y")]),
        None,
    );
    let b = entry_of(
        &item(LEAD_A, "n", &[("mx_Custom_2", "y"), ("mx_Custom_1", "x")]),
        None,
    );
    assert_eq!(a, b);
    assert_eq!(a.owner.as_deref(), Some("asha.rao@example.com"));
    assert_eq!(a.fields, vec!["mx_Custom_1", "mx_Custom_2"]);

    let stamped = entry_of(
        &item(
            LEAD_A,
            "n",
            &[
                ("mx_Custom_1", "x"),
                ("mx_Custom_2", "y"),
                ("mx_Custom_9", "C-1"),
            ],
        ),
        Some("mx_Custom_9"),
    );
    assert_eq!(stamped.content, a.content, "the key field is not content");
    assert_eq!(stamped.fields, a.fields);

    let edited = entry_of(
        &item(
            LEAD_A,
            "n (edited)",
            &[("mx_Custom_1", "x"), ("mx_Custom_2", "y")],
        ),
        None,
    );
    assert_ne!(edited.content, a.content);
    // An empty note is no note, and an empty field no field.
    let empty = entry_of(&item(LEAD_A, "", &[("mx_Custom_1", "")]), None);
    let none = entry_of(
        &ActivityItem {
            activity_note: None,
            fields: Vec::new(),
            ..item(LEAD_A, "", &[])
        },
        None,
    );
    assert_eq!(empty.content, none.content);
    assert!(empty.fields.is_empty());
}

#[test]
fn a_row_is_unchanged_updated_or_a_conflict_naming_what_moved() {
    let was = entry_of(&item(LEAD_A, "n", &[("mx_Custom_1", "x")]), None);
    let k = known("C-1", was.clone());
    assert_eq!(decide(&was, &k, false), Decision::Unchanged);

    let note = entry_of(&item(LEAD_A, "n2", &[("mx_Custom_1", "x")]), None);
    assert_eq!(decide(&note, &k, false), Decision::Update);
    let field = entry_of(&item(LEAD_A, "n", &[("mx_Custom_1", "z")]), None);
    assert_eq!(decide(&field, &k, false), Decision::Update);

    let moved = entry_of(&item(LEAD_B, "n", &[("mx_Custom_1", "x")]), None);
    match decide(&moved, &k, false) {
        Decision::Conflict(why) => {
            assert!(why.contains("C-1") && why.contains("act-1"), "{why}");
            assert!(why.contains(LEAD_B) && why.contains(LEAD_A), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(decide(&moved, &k, true), Decision::Replace);

    let mut redated = was.clone();
    redated.date = Some("2024-05-02 10:00:00".into());
    assert!(
        matches!(decide(&redated, &k, false), Decision::Conflict(w) if w.contains("ActivityDateTime"))
    );
    let mut recoded = was.clone();
    recoded.event = 202;
    assert!(
        matches!(decide(&recoded, &k, false), Decision::Conflict(w) if w.contains("ActivityEvent"))
    );
    let mut reowned = was.clone();
    reowned.owner = Some("vikram.mehta@example.com".into());
    assert!(
        matches!(decide(&reowned, &k, false), Decision::Conflict(w) if w.contains("ActivityOwnerEmail"))
    );
}

#[test]
fn what_the_key_map_cannot_know_is_not_held_against_a_row() {
    let row = entry_of(&item(LEAD_A, "n", &[]), None);
    // A row without a date: the activity's date was chosen for it, not the source's.
    let mut undated = row.clone();
    undated.date = None;
    assert_eq!(
        decide(&undated, &known("k", row.clone()), false),
        Decision::Unchanged
    );
    // An entry read back from an account that does not say who owns it, nor the note.
    let mut from_account = row.clone();
    from_account.owner = None;
    from_account.owner_known = false;
    from_account.content = None;
    assert_eq!(
        decide(&row, &known("k", from_account), false),
        Decision::Update,
        "content unknown: updated (idempotent) rather than trusted"
    );
}

#[test]
fn the_key_column_is_found_without_case_and_named_when_missing() {
    let headers = ByteRecord::from(vec!["RelatedProspectId", " callid ", "ActivityEvent"]);
    let sync = SyncSettings {
        key: Some("CallId".into()),
        key_field: Some("mx_Custom_9".into()),
        ..SyncSettings::default()
    };
    let key = KeyColumn::find(&headers, &sync).unwrap().unwrap();
    assert_eq!((key.index, key.name.as_str()), (1, "callid"));
    assert_eq!(
        key.key_of(&ByteRecord::from(vec!["x", "  C-7 ", "201"])),
        Some("C-7".to_string())
    );
    assert_eq!(key.key_of(&ByteRecord::from(vec!["x", "  ", "201"])), None);
    let mut stamped = item(LEAD_A, "n", &[("mx_Custom_9", "old")]);
    key.stamp(&mut stamped, "C-7");
    assert_eq!(stamped.fields.len(), 1);
    assert_eq!(stamped.fields[0].value, "C-7");

    let err = KeyColumn::find(
        &ByteRecord::from(vec!["RelatedProspectId", "ActivityEvent"]),
        &sync,
    )
    .unwrap_err();
    assert!(
        err.contains("\"CallId\"") && err.contains("RelatedProspectId"),
        "{err}"
    );
    assert_eq!(
        KeyColumn::find(&headers, &SyncSettings::default()),
        Ok(None)
    );
}

/// A ledger whose key map knows `C-1` .. `C-4` (created by run 1), and run 2 over `rows`:
/// `(key, lead, note)`, a key of `None` being an empty cell, planned as `plan_run` plans a keyed
/// run (each row classified as it is recorded, then duplicates and missing keys).
fn second_run(
    rows: &[(Option<&str>, &str, &str)],
    sync: &SyncSettings,
) -> (tempfile::TempDir, Ledger, i64, SyncPlan) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("k.ledger"), Durability::Normal).unwrap();
    let headers = ByteRecord::from(vec!["CallId", "RelatedProspectId", "ActivityNote"]);
    let key = KeyColumn::find(&headers, sync).unwrap().unwrap();
    let row = |number: u64, key: Option<&str>, lead: &str, note: &str| {
        let entry = entry_of(&item(lead, note, &[]), None);
        let new = NewRow {
            number,
            line: number + 1,
            record: ByteRecord::from(vec![key.unwrap_or(""), lead, note]),
            fingerprint: None,
            lead_id: Some(lead.to_string()),
            state: RowState::Pending,
            activity_id: None,
            error: None,
            sync_key: key.map(str::to_string),
            sync_entry: key.and(serde_json::to_string(&entry).ok()),
            action: RowAction::Create,
            target_id: None,
        };
        (new, entry)
    };
    let first = ledger
        .start_run("import", "in", "h1", &headers, "{}")
        .unwrap();
    let keys = ["C-1", "C-2", "C-3", "C-4"];
    ledger
        .insert_rows(
            first,
            keys.iter()
                .zip(1..)
                .map(|(k, n)| row(n, Some(k), LEAD_A, "n").0),
        )
        .unwrap();
    let created = (1..=4)
        .map(|n| RowUpdate::new(n, RowState::Created, Some(format!("act-{n}")), None))
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(ledger.settle(first, None, "answered", created))
        .unwrap();
    let run = ledger
        .start_run("import", "in", "h2", &headers, "{}")
        .unwrap();
    let mut classifier = Classifier::new(sync.clone(), ledger.known_key_count().unwrap());
    let planned: Vec<NewRow> = rows
        .iter()
        .zip(1..)
        .map(|((k, lead, note), n)| {
            let (mut new, entry) = row(n, *k, lead, note);
            classifier.note_key(new.sync_key.as_deref(), new.number, new.line);
            if let Some(key) = &new.sync_key {
                let known = ledger.known_key(key).unwrap();
                classifier.classify(&mut new, &entry, known.as_ref());
            }
            new
        })
        .collect();
    ledger.insert_rows(run, planned).unwrap();
    classifier.settle_duplicates(&ledger, run).unwrap();
    classifier.add_missing(&ledger, run, &key, 3).unwrap();
    (dir, ledger, run, classifier.plan)
}

#[test]
fn a_run_is_classified_against_the_keys_earlier_runs_created() {
    let sync = SyncSettings {
        key: Some("CallId".into()),
        ..SyncSettings::default()
    };
    let (_dir, ledger, run, plan) = second_run(
        &[
            (Some("C-1"), LEAD_A, "n"),
            (Some("C-2"), LEAD_A, "n (edited)"),
            (Some("C-3"), LEAD_B, "n"),
            (Some("C-9"), LEAD_A, "new"),
        ],
        &sync,
    );
    assert_eq!(
        (plan.unchanged, plan.update, plan.conflict, plan.create),
        (1, 1, 1, 1)
    );
    assert_eq!((plan.missing_kept, plan.delete, plan.known), (1, 0, 4));
    let rows = ledger.rows(run, 0, 10).unwrap();
    assert_eq!(rows[0].state, RowState::Unchanged);
    assert_eq!(rows[0].activity_id.as_deref(), Some("act-1"));
    assert_eq!(
        (rows[1].state, rows[1].action, rows[1].target_id.as_deref()),
        (RowState::Pending, RowAction::Update, Some("act-2"))
    );
    assert_eq!(rows[2].state, RowState::Conflict);
    assert_eq!(
        (rows[3].state, rows[3].action),
        (RowState::Pending, RowAction::Create)
    );
}

#[test]
fn keys_the_input_lacks_are_deleted_only_when_every_key_could_be_read() {
    let sync = SyncSettings {
        key: Some("CallId".into()),
        delete_missing: true,
        ..SyncSettings::default()
    };
    let (_dir, ledger, run, plan) = second_run(
        &[(Some("C-1"), LEAD_A, "n"), (Some("C-2"), LEAD_A, "n")],
        &sync,
    );
    assert_eq!(plan.delete, 2);
    let rows = ledger.rows(run, 2, 10).unwrap();
    let deleting: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.number,
                r.line,
                r.action,
                r.target_id.as_deref(),
                r.sync_key.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        deleting,
        vec![
            (
                3,
                NO_INPUT_LINE,
                RowAction::Delete,
                Some("act-3"),
                Some("C-3")
            ),
            (
                4,
                NO_INPUT_LINE,
                RowAction::Delete,
                Some("act-4"),
                Some("C-4")
            ),
        ]
    );
    assert_eq!(rows[0].record, ByteRecord::from(vec!["C-3", "", ""]));

    // A row whose key is empty could be C-3 or C-4: nothing is deleted.
    let (_dir, _, _, plan) = second_run(&[(Some("C-1"), LEAD_A, "n"), (None, LEAD_A, "n")], &sync);
    assert_eq!((plan.delete, plan.missing_kept), (0, 3));
}

#[test]
fn a_key_held_by_two_rows_makes_both_invalid_and_names_them() {
    let sync = SyncSettings {
        key: Some("CallId".into()),
        ..SyncSettings::default()
    };
    let (_dir, ledger, run, plan) = second_run(
        &[
            (Some("C-8"), LEAD_A, "a"),
            (Some("C-1"), LEAD_A, "n"),
            (Some("C-8"), LEAD_B, "b"),
        ],
        &sync,
    );
    assert_eq!((plan.bad_keys, plan.unchanged, plan.create), (2, 1, 0));
    let rows = ledger.rows(run, 0, 10).unwrap();
    for row in [&rows[0], &rows[2]] {
        assert_eq!(row.state, RowState::Invalid);
        let error = row.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("\"C-8\"")
                && error.contains("row 1 (line 2)")
                && error.contains("row 3 (line 4)"),
            "{error}"
        );
    }
}
