//! Unit tests of `certainty`: the pure choice (plan, cost, grouping by code), then whole rounds
//! against the simulator: the account-wide read chosen and believed, and each reason it is not.

use super::*;
use std::time::Duration;

use crate::lsq::api::FieldValue;
use crate::lsq::by_event::CountedAs;
use crate::lsq::calls::{Api, RetryPolicy};
use crate::lsq::client::LsqClient;
use crate::lsq::counters::RunStats;
use crate::simulator::{ByEventNote, RunningSimulator, SimConfig};

fn item(lead: &str, code: i64, date: Option<&str>, note: &str) -> ActivityItem {
    ActivityItem {
        related_prospect_id: lead.to_string(),
        activity_event: code,
        activity_note: Some(note.to_string()),
        activity_owner_email: Some("asha.rao@example.com".into()),
        activity_date_time: date.map(str::to_string),
        fields: vec![FieldValue {
            schema_name: "mx_Custom_1".into(),
            value: format!("{note}-field"),
        }],
    }
}

fn lead(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// `rows` in doubt, row `i` of call `calls[i]`.
fn of_calls<'a>(rows: &'a [ActivityItem], calls: &[usize]) -> Vec<RowInDoubt<'a>> {
    rows.iter()
        .zip(calls)
        .map(|(item, &call)| RowInDoubt { item, call })
        .collect()
}

fn at(text: &str) -> DateTime<Utc> {
    chrono::NaiveDateTime::parse_from_str(text, DATE_TIME_FORMAT)
        .unwrap()
        .and_utc()
}

// ---- the choice ----

#[test]
fn a_code_is_estimated_unless_its_leads_are_few_or_the_read_cannot_be_believed() {
    let fresh = CodeMemory::default();
    assert_eq!(plan(3, true, true, &fresh, None, None), Plan::Estimate);
    // Unbounded (a call of unknown start): every activity is listed, nothing to verify.
    assert_eq!(plan(3, false, false, &fresh, None, None), Plan::Estimate);
    let leads = |p: Plan| matches!(p, Plan::Leads(_));
    assert!(leads(plan(FEW_LEADS, true, true, &fresh, None, None)));
    assert!(leads(plan(1, false, false, &fresh, None, None)));
    assert!(leads(plan(3, true, false, &fresh, None, None)));
    assert!(leads(plan(30, true, true, &fresh, Some("HTTP 404"), None)));
    let no_notes = CodeMemory {
        no_notes: true,
        density: None,
    };
    assert!(leads(plan(30, true, true, &no_notes, None, None)));
    // The last estimate predicts 12 pages: not worth an estimate for 11 leads, worth one for 12.
    assert!(leads(plan(11, true, true, &fresh, None, Some(12))));
    assert_eq!(plan(12, true, true, &fresh, None, Some(12)), Plan::Estimate);
}

#[test]
fn arrivals_split_the_pacers_rate_by_what_the_run_created_of_each_code() {
    let mut created = Created::default();
    for _ in 0..3 {
        created.note(201, None);
    }
    created.note(202, Some("b".into()));
    // 10 calls a second of 25 rows for 1 s: 250 rows, three quarters of code 201.
    assert_eq!(
        created.arrivals(10.0),
        HashMap::from([(201, 188), (202, 63)])
    );
    assert_eq!(
        created.canaries_of([201, 202, 203].into_iter()),
        HashMap::from([(202, "b".to_string())])
    );
    assert!(Created::default().arrivals(10.0).is_empty());
}

#[test]
fn a_density_predicts_the_pages_of_a_window() {
    let density = Density {
        per_second: 25.0,
        page_size: 100,
    };
    // 40 s of window at 25 activities a second: 1,000 activities, 10 pages (give or take the
    // test's own second).
    let pages = density.pages_since(Utc::now() - TimeDelta::seconds(40));
    assert!((10..=11).contains(&pages), "{pages}");
    assert_eq!(density.pages_since(Utc::now() + TimeDelta::hours(1)), 1);
}

