//! Unit tests of `activities`.

use super::*;
use std::time::Duration;

use crate::lsq::api::ActivityItem;
use crate::lsq::calls::RetryPolicy;
use crate::lsq::client::LsqClient;
use crate::lsq::counters::RunStats;
use crate::simulator::{
    OWNER_CHANGE_EVENT, PagingMode, RetrieveDates, RunningSimulator, SimConfig,
};

// ---- Pager against an in-memory listing ----

/// How a fake server reads Offset, including behaviours outside the three real modes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fake {
    Zero,
    One,
    Rows,
    /// 1-based and strict: Offset 0 is empty.
    OneStrict,
    /// Ignores Offset: always the first page.
    Ignores,
}

fn fake_activity(id: &str) -> ProspectActivity {
    ProspectActivity {
        id: id.to_string(),
        event_code: 201,
        event_name: String::new(),
        activity_score: 0,
        created_on: "2025-01-01 00:00:00".into(),
        activity_type: 2,
        is_email_type: false,
        direction: String::new(),
        session_id: String::new(),
        related_prospect_id: String::new(),
        data: Vec::new(),
        activity_fields: serde_json::Map::new(),
        modified_on: String::new(),
    }
}

/// One page of `ids` as a server of kind `fake` would serve it. `cap` limits RowCount,
/// `extra_count` inflates RecordCount.
fn serve(
    fake: Fake,
    ids: &[String],
    offset: u64,
    row_count: u64,
    cap: u64,
    extra_count: u64,
) -> RetrieveResponse {
    let rows = row_count.min(cap);
    let skip = match fake {
        Fake::Zero => Some(offset * rows),
        Fake::One => Some(offset.max(1).saturating_sub(1) * rows),
        Fake::OneStrict => offset.checked_sub(1).map(|p| p * rows),
        Fake::Rows => Some(offset),
        Fake::Ignores => Some(0),
    };
    let page = match skip {
        Some(skip) => ids
            .iter()
            .skip(skip as usize)
            .take(rows as usize)
            .map(|id| fake_activity(id))
            .collect(),
        None => Vec::new(),
    };
    RetrieveResponse {
        record_count: ids.len() as u64 + extra_count,
        prospect_activities: page,
    }
}

/// Runs a walk against the fake; returns the result and the number of calls.
fn walk(
    fake: Fake,
    n: usize,
    page: u64,
    cap: u64,
    extra_count: u64,
) -> (Result<Vec<ProspectActivity>, String>, u64, Vec<String>) {
    let ids: Vec<String> = (0..n).map(|i| format!("id-{i}")).collect();
    let mut pager = Pager::new(page);
    let mut calls = 0;
    while let Some((offset, row_count)) = pager.next_request() {
        calls += 1;
        assert!(calls < 1000, "{fake:?} n={n} page={page}: runaway walk");
        pager.feed(serve(fake, &ids, offset, row_count, cap, extra_count));
    }
    (pager.finish(), calls, ids)
}

#[test]
fn every_offset_meaning_yields_each_activity_once_in_few_calls() {
    for fake in [Fake::Zero, Fake::One, Fake::Rows, Fake::OneStrict] {
        for page in [1u64, 2, 3, 25, 100] {
            let p = page as usize;
            for n in [0, 1, p.saturating_sub(1), p, p + 1, 2 * p, 2 * p + 1, 237] {
                let (result, calls, ids) = walk(fake, n, page, u64::MAX, 0);
                let got: Vec<String> = result
                    .unwrap_or_else(|e| panic!("{fake:?} n={n} page={page}: {e}"))
                    .into_iter()
                    .map(|a| a.id)
                    .collect();
                assert_eq!(got, ids, "{fake:?} n={n} page={page}");
                // The probe costs one call, and a strict 1-based server one more.
                let bound = (n as u64).div_ceil(page).max(1) + 2;
                assert!(
                    calls <= bound,
                    "{fake:?} n={n} page={page}: {calls} calls > {bound}"
                );
                if n as u64 <= page && fake != Fake::OneStrict {
                    assert_eq!(calls, 1, "{fake:?} n={n} page={page}: one page is one call");
                }
            }
        }
    }
}

#[test]
fn a_server_that_ignores_offset_ends_quickly_and_incomplete() {
    let (result, calls, _) = walk(Fake::Ignores, 237, 25, u64::MAX, 0);
    let err = result.unwrap_err();
    assert!(
        err.contains("25 distinct activities collected of the 237"),
        "{err}"
    );
    assert!(calls <= 3, "{calls} calls");
}

#[test]
fn an_inflated_record_count_cannot_make_the_walk_endless() {
    for fake in [Fake::Zero, Fake::One, Fake::Rows] {
        let (result, calls, _) = walk(fake, 60, 25, u64::MAX, 1_000_000);
        assert!(result.is_err(), "{fake:?}");
        assert!(calls <= 5, "{fake:?}: {calls} calls");
    }
}

