//! Unit tests of `plan`.

use super::*;
use crate::ledger::{Durability, StoredRow};

const LEAD: &str = "3a6d5ea2-400e-4a2f-a728-fbfa0b0c1ddf";

/// A temp dir holding `input.csv` with `text`, and a ledger beside it.
struct Fixture {
    dir: tempfile::TempDir,
    ledger: Ledger,
}

impl Fixture {
    fn new(name: &str, text: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), text).unwrap();
        let ledger = Ledger::open(&dir.path().join("run.ledger"), Durability::Normal).unwrap();
        Fixture { dir, ledger }
    }

    fn job(&self, kind: InputKind, name: &str) -> ImportJob {
        ImportJob {
            kind,
            input: self.dir.path().join(name),
            report: self.dir.path().join("report.csv"),
            ledger: self.dir.path().join("run.ledger"),
            settings: Settings::default(),
            progress: false,
            fresh: false,
            force: false,
            skip_existing: false,
            yes: false,
            deleter: None,
            interrupt: Interrupt::default(),
        }
    }

    fn rows(&self, run: i64) -> Vec<StoredRow> {
        self.ledger.rows(run, 0, 100).unwrap()
    }
}

fn input() -> String {
    format!(
        "RelatedProspectId,ActivityEvent,ActivityNote,ActivityDateTime\n\
             {LEAD},201,first,2024-01-01 10:00:00\n\
             not-a-guid,201,bad,2024-01-01 10:00:00\n\
             {LEAD},202,third,\n"
    )
}

#[test]
fn a_new_run_records_every_row_with_its_state() {
    let f = Fixture::new("in.csv", &input());
    let plan = plan_run(&f.ledger, &f.job(InputKind::Import, "in.csv")).unwrap();
    assert!(!plan.resumed);
    let rows = f.rows(plan.run);
    let states: Vec<_> = rows.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [RowState::Pending, RowState::Invalid, RowState::Pending]
    );
    assert_eq!(
        rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        [2, 3, 4],
        "lines of the file, the header being line 1"
    );
    let error = rows[1].error.clone().unwrap_or_default();
    assert!(error.contains("RelatedProspectId"), "{error}");
    assert_eq!(&rows[0].record[2], b"first", "the row is kept as read");
    let run = f.ledger.run(plan.run).unwrap().unwrap();
    assert_eq!(run.status, "running", "planned, ready to run");
}

#[test]
fn the_same_input_again_resumes_its_unfinished_run() {
    let f = Fixture::new("in.csv", &input());
    let job = f.job(InputKind::Import, "in.csv");
    let first = plan_run(&f.ledger, &job).unwrap();
    let again = plan_run(&f.ledger, &job).unwrap();
    assert!(again.resumed);
    assert_eq!(again.run, first.run);
    assert_eq!(f.ledger.runs().unwrap().len(), 1, "no new run, no new rows");
}

#[test]
fn a_finished_run_of_the_same_input_is_reported_again_not_sent_again() {
    let f = Fixture::new("in.csv", &input());
    let job = f.job(InputKind::Import, "in.csv");
    let first = plan_run(&f.ledger, &job).unwrap();
    f.ledger.finish_run(first.run, RunStatus::Finished).unwrap();
    let again = plan_run(&f.ledger, &job).unwrap();
    assert!(again.resumed);
    assert_eq!(again.run, first.run);
    // --fresh is the deliberate way to import it again.
    let fresh = plan_run(&f.ledger, &ImportJob { fresh: true, ..job }).unwrap();
    assert!(!fresh.resumed);
    assert_ne!(fresh.run, first.run);
}

#[test]
fn a_changed_input_is_refused_unless_forced_or_fresh() {
    let f = Fixture::new("in.csv", &input());
    let job = f.job(InputKind::Import, "in.csv");
    let first = plan_run(&f.ledger, &job).unwrap();
    std::fs::write(&job.input, input().replace("first", "changed")).unwrap();
    match plan_run(&f.ledger, &job) {
        Err(ImportError::InputChanged { run, .. }) => assert_eq!(run, first.run),
        other => panic!("expected InputChanged, got {:?}", other.map(|p| p.run)),
    }
    let fresh = plan_run(&f.ledger, &ImportJob { fresh: true, ..job }).unwrap();
    assert_ne!(fresh.run, first.run);
    let old = f.ledger.run(first.run).unwrap().unwrap();
    assert_eq!(old.status, "abandoned");
}