#[test]
fn estimates_go_to_the_codes_with_the_most_leads_while_the_round_can_pay_for_them() {
    // One batch's leads (at most 25) pay for no estimate: read lead by lead, as before.
    let per = LEADS_PER_ESTIMATE;
    assert_eq!(affordable(&[3, 6, 6, 4, 5], 19, per), vec![false; 5]);
    assert_eq!(affordable(&[3, 6, 6, 4, 5], 25, per), vec![false; 5]);
    // Two batches' worth: two estimates, for the codes with the most leads.
    assert_eq!(
        affordable(&[3, 6, 7, 4, 5], 52, per),
        vec![false, true, true, false, false]
    );
    assert_eq!(affordable(&[30, 40, 50, 20, 60], 200, per), vec![true; 5]);
    // At four leads an estimate: 19 leads pay for four.
    assert_eq!(
        affordable(&[3, 6, 6, 4, 5], 19, 4),
        vec![false, true, true, true, true]
    );
    assert_eq!(affordable(&[3], 3, per), vec![false]);
    assert_eq!(affordable(&[], 0, per), Vec::<bool>::new());
}

#[test]
fn a_missed_canary_doubles_the_margin_until_the_last_then_stops_account_wide_reads() {
    let mut memory = CheckMemory::estimating_per(4);
    assert_eq!(memory.margin(), FIRST_MARGIN);
    let mut margins = Vec::new();
    while memory.unavailable.is_none() {
        memory.widen();
        margins.push(memory.margin().num_seconds());
    }
    assert_eq!(
        margins,
        vec![60, 120, 240, 480, 960, 1920, 3600, 3600],
        "doubled up to an hour, then given up"
    );
    assert!(matches!(
        plan(
            30,
            true,
            true,
            &CodeMemory::default(),
            memory.unavailable.as_deref(),
            None
        ),
        Plan::Leads(_)
    ));
}

#[test]
fn the_read_goes_on_while_its_pages_left_cost_less_than_the_leads() {
    assert_eq!(pages_of(0, 100), 1);
    assert_eq!(pages_of(100, 100), 1);
    assert_eq!(pages_of(101, 100), 2);
    assert_eq!(pages_of(5, 0), 5);
    // The first page is paid: 4 pages leave 3 calls, against 4 leads yes, against 3 no.
    assert!(worth_reading(4, 4));
    assert!(!worth_reading(4, 3));
    assert!(worth_reading(1, 1));
    assert!(!worth_reading(2, 0));
}

fn leads(numbers: std::ops::Range<u32>) -> BTreeSet<String> {
    numbers.map(lead).collect()
}

#[test]
fn the_choice_counts_a_lead_once_however_many_codes_it_has() {
    let none = BTreeSet::new();
    // Two codes on the same three leads: three reads lead by lead cover both, cheaper than
    // two pages left of either code's read plus the leads for the other.
    let same = leads(0..3);
    assert_eq!(
        choose(&[(&same, Some(2)), (&same, Some(2))], &none),
        vec![false, false]
    );
    // Ten leads for 2 pages left is a bargain; ten other leads for 15 pages is not.
    let (a, b) = (leads(0..10), leads(10..20));
    assert_eq!(
        choose(&[(&a, Some(2)), (&b, Some(15))], &none),
        vec![true, false]
    );
    // Leads read anyway (calls without a canary) cost nothing more.
    assert_eq!(choose(&[(&same, Some(1))], &same), vec![false]);
    // A tie goes to the leads; a code without an estimate is never chosen.
    assert_eq!(choose(&[(&leads(0..2), Some(2))], &none), vec![false]);
    assert_eq!(choose(&[(&a, None)], &none), vec![false]);
    // The demo account's round from the outage benchmark: 19 leads shared by five codes.
    let shared = [
        leads(0..3),
        leads(2..8),
        leads(6..12),
        leads(11..15),
        leads(14..19),
    ];
    let costs: Vec<_> = shared.iter().map(|l| (l, Some(6))).collect();
    assert_eq!(choose(&costs, &none), vec![false; 5]);
}

#[test]
fn past_a_dozen_candidates_codes_are_added_while_one_makes_the_round_cheaper() {
    let sets: Vec<BTreeSet<String>> = (0..14).map(|c| leads(c * 5..c * 5 + 5)).collect();
    let mut costs: Vec<(&BTreeSet<String>, Option<u64>)> =
        sets.iter().map(|l| (l, Some(1))).collect();
    // One code whose read is dearer than its five leads.
    costs[3].1 = Some(9);
    let chosen = choose(&costs, &BTreeSet::new());
    assert_eq!(chosen.iter().filter(|c| **c).count(), 13);
    assert!(!chosen[3]);
}

