//! The keys never leak: every command that takes keys runs at `RUST_LOG=trace`, in text and
//! JSON log formats, against the simulator, a closed port, a server that answers garbage and
//! the simulator with other keys; stdout, stderr and every file left in the run's folder
//! (reports, summary JSON, HTML report, results, ledger and its journal) are searched for the secret key and the whole
//! access key. Also: the warning about a config file with keys that others can read.

use std::path::Path;

use lsq_sync::simulator::{RunningSimulator, SimConfig, demo_lead_id};

use crate::stub::{closed_port, garbage_server, url_of};
use crate::support::*;

/// Every command line that may touch the keys, run in this order in one folder (later ones
/// read what earlier ones wrote). `true` where the command takes the API flags (`--host`,
/// timeouts, attempts), which are appended. Words are split on spaces; `{lead}` is a demo lead
/// and `_` inside a word stands for a space. Adding a command is adding a line.
const COMMAND_LINES: &[(bool, &str)] = &[
    (false, "--help"),
    (false, "--version"),
    (false, "import --help"),
    (true, "check"),
    (true, "check --input input.csv"),
    (
        false,
        "validate input.csv --out validated.csv --summary-json validated.json",
    ),
    (true, "import input.csv --out dry-run.csv --dry-run"),
    // The summary and the page are files of the folder, so they are searched too.
    (
        true,
        "import input.csv --out report.csv --summary-json summary.json --html-report report.html",
    ),
    (true, "retry report.csv --out report-2.csv"),
    (false, "report report.csv.ledger --out report-3.csv"),
    (false, "report report.csv.ledger --list"),
    (true, "undo report.csv --yes --out undo.csv"),
    (
        true,
        "export --leads {lead} --out export.csv --status export-status.csv",
    ),
    (
        true,
        "delete-activities --leads {lead} --events 205 --count --yes --out deleted.csv",
    ),
    (
        true,
        "delete-owner-history --leads {lead} --to 2020-01-01_00:00:00 --yes --out owner.csv",
    ),
];

/// Keys unlike anything else in the output, new for each test.
struct Keys {
    access: String,
    secret: String,
}

impl Keys {
    fn random() -> Keys {
        let hex = |n: usize| {
            (0..n)
                .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
                .collect::<String>()
        };
        Keys {
            access: format!("u$leakAK{}", hex(24)),
            secret: format!("leakSK{}", hex(32)),
        }
    }

    /// What must not appear: the secret (whole, and its second half in case it was cut), the
    /// whole access key (a short prefix may be shown to tell accounts apart).
    fn forbidden(&self) -> [&str; 3] {
        [
            self.secret.as_str(),
            &self.secret[self.secret.len() / 2..],
            self.access.as_str(),
        ]
    }
}

