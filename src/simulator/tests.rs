//! End-to-end tests of the simulator over real loopback HTTP: a plain reqwest client talks to a
//! `RunningSimulator`, and assertions read both the responses and the simulator's own records.
//! Over 700 lines because it covers every endpoint and fault; it is test code only.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::*;
use crate::lsq::api::{
    HEADER_ACCESS_KEY, HEADER_SECRET_KEY, PATH_ACTIVITY_TYPES, PATH_BULK_ADD_BY_LEAD_ID,
    PATH_DELETE_ACTIVITIES, PATH_DELETE_OWNER_HISTORY, PATH_RETRIEVE, PATH_USER_BY_ACCESS_KEY,
};

const ACCESS: &str = "sim-access-key";
const SECRET: &str = "sim-secret-key";
/// Upper bound for anything the tests wait on, so a bug fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(5);

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn unlimited() -> SimConfig {
    SimConfig {
        rate: None,
        ..SimConfig::default()
    }
}

fn quota(calls: u32, window: Duration) -> Option<RateQuota> {
    Some(RateQuota::new(NonZeroU32::new(calls).unwrap(), window))
}

fn row(lead: &str, code: i64) -> Value {
    json!({"RelatedProspectId": lead, "ActivityEvent": code})
}

async fn post(
    client: &reqwest::Client,
    sim: &RunningSimulator,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    client
        .post(format!("{}{path}", sim.base_url()))
        .header(HEADER_ACCESS_KEY, ACCESS)
        .header(HEADER_SECRET_KEY, SECRET)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get(client: &reqwest::Client, sim: &RunningSimulator, path: &str) -> reqwest::Response {
    client
        .get(format!("{}{path}", sim.base_url()))
        .header(HEADER_ACCESS_KEY, ACCESS)
        .header(HEADER_SECRET_KEY, SECRET)
        .send()
        .await
        .unwrap()
}

async fn retrieve(
    client: &reqwest::Client,
    sim: &RunningSimulator,
    lead: &str,
    body: &Value,
) -> api::RetrieveResponse {
    let response = post(client, sim, &format!("{PATH_RETRIEVE}?leadId={lead}"), body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Activities a given request created, in creation order.
fn created_by(sim: &Simulator, seq: u64) -> Vec<StoredActivity> {
    sim.activities()
        .into_iter()
        .filter(|a| a.created_by_request == Some(seq))
        .collect()
}

#[tokio::test]
async fn bulk_post_creates_rows_and_answers_ids_in_row_order() {
    let sim = RunningSimulator::start(unlimited()).await.unwrap();
    let lead = demo_lead_id(1);
    let body = json!([
        {"RelatedProspectId": lead.to_uppercase(), "ActivityEvent": 201, "ActivityNote": "first",
         "ActivityOwnerEmail": "ASHA.RAO@example.com", "ActivityDateTime": "2025-02-03 04:05:06",
         "Fields": [{"SchemaName": "mx_Custom_2", "Value": "two"}]},
        row(&lead, 203),
        row(&demo_lead_id(2), 205),
    ]);
    let response = post(&client(), &sim, PATH_BULK_ADD_BY_LEAD_ID, &body).await;
    assert_eq!(response.status(), 200);
    let answer: api::BulkResponse = response.json().await.unwrap();
    let rows: Vec<u32> = answer
        .response
        .iter()
        .map(|r| r.row_number.unwrap())
        .collect();
    assert_eq!(rows, vec![1, 2, 3]);
    assert!(
        answer
            .response
            .iter()
            .all(|r| r.activity_created && r.exception_message.is_none())
    );

    let stored = created_by(&sim.sim, 0);
    let ids: Vec<String> = stored.iter().map(|a| a.id.clone()).collect();
    let answered: Vec<String> = answer
        .response
        .iter()
        .map(|r| r.prospect_activity_id.clone().unwrap())
        .collect();
    assert_eq!(ids, answered);
    assert_eq!(stored[0].lead_id, lead);
    assert_eq!(stored[0].note.as_deref(), Some("first"));
    assert_eq!(
        stored[0].owner_email.as_deref(),
        Some("asha.rao@example.com")
    );
    assert_eq!(stored[0].date_time, "2025-02-03 04:05:06");
    assert_eq!(
        stored[0].fields.get("mx_Custom_2").map(String::as_str),
        Some("two")
    );
    // A row without a date gets the posting time.
    assert!(state::parse_date(&stored[1].date_time).is_some());

    let log = sim.sim.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].status, log[0].items, log[0].outcome),
        (200, 3, RequestOutcome::Ok)
    );
    assert_eq!(log[0].path, PATH_BULK_ADD_BY_LEAD_ID);
    sim.shutdown().await;
}

