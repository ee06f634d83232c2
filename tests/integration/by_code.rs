//! `lsq-sync export --event CODE` without `--leads`: every lead's activities of one code read
//! account-wide (Get Activities by Activity Event), exactly and in few calls, incrementally by
//! modified date, and into another account through `import` (issue 25, bar 3).

use std::collections::{BTreeMap, HashSet};

use lsq_sync::lsq::api::{ActivityItem, FieldValue};
use lsq_sync::simulator::{ByEventNote, RunningSimulator, SimConfig, demo_lead_id};

use crate::support::*;

/// The account's 200 leads: GUIDs of their own, joining the account as activities are seeded.
fn lead(n: usize) -> String {
    format!("5eed0000-0000-4000-8000-{n:012}")
}

/// Seeds `per_lead` activities of `code` on each of `leads` leads: distinct dates, notes and
/// values of the type's fields (some left empty); returns their ids.
fn seed(sim: &RunningSimulator, code: i64, leads: usize, per_lead: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for l in 0..leads {
        for i in 0..per_lead {
            let n = l * per_lead + i;
            let fields = [
                ("mx_Custom_1", format!("c{code}-{n}")),
                ("mx_Custom_2", String::new()),
                ("mx_Custom_3", format!("{}", n % 7)),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| FieldValue {
                schema_name: k.into(),
                value: v,
            })
            .collect();
            ids.push(sim.sim.add_activity(ActivityItem {
                related_prospect_id: lead(l),
                activity_event: code,
                activity_note:
                    (!n.is_multiple_of(5)).then(|| format!("note {code}/{n}, \"quoted\"")),
                activity_owner_email: None,
                activity_date_time: Some(format!(
                    "2024-{:02}-{:02} {:02}:{:02}:{:02}",
                    1 + n % 12,
                    1 + n % 28,
                    n % 24,
                    n % 60,
                    (n / 60) % 60
                )),
                fields,
            }));
        }
    }
    ids
}

/// What must survive a migration: lead, code, date, note, fields.
type Essence = (String, i64, String, String, BTreeMap<String, String>);

fn essence(a: &lsq_sync::simulator::StoredActivity) -> Essence {
    (
        a.lead_id.clone(),
        a.event_code,
        a.date_time.clone(),
        a.note.clone().unwrap_or_default(),
        a.fields.clone(),
    )
}

/// `lsq-sync export --event CODE ARGS...` against the simulator at `url`.
async fn export(
    dir: &std::path::Path,
    url: &str,
    code: &str,
    args: &[&str],
) -> std::process::Output {
    let mut all = vec!["export", "--event", code];
    all.extend(args);
    run_cli(dir, &all, &api_env(url)).await
}

