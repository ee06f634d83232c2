//! `lsq-sync undo` end to end: what the import created goes, what was there before stays, a
//! window holding someone else's activity is refused and left as it is, and the deletions are
//! recorded in the ledger.

use lsq_sync::ledger::{Durability, Ledger};
use lsq_sync::simulator::{RunningSimulator, demo_lead_email, demo_lead_id};

use crate::support::*;

const RATE: &str = API_RATE;

fn add(sim: &RunningSimulator, lead: &str, code: i64, date: &str) -> String {
    seed_activity(sim, lead, code, date, "was there before")
}

/// Imports code-201 activities on `clean` (2024-05-02 .. 05-04) and on `crowded`
/// (2024-05-10 .. 05-12); one row of `clean` has no date, so lsq-sync fills it in (now).
async fn import(sim: &RunningSimulator, clean: &str, crowded: &str) -> Input {
    let input = write_input(&format!(
        "RelatedProspectId,ActivityEvent,ActivityNote,ActivityDateTime\n\
         {clean},201,imported 1,2024-05-02 10:00:00\n\
         {clean},201,imported 2,2024-05-04 10:00:00\n\
         {clean},202,imported 3,2024-05-03 10:00:00\n\
         {crowded},201,imported 4,2024-05-10 10:00:00\n\
         {crowded},201,imported 5,2024-05-12 10:00:00\n"
    ));
    let out = import_into(sim, &input, &[], &["--rate", RATE], &[]).await;
    assert_eq!(out.status.code(), Some(0), "import: {}", stderr(&out));
    input
}

