//! Unit tests of `by_event`: the paging against in-memory servers of every shape, and the
//! lenient reading of items.

use super::*;
use serde_json::json;

fn guid(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn item(n: u64, code: i64) -> Map<String, Value> {
    let value = json!({
        "ProspectActivityId": guid(n),
        "RelatedProspectId": guid(1_000_000 + n % 7),
        "ActivityType": "2",
        "ActivityEvent": code.to_string(),
        "Status": "Active",
        "CreatedOn": "2024-05-01 10:00:00",
        "ModifiedOn": "2024-05-02 10:00:00",
        "ActivityEvent_Note": format!("note {n}"),
        "mx_Custom_1": format!("v{n}"),
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// How a fake server pages.
#[derive(Debug, Clone, Copy)]
struct Fake {
    /// Most rows it serves per page, whatever is asked.
    cap: u64,
    /// Whether it ignores PageIndex (always the first page).
    ignores_index: bool,
    /// Added to the true RecordCount.
    inflate: u64,
}

impl Fake {
    fn plain() -> Fake {
        Fake {
            cap: u64::MAX,
            ignores_index: false,
            inflate: 0,
        }
    }

    /// Page `index` (from 1) of `size` rows of `items`: skipped by the size asked, cut to the
    /// cap, as a server that caps after computing the offset would.
    fn serve(&self, items: &[Map<String, Value>], index: u64, size: u64) -> ByEventResponse {
        let skip = if self.ignores_index {
            0
        } else {
            index.saturating_sub(1) * size
        };
        ByEventResponse {
            record_count: items.len() as u64 + self.inflate,
            list: items
                .iter()
                .skip(skip as usize)
                .take(size.min(self.cap) as usize)
                .cloned()
                .collect(),
        }
    }
}

/// Runs walks to their end against `serve`; returns what was handed out, how it ended, and the
/// calls made.
fn drive(
    walk: &mut EventWalk,
    mut serve: impl FnMut(u64, u64) -> ByEventResponse,
) -> (Vec<EventActivity>, WalkEnd, u64) {
    let mut out = Vec::new();
    let mut calls = 0;
    loop {
        while let Some((index, size)) = walk.next_request() {
            calls += 1;
            assert!(calls < 10_000, "the walk does not end");
            out.extend(walk.feed(serve(index, size)));
        }
        match walk.end_walk() {
            WalkEnd::Again(_) => continue,
            end => return (out, end, calls),
        }
    }
}

fn listing(n: u64) -> Vec<Map<String, Value>> {
    (0..n).map(|i| item(i, 201)).collect()
}

fn distinct_ids(out: &[EventActivity]) -> HashSet<String> {
    let ids: HashSet<String> = out.iter().map(|a| a.id.clone()).collect();
    assert_eq!(ids.len(), out.len(), "an activity handed out twice");
    ids
}

#[test]
fn a_capped_server_is_read_in_pages_of_its_cap() {
    // The bar's shape: 2,000 activities, a server serving 100 per page, 1,000 asked.
    let items = listing(2000);
    let fake = Fake {
        cap: 100,
        ..Fake::plain()
    };
    let mut walk = EventWalk::new(201, DEFAULT_EVENT_PAGE_SIZE);
    let (out, end, calls) = drive(&mut walk, |i, s| fake.serve(&items, i, s));
    assert_eq!(end, WalkEnd::Complete);
    assert_eq!(distinct_ids(&out).len(), 2000);
    assert_eq!(calls, 20, "one call per page of 100");
    assert_eq!(walk.stats().page_size, 100);
    assert_eq!(walk.stats().walks, 1);
}

#[test]
fn pages_of_every_size_collect_every_activity_once() {
    for n in [0, 1, 99, 100, 101, 999, 1000, 1001, 2500] {
        for (cap, asked) in [
            (u64::MAX, 1000),
            (100, 1000),
            (1000, 1000),
            (7, 50),
            (u64::MAX, 1),
        ] {
            let items = listing(n);
            let fake = Fake {
                cap,
                ..Fake::plain()
            };
            let mut walk = EventWalk::new(201, asked);
            let (out, end, calls) = drive(&mut walk, |i, s| fake.serve(&items, i, s));
            assert_eq!(end, WalkEnd::Complete, "n {n} cap {cap} asked {asked}");
            assert_eq!(distinct_ids(&out).len() as u64, n);
            let served = cap.min(asked);
            // Every page once, and one more only when the last full page ends exactly at n
            // without the count telling (it always tells here): ceil(n / served), at least 1.
            assert_eq!(
                calls,
                n.div_ceil(served).max(1),
                "n {n} cap {cap} asked {asked}"
            );
        }
    }
}

#[test]
fn a_server_ignoring_page_index_ends_in_an_error_not_a_loop() {
    let items = listing(250);
    let fake = Fake {
        cap: 100,
        ignores_index: true,
        ..Fake::plain()
    };
    let mut walk = EventWalk::new(201, 1000);
    let (out, end, calls) = drive(&mut walk, |i, s| fake.serve(&items, i, s));
    assert!(
        matches!(&end, WalkEnd::Short(why) if why.contains("repeated")),
        "{end:?}"
    );
    assert_eq!(distinct_ids(&out).len(), 100, "the first page, once");
    assert!(calls <= 4, "{calls} calls");
}

#[test]
fn a_record_count_the_pages_never_reach_is_an_error_after_two_bounded_walks() {
    let items = listing(300);
    let fake = Fake {
        inflate: 5,
        ..Fake::plain()
    };
    let mut walk = EventWalk::new(201, 100);
    let (out, end, calls) = drive(&mut walk, |i, s| fake.serve(&items, i, s));
    assert!(
        matches!(&end, WalkEnd::Short(why) if why.contains("300 distinct activities listed of the 305")),
        "{end:?}"
    );
    assert_eq!(distinct_ids(&out).len(), 300, "nothing twice across walks");
    assert_eq!(walk.stats().walks, 2);
    assert!(calls <= 2 * (305u64.div_ceil(100) + 3), "{calls} calls");
}

#[test]
fn the_second_walk_hands_out_only_what_the_first_missed() {
    // An activity modified during the first walk jumps to the front, behind the walk: the
    // first walk ends one short (it saw one row twice), the second finds it on page 1.
    let mut items = listing(250);
    let moved = items.remove(230);
    let mut served = 0;
    let mut walk = EventWalk::new(201, 100);
    let (out, end, _) = drive(&mut walk, |i, s| {
        served += 1;
        if served == 2 {
            items.insert(0, moved.clone());
        }
        let mut page = Fake::plain().serve(&items, i, s);
        // The count is right all along: 250 activities.
        page.record_count = 250;
        page
    });
    assert_eq!(end, WalkEnd::Complete);
    assert_eq!(distinct_ids(&out).len(), 250);
    assert_eq!(walk.stats().walks, 2);
}

#[test]
fn items_of_other_codes_and_unreadable_items_are_not_handed_out() {
    let mut items = listing(10);
    items.extend((10..13).map(|i| item(i, 202)));
    let fake = Fake::plain();
    let mut walk = EventWalk::new(201, 100);
    let (out, end, _) = drive(&mut walk, |i, s| fake.serve(&items, i, s));
    assert_eq!(end, WalkEnd::Complete);
    assert_eq!(out.len(), 10);
    assert_eq!(walk.stats().other_code, 3);

    let mut broken = listing(5);
    broken[2].remove("ProspectActivityId");
    let mut walk = EventWalk::new(201, 100);
    let (out, end, _) = drive(&mut walk, |i, s| fake.serve(&broken, i, s));
    assert_eq!(out.len(), 4);
    assert!(
        matches!(&end, WalkEnd::Short(why) if why.contains("could not be read") && why.contains("without ProspectActivityId")),
        "{end:?}"
    );
}

#[test]
fn an_empty_account_takes_one_call() {
    let mut walk = EventWalk::new(201, 1000);
    let (out, end, calls) = drive(&mut walk, |i, s| Fake::plain().serve(&[], i, s));
    assert!(out.is_empty());
    assert_eq!((end, calls), (WalkEnd::Complete, 1));
}

#[test]
fn the_request_asks_newest_modified_first_without_empty_values() {
    let query = EventQuery {
        event: 201,
        modified_from: Some("2024-05-01 00:00:00".into()),
        modified_to: None,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(query.request(3, 100, true)).unwrap(),
        json!({
            "Parameter": {"ActivityEvent": 201, "FromDate": "2024-05-01 00:00:00", "RemoveEmptyValue": true},
            "Paging": {"PageIndex": 3, "PageSize": 100},
            "Sorting": {"ColumnName": "ModifiedOn", "Direction": 1}
        })
    );
    // A frozen walk goes on oldest first.
    assert_eq!(
        serde_json::to_value(query.request(1, 100, false)).unwrap()["Sorting"],
        json!({"ColumnName": "ModifiedOn", "Direction": 0})
    );
}

#[test]
fn a_turned_walk_ends_where_its_oldest_pages_meet_the_first_newest_page() {
    // 2,500 activities, oldest first in `items` (index 0 oldest); pages of 1,000.
    let mut items = listing(2500);
    let newest_first = |items: &[Map<String, Value>], index: u64, size: u64| {
        let reversed: Vec<_> = items.iter().rev().cloned().collect();
        Fake::plain().serve(&reversed, index, size)
    };
    let mut walk = EventWalk::new(201, 1000);
    let mut out = Vec::new();
    let (index, size) = walk.next_request().unwrap();
    out.extend(walk.feed(newest_first(&items, index, size)));
    walk.turn();
    // The rest oldest first; 30 activities arrive (at the newest end) after each page.
    let mut calls = 1;
    while let Some((index, size)) = walk.next_request() {
        calls += 1;
        out.extend(walk.feed(Fake::plain().serve(&items, index, size)));
        let next = items.len() as u64;
        items.extend((next..next + 30).map(|i| item(i, 201)));
    }
    assert_eq!(walk.end_walk(), WalkEnd::Complete);
    let ids = distinct_ids(&out);
    assert!(
        (0..2500).all(|i| ids.contains(&guid(i))),
        "every activity listed at the start"
    );
    // The first page, and two from the other end: the third meets the first page's rows
    // (pushed up 60 by the arrivals) and reaches the end.
    assert_eq!(calls, 4);

    // Nothing arriving: exactly the pages the listing takes.
    let items = listing(2500);
    let mut walk = EventWalk::new(201, 1000);
    let (index, size) = walk.next_request().unwrap();
    walk.feed(newest_first(&items, index, size));
    walk.turn();
    let mut calls = 1;
    while let Some((index, size)) = walk.next_request() {
        calls += 1;
        walk.feed(Fake::plain().serve(&items, index, size));
    }
    assert_eq!((walk.end_walk(), calls), (WalkEnd::Complete, 3));

    // A listing the first page held whole: turning changes nothing.
    let mut walk = EventWalk::new(201, 1000);
    walk.feed(newest_first(&listing(10), 1, 1000));
    walk.turn();
    assert_eq!(walk.next_request(), None);
}

#[test]
fn a_frozen_query_stops_at_the_first_pages_newest_modification() {
    let query = EventQuery {
        event: 201,
        modified_from: Some("2024-05-01 00:00:00".into()),
        ..Default::default()
    };
    let stamped = |n: u64, modified: Option<&str>| EventActivity {
        id: guid(n),
        modified_on: modified.map(str::to_string),
        ..EventActivity::default()
    };
    let first = [
        stamped(1, Some("2024-05-02 10:00:07")),
        stamped(2, Some("2024-05-02T10:00:09.5")),
        stamped(3, None),
        stamped(4, Some("yesterday")),
    ];
    assert_eq!(
        freeze(&query, &first),
        Some(EventQuery {
            modified_to: Some("2024-05-02 10:00:10".into()),
            ..query.clone()
        })
    );
    // Nothing readable to freeze at, or a ToDate already set: the query as it is.
    assert_eq!(freeze(&query, &first[2..]), None);
    let bounded = EventQuery {
        modified_to: Some("2024-06-01 00:00:00".into()),
        ..query.clone()
    };
    assert_eq!(freeze(&bounded, &first), None);
}

fn read(value: Value) -> Result<EventActivity, String> {
    match value {
        Value::Object(map) => EventActivity::from_item(&map, 201),
        _ => unreachable!(),
    }
}

#[test]
fn the_vendors_example_item_reads_without_a_note() {
    let got = read(json!({
        "ProspectActivityId": "C310391D-6784-418B-B61C-BCA2D0A7A645",
        "RelatedProspectId": "3A6D5EA2-400E-4A2F-A728-FBFA0B0C1DDF",
        "ActivityType": "2",
        "ActivityEvent": "167",
        "Status": "Active",
        "mx_Custom_3": "third",
        "CreatedOn": "2019-05-14 10:04:00",
        "CreatedBy": "bf8ce802-836f-11e7-8758-0a106ee76b21",
        "CreatedByEmailAddress": "asha.rao@example.com"
    }))
    .unwrap();
    assert_eq!(
        got,
        EventActivity {
            id: "c310391d-6784-418b-b61c-bca2d0a7a645".into(),
            lead_id: "3a6d5ea2-400e-4a2f-a728-fbfa0b0c1ddf".into(),
            event: 167,
            date: Some("2019-05-14 10:04:00".into()),
            modified_on: None,
            note: None,
            owner: None,
            fields: [("mx_Custom_3".to_string(), "third".to_string())].into(),
        }
    );
}

#[test]
fn numbers_strings_and_unknown_keys_are_all_read() {
    let got = read(json!({
        "prospectactivityid": "a",
        "RelatedProspectId": "L",
        "ActivityEvent": 201,
        "ActivityDateTime": "2024-01-02 03:04:05",
        "CreatedOn": "2024-09-09 09:09:09",
        "ModifiedOn": "2024-09-10 00:00:00",
        "ActivityEvent_Note": "hello",
        "Owner": "asha.rao@example.com",
        "mx_Custom_1": 42,
        "MX_CUSTOM_2": "two",
        "mx_Custom_51": "beyond the API's fields",
        "mx_Custom_07": "not a schema name",
        "Whatever": {"nested": true},
        "Score": 3.5
    }))
    .unwrap();
    assert_eq!(got.id, "a");
    assert_eq!(got.lead_id, "l");
    assert_eq!(got.event, 201);
    // The activity's own date wins over CreatedOn.
    assert_eq!(got.date.as_deref(), Some("2024-01-02 03:04:05"));
    assert_eq!(got.modified_on.as_deref(), Some("2024-09-10 00:00:00"));
    assert_eq!(got.note.as_deref(), Some("hello"));
    assert_eq!(got.owner.as_deref(), Some("asha.rao@example.com"));
    assert_eq!(
        got.fields,
        [("mx_Custom_1", "42"), ("mx_Custom_2", "two")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into()
    );
}

#[test]
fn empty_values_read_the_same_whether_left_out_or_listed_empty() {
    // RemoveEmptyValue true: empty values are simply absent.
    let removed = read(json!({
        "ProspectActivityId": "a", "RelatedProspectId": "l", "ActivityEvent": "201",
        "CreatedOn": "2024-01-02 03:04:05", "mx_Custom_1": "one"
    }))
    .unwrap();
    // RemoveEmptyValue false: they are there as "" (or null).
    let listed = read(json!({
        "ProspectActivityId": "a", "RelatedProspectId": "l", "ActivityEvent": "201",
        "CreatedOn": "2024-01-02 03:04:05", "mx_Custom_1": "one", "mx_Custom_2": "",
        "mx_Custom_3": null, "ActivityEvent_Note": "", "Owner": "", "ModifiedOn": ""
    }))
    .unwrap();
    assert_eq!(removed.fields, listed.fields);
    assert_eq!((removed.owner, listed.owner), (None, None));
    assert_eq!(listed.modified_on, None);
    // The note tells the two apart: absent is None, listed empty is Some("").
    assert_eq!(removed.note, None);
    assert_eq!(listed.note.as_deref(), Some(""));
    let null_note = read(json!({
        "ProspectActivityId": "a", "RelatedProspectId": "l", "ActivityEvent_Note": null
    }))
    .unwrap();
    assert_eq!(null_note.note.as_deref(), Some(""));
    // No code on the item: the code asked for.
    assert_eq!(null_note.event, 201);
    // Another spelling of the note.
    let other =
        read(json!({"ProspectActivityId": "a", "RelatedProspectId": "l", "ActivityNote": "n"}))
            .unwrap();
    assert_eq!(other.note.as_deref(), Some("n"));
}

#[test]
fn an_item_without_id_or_lead_or_with_a_bad_code_is_refused() {
    let no_id = read(json!({"RelatedProspectId": "l", "Status": "Active"})).unwrap_err();
    assert!(
        no_id.contains("without ProspectActivityId") && no_id.contains("Status"),
        "{no_id}"
    );
    let no_lead = read(json!({"ProspectActivityId": "a", "RelatedProspectId": ""})).unwrap_err();
    assert!(no_lead.contains("names no lead"), "{no_lead}");
    let bad_code =
        read(json!({"ProspectActivityId": "a", "RelatedProspectId": "l", "ActivityEvent": "x"}))
            .unwrap_err();
    assert!(bad_code.contains("not a code"), "{bad_code}");
}

#[test]
fn the_answer_reads_with_a_string_count_and_a_null_list() {
    let parsed: ByEventResponse =
        serde_json::from_str(r#"{"RecordCount":"2","List":null}"#).unwrap();
    assert_eq!((parsed.record_count, parsed.list.len()), (2, 0));
    let parsed: ByEventResponse = serde_json::from_str(r#"{"RecordCount":0}"#).unwrap();
    assert!(parsed.list.is_empty());
}

// ---- EventReader against the simulator ----

mod against_the_simulator {
    use super::*;
    use std::time::Duration;

    use crate::lsq::api::{ActivityItem, FieldValue};
    use crate::lsq::calls::RetryPolicy;
    use crate::lsq::client::LsqClient;
    use crate::lsq::counters::RunStats;
    use crate::simulator::{ByEventNote, RunningSimulator, SimConfig, demo_lead_id};

    fn reader(sim: &RunningSimulator) -> EventReader {
        let client = LsqClient::for_tests(&sim.base_url(), "sim-access-key", "sim-secret-key");
        EventReader::new(Api::for_tests(
            client,
            "1000/1s",
            RetryPolicy {
                max_attempts: 5,
                base: Duration::from_millis(20),
                max: Duration::from_millis(200),
            },
        ))
    }

    fn seed(sim: &RunningSimulator, code: i64, n: usize) -> HashSet<String> {
        (0..n)
            .map(|i| {
                sim.sim.add_activity(ActivityItem {
                    related_prospect_id: demo_lead_id(i % 20),
                    activity_event: code,
                    activity_note: Some(format!("n{i}")),
                    activity_owner_email: None,
                    activity_date_time: Some(format!("2024-02-{:02} 10:00:00", 1 + i % 28)),
                    fields: vec![FieldValue {
                        schema_name: "mx_Custom_2".into(),
                        value: format!("f{i}"),
                    }],
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn walks_a_capped_server_page_by_page_and_counts_every_call() {
        let sim = RunningSimulator::start(SimConfig {
            rate: None,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let want = seed(&sim, 202, 250);
        seed(&sim, 201, 40);
        let reader = reader(&sim);
        let query = EventQuery {
            event: 202,
            ..EventQuery::default()
        };
        let mut got = Vec::new();
        let mut pages = 0;
        let stats = reader
            .walk_event(&query, |page| {
                pages += 1;
                got.extend(page);
                Ok::<(), FetchError>(())
            })
            .await
            .unwrap();
        assert_eq!(pages, 3, "handed out page by page");
        assert_eq!(distinct_ids(&got), want);
        assert!(got.iter().all(|a| a.event == 202 && a.note.is_some()));
        assert_eq!(got[0].fields.len(), 1);
        assert_eq!(stats.pages, 3);
        assert_eq!(stats.page_size, 100);
        assert_eq!(RunStats::get(&reader.api.stats.reads), 3);
        assert_eq!(reader.count_event(&query).await.unwrap(), 250);
        assert_eq!(RunStats::get(&reader.api.stats.reads), 4);

        // The window is on the modified time, which the test sets.
        let some: Vec<&String> = want.iter().take(5).collect();
        for id in &some {
            assert!(sim.sim.set_modified(id, "2030-01-01 00:00:00"));
        }
        let since = EventQuery {
            modified_from: Some("2029-12-31 23:59:59".into()),
            ..query.clone()
        };
        assert_eq!(reader.count_event(&since).await.unwrap(), 5);
        let mut recent = HashSet::new();
        reader
            .walk_event(&since, |page| {
                recent.extend(page.into_iter().map(|a| a.id));
                Ok::<(), FetchError>(())
            })
            .await
            .unwrap();
        assert_eq!(recent, some.into_iter().cloned().collect());

        // A stop asked by the caller ends the walk with the caller's error.
        let stopped = reader
            .walk_event(&query, |_| Err(FetchError::Failed("disk full".into())))
            .await;
        assert_eq!(stopped, Err(FetchError::Failed("disk full".into())));
        // An unknown code is the server's MX error.
        let unknown = EventQuery {
            event: 999,
            ..EventQuery::default()
        };
        assert!(matches!(
            reader.count_event(&unknown).await,
            Err(FetchError::Failed(m)) if m.contains("Invalid activity event code")
        ));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_server_that_lists_no_note_is_told_apart() {
        let sim = RunningSimulator::start(SimConfig {
            rate: None,
            by_event_note: ByEventNote::Absent,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        seed(&sim, 203, 12);
        let reader = reader(&sim);
        let query = EventQuery {
            event: 203,
            ..EventQuery::default()
        };
        let stats = reader
            .walk_event(&query, |page| {
                assert!(page.iter().all(|a| a.note.is_none()));
                Ok::<(), FetchError>(())
            })
            .await
            .unwrap();
        assert_eq!((stats.activities, stats.without_note), (12, 12));
        sim.shutdown().await;
    }
}
