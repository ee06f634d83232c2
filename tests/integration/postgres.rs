//! `import --from-postgres` against a real PostgreSQL 15 server that each test starts on a temp
//! dir and a loopback port (and stops when it ends): 2,000 rows survive a SIGKILL and a resume
//! with each created once, from the snapshot; a failing query and a refused connection exit 2
//! with the server's message, send nothing and never show the password.
//!
//! PostgreSQL must be installed (`/usr/lib/postgresql/15/bin`, or `LSQ_PG_BIN`): without it
//! these tests fail rather than skip, so CI cannot pass without running them (`.ci/run`
//! installs it). initdb and postgres refuse to run as root, so as root the server runs as the
//! `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lsq_sync::simulator::{RunningSimulator, SimConfig, demo_lead_id};

use crate::support::*;

/// A PostgreSQL server of its own, stopped on drop.
pub(crate) struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl PgServer {
    /// initdb (trust auth), then `pg_ctl start -w`, which returns once the server accepts
    /// connections.
    pub(crate) fn start() -> PgServer {
        let bin = PathBuf::from(
            std::env::var("LSQ_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        assert!(
            bin.join("initdb").is_file(),
            "PostgreSQL is not installed ({}/initdb is missing): install postgresql-15 \
             (apt-get install -y postgresql-15; .ci/run does) or set LSQ_PG_BIN",
            bin.display()
        );
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("lsq-pg-")
            .tempdir()
            .expect("temp dir");
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the server's dir to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = PgServer {
            bin,
            data: dir.path().join("data"),
            as_postgres,
            port,
            _dir: dir,
        };
        let data = server.data.display().to_string();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let socket_dir = server._dir.path().display().to_string();
        let log = server._dir.path().join("server.log").display().to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off"
        );
        server.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        );
        server
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL lsq-sync is given.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A client for setting up tables.
    pub(crate) async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connect to the test server");
        tokio::spawn(connection);
        client
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Creates `activities` with `rows` rows over the simulator's demo leads, each with a unique
/// note, and returns the query that selects them under the import's column names.
async fn seed(client: &tokio_postgres::Client, rows: usize) -> String {
    let leads: Vec<String> = (0..50).map(|n| format!("'{}'", demo_lead_id(n))).collect();
    client
        .batch_execute(&format!(
            "CREATE TABLE activities (id serial PRIMARY KEY, lead text, event int, note text, \
             at timestamp, score numeric, extra text);
             INSERT INTO activities (lead, event, note, at, score, extra)
             SELECT (ARRAY[{}])[1 + n % 50], 201, 'pg note ' || n || ', \"quoted\"',
                    timestamp '2024-05-01 10:00:00' + n * interval '1 minute', n * 0.25,
                    CASE WHEN n % 3 = 0 THEN NULL ELSE 'x' || n END
             FROM generate_series(1, {rows}) AS n;",
            leads.join(",")
        ))
        .await
        .expect("seed the table");
    "SELECT lead AS \"RelatedProspectId\", event AS \"ActivityEvent\", note AS \"ActivityNote\", \
     at AS \"ActivityDateTime\", score AS \"mx_Custom_1\", extra AS \"Extra\" \
     FROM activities ORDER BY id;"
        .to_string()
}

fn import_args<'a>(url: &'a str, query: &'a str, host: &'a str, rate: &'a str) -> Vec<&'a str> {
    vec![
        "import",
        "--from-postgres",
        url,
        "--query",
        query,
        "--out",
        "report.csv",
        "--host",
        host,
        "--rate",
        rate,
    ]
}

fn spawn(dir: &Path, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_lsq-sync"))
        .args(args)
        .current_dir(dir)
        .env("LSQ_ACCESS_KEY", ACCESS_KEY)
        .env("LSQ_SECRET_KEY", SECRET_KEY)
        .env_remove("LSQ_CONFIG")
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn")
}

