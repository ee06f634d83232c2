//! Tests of Get Activities by Activity Event over loopback HTTP: the documented shape, paging
//! by `PageIndex` with the page cap, the window on the modified time, sorting, and the switches.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::lsq::api::{
    self, ActivityItem, FieldValue, HEADER_ACCESS_KEY, HEADER_SECRET_KEY, PATH_RETRIEVE_BY_EVENT,
};
use crate::simulator::{ByEventNote, RunningSimulator, SimConfig, demo_lead_id};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn start(config: SimConfig) -> RunningSimulator {
    RunningSimulator::start(SimConfig {
        rate: None,
        ..config
    })
    .await
    .unwrap()
}

async fn ask(sim: &RunningSimulator, body: &Value) -> (u16, Value) {
    let response = client()
        .post(format!("{}{PATH_RETRIEVE_BY_EVENT}", sim.base_url()))
        .header(HEADER_ACCESS_KEY, "sim-access-key")
        .header(HEADER_SECRET_KEY, "sim-secret-key")
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn page(sim: &RunningSimulator, body: &Value) -> api::ByEventResponse {
    let (status, answer) = ask(sim, body).await;
    assert_eq!(status, 200, "{answer}");
    serde_json::from_value(answer).unwrap()
}

/// Seeds `n` activities of `code` over `leads` leads, dated a minute apart from 2024-01-01,
/// each with a note and `mx_Custom_1`; returns their ids in seeding order.
fn seed(sim: &RunningSimulator, code: i64, n: usize, leads: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            sim.sim.add_activity(ActivityItem {
                related_prospect_id: demo_lead_id(i % leads),
                activity_event: code,
                activity_note: Some(format!("note {i}")),
                activity_owner_email: Some("asha.rao@example.com".into()),
                activity_date_time: Some(format!("2024-01-01 {:02}:{:02}:00", i / 60 % 24, i % 60)),
                fields: vec![FieldValue {
                    schema_name: "mx_Custom_1".into(),
                    value: format!("v{i}"),
                }],
            })
        })
        .collect()
}

