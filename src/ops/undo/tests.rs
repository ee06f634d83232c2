//! Unit tests of `undo`.

use super::*;

fn created(lead: &str, code: i64, id: &str, date: Option<&str>) -> CreatedActivity {
    CreatedActivity {
        row: 0,
        lead: lead.into(),
        code,
        id: id.into(),
        date: date.map(str::to_string),
    }
}

fn found(id: &str) -> ProspectActivity {
    found_at(id, "2024-01-01 00:00:00")
}

fn found_at(id: &str, date: &str) -> ProspectActivity {
    serde_json::from_value(serde_json::json!({
        "Id": id, "EventCode": 201, "CreatedOn": date
    }))
    .unwrap()
}

/// A ledger with one import run of `headers`, recorded with the given `"input"` options
/// (the shape `plan::input_options` writes).
fn ledger_with_run(dir: &tempfile::TempDir, headers: &[&str], input: serde_json::Value) -> Ledger {
    let ledger = Ledger::open(
        &dir.path().join("report.csv.ledger"),
        crate::ledger::Durability::Normal,
    )
    .unwrap();
    let options = serde_json::json!({ "kind": "import", "input": input }).to_string();
    ledger
        .start_run(
            "import",
            "in.csv",
            "hash",
            &ByteRecord::from(headers.to_vec()),
            &options,
        )
        .unwrap();
    ledger
}

#[test]
fn recorded_input_options_rebuild_the_settings() {
    let input = input_settings_from_options(
        &serde_json::json!({ "kind": "import", "input": {
            "sheet": "Calls",
            "mapping": [["Lead ID", "RelatedProspectId"], ["When", "ActivityDateTime"]],
            "constants": [["ActivityEvent", "201"]],
            "match_by": null,
            "timezone": "Asia/Kolkata",
            "date_format": "dd/MM/yyyy HH:mm",
        }})
        .to_string(),
    )
    .unwrap();
    assert_eq!(
        input.columns.renames(),
        [
            ("Lead ID".to_string(), "RelatedProspectId".to_string()),
            ("When".to_string(), "ActivityDateTime".to_string())
        ]
    );
    assert_eq!(
        input.columns.constants(),
        [("ActivityEvent".to_string(), "201".to_string())]
    );
    assert_eq!(input.dates.zone.map(|z| z.name()), Some("Asia/Kolkata"));
    assert_eq!(
        input.dates.format.as_ref().map(|f| f.as_written()),
        Some("dd/MM/yyyy HH:mm")
    );
    assert_eq!(input.sheet.as_deref(), Some("Calls"));
    // A run recorded before the input options were kept read its columns by name.
    let old = input_settings_from_options(r#"{"kind":"import"}"#).unwrap();
    assert_eq!(old.columns, crate::input::mapping::ColumnMap::default());
    assert!(input_settings_from_options("not json").is_err());
}

#[test]
fn a_mapped_report_is_read_the_way_its_run_read_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger_with_run(
        &dir,
        &["Lead ID", "When", "Notes"],
        serde_json::json!({
            "mapping": [["Lead ID", "RelatedProspectId"], ["When", "ActivityDateTime"]],
            "constants": [["ActivityEvent", "202"]],
        }),
    );
    let report = dir.path().join("report.csv");
    std::fs::write(
        &report,
        "RowNumber,Status,ProspectActivityId,Error,Lead ID,When,Notes\n\
             1,created,ID-1,,{ABCDEF00-0000-0000-0000-000000000001},2024-05-02 10:00:00,hi\n\
             2,failed,,boom,abcdef00-0000-0000-0000-000000000002,2024-05-03 10:00:00,no\n",
    )
    .unwrap();
    assert_eq!(
        from_report(&report, Some(&ledger)).unwrap(),
        vec![CreatedActivity {
            row: 1,
            lead: "abcdef00-0000-0000-0000-000000000001".into(),
            code: 202,
            id: "id-1".into(),
            date: Some("2024-05-02 10:00:00".into()),
        }]
    );
    // Without the ledger the mapped names mean nothing, and the message says what helps.
    let plain = from_report(&report, None).unwrap_err().to_string();
    assert!(plain.contains("--ledger"), "{plain}");
}

