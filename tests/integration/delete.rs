//! `lsq-sync delete-activities` and `delete-owner-history` end to end: nothing is sent when an
//! argument is bad or nobody confirmed, `--wait` sees the deletion, only what was asked for
//! goes, and bad keys stop the run with exit 3.

use lsq_sync::simulator::{OWNER_CHANGE_EVENT, RetrieveDates, SimConfig, demo_lead_id};

use crate::support::*;

const RATE: &str = API_RATE;

fn add(sim: &lsq_sync::simulator::RunningSimulator, lead: &str, code: i64, date: &str) -> String {
    seed_activity(sim, lead, code, date, &format!("seeded {date}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_are_refused_before_anything_is_sent() {
    let sim = simulator(delete_sim()).await;
    let dir = tempfile::tempdir().expect("dir");
    let lead = demo_lead_id(5);
    std::fs::write(
        dir.path().join("leads.csv"),
        format!("Name,RelatedProspectId\nok,{lead}\nbad,12345-nope\n"),
    )
    .expect("leads");
    let url = sim.base_url();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--leads", "leads.csv", "--events", "201"],
            "leads.csv, row 2, column RelatedProspectId",
        ),
        (
            vec!["--leads", "not-a-guid", "--events", "201"],
            "not a lead id",
        ),
        (
            vec!["--leads", &lead, "--events", "20x"],
            "\"20x\" is not a positive whole number",
        ),
        (
            vec!["--leads", &lead, "--events", "22"],
            "delete-owner-history",
        ),
        (
            vec!["--leads", &lead, "--events", "201", "--from", "2024-01-01"],
            "yyyy-MM-dd HH:mm:ss",
        ),
        (
            vec![
                "--leads",
                &lead,
                "--events",
                "201",
                "--from",
                "2024-02-01 00:00:00",
                "--to",
                "2024-01-01 00:00:00",
            ],
            "is after --to",
        ),
        (
            vec![
                "--leads",
                &lead,
                "--events",
                "201",
                "--webhook",
                "http://hooks.example.com/x",
            ],
            "only https://",
        ),
        (
            vec![
                "--leads",
                &lead,
                "--events",
                "201",
                "--webhook",
                "https://u:p@hooks.example.com/x",
            ],
            "user name or password",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["delete-activities"];
        args.extend(flags.iter().copied());
        args.extend([
            "--yes",
            "--out",
            "results.csv",
            "--host",
            &url,
            "--rate",
            RATE,
        ]);
        let out = run_cli(dir.path(), &args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(message),
            "{flags:?}: {}",
            stderr(&out)
        );
    }
    assert!(sim.sim.requests().is_empty(), "nothing may be sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_yes_and_without_a_terminal_nothing_is_deleted() {
    let sim = simulator(delete_sim()).await;
    let dir = tempfile::tempdir().expect("dir");
    let lead = demo_lead_id(6);
    let id = add(&sim, &lead, 201, "2024-03-01 10:00:00");
    let url = sim.base_url();
    // stdin of the child is not a terminal (tokio's output() gives it /dev/null).
    let out = run_cli(
        dir.path(),
        &[
            "delete-activities",
            "--leads",
            &lead,
            "--events",
            "201",
            "--out",
            "results.csv",
        ],
        &api_env(&url),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("without --yes") && err.contains(&lead),
        "{err}"
    );
    assert!(
        sim.sim.requests().is_empty(),
        "no call without confirmation"
    );
    assert!(!dir.path().join("results.csv").exists());
    assert!(
        sim.sim
            .activities()
            .iter()
            .any(|a| a.id == id && !a.deleted)
    );
}

async fn wait_confirms_the_deletion_of_the_window_only(dates: RetrieveDates) {
    let sim = simulator(SimConfig {
        retrieve_dates: dates,
        ..delete_sim()
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let leads = [demo_lead_id(7), demo_lead_id(8)];
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    for lead in &leads {
        inside.push(add(&sim, lead, 201, "2024-03-01 10:00:00"));
        inside.push(add(&sim, lead, 203, "2024-03-02 10:00:00"));
        outside.push(add(&sim, lead, 201, "2024-04-01 10:00:00"));
        outside.push(add(&sim, lead, 202, "2024-03-01 12:00:00"));
    }
    let url = sim.base_url();
    let lead_list = leads.join(",");
    let out = run_cli(
        dir.path(),
        &[
            "delete-activities",
            "--leads",
            &lead_list,
            "--events",
            "201,203",
            "--from",
            "2024-03-01 00:00:00",
            "--to",
            "2024-03-31 23:59:59",
            "--count",
            "--yes",
            "--wait",
            "--wait-timeout",
            "20s",
            "--out",
            "results.csv",
        ],
        &api_env(&url),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = read_csv(&dir.path().join("results.csv"));
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["Status"], "confirmed", "{line:?}");
        assert_eq!(line["Activities"], "2", "counted before deleting: {line:?}");
        assert_eq!(line["ActivityEvents"], "201,203");
    }
    let all = sim.sim.activities();
    let deleted = |id: &String| all.iter().any(|a| &a.id == id && a.deleted);
    assert!(
        inside.iter().all(deleted),
        "the window's activities are gone"
    );
    assert!(
        !outside.iter().any(deleted),
        "nothing outside the window or codes"
    );
}

async fn delete_owner_history_removes_owner_changes_only(dates: RetrieveDates) {
    let sim = simulator(SimConfig {
        retrieve_dates: dates,
        ..delete_sim()
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let lead = demo_lead_id(9);
    let other_lead = demo_lead_id(10);
    let custom = add(&sim, &lead, 201, "2024-01-15 09:00:00");
    let url = sim.base_url();
    let out = run_cli(
        dir.path(),
        &[
            "delete-owner-history",
            "--leads",
            &lead,
            "--yes",
            "--wait",
            "--wait-timeout",
            "20s",
        ],
        &api_env(&url),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // No --out and ids on the command line: the results are named after the command.
    let lines = read_csv(&dir.path().join("delete-owner-history.csv"));
    assert_eq!(lines[0]["Status"], "confirmed", "{lines:?}");
    let of_lead = sim.sim.activities_of_lead(&lead);
    let owner_changes: Vec<_> = of_lead
        .iter()
        .filter(|a| a.event_code == OWNER_CHANGE_EVENT)
        .collect();
    assert_eq!(
        owner_changes.len(),
        2,
        "the demo lead has two owner changes"
    );
    assert!(owner_changes.iter().all(|a| a.deleted));
    assert!(of_lead.iter().any(|a| a.id == custom && !a.deleted));
    assert!(
        sim.sim
            .activities_of_lead(&other_lead)
            .iter()
            .all(|a| !a.deleted),
        "other leads untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_abort_with_exit_3() {
    let sim = simulator(delete_sim()).await;
    let dir = tempfile::tempdir().expect("dir");
    let leads = [demo_lead_id(11), demo_lead_id(12)].join(",");
    let url = sim.base_url();
    let out = run_cli(
        dir.path(),
        &[
            "delete-activities",
            "--leads",
            &leads,
            "--events",
            "201",
            "--yes",
            "--out",
            "results.csv",
            "--host",
            &url,
            "--rate",
            RATE,
        ],
        &[("LSQ_SECRET_KEY", "wrong-secret")],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("wrong-secret"),
        "no secret in output"
    );
    let lines = read_csv(&dir.path().join("results.csv"));
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["Status"] == "failed"), "{lines:?}");
    assert!(sim.sim.activities().iter().all(|a| !a.deleted));
}

under_both_retrieve_modes!(
    wait_confirms_the_deletion_of_the_window_only,
    delete_owner_history_removes_owner_changes_only,
);
