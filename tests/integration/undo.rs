//! `lsq-sync undo` end to end: what the import created goes, what was there before stays, the
//! delete windows are cut around someone else's activities (one call per window, no more than
//! the foreign activities + 1 per lead and code), an imported activity sharing its second with
//! another is left and reported `partial`, and the deletions are recorded in the ledger.

use lsq_sync::ledger::{Durability, Ledger};
use lsq_sync::simulator::{
    RetrieveDates, RunningSimulator, SimConfig, demo_lead_email, demo_lead_id,
};

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

async fn undo_deletes_what_the_import_created_and_nothing_before_it(dates: RetrieveDates) {
    let sim = simulator(SimConfig {
        retrieve_dates: dates,
        ..delete_sim()
    })
    .await;
    let clean = demo_lead_id(20);
    let crowded = demo_lead_id(21);
    // Same code, same lead, just outside the import's window: must stay.
    let before = add(&sim, &clean, 201, "2024-05-02 09:59:59");
    let after = add(&sim, &clean, 201, "2024-05-04 10:00:01");
    // Inside the window of the other lead: the window is cut around it.
    let intruder = add(&sim, &crowded, 201, "2024-05-11 00:00:00");
    let input = import(&sim, &clean, &crowded).await;
    let imported: Vec<_> = posted_activities(&sim);
    assert_eq!(imported.len(), 5);

    let out = undo_yes_wait(&sim, &input, "report.csv").await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = read_csv(&input.dir.path().join("undo.csv"));
    let windows = |lead: &str, code: &str| {
        lines
            .iter()
            .filter(|l| l["LeadId"] == lead && l["ActivityEvents"] == code)
            .map(|l| {
                assert_eq!(l["Status"], "confirmed", "{l:?}");
                (l["FromDate"].clone(), l["ToDate"].clone())
            })
            .collect::<Vec<_>>()
    };
    let span = |from: &str, to: &str| (from.to_string(), to.to_string());
    assert_eq!(
        windows(&clean, "201"),
        [span("2024-05-02 10:00:00", "2024-05-04 10:00:00")]
    );
    assert_eq!(windows(&clean, "202").len(), 1);
    assert_eq!(
        windows(&crowded, "201"),
        [
            span("2024-05-10 10:00:00", "2024-05-10 10:00:00"),
            span("2024-05-12 10:00:00", "2024-05-12 10:00:00")
        ],
        "two windows, around the intruder"
    );
    assert_eq!(lines.len(), 4, "{lines:?}");

    let all = sim.sim.activities();
    let is_deleted = |id: &str| all.iter().any(|a| a.id == id && a.deleted);
    for a in &imported {
        assert!(is_deleted(&a.id), "imported {:?} on {}", a.note, a.lead_id);
    }
    for id in [&before, &after, &intruder] {
        assert!(!is_deleted(id), "pre-existing {id} must stay");
    }
    assert!(stderr(&out).contains("2 lead(s) fully undone, 0 partly undone"));

    let ledger = Ledger::open(
        &input.report_path().with_extension("csv.ledger"),
        Durability::Normal,
    )
    .expect("ledger");
    let deletions = ledger.deletions().expect("deletions");
    assert_eq!(deletions.len(), 4, "one record per window: {deletions:?}");
    assert!(deletions.iter().all(|d| d.status == "confirmed"));
}

