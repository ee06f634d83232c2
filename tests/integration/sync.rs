//! Keyed sync (`--key`) end to end, the real binary against the simulator: a source that
//! changes between nights is mirrored by key (created, updated in place with the same id,
//! unchanged, conflicts for moved rows), `--delete-missing` deletes only what the sync created
//! and stops when a source is gutted, `--key-field` rebuilds the key map from the account when
//! the ledger is gone, both shapes of Bulk Update's answer are read, and a resume after SIGKILL
//! mid-update applies every update once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use lsq_sync::lsq::api::{PATH_BULK_ADD_BY_LEAD_ID, PATH_BULK_UPDATE, PATH_RETRIEVE_BY_EVENT};
use lsq_sync::simulator::{
    DEMO_KEY_FIELD, RunningSimulator, SimConfig, StoredActivity, UpdateAnswer, demo_lead_id,
};

use crate::support::*;

/// One row of a keyed source.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    key: String,
    lead: String,
    code: i64,
    note: String,
    date: String,
    field: String,
}

/// `n` calls on the 50 demo leads and codes 201..205, each with a unique note and second.
fn calls(n: usize) -> Vec<Call> {
    (0..n)
        .map(|i| Call {
            key: format!("C-{i:05}"),
            lead: demo_lead_id(i % 50),
            code: 201 + (i % 5) as i64,
            note: format!("call {i}"),
            date: format!(
                "2024-06-{:02} {:02}:{:02}:{:02}",
                1 + i / 3600 % 28,
                i / 60 % 60,
                i % 60,
                i % 60
            ),
            field: format!("v{i}"),
        })
        .collect()
}

fn csv_of(calls: &[Call]) -> String {
    let mut text = String::from(
        "CallId,RelatedProspectId,ActivityEvent,ActivityNote,ActivityDateTime,mx_Custom_1\n",
    );
    for c in calls {
        text.push_str(&format!(
            "{},{},{},{},{},{}\n",
            c.key, c.lead, c.code, c.note, c.date, c.field
        ));
    }
    text
}

/// `import input.csv --out REPORT --host URL --key CallId --ledger sync.ledger --rate RATE`.
fn sync_args<'a>(report: &'a str, url: &'a str, rate: &'a str) -> [&'a str; 12] {
    [
        "import",
        "input.csv",
        "--out",
        report,
        "--host",
        url,
        "--key",
        "CallId",
        "--ledger",
        "sync.ledger",
        "--rate",
        rate,
    ]
}

/// A folder holding `sync.ledger` across nights, and the simulator it syncs into.
struct Nightly {
    sim: RunningSimulator,
    input: Input,
    nights: usize,
}

impl Nightly {
    async fn new(config: SimConfig) -> Nightly {
        Nightly {
            sim: simulator(SimConfig {
                rate: Some(API_RATE.parse().expect("quota")),
                delete_delay: Duration::from_millis(50),
                ..config
            })
            .await,
            input: write_input(""),
            nights: 0,
        }
    }

    /// Runs one night over `calls` with `--key CallId` and `extra` flags; returns the exit
    /// code, the report lines and stderr.
    async fn night(&mut self, calls: &[Call], extra: &[&str]) -> (i32, Vec<ReportRow>, String) {
        self.nights += 1;
        std::fs::write(&self.input.path, csv_of(calls)).expect("input");
        let report = format!("night{}.csv", self.nights);
        let mut args = vec![
            "--key",
            "CallId",
            "--ledger",
            "sync.ledger",
            "--rate",
            API_RATE,
        ];
        args.extend(extra);
        let url = self.sim.base_url();
        let mut all = vec!["import", "input.csv", "--out", &report, "--host", &url];
        all.extend(args);
        let out = run_cli(self.input.dir.path(), &all, &[]).await;
        let rows = read_report(&self.input.dir.path().join(&report));
        (out.status.code().unwrap_or(-1), rows, stderr(&out))
    }

    /// Runs `import input.csv --out REPORT --key CallId --ledger sync.ledger` over the input as
    /// it is, at `rate`.
    async fn sync(&self, report: &str, rate: &str) -> std::process::Output {
        let url = self.sim.base_url();
        run_cli(self.input.dir.path(), &sync_args(report, &url, rate), &[]).await
    }