#[test]
fn rows_group_by_code_with_the_earliest_call_setting_the_date_and_the_canary() {
    let rows = [
        item(&lead(1), 201, Some("2024-01-01 10:00:00"), "a"),
        item(
            &lead(2).to_uppercase(),
            201,
            Some("2024-01-01 10:00:00"),
            "b",
        ),
        item(&lead(2), 202, Some("2024-01-01 10:00:00"), "c"),
        item(&lead(3), 201, None, "undated"),
        item(&lead(4), 203, Some("2024-01-01 10:00:00"), "d"),
        item(&lead(1), 201, Some("2024-01-01 10:00:00"), "e"),
    ];
    let calls = [
        CallInDoubt {
            started: Some(at("2026-12-06 10:05:00")),
            canaries: HashMap::from([(201, "late-201".to_string())]),
        },
        CallInDoubt {
            started: Some(at("2026-12-06 10:04:12")),
            canaries: HashMap::from([(201, "early-201".to_string())]),
        },
        CallInDoubt::default(),
    ];
    let in_doubt = of_calls(&rows, &[0, 1, 0, 2, 2, 0]);
    let grouped = demands(&in_doubt, &calls, TimeDelta::minutes(2));
    assert_eq!(
        grouped.iter().map(|d| d.event).collect::<Vec<_>>(),
        vec![201, 202, 203]
    );
    let code_201 = &grouped[0];
    // The undated row matches nothing and costs nothing; a lead written in capitals is the
    // same lead.
    assert_eq!(code_201.rows, vec![0, 1, 5]);
    assert_eq!(
        code_201.leads,
        BTreeSet::from([lead(1), lead(2)]),
        "leads normalised and counted once"
    );
    assert_eq!(code_201.from, Some(at("2026-12-06 10:02:12")));
    assert_eq!(code_201.canary, Some("early-201"));
    assert!(code_201.leads_only.is_empty());
    // Code 202's only call has no canary of that code (it left before anything of the code was
    // created): no bounded read can be verified, so its row is read lead by lead.
    assert_eq!(grouped[1].rows, Vec::<usize>::new());
    assert_eq!(grouped[1].leads_only, vec![2]);
    assert_eq!((grouped[1].from, grouped[1].canary), (None, None));
    // Code 203's call has no known start: every date is read, with no canary.
    assert_eq!(grouped[2].rows, vec![4]);
    assert_eq!((grouped[2].from, grouped[2].canary), (None, None));
}

#[test]
fn rows_of_calls_without_a_canary_are_read_lead_by_lead_beside_the_others() {
    let rows = [
        item(&lead(1), 201, Some("2024-01-01 10:00:00"), "first call"),
        item(&lead(2), 201, Some("2024-01-01 10:00:00"), "later call"),
    ];
    let calls = [
        CallInDoubt {
            started: Some(at("2026-12-06 10:00:00")),
            canaries: HashMap::new(),
        },
        CallInDoubt {
            started: Some(at("2026-12-06 10:00:01")),
            canaries: HashMap::from([(201, "c".to_string())]),
        },
    ];
    let in_doubt = of_calls(&rows, &[0, 1]);
    let grouped = demands(&in_doubt, &calls, FIRST_MARGIN);
    assert_eq!(grouped.len(), 1);
    assert_eq!(grouped[0].rows, vec![1]);
    assert_eq!(grouped[0].leads, BTreeSet::from([lead(2)]));
    assert_eq!(grouped[0].leads_only, vec![0]);
    // The read starts from the call that has a canary, not from the earlier one.
    assert_eq!(grouped[0].from, Some(at("2026-12-06 09:59:31")));
    assert_eq!(grouped[0].canary, Some("c"));
}

// ---- rounds against the simulator ----

/// A simulator, a fetcher and a reader sharing one test `Api`, with `activities` stored before
/// the round (as a server that applied an uncertain call would hold them); their ids.
struct Rig {
    sim: RunningSimulator,
    fetcher: Fetcher,
    reader: EventReader,
    ids: Vec<String>,
}