#[test]
fn forcing_a_changed_input_carries_over_what_the_old_run_settled() {
    let f = Fixture::new("in.csv", &input());
    let job = f.job(InputKind::Import, "in.csv");
    let first = plan_run(&f.ledger, &job).unwrap();
    let created = crate::ledger::RowUpdate::new(1, RowState::Created, Some("act-1".into()), None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(f.ledger.settle(first.run, None, "answered", vec![created]))
        .unwrap();
    // The third row changes; the first, created, is the same activity as before.
    std::fs::write(&job.input, input().replace("third", "changed")).unwrap();
    let forced = plan_run(&f.ledger, &ImportJob { force: true, ..job }).unwrap();
    let rows = f.rows(forced.run);
    assert_eq!(rows[0].state, RowState::Created);
    assert_eq!(rows[0].activity_id.as_deref(), Some("act-1"));
    assert_eq!(rows[2].state, RowState::Pending);
}

#[test]
fn a_retry_reads_a_report_and_keeps_what_it_says_was_done() {
    let report = format!(
        "RowNumber,Status,ProspectActivityId,Error,RelatedProspectId,ActivityEvent,ActivityNote,ActivityDateTime\n\
             1,created,act-1,,{LEAD},201,first,2024-01-01 10:00:00\n\
             2,failed,,HTTP 500,{LEAD},201,second,2024-01-01 11:00:00\n\
             3,skipped,act-3,,{LEAD},201,third,2024-01-01 12:00:00\n"
    );
    let f = Fixture::new("report.csv", &report);
    let plan = plan_run(&f.ledger, &f.job(InputKind::Retry, "report.csv")).unwrap();
    let rows = f.rows(plan.run);
    let states: Vec<_> = rows
        .iter()
        .map(|r| (r.number, r.state, r.activity_id.clone()))
        .collect();
    assert_eq!(
        states,
        [
            (1, RowState::Created, Some("act-1".to_string())),
            (2, RowState::Pending, None),
            (3, RowState::Skipped, Some("act-3".to_string())),
        ]
    );
    assert_eq!(
        rows[1].record.len(),
        4,
        "the report's own columns are dropped"
    );
    assert_eq!(
        f.ledger.headers(plan.run).unwrap(),
        ByteRecord::from(vec![
            "RelatedProspectId",
            "ActivityEvent",
            "ActivityNote",
            "ActivityDateTime"
        ])
    );
}

#[test]
fn a_retry_of_something_that_is_not_a_report_is_refused() {
    let f = Fixture::new("in.csv", &input());
    let err = plan_run(&f.ledger, &f.job(InputKind::Retry, "in.csv"))
        .err()
        .unwrap();
    assert!(matches!(err, ImportError::NotAReport { .. }), "{err}");
    let twice = format!(
        "RowNumber,Status,ProspectActivityId,Error,RelatedProspectId,ActivityEvent\n\
             1,failed,,x,{LEAD},201\n\
             1,failed,,x,{LEAD},201\n"
    );
    let f = Fixture::new("report.csv", &twice);
    let err = plan_run(&f.ledger, &f.job(InputKind::Retry, "report.csv"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("appears twice"), "{err}");
    // A plan that failed half-way leaves no run to resume.
    let runs = f.ledger.runs().unwrap();
    assert!(runs.iter().all(|r| r.status == "abandoned"), "{runs:?}");
}

#[test]
fn a_resume_reads_rows_the_way_they_were_planned() {
    let f = Fixture::new("in.csv", &input());
    let mut job = f.job(InputKind::Import, "in.csv");
    job.settings.input.dates.zone = Some(crate::input::dates::parse_zone("Asia/Kolkata").unwrap());
    let first = plan_run(&f.ledger, &job).unwrap();
    // No input option given: the recorded ones are used.
    let plain = f.job(InputKind::Import, "in.csv");
    let resumed = plan_run(&f.ledger, &plain).unwrap();
    assert_eq!(resumed.run, first.run);
    assert_eq!(resumed.input.dates.zone, job.settings.input.dates.zone);
    // Another time zone: refused, naming the flag.
    let mut other = f.job(InputKind::Import, "in.csv");
    other.settings.input.dates.zone =
        Some(crate::input::dates::parse_zone("Europe/London").unwrap());
    match plan_run(&f.ledger, &other) {
        Err(ImportError::OptionsConflict { flag, .. }) => assert_eq!(flag, "--timezone"),
        result => panic!("expected a conflict, got {:?}", result.map(|p| p.run)),
    }
}

#[test]
fn recorded_input_options_read_back_as_settings() {
    let mut settings = InputSettings::default();
    settings.dates.zone = Some(crate::input::dates::parse_zone("Asia/Kolkata").unwrap());
    settings.sheet = Some("Calls".into());
    let options = serde_json::json!({ "input": input_options(&settings, Some("Calls")) });
    let back = input_settings_from_options(&options.to_string()).unwrap();
    assert_eq!(back.dates.zone, settings.dates.zone);
    assert_eq!(back.sheet.as_deref(), Some("Calls"));
    // Older ledgers recorded no input options: the defaults.
    let old = input_settings_from_options("{}").unwrap();
    assert_eq!(
        input_options(&old, None),
        input_options(&InputSettings::default(), None)
    );
}