fn notes(sim: &RunningSimulator) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for a in posted_activities(sim) {
        *counts.entry(a.note.unwrap_or_default()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_rows_from_postgres_survive_sigkill_and_are_created_once() {
    let pg = PgServer::start();
    let client = pg.client().await;
    let query = seed(&client, 2000).await;
    let sim = simulator(SimConfig {
        rate: Some("1000/1s".parse().expect("quota")),
        latency: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, host) = (pg.url(), sim.base_url());

    // The first run is slow (40 calls/s) and killed once 20 of its 80 calls have been answered.
    // Few calls in flight: a batch is marked in flight before it waits for the pacer, and the
    // resume checks every such batch with Get Activities (64 of them at the default
    // concurrency would cost the test half a minute of lookups, not coverage).
    let mut first = import_args(&url, &query, &host, "40/1s");
    first.extend(["--concurrency", "4"]);
    let child = spawn(dir.path(), &first);
    tokio::time::timeout(Duration::from_secs(60), sim.sim.wait_for_requests(20))
        .await
        .expect("the import never made 20 requests");
    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().await.expect("wait");
    assert_eq!(out.status.code(), None, "killed by a signal");
    let created_before = posted_activities(&sim).len();
    assert!(
        created_before > 0 && created_before < 2000,
        "killed midway: {created_before} created"
    );
    let snapshot = dir.path().join("report.csv.ledger.postgres.csv");
    assert!(snapshot.is_file(), "the snapshot is beside the ledger");

    // Rows added since must not join the resumed run: it works from its snapshot.
    client
        .batch_execute(
            "INSERT INTO activities (lead, event, note, at) \
             SELECT lead, event, 'added later ' || id, at FROM activities WHERE id <= 5",
        )
        .await
        .expect("insert more rows");

    let out = run_cli(
        dir.path(),
        &import_args(&url, &query, &host, "1000/1s"),
        &[],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("from its snapshot"), "{err}");
    assert!(err.contains("(resumed)"), "{err}");
    let counts = notes(&sim);
    assert_eq!(counts.len(), 2000, "every row created");
    assert!(
        counts.values().all(|n| *n == 1),
        "no row created twice: {:?}",
        counts.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert!(!counts.keys().any(|k| k.starts_with("added later")));
    let rows = read_report(&dir.path().join("report.csv"));
    assert_eq!(rows.len(), 2000);
    assert!(rows.iter().all(|r| r["Status"] == "created"));
    // PostgreSQL's own CSV reached the report: a timestamp as the API reads it, a numeric
    // value, a NULL as an empty cell, a quoted note with a comma.
    let first = &rows[0];
    assert_eq!(first["ActivityDateTime"], "2024-05-01 10:01:00");
    assert_eq!(first["mx_Custom_1"], "0.25");
    assert_eq!(first["ActivityNote"], "pg note 1, \"quoted\"");
    assert_eq!(rows[2]["Extra"], "");

    // --fresh takes a new snapshot: now the added rows are read (and only they are new).
    let mut fresh = import_args(&url, &query, &host, "1000/1s");
    fresh.extend(["--fresh", "--skip-existing"]);
    let out = run_cli(dir.path(), &fresh, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let counts = notes(&sim);
    assert_eq!(counts.len(), 2005);
    assert!(counts.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_query_or_a_refused_connection_exits_2_sends_nothing_and_hides_the_password() {
    let pg = PgServer::start();
    let sim = simulator(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = sim.base_url();
    let url = format!("postgres://postgres:hunter2@127.0.0.1:{}/postgres", pg.port);

    // -vv: trace logs of lsq-sync, debug logs of the PostgreSQL client; no password in them.
    let mut args = vec!["-vv"];
    args.extend(import_args(
        &url,
        "SELECT * FROM no_such_table",
        &host,
        "25/1s",
    ));
    let out = run_cli(dir.path(), &args, &[]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("relation \"no_such_table\" does not exist"),
        "the server's message: {err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("postgres:***@127.0.0.1"), "{err}");

    // A query that fails after rows have streamed: no snapshot is left that could pass for one.
    let failing = "SELECT n AS \"ActivityNote\", 1 / (n - 30000) AS x \
                   FROM generate_series(1, 40000) AS n";
    let out = run_cli(dir.path(), &import_args(&url, failing, &host, "25/1s"), &[]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ERROR: division by zero"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("postgres.csv"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A port nobody listens on: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{closed}/postgres?sslmode=disable");
    let args = import_args(&url, "SELECT 1", &host, "25/1s");
    let out = run_cli(dir.path(), &args, &[("LSQ_PG_PASSWORD", "hunter2")]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    assert!(sim.sim.requests().is_empty(), "nothing was sent");
    assert!(!dir.path().join("report.csv").exists());
}

/// The README's nightly sync recipe: a keyed sync straight from a table, twice, with the table
/// edited, grown and trimmed in between: the second night updates in place, creates, deletes
/// (`--delete-missing`) and leaves the rest, each call through the keyed pipeline.
#[tokio::test(flavor = "multi_thread")]
async fn a_nightly_keyed_sync_from_postgres_mirrors_the_table() {
    let pg = PgServer::start();
    let client = pg.client().await;
    seed(&client, 200).await;
    let query = "SELECT 'A-' || id AS \"CallId\", lead AS \"RelatedProspectId\", event AS \
                 \"ActivityEvent\", note AS \"ActivityNote\", at AS \"ActivityDateTime\", \
                 score AS \"mx_Custom_1\" FROM activities ORDER BY id";
    let sim = simulator(SimConfig {
        rate: Some("1000/1s".parse().expect("quota")),
        delete_delay: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, host) = (pg.url(), sim.base_url());
    let mut args = import_args(&url, query, &host, "1000/1s");
    args.extend([
        "--ledger",
        "nightly.ledger",
        "--key",
        "CallId",
        "--key-field",
        "mx_Custom_50",
        "--delete-missing",
        "--yes",
    ]);
    let night = || async {
        let out = run_cli(dir.path(), &args, &[]).await;
        let rows = read_report(&dir.path().join("report.csv"));
        let mut counts = std::collections::BTreeMap::new();
        for r in &rows {
            *counts.entry(r["Status"].clone()).or_insert(0) += 1;
        }
        (out, counts)
    };
    let (out, counts) = night().await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(counts.get("created"), Some(&200));

    client
        .batch_execute(
            "UPDATE activities SET note = note || ' (edited)' WHERE id <= 10;
             UPDATE activities SET score = score + 1 WHERE id BETWEEN 11 AND 15;
             DELETE FROM activities WHERE id BETWEEN 16 AND 18;
             INSERT INTO activities (lead, event, note, at, score)
             SELECT lead, event, 'new ' || id, at + interval '1 day', 1
             FROM activities WHERE id BETWEEN 100 AND 106;",
        )
        .await
        .expect("the source changes");
    let (out, counts) = night().await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected: std::collections::BTreeMap<String, i32> = [
        ("created", 7),
        ("updated", 15),
        ("unchanged", 182),
        ("deleted", 3),
    ]
    .into_iter()
    .map(|(s, n)| (s.to_string(), n))
    .collect();
    assert_eq!(counts, expected, "{}", stderr(&out));
    let (out, counts) = night().await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        counts.get("unchanged"),
        Some(&204),
        "the next night: nothing to do"
    );
}