    /// Requests to `path` since request `from`.
    fn calls_to(&self, path: &str, from: usize) -> usize {
        self.sim.sim.requests()[from..]
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    fn requests(&self) -> usize {
        self.sim.sim.requests().len()
    }

    /// Live activities by id.
    fn live(&self) -> HashMap<String, StoredActivity> {
        self.sim
            .sim
            .activities()
            .into_iter()
            .filter(|a| !a.deleted)
            .map(|a| (a.id.clone(), a))
            .collect()
    }
}

/// The second night of bar 1, in small: of `base`, `notes` notes and `fields` field values
/// edited, `added` rows added, `removed` removed, `moved` moved to another lead.
fn next_night(
    base: &[Call],
    notes: usize,
    fields: usize,
    added: usize,
    removed: usize,
    moved: usize,
) -> Vec<Call> {
    let mut next: Vec<Call> = base.to_vec();
    let mut at = 0;
    for c in next.iter_mut().skip(at).take(notes) {
        c.note.push_str(" (edited)");
    }
    at += notes;
    for c in next.iter_mut().skip(at).take(fields) {
        c.field.push_str("-v2");
    }
    at += fields;
    for c in next.iter_mut().skip(at).take(moved) {
        let i: usize = c.key[2..].parse().expect("key");
        c.lead = demo_lead_id((i + 1) % 50);
    }
    at += moved;
    next.drain(at..at + removed);
    for (i, like) in base.iter().take(added).enumerate() {
        next.push(Call {
            key: format!("N-{i:05}"),
            note: format!("new call {i}"),
            date: format!("2024-07-01 00:{:02}:{:02}", i / 60, i % 60),
            ..like.clone()
        });
    }
    next
}

/// The CSV of `calls` with one more column, `mx_Custom_4`, filled only on the first call of code
/// 205, whose type defines `mx_Custom_1` and `_2` only: the server refuses that row (an update
/// of it fails, the whole call with the simulator's default answer). Returns the text and the
/// refused call's index.
fn with_a_refused_field(calls: &[Call]) -> (String, usize) {
    let bad = calls.iter().position(|c| c.code == 205).expect("a 205");
    let text = csv_of(calls).replacen("mx_Custom_1\n", "mx_Custom_1,mx_Custom_4\n", 1);
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => l.to_string(),
            i if i == bad + 1 => format!("{l},x"),
            _ => format!("{l},"),
        })
        .collect();
    (lines.join("\n") + "\n", bad)
}

fn by_key(rows: &[ReportRow]) -> BTreeMap<String, ReportRow> {
    rows.iter()
        .map(|r| (r["CallId"].clone(), r.clone()))
        .collect()
}

fn statuses(rows: &[ReportRow]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in rows {
        *counts.entry(r["Status"].clone()).or_default() += 1;
    }
    counts
}

