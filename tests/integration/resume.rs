//! Nothing lost, nothing doubled: the ledger, resume, ambiguous outcomes, bad-batch isolation,
//! the reconcile loop (`retry`), `--skip-existing`, the lock, and Ctrl-C.

use std::collections::HashMap;
use std::time::Duration;

use lsq_sync::ledger::{Durability, Ledger};
use lsq_sync::lsq::quota::RateQuota;
use lsq_sync::simulator::{FaultConfig, RejectMode, SimConfig};

use crate::support::*;

fn quota(text: &str) -> Option<RateQuota> {
    Some(text.parse().expect("quota"))
}

/// Counts server activities per note; every generated row has a unique note.
fn per_note(sim: &lsq_sync::simulator::RunningSimulator) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for a in posted_activities(sim) {
        *counts.entry(a.note.unwrap_or_default()).or_default() += 1;
    }
    counts
}

/// Every report id must be a live server activity with the row's note.
fn assert_report_matches_server(rows: &[ReportRow], sim: &lsq_sync::simulator::RunningSimulator) {
    let by_id: HashMap<String, String> = posted_activities(sim)
        .into_iter()
        .map(|a| (a.id, a.note.unwrap_or_default()))
        .collect();
    for row in rows.iter().filter(|r| r["Status"] == "created") {
        let note = by_id.get(&row["ProspectActivityId"]).unwrap_or_else(|| {
            panic!(
                "row {} has id {} unknown to the server",
                row["RowNumber"], row["ProspectActivityId"]
            )
        });
        assert_eq!(note, &row["ActivityNote"], "row {}", row["RowNumber"]);
    }
}

