//! Unit tests of `resolve`.

use super::*;
use std::time::Duration;

use crate::lsq::api::{FieldValue, KeyValue};
use crate::lsq::calls::{Api, RetryPolicy};
use crate::lsq::client::LsqClient;
use crate::lsq::counters::RunStats;
use crate::simulator::{FaultConfig, RunningSimulator, SimConfig, demo_lead_id};

const LEAD: &str = "3a6d5ea2-400e-4a2f-a728-fbfa0b0c1ddf";
const WHEN: &str = "2025-03-01 10:00:00";

fn row(
    lead: &str,
    code: i64,
    date: Option<&str>,
    note: Option<&str>,
    fields: &[(&str, &str)],
) -> ActivityItem {
    ActivityItem {
        related_prospect_id: lead.to_string(),
        activity_event: code,
        activity_note: note.map(str::to_string),
        activity_owner_email: Some("asha.rao@example.com".into()),
        activity_date_time: date.map(str::to_string),
        fields: fields
            .iter()
            .map(|(k, v)| FieldValue {
                schema_name: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
    }
}

fn activity(
    id: &str,
    lead: &str,
    code: i64,
    date: &str,
    note: &str,
    fields: serde_json::Value,
) -> ProspectActivity {
    let mut activity_fields = fields.as_object().cloned().unwrap_or_default();
    // The server's own entries, which matching must ignore.
    activity_fields.insert("Status".into(), "Active".into());
    activity_fields.insert(
        "Owner".into(),
        "bf8ce802-836f-11e7-8758-0a106ee76b21".into(),
    );
    ProspectActivity {
        id: id.to_string(),
        event_code: code,
        event_name: "Webinar Attended".into(),
        activity_score: 0,
        created_on: date.to_string(),
        activity_type: 2,
        is_email_type: false,
        direction: "Inbound".into(),
        session_id: id.to_string(),
        related_prospect_id: lead.to_string(),
        data: vec![
            KeyValue {
                key: "CreatedByName".into(),
                value: "Asha Rao".into(),
            },
            KeyValue {
                key: DATA_KEY_NOTE.into(),
                value: note.to_string(),
            },
        ],
        activity_fields,
        modified_on: date.to_string(),
    }
}

fn none() -> HashSet<String> {
    HashSet::new()
}

fn ids(v: &[&str]) -> Vec<Option<String>> {
    v.iter()
        .map(|s| (!s.is_empty()).then(|| s.to_string()))
        .collect()
}

#[test]
fn matches_same_content_whatever_the_field_order_case_of_lead_and_owner() {
    let r = row(
        &LEAD.to_uppercase(),
        201,
        Some(WHEN),
        Some("hello"),
        &[("mx_Custom_2", "b"), ("mx_Custom_1", "a")],
    );
    let found = [activity(
        "act-1",
        LEAD,
        201,
        WHEN,
        "hello",
        serde_json::json!({"mx_Custom_1": "a", "mx_Custom_2": "b"}),
    )];
    assert_eq!(match_rows(&[&r], &found, &none()), ids(&["act-1"]));
}

#[test]
fn empty_note_is_no_note_but_different_notes_differ() {
    let found = [
        activity("with-note", LEAD, 201, WHEN, "hi", serde_json::json!({})),
        activity("no-note", LEAD, 201, WHEN, "", serde_json::json!({})),
    ];
    let empty = row(LEAD, 201, Some(WHEN), Some(""), &[]);
    let absent = row(LEAD, 201, Some(WHEN), None, &[]);
    let other = row(LEAD, 201, Some(WHEN), Some("bye"), &[]);
    let same = row(LEAD, 201, Some(WHEN), Some("hi"), &[]);
    assert_eq!(match_rows(&[&empty], &found, &none()), ids(&["no-note"]));
    assert_eq!(match_rows(&[&absent], &found, &none()), ids(&["no-note"]));
    assert_eq!(match_rows(&[&other], &found, &none()), ids(&[""]));
    assert_eq!(match_rows(&[&same], &found, &none()), ids(&["with-note"]));
}

#[test]
fn identical_rows_need_as_many_distinct_activities() {
    let r = row(LEAD, 202, Some(WHEN), Some("n"), &[("mx_Custom_1", "x")]);
    let found = [
        activity(
            "a",
            LEAD,
            202,
            WHEN,
            "n",
            serde_json::json!({"mx_Custom_1": "x"}),
        ),
        activity(
            "b",
            LEAD,
            202,
            WHEN,
            "n",
            serde_json::json!({"mx_Custom_1": "x"}),
        ),
        // Listed twice: still one activity.
        activity(
            "b",
            LEAD,
            202,
            WHEN,
            "n",
            serde_json::json!({"mx_Custom_1": "x"}),
        ),
    ];
    assert_eq!(
        match_rows(&[&r, &r, &r], &found, &none()),
        ids(&["a", "b", ""])
    );
}

#[test]
fn known_ids_are_never_claimed() {
    let r = row(LEAD, 202, Some(WHEN), None, &[]);
    let found = [
        activity("A-1", LEAD, 202, WHEN, "", serde_json::json!({})),
        activity("a-2", LEAD, 202, WHEN, "", serde_json::json!({})),
    ];
    let known: HashSet<String> = ["a-1".to_string()].into();
    assert_eq!(match_rows(&[&r, &r], &found, &known), ids(&["a-2", ""]));
    let both: HashSet<String> = ["a-1".to_string(), "A-2".to_string()].into();
    assert_eq!(match_rows(&[&r], &found, &both), ids(&[""]));
}

#[test]
fn any_difference_in_lead_code_date_or_fields_means_no_match() {
    let base = row(LEAD, 201, Some(WHEN), None, &[("mx_Custom_1", "a")]);
    let found = [activity(
        "act",
        LEAD,
        201,
        WHEN,
        "",
        serde_json::json!({"mx_Custom_1": "a"}),
    )];
    assert_eq!(match_rows(&[&base], &found, &none()), ids(&["act"]));
    let other_lead = row(
        "00000000-0000-4000-8000-000000000001",
        201,
        Some(WHEN),
        None,
        &[("mx_Custom_1", "a")],
    );
    let other_code = row(LEAD, 202, Some(WHEN), None, &[("mx_Custom_1", "a")]);
    let other_date = row(
        LEAD,
        201,
        Some("2025-03-01 10:00:01"),
        None,
        &[("mx_Custom_1", "a")],
    );
    let other_value = row(LEAD, 201, Some(WHEN), None, &[("mx_Custom_1", "b")]);
    let other_name = row(LEAD, 201, Some(WHEN), None, &[("mx_Custom_2", "a")]);
    let extra_field = row(
        LEAD,
        201,
        Some(WHEN),
        None,
        &[("mx_Custom_1", "a"), ("mx_Custom_3", "c")],
    );
    let missing_field = row(LEAD, 201, Some(WHEN), None, &[]);
    let no_date = row(LEAD, 201, None, None, &[("mx_Custom_1", "a")]);
    for r in [
        &other_lead,
        &other_code,
        &other_date,
        &other_value,
        &other_name,
        &extra_field,
        &missing_field,
        &no_date,
    ] {
        assert_eq!(match_rows(&[r], &found, &none()), ids(&[""]), "{r:?}");
    }
}

#[test]
fn field_values_compare_as_text_and_empty_values_are_absent() {
    let r = row(
        LEAD,
        204,
        Some("2025-3-1 10:00:00"),
        None,
        &[
            ("mx_Custom_1", "5"),
            ("mx_Custom_2", ""),
            ("mx_Custom_3", "true"),
        ],
    );
    let found = [activity(
        "act",
        LEAD,
        204,
        WHEN,
        "",
        serde_json::json!({"mx_Custom_1": 5, "mx_Custom_3": true, "mx_Custom_4": "", "mx_Custom_5": null}),
    )];
    assert_eq!(match_rows(&[&r], &found, &none()), ids(&["act"]));
    // A JSON string compares by its content, not its quoted JSON text.
    let quoted = row(LEAD, 204, Some(WHEN), None, &[("mx_Custom_1", "\"5\"")]);
    let string_five = [activity(
        "s",
        LEAD,
        204,
        WHEN,
        "",
        serde_json::json!({"mx_Custom_1": "5"}),
    )];
    assert_eq!(match_rows(&[&quoted], &string_five, &none()), ids(&[""]));
}

#[test]
fn rows_take_candidates_in_the_order_found() {
    let early = row(LEAD, 201, Some(WHEN), None, &[]);
    let late = row(LEAD, 201, Some("2025-03-02 10:00:00"), None, &[]);
    let found = [
        activity(
            "late",
            LEAD,
            201,
            "2025-03-02 10:00:00",
            "",
            serde_json::json!({}),
        ),
        activity("early-1", LEAD, 201, WHEN, "", serde_json::json!({})),
        activity("early-2", LEAD, 201, WHEN, "", serde_json::json!({})),
    ];
    assert_eq!(
        match_rows(&[&early, &late, &early], &found, &none()),
        ids(&["early-1", "late", "early-2"])
    );
}

// ---- activities listed account-wide by code ----

fn event_activity(id: &str, lead: &str, date: &str, note: Option<&str>) -> EventActivity {
    EventActivity {
        id: id.to_string(),
        lead_id: lead.to_string(),
        event: 201,
        date: Some(date.to_string()),
        modified_on: Some("2026-12-06 10:04:12".into()),
        note: note.map(str::to_string),
        owner: None,
        fields: [("mx_Custom_1".to_string(), "a".to_string())].into(),
    }
}

#[test]
fn account_wide_items_match_by_the_same_rules_and_never_on_a_missing_note() {
    let r = row(
        &LEAD.to_uppercase(),
        201,
        Some("2025-3-1 10:00:00"),
        Some("hello"),
        &[("mx_Custom_1", "a"), ("mx_Custom_2", "")],
    );
    let bare = row(LEAD, 201, Some(WHEN), None, &[("mx_Custom_1", "a")]);
    let found = [
        // Listed without a note field: its note cannot be compared, so it is claimed by nothing.
        event_activity("no-note-field", LEAD, WHEN, None),
        event_activity("known", LEAD, WHEN, Some("hello")),
        event_activity("hello", LEAD, WHEN, Some("hello")),
        // An empty note listed as "" is no note.
        event_activity("empty", LEAD, WHEN, Some("")),
        event_activity("other-date", LEAD, "2025-03-01 10:00:01", Some("hello")),
    ];
    let known: HashSet<String> = ["KNOWN".to_string()].into();
    assert_eq!(
        match_event_rows(&[&r, &bare, &r], &found, &known),
        ids(&["hello", "empty", ""])
    );
    // The same activity as Get Activities of a Lead lists it matches the same row.
    let same = activity(
        "hello",
        LEAD,
        201,
        WHEN,
        "hello",
        serde_json::json!({"mx_Custom_1": "a"}),
    );
    assert_eq!(match_rows(&[&r], &[same], &none()), ids(&["hello"]));
}

// ---- resolve against the simulator ----

#[tokio::test]
async fn rows_committed_behind_a_dropped_connection_are_found_and_not_claimed_twice() {
    let config = SimConfig {
        rate: None,
        faults: FaultConfig {
            commit_then_drop: 1.0,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    };
    let (access, secret) = (config.access_key.clone(), config.secret_key.clone());
    let sim = RunningSimulator::start(config).await.unwrap();
    let client = LsqClient::for_tests(&sim.base_url(), access, secret);
    let fetcher = Fetcher {
        api: Api::for_tests(
            client.clone(),
            "1000/1s",
            RetryPolicy {
                max_attempts: 3,
                base: Duration::from_millis(10),
                max: Duration::from_millis(50),
            },
        ),
        page_size: 25,
    };
    let (a, b) = (demo_lead_id(3), demo_lead_id(4));
    let batch = [
        row(
            &a,
            201,
            Some("2025-03-01 10:00:00"),
            Some("first"),
            &[("mx_Custom_1", "x")],
        ),
        row(
            &a,
            201,
            Some("2025-03-01 10:00:00"),
            Some("first"),
            &[("mx_Custom_1", "x")],
        ),
        row(
            &a,
            202,
            Some("2025-03-02 11:30:00"),
            None,
            &[("mx_Custom_2", "y"), ("mx_Custom_1", "z")],
        ),
        row(
            &b.to_uppercase(),
            203,
            Some("2025-03-05 08:15:00"),
            Some("call"),
            &[],
        ),
        row(
            &b,
            201,
            Some("2025-02-27 23:59:59"),
            None,
            &[("mx_Custom_3", "w")],
        ),
    ];
    let rows: Vec<&ActivityItem> = batch.iter().collect();

    // The first post: the client sees a failure, but the rows were created.
    assert!(client.post_bulk(&rows).await.is_err());
    let first_created: Vec<String> = sim
        .sim
        .activities()
        .into_iter()
        .filter(|s| s.created_by_request.is_some())
        .map(|s| s.id)
        .collect();
    assert_eq!(first_created.len(), rows.len());
    let resolved = resolve(&fetcher, &rows, &HashSet::new()).await.unwrap();
    let first: Vec<String> = resolved.iter().map(|r| r.clone().unwrap()).collect();
    assert_eq!(
        first.iter().collect::<HashSet<_>>(),
        first_created.iter().collect::<HashSet<_>>()
    );
    // Each row got an activity with its own content (the two identical rows either one).
    let stored = sim.sim.activities();
    for (row, id) in rows.iter().zip(&first) {
        let s = stored.iter().find(|s| &s.id == id).unwrap();
        assert_eq!(s.lead_id, row.related_prospect_id.to_lowercase());
        assert_eq!(s.event_code, row.activity_event);
        assert_eq!(Some(&s.date_time), row.activity_date_time.as_ref());
        assert_eq!(s.note, row.activity_note);
    }

    // The same batch again: now every row exists twice, and the first copies are taken.
    assert!(client.post_bulk(&rows).await.is_err());
    let known: HashSet<String> = first.iter().cloned().collect();
    let second_created: HashSet<String> = sim
        .sim
        .activities()
        .into_iter()
        .filter(|s| s.created_by_request.is_some() && !known.contains(&s.id))
        .map(|s| s.id)
        .collect();
    assert_eq!(second_created.len(), rows.len());
    let again = resolve(&fetcher, &rows, &known).await.unwrap();
    let second: HashSet<String> = again.iter().map(|r| r.clone().unwrap()).collect();
    assert_eq!(second, second_created);

    // With both batches known, nothing is left to claim.
    let all: HashSet<String> = known.union(&second).cloned().collect();
    assert_eq!(
        resolve(&fetcher, &rows, &all).await.unwrap(),
        vec![None; rows.len()]
    );
    // One read per lead, whatever codes its rows have: a (201 and 202) and b (203 and 201).
    assert_eq!(RunStats::get(&fetcher.api.stats.calls), 3 * 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_leads_and_undated_rows_resolve_to_none_without_error() {
    let sim = RunningSimulator::start(SimConfig {
        rate: None,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let config = sim.sim.config().clone();
    let fetcher = Fetcher::new(Api::for_tests(
        LsqClient::for_tests(&sim.base_url(), config.access_key, config.secret_key),
        "1000/1s",
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
    ));
    let missing = row(
        "00000000-0000-4000-8000-000000000404",
        201,
        Some(WHEN),
        None,
        &[],
    );
    let undated = row(&demo_lead_id(5), 201, None, None, &[]);
    let resolved = resolve(&fetcher, &[&missing, &undated], &none())
        .await
        .unwrap();
    assert_eq!(resolved, vec![None, None]);
    // Only the dated row's lead was read.
    assert_eq!(RunStats::get(&fetcher.api.stats.calls), 1);
    sim.shutdown().await;
}
