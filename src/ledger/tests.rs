//! Unit tests of `ledger`.

use super::*;
use std::collections::HashSet;

use crate::lsq::api::ActivityItem;

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("l.ledger"), Durability::Normal).unwrap();
    (dir, ledger)
}

fn new_row(number: u64, state: RowState) -> NewRow {
    NewRow {
        number,
        line: number + 1,
        record: ByteRecord::from(vec![format!("lead-{number}"), "a, \"b\"\nc".to_string()]),
        fingerprint: Some(format!("fp{}", number % 3)),
        lead_id: Some(format!("lead-{}", number % 2)),
        state,
        activity_id: None,
        error: None,
        sync_key: None,
        sync_entry: None,
        action: crate::ledger::RowAction::Create,
        target_id: None,
    }
}

#[test]
fn records_round_trip_through_the_encoding() {
    for fields in [
        vec!["a", "b,c", "d\"e", "f\r\ng", ""],
        vec![""],
        vec![],
        vec!["", ""],
    ] {
        let record = ByteRecord::from(fields.clone());
        assert_eq!(
            decode_record(&encode_record(&record)).unwrap(),
            record,
            "{fields:?}"
        );
    }
    let mut raw = ByteRecord::new();
    raw.push_field(b"\xE9t\xE9");
    assert_eq!(decode_record(&encode_record(&raw)).unwrap(), raw);
    assert_eq!(decode_record(b"").unwrap(), ByteRecord::new());
    for broken in [&b"\"open"[..], b"\"a\"b", b"a,\"b"] {
        assert!(decode_record(broken).is_err(), "{broken:?}");
    }
}

proptest::proptest! {
    #[test]
    fn any_record_survives_the_ledger_encoding(
        fields in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12), 0..8)
    ) {
        let record = ByteRecord::from(fields);
        proptest::prop_assert_eq!(decode_record(&encode_record(&record)).unwrap(), record);
    }
}