async fn an_undo_whose_every_activity_shares_a_second_with_another_deletes_nothing(
    dates: RetrieveDates,
) {
    let sim = simulator(SimConfig {
        retrieve_dates: dates,
        ..delete_sim()
    })
    .await;
    let lead = demo_lead_id(22);
    let input = write_input(&format!(
        "RelatedProspectId,ActivityEvent,ActivityNote\n{lead},201,no date 1\n{lead},201,no date 2\n"
    ));
    let out = import_into(&sim, &input, &[], &["--rate", RATE], &[]).await;
    assert_eq!(out.status.code(), Some(0), "import: {}", stderr(&out));
    // lsq-sync filled the dates in (now): one activity of someone else on each of those seconds.
    let posted = posted_activities(&sim);
    let seconds: std::collections::BTreeSet<String> =
        posted.iter().map(|a| a.date_time.clone()).collect();
    let intruders: Vec<String> = seconds.iter().map(|s| add(&sim, &lead, 201, s)).collect();
    let before = sim.sim.requests().len();

    // The ledger as the source: the dates come from its sent_date_time.
    let out = undo(&sim, &input, &["report.csv.ledger", "--run", "1", "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = read_csv(&input.dir.path().join("undo.csv"));
    assert_eq!(lines.len(), seconds.len(), "{lines:?}");
    for line in &lines {
        assert_eq!(line["Status"], "partial", "{line:?}");
        assert_eq!(line["FromDate"], line["ToDate"]);
        let ours: Vec<_> = posted
            .iter()
            .filter(|a| a.date_time == line["FromDate"])
            .collect();
        assert!(!ours.is_empty());
        assert!(
            ours.iter().all(|a| line["Message"].contains(&a.id))
                && intruders.iter().any(|id| line["Message"].contains(id)),
            "names both sides: {line:?}"
        );
    }
    assert!(stderr(&out).contains("0 lead(s) fully undone, 0 partly undone, 1 refused"));
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

/// The bar: leads with 1, 3 and 10 activities of someone else scattered among the
/// imported ones (same code), and a lead where one shares its second with an imported one.
/// After `undo --yes --wait` (no `--out`: the default `report.undo.csv`), every foreign activity
/// is there, every imported one is gone but the one sharing a second, which is reported; and
/// each lead took at most (its foreign activities + 1) delete calls.
async fn undo_cuts_windows_around_scattered_foreign_activities(dates: RetrieveDates) {
    let sim = simulator(SimConfig {
        retrieve_dates: dates,
        ..delete_sim()
    })
    .await;
    // (lead, imported activities, indexes of the imported activities a foreign one follows,
    // index of the imported activity a foreign one shares its second with).
    let plans: [(String, usize, Vec<usize>, Option<usize>); 4] = [
        (demo_lead_id(30), 5, vec![2], None),
        (demo_lead_id(31), 8, vec![1, 4, 5], None),
        (
            demo_lead_id(32),
            25,
            vec![0, 2, 3, 5, 8, 11, 13, 17, 20, 22],
            None,
        ),
        (demo_lead_id(33), 4, vec![], Some(2)),
    ];
    // Imported activity i is at 10:00 + 10 i minutes; a foreign one "after i" at +5 minutes.
    let at = |day: usize, minutes: usize| {
        format!(
            "2024-06-{:02} {:02}:{:02}:00",
            day,
            10 + minutes / 60,
            minutes % 60
        )
    };
    let mut text = String::from("RelatedProspectId,ActivityEvent,ActivityNote,ActivityDateTime\n");
    let mut foreign: Vec<(String, String)> = Vec::new();
    for (day, (lead, count, after, shared)) in plans.iter().enumerate() {
        for i in 0..*count {
            text.push_str(&format!(
                "{lead},201,imported {i},{}\n",
                at(day + 1, i * 10)
            ));
        }
        for &i in after {
            foreign.push((lead.clone(), add(&sim, lead, 201, &at(day + 1, i * 10 + 5))));
        }
        if let Some(i) = shared {
            foreign.push((lead.clone(), add(&sim, lead, 201, &at(day + 1, i * 10))));
        }
    }
    let input = write_input(&text);
    let out = import_into(&sim, &input, &[], &["--rate", RATE], &[]).await;
    assert_eq!(out.status.code(), Some(0), "import: {}", stderr(&out));
    let imported = posted_activities(&sim);
    assert_eq!(imported.len(), 5 + 8 + 25 + 4);
    let requests_before = sim.sim.requests().len();

    let out = undo_default_out(
        &sim,
        &input,
        &["report.csv", "--yes", "--wait", "--wait-timeout", "20s"],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "one activity is left: {err}");
    assert!(
        err.contains("plan: 19 window(s) on 4 lead(s): 19 delete call(s)"),
        "{err}"
    );
    assert!(
        err.contains("3 lead(s) fully undone, 1 partly undone, 0 refused, 0 failed"),
        "{err}"
    );

    // The simulator's state: foreign all there, imported all gone but the one.
    let all = sim.sim.activities();
    let is_deleted = |id: &str| all.iter().any(|a| a.id == id && a.deleted);
    for (lead, id) in &foreign {
        assert!(!is_deleted(id), "foreign {id} on {lead} must stay");
    }
    let shared_lead = &plans[3].0;
    let shared_date = at(4, 20);
    let left: Vec<_> = imported
        .iter()
        .filter(|a| !is_deleted(&a.id))
        .map(|a| (a.lead_id.clone(), a.date_time.clone(), a.id.clone()))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!((&left[0].0, &left[0].1), (shared_lead, &shared_date));

    // The results, by default beside the report: one line per window, and the one left.
    let lines = read_csv(&input.dir.path().join("report.undo.csv"));
    let partial: Vec<_> = lines.iter().filter(|l| l["Status"] == "partial").collect();
    assert_eq!(partial.len(), 1, "{lines:?}");
    let shared_foreign = &foreign.last().expect("the shared one").1;
    assert_eq!(partial[0]["LeadId"], *shared_lead);
    assert_eq!(partial[0]["FromDate"], shared_date);
    assert!(
        partial[0]["Message"].contains(&left[0].2)
            && partial[0]["Message"].contains(shared_foreign),
        "names both ids: {:?}",
        partial[0]
    );

    // Calls: per lead and code, delete calls <= foreign activities + 1; the request log holds
    // exactly those delete calls, and the ledger one record per call.
    let deletes_in_log = sim.sim.requests()[requests_before..]
        .iter()
        .filter(|r| r.path.ends_with("ProspectActivity.svc/DeleteActivities"))
        .count();
    let ledger = Ledger::open(
        &input.dir.path().join("report.csv.ledger"),
        Durability::Normal,
    )
    .expect("ledger");
    let deletions = ledger.deletions().expect("deletions");
    assert_eq!(deletions.len(), deletes_in_log);
    let mut total_bound = 0;
    for (lead, _, after, shared) in &plans {
        let foreign_here = after.len() + usize::from(shared.is_some());
        let windows: Vec<_> = lines
            .iter()
            .filter(|l| l["LeadId"] == *lead && l["Status"] != "partial")
            .collect();
        assert!(
            windows.iter().all(|l| l["Status"] == "confirmed"),
            "{windows:?}"
        );
        let calls = deletions.iter().filter(|d| d.lead_id == *lead).count();
        assert_eq!(calls, windows.len());
        assert!(
            calls <= foreign_here + 1,
            "lead {lead}: {calls} delete calls for {foreign_here} foreign activities"
        );
        total_bound += foreign_here + 1;
    }
    assert_eq!(deletes_in_log, 19);
    assert_eq!(total_bound, 19, "the bound is met exactly");
    let undo_calls = &sim.sim.requests()[requests_before..];
    let listings = undo_calls
        .iter()
        .filter(|r| r.path.ends_with("ProspectActivity.svc/Retrieve"))
        .count();
    // Figures for the record (`--nocapture`): the listings and --wait polls vary with timing.
    eprintln!(
        "undo bar test: {deletes_in_log} delete calls, {} calls in all ({listings} Get \
         Activities: listings and --wait polls)",
        undo_calls.len()
    );
    assert_eq!(undo_calls.len(), deletes_in_log + listings, "no other call");
}

#[tokio::test(flavor = "multi_thread")]
async fn undo_never_writes_its_results_over_an_input() {
    let sim = simulator(delete_sim()).await;
    let input = import(&sim, &demo_lead_id(34), &demo_lead_id(35)).await;
    let before = sim.sim.requests().len();
    for out_path in ["report.csv", "./report.csv.ledger"] {
        let args = ["report.csv", "--yes", "--out", out_path];
        let out = undo_default_out(&sim, &input, &args).await;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("would overwrite"), "{}", stderr(&out));
    }
    assert_eq!(sim.sim.requests().len(), before, "no call at all");
    assert_eq!(
        read_report(&input.report_path()).len(),
        5,
        "the report is intact"
    );
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
    let mut all = args.to_vec();
    all.extend(["--out", "undo.csv"]);
    undo_default_out(sim, input, &all).await
}

/// Runs `undo ARGS... --host SIM --rate RATE` in the input's folder: the results go where
/// ARGS say, or to undo's default.
async fn undo_default_out(
    sim: &RunningSimulator,
    input: &Input,
    args: &[&str],
) -> std::process::Output {
    let url = sim.base_url();
    let mut all = vec!["undo"];
    all.extend(args);
    all.extend(["--host", &url, "--rate", RATE]);
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

async fn undo_reads_a_mapped_import_the_way_the_import_read_it(dates: RetrieveDates) {
    let sim = simulator(SimConfig {
        retrieve_dates: dates,
        ..delete_sim()
    })
    .await;
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

under_both_retrieve_modes!(
    undo_deletes_what_the_import_created_and_nothing_before_it,
    an_undo_whose_every_activity_shares_a_second_with_another_deletes_nothing,
    undo_cuts_windows_around_scattered_foreign_activities,
    undo_reads_a_mapped_import_the_way_the_import_read_it,
);

/// Bar 2 of issue 25: `undo --wait` of an import whose leads also hold activities it did not
/// create, on a server whose Get Activities ignores `FromDate`/`ToDate` (as documented) and
/// applies queued deletes within a second. Four leads, each with five imported activities cut
/// into four windows by three foreign ones, and a foreign one before and after the span: every
/// one of the 16 windows is confirmed (counted on the activities' own dates, so a window beside
/// a foreign activity reaches zero), well within 15 s.
#[tokio::test(flavor = "multi_thread")]
async fn undo_wait_confirms_every_window_beside_foreign_activities_on_a_documented_server() {
    let sim = simulator(SimConfig {
        retrieve_dates: RetrieveDates::Ignored,
        delete_delay: std::time::Duration::from_millis(700),
        ..delete_sim()
    })
    .await;
    let at = |day: usize, minutes: usize| {
        format!(
            "2024-07-{:02} {:02}:{:02}:00",
            day,
            10 + minutes / 60,
            minutes % 60
        )
    };
    let mut text = String::from("RelatedProspectId,ActivityEvent,ActivityNote,ActivityDateTime\n");
    let mut foreign = Vec::new();
    for (day, lead) in (40..44).map(demo_lead_id).enumerate() {
        let day = day + 1;
        for i in 0..5 {
            text.push_str(&format!("{lead},201,imported {i},{}\n", at(day, i * 10)));
        }
        // Between imported 0|1, 1|2 and 2|3: four windows per lead.
        for i in 0..3 {
            foreign.push(add(&sim, &lead, 201, &at(day, i * 10 + 5)));
        }
        foreign.push(add(&sim, &lead, 201, &format!("2024-07-{day:02} 09:00:00")));
        foreign.push(add(&sim, &lead, 201, &format!("2024-07-{day:02} 12:00:00")));
    }
    let input = write_input(&text);
    let out = import_into(&sim, &input, &[], &["--rate", RATE], &[]).await;
    assert_eq!(out.status.code(), Some(0), "import: {}", stderr(&out));
    let imported = posted_activities(&sim);
    assert_eq!(imported.len(), 20);

    let started = std::time::Instant::now();
    let out = undo(
        &sim,
        &input,
        &["report.csv", "--yes", "--wait", "--wait-timeout", "60s"],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = read_csv(&input.dir.path().join("undo.csv"));
    assert_eq!(lines.len(), 16, "{lines:?}");
    assert!(
        lines.iter().all(|l| l["Status"] == "confirmed"),
        "{lines:?}"
    );
    let all = sim.sim.activities();
    let is_deleted = |id: &str| all.iter().any(|a| a.id == id && a.deleted);
    assert!(imported.iter().all(|a| is_deleted(&a.id)));
    assert!(foreign.iter().all(|id| !is_deleted(id)));
    // Figures for the record (`--nocapture`).
    eprintln!("undo --wait bar test: 16 windows confirmed in {took:?}");
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");
}
