//! The command line, as clap sees it. Raw flags only: `commands` turns them into `Settings`.
//!
//! Longer than the 700 lines a module aims for, on purpose: it is one declaration per command
//! and flag, each with the `--help` text the user reads (which also feeds the man page and the
//! completions), and nothing else; split by command it would scatter the flags that several
//! commands share (`InputArgs`, the API and pacing flags) without making any of it simpler.

// The doc comments below are clap's `--help` text, written for a terminal: `[api] host`,
// `mx_Custom_<n>` and bare URLs there are meant as they stand, not as rustdoc links or HTML.
#![allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::bare_urls,
    rustdoc::invalid_html_tags
)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::LogFormat;
use crate::lsq::quota::RateQuota;

const EXIT_CODES: &str = "\
Examples:
  lsq-sync import samples/activities.csv --out report.csv --simulate
  lsq-sync check --host https://api-in21.leadsquared.com --input activities.csv
  lsq-sync <COMMAND> --help      (each command's flags, with examples)

Exit codes:
  0    every row was created
  1    the run finished, but some rows failed or were invalid (see the report)
  2    usage, configuration or input-file error, or more invalid rows than --max-invalid;
       nothing was sent
  3    aborted (e.g. bad credentials); the report holds what was done
  130  stopped by Ctrl-C, 143 by SIGTERM; run the same command again to resume";

/// Moves CRM activity data into LeadSquared in bulk: paced to the account's quota, retried,
/// and reported row by row.
#[derive(Debug, Parser)]
#[command(name = "lsq-sync", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Config file (default: config/lsq-sync.toml when it exists).
    #[arg(long, global = true, env = "LSQ_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on stderr; verbosity is set with RUST_LOG (e.g. RUST_LOG=debug), -q or -v.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Quiet: print only errors and the final status line (RUST_LOG=error, no progress bar).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Verbose: debug logs (RUST_LOG=lsq_sync=debug); -vv for trace. Overrides RUST_LOG.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Allow http:// to a host that is not loopback (the keys then cross the network in clear
    /// text); also [api] allow_insecure_http or LSQ_ALLOW_INSECURE_HTTP.
    #[arg(long, global = true)]
    pub allow_insecure_http: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import activities from a file (CSV, JSON Lines, spreadsheet), standard input or a
    /// PostgreSQL query, writing one report line per input row.
    #[command(after_help = "Examples:
  lsq-sync import samples/activities.csv --out report.csv --simulate
  LSQ_ACCESS_KEY=... LSQ_SECRET_KEY=... lsq-sync import activities.csv --out report.csv \\
      --host https://api-in21.leadsquared.com --rate 25/5s
  lsq-sync import calls.xlsx --out report.csv --simulate --map \"Lead ID=RelatedProspectId\" \\
      --set ActivityEvent=201 --timezone Asia/Kolkata --date-format \"dd/MM/yyyy HH:mm\"

Input columns (names matched case-insensitively): RelatedProspectId (required, GUID),
ActivityEvent (required, code), ActivityNote, ActivityOwnerEmail,
ActivityDateTime (yyyy-MM-dd HH:mm:ss, UTC), mx_Custom_1..mx_Custom_50.
Other columns are carried into the report unchanged.

Nightly, unattended (see the README's cron recipe):
  lsq-sync import export.csv --out report.csv --ledger nightly.ledger --skip-existing \\
      --max-invalid 5 --summary-json summary.json --html-report report.html
  PGPASSWORD=... lsq-sync import --from-postgres postgres://etl@db.internal/crm \\
      --query \"SELECT * FROM lsq_activities\" --out report.csv --ledger nightly.ledger \\
      --notify-url https://hooks.slack.com/services/... --metrics-file /var/lib/node_exporter/lsq.prom
  some-export | lsq-sync import - --format jsonl --out report.csv --ledger nightly.ledger

A streamed input (-, --from-postgres) is first written to a snapshot beside the ledger
(LEDGER.stdin.csv, LEDGER.postgres.csv); running the same command again after a stop resumes
from the snapshot without reading the stream; --fresh takes a new one.

Exit codes: 0 all created; 1 some rows failed or invalid; 2 usage or input error, or more
invalid rows than --max-invalid (nothing sent); 3 aborted (bad keys, wrong host); 130/143
stopped by Ctrl-C/SIGTERM (run again to resume).")]
    Import(ImportArgs),
    /// Re-post the failed and invalid rows of a report (after fixing them), carrying created
    /// rows over unchanged, into a new report of the same format.
    #[command(after_help = "Example (the reconcile loop):
  lsq-sync import activities.csv --out report.csv --host ...
  # fix the bad cells of the failed/invalid rows in report.csv, in a spreadsheet
  lsq-sync retry report.csv --out report-2.csv --host ...

Rows with Status created or skipped are never posted again, even if edited.
Exit codes as for import: 0 all created, 1 some rows still failed or invalid, 2 usage or input
error, 3 aborted, 130/143 stopped.")]
    Retry(RetryArgs),
    /// Write the report of a run from its ledger (the ledger is the source of truth).
    #[command(after_help = "Examples:
  lsq-sync report report.csv.ledger --out report-again.csv
  lsq-sync report report.csv.ledger --list")]
    Report(ReportArgs),
    /// Export the activities of leads to a CSV file that `lsq-sync import` reads as it is.
    #[command(after_help = "Examples:
  lsq-sync export --leads leads.csv --out activities.csv --host https://api-in21.leadsquared.com
  lsq-sync export --leads 3aee22bd-8419-422a-8242-c510df9af021 --event 201 \\
      --from '2024-01-01 00:00:00' --to '2024-12-31 23:59:59' --out webinars.csv --status leads-status.csv
  lsq-sync export --event 201 --out webinars.csv          # every lead's, no list of leads
  lsq-sync export --event 201 --modified-since '2025-03-01 02:30:00' --out changed.csv

--from/--to select by the activity's date and are applied on our side; --modified-since (with
--event and no --leads) selects by the time the activity was last created or changed. Without
--leads the file is written as OUT.partial and renamed to OUT once complete: a failed run leaves
no partial OUT, and running it again starts over.

Columns: RelatedProspectId, ActivityEvent, ActivityNote, ActivityDateTime, ActivityOwnerEmail,
mx_Custom_1..mx_Custom_50 (the import's columns), then Id, EventName, CreatedOn, ModifiedOn, Owner.
--leads takes a CSV file (a RelatedProspectId, ProspectId, LeadId or Id column, or one column of
ids) or a comma-separated list of ids. Exit 1 if some lead was not found or failed.")]
    Export(ExportArgs),
    /// Delete leads' custom activities of some codes (queued by the API), one call per lead.
    #[command(after_help = "Examples:
  lsq-sync delete-activities --leads leads.csv --events 163,166 --count
  lsq-sync delete-activities --leads leads.csv --events 163,166 \\
      --from '2024-01-01 00:00:00' --to '2024-01-31 23:59:59' --yes --wait --out results.csv

Without --yes the plan is printed and confirmation asked on a terminal; with no terminal the
command refuses and sends nothing (with --count it only counts: a dry run).
Results: one line per lead, Status queued, confirmed (--wait) or failed, in --out (default
LEADS.delete-activities.csv beside the leads file, or delete-activities.csv here).")]
    DeleteActivities(DeleteActivitiesArgs),
    /// Delete leads' owner change history (queued by the API), one call per lead.
    #[command(after_help = "Example:
  lsq-sync delete-owner-history --leads leads.csv --to '2023-12-31 23:59:59' --yes --wait --out results.csv")]
    DeleteOwnerHistory(DeleteOwnerHistoryArgs),
    /// Undo an import: delete the activities it created, only where nothing else would go too.
    #[command(after_help = "Examples:
  lsq-sync undo report.csv                      # plan, then confirm on a terminal
  lsq-sync undo report.csv --yes --wait         # results in report.undo.csv
  lsq-sync undo report.csv.ledger --run 3 --yes --wait --out undo.csv

Per lead and activity code, the span covering the activities the import created is listed, then
deleted in the fewest windows (one call each) that hold none of the other activities found
there. An imported activity that shares its second with another activity cannot be told apart
by a window: it is left and reported partial, naming both (--force deletes the whole span,
others included). The plan (windows, calls, least time) is printed before confirming.
Deletions are recorded in the ledger (REPORT.csv.ledger beside a report, or the LEDGER given).")]
    Undo(UndoArgs),
    /// Check the keys and the host, and with --input the file's activity codes and custom
    /// fields, without sending anything.
    #[command(after_help = "Examples:
  LSQ_ACCESS_KEY=... LSQ_SECRET_KEY=... lsq-sync check --host https://api-in21.leadsquared.com
  lsq-sync check --host https://api-in21.leadsquared.com --input activities.csv

One line per check, OK, FAIL or SKIP with the reason. If the keys belong to an account on another
regional host, the FAIL line names the --host to use.
Exit codes: 0 every check passed, 1 a check failed, 2 usage or unreadable input, 3 keys refused.")]
    Check(CheckArgs),
    /// Check every row as an import would, without sending anything or writing a ledger: the
    /// report says valid or invalid (with the reason) for each row. Same as import --dry-run.
    #[command(after_help = "Examples:
  lsq-sync validate activities.csv --out checked.csv
  lsq-sync validate calls.xlsx --sheet Calls --map \"Lead ID=RelatedProspectId\" \\
      --set ActivityEvent=201 --timezone Asia/Kolkata --out checked.csv

Every check that needs no server: columns, lead ids (or --match-by values), activity codes,
dates (converted to UTC as they would be sent), custom fields. `lsq-sync check --input` adds the
checks that need the account (do the codes and fields exist).
Exit codes: 0 every row is valid, 1 some rows are invalid (see the report), 2 usage or input-file
error.")]
    Validate(ValidateArgs),
    /// Run the embedded LeadSquared simulator on a loopback port (for tests and demos).
    #[command(after_help = "Example:
  lsq-sync simulate --port 8080 --rate 25/1s --latency-ms 300
  LSQ_HOST=http://127.0.0.1:8080 LSQ_ACCESS_KEY=sim-access-key LSQ_SECRET_KEY=sim-secret-key \\
      lsq-sync import samples/activities.csv --out report.csv")]
    Simulate(SimulateArgs),
    /// Print a shell completion script for lsq-sync on stdout.
    #[command(after_help = "Examples:
  lsq-sync completions bash > /etc/bash_completion.d/lsq-sync
  lsq-sync completions zsh > \"${fpath[1]}/_lsq-sync\"
  lsq-sync completions fish > ~/.config/fish/completions/lsq-sync.fish")]
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout.
    #[command(after_help = "Example:
  lsq-sync man > /usr/local/share/man/man1/lsq-sync.1 && man lsq-sync")]
    Man,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Where rows come from when they are not in a file: a PostgreSQL query.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Reading from PostgreSQL")]
pub struct SourceArgs {
    /// Import the rows of --query from this database instead of a file:
    /// postgres://USER@HOST:PORT/DB[?sslmode=disable|prefer|require]. The password comes from
    /// LSQ_PG_PASSWORD or PGPASSWORD (not the command line, where ps shows it). [config:
    /// [source] postgres_url]
    #[arg(long, value_name = "URL")]
    pub from_postgres: Option<String>,

    /// The SELECT whose rows (columns named as the input's) are imported, e.g.
    /// "SELECT lead_id AS \"RelatedProspectId\", 201 AS \"ActivityEvent\" FROM calls".
    /// [config: [source] query]
    #[arg(long, value_name = "SQL")]
    pub query: Option<String>,
}

/// Flags that tune how requests are sent; shared by the commands that call the API.
#[derive(Debug, Args, Clone, Default)]
pub struct SendArgs {
    /// API host, e.g. https://api-in21.leadsquared.com [env: LSQ_HOST]
    #[arg(long, value_name = "URL")]
    pub host: Option<String>,

    /// Account quota as CALLS/DURATION (25/5s, 25/1s, 10/500ms); never exceeded in any window.
    #[arg(long, value_name = "CALLS/DURATION")]
    pub rate: Option<RateQuota>,

    /// Attempts per batch, the first included; failures during an API outage and refusals for
    /// the rate do not count.
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,

    /// How long to wait for an API that fails across the board before stopping (resumable),
    /// e.g. 15m [env: LSQ_OUTAGE_PATIENCE]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub outage_patience: Option<std::time::Duration>,

    /// Most requests in flight at once (the rate is set by --rate, not this).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Activities per bulk call, 1 to 25.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,

    /// Connect timeout, e.g. 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub connect_timeout: Option<std::time::Duration>,

    /// Whole-request timeout, e.g. 60s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub request_timeout: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The file to check: CSV, or XLSX/XLS/ODS.
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,

    /// Where to write the report (one line per input row, Status valid or invalid).
    #[arg(long, short, value_name = "REPORT.csv")]
    pub out: PathBuf,

    /// Write a machine-readable summary (JSON, "version": 1, "command": "validate") here:
    /// rows valid and invalid, duration, exit code.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    // Named `input_options` because `input` is the input file.
    #[command(flatten)]
    pub input_options: InputArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import: CSV, JSON Lines (.jsonl, .ndjson), or a spreadsheet (.xlsx, .xlsm,
    /// .xlsb, .xls, .ods); `-` reads standard input (CSV, or --format jsonl). Leave it out with
    /// --from-postgres.
    #[arg(value_name = "INPUT.csv|-")]
    pub input: Option<PathBuf>,

    /// Where to write the report (one line per input row).
    #[arg(long, short, value_name = "REPORT.csv")]
    pub out: PathBuf,

    #[command(flatten)]
    pub send: SendArgs,

    /// Start the embedded simulator on a free loopback port and import into it (no keys needed).
    #[arg(long)]
    pub simulate: bool,

    /// Validate only, as `lsq-sync validate` does: nothing is sent and no ledger is written.
    #[arg(long, conflicts_with = "simulate")]
    pub dry_run: bool,

    /// With --simulate: the simulator's response latency in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0, requires = "simulate")]
    pub sim_latency_ms: u64,

    #[command(flatten)]
    pub run: RunArgs,

    // Named `input_options` because `input` is the input file.
    #[command(flatten)]
    pub input_options: InputArgs,

    #[command(flatten)]
    pub nightly: NightlyArgs,
    #[command(flatten)]
    pub format: ReportFormatArgs,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub sync: SyncArgs,
}

/// Keyed sync: rows matched to the activities of earlier runs by the source's own key, so that
/// an edited row updates its activity instead of adding a second one. Each also has a config
/// key (`[sync]`); flags win.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Keyed sync")]
pub struct SyncArgs {
    /// The column holding each row's own stable id (a call id): a new key is created, a key
    /// whose note or custom fields changed is updated in place, an unchanged one is left alone
    /// [config: [sync] key].
    #[arg(long, value_name = "COLUMN")]
    pub key: Option<String>,

    /// Also write the key into this custom field (mx_Custom_<n>) of every activity created, so a
    /// run without the ledger (a new container) reads the key map back from the account
    /// [config: [sync] key_field].
    #[arg(long, value_name = "mx_Custom_N")]
    pub key_field: Option<String>,

    /// A row whose lead, code, date or owner changed: delete its old activity (never one lsq-sync
    /// did not create) and create it anew, instead of reporting a conflict
    /// [config: [sync] replace_changed].
    #[arg(long)]
    pub replace_changed: bool,

    /// Delete the activities of keys that earlier runs of this sync created and this input
    /// lacks (a mirror); asks first, --yes where no one is at a terminal
    /// [config: [sync] delete_missing].
    #[arg(long)]
    pub delete_missing: bool,

    /// Delete nothing and send nothing (exit 2) if a run would delete more than N activities or
    /// P% of the keys known, e.g. 50 or 5% (default 10%) [config: [sync] max_delete].
    #[arg(long, value_name = "N|P%")]
    pub max_delete: Option<String>,

    /// Delete without asking (--delete-missing, --replace-changed); required when stdin is not
    /// a terminal.
    #[arg(long)]
    pub yes: bool,
}

/// How the input is read: spreadsheets, their own column names, leads by e-mail, local times.
/// Each also has a config key (`[input]`, `[mapping]`, `[constants]`); flags win.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Reading the input")]
pub struct InputArgs {
    /// Read a sheet column as an API field, e.g. --map "Lead ID=RelatedProspectId" (repeatable).
    /// Fields: RelatedProspectId, ActivityEvent, ActivityNote, ActivityOwnerEmail,
    /// ActivityDateTime, mx_Custom_1..mx_Custom_50, SearchByValue (with --match-by).
    #[arg(long = "map", value_name = "HEADER=FIELD")]
    pub map: Vec<String>,

    /// Give a field the same value on every row, e.g. --set ActivityEvent=201 (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,

    /// Find leads by this unique lead field instead of by id (EmailAddress, Phone, Mobile, ...):
    /// the lead column is SearchByValue or the field's own name, e.g. an EmailAddress column.
    #[arg(long, value_name = "FIELD")]
    pub match_by: Option<String>,

    /// Time zone of ActivityDateTime values without an offset (IANA name, e.g. Asia/Kolkata);
    /// they are converted to UTC. Default: the values are UTC.
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,

    /// Format of ActivityDateTime, e.g. "dd/MM/yyyy HH:mm", "MM/dd/yyyy"; yyyy-MM-dd HH:mm:ss
    /// and ISO 8601 with an offset are always read too.
    #[arg(long, value_name = "FORMAT")]
    pub date_format: Option<String>,

    /// The worksheet of an .xlsx/.xls/.ods input, by name or position from 1 (default: the first).
    #[arg(long, value_name = "NAME|INDEX")]
    pub sheet: Option<String>,

    /// How to read a non-spreadsheet input, whatever its name says: csv, or jsonl (one JSON
    /// object per line). Default: by extension (.jsonl/.ndjson are JSON Lines), CSV otherwise.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<crate::input::sources::InputFormat>,
}

/// Flags for unattended runs: what the scheduler and people read afterwards, and when not to
/// send at all.
#[derive(Debug, Args, Clone, Default)]
pub struct NightlyArgs {
    /// Write a machine-readable summary (JSON, "version": 1) here at the end of the run, also
    /// when it is stopped or aborted; fields are listed in the README.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// Send nothing (exit 2) if more than this percentage of the rows is invalid, e.g. 5 or
    /// 0.5 [env: LSQ_MAX_INVALID; config: [nightly] max_invalid].
    #[arg(long, value_name = "PERCENT")]
    pub max_invalid: Option<f64>,

    /// Write a self-contained HTML page with the counts, a throughput chart and the errors
    /// grouped by message.
    #[arg(long, value_name = "FILE")]
    pub html_report: Option<PathBuf>,

    /// POST the summary JSON (with a "text" line for Slack) to this https URL when the run ends;
    /// a failure to post is logged and never changes the exit code [env: LSQ_NOTIFY_URL;
    /// config: [notify] url].
    #[arg(long, value_name = "URL")]
    pub notify_url: Option<String>,

    /// When to post: failure (exit code not 0), change (failure, or a status other than the
    /// previous run's; the default), always [config: [notify] on].
    #[arg(long, value_enum, value_name = "WHEN")]
    pub notify_on: Option<crate::config::NotifyOn>,

    /// Write the run's figures in Prometheus text format here (node_exporter textfile
    /// collector), atomically, at the end [env: LSQ_METRICS_FILE; config: [metrics] file].
    #[arg(long, value_name = "FILE.prom")]
    pub metrics_file: Option<PathBuf>,
}

/// How report cells are written; shared by the commands that write a report.
#[derive(Debug, Args, Clone, Default)]
pub struct ReportFormatArgs {
    /// Prefix cells of the CSV written (report, export, results) that a spreadsheet would run
    /// as a formula (=, +, -, @, tab, CR) with '. Give it to `retry` too: retry strips exactly
    /// that prefix from the report it reads.
    #[arg(long)]
    pub excel_safe: bool,
}

/// Flags about the run itself: its ledger and how an earlier run of the same input is treated.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// The ledger database (default: REPORT.csv.ledger beside the report).
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,

    /// Start a new run even if the ledger holds an unfinished run of the same input.
    #[arg(long, conflicts_with = "force")]
    pub fresh: bool,

    /// Resume an unfinished run although its input changed (rows created are matched by content).
    #[arg(long)]
    pub force: bool,

    /// Skip rows an earlier run in the same ledger created (Status skipped, with the earlier id).
    #[arg(long)]
    pub skip_existing: bool,

    /// Never draw a progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// A report written by `lsq-sync import` or `retry`, possibly edited to fix bad cells.
    #[arg(value_name = "REPORT.csv")]
    pub report: PathBuf,

    /// Where to write the new report (same format, every row of the old one).
    #[arg(long, short, value_name = "NEW.csv")]
    pub out: PathBuf,

    #[command(flatten)]
    pub send: SendArgs,

    #[command(flatten)]
    pub run: RunArgs,

    // Named `input_options` because `input` is the input file.
    #[command(flatten)]
    pub input_options: InputArgs,

    #[command(flatten)]
    pub nightly: NightlyArgs,

    #[command(flatten)]
    pub format: ReportFormatArgs,

    #[command(flatten)]
    pub sync: SyncArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also check this input's activity codes and the mx_Custom_<n> fields its rows use.
    #[arg(long, value_name = "INPUT.csv")]
    pub input: Option<PathBuf>,

    #[command(flatten)]
    pub input_options: InputArgs,

    #[command(flatten)]
    pub send: SendArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The ledger of the run.
    #[arg(value_name = "LEDGER")]
    pub ledger: PathBuf,

    /// The run to report (default: the latest). `--list` shows them.
    #[arg(long, value_name = "N")]
    pub run: Option<i64>,

    /// Where to write the report.
    #[arg(
        long,
        short,
        value_name = "REPORT.csv",
        required_unless_present = "list"
    )]
    pub out: Option<PathBuf>,

    /// List the ledger's runs instead.
    #[arg(long)]
    pub list: bool,

    #[command(flatten)]
    pub format: ReportFormatArgs,
}