#[test]
fn a_match_by_run_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ledger_with_run(
        &dir,
        &["Email", "ActivityEvent"],
        serde_json::json!({
            "mapping": [["Email", "SearchByValue"]],
            "match_by": "EmailAddress",
        }),
    );
    let message = match from_ledger(&ledger, None) {
        Err(e @ UndoError::MatchBy { .. }) => e.to_string(),
        other => panic!("expected a --match-by refusal, got {other:?}"),
    };
    assert!(message.contains("--match-by EmailAddress"), "{message}");
}

#[test]
fn groups_by_lead_and_code_with_the_smallest_covering_window() {
    let groups = group(&[
        created("a", 201, "1", Some("2024-05-03 10:00:00")),
        created("a", 201, "2", Some("2024-05-01 09:00:00")),
        created("b", 201, "3", Some("2024-06-01 00:00:00")),
        created("a", 202, "4", None),
        created("a", 201, "5", Some("2024-05-02 00:00:00")),
    ]);
    assert_eq!(groups.len(), 3);
    assert_eq!((groups[0].lead.as_str(), groups[0].code), ("a", 201));
    assert_eq!(groups[0].ids.len(), 3);
    assert_eq!(
        groups[0].window.from.as_deref(),
        Some("2024-05-01 09:00:00")
    );
    assert_eq!(groups[0].window.to.as_deref(), Some("2024-05-03 10:00:00"));
    assert_eq!(groups[2].undated, vec!["4".to_string()]);
}

/// `(id, date)` pairs as a listing returns them.
fn listing(items: &[(&str, &str)]) -> Vec<ProspectActivity> {
    items.iter().map(|(id, date)| found_at(id, date)).collect()
}

fn window(from: &str, to: &str) -> DeleteWindow {
    DeleteWindow {
        from: Some(from.into()),
        to: Some(to.into()),
    }
}

#[test]
fn windows_are_cut_around_foreign_activities_and_a_shared_second_is_left() {
    let g = &group(&[
        created("a", 201, "o1", Some("2024-05-01 10:00:00")),
        created("a", 201, "o2", Some("2024-05-01 11:00:00")),
        created("a", 201, "o3", Some("2024-05-01 12:00:00")),
        created("a", 201, "o4", Some("2024-05-01 13:00:00")),
        created("a", 201, "o5", Some("2024-05-01 14:00:00")),
    ])[0];
    let found = listing(&[
        ("O1", "2024-05-01 10:00:00"),
        ("o2", "2024-05-01 11:00:00"),
        ("f1", "2024-05-01 11:30:00"),
        ("o3", "2024-05-01 12:00:00"),
        ("f2", "2024-05-01 13:00:00"),
        ("o4", "2024-05-01 13:00:00"),
        ("o5", "2024-05-01 14:00:00"),
        ("o5", "2024-05-01 14:00:00"),
    ]);
    let Decision::Delete {
        cuts,
        left,
        avoided,
    } = judge(g, &found, false)
    else {
        panic!("expected windows");
    };
    let windows: Vec<_> = cuts
        .iter()
        .map(|c| (c.window.clone(), c.ids.clone()))
        .collect();
    assert_eq!(
        windows,
        vec![
            (
                window("2024-05-01 10:00:00", "2024-05-01 11:00:00"),
                vec!["o1".to_string(), "o2".into()]
            ),
            (
                window("2024-05-01 12:00:00", "2024-05-01 12:00:00"),
                vec!["o3".to_string()]
            ),
            // f2 shares o4's second: it cuts there like any foreign activity.
            (
                window("2024-05-01 14:00:00", "2024-05-01 14:00:00"),
                vec!["o5".to_string()]
            ),
        ]
    );
    assert!(cuts.iter().all(|c| c.forced_foreign.is_empty()));
    assert_eq!(
        left,
        vec![Left {
            at: "2024-05-01 13:00:00".into(),
            ours: vec!["o4".into()],
            foreign: vec!["f2".into()],
        }]
    );
    assert_eq!(avoided, vec!["f1".to_string(), "f2".into()]);
}