async fn rig(note: ByEventNote, page_cap: u64, activities: &[&ActivityItem]) -> Rig {
    let config = SimConfig {
        rate: None,
        accept_any_lead: true,
        by_event_note: note,
        by_event_page_cap: page_cap,
        ..SimConfig::default()
    };
    let (access, secret) = (config.access_key.clone(), config.secret_key.clone());
    let sim = RunningSimulator::start(config).await.unwrap();
    let api = Api::for_tests(
        LsqClient::for_tests(&sim.base_url(), access, secret),
        "1000/1s",
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
    );
    let ids = activities
        .iter()
        .map(|a| sim.sim.add_activity((*a).clone()))
        .collect();
    Rig {
        sim,
        fetcher: Fetcher::new(api.clone()),
        reader: EventReader {
            counted_as: CountedAs::Checks,
            freeze: true,
            ..EventReader::new(api)
        },
        ids,
    }
}

impl Rig {
    async fn settle(
        &self,
        rows: &[&ActivityItem],
        call: CallInDoubt,
        memory: &mut CheckMemory,
    ) -> Vec<Option<String>> {
        let in_doubt: Vec<RowInDoubt> = rows
            .iter()
            .map(|&item| RowInDoubt { item, call: 0 })
            .collect();
        settle(
            &self.fetcher,
            &self.reader,
            &in_doubt,
            &[call],
            &HashSet::new(),
            &HashMap::new,
            memory,
        )
        .await
        .unwrap()
    }

    /// (per-lead lookups, account-wide reads) so far.
    fn cost(&self) -> (u64, u64) {
        let stats = &self.fetcher.api.stats;
        (
            RunStats::get(&stats.lookup_calls),
            RunStats::get(&stats.check_reads),
        )
    }
}

/// Ten rows of code 201 on ten leads, the first six created on the server (as an uncertain call
/// that was applied would leave them) and the last four not; plus a canary of the same code.
fn ten_rows() -> (Vec<ActivityItem>, ActivityItem) {
    let rows = (0..10)
        .map(|n| {
            item(
                &lead(100 + n),
                201,
                Some("2024-05-01 09:00:00"),
                &format!("row {n}"),
            )
        })
        .collect();
    let canary = item(&lead(999), 201, Some("2023-01-01 00:00:00"), "canary");
    (rows, canary)
}

/// A call that left a second ago, with `canary` as its code-201 canary.
fn call_with(canary: &str) -> CallInDoubt {
    CallInDoubt {
        started: Some(Utc::now() - TimeDelta::seconds(1)),
        canaries: HashMap::from([(201, canary.to_string())]),
    }
}

/// [`ten_rows`], on a server listing notes as `note` that holds the canary (`ids[0]`) and the
/// first six rows (`ids[1..=6]`).
async fn six_of_ten_applied(note: ByEventNote) -> (Vec<ActivityItem>, Rig) {
    let (rows, canary) = ten_rows();
    let mut stored: Vec<&ActivityItem> = vec![&canary];
    stored.extend(&rows[..6]);
    let rig = rig(note, 100, &stored).await;
    (rows, rig)
}

impl Rig {
    /// A round of `rows`, all of one call that left a second ago with the canary (`ids[0]`) as
    /// its code-201 canary.
    async fn settle_all(
        &self,
        rows: &[ActivityItem],
        memory: &mut CheckMemory,
    ) -> Vec<Option<String>> {
        let items: Vec<&ActivityItem> = rows.iter().collect();
        self.settle(&items, call_with(&self.ids[0]), memory).await
    }
}

#[tokio::test]
async fn many_leads_of_one_code_are_settled_by_one_account_wide_read() {
    let (rows, rig) = six_of_ten_applied(ByEventNote::Present).await;
    let mut memory = CheckMemory::estimating_per(4);
    let found = rig.settle_all(&rows, &mut memory).await;
    let expected: Vec<Option<String>> = rig.ids[1..]
        .iter()
        .map(|id| Some(id.clone()))
        .chain(std::iter::repeat_n(None, 4))
        .collect();
    assert_eq!(found, expected);
    // One page of the code's activities instead of ten leads.
    assert_eq!(rig.cost(), (0, 1));
    rig.sim.shutdown().await;
}