/// Which leads, and the optional date window, of export and the delete commands.
#[derive(Debug, Args, Clone)]
pub struct LeadsArgs {
    /// A CSV file of lead ids, or ids separated by commas.
    #[arg(long, value_name = "LEADS.csv|ID,ID,...")]
    pub leads: String,

    /// Earliest activity date, inclusive: 'yyyy-MM-dd HH:mm:ss' (UTC).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,

    /// Latest activity date, inclusive: 'yyyy-MM-dd HH:mm:ss' (UTC).
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
}

/// The safety flags of destructive commands.
#[derive(Debug, Args, Clone)]
pub struct ConfirmArgs {
    /// Do it without asking (required when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,

    /// After queuing, poll Get Activities until each deletion shows (Status confirmed).
    #[arg(long)]
    pub wait: bool,

    /// How long --wait polls before leaving a deletion as queued.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration_arg)]
    pub wait_timeout: std::time::Duration,

    /// Where to write the results (one line per lead, or per delete window for undo). Default:
    /// beside the input, REPORT.undo.csv for undo, LEADS.delete-activities.csv or
    /// LEADS.delete-owner-history.csv for the delete commands (delete-activities.csv or
    /// delete-owner-history.csv here when --leads lists ids). Never one of the inputs.
    #[arg(long, short, value_name = "RESULTS.csv")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A CSV file of lead ids, or ids separated by commas. Without it, --event reads every
    /// lead's activities of that code (Get Activities by Activity Event).
    #[arg(long, value_name = "LEADS.csv|ID,ID,...")]
    pub leads: Option<String>,