#[tokio::test(flavor = "multi_thread")]
async fn undo_deletes_what_the_import_created_and_nothing_before_it() {
    let sim = simulator(delete_sim()).await;
    let clean = demo_lead_id(20);
    let crowded = demo_lead_id(21);
    // Same code, same lead, just outside the import's window: must stay.
    let before = add(&sim, &clean, 201, "2024-05-02 09:59:59");
    let after = add(&sim, &clean, 201, "2024-05-04 10:00:01");
    // Inside the window of the other lead: that lead is refused.
    let intruder = add(&sim, &crowded, 201, "2024-05-11 00:00:00");
    let input = import(&sim, &clean, &crowded).await;
    let imported: Vec<_> = posted_activities(&sim);
    assert_eq!(imported.len(), 5);

    let out = undo_yes_wait(&sim, &input, "report.csv").await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "one lead refused: {}",
        stderr(&out)
    );
    let lines = read_csv(&input.dir.path().join("undo.csv"));
    let status = |lead: &str, code: &str| {
        lines
            .iter()
            .find(|l| l["LeadId"] == lead && l["ActivityEvents"] == code)
            .unwrap_or_else(|| panic!("no line for {lead} {code}: {lines:?}"))
            .clone()
    };
    assert_eq!(status(&clean, "201")["Status"], "confirmed");
    assert_eq!(status(&clean, "201")["FromDate"], "2024-05-02 10:00:00");
    assert_eq!(status(&clean, "201")["ToDate"], "2024-05-04 10:00:00");
    assert_eq!(status(&clean, "202")["Status"], "confirmed");
    let refused = status(&crowded, "201");
    assert_eq!(refused["Status"], "refused");
    assert!(refused["Message"].contains(&intruder), "{refused:?}");

    let all = sim.sim.activities();
    let is_deleted = |id: &str| all.iter().any(|a| a.id == id && a.deleted);
    for a in &imported {
        assert_eq!(
            is_deleted(&a.id),
            a.lead_id == clean,
            "imported {:?} on {}",
            a.note,
            a.lead_id
        );
    }
    for id in [&before, &after, &intruder] {
        assert!(!is_deleted(id), "pre-existing {id} must stay");
    }

    let ledger = Ledger::open(
        &input.report_path().with_extension("csv.ledger"),
        Durability::Normal,
    )
    .expect("ledger");
    let deletions = ledger.deletions().expect("deletions");
    assert_eq!(deletions.len(), 2, "{deletions:?}");
    assert!(
        deletions
            .iter()
            .all(|d| d.status == "confirmed" && d.lead_id == clean)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_undo_changes_nothing() {
    let sim = simulator(delete_sim()).await;
    let lead = demo_lead_id(22);
    let input = write_input(&format!(
        "RelatedProspectId,ActivityEvent,ActivityNote\n{lead},201,no date 1\n{lead},201,no date 2\n"
    ));
    let out = import_into(&sim, &input, &[], &["--rate", RATE], &[]).await;
    assert_eq!(out.status.code(), Some(0), "import: {}", stderr(&out));
    // lsq-sync filled the dates in (now); an activity seeded now falls between them or on them.
    let posted = posted_activities(&sim);
    let mid = posted
        .iter()
        .map(|a| a.date_time.clone())
        .min()
        .expect("dates");
    let intruder = add(&sim, &lead, 201, &mid);
    let before = sim.sim.requests().len();

    // The ledger as the source: the dates come from its sent_date_time.
    let out = undo(&sim, &input, &["report.csv.ledger", "--run", "1", "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = read_csv(&input.dir.path().join("undo.csv"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["Status"], "refused");
    assert!(lines[0]["Message"].contains(&intruder), "{lines:?}");
    let new_requests = &sim.sim.requests()[before..];
    assert!(
        new_requests
            .iter()
            .all(|r| r.path.ends_with("ProspectActivity.svc/Retrieve")),
        "only listing calls: {new_requests:?}"
    );
    assert!(sim.sim.activities().iter().all(|a| !a.deleted));
    let ledger = Ledger::open(
        &input.dir.path().join("report.csv.ledger"),
        Durability::Normal,
    )
    .expect("ledger");
    assert!(ledger.deletions().expect("deletions").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn undo_without_yes_and_without_a_terminal_sends_nothing() {
    let sim = simulator(delete_sim()).await;
    let input = import(&sim, &demo_lead_id(23), &demo_lead_id(24)).await;
    let before = sim.sim.requests().len();
    let out = undo(&sim, &input, &["report.csv"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(sim.sim.requests().len(), before, "no call at all");
    assert!(sim.sim.activities().iter().all(|a| !a.deleted));
}

/// Runs `undo ARGS... --out undo.csv --host SIM --rate RATE` in the input's folder.
async fn undo(sim: &RunningSimulator, input: &Input, args: &[&str]) -> std::process::Output {
    let url = sim.base_url();
    let mut all = vec!["undo"];
    all.extend(args);
    all.extend(["--out", "undo.csv", "--host", &url, "--rate", RATE]);
    run_cli(input.dir.path(), &all, &[]).await
}

/// `undo SOURCE --yes --wait`: delete and confirm.
async fn undo_yes_wait(
    sim: &RunningSimulator,
    input: &Input,
    source: &str,
) -> std::process::Output {
    undo(
        sim,
        input,
        &[source, "--yes", "--wait", "--wait-timeout", "20s"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn undo_reads_a_mapped_import_the_way_the_import_read_it() {
    let sim = simulator(delete_sim()).await;
    let lead = demo_lead_id(25);
    let other = demo_lead_id(26);
    // Same lead and code, outside the window of the import: must stay.
    let before = add(&sim, &lead, 201, "2024-05-01 23:59:59");
    // The sheet's own names; the code is a constant; times are local to Kolkata (+05:30).
    let input = write_input(&format!(
        "Lead,Called at,Notes\n\
         {lead},02/05/2024 15:30,mapped 1\n\
         {lead},03/05/2024 15:30,mapped 2\n\
         {other},04/05/2024 15:30,mapped 3\n"
    ));
    let mapped = [
        "--map",
        "Lead=RelatedProspectId",
        "--map",
        "Called at=ActivityDateTime",
        "--map",
        "Notes=ActivityNote",
        "--set",
        "ActivityEvent=201",
        "--timezone",
        "Asia/Kolkata",
        "--date-format",
        "dd/MM/yyyy HH:mm",
        "--rate",
        RATE,
    ];
    let out = import_into(&sim, &input, &[], &mapped, &[]).await;
    assert_eq!(out.status.code(), Some(0), "import: {}", stderr(&out));
    let imported = posted_activities(&sim);
    assert_eq!(imported.len(), 3);

    let out = undo_yes_wait(&sim, &input, "report.csv").await;
    assert_eq!(out.status.code(), Some(0), "undo: {}", stderr(&out));
    let lines = read_csv(&input.dir.path().join("undo.csv"));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().all(|l| l["Status"] == "confirmed"),
        "{lines:?}"
    );
    let window = lines
        .iter()
        .find(|l| l["LeadId"] == lead)
        .expect("a line for the lead");
    // 15:30 in Kolkata is 10:00 UTC: the window is the UTC values sent.
    assert_eq!(window["FromDate"], "2024-05-02 10:00:00");
    assert_eq!(window["ToDate"], "2024-05-03 10:00:00");

    let all = sim.sim.activities();
    let is_deleted = |id: &str| all.iter().any(|a| a.id == id && a.deleted);
    assert!(imported.iter().all(|a| is_deleted(&a.id)), "{all:?}");
    assert!(!is_deleted(&before), "the activity before the import stays");
    assert_eq!(all.iter().filter(|a| a.deleted).count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn undo_of_a_match_by_import_is_refused_and_deletes_nothing() {
    let sim = simulator(delete_sim()).await;
    let input = write_input(&format!(
        "EmailAddress,ActivityEvent,ActivityDateTime\n{},201,2024-05-02 10:00:00\n",
        demo_lead_email(27)
    ));
    let extra = ["--match-by", "EmailAddress", "--rate", RATE];
    let out = import_into(&sim, &input, &[], &extra, &[]).await;
    assert_eq!(out.status.code(), Some(0), "import: {}", stderr(&out));
    let before = sim.sim.requests().len();

    for source in ["report.csv", "report.csv.ledger"] {
        let out = undo_yes_wait(&sim, &input, source).await;
        assert_eq!(out.status.code(), Some(2), "{source}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.contains("--match-by EmailAddress") && message.contains("not supported"),
            "{source}: {message}"
        );
    }
    assert_eq!(sim.sim.requests().len(), before, "no call at all");
    assert!(sim.sim.activities().iter().all(|a| !a.deleted));
}