/// Asserts that none of the keys is in `haystack`, naming `what` it was.
fn assert_clean(keys: &Keys, what: &str, haystack: &[u8]) {
    for needle in keys.forbidden() {
        let found = haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes());
        assert!(
            !found,
            "{what} holds a key ({needle}):\n{}",
            String::from_utf8_lossy(haystack)
        );
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Runs every command line against `host` with `keys` in both log formats at trace level, and
/// checks everything written; some command must have said `expected` on stderr, which shows
/// the situation under test really happened.
async fn run_everything(host: &str, keys: &Keys, expected: &str) {
    let lead = demo_lead_id(1);
    let mut stderrs = Vec::new();
    for format in ["text", "json"] {
        let input = write_input(&format!(
            "RelatedProspectId,ActivityEvent,ActivityNote\n{lead},205,leak test\n{lead},2x,bad code\n"
        ));
        let dir = input.dir.path();
        for (takes_api_flags, line) in COMMAND_LINES {
            let mut args: Vec<String> = vec!["--log-format".into(), format.into()];
            args.extend(
                line.split(' ')
                    .map(|word| word.replace("{lead}", &lead).replace('_', " ")),
            );
            if *takes_api_flags {
                args.extend(
                    [
                        "--host",
                        host,
                        "--max-attempts",
                        "1",
                        "--connect-timeout",
                        "1s",
                        "--request-timeout",
                        "2s",
                        // A server that never answers properly is an outage: bound the wait.
                        "--outage-patience",
                        "1s",
                    ]
                    .map(String::from),
                );
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env = [
                ("RUST_LOG", "trace"),
                ("LSQ_ACCESS_KEY", keys.access.as_str()),
                ("LSQ_SECRET_KEY", keys.secret.as_str()),
            ];
            let output = run_cli(dir, &args, &env).await;
            let what = format!("{line} ({format} logs, host {host})");
            assert_clean(keys, &format!("stdout of {what}"), &output.stdout);
            assert_clean(keys, &format!("stderr of {what}"), &output.stderr);
            // A line that does not parse would make this test pass without running anything.
            assert_ne!(output.status.code(), Some(2), "{what}: {}", stderr(&output));
            stderrs.push(stderr(&output));
        }
        // Written in every situation under test, so they really are searched.
        for name in ["summary.json", "report.html"] {
            assert!(dir.join(name).is_file(), "{name} written ({host})");
        }
        for file in files_under(dir) {
            let bytes = std::fs::read(&file).expect("read output file");
            assert_clean(keys, &file.display().to_string(), &bytes);
        }
    }
    assert!(
        stderrs.iter().any(|e| e.contains(expected)),
        "no command said {expected:?}: {stderrs:#?}"
    );
}

fn sim_config() -> SimConfig {
    SimConfig {
        rate: Some("1000/1s".parse().expect("quota")),
        delete_delay: std::time::Duration::from_millis(10),
        ..SimConfig::default()
    }
}

async fn simulator_with(keys: &Keys) -> RunningSimulator {
    RunningSimulator::start(SimConfig {
        access_key: keys.access.clone(),
        secret_key: keys.secret.clone(),
        ..sim_config()
    })
    .await
    .expect("simulator starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn no_key_leaks_against_the_simulator() {
    let keys = Keys::random();
    let sim = simulator_with(&keys).await;
    // Trace logs were on, and the run really talked to the server with these keys.
    run_everything(&sim.base_url(), &keys, "TRACE").await;
    assert!(
        posted_activities(&sim).len() >= 2,
        "one import per log format"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_key_leaks_against_a_closed_port() {
    run_everything(&url_of(closed_port()), &Keys::random(), "cannot connect").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_key_leaks_against_a_server_answering_garbage() {
    let port = garbage_server().await;
    run_everything(&url_of(port), &Keys::random(), "connection failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_key_leaks_when_the_keys_are_refused() {
    // The server knows other keys: every call is answered 401.
    let sim = RunningSimulator::start(sim_config())
        .await
        .expect("simulator starts");
    run_everything(&sim.base_url(), &Keys::random(), "HTTP 401").await;
    assert!(posted_activities(&sim).is_empty());
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_with_keys_readable_by_others_is_warned_about_once() {
    use std::os::unix::fs::PermissionsExt;
    let keys = Keys::random();
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("keys.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\naccess_key = \"{}\"\nsecret_key = \"{}\"\n",
            keys.access, keys.secret
        ),
    )
    .expect("config");
    let set_mode = |mode| {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    let args = ["--config", "keys.toml", "report", "none.ledger", "--list"];
    // The keys come from the file only.
    let env = [("LSQ_ACCESS_KEY", ""), ("LSQ_SECRET_KEY", "")];

    set_mode(0o644);
    let output = run_cli(dir.path(), &args, &env).await;
    let text = stderr(&output);
    assert_eq!(text.matches("chmod 600").count(), 1, "{text}");
    assert!(text.contains("keys.toml"), "{text}");
    assert_clean(&keys, "stderr", &output.stderr);

    set_mode(0o600);
    let output = run_cli(dir.path(), &args, &env).await;
    assert!(!stderr(&output).contains("chmod"), "{}", stderr(&output));
}