fn retry_config(dir: &std::path::Path) -> String {
    let path = dir.join("fast.toml");
    std::fs::write(
        &path,
        "[retry]\nmax_attempts = 30\nbackoff_base = \"10ms\"\nbackoff_max = \"100ms\"\n[api]\nrequest_timeout = \"2s\"\n[ledger]\ndurability = \"normal\"\n",
    )
    .expect("write config");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_then_fail_plain_500s_and_resets_lose_nothing_and_double_nothing() {
    let sim = simulator(SimConfig {
        rate: None,
        faults: FaultConfig {
            commit_then_500: 0.05,
            commit_then_drop: 0.05,
            plain_500: 0.10,
            drop_connection: 0.05,
            seed: 11,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(5000, 0);
    let config = retry_config(input.dir.path());
    let out = import_into(
        &sim,
        &input,
        &["--config", &config],
        &["--rate", "1000/1s"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let counts = per_note(&sim);
    assert_eq!(counts.len(), 5000, "nothing lost");
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "duplicates: {doubled:?}");
    let rows = read_report(&input.report_path());
    assert_eq!(rows.len(), 5000);
    assert!(rows.iter().all(|r| r["Status"] == "created"));
    assert_report_matches_server(&rows, &sim);
    let stats = sim.sim.stats();
    assert!(stats.faults > 20, "{stats:?}");
    let err = stderr(&out);
    assert!(err.contains("calls with unknown outcome"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_arriving_after_the_client_timeout_are_not_re_sent_blindly() {
    let sim = simulator(SimConfig {
        rate: None,
        faults: FaultConfig {
            commit_then_late: 0.3,
            late_by: Duration::from_secs(5),
            seed: 5,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(500, 0);
    let config = input.dir.path().join("timeout.toml");
    std::fs::write(
        &config,
        "[api]\nrequest_timeout = \"1s\"\n[retry]\nbackoff_base = \"10ms\"\nmax_attempts = 20\n",
    )
    .expect("config");
    let out = import_into(
        &sim,
        &input,
        &["--config", &config.display().to_string()],
        &["--rate", "1000/1s"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let counts = per_note(&sim);
    assert_eq!(counts.len(), 500);
    assert!(counts.values().all(|n| *n == 1), "no duplicates");
    let late = sim
        .sim
        .requests()
        .iter()
        .filter(|r| r.outcome == lsq_sync::simulator::RequestOutcome::CommittedThenLate)
        .count();
    assert!(late > 0);
    assert!(
        stderr(&out).contains("calls with unknown outcome"),
        "{}",
        stderr(&out)
    );
    assert_report_matches_server(&read_report(&input.report_path()), &sim);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_refused_whole_is_split_until_each_bad_row_is_alone() {
    let sim = simulator(SimConfig {
        rate: None,
        reject_mode: RejectMode::WholeBatch,
        ..SimConfig::default()
    })
    .await;
    // 2% of rows name an owner the account does not have: valid locally, refused by the server.
    let mut text = String::from(
        "RelatedProspectId,ActivityEvent,ActivityNote,ActivityOwnerEmail,ActivityDateTime\n",
    );
    let mut bad = Vec::new();
    for n in 1..=1000 {
        let owner = if n % 50 == 17 {
            bad.push(n);
            "ghost@nowhere.example"
        } else {
            lsq_sync::simulator::DEMO_OWNERS[0]
        };
        text.push_str(&format!(
            "{},202,note {n},{owner},2024-01-01 10:00:00\n",
            lsq_sync::simulator::demo_lead_id(n % 50)
        ));
    }
    let input = write_input(&text);
    let out = import_into(&sim, &input, &[], &["--rate", "1000/1s"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = read_report(&input.report_path());
    for row in &rows {
        let n: usize = row["RowNumber"].parse().expect("number");
        if bad.contains(&n) {
            assert_eq!(row["Status"], "failed", "row {n}");
            assert!(
                row["Error"].contains("MXInvalidInputException")
                    && row["Error"].contains("ghost@nowhere.example"),
                "{}",
                row["Error"]
            );
        } else {
            assert_eq!(row["Status"], "created", "row {n}: {}", row["Error"]);
        }
    }
    assert_eq!(per_note(&sim).len(), 1000 - bad.len());
    let err = stderr(&out);
    let extra: usize = err
        .lines()
        .find_map(|l| l.strip_prefix("extra calls to isolate bad rows in refused batches "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no isolation figure in {err}"));
    // About 2 x log2(25) ~ 10 per bad row.
    assert!(
        extra <= bad.len() * 12,
        "{extra} extra calls for {} bad rows",
        bad.len()
    );
    assert!(extra >= bad.len() * 2, "{extra}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_posts_only_the_fixed_rows_and_carries_the_rest() {
    let sim = simulator(SimConfig {
        rate: None,
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(100, 0);
    // Break some rows: an unknown owner (server refuses), a bad date (invalid locally).
    let text = std::fs::read_to_string(&input.path).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for n in [3usize, 40, 77] {
        lines[n] = lines[n].replacen(
            lsq_sync::simulator::DEMO_OWNERS[n % 5],
            "nobody@ghost.example",
            1,
        );
    }
    for n in [10usize, 50] {
        lines[n] = lines[n].replacen(",2024-05-", ",2024-13-", 1);
    }
    std::fs::write(&input.path, lines.join("\n") + "\n").expect("write");
    let out = import_into(&sim, &input, &[], &["--rate", "1000/1s"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = read_report(&input.report_path());
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| r["Status"] != "created")
        .map(|r| r["RowNumber"].clone())
        .collect();
    assert_eq!(failed, ["3", "10", "40", "50", "77"]);
    let posted_before = sim.sim.requests().iter().map(|r| r.items).sum::<usize>();

    // A person fixes the cells in the report, and also edits a created row (which must not be re-posted).
    let report_text = std::fs::read_to_string(input.report_path()).expect("report");
    let fixed = report_text
        .replace("nobody@ghost.example", lsq_sync::simulator::DEMO_OWNERS[1])
        .replace(",2024-13-", ",2024-12-")
        .replacen("\"note 1, \"\"quoted\"\"\"", "\"note 1 EDITED\"", 1);
    std::fs::write(input.dir.path().join("fixed.csv"), fixed).expect("write");
    let out = run_cli(
        input.dir.path(),
        &[
            "retry",
            "fixed.csv",
            "--out",
            "report-2.csv",
            "--host",
            &sim.base_url(),
            "--rate",
            "1000/1s",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let again = read_report(&input.dir.path().join("report-2.csv"));
    assert_eq!(again.len(), 100);
    assert!(again.iter().all(|r| r["Status"] == "created"), "{again:?}");
    for (before, after) in rows.iter().zip(&again) {
        assert_eq!(before["RowNumber"], after["RowNumber"]);
        if before["Status"] == "created" {
            assert_eq!(
                before["ProspectActivityId"], after["ProspectActivityId"],
                "carried over unchanged"
            );
        }
    }
    let posted_after = sim.sim.requests().iter().map(|r| r.items).sum::<usize>();
    assert_eq!(
        posted_after - posted_before,
        5,
        "only the five fixed rows were posted"
    );
    assert_eq!(per_note(&sim).values().filter(|n| **n > 1).count(), 0);
    assert!(!per_note(&sim).contains_key("note 1 EDITED"));
    // The new report can itself be retried: nothing left to post.
    let out = run_cli(
        input.dir.path(),
        &[
            "retry",
            "report-2.csv",
            "--out",
            "report-3.csv",
            "--host",
            &sim.base_url(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        sim.sim.requests().iter().map(|r| r.items).sum::<usize>(),
        posted_after
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_existing_skips_rows_created_by_an_earlier_run() {
    let sim = simulator(SimConfig {
        rate: None,
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(60, 0);
    let out = import_into(
        &sim,
        &input,
        &[],
        &["--rate", "1000/1s", "--ledger", "nightly.ledger"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = read_report(&input.report_path());
    // The export grows: 20 more rows appended.
    let (bigger, _) = generated_input(80, 0);
    std::fs::copy(&bigger.path, &input.path).expect("copy");
    let out = import_into(
        &sim,
        &input,
        &[],
        &[
            "--rate",
            "1000/1s",
            "--ledger",
            "nightly.ledger",
            "--skip-existing",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let second = read_report(&input.report_path());
    assert_eq!(
        second.iter().filter(|r| r["Status"] == "skipped").count(),
        60
    );
    assert_eq!(
        second.iter().filter(|r| r["Status"] == "created").count(),
        20
    );
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(
            a["ProspectActivityId"], b["ProspectActivityId"],
            "skipped rows point at the earlier activity"
        );
    }
    assert_eq!(per_note(&sim).len(), 80);
    assert!(per_note(&sim).values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_command_after_a_finished_run_sends_nothing_unless_fresh() {
    let sim = simulator(SimConfig {
        rate: None,
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(40, 0);
    let out = import_into(&sim, &input, &[], &["--rate", "1000/1s"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = std::fs::read(input.report_path()).expect("report");
    let calls = sim.sim.requests().len();

    let out = import_into(&sim, &input, &[], &["--rate", "1000/1s"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to send"), "{}", stderr(&out));
    assert_eq!(sim.sim.requests().len(), calls, "nothing sent again");
    assert_eq!(std::fs::read(input.report_path()).expect("report"), first);

    let out = import_into(&sim, &input, &[], &["--rate", "1000/1s", "--fresh"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        posted_activities(&sim).len(),
        80,
        "--fresh imports again, deliberately"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_on_the_same_ledger_is_refused_naming_the_holder() {
    let sim = simulator(SimConfig::default()).await;
    let (input, _) = generated_input(10, 0);
    let _held = Ledger::open(
        &input.dir.path().join("report.csv.ledger"),
        Durability::Normal,
    )
    .expect("ledger");
    let out = import_into(&sim, &input, &[], &[], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("in use by another lsq-sync")
            && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(sim.sim.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_input_is_refused_unless_forced_and_force_does_not_double() {
    let sim = simulator(SimConfig {
        rate: quota("5/1s"),
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(300, 0);
    // Interrupt the first run after a few calls.
    let child = spawn_import(&sim, &input, "5/1s");
    wait_for_requests(&sim, 3).await;
    signal(&child, "INT");
    let out = child.wait_with_output().await.expect("wait");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = read_report(&input.report_path());
    assert_eq!(
        rows.len(),
        300,
        "the interrupted report still lists every row"
    );
    assert!(rows.iter().any(|r| r["Error"].starts_with("not sent")));
    let created_first = posted_activities(&sim).len();
    assert!(created_first > 0 && created_first < 300);

    // The file changes (a row is edited): a plain re-run refuses.
    let text = std::fs::read_to_string(&input.path)
        .expect("read")
        .replace("note 299,", "note 299 changed,");
    std::fs::write(&input.path, text).expect("write");
    let out = import_into(&sim, &input, &[], &["--rate", "1000/1s"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has changed since run 1"),
        "{}",
        stderr(&out)
    );

    let out = import_into(&sim, &input, &[], &["--rate", "1000/1s", "--force"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let counts = per_note(&sim);
    assert!(
        counts.values().all(|n| *n == 1),
        "no row created twice: {counts:?}"
    );
    let final_rows = read_report(&input.report_path());
    assert!(final_rows.iter().all(|r| r["Status"] == "created"));
    assert_report_matches_server(&final_rows, &sim);
    // The edited row is a new activity; the old version exists only if the first run created it.
    let old_note = "note 299, \"quoted\"";
    let first_created_old = rows
        .iter()
        .any(|r| r["ActivityNote"] == old_note && r["Status"] == "created");
    assert_eq!(counts.contains_key(old_note), first_created_old);
    assert_eq!(counts.len(), 300 + usize::from(first_created_old));
    if first_created_old {
        assert!(
            stderr(&out).contains("match no row of the changed file"),
            "{}",
            stderr(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_then_resume_finishes_exactly_once_and_report_regenerates_from_the_ledger() {
    let sim = simulator(SimConfig {
        rate: quota("10/1s"),
        latency: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(500, 0);
    let child = spawn_import(&sim, &input, "10/1s");
    wait_for_requests(&sim, 4).await;
    signal(&child, "TERM");
    let out = child.wait_with_output().await.expect("wait");
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("INTERRUPTED"));

    let out = import_into(&sim, &input, &[], &["--rate", "100/1s"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("(resumed)"), "{}", stderr(&out));
    let counts = per_note(&sim);
    assert_eq!(counts.len(), 500);
    assert!(counts.values().all(|n| *n == 1));
    let rows = read_report(&input.report_path());
    assert_eq!(rows.len(), 500);
    assert_report_matches_server(&rows, &sim);

    let out = run_cli(
        input.dir.path(),
        &["report", "report.csv.ledger", "--out", "again.csv"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(input.report_path()).expect("report"),
        std::fs::read(input.dir.path().join("again.csv")).expect("again"),
        "the report is a view of the ledger"
    );
}

/// Starts an import in the background, for tests that signal it while it runs.
fn spawn_import(
    sim: &lsq_sync::simulator::RunningSimulator,
    input: &Input,
    rate: &str,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_lsq-sync"))
        .args([
            "import",
            "input.csv",
            "--out",
            "report.csv",
            "--host",
            &sim.base_url(),
            "--rate",
            rate,
        ])
        .current_dir(input.dir.path())
        .env("LSQ_ACCESS_KEY", ACCESS_KEY)
        .env("LSQ_SECRET_KEY", SECRET_KEY)
        .env_remove("LSQ_CONFIG")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn")
}

/// Waits until the simulator has answered `n` requests: the signal that the run is under way.
async fn wait_for_requests(sim: &lsq_sync::simulator::RunningSimulator, n: u64) {
    tokio::time::timeout(Duration::from_secs(60), sim.sim.wait_for_requests(n))
        .await
        .unwrap_or_else(|_| panic!("the import never made {n} requests"));
}

fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// The kill test in small: the real binary SIGKILLed twice mid-run, then resumed to the end.
/// Nothing lost, nothing doubled, and the resumes' lookups stay within two per lead of the
/// batches sent before each kill (one paged read per lead, not one per batch).
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_twice_then_resume_loses_nothing_doubles_nothing_and_looks_up_per_lead() {
    let sim = simulator(SimConfig {
        rate: quota("50/1s"),
        latency: Duration::from_millis(30),
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(1000, 0);
    // Where each process's requests start in the simulator's log.
    let mut starts = Vec::new();
    for _ in 0..2 {
        let before = sim.sim.stats().requests;
        starts.push(before);
        let mut child = spawn_import(&sim, &input, "50/1s");
        wait_for_requests(&sim, before + 8).await;
        child.kill().await.expect("SIGKILL");
    }
    starts.push(sim.sim.stats().requests);
    let out = import_into(&sim, &input, &[], &["--rate", "50/1s"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let counts = per_note(&sim);
    assert_eq!(counts.len(), 1000, "nothing lost");
    assert!(counts.values().all(|n| *n == 1), "nothing doubled");
    let rows = read_report(&input.report_path());
    assert!(rows.iter().all(|r| r["Status"] == "created"));
    assert_report_matches_server(&rows, &sim);

    let requests = sim.sim.requests();
    let activities = posted_activities(&sim);
    // Per kill, the leads of the batches truly sent before it (by any process so far: a resume
    // killed while checking leaves the same rows in flight for the next).
    let mut allowed = 0;
    for killed in 0..2 {
        let mut leads: Vec<&str> = activities
            .iter()
            .filter(|a| {
                a.created_by_request
                    .is_some_and(|seq| seq < starts[killed + 1])
            })
            .map(|a| a.lead_id.as_str())
            .collect();
        leads.sort_unstable();
        leads.dedup();
        allowed += 2 * leads.len();
    }
    let lookups = requests
        .iter()
        .filter(|r| r.path == lsq_sync::lsq::api::PATH_RETRIEVE)
        .filter(|r| r.seq >= starts[1])
        .count();
    assert!(
        lookups <= allowed,
        "{lookups} lookups by the resumes, more than 2 x the leads sent before each kill ({allowed})"
    );
    sim.shutdown().await;
}

/// A resumed run reads its rows with the options it recorded: given none it uses them, given
/// different ones it refuses, naming the flag.
#[tokio::test(flavor = "multi_thread")]
async fn a_resume_reads_the_recorded_input_options_and_refuses_conflicting_ones() {
    use lsq_sync::simulator::{OutageKind, OutageSchedule};
    let sim = simulator(SimConfig {
        rate: quota("40/1s"),
        outage: Some(OutageSchedule {
            kind: OutageKind::Plain500,
            after: Duration::from_millis(200),
            lasts: Duration::from_secs(600),
        }),
        ..SimConfig::default()
    })
    .await;
    let (input, _) = generated_input(400, 0);
    let text = std::fs::read_to_string(&input.path).expect("input");
    std::fs::write(&input.path, text.replacen("RelatedProspectId", "Lead", 1)).expect("rename");
    let config = retry_config(input.dir.path());
    let global = ["--config", config.as_str()];
    let map = ["--map", "Lead=RelatedProspectId"];
    let mut first = vec!["--rate", "40/1s", "--outage-patience", "1s"];
    first.extend(map);
    let out = import_into(&sim, &input, &global, &first, &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    let mut conflicting = vec!["--rate", "40/1s", "--timezone", "Asia/Kolkata"];
    conflicting.extend(map);
    let out = import_into(&sim, &input, &global, &conflicting, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--timezone"), "{}", stderr(&out));

    sim.sim.end_outage();
    // No mapping flag now: the recorded mapping is the one used.
    let out = import_into(&sim, &input, &global, &["--rate", "40/1s"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let counts = per_note(&sim);
    assert_eq!(counts.len(), 400);
    assert!(counts.values().all(|n| *n == 1));
    sim.shutdown().await;
}