#[tokio::test]
async fn rows_move_through_their_states_and_read_back_in_order() {
    let (_dir, ledger) = ledger();
    let headers = ByteRecord::from(vec!["RelatedProspectId", "Note"]);
    let run = ledger
        .start_run("import", "/in.csv", "abc", &headers, "{}")
        .unwrap();
    ledger.planned(run).unwrap();
    let n = ledger
        .insert_rows(
            run,
            (1..=30).map(|n| {
                new_row(
                    n,
                    if n == 5 {
                        RowState::Invalid
                    } else {
                        RowState::Pending
                    },
                )
            }),
        )
        .unwrap();
    assert_eq!(n, 30);
    assert_eq!(ledger.headers(run).unwrap(), headers);

    let call = ledger
        .begin_call(run, vec![1, 2, 3], vec![(2, "2024-01-01 00:00:00".into())])
        .await
        .unwrap();
    assert_eq!(
        ledger
            .rows_in_state(run, RowState::InFlight)
            .unwrap()
            .iter()
            .map(|r| r.number)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(ledger.call_counts(run).unwrap(), (1, 1));
    ledger
        .settle(
            run,
            Some(call),
            "created",
            vec![
                RowUpdate::new(1, RowState::Created, Some("id-1".into()), None),
                RowUpdate::new(2, RowState::Created, Some("id-2".into()), None),
                RowUpdate::new(3, RowState::Failed, None, Some("Invalid lead".into())),
            ],
        )
        .await
        .unwrap();
    assert_eq!(ledger.call_counts(run).unwrap(), (1, 0));

    let first = ledger.rows(run, 0, 4).unwrap();
    assert_eq!(
        first.iter().map(|r| r.number).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(first[0].state, RowState::Created);
    assert_eq!(first[0].activity_id.as_deref(), Some("id-1"));
    let attempts: i64 = ledger
        .conn()
        .query_row(
            "SELECT attempts FROM rows WHERE run = ?1 AND row_number = 1",
            params![run],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(attempts, 1);
    assert_eq!(
        first[1].sent_date_time.as_deref(),
        Some("2024-01-01 00:00:00")
    );
    assert_eq!(first[2].error.as_deref(), Some("Invalid lead"));
    assert_eq!(&first[0].record[1], b"a, \"b\"\nc");
    let rest = ledger.rows(run, 4, 1000).unwrap();
    assert_eq!(rest.len(), 26);

    let counts = ledger.counts(run).unwrap();
    assert_eq!(counts[&RowState::Created], 2);
    assert_eq!(counts[&RowState::Pending], 26);
    assert_eq!(counts[&RowState::Invalid], 1);

    let lookup_indexes = |ledger: &Ledger| -> i64 {
        ledger
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' \
                     AND name IN ('rows_by_fingerprint', 'rows_by_lead')",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(
        lookup_indexes(&ledger),
        0,
        "not built until a lookup needs them"
    );
    let known = ledger
        .known_activity_ids(&["lead-1".into(), "lead-0".into()])
        .unwrap();
    assert_eq!(
        known,
        HashSet::from(["id-1".to_string(), "id-2".to_string()])
    );
    assert_eq!(lookup_indexes(&ledger), 2);
    assert!(
        ledger
            .created_ids_with_fingerprint("fp1", run)
            .unwrap()
            .is_empty(),
        "same run excluded"
    );
    let run2 = ledger
        .start_run("import", "/in.csv", "abc", &headers, "{}")
        .unwrap();
    assert_eq!(
        ledger.created_ids_with_fingerprint("fp1", run2).unwrap(),
        vec!["id-1".to_string()]
    );
}

#[test]
fn runs_are_found_by_input_and_status() {
    let (_dir, ledger) = ledger();
    let h = ByteRecord::from(vec!["x"]);
    let half = ledger
        .start_run("import", "/a.csv", "h1", &h, "{}")
        .unwrap();
    assert!(
        ledger.unfinished_run("import", "/a.csv").unwrap().is_none(),
        "a run still being planned is never resumed"
    );
    let a = ledger
        .start_run("import", "/a.csv", "h1", &h, "{}")
        .unwrap();
    assert_eq!(ledger.run(half).unwrap().unwrap().status, "abandoned");
    ledger.planned(a).unwrap();
    assert_eq!(
        ledger
            .unfinished_run("import", "/a.csv")
            .unwrap()
            .map(|r| r.id),
        Some(a)
    );
    assert!(ledger.unfinished_run("import", "/b.csv").unwrap().is_none());
    ledger.finish_run(a, RunStatus::Finished).unwrap();
    assert!(ledger.unfinished_run("import", "/a.csv").unwrap().is_none());
    assert_eq!(
        ledger
            .finished_run("import", "/a.csv")
            .unwrap()
            .map(|r| r.id),
        Some(a)
    );
}

#[test]
fn a_second_process_is_refused_with_the_holder_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.ledger");
    let _first = Ledger::open(&path, Durability::Normal).unwrap();
    let err = Ledger::open(&path, Durability::Normal)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("in use by another lsq-sync")
            && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
}

#[test]
fn fingerprints_ignore_field_order_and_lead_case_but_not_content() {
    let item = |note: &str, fields: &[(&str, &str)], lead: &str| ActivityItem {
        related_prospect_id: lead.into(),
        activity_event: 201,
        activity_note: Some(note.into()),
        activity_owner_email: None,
        activity_date_time: Some("2024-01-01 10:00:00".into()),
        fields: fields
            .iter()
            .map(|(k, v)| crate::lsq::api::FieldValue {
                schema_name: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
    };
    let a = fingerprint(&item(
        "n",
        &[("mx_Custom_1", "a"), ("mx_Custom_2", "b")],
        "ABC",
    ));
    let b = fingerprint(&item(
        "n",
        &[("mx_Custom_2", "b"), ("mx_Custom_1", "a")],
        "abc",
    ));
    let c = fingerprint(&item(
        "n2",
        &[("mx_Custom_1", "a"), ("mx_Custom_2", "b")],
        "abc",
    ));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 32);
}

#[test]
fn hashing_reader_matches_hash_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"hello").unwrap();
    assert_eq!(
        hash_file(&path).unwrap(),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
}
