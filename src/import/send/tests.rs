//! Unit tests of `send`: what the sender does with each kind of answer, against the simulator,
//! with the rows in a temp ledger.

use super::*;
use std::time::Duration;

use csv::ByteRecord;

use crate::import::batch::BatchRow;
use crate::input::rows::SourceRow;
use crate::ledger::{Durability, NewRow, StoredRow};
use crate::lsq::api::ActivityItem;
use crate::lsq::calls::RetryPolicy;
use crate::lsq::client::LsqClient;
use crate::report::RowStatus;
use crate::simulator::{DEMO_OWNERS, RejectMode, RunningSimulator, SimConfig, demo_lead_id};

/// A lead the simulator does not know: its row is refused with `ActivityCreated: false`.
const UNKNOWN_LEAD: &str = "00000000-0000-4000-8000-000000000404";

fn item(lead: &str, note: &str) -> ActivityItem {
    ActivityItem {
        related_prospect_id: lead.to_string(),
        activity_event: 201,
        activity_note: Some(note.to_string()),
        activity_owner_email: Some(DEMO_OWNERS[0].to_string()),
        activity_date_time: Some("2025-03-01 10:00:00".to_string()),
        fields: Vec::new(),
    }
}

/// A simulator, a ledger with one run holding `items` as pending rows 1.., and a sender for
/// that run whose retries are quick.
struct Rig {
    sim: RunningSimulator,
    /// Activities the simulator held before anything was sent (its demo data).
    before: usize,
    _dir: tempfile::TempDir,
    ledger: Arc<Ledger>,
    run: i64,
    sender: Sender,
    batch: Batch,
}

async fn rig(config: SimConfig, keys: Option<(&str, &str)>, items: Vec<ActivityItem>) -> Rig {
    let (access, secret) = keys.map_or_else(
        || (config.access_key.clone(), config.secret_key.clone()),
        |(a, s)| (a.to_string(), s.to_string()),
    );
    let sim = RunningSimulator::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(&dir.path().join("l.ledger"), Durability::Normal).unwrap());
    let headers = ByteRecord::from(vec!["RelatedProspectId", "ActivityNote"]);
    let run = ledger
        .start_run("import", "in.csv", "hash", &headers, "{}")
        .unwrap();
    let rows: Vec<BatchRow> = items
        .into_iter()
        .zip(1u64..)
        .map(|(item, number)| BatchRow {
            source: SourceRow {
                number,
                line: number + 1,
                record: ByteRecord::from(vec![
                    item.related_prospect_id.clone(),
                    item.activity_note.clone().unwrap_or_default(),
                ]),
            },
            work: RowWork::Send {
                item,
                filled_date: None,
            },
        })
        .collect();
    ledger
        .insert_rows(
            run,
            rows.iter().map(|row| NewRow {
                number: row.source.number,
                line: row.source.line,
                record: row.source.record.clone(),
                fingerprint: None,
                lead_id: None,
                state: RowState::Pending,
                activity_id: None,
                error: None,
                sync_key: None,
                sync_entry: None,
                action: crate::ledger::RowAction::Create,
                target_id: None,
            }),
        )
        .unwrap();
    ledger.planned(run).unwrap();
    let client = LsqClient::for_tests(&sim.base_url(), access, secret);
    let api = Api::for_tests(
        client,
        "1000/1s",
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
        },
    );
    let sender = Sender::new(api, Abort::new(), Interrupt::default(), ledger.clone(), run);
    Rig {
        before: sim.sim.activities().len(),
        sim,
        _dir: dir,
        ledger,
        run,
        sender,
        batch: Batch { seq: 0, rows },
    }
}

impl Rig {
    async fn send(&mut self) -> Vec<RowOutcome> {
        let batch = std::mem::replace(
            &mut self.batch,
            Batch {
                seq: 0,
                rows: Vec::new(),
            },
        );
        let outcome = self.sender.send(batch).await;
        let numbers: Vec<u64> = outcome.rows.iter().map(|r| r.source.number).collect();
        assert_eq!(
            numbers,
            (1..=numbers.len() as u64).collect::<Vec<_>>(),
            "row order"
        );
        outcome.rows.into_iter().map(|r| r.outcome).collect()
    }

    fn stored(&self) -> Vec<StoredRow> {
        self.ledger.rows(self.run, 0, 100).unwrap()
    }

    /// Activities created on the server since the rig was built.
    fn created(&self) -> usize {
        self.sim.sim.activities().len() - self.before
    }

    fn stat(&self, counter: &std::sync::atomic::AtomicU64) -> u64 {
        RunStats::get(counter)
    }
}

#[tokio::test]
async fn created_rows_get_their_ids_in_the_report_and_the_ledger() {
    let items = vec![item(&demo_lead_id(1), "a"), item(&demo_lead_id(2), "b")];
    let mut rig = rig(SimConfig::default(), None, items).await;
    let outcomes = rig.send().await;
    assert!(
        outcomes.iter().all(|o| o.status == RowStatus::Created),
        "{outcomes:?}"
    );
    let stored = rig.stored();
    for (outcome, row) in outcomes.iter().zip(&stored) {
        assert_eq!(row.state, RowState::Created);
        assert_eq!(row.activity_id, outcome.activity_id);
    }
    assert_eq!(rig.created(), 2);
    assert_eq!(rig.stat(&rig.sender.api.stats.calls), 1, "one bulk call");
}