#[test]
fn force_takes_the_whole_window_in_one_call() {
    let g = &group(&[
        created("a", 201, "ours", Some("2024-05-01 00:00:00")),
        created("a", 201, "more", Some("2024-05-03 00:00:00")),
    ])[0];
    let found = listing(&[
        ("ours", "2024-05-01 00:00:00"),
        ("theirs", "2024-05-02 00:00:00"),
        ("more", "2024-05-03 00:00:00"),
    ]);
    assert_eq!(
        judge(g, &found, true),
        Decision::Delete {
            cuts: vec![Cut {
                window: g.window.clone(),
                ids: vec!["ours".into(), "more".into()],
                forced_foreign: vec!["theirs".into()],
            }],
            left: vec![],
            avoided: vec![],
        }
    );
    let Decision::Delete { cuts, .. } = judge(g, &found, false) else {
        panic!("expected windows");
    };
    assert_eq!(cuts.len(), 2);
}

#[test]
fn nothing_left_and_unreadable_dates() {
    let g = &group(&[created("a", 201, "ours", Some("2024-05-01 00:00:00"))])[0];
    assert_eq!(judge(g, &[found("theirs")], false), Decision::NothingLeft);
    let odd = listing(&[("ours", "2024-05-01 00:00:00"), ("theirs", "May 1st")]);
    match judge(g, &odd, false) {
        Decision::Refuse { reason } => assert!(reason.contains("theirs"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A fraction of a second is read as its second.
    let precise = listing(&[("ours", "2024-05-01 00:00:00.250")]);
    assert!(matches!(
        judge(g, &precise, false),
        Decision::Delete { ref cuts, .. } if cuts.len() == 1
    ));
}

#[test]
fn plan_windows_examples() {
    assert_eq!(plan_windows(&[], &[5]), SecondsPlan::default());
    assert_eq!(
        plan_windows(&[3, 1, 2, 2], &[]),
        SecondsPlan {
            windows: vec![(1, 3)],
            shared: vec![]
        }
    );
    // A foreign second between two imported ones cuts; one outside does not.
    assert_eq!(
        plan_windows(&[10, 20, 30, 40], &[0, 15, 16, 35, 50]),
        SecondsPlan {
            windows: vec![(10, 10), (20, 30), (40, 40)],
            shared: vec![]
        }
    );
    // A shared second is left, and cuts like any foreign second.
    assert_eq!(
        plan_windows(&[10, 20, 30], &[20]),
        SecondsPlan {
            windows: vec![(10, 10), (30, 30)],
            shared: vec![20]
        }
    );
    // Adjacent seconds: the window ends one second before the foreign one.
    assert_eq!(
        plan_windows(&[9, 11], &[10]),
        SecondsPlan {
            windows: vec![(9, 9), (11, 11)],
            shared: vec![]
        }
    );
}

proptest::proptest! {
    /// Every imported second is covered unless it is foreign too; no window holds a foreign
    /// second; windows are ordered and disjoint; and their number is the least possible:
    /// the maximal runs of imported (not shared) seconds with no foreign second between.
    #[test]
    fn plan_windows_covers_avoids_and_is_minimal(
        ours in proptest::collection::vec(0i64..200, 0..60),
        foreign in proptest::collection::vec(0i64..200, 0..30),
    ) {
        let plan = plan_windows(&ours, &foreign);
        let inside = |s: i64| plan.windows.iter().any(|&(f, t)| f <= s && s <= t);
        for &s in &ours {
            let is_foreign = foreign.contains(&s);
            proptest::prop_assert_eq!(inside(s), !is_foreign, "second {}", s);
            proptest::prop_assert_eq!(plan.shared.contains(&s), is_foreign, "second {}", s);
        }
        for &s in &foreign {
            proptest::prop_assert!(!inside(s), "foreign second {} in a window", s);
        }
        for &(f, t) in &plan.windows {
            proptest::prop_assert!(f <= t);
            proptest::prop_assert!(ours.contains(&f) && ours.contains(&t), "snug");
        }
        for pair in plan.windows.windows(2) {
            proptest::prop_assert!(pair[0].1 < pair[1].0);
        }
        // The lower bound, counted independently: walk every second in order and count
        // the imported runs that a foreign second ends.
        let mut runs = 0;
        let mut in_run = false;
        for s in 0..200 {
            if foreign.contains(&s) {
                in_run = false;
            } else if ours.contains(&s) && !in_run {
                runs += 1;
                in_run = true;
            }
        }
        proptest::prop_assert_eq!(plan.windows.len(), runs);
    }
}