    /// Earliest activity date, inclusive: 'yyyy-MM-dd HH:mm:ss' (UTC); applied to each
    /// activity's date on our side, whatever the server does.
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,

    /// Latest activity date, inclusive: 'yyyy-MM-dd HH:mm:ss' (UTC).
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,

    /// Only activities of this code (custom activities only without --leads).
    #[arg(long, value_name = "CODE")]
    pub event: Option<String>,

    /// Without --leads: only activities modified (created or changed) at or after this time,
    /// 'yyyy-MM-dd HH:mm:ss' (UTC), for incremental exports: pass the time the previous run
    /// started.
    #[arg(
        long,
        value_name = "DATE",
        requires = "event",
        conflicts_with = "leads"
    )]
    pub modified_since: Option<String>,

    /// The CSV file to write.
    #[arg(long, short, value_name = "ACTIVITIES.csv")]
    pub out: PathBuf,

    /// Also write one line per lead: LeadId, Status (exported, not_found, failed, aborted),
    /// Activities, Error (without --leads, one line for the code: ActivityEvent, Status,
    /// Activities, Error).
    #[arg(long, value_name = "STATUS.csv")]
    pub status: Option<PathBuf>,

    #[command(flatten)]
    pub send: SendArgs,

    #[command(flatten)]
    pub format: ReportFormatArgs,
}

