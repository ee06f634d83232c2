//! Helpers shared by the integration tests: temp dirs, input files, running the binary, reading
//! its report.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use lsq_sync::simulator::{DEMO_OWNERS, RunningSimulator, SimConfig, demo_lead_id};

pub(crate) const ACCESS_KEY: &str = "it-access-AKIA4242";
pub(crate) const SECRET_KEY: &str = "it-secret-Zm9vYmFyYmF6cXV4";

/// A simulator with the test keys and the given tweaks.
pub(crate) async fn simulator(config: SimConfig) -> RunningSimulator {
    RunningSimulator::start(SimConfig {
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        ..config
    })
    .await
    .expect("simulator starts on loopback")
}

/// Runs the binary with `args` in `dir`, with the test keys in the environment and no config
/// file, and returns its output.
pub(crate) async fn run_cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lsq-sync"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("LSQ_CONFIG")
        .env_remove("LSQ_HOST")
        .env_remove("LSQ_RATE")
        .env_remove("RUST_LOG")
        .env_remove("LSQ_XLSX_READER")
        .env("LSQ_ACCESS_KEY", ACCESS_KEY)
        .env("LSQ_SECRET_KEY", SECRET_KEY)
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.expect("the binary runs")
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// One line of a report, by column name.
pub(crate) type ReportRow = HashMap<String, String>;

/// Any CSV lsq-sync writes (report, results, export), as rows by column name. Cells that are
/// not UTF-8 (a report carries input bytes back as read) are shown lossily.
pub(crate) fn read_csv(path: &Path) -> Vec<ReportRow> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = |cell: &[u8]| String::from_utf8_lossy(cell).into_owned();
    let headers = reader.byte_headers().expect("header").clone();
    reader
        .byte_records()
        .map(|r| {
            let r = r.expect("report row");
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (text(h), text(v)))
                .collect()
        })
        .collect()
}

/// A report, checked to start with the report's own columns.
pub(crate) fn read_report(path: &Path) -> Vec<ReportRow> {
    let mut reader =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("report {}: {e}", path.display()));
    let headers = reader.byte_headers().expect("report header").clone();
    assert_eq!(
        &headers.iter().take(4).collect::<Vec<_>>(),
        &[
            &b"RowNumber"[..],
            b"Status",
            b"ProspectActivityId",
            b"Error"
        ]
    );
    read_csv(path)
}

/// A CSV input in a temp dir.
pub(crate) struct Input {
    pub dir: tempfile::TempDir,
    #[allow(dead_code)]
    pub path: PathBuf,
}

impl Input {
    pub(crate) fn report_path(&self) -> PathBuf {
        self.dir.path().join("report.csv")
    }
}

pub(crate) fn write_input(text: &str) -> Input {
    write_input_bytes(text.as_bytes())
}

/// A CSV input of any bytes (not necessarily UTF-8) in a temp dir.
pub(crate) fn write_input_bytes(bytes: &[u8]) -> Input {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("input.csv");
    std::fs::write(&path, bytes).expect("write input");
    Input { dir, path }
}

/// `rows` valid rows over the demo leads, each with a unique note so tests can find it on the
/// server. Every `invalid_every`-th row (if not 0) has a broken event code.
pub(crate) fn generated_input(rows: usize, invalid_every: usize) -> (Input, Vec<bool>) {
    let mut text = String::from(
        "RelatedProspectId,ActivityEvent,ActivityNote,ActivityOwnerEmail,ActivityDateTime,mx_Custom_1,Batch\n",
    );
    let mut valid = Vec::with_capacity(rows);
    for n in 1..=rows {
        let is_invalid = invalid_every != 0 && n % invalid_every == 0;
        let event = if is_invalid { "2O1" } else { "201" };
        text.push_str(&format!(
            "{},{event},\"note {n}, \"\"quoted\"\"\",{},2024-05-{:02} 10:{:02}:00,v{n},b{}\n",
            demo_lead_id(n % 50),
            DEMO_OWNERS[n % DEMO_OWNERS.len()],
            1 + n % 28,
            n % 60,
            n / 25
        ));
        valid.push(!is_invalid);
    }
    (write_input(&text), valid)
}

/// Activities created through the bulk endpoint (the simulator also seeds owner-change history).
pub(crate) fn posted_activities(
    sim: &RunningSimulator,
) -> Vec<lsq_sync::simulator::StoredActivity> {
    sim.sim
        .activities()
        .into_iter()
        .filter(|a| a.created_by_request.is_some())
        .collect()
}

/// Runs `lsq-sync [global...] import input.csv --out report.csv --host SIM [extra...]` in the
/// input's folder.
pub(crate) async fn import_into(
    sim: &RunningSimulator,
    input: &Input,
    global: &[&str],
    extra: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let url = sim.base_url();
    let mut args: Vec<&str> = global.to_vec();
    args.extend(["import", "input.csv", "--out", "report.csv", "--host", &url]);
    args.extend(extra);
    run_cli(input.dir.path(), &args, env).await
}

/// The quota the export, delete and undo tests give the simulator and the binary: fast enough
/// that pacing costs nothing, paced all the same.
pub(crate) const API_RATE: &str = "500/1s";

/// The environment that points the binary at `url` with [`API_RATE`], for `run_cli`.
pub(crate) fn api_env(url: &str) -> [(&str, &str); 2] {
    [("LSQ_HOST", url), ("LSQ_RATE", API_RATE)]
}

/// A simulator paced at [`API_RATE`] whose queued deletions complete after 50 ms.
pub(crate) fn delete_sim() -> SimConfig {
    SimConfig {
        rate: Some(API_RATE.parse().expect("quota")),
        delete_delay: std::time::Duration::from_millis(50),
        ..SimConfig::default()
    }
}

/// Seeds one activity of `code` on `lead` at `date`, as if another integration had made it;
/// returns its id.
pub(crate) fn seed_activity(
    sim: &RunningSimulator,
    lead: &str,
    code: i64,
    date: &str,
    note: &str,
) -> String {
    sim.sim.add_activity(lsq_sync::lsq::api::ActivityItem {
        related_prospect_id: lead.to_string(),
        activity_event: code,
        activity_note: Some(note.to_string()),
        activity_owner_email: None,
        activity_date_time: Some(date.to_string()),
        fields: vec![],
    })
}

/// Declares, for each named `async fn NAME(dates: RetrieveDates)`, a module `NAME` of two
/// tests running it against a simulator whose Get Activities ignores `FromDate`/`ToDate` (as
/// its documentation allows) and one that honours them: every read that means a date window
/// must come out the same on both.
macro_rules! under_both_retrieve_modes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread")]
                async fn server_ignores_dates() {
                    super::$name(lsq_sync::simulator::RetrieveDates::Ignored).await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn server_honours_dates() {
                    super::$name(lsq_sync::simulator::RetrieveDates::Honoured).await;
                }
            }
        )*
    };
}
pub(crate) use under_both_retrieve_modes;