fn count(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

/// Bar 1 and bar 3 in small: the second night creates, updates in place (same ids, new values on
/// the account), leaves the rest, reports moved rows as conflicts, in the fewest bulk calls, and
/// duplicates nothing; a third night over an unchanged source sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_changes_is_mirrored_by_key_in_place() {
    let mut n = Nightly::new(SimConfig::default()).await;
    let base = calls(300);
    let (code, first, err) = n.night(&base, &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(statuses(&first), count(&[("created", 300)]));
    let ids = by_key(&first);

    let next = next_night(&base, 6, 4, 10, 3, 2);
    let before = n.requests();
    let (code, second, err) = n.night(&next, &[]).await;
    assert_eq!(code, 1, "conflicts make the night exit 1: {err}");
    assert_eq!(
        statuses(&second),
        count(&[
            ("created", 10),
            ("updated", 10),
            ("conflict", 2),
            ("unchanged", 285)
        ])
    );
    assert_eq!(n.calls_to(PATH_BULK_ADD_BY_LEAD_ID, before), 1);
    assert_eq!(n.calls_to(PATH_BULK_UPDATE, before), 1);
    let live = n.live();
    for row in &second {
        let id = &row["ProspectActivityId"];
        let activity = live
            .get(id)
            .unwrap_or_else(|| panic!("{row:?} not on the account"));
        match row["Status"].as_str() {
            "updated" | "unchanged" | "conflict" => {
                assert_eq!(
                    id, &ids[&row["CallId"]]["ProspectActivityId"],
                    "same activity"
                );
            }
            _ => {}
        }
        if row["Status"] != "conflict" {
            assert_eq!(activity.note.as_deref(), Some(row["ActivityNote"].as_str()));
            assert_eq!(activity.fields["mx_Custom_1"], row["mx_Custom_1"]);
            assert_eq!(activity.lead_id, row["RelatedProspectId"]);
        } else {
            assert!(row["Error"].contains("lead"), "{row:?}");
        }
    }
    // One activity per key, nothing else created.
    let created: usize = live
        .values()
        .filter(|a| a.created_by_request.is_some())
        .count();
    assert_eq!(created, 310);

    let before = n.requests();
    let (code, third, err) = n.night(&next, &[]).await;
    assert_eq!(code, 1, "the two conflicts are still there: {err}");
    assert_eq!(
        statuses(&third),
        count(&[("conflict", 2), ("unchanged", 305)])
    );
    assert_eq!(n.requests(), before, "no call at all");
    let unchanged: Vec<Call> = next
        .iter()
        .filter(|c| {
            let r = &by_key(&third)[&c.key];
            r["Status"] == "unchanged"
        })
        .cloned()
        .collect();
    let (code, fourth, err) = n.night(&unchanged, &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(statuses(&fourth), count(&[("unchanged", 305)]));
    assert!(err.contains("OK: 305 rows"), "{err}");
}

/// Bar 2 in small: `--delete-missing` deletes the activities of the keys the source dropped,
/// and nothing the sync did not create on the same leads; a source missing 40% of its keys
/// deletes and sends nothing and exits 2; without `--yes` and without a terminal nothing is
/// deleted either.
#[tokio::test(flavor = "multi_thread")]
async fn delete_missing_mirrors_only_what_the_sync_created_and_is_guarded() {
    let mut n = Nightly::new(SimConfig::default()).await;
    let base = calls(100);
    // Someone else's activity in the same second as a synced one, and one beside it.
    let shared = seed_activity(&n.sim, &base[3].lead, base[3].code, &base[3].date, "theirs");
    let beside = seed_activity(
        &n.sim,
        &base[4].lead,
        base[4].code,
        "2024-06-01 00:00:05",
        "theirs",
    );
    let (code, _, err) = n.night(&base, &[]).await;
    assert_eq!(code, 0, "{err}");

    let gutted: Vec<Call> = base[..60].to_vec();
    let before = n.requests();
    let (code, rows, err) = n.night(&gutted, &["--delete-missing", "--yes"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("40 activities would be deleted") && err.contains("10%"),
        "{err}"
    );
    assert_eq!(n.requests(), before, "nothing sent");
    assert_eq!(rows.len(), 100, "every line accounted for");

    let (code, _, err) = n.night(&base[..95], &["--delete-missing"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("without --yes"), "{err}");

    let dropped: Vec<Call> = base
        .iter()
        .filter(|c| !["C-00003", "C-00010", "C-00020"].contains(&c.key.as_str()))
        .cloned()
        .collect();
    let (code, rows, err) = n.night(&dropped, &["--delete-missing", "--yes"]).await;
    let deleted: Vec<&ReportRow> = rows.iter().filter(|r| r["Status"] == "deleted").collect();
    let failed: Vec<&ReportRow> = rows.iter().filter(|r| r["Status"] == "failed").collect();
    assert_eq!(deleted.len(), 2, "{err}");
    assert_eq!(
        failed.len(),
        1,
        "C-00003 shares its second with theirs: {err}"
    );
    assert!(failed[0]["Error"].contains(&shared), "{:?}", failed[0]);
    assert!(
        deleted
            .iter()
            .chain(&failed)
            .all(|r| r["RowNumber"].is_empty())
    );
    assert_eq!(code, 1, "{err}");
    // Wait for the queued deletions to show.
    let gone = |id: &str| !n.live().contains_key(id);
    for _ in 0..100 {
        if deleted.iter().all(|r| gone(&r["ProspectActivityId"])) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(deleted.iter().all(|r| gone(&r["ProspectActivityId"])));
    let live = n.live();
    assert!(
        live.contains_key(&shared) && live.contains_key(&beside),
        "theirs untouched"
    );
    assert_eq!(
        live.values()
            .filter(|a| a.created_by_request.is_some())
            .count(),
        98
    );
}

/// Bar 4 in small: with `--key-field` from the first night, a second night with a new ledger
/// reads the key map back from the account (fewer reads than lead/code pairs) and does what it
/// would have done with the ledger.
#[tokio::test(flavor = "multi_thread")]
async fn without_its_ledger_the_sync_reads_the_key_map_back_from_the_account() {
    let mut n = Nightly::new(SimConfig::default()).await;
    let field = format!("mx_Custom_{DEMO_KEY_FIELD}");
    let base = calls(300);
    let (code, first, err) = n.night(&base, &["--key-field", &field]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        n.live()
            .values()
            .filter(|a| a.created_by_request.is_some())
            .all(|a| a.fields.get(&field).is_some_and(|k| k.starts_with("C-")))
    );
    std::fs::remove_file(n.input.dir.path().join("sync.ledger")).expect("ledger gone");
    let _ = std::fs::remove_file(n.input.dir.path().join("sync.ledger-wal"));

    let next = next_night(&base, 6, 4, 10, 3, 2);
    let before = n.requests();
    let (code, second, err) = n.night(&next, &["--key-field", &field]).await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        statuses(&second),
        count(&[
            ("created", 10),
            ("updated", 10),
            ("conflict", 2),
            ("unchanged", 285)
        ])
    );
    let reads = n.calls_to(PATH_RETRIEVE_BY_EVENT, before);
    let pairs: std::collections::HashSet<(String, i64)> =
        next.iter().map(|c| (c.lead.clone(), c.code)).collect();
    assert!(
        reads < pairs.len(),
        "{reads} reads for {} lead/code pairs",
        pairs.len()
    );
    assert!(err.contains(&format!("key map reads {reads}")), "{err}");
    let ids = by_key(&first);
    for row in second.iter().filter(|r| r["Status"] == "updated") {
        assert_eq!(
            row["ProspectActivityId"],
            ids[&row["CallId"]]["ProspectActivityId"]
        );
    }
    assert_eq!(
        n.live()
            .values()
            .filter(|a| a.created_by_request.is_some())
            .count(),
        310,
        "no duplicate"
    );
}

/// Bar 6, first half: both shapes of Bulk Update's answer are read, and a bad row refused with
/// the whole call is isolated as for posts.
#[tokio::test(flavor = "multi_thread")]
async fn both_shapes_of_the_update_answer_are_read_and_a_bad_row_is_isolated() {
    for answer in [UpdateAnswer::WholeCall, UpdateAnswer::PerRow] {
        let mut n = Nightly::new(SimConfig {
            update_answer: answer,
            ..SimConfig::default()
        })
        .await;
        let base = calls(50);
        let (code, _, err) = n.night(&base, &[]).await;
        assert_eq!(code, 0, "{err}");
        let mut next = base.clone();
        for c in next.iter_mut().take(30) {
            c.note.push_str(" (edited)");
        }
        let (text, _) = with_a_refused_field(&next);
        std::fs::write(&n.input.path, text).expect("input");
        let out = n.sync("r.csv", API_RATE).await;
        let rows = read_report(&n.input.dir.path().join("r.csv"));
        let st = statuses(&rows);
        assert_eq!(st.get("updated"), Some(&29), "{answer:?}: {}", stderr(&out));
        assert_eq!(st.get("failed"), Some(&1), "{answer:?}");
        let failed = rows
            .iter()
            .find(|r| r["Status"] == "failed")
            .expect("failed");
        assert!(failed["Error"].contains("mx_Custom_4"), "{failed:?}");
        let live = n.live();
        for r in rows.iter().filter(|r| r["Status"] == "updated") {
            assert_eq!(
                live[&r["ProspectActivityId"]].note.as_deref(),
                Some(r["ActivityNote"].as_str())
            );
        }
    }
}

/// Bar 6, second half: SIGKILL while updates are in flight, then the same command: every update
/// applied once (none lost, none sent twice), no activity created twice.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_update_then_resume_applies_every_update_once() {
    let mut n = Nightly::new(SimConfig {
        latency: Duration::from_millis(30),
        ..SimConfig::default()
    })
    .await;
    let base = calls(1000);
    let (code, _, err) = n.night(&base, &[]).await;
    assert_eq!(code, 0, "{err}");
    let mut next = base.clone();
    for c in next.iter_mut() {
        c.note.push_str(" (edited)");
    }
    next.extend(next_night(&base, 0, 0, 100, 0, 0).split_off(1000));
    std::fs::write(&n.input.path, csv_of(&next)).expect("input");
    let before = n.sim.sim.stats().requests;
    let url = n.sim.base_url();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lsq-sync"))
        .args(sync_args("r.csv", &url, "50/1s"))
        .current_dir(n.input.dir.path())
        .env("LSQ_ACCESS_KEY", ACCESS_KEY)
        .env("LSQ_SECRET_KEY", SECRET_KEY)
        .env_remove("LSQ_CONFIG")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    tokio::time::timeout(
        Duration::from_secs(60),
        n.sim.sim.wait_for_requests(before + 15),
    )
    .await
    .expect("the sync got under way");
    child.kill().await.expect("SIGKILL");
    let updated_before_resume: u32 = n.live().values().map(|a| a.updates).sum();
    assert!(
        updated_before_resume > 0 && updated_before_resume < 1000,
        "killed mid-update ({updated_before_resume} applied)"
    );

    let out = n.sync("r.csv", "50/1s").await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = read_report(&n.input.dir.path().join("r.csv"));
    assert_eq!(
        statuses(&rows),
        count(&[("created", 100), ("updated", 1000)])
    );
    let live = n.live();
    let synced: Vec<&StoredActivity> = live
        .values()
        .filter(|a| a.created_by_request.is_some())
        .collect();
    assert_eq!(synced.len(), 1100, "no create doubled");
    let twice: Vec<_> = synced
        .iter()
        .filter(|a| a.updates > 1)
        .map(|a| &a.id)
        .collect();
    assert!(twice.is_empty(), "updates applied twice: {twice:?}");
    assert_eq!(
        synced.iter().filter(|a| a.updates == 1).count(),
        1000,
        "none lost"
    );
    for r in &rows {
        assert_eq!(
            live[&r["ProspectActivityId"]].note.as_deref(),
            Some(r["ActivityNote"].as_str())
        );
    }
}

/// `--replace-changed`: a moved row's old activity is deleted (surgically) and the row created
/// anew; the key then names the new activity.
#[tokio::test(flavor = "multi_thread")]
async fn replace_changed_deletes_the_old_activity_and_creates_the_new_one() {
    let mut n = Nightly::new(SimConfig::default()).await;
    let base = calls(40);
    let (code, first, err) = n.night(&base, &[]).await;
    assert_eq!(code, 0, "{err}");
    let mut next = base.clone();
    next[7].lead = demo_lead_id(49);
    // Only the owner... is not in this source; a date change keeps lead and code.
    next[8].date = "2024-08-01 10:00:00".into();
    let (code, rows, err) = n.night(&next, &["--replace-changed", "--yes"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(statuses(&rows), count(&[("created", 2), ("unchanged", 38)]));
    let old = by_key(&first);
    let new = by_key(&rows);
    for key in ["C-00007", "C-00008"] {
        assert_ne!(
            old[key]["ProspectActivityId"],
            new[key]["ProspectActivityId"]
        );
    }
    for _ in 0..100 {
        if n.live().len() == n.sim.sim.activities().iter().filter(|a| !a.deleted).count()
            && !n.live().contains_key(&old["C-00007"]["ProspectActivityId"])
            && !n.live().contains_key(&old["C-00008"]["ProspectActivityId"])
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let live = n.live();
    assert!(!live.contains_key(&old["C-00007"]["ProspectActivityId"]));
    assert!(!live.contains_key(&old["C-00008"]["ProspectActivityId"]));
    assert_eq!(
        live[&new["C-00007"]["ProspectActivityId"]].lead_id,
        demo_lead_id(49)
    );
    let (code, again, err) = n.night(&next, &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(statuses(&again), count(&[("unchanged", 40)]));
}

/// Rows whose key is empty or held twice are invalid, naming the key and both rows; the rest go
/// through. A dry run plans without sending.
#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_are_invalid_and_a_dry_run_only_plans() {
    let mut n = Nightly::new(SimConfig::default()).await;
    let mut base = calls(10);
    base[2].key = base[5].key.clone();
    base[7].key = String::new();
    let (code, rows, err) = n.night(&base, &[]).await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(statuses(&rows), count(&[("created", 7), ("invalid", 3)]));
    let dup = rows.iter().find(|r| r["RowNumber"] == "3").expect("row 3");
    assert!(
        dup["Error"].contains("C-00005")
            && dup["Error"].contains("row 3")
            && dup["Error"].contains("row 6"),
        "{dup:?}"
    );
    assert!(rows[7]["Error"].contains("CallId") && rows[7]["Error"].contains("empty"));

    let mut next = calls(10);
    next[0].note.push_str(" (edited)");
    let before = n.requests();
    let (code, plan, err) = n.night(&next, &["--dry-run"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(n.requests(), before, "a dry run sends nothing");
    assert!(
        err.contains("3 to create (1 calls), 1 to update in place (1 calls), 6 unchanged"),
        "{err}"
    );
    assert!(plan[0]["Error"].contains("plan: update"), "{:?}", plan[0]);
    let (code, rows, err) = n.night(&next, &[]).await;
    assert_eq!(code, 0, "the dry run changed nothing: {err}");
    assert_eq!(
        statuses(&rows),
        count(&[("created", 3), ("updated", 1), ("unchanged", 6)])
    );
}

/// The reconcile loop on a sync's report: a row whose update the server refused and a row in
/// conflict are fixed in the report, and `retry` with the sync's key and ledger updates the one
/// and finds the other unchanged, carrying every other line as it was, lines of deleted keys
/// included.
#[tokio::test(flavor = "multi_thread")]
async fn retry_of_a_sync_report_sends_only_what_is_fixed() {
    let mut n = Nightly::new(SimConfig::default()).await;
    let base = calls(20);
    let (code, _, err) = n.night(&base, &[]).await;
    assert_eq!(code, 0, "{err}");
    let mut next: Vec<Call> = base[1..].to_vec();
    next[2].note.push_str(" (edited)");
    next[4].lead = demo_lead_id(49);
    let bad = next.iter().position(|c| c.code == 205).expect("a 205");
    next[bad].note.push_str(" (edited too)");
    let (text, _) = with_a_refused_field(&next);
    std::fs::write(&n.input.path, text).expect("input");
    let url = n.sim.base_url();
    let sync = [
        "--key",
        "CallId",
        "--ledger",
        "sync.ledger",
        "--rate",
        API_RATE,
    ];
    let mut args = vec!["import", "input.csv", "--out", "r2.csv", "--host", &url];
    args.extend(sync);
    args.extend(["--delete-missing", "--yes"]);
    let out = run_cli(n.input.dir.path(), &args, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = n.input.dir.path().join("r2.csv");
    let rows = read_report(&report);
    assert_eq!(
        statuses(&rows),
        count(&[
            ("updated", 1),
            ("failed", 1),
            ("conflict", 1),
            ("unchanged", 16),
            ("deleted", 1)
        ])
    );

    // Fix the report as a person would: the field value gone, the lead put back.
    let moved = &next[4];
    let fixed = std::fs::read_to_string(&report)
        .expect("report")
        .replace(",x\n", ",\n")
        .replace(&moved.lead, &base[5].lead);
    std::fs::write(&report, fixed).expect("fixed report");
    let mut args = vec!["retry", "r2.csv", "--out", "r3.csv", "--host", &url];
    args.extend(sync);
    let before = n.requests();
    let out = run_cli(n.input.dir.path(), &args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let again = read_report(&n.input.dir.path().join("r3.csv"));
    assert_eq!(
        statuses(&again),
        count(&[("updated", 2), ("unchanged", 17), ("deleted", 1)])
    );
    assert_eq!(
        n.calls_to(PATH_BULK_UPDATE, before),
        1,
        "only the fixed row is sent"
    );
    assert_eq!(n.calls_to(PATH_BULK_ADD_BY_LEAD_ID, before), 0);
    let fixed_row = again
        .iter()
        .find(|r| r["CallId"] == next[bad].key)
        .expect("the fixed row");
    assert_eq!(fixed_row["Status"], "updated");
    assert_eq!(
        n.live()[&fixed_row["ProspectActivityId"]].note.as_deref(),
        Some(next[bad].note.as_str())
    );
    assert!(
        again
            .iter()
            .any(|r| r["Status"] == "deleted" && r["RowNumber"].is_empty())
    );
}