#[test]
fn a_server_side_row_count_cap_is_followed() {
    for fake in [Fake::Zero, Fake::One, Fake::Rows] {
        let (result, calls, ids) = walk(fake, 95, 25, 10, 0);
        let got: Vec<String> = result.unwrap().into_iter().map(|a| a.id).collect();
        assert_eq!(got, ids, "{fake:?}");
        assert!(calls <= 12, "{fake:?}: {calls} calls");
    }
}

#[test]
fn the_request_body_carries_filters_and_paging_as_the_vendor_spells_them() {
    let query = ActivityQuery {
        lead_id: "x".into(),
        event: Some(201),
        from: Some("2025-01-01 00:00:00".into()),
        to: None,
    };
    assert_eq!(
        serde_json::to_value(query.request(2, 25)).unwrap(),
        serde_json::json!({
            "Parameter": {"ActivityEvent": 201, "FromDate": "2025-01-01 00:00:00"},
            "Paging": {"Offset": "2", "RowCount": "25"}
        })
    );
    let all = ActivityQuery::lead("x").request(0, 100);
    assert_eq!(
        serde_json::to_value(all).unwrap(),
        serde_json::json!({"Paging": {"Offset": "0", "RowCount": "100"}})
    );
}

#[test]
fn missing_lead_messages_are_recognised() {
    assert!(names_missing_lead(
        "MXInvalidEntityException: Lead not found"
    ));
    assert!(names_missing_lead("Lead does not exist"));
    assert!(!names_missing_lead(
        "MXInvalidInputException: Invalid FromDate"
    ));
}

// ---- Fetcher against the simulator ----

const ACCESS: &str = "sim-access-key";
const SECRET: &str = "sim-secret-key";
const MAIN_ACTIVITIES: usize = 237;

fn make_fetcher(sim: &RunningSimulator, page_size: u64, pace: &str, keys: (&str, &str)) -> Fetcher {
    let client = LsqClient::for_tests(&sim.base_url(), keys.0, keys.1);
    Fetcher {
        api: Api::for_tests(
            client,
            pace,
            RetryPolicy {
                max_attempts: 30,
                base: Duration::from_millis(20),
                max: Duration::from_millis(200),
            },
        ),
        page_size,
    }
}