#[tokio::test]
async fn a_read_costing_more_pages_than_leads_is_left_after_its_first_page() {
    let (rows, canary) = ten_rows();
    // 51 activities of the code modified recently, listed 5 per page: 11 pages for 8 leads.
    let others: Vec<ActivityItem> = (0..49)
        .map(|n| item(&lead(500 + n), 201, Some("2024-02-02 10:00:00"), "other"))
        .collect();
    let mut stored: Vec<&ActivityItem> = vec![&canary, &rows[0]];
    stored.extend(&others);
    let rig = rig(ByEventNote::Present, 5, &stored).await;
    let items: Vec<&ActivityItem> = rows[..8].iter().collect();
    let mut memory = CheckMemory::estimating_per(4);
    let found = rig
        .settle(&items, call_with(&rig.ids[0]), &mut memory)
        .await;
    let mut expected = vec![None; 8];
    expected[0] = Some(rig.ids[1].clone());
    assert_eq!(found, expected);
    // The estimate (one page), then the eight leads.
    assert_eq!(rig.cost(), (8, 1));
    assert!(memory.codes[&201].density.is_some());
    // The next round with as few leads does not pay for the estimate again: the last one
    // predicts as many pages.
    let again = rig
        .settle(&items, call_with(&rig.ids[0]), &mut memory)
        .await;
    assert_eq!(again, found);
    assert_eq!(rig.cost(), (16, 1));
    rig.sim.shutdown().await;
}

#[tokio::test]
async fn a_read_that_misses_the_canary_is_not_believed() {
    let (rows, rig) = six_of_ten_applied(ByEventNote::Present).await;
    // The canary's stamp is older than the read's FromDate, as on a server whose clock runs
    // far behind ours (or that selects by another date): the read cannot be trusted to hold
    // what the calls in doubt created.
    assert!(rig.sim.sim.set_modified(&rig.ids[0], "2020-01-01 00:00:00"));
    let mut memory = CheckMemory::estimating_per(4);
    let found = rig.settle_all(&rows, &mut memory).await;
    assert_eq!(found.iter().filter(|f| f.is_some()).count(), 6);
    // The read, then every lead; later reads begin twice as early.
    assert_eq!(rig.cost(), (10, 1));
    assert_eq!(memory.margin(), FIRST_MARGIN * 2);
    // No canary at all: the leads straight away.
    let no_canary = CallInDoubt {
        started: Some(Utc::now()),
        canaries: HashMap::new(),
    };
    let items: Vec<&ActivityItem> = rows.iter().collect();
    let again = rig.settle(&items, no_canary, &mut memory).await;
    assert_eq!(again, found);
    assert_eq!(rig.cost(), (20, 1));
    rig.sim.shutdown().await;
}

#[tokio::test]
async fn a_server_that_lists_no_notes_sends_the_code_to_the_leads_for_the_rest_of_the_run() {
    let (rows, rig) = six_of_ten_applied(ByEventNote::Absent).await;
    let mut memory = CheckMemory::estimating_per(4);
    let found = rig.settle_all(&rows, &mut memory).await;
    assert_eq!(found.iter().filter(|f| f.is_some()).count(), 6);
    assert_eq!(rig.cost(), (10, 1));
    assert!(memory.codes[&201].no_notes);
    rig.settle_all(&rows, &mut memory).await;
    assert_eq!(rig.cost(), (20, 1), "no account-wide read the second time");
    rig.sim.shutdown().await;
}

#[tokio::test]
async fn rows_left_in_flight_by_an_earlier_run_are_read_without_a_date() {
    let (rows, _) = ten_rows();
    let stored: Vec<&ActivityItem> = rows[..6].iter().collect();
    let rig = rig(ByEventNote::Present, 100, &stored).await;
    // Modified long ago: an account-wide read with any FromDate would miss them.
    for id in &rig.ids {
        assert!(rig.sim.sim.set_modified(id, "2020-01-01 00:00:00"));
    }
    let items: Vec<&ActivityItem> = rows.iter().collect();
    let mut memory = CheckMemory::estimating_per(4);
    let found = rig
        .settle(&items, CallInDoubt::default(), &mut memory)
        .await;
    assert_eq!(found.iter().filter(|f| f.is_some()).count(), 6);
    assert_eq!(rig.cost(), (0, 1));
    rig.sim.shutdown().await;
}