#[derive(Debug, Args)]
pub struct DeleteActivitiesArgs {
    #[command(flatten)]
    pub leads: LeadsArgs,

    /// Activity codes to delete, e.g. 163,166 (custom activities only).
    #[arg(long, value_name = "CODE,CODE,...")]
    pub events: String,

    /// URL LeadSquared posts each deletion's final status to (https).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,

    /// In the plan, show how many activities each lead has in the window (Get Activities).
    #[arg(long)]
    pub count: bool,

    #[command(flatten)]
    pub confirm: ConfirmArgs,

    #[command(flatten)]
    pub send: SendArgs,

    #[command(flatten)]
    pub format: ReportFormatArgs,
}

#[derive(Debug, Args)]
pub struct DeleteOwnerHistoryArgs {
    #[command(flatten)]
    pub leads: LeadsArgs,

    /// URL LeadSquared posts each deletion's final status to (https).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,

    /// In the plan, show how many owner changes each lead has in the window (Get Activities).
    #[arg(long)]
    pub count: bool,

    #[command(flatten)]
    pub confirm: ConfirmArgs,

    #[command(flatten)]
    pub send: SendArgs,

    #[command(flatten)]
    pub format: ReportFormatArgs,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The import's report (REPORT.csv), or a ledger (with --run; default its latest import).
    #[arg(value_name = "REPORT.csv|LEDGER")]
    pub source: PathBuf,