#[tokio::test]
async fn a_row_the_server_refuses_fails_alone() {
    let items = vec![
        item(&demo_lead_id(1), "a"),
        item(UNKNOWN_LEAD, "b"),
        item(&demo_lead_id(3), "c"),
    ];
    let mut rig = rig(SimConfig::default(), None, items).await;
    let outcomes = rig.send().await;
    let statuses: Vec<_> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [RowStatus::Created, RowStatus::Failed, RowStatus::Created]
    );
    assert!(outcomes[1].error.as_deref().is_some_and(|e| !e.is_empty()));
    assert_eq!(rig.stored()[1].state, RowState::Failed);
    assert_eq!(
        rig.stat(&rig.sender.api.stats.calls),
        1,
        "no retry of a refused row"
    );
}

#[tokio::test]
async fn a_batch_refused_as_a_whole_is_split_until_the_bad_row_is_alone() {
    let config = SimConfig {
        reject_mode: RejectMode::WholeBatch,
        ..SimConfig::default()
    };
    let items = vec![
        item(&demo_lead_id(1), "a"),
        item(&demo_lead_id(2), "b"),
        item(UNKNOWN_LEAD, "c"),
        item(&demo_lead_id(4), "d"),
    ];
    let mut rig = rig(config, None, items).await;
    let outcomes = rig.send().await;
    let statuses: Vec<_> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [
            RowStatus::Created,
            RowStatus::Created,
            RowStatus::Failed,
            RowStatus::Created
        ]
    );
    assert_eq!(rig.created(), 3, "each good row created once");
    assert!(rig.stat(&rig.sender.api.stats.isolation_calls) > 0);
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_every_row_is_created_once() {
    // The pacer allows 1000 calls a second, the server 1 in 200 ms: three batches at once meet
    // 429s, wait and send again.
    let config = SimConfig {
        rate: Some("1/200ms".parse().unwrap()),
        ..SimConfig::default()
    };
    let items = vec![
        item(&demo_lead_id(1), "a"),
        item(&demo_lead_id(2), "b"),
        item(&demo_lead_id(3), "c"),
    ];
    let mut rig = rig(config, None, items).await;
    let rows = std::mem::take(&mut rig.batch.rows);
    let batches = rows.into_iter().zip(0u64..).map(|(row, seq)| Batch {
        seq,
        rows: vec![row],
    });
    let outcomes = futures::future::join_all(batches.map(|batch| rig.sender.send(batch))).await;
    for outcome in &outcomes {
        assert_eq!(
            outcome.rows[0].outcome.status,
            RowStatus::Created,
            "{outcome:?}"
        );
    }
    assert_eq!(rig.created(), 3, "nothing created twice");
    assert!(rig.stat(&rig.sender.api.stats.rate_limited) > 0);
    assert_eq!(
        rig.stat(&rig.sender.api.stats.calls),
        3 + rig.stat(&rig.sender.api.stats.retries)
    );
}

#[tokio::test]
async fn refused_keys_stop_the_run_and_leave_the_rows_to_send_again() {
    let items = vec![item(&demo_lead_id(1), "a"), item(&demo_lead_id(2), "b")];
    let mut rig = rig(SimConfig::default(), Some(("wrong", "keys")), items).await;
    let outcomes = rig.send().await;
    assert!(rig.sender.abort.reason().is_some(), "the run is aborted");
    assert!(
        outcomes.iter().all(|o| o.status == RowStatus::Failed),
        "{outcomes:?}"
    );
    assert!(
        rig.stored().iter().all(|r| r.state == RowState::Pending),
        "pending: a later run sends them"
    );
    assert_eq!(
        rig.stat(&rig.sender.api.stats.calls),
        1,
        "no retry with refused keys"
    );
    assert_eq!(rig.created(), 0);
}

#[tokio::test]
async fn an_unknown_outcome_is_checked_on_the_server_not_sent_again() {
    // Every bulk post is committed, then answered 500: the rows exist, the answer says nothing.
    let config = SimConfig {
        faults: crate::simulator::FaultConfig {
            commit_then_500: 1.0,
            ..crate::simulator::FaultConfig::default()
        },
        ..SimConfig::default()
    };
    let items = vec![item(&demo_lead_id(1), "a"), item(&demo_lead_id(2), "b")];
    let mut rig = rig(config, None, items).await;
    let outcomes = rig.send().await;
    assert!(
        outcomes.iter().all(|o| o.status == RowStatus::Created),
        "{outcomes:?}"
    );
    assert_eq!(
        rig.created(),
        2,
        "found by Get Activities, not posted again"
    );
    assert_eq!(rig.stat(&rig.sender.api.stats.ambiguous), 1);
    assert_eq!(rig.stat(&rig.sender.api.stats.recovered), 2);
    assert!(rig.stat(&rig.sender.api.stats.lookup_calls) > 0);
    let stored = rig.stored();
    assert!(stored.iter().all(|r| r.state == RowState::Created));
    assert_eq!(stored[0].activity_id, outcomes[0].activity_id);
}

#[test]
fn a_round_starts_when_every_batch_being_sent_waits_for_it_or_the_first_waited_long_enough() {
    let bound = Duration::from_secs(1);
    let moment = Duration::from_millis(10);
    // Others are still being sent and could join: wait.
    assert!(!round_ready(2, 5, moment, bound));
    // Every batch being sent is in the queue (or none is, a resume's check): nothing can join.
    assert!(round_ready(5, 5, moment, bound));
    assert!(round_ready(1, 0, moment, bound));
    // The first has waited as long as allowed.
    assert!(round_ready(1, 64, bound, bound));
}