fn exported_ids(path: &std::path::Path) -> Vec<String> {
    read_csv(path)
        .into_iter()
        .map(|r| r["Id"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn export_by_code_reads_the_account_exactly_incrementally_and_migrates() {
    let source = simulator(delete_sim()).await;
    let ours = seed(&source, 201, 200, 10);
    let others: Vec<String> = [seed(&source, 202, 100, 3), seed(&source, 203, 50, 4)].concat();
    assert_eq!(ours.len(), 2000);
    // Modified times fixed by the test, not the wall clock: everything last changed on New
    // Year's Day, and every 13th activity of 201 (and some of the others) on 1 June, one of
    // them exactly at the second asked for.
    for id in ours.iter().chain(&others) {
        assert!(source.sim.set_modified(id, "2025-01-01 00:00:00"));
    }
    let changed: HashSet<String> = ours.iter().step_by(13).cloned().collect();
    for (i, id) in changed.iter().enumerate() {
        let at = if i == 0 {
            "2025-06-01 12:00:00"
        } else {
            "2025-06-02 08:30:00"
        };
        assert!(source.sim.set_modified(id, at));
    }
    for id in others.iter().step_by(9) {
        assert!(source.sim.set_modified(id, "2025-06-03 00:00:00"));
    }
    let dir = tempfile::tempdir().expect("dir");
    let url = source.base_url();

    // Everything of code 201, in at most 22 calls.
    let before = source.sim.requests().len();
    let out = export(
        dir.path(),
        &url,
        "201",
        &["--out", "all.csv", "--status", "status.csv"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let calls = source.sim.requests().len() - before;
    let ids = exported_ids(&dir.path().join("all.csv"));
    assert_eq!(ids.len(), 2000, "each once");
    assert_eq!(
        ids.iter().cloned().collect::<HashSet<_>>(),
        ours.iter().cloned().collect::<HashSet<_>>()
    );
    eprintln!(
        "export --event 201 bar test: 2000 activities in {calls} calls; {}",
        stderr(&out).trim()
    );
    assert!(calls <= 22, "{calls} calls");
    assert!(!dir.path().join("all.csv.partial").exists());
    let status = read_csv(&dir.path().join("status.csv"));
    assert_eq!(status.len(), 1);
    assert_eq!(
        (
            status[0]["ActivityEvent"].as_str(),
            status[0]["Status"].as_str(),
            status[0]["Activities"].as_str()
        ),
        ("201", "exported", "2000")
    );

    // Incremental: exactly those modified at or after the time given.
    let out = export(
        dir.path(),
        &url,
        "201",
        &[
            "--modified-since",
            "2025-06-01 12:00:00",
            "--out",
            "changed.csv",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got: Vec<String> = exported_ids(&dir.path().join("changed.csv"));
    assert_eq!(got.len(), changed.len());
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), changed);

    // Into another account: the same activities (lead, code, date, note, fields).
    let target = simulator(SimConfig {
        accept_any_lead: true,
        ..delete_sim()
    })
    .await;
    let out = run_cli(
        dir.path(),
        &["import", "all.csv", "--out", "report.csv"],
        &api_env(&target.base_url()),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "import: {}", stderr(&out));
    let mut want: Vec<Essence> = source
        .sim
        .activities()
        .iter()
        .filter(|a| a.event_code == 201)
        .map(essence)
        .collect();
    let mut got: Vec<Essence> = posted_activities(&target).iter().map(essence).collect();
    want.sort();
    got.sort();
    assert_eq!(want.len(), 2000);
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_listing_no_note_exports_empty_notes_and_says_so_once() {
    let sim = simulator(SimConfig {
        by_event_note: ByEventNote::Absent,
        ..delete_sim()
    })
    .await;
    for i in 0..3 {
        seed_activity(&sim, &demo_lead_id(i), 201, "2024-01-01 10:00:00", "a note");
    }
    let dir = tempfile::tempdir().expect("dir");
    let out = export(dir.path(), &sim.base_url(), "201", &["--out", "out.csv"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = read_csv(&dir.path().join("out.csv"));
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["ActivityNote"].is_empty()));
    let err = stderr(&out);
    assert_eq!(err.matches("carry no note").count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_export_by_code_leaves_no_file_and_bad_flags_send_nothing() {
    let sim = simulator(delete_sim()).await;
    seed_activity(&sim, &demo_lead_id(1), 201, "2024-01-01 10:00:00", "x");
    let dir = tempfile::tempdir().expect("dir");
    let url = sim.base_url();
    let out = export(
        dir.path(),
        &url,
        "999",
        &["--out", "out.csv", "--status", "status.csv"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Invalid activity event code 999"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("out.csv").exists());
    assert!(!dir.path().join("out.csv.partial").exists());
    assert_eq!(
        read_csv(&dir.path().join("status.csv"))[0]["Status"],
        "failed"
    );

    let before = sim.sim.requests().len();
    for (args, message) in [
        (vec!["export", "--out", "o.csv"], "needs --leads"),
        (
            vec![
                "export",
                "--event",
                "201",
                "--modified-since",
                "2025-01-01",
                "--out",
                "o.csv",
            ],
            "--modified-since",
        ),
        (
            vec![
                "export",
                "--leads",
                &demo_lead_id(1),
                "--event",
                "201",
                "--modified-since",
                "2025-01-01 00:00:00",
                "--out",
                "o.csv",
            ],
            "cannot be used with",
        ),
    ] {
        let out = run_cli(dir.path(), &args, &api_env(&url)).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(sim.sim.requests().len(), before, "nothing sent");
}