fn mixed_batch() -> Value {
    let lead = demo_lead_id(4);
    json!([
        row(&lead, 202),
        row("0f0f0f0f-0000-4000-8000-000000000000", 201),
        row(&lead, 999),
        {"RelatedProspectId": lead, "ActivityEvent": 201, "ActivityDateTime": "2025-02-30 00:00:00"},
        {"RelatedProspectId": lead, "ActivityEvent": 201, "Fields": [{"SchemaName": "mx_Custom_51", "Value": "x"}]},
        {"RelatedProspectId": lead, "ActivityEvent": 205, "Fields": [{"SchemaName": "mx_Custom_3", "Value": "x"}]},
        row(&lead, 204),
    ])
}

#[tokio::test]
async fn per_row_mode_rejects_bad_rows_and_creates_good_ones() {
    let sim = RunningSimulator::start(unlimited()).await.unwrap();
    let response = post(&client(), &sim, PATH_BULK_ADD_BY_LEAD_ID, &mixed_batch()).await;
    assert_eq!(response.status(), 200);
    let answer: api::BulkResponse = response.json().await.unwrap();
    let created: Vec<bool> = answer.response.iter().map(|r| r.activity_created).collect();
    assert_eq!(created, vec![true, false, false, false, false, false, true]);
    let messages: Vec<String> = answer
        .response
        .iter()
        .filter_map(|r| r.exception_message.clone())
        .collect();
    assert_eq!(messages.len(), 5);
    assert!(messages[0].contains("does not exist"), "{}", messages[0]);
    assert_eq!(messages[1], "Invalid activity event code 999");
    assert!(messages[2].contains("ActivityDateTime"), "{}", messages[2]);
    assert!(messages[3].contains("mx_Custom_51"), "{}", messages[3]);
    assert!(
        messages[4].contains("not defined for activity event 205"),
        "{}",
        messages[4]
    );
    assert!(
        answer
            .response
            .iter()
            .filter(|r| !r.activity_created)
            .all(|r| r.prospect_activity_id.is_none())
    );
    let stored: Vec<i64> = created_by(&sim.sim, 0)
        .iter()
        .map(|a| a.event_code)
        .collect();
    assert_eq!(stored, vec![202, 204]);
    sim.shutdown().await;
}

#[tokio::test]
async fn whole_batch_mode_creates_nothing_and_answers_500_mx() {
    let config = SimConfig {
        reject_mode: RejectMode::WholeBatch,
        ..unlimited()
    };
    let sim = RunningSimulator::start(config).await.unwrap();
    let response = post(&client(), &sim, PATH_BULK_ADD_BY_LEAD_ID, &mixed_batch()).await;
    assert_eq!(response.status(), 500);
    let error: api::ErrorBody = response.json().await.unwrap();
    assert_eq!(error.status, "Error");
    assert_eq!(
        error.exception_type.as_deref(),
        Some("MXInvalidInputException")
    );
    assert!(error.exception_message.unwrap().starts_with("Row 2: "));
    assert!(created_by(&sim.sim, 0).is_empty());
    assert_eq!(sim.sim.requests()[0].outcome, RequestOutcome::DataError);
    sim.shutdown().await;
}