    /// With a ledger: the run to undo.
    #[arg(long, value_name = "N")]
    pub run: Option<i64>,

    /// The ledger to record the deletions in (default: REPORT.csv.ledger, or LEDGER itself).
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,

    /// Delete even where the window holds activities the import did not create.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub confirm: ConfirmArgs,

    #[command(flatten)]
    pub send: SendArgs,

    #[command(flatten)]
    pub format: ReportFormatArgs,
}

/// Whether the simulator's limiter counts refused calls.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RefusedCallsArg {
    /// Only admitted calls are in the window.
    NotCounted,
    /// Every arrival is in the window, refused or not.
    Counted,
}

/// How the simulator answers a rate-limited call.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RateLimitStyleArg {
    /// HTTP 429, as documented.
    #[value(name = "429")]
    Http429,
    /// HTTP 200 with an MXAPIRateLimitExceededException body, as some accounts see.
    #[value(name = "200")]
    Http200,
}

/// How the simulator answers a bulk post holding bad rows.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RejectModeArg {
    /// Good rows are created; bad rows get ActivityCreated:false.
    Row,
    /// HTTP 500 MX error and nothing created.
    Batch,
}

/// How the simulator answers Bulk Update, whose answer the vendor does not show.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UpdateAnswerArg {
    /// {"Status":"Success",...} for the call; one bad row fails the call (HTTP 500 MX error).
    Call,
    /// A Response[] item per row (RowNumber, ProspectActivityId, ActivityUpdated).
    Row,
}