fn ids(page: &api::ByEventResponse) -> Vec<String> {
    page.list
        .iter()
        .map(|item| item["ProspectActivityId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn items_are_flat_strings_in_the_documented_shape() {
    let sim = start(SimConfig::default()).await;
    let ours = seed(&sim, 201, 3, 3);
    seed(&sim, 202, 2, 2);
    assert!(sim.sim.set_modified(&ours[1], "2024-06-01 10:00:00"));
    let body = json!({"Parameter": {"ActivityEvent": 201, "RemoveEmptyValue": true},
        "Paging": {"PageIndex": 1, "PageSize": 100}, "Sorting": {"ColumnName": "ModifiedOn", "Direction": 0}});
    let answer = page(&sim, &body).await;
    assert_eq!(answer.record_count, 3);
    // Oldest modified first: the one stamped 2024 leads.
    let first = &answer.list[0];
    assert_eq!(first["ProspectActivityId"], ours[1].as_str());
    assert_eq!(first["RelatedProspectId"], demo_lead_id(1).as_str());
    assert_eq!(first["ActivityType"], "2");
    assert_eq!(first["ActivityEvent"], "201");
    assert_eq!(first["Status"], "Active");
    assert_eq!(first["CreatedOn"], "2024-01-01 00:01:00");
    assert_eq!(first["ModifiedOn"], "2024-06-01 10:00:00");
    assert_eq!(first["mx_Custom_1"], "v1");
    assert_eq!(first[api::FIELD_NOTE], "note 1");
    assert!(
        first.get("Owner").is_none(),
        "no owner: the vendor shows none"
    );
    assert!(first.values().all(Value::is_string), "{first:?}");
    // Empty values left out: code 201 defines mx_Custom_2 and mx_Custom_3, not set here.
    assert!(first.get("mx_Custom_2").is_none());

    let listed = json!({"Parameter": {"ActivityEvent": 201, "RemoveEmptyValue": false}});
    let answer = page(&sim, &listed).await;
    assert_eq!(answer.list[0]["mx_Custom_2"], "");
    sim.shutdown().await;

    let sim = start(SimConfig {
        by_event_note: ByEventNote::Absent,
        ..SimConfig::default()
    })
    .await;
    seed(&sim, 201, 1, 1);
    let answer = page(&sim, &listed).await;
    assert!(answer.list[0].get(api::FIELD_NOTE).is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn pages_count_from_one_in_the_size_served_and_cover_everything_once() {
    let sim = start(SimConfig::default()).await;
    let all: HashSet<String> = seed(&sim, 203, 250, 10).into_iter().collect();
    seed(&sim, 201, 30, 5);
    let body = |index: u64, size: u64| json!({"Parameter": {"ActivityEvent": 203}, "Paging": {"PageIndex": index, "PageSize": size}});
    // Asked for 1000, served 100 (the default cap); PageIndex counts pages of 100.
    let mut seen = Vec::new();
    for index in 1..=3 {
        let answer = page(&sim, &body(index, 1000)).await;
        assert_eq!(answer.record_count, 250);
        seen.extend(ids(&answer));
    }
    assert_eq!(seen.len(), 250);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), all);
    assert!(page(&sim, &body(4, 1000)).await.list.is_empty());
    // PageIndex 0 is read as the first page; no paging at all too.
    assert_eq!(ids(&page(&sim, &body(0, 100)).await), seen[..100]);
    let bare = json!({"Parameter": {"ActivityEvent": 203}});
    assert_eq!(ids(&page(&sim, &bare).await), seen[..100]);
    // Smaller pages are served as asked.
    assert_eq!(ids(&page(&sim, &body(3, 7)).await), seen[14..21]);
    sim.shutdown().await;

    let sim = start(SimConfig {
        by_event_page_cap: 40,
        ..SimConfig::default()
    })
    .await;
    seed(&sim, 203, 50, 5);
    assert_eq!(page(&sim, &body(2, 1000)).await.list.len(), 10);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_window_is_on_the_modified_time_inclusive_and_sorting_is_honoured() {
    let sim = start(SimConfig::default()).await;
    let ids_seeded = seed(&sim, 204, 5, 5);
    for (i, id) in ids_seeded.iter().enumerate() {
        assert!(
            sim.sim
                .set_modified(id, &format!("2025-03-0{} 12:00:00", i + 1))
        );
    }
    let window = json!({"Parameter": {"ActivityEvent": "204",
        "FromDate": "2025-03-02 12:00:00", "ToDate": "2025-03-04 12:00:00"},
        "Sorting": {"ColumnName": "ModifiedOn", "Direction": 1}});
    let answer = page(&sim, &window).await;
    assert_eq!(answer.record_count, 3);
    assert_eq!(
        ids(&answer),
        [&ids_seeded[3], &ids_seeded[2], &ids_seeded[1]].map(String::clone)
    );
    // Sorted by the activity's date instead, oldest first.
    let by_date = json!({"Parameter": {"ActivityEvent": 204},
        "Sorting": {"ColumnName": "CreatedOn", "Direction": 0}});
    assert_eq!(ids(&page(&sim, &by_date).await), ids_seeded);
    sim.sim.add_activity(ActivityItem {
        related_prospect_id: demo_lead_id(0),
        activity_event: 204,
        activity_note: None,
        activity_owner_email: None,
        activity_date_time: Some("2025-03-03 00:00:00".into()),
        fields: vec![],
    });
    // The new one's modified time is now (the wall clock), after the window.
    assert_eq!(page(&sim, &window).await.record_count, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_and_system_codes_and_bad_dates_are_mx_errors() {
    let sim = start(SimConfig::default()).await;
    for body in [
        json!({"Parameter": {"ActivityEvent": 999}}),
        json!({"Parameter": {"ActivityEvent": 22}}),
        json!({"Parameter": {"ActivityEvent": 201, "FromDate": "2025-03-01"}}),
    ] {
        let (status, answer) = ask(&sim, &body).await;
        assert_eq!(status, 500, "{body}");
        assert_eq!(
            answer["ExceptionType"], "MXInvalidInputException",
            "{answer}"
        );
    }
    sim.shutdown().await;
}