#[tokio::test]
async fn bulk_post_refuses_bad_bodies_and_sizes() {
    let sim = RunningSimulator::start(unlimited()).await.unwrap();
    let client = client();
    let url = format!("{}{PATH_BULK_ADD_BY_LEAD_ID}", sim.base_url());
    let send = |body: &'static str, content_type: &'static str| {
        client
            .post(&url)
            .header(HEADER_ACCESS_KEY, ACCESS)
            .header(HEADER_SECRET_KEY, SECRET)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(send("[{", "application/json").await.unwrap().status(), 400);
    assert_eq!(
        send(r#"{"a":1}"#, "application/json")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(send("[]", "text/plain").await.unwrap().status(), 400);

    let empty = post(&client, &sim, PATH_BULK_ADD_BY_LEAD_ID, &json!([])).await;
    assert_eq!(empty.status(), 500);
    let too_many = Value::Array((0..26).map(|_| row(&demo_lead_id(0), 201)).collect());
    let response = post(&client, &sim, PATH_BULK_ADD_BY_LEAD_ID, &too_many).await;
    assert_eq!(response.status(), 500);
    let error: api::ErrorBody = response.json().await.unwrap();
    assert_eq!(
        error.exception_type.as_deref(),
        Some("MXInvalidInputException")
    );

    let log = sim.sim.requests();
    let outcomes: Vec<RequestOutcome> = log.iter().map(|r| r.outcome).collect();
    use RequestOutcome::{BadRequest, DataError};
    assert_eq!(
        outcomes,
        vec![BadRequest, BadRequest, BadRequest, DataError, DataError]
    );
    assert_eq!(log[4].items, 26);
    assert_eq!(sim.sim.stats().activities_live, (DEMO_LEADS * 2) as u64);
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_keys_get_401_and_query_keys_are_accepted() {
    let sim = RunningSimulator::start(unlimited()).await.unwrap();
    let client = client();
    let url = format!("{}{PATH_ACTIVITY_TYPES}", sim.base_url());
    let response = client
        .get(&url)
        .header(HEADER_ACCESS_KEY, ACCESS)
        .header(HEADER_SECRET_KEY, "guessed-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("guessed-secret") && !text.contains(ACCESS),
        "{text}"
    );
    let error: api::ErrorBody = serde_json::from_str(&text).unwrap();
    assert_eq!(
        error.exception_type.as_deref(),
        Some("MXUnAuthorizedAccessException")
    );
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);

    let response = client
        .get(format!("{url}?accessKey={ACCESS}&secretKey={SECRET}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let types: Vec<api::ActivityType> = response.json().await.unwrap();
    assert_eq!(types, demo_activity_types());

    let log = sim.sim.requests();
    let outcomes: Vec<RequestOutcome> = log.iter().map(|r| r.outcome).collect();
    use RequestOutcome::{Ok, Unauthorized};
    assert_eq!(outcomes, vec![Unauthorized, Unauthorized, Ok]);
    // The logged path never carries the query, which held the keys.
    assert!(log.iter().all(|r| r.path == PATH_ACTIVITY_TYPES));
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_the_vendor_message() {
    let config = SimConfig {
        rate: quota(3, Duration::from_secs(1)),
        send_retry_after: true,
        ..SimConfig::default()
    };
    let sim = RunningSimulator::start(config).await.unwrap();
    let client = client();
    for _ in 0..3 {
        assert_eq!(get(&client, &sim, PATH_ACTIVITY_TYPES).await.status(), 200);
    }
    let response = get(&client, &sim, PATH_USER_BY_ACCESS_KEY).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let error: api::ErrorBody = response.json().await.unwrap();
    assert_eq!(
        error.exception_type.as_deref(),
        Some(api::RATE_LIMIT_EXCEPTION)
    );
    assert_eq!(
        error.exception_message.as_deref(),
        Some("API calls exceeded the limit of 3 in 1 second(s)")
    );
    let stats = sim.sim.stats();
    assert_eq!((stats.requests, stats.rate_limited), (4, 1));
    assert_eq!(stats.max_requests_in_window, Some(4));
    assert_eq!(sim.sim.requests()[3].outcome, RequestOutcome::RateLimited);
    sim.shutdown().await;
}

#[tokio::test]
async fn http200_style_answers_200_with_the_error_body_and_no_retry_after() {
    let config = SimConfig {
        rate: quota(1, Duration::from_secs(5)),
        rate_limit_style: RateLimitStyle::Http200,
        ..SimConfig::default()
    };
    let sim = RunningSimulator::start(config).await.unwrap();
    let client = client();
    assert_eq!(get(&client, &sim, PATH_ACTIVITY_TYPES).await.status(), 200);
    let response = get(&client, &sim, PATH_ACTIVITY_TYPES).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("retry-after").is_none());
    let error: api::ErrorBody = response.json().await.unwrap();
    assert_eq!(error.status, "Error");
    assert_eq!(
        error.exception_type.as_deref(),
        Some(api::RATE_LIMIT_EXCEPTION)
    );
    assert_eq!(
        error.exception_message.as_deref(),
        Some("API calls exceeded the limit of 1 in 5 second(s)")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_window_frees_once_it_has_passed_and_refusals_do_not_count() {
    let window = Duration::from_millis(300);
    let config = SimConfig {
        rate: quota(3, window),
        ..SimConfig::default()
    };
    let sim = RunningSimulator::start(config).await.unwrap();
    let client = client();
    let first = Instant::now();
    for _ in 0..3 {
        assert_eq!(get(&client, &sim, PATH_ACTIVITY_TYPES).await.status(), 200);
    }
    let refused = get(&client, &sim, PATH_ACTIVITY_TYPES).await;
    assert_eq!(refused.status(), 429);
    let error: api::ErrorBody = refused.json().await.unwrap();
    assert_eq!(
        error.exception_message.as_deref(),
        Some("API calls exceeded the limit of 3 in 0.3 second(s)")
    );
    // The passing of time is what is tested here, so waiting it out is the point.
    tokio::time::sleep_until((first + window + Duration::from_millis(20)).into()).await;
    assert_eq!(get(&client, &sim, PATH_ACTIVITY_TYPES).await.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn another_client_takes_slots_without_being_logged() {
    let config = SimConfig {
        rate: quota(5, Duration::from_millis(500)),
        other_client: Some(OtherClient {
            load: OtherLoad::Steady { per_second: 200.0 },
            from: Duration::ZERO,
            until: None,
        }),
        ..SimConfig::default()
    };
    let sim = RunningSimulator::start(config).await.unwrap();
    // The other integration needs a few of its 5 ms ticks to fill the window.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = client();
    for _ in 0..3 {
        get(&client, &sim, PATH_ACTIVITY_TYPES).await;
    }
    let stats = sim.sim.stats();
    assert_eq!(stats.requests, 3);
    assert!(stats.rate_limited >= 2, "{stats:?}");
    // At 200/s against 5 per 500 ms, most of its own calls were refused too, and counted.
    assert!(stats.other_calls >= 10, "{stats:?}");
    assert!(stats.other_refused >= stats.other_calls / 2, "{stats:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn bursts_of_another_client_arrive_together_and_stop_when_told() {
    let config = SimConfig {
        rate: quota(4, Duration::from_millis(200)),
        other_client: Some(OtherClient {
            load: OtherLoad::Bursts {
                calls: 6,
                every: Duration::from_millis(100),
            },
            from: Duration::ZERO,
            until: Some(Duration::from_millis(250)),
        }),
        ..SimConfig::default()
    };
    let sim = RunningSimulator::start(config).await.unwrap();
    // The passing of time is what is tested: the bursts at 0, 100 and 200 ms, then nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.sim.other_arrivals().len() < 18 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let arrivals = sim.sim.other_arrivals();
    assert_eq!(arrivals.len(), 18, "{arrivals:?}");
    // The first burst fills the window (4 of 6); the second finds it full.
    assert_eq!(arrivals[..6].iter().filter(|(_, ok)| *ok).count(), 4);
    assert_eq!(arrivals[6..12].iter().filter(|(_, ok)| *ok).count(), 0);
    sim.shutdown().await;
}

async fn one_fault(
    faults: FaultConfig,
) -> (RunningSimulator, Result<reqwest::Response, reqwest::Error>) {
    let sim = RunningSimulator::start(SimConfig {
        faults,
        ..unlimited()
    })
    .await
    .unwrap();
    let body = json!([row(&demo_lead_id(0), 201), row(&demo_lead_id(1), 202)]);
    let result = client()
        .post(format!("{}{PATH_BULK_ADD_BY_LEAD_ID}", sim.base_url()))
        .header(HEADER_ACCESS_KEY, ACCESS)
        .header(HEADER_SECRET_KEY, SECRET)
        .json(&body)
        .send()
        .await;
    (sim, result)
}

#[tokio::test]
async fn plain_500_fault_creates_nothing_and_has_no_mx_body() {
    let (sim, result) = one_fault(FaultConfig {
        plain_500: 1.0,
        ..FaultConfig::default()
    })
    .await;
    let response = result.unwrap();
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("<html>") && !text.contains("MX"), "{text}");
    assert!(created_by(&sim.sim, 0).is_empty());
    let log = sim.sim.requests();
    assert_eq!(
        (log[0].status, log[0].items, log[0].outcome),
        (500, 2, RequestOutcome::Fault500)
    );
    assert_eq!(sim.sim.stats().faults, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_connection_fault_gives_a_connection_error_and_creates_nothing() {
    let (sim, result) = one_fault(FaultConfig {
        drop_connection: 1.0,
        ..FaultConfig::default()
    })
    .await;
    let error = result.unwrap_err();
    assert!(error.is_request() || error.is_connect(), "{error:?}");
    assert!(created_by(&sim.sim, 0).is_empty());
    let log = sim.sim.requests();
    assert_eq!(log.len(), 1, "the client must not have retried");
    assert_eq!(
        (log[0].status, log[0].outcome),
        (0, RequestOutcome::Dropped)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn commit_then_500_fault_creates_the_rows_then_fails() {
    let (sim, result) = one_fault(FaultConfig {
        commit_then_500: 1.0,
        ..FaultConfig::default()
    })
    .await;
    let response = result.unwrap();
    assert_eq!(response.status(), 500);
    assert!(!response.text().await.unwrap().contains("MX"));
    assert_eq!(created_by(&sim.sim, 0).len(), 2);
    assert_eq!(
        sim.sim.requests()[0].outcome,
        RequestOutcome::CommittedThen500
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn commit_then_drop_fault_creates_the_rows_then_closes_the_connection() {
    let (sim, result) = one_fault(FaultConfig {
        commit_then_drop: 1.0,
        ..FaultConfig::default()
    })
    .await;
    assert!(result.is_err());
    assert_eq!(created_by(&sim.sim, 0).len(), 2);
    let log = sim.sim.requests();
    assert_eq!(
        (log[0].status, log[0].outcome),
        (0, RequestOutcome::CommittedThenDropped)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_follow_the_seed() {
    let faults = FaultConfig {
        plain_500: 0.5,
        seed: 42,
        ..FaultConfig::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let sim = RunningSimulator::start(SimConfig {
            faults: faults.clone(),
            ..unlimited()
        })
        .await
        .unwrap();
        let client = client();
        for _ in 0..12 {
            post(
                &client,
                &sim,
                PATH_BULK_ADD_BY_LEAD_ID,
                &json!([row(&demo_lead_id(0), 201)]),
            )
            .await;
        }
        runs.push(
            sim.sim
                .requests()
                .iter()
                .map(|r| r.status)
                .collect::<Vec<_>>(),
        );
        sim.shutdown().await;
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&200) && runs[0].contains(&500),
        "{:?}",
        runs[0]
    );
}

/// Posts seven 201 activities with distinct dates on `lead`; returns their ids newest first.
async fn seven_activities(
    client: &reqwest::Client,
    sim: &RunningSimulator,
    lead: &str,
) -> Vec<String> {
    let rows: Vec<Value> = (1..=7)
        .map(|day| json!({"RelatedProspectId": lead, "ActivityEvent": 201, "ActivityDateTime": format!("2025-03-0{day} 10:00:00")}))
        .collect();
    let answer: api::BulkResponse =
        post(client, sim, PATH_BULK_ADD_BY_LEAD_ID, &Value::Array(rows))
            .await
            .json()
            .await
            .unwrap();
    answer
        .response
        .into_iter()
        .rev()
        .map(|r| r.prospect_activity_id.unwrap())
        .collect()
}

#[tokio::test]
async fn paging_returns_every_activity_once_in_each_mode() {
    let lead = demo_lead_id(9);
    for (mode, offsets) in [
        (PagingMode::ZeroBasedPage, [0, 1, 2]),
        (PagingMode::OneBasedPage, [1, 2, 3]),
        (PagingMode::RowOffset, [0, 3, 6]),
    ] {
        let sim = RunningSimulator::start(SimConfig {
            paging: mode,
            ..unlimited()
        })
        .await
        .unwrap();
        let client = client();
        let expected = seven_activities(&client, &sim, &lead).await;
        let mut seen = Vec::new();
        for offset in offsets {
            let body = json!({"Parameter": {"ActivityEvent": 201}, "Paging": {"Offset": offset.to_string(), "RowCount": "3"}});
            let page = retrieve(&client, &sim, &lead, &body).await;
            assert_eq!(page.record_count, 7, "{mode:?}");
            seen.extend(page.prospect_activities.into_iter().map(|a| a.id));
        }
        assert_eq!(seen, expected, "{mode:?}");
        if mode == PagingMode::OneBasedPage {
            let zero = json!({"Paging": {"Offset": 0, "RowCount": 3}, "Parameter": {"ActivityEvent": 201}});
            let page = retrieve(&client, &sim, &lead, &zero).await;
            assert_eq!(page.prospect_activities[0].id, expected[0]);
        }
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn retrieve_maps_activities_and_filters_by_date_only_when_lenient() {
    let sim = RunningSimulator::start(SimConfig {
        retrieve_dates: RetrieveDates::Honoured,
        ..unlimited()
    })
    .await
    .unwrap();
    let client = client();
    let lead = demo_lead_id(5);
    let body = json!([{"RelatedProspectId": lead, "ActivityEvent": 204, "ActivityNote": "paid",
        "ActivityOwnerEmail": "meera.iyer@example.com", "ActivityDateTime": "2025-01-10 08:00:00",
        "Fields": [{"SchemaName": "mx_Custom_6", "Value": "1200"}]}]);
    post(&client, &sim, PATH_BULK_ADD_BY_LEAD_ID, &body).await;

    // An empty body lists every type, the owner changes included.
    let response = client
        .post(format!("{}{PATH_RETRIEVE}?leadId={lead}", sim.base_url()))
        .header(HEADER_ACCESS_KEY, ACCESS)
        .header(HEADER_SECRET_KEY, SECRET)
        .send()
        .await
        .unwrap();
    let all: api::RetrieveResponse = response.json().await.unwrap();
    assert_eq!(all.record_count, 3);
    let names: Vec<&str> = all
        .prospect_activities
        .iter()
        .map(|a| a.event_name.as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "Payment Received",
            "Lead Owner Changed",
            "Lead Owner Changed"
        ]
    );
    let paid = &all.prospect_activities[0];
    assert_eq!(paid.created_on, "2025-01-10 08:00:00");
    // ModifiedOn is the server's clock when it stored the activity, not the activity's date.
    let stored = state::parse_date(&paid.modified_on).unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - stored).abs() < 60,
        "{}",
        paid.modified_on
    );
    assert_eq!(paid.related_prospect_id, lead);
    assert_eq!(paid.session_id, paid.id);
    assert_eq!(paid.activity_fields["mx_Custom_6"], "1200");
    assert_eq!(paid.activity_fields["Owner"], "meera.iyer@example.com");
    assert_eq!(paid.activity_fields["Status"], "Active");
    assert!(
        paid.data
            .iter()
            .any(|kv| kv.key == api::DATA_KEY_NOTE && kv.value == "paid")
    );

    let window =
        json!({"Parameter": {"FromDate": "2024-06-01 12:30:00", "ToDate": "2025-01-10 08:00:00"}});
    assert_eq!(
        retrieve(&client, &sim, &lead, &window).await.record_count,
        2
    );
    sim.shutdown().await;

    // As documented (the default): no date filter, so FromDate/ToDate are not even read.
    let sim = RunningSimulator::start(unlimited()).await.unwrap();
    post(&client, &sim, PATH_BULK_ADD_BY_LEAD_ID, &body).await;
    assert_eq!(
        retrieve(&client, &sim, &lead, &window).await.record_count,
        3
    );
    let nonsense = json!({"Parameter": {"ActivityEvent": 204, "FromDate": "last week"}});
    assert_eq!(
        retrieve(&client, &sim, &lead, &nonsense).await.record_count,
        1
    );

    let unknown = post(
        &client,
        &sim,
        &format!("{PATH_RETRIEVE}?leadId=0f0f0f0f-0000-4000-8000-000000000000"),
        &json!({}),
    )
    .await;
    assert_eq!(unknown.status(), 500);
    let error: api::ErrorBody = unknown.json().await.unwrap();
    assert_eq!(
        error.exception_type.as_deref(),
        Some("MXInvalidEntityException")
    );
    sim.shutdown().await;
}

/// A loopback webhook receiver forwarding each posted body on a channel.
async fn webhook() -> (String, mpsc::Receiver<Value>) {
    let (tx, rx) = mpsc::channel(8);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

#[tokio::test]
async fn delete_activities_is_queued_then_applied_and_reported_to_the_webhook() {
    let config = SimConfig {
        delete_delay: Duration::from_millis(300),
        ..unlimited()
    };
    let sim = RunningSimulator::start(config).await.unwrap();
    let client = client();
    let lead = demo_lead_id(7);
    let body = json!([
        {"RelatedProspectId": lead, "ActivityEvent": 201, "ActivityDateTime": "2025-04-01 00:00:00"},
        {"RelatedProspectId": lead, "ActivityEvent": 201, "ActivityDateTime": "2025-04-02 00:00:00"},
        {"RelatedProspectId": lead, "ActivityEvent": 201, "ActivityDateTime": "2025-05-01 00:00:00"},
        {"RelatedProspectId": lead, "ActivityEvent": 202, "ActivityDateTime": "2025-04-01 00:00:00"},
        {"RelatedProspectId": demo_lead_id(8), "ActivityEvent": 201, "ActivityDateTime": "2025-04-01 00:00:00"},
    ]);
    post(&client, &sim, PATH_BULK_ADD_BY_LEAD_ID, &body).await;
    let (hook, mut calls) = webhook().await;
    let request = json!({"ProspectId": lead.to_uppercase(), "ActivityEventList": ["201"],
        "FromDate": "2025-04-01 00:00:00", "ToDate": "2025-04-30 23:59:59", "StatusWebhookURL": hook});
    let response = post(&client, &sim, PATH_DELETE_ACTIVITIES, &request).await;
    assert_eq!(response.status(), 200);
    let queued: api::QueuedResponse = response.json().await.unwrap();
    assert_eq!(queued.status, "Success");
    assert_eq!(
        queued.message.message,
        "Your request for delete activities has been queued."
    );
    assert_eq!(
        sim.sim.stats().activities_deleted,
        0,
        "applied before delete_delay"
    );

    let status = tokio::time::timeout(PATIENCE, calls.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status,
        json!({"ProspectId": lead, "Status": "Success", "DeletedCount": 2, "Operation": "DeleteActivities"})
    );
    let deleted: Vec<(i64, String)> = sim
        .sim
        .activities()
        .into_iter()
        .filter(|a| a.deleted)
        .map(|a| (a.event_code, a.date_time))
        .collect();
    assert_eq!(
        deleted,
        vec![
            (201, "2025-04-01 00:00:00".to_string()),
            (201, "2025-04-02 00:00:00".to_string())
        ]
    );
    let stats = sim.sim.stats();
    assert_eq!(stats.activities_deleted, 2);
    let remaining = retrieve(&client, &sim, &lead, &json!({})).await;
    // 201 in May, 202, and the two owner changes.
    assert_eq!(remaining.record_count, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn delete_requests_are_validated() {
    let sim = RunningSimulator::start(unlimited()).await.unwrap();
    let client = client();
    let lead = demo_lead_id(3);
    let cases = [
        (
            json!({"ProspectId": "0f0f0f0f-0000-4000-8000-000000000000", "ActivityEventList": ["201"]}),
            "MXInvalidEntityException",
        ),
        (
            json!({"ProspectId": lead, "ActivityEventList": []}),
            "MXInvalidInputException",
        ),
        (
            json!({"ProspectId": lead, "ActivityEventList": ["abc"]}),
            "MXInvalidInputException",
        ),
        (
            json!({"ProspectId": lead, "ActivityEventList": ["22"]}),
            "MXInvalidInputException",
        ),
        (
            json!({"ProspectId": lead, "ActivityEventList": ["999"]}),
            "MXInvalidInputException",
        ),
        (
            json!({"ProspectId": lead, "ActivityEventList": ["201"], "FromDate": "2025-04-01"}),
            "MXInvalidInputException",
        ),
    ];
    for (body, exception) in cases {
        let response = post(&client, &sim, PATH_DELETE_ACTIVITIES, &body).await;
        assert_eq!(response.status(), 500, "{body}");
        let error: api::ErrorBody = response.json().await.unwrap();
        assert_eq!(error.exception_type.as_deref(), Some(exception), "{body}");
    }
    let response = post(
        &client,
        &sim,
        PATH_DELETE_ACTIVITIES,
        &json!({"ActivityEventList": ["201"]}),
    )
    .await;
    assert_eq!(response.status(), 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn delete_owner_history_removes_only_owner_changes_in_the_window() {
    let config = SimConfig {
        delete_delay: Duration::from_millis(50),
        ..unlimited()
    };
    let sim = RunningSimulator::start(config).await.unwrap();
    let mut applied = sim.sim.shared.deletes_applied.subscribe();
    let client = client();
    let lead = demo_lead_id(11);
    post(
        &client,
        &sim,
        PATH_BULK_ADD_BY_LEAD_ID,
        &json!([row(&lead, 203)]),
    )
    .await;
    // A webhook off the machine is never called; the delete still happens.
    let request = json!({"ProspectId": lead, "FromDate": "2024-05-01 00:00:00", "StatusWebhookURL": "https://example.com/hook"});
    let response = post(&client, &sim, PATH_DELETE_OWNER_HISTORY, &request).await;
    assert_eq!(response.status(), 200);
    let queued: api::QueuedResponse = response.json().await.unwrap();
    assert_eq!(
        queued.message.message,
        "Your request for delete user assignment change history has been queued."
    );
    tokio::time::timeout(PATIENCE, applied.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();
    let state: Vec<(i64, String, bool)> = sim
        .sim
        .activities_of_lead(&lead)
        .into_iter()
        .map(|a| (a.event_code, a.date_time, a.deleted))
        .collect();
    assert_eq!(
        state[0],
        (OWNER_CHANGE_EVENT, "2024-01-15 09:00:00".to_string(), false)
    );
    assert_eq!(
        state[1],
        (OWNER_CHANGE_EVENT, "2024-06-01 12:30:00".to_string(), true)
    );
    assert_eq!((state[2].0, state[2].2), (203, false));
    sim.shutdown().await;
}

#[tokio::test]
async fn account_endpoints_unknown_paths_and_admin_routes() {
    let config = SimConfig {
        account_host: "api-us11.leadsquared.com".to_string(),
        ..SimConfig::default()
    };
    let sim = RunningSimulator::start(config).await.unwrap();
    let client = client();
    let user: api::UserByAccessKey = get(&client, &sim, PATH_USER_BY_ACCESS_KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        user.lsq_common_service_urls["api"],
        "api-us11.leadsquared.com"
    );
    assert_eq!(
        get(&client, &sim, "/v2/ProspectActivity.svc/Nope")
            .await
            .status(),
        404
    );
    // A known path with the wrong method does not exist either.
    assert_eq!(
        get(&client, &sim, PATH_BULK_ADD_BY_LEAD_ID).await.status(),
        404
    );

    let admin = |path: &'static str| client.get(format!("{}{path}", sim.base_url())).send();
    let stats: Value = admin("/_sim/stats").await.unwrap().json().await.unwrap();
    assert_eq!(stats["requests"], 3);
    assert_eq!(stats["max_requests_in_window"], 3);
    let log: Vec<RequestRecord> = admin("/_sim/requests").await.unwrap().json().await.unwrap();
    assert_eq!(log[1].outcome, RequestOutcome::NotFound);
    let all: Vec<StoredActivity> = admin("/_sim/activities")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), DEMO_LEADS * 2);
    let url = format!(
        "{}/_sim/activities?lead={}",
        sim.base_url(),
        demo_lead_id(0).to_uppercase()
    );
    let one: Vec<StoredActivity> = client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(one.len(), 2);
    assert!(
        one.iter()
            .all(|a| a.lead_id == demo_lead_id(0) && a.created_by_request.is_none())
    );
    // Admin calls are not logged.
    assert_eq!(sim.sim.requests().len(), 3);
    sim.shutdown().await;
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status line.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&buffer)
        );
        buffer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buffer).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            if buffer.len() >= end + 4 + length {
                return text.lines().next().unwrap().to_string();
            }
        }
    }
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let sim = RunningSimulator::start(unlimited()).await.unwrap();
    let mut stream = TcpStream::connect(sim.addr).await.unwrap();
    for _ in 0..3 {
        let request = format!(
            "GET {PATH_ACTIVITY_TYPES} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-LSQ-AccessKey: {ACCESS}\r\nx-LSQ-SecretKey: {SECRET}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut stream).await, "HTTP/1.1 200 OK");
    }
    assert_eq!(sim.sim.requests().len(), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_the_answer_but_not_the_logged_arrival() {
    let config = SimConfig {
        latency: Duration::from_millis(150),
        ..unlimited()
    };
    let sim = RunningSimulator::start(config).await.unwrap();
    // Built before the clock starts: loading the platform's roots can take longer than the
    // margin below on a busy machine.
    let http = client();
    let sent = Instant::now();
    let response = get(&http, &sim, PATH_ACTIVITY_TYPES).await;
    assert_eq!(response.status(), 200);
    assert!(sent.elapsed() >= Duration::from_millis(150));
    let arrived = sim.sim.requests()[0].at;
    let started = sim.sim.shared.started;
    assert!(
        started + arrived < sent + Duration::from_millis(100),
        "arrival was stamped late"
    );
    sim.shutdown().await;
}

#[test]
fn max_requests_in_any_window_reads_a_hand_made_log() {
    let sim = Simulator::new(unlimited());
    for (seq, ms) in [0u64, 10, 20, 400, 1005, 1010, 1020, 1030]
        .into_iter()
        .enumerate()
    {
        sim.push_test_record(RequestRecord {
            seq: seq as u64,
            at: Duration::from_millis(ms),
            method: "POST".into(),
            path: PATH_BULK_ADD_BY_LEAD_ID.into(),
            status: if seq % 2 == 0 { 200 } else { 429 },
            items: 1,
            outcome: RequestOutcome::Ok,
            answered: None,
        });
    }
    // [10, 1010) holds 10, 20, 400, 1005: 4; [400, 1400) holds 400 and the four after 1000: 5.
    assert_eq!(sim.max_requests_in_any_window(Duration::from_secs(1)), 5);
    assert_eq!(sim.max_requests_in_any_window(Duration::from_millis(30)), 4);
    assert_eq!(sim.max_requests_in_any_window(Duration::from_millis(5)), 1);
}

#[test]
fn request_outcomes_serialize_as_snake_case() {
    let names: Vec<Value> = [
        RequestOutcome::RateLimited,
        RequestOutcome::Fault500,
        RequestOutcome::CommittedThenDropped,
    ]
    .iter()
    .map(|o| serde_json::to_value(o).unwrap())
    .collect();
    assert_eq!(
        names,
        vec![
            json!("rate_limited"),
            json!("fault_500"),
            json!("committed_then_dropped")
        ]
    );
}

#[test]
fn rate_limit_message_names_whole_and_fractional_seconds() {
    let n = NonZeroU32::new(25).unwrap();
    assert_eq!(
        rate_limit_message(n, Duration::from_secs(5)),
        "API calls exceeded the limit of 25 in 5 second(s)"
    );
    assert_eq!(
        rate_limit_message(n, Duration::from_millis(500)),
        "API calls exceeded the limit of 25 in 0.5 second(s)"
    );
}

#[test]
fn config_debug_hides_the_keys() {
    let text = format!("{:?}", SimConfig::default());
    assert!(
        !text.contains("sim-secret-key") && !text.contains("sim-access-key"),
        "{text}"
    );
}

#[tokio::test]
async fn start_on_a_taken_port_is_a_bind_error() {
    let first = RunningSimulator::start(unlimited()).await.unwrap();
    let second = RunningSimulator::start_on(first.addr.port(), unlimited()).await;
    assert!(matches!(second, Err(SimError::Bind { port, .. }) if port == first.addr.port()));
    assert!(first.base_url().starts_with("http://127.0.0.1:"));
    first.shutdown().await;
}

#[tokio::test]
async fn by_lead_field_finds_leads_by_email_and_phone_and_shares_the_limit_and_faults() {
    let sim = RunningSimulator::start(SimConfig {
        rate: quota(2, Duration::from_secs(60)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    let path = |field: &str| format!("{}?searchBy={field}", api::PATH_BULK_ADD_BY_LEAD_FIELD);
    let body = json!([
        {"SearchByValue": demo_lead_email(3).to_uppercase(), "ActivityEvent": 201},
        {"SearchByValue": "nobody@example.com", "ActivityEvent": 201},
    ]);
    let response = post(&c, &sim, &path("EmailAddress"), &body).await;
    assert_eq!(response.status(), 200);
    let answer: api::BulkResponse = response.json().await.unwrap();
    assert!(answer.response[0].activity_created);
    assert_eq!(
        answer.response[1].exception_message.as_deref(),
        Some("Lead not found with EmailAddress = 'nobody@example.com'")
    );
    assert_eq!(sim.sim.activities_of_lead(&demo_lead_id(3)).len(), 3);

    let body = json!([{"SearchByValue": "+91 80000 00004", "ActivityEvent": 201}]);
    let response = post(&c, &sim, &path("Phone"), &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(sim.sim.activities_of_lead(&demo_lead_id(4)).len(), 3);

    // The third call in the window is refused like any other, and logged with its items.
    let response = post(&c, &sim, &path("Phone"), &body).await;
    assert_eq!(response.status(), 429);
    let log = sim.sim.requests();
    assert_eq!(log[2].outcome, RequestOutcome::RateLimited);
    assert_eq!(log[2].items, 1);
    sim.shutdown().await;

    let sim = RunningSimulator::start(SimConfig {
        faults: FaultConfig {
            plain_500: 1.0,
            ..FaultConfig::default()
        },
        ..unlimited()
    })
    .await
    .unwrap();
    let response = post(&c, &sim, &path("EmailAddress"), &body).await;
    assert_eq!(response.status(), 500);
    assert_eq!(sim.sim.requests()[0].outcome, RequestOutcome::Fault500);
    sim.shutdown().await;

    let sim = RunningSimulator::start(unlimited()).await.unwrap();
    let response = post(&c, &sim, &path("FirstName"), &body).await;
    assert_eq!(response.status(), 400);
    assert!(
        sim.sim
            .activities()
            .iter()
            .all(|a| a.created_by_request.is_none())
    );
    sim.shutdown().await;
}