/// What the simulator's Get Activities `Offset` means.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PagingArg {
    ZeroPage,
    OnePage,
    Rows,
}

/// Whether the simulator's Get Activities of a Lead filters by FromDate/ToDate.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RetrieveDatesArg {
    /// As documented: no date filter, FromDate/ToDate ignored.
    Ignored,
    /// Leniently: only activities dated in FromDate..ToDate.
    Honoured,
}

/// Whether the simulator's Get Activities by Activity Event lists notes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ByEventNoteArg {
    /// As ActivityEvent_Note.
    Present,
    /// Left out, as in the vendor's example.
    Absent,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Loopback port to listen on (0 picks a free one); the URL is printed on stdout.
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    /// Address to listen on: a loopback address only (127.0.0.1, ::1, localhost), since the
    /// simulator's keys are well known; anything else is refused.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDRESS")]
    pub bind: String,

    /// The account's quota, or "none" for no limit.
    #[arg(long, default_value = "25/5s", value_name = "CALLS/DURATION|none")]
    pub rate: String,

    /// How rate-limited calls are answered.
    #[arg(long, value_enum, default_value = "429")]
    pub rate_limit_style: RateLimitStyleArg,

    /// Send a Retry-After header with rate-limit answers.
    #[arg(long)]
    pub retry_after: bool,

    /// Whether a refused call takes a place in the window (LeadSquared does not say).
    #[arg(long, value_enum, default_value = "not-counted")]
    pub refused_calls: RefusedCallsArg,

    /// The quota changes mid-run: AT=CALLS/DURATION (or AT=none), e.g. 10s=10/1s. Repeatable.
    #[arg(long, value_name = "AT=RATE", value_parser = parse_rate_change)]
    pub rate_change: Vec<crate::simulator::RateChange>,

    /// Another integration of the same account: steady:CALLS_PER_SECOND (or just the number),
    /// or burst:CALLS/EVERY (that many calls at once, e.g. burst:25/2500ms).
    #[arg(long, value_name = "LOAD", value_parser = parse_other_load)]
    pub other_load: Option<crate::simulator::OtherLoad>,

    /// When the other integration starts, after the simulator started.
    #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = parse_duration_arg)]
    pub other_from: std::time::Duration,

    /// When the other integration stops, after the simulator started (default: never).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub other_until: Option<std::time::Duration>,

    /// Response latency in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,

    /// Random extra or less latency, up to this many milliseconds either way.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub jitter_ms: u64,

    /// Probability (0..1) that a bulk post fails with a plain HTTP 500 and creates nothing.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fail_500: f64,

    /// Probability that a bulk post's connection is dropped before anything is created.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub drop_connection: f64,

    /// Probability that a bulk post creates its rows, then answers HTTP 500.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub commit_then_500: f64,

    /// Probability that a bulk post creates its rows, then drops the connection.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub commit_then_drop: f64,

    /// Probability that a bulk post creates its rows, then answers only after --late-by-ms
    /// (longer than the client's timeout).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub commit_then_late: f64,

    /// How long a --commit-then-late answer is held back, in milliseconds.
    #[arg(long, default_value_t = 120_000, value_name = "MS")]
    pub late_by_ms: u64,

    /// Seed of the fault dice, so a run can be repeated.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// How bad rows in a bulk post are answered.
    #[arg(long, value_enum, default_value = "row")]
    pub reject_mode: RejectModeArg,

    /// The shape of Bulk Update's answer.
    #[arg(long, value_enum, default_value = "call")]
    pub update_answer: UpdateAnswerArg,

    /// What Get Activities' Offset means.
    #[arg(long, value_enum, default_value = "zero-page")]
    pub paging: PagingArg,

    /// Whether Get Activities of a Lead filters by FromDate/ToDate, which its documentation
    /// does not mention: ignored (as documented) or honoured (a lenient server).
    #[arg(long, value_enum, default_value = "ignored")]
    pub retrieve_dates: RetrieveDatesArg,

    /// Most rows Get Activities by Activity Event serves per page, whatever PageSize asks.
    #[arg(long, value_name = "N", default_value_t = crate::simulator::DEFAULT_BY_EVENT_PAGE_CAP)]
    pub by_event_page_cap: u64,

    /// Whether Get Activities by Activity Event lists each activity's note
    /// (ActivityEvent_Note); the vendor's example shows none.
    #[arg(long, value_enum, default_value = "present")]
    pub by_event_note: ByEventNoteArg,

    /// Treat every well-formed GUID as an existing lead (for benchmarks with generated data).
    #[arg(long)]
    pub accept_any_lead: bool,

    /// Milliseconds before a queued delete takes effect.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub delete_delay_ms: u64,

    /// Host UserByAccessKey.Get names as the account's API host (default: the simulator's own
    /// URL), e.g. api-us11.leadsquared.com to try `lsq-sync check`'s wrong-host advice.
    #[arg(long, value_name = "HOST")]
    pub account_host: Option<String>,

    /// Stage an API outage of this kind: "500" (every call answered HTTP 500 without an MX
    /// body), "reset" (connections closed without an answer) or "refused" (the simulator stops
    /// listening, then listens on the same port again).
    #[arg(long, value_name = "KIND", value_parser = ["500", "reset", "refused"])]
    pub outage: Option<String>,

    /// When the outage starts, counted from the first API request, e.g. 2s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "0s")]
    pub outage_after: std::time::Duration,

    /// How long the outage lasts, e.g. 60s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "60s")]
    pub outage_for: std::time::Duration,

    /// Activities each demo lead already holds (code 201, dates over 2023-2024), so that
    /// checking what an import created has to page.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed_activities: usize,
}