/// A fresh GUID-shaped lead id for extra leads.
fn lead_guid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Seeds `n` activities on `lead`, codes 201..=205 in turn, dates with many ties (about
/// five per hour) so the listing's tie order matters for paging too.
fn seed(sim: &RunningSimulator, lead: &str, n: usize) {
    for i in 0..n {
        sim.sim.add_activity(ActivityItem {
            related_prospect_id: lead.to_string(),
            activity_event: 201 + (i % 5) as i64,
            activity_note: Some(format!("seeded {i}")),
            activity_owner_email: None,
            activity_date_time: Some(format!("2025-02-{:02} {:02}:00:00", 1 + i % 28, i % 24)),
            fields: Vec::new(),
        });
    }
}

/// Live ids the simulator holds for a lead, optionally of one code and inside a window.
fn expected(
    sim: &RunningSimulator,
    lead: &str,
    code: Option<i64>,
    window: Option<(&str, &str)>,
) -> HashSet<String> {
    sim.sim
        .activities_of_lead(lead)
        .into_iter()
        .filter(|a| !a.deleted && code.is_none_or(|c| a.event_code == c))
        .filter(|a| {
            window
                .is_none_or(|(from, to)| a.date_time.as_str() >= from && a.date_time.as_str() <= to)
        })
        .map(|a| a.id)
        .collect()
}

/// Fetches, checks every expected id comes exactly once, and checks the number of calls
/// against what the server lists (more than `want` when it ignores the date window).
async fn check_fetch(fetcher: &Fetcher, query: &ActivityQuery, want: &HashSet<String>) {
    check_listing(fetcher, query, want, want.len()).await;
}

async fn check_listing(
    fetcher: &Fetcher,
    query: &ActivityQuery,
    want: &HashSet<String>,
    listed: usize,
) {
    let before = RunStats::get(&fetcher.api.stats.calls);
    let got = fetcher.fetch_all(query).await.unwrap();
    let calls = RunStats::get(&fetcher.api.stats.calls) - before;
    let ids: Vec<String> = got.into_iter().map(|a| a.id).collect();
    let distinct: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(distinct.len(), ids.len(), "{query:?}: duplicates");
    assert_eq!(&distinct, want, "{query:?}");
    let bound = (listed as u64).div_ceil(fetcher.page_size).max(1) + 2;
    assert!(calls <= bound, "{query:?}: {calls} calls > {bound}");
}

async fn fetch_everything_in(mode: PagingMode) {
    for dates in [RetrieveDates::Ignored, RetrieveDates::Honoured] {
        fetch_everything_with(mode, dates).await;
    }
}

/// Every query comes back exact whether the server applies the date window (`Honoured`) or,
/// as its documentation allows, ignores it.
async fn fetch_everything_with(mode: PagingMode, dates: RetrieveDates) {
    let sim = RunningSimulator::start(SimConfig {
        rate: None,
        paging: mode,
        retrieve_dates: dates,
        extra_leads: vec![lead_guid(1)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let main = crate::simulator::demo_lead_id(1);
    seed(&sim, &main, MAIN_ACTIVITIES);
    let (exactly_25, exactly_100) = (lead_guid(25), lead_guid(100));
    seed(&sim, &exactly_25, 25);
    seed(&sim, &exactly_100, 100);
    let empty = lead_guid(1);
    let window = ("2025-02-03 00:00:00", "2025-02-10 12:00:00");
    for page_size in [25, 100] {
        let fetcher = make_fetcher(&sim, page_size, "1000/1s", (ACCESS, SECRET));
        // Unfiltered: the 237 seeded plus the two owner changes every demo lead has.
        let all = expected(&sim, &main, None, None);
        assert_eq!(all.len(), MAIN_ACTIVITIES + 2);
        check_fetch(&fetcher, &ActivityQuery::lead(main.clone()), &all).await;
        let calls = expected(&sim, &main, Some(203), None);
        let query = ActivityQuery {
            event: Some(203),
            ..ActivityQuery::lead(main.clone())
        };
        check_fetch(&fetcher, &query, &calls).await;
        assert_eq!(fetcher.count(&query).await.unwrap(), calls.len() as u64);
        let owner_changes = ActivityQuery {
            event: Some(OWNER_CHANGE_EVENT),
            ..ActivityQuery::lead(main.clone())
        };
        assert_eq!(fetcher.fetch_all(&owner_changes).await.unwrap().len(), 2);
        let dated = ActivityQuery {
            event: Some(201),
            from: Some(window.0.into()),
            to: Some(window.1.into()),
            ..ActivityQuery::lead(main.clone())
        };
        let in_window = expected(&sim, &main, Some(201), Some(window));
        assert!(!in_window.is_empty());
        let listed = match dates {
            RetrieveDates::Ignored => expected(&sim, &main, Some(201), None).len(),
            RetrieveDates::Honoured => in_window.len(),
        };
        check_listing(&fetcher, &dated, &in_window, listed).await;
        assert_eq!(fetcher.count(&dated).await.unwrap(), in_window.len() as u64);
        check_fetch(
            &fetcher,
            &ActivityQuery::lead(empty.clone()),
            &HashSet::new(),
        )
        .await;
        let exact = if page_size == 25 {
            &exactly_25
        } else {
            &exactly_100
        };
        let want = expected(&sim, exact, None, None);
        assert_eq!(want.len() as u64, page_size);
        check_fetch(&fetcher, &ActivityQuery::lead(exact.clone()), &want).await;
        assert_eq!(RunStats::get(&fetcher.api.stats.retries), 0);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn fetch_all_with_zero_based_pages() {
    fetch_everything_in(PagingMode::ZeroBasedPage).await;
}

#[tokio::test]
async fn fetch_all_with_one_based_pages() {
    fetch_everything_in(PagingMode::OneBasedPage).await;
}

#[tokio::test]
async fn fetch_all_with_row_offsets() {
    fetch_everything_in(PagingMode::RowOffset).await;
}

#[tokio::test]
async fn unknown_leads_and_bad_keys_are_told_apart() {
    let sim = RunningSimulator::start(SimConfig {
        rate: None,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let fetcher = make_fetcher(&sim, 25, "1000/1s", (ACCESS, SECRET));
    let err = fetcher
        .fetch_all(&ActivityQuery::lead(lead_guid(404)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::LeadNotFound(m) if m.contains("MXInvalidEntityException")),
        "{err:?}"
    );
    let bad_keys = make_fetcher(&sim, 25, "1000/1s", (ACCESS, "wrong"));
    let err = bad_keys
        .count(&ActivityQuery::lead(crate::simulator::demo_lead_id(0)))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized(_)), "{err:?}");
    // Neither is retried: one call each.
    assert_eq!(RunStats::get(&fetcher.api.stats.calls), 1);
    assert_eq!(RunStats::get(&bad_keys.api.stats.calls), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limited_pages_are_retried_until_everything_is_read() {
    let sim = RunningSimulator::start(SimConfig {
        rate: Some("3/300ms".parse().unwrap()),
        paging: PagingMode::RowOffset,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let main = crate::simulator::demo_lead_id(2);
    seed(&sim, &main, MAIN_ACTIVITIES);
    // The pacer allows five times what the account does, so the server must refuse some.
    let fetcher = make_fetcher(&sim, 25, "50/1s", (ACCESS, SECRET));
    let got = fetcher
        .fetch_all(&ActivityQuery::lead(main.clone()))
        .await
        .unwrap();
    let ids: HashSet<String> = got.iter().map(|a| a.id.clone()).collect();
    assert_eq!(ids.len(), got.len());
    assert_eq!(ids, expected(&sim, &main, None, None));
    let stats = &fetcher.api.stats;
    assert!(RunStats::get(&stats.rate_limited) > 0);
    assert_eq!(
        RunStats::get(&stats.rate_limited),
        RunStats::get(&stats.retries)
    );
    assert_eq!(
        sim.sim.stats().rate_limited,
        RunStats::get(&stats.rate_limited)
    );
    assert_eq!(sim.sim.stats().requests, RunStats::get(&stats.calls));
    sim.shutdown().await;
}