fn parse_other_load(text: &str) -> Result<crate::simulator::OtherLoad, String> {
    text.parse()
}

fn parse_rate_change(text: &str) -> Result<crate::simulator::RateChange, String> {
    let (at, rate) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not AT=RATE (e.g. 10s=10/1s)"))?;
    let rate = match rate.trim() {
        "none" | "unlimited" => None,
        quota => Some(quota.parse::<RateQuota>().map_err(|e| e.to_string())?),
    };
    Ok(crate::simulator::RateChange {
        at: parse_duration_arg(at)?,
        rate,
    })
}

fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::lsq::quota::parse_duration(text.trim())
        .ok_or_else(|| format!("{text:?} is not a duration (use e.g. 500ms, 10s, 2m)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_help_shows_an_example_and_exit_codes_are_listed() {
        let cli = Cli::command();
        let top = cli
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(top.contains("Examples:") && top.contains("130"), "{top}");
        for command in cli.get_subcommands() {
            let help = command
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("Example") && help.contains("lsq-sync "),
                "`lsq-sync {} --help` shows no example",
                command.get_name()
            );
        }
    }

    #[test]
    fn import_flags_parse() {
        let cli = Cli::try_parse_from([
            "lsq-sync",
            "import",
            "in.csv",
            "--out",
            "r.csv",
            "--rate",
            "25/1s",
            "--simulate",
        ])
        .unwrap();
        match cli.command {
            Command::Import(args) => {
                assert_eq!(
                    args.send.rate.map(|r| r.to_string()).as_deref(),
                    Some("25/1s")
                );
                assert!(args.simulate);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from([
                "lsq-sync", "import", "in.csv", "--out", "r.csv", "--rate", "fast"
            ])
            .is_err()
        );
    }
}
