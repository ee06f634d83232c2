//! `lsq-sync simulate`: runs the LeadSquared simulator standalone on a loopback port until
//! Ctrl-C or SIGTERM. The first line on stdout is its URL, for scripts to read.

use std::io::Write;
use std::time::Duration;

use crate::cli::{
    ByEventNoteArg, PagingArg, RateLimitStyleArg, RefusedCallsArg, RejectModeArg, RetrieveDatesArg,
    SimulateArgs, UpdateAnswerArg,
};
use crate::exit::ExitStatus;
use crate::lsq::quota::RateQuota;
use crate::simulator::{
    ByEventNote, FaultConfig, OtherClient, OutageKind, OutageSchedule, PagingMode, RateLimitStyle,
    RefusedCalls, RejectMode, RetrieveDates, RunningSimulator, SimConfig, UpdateAnswer,
};

use super::CommandError;

/// Builds the simulator's configuration from the flags; keys come from `LSQ_ACCESS_KEY` and
/// `LSQ_SECRET_KEY` when set, so a client run with the same environment authenticates.
pub(crate) fn sim_config(
    args: &SimulateArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SimConfig, CommandError> {
    let rate = match args.rate.trim() {
        "none" | "unlimited" => None,
        text => Some(
            text.parse::<RateQuota>()
                .map_err(|e| CommandError::Usage(e.to_string()))?,
        ),
    };
    for (name, p) in [
        ("--fail-500", args.fail_500),
        ("--drop-connection", args.drop_connection),
        ("--commit-then-500", args.commit_then_500),
        ("--commit-then-drop", args.commit_then_drop),
        ("--commit-then-late", args.commit_then_late),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return Err(CommandError::Usage(format!(
                "{name}: {p} is not a probability between 0 and 1"
            )));
        }
    }
    let defaults = SimConfig::default();
    Ok(SimConfig {
        access_key: env("LSQ_ACCESS_KEY")
            .filter(|k| !k.is_empty())
            .unwrap_or(defaults.access_key),
        secret_key: env("LSQ_SECRET_KEY")
            .filter(|k| !k.is_empty())
            .unwrap_or(defaults.secret_key),
        rate,
        rate_limit_style: match args.rate_limit_style {
            RateLimitStyleArg::Http429 => RateLimitStyle::Http429,
            RateLimitStyleArg::Http200 => RateLimitStyle::Http200,
        },
        send_retry_after: args.retry_after,
        refused_calls: match args.refused_calls {
            RefusedCallsArg::NotCounted => RefusedCalls::NotCounted,
            RefusedCallsArg::Counted => RefusedCalls::Counted,
        },
        rate_changes: args.rate_change.clone(),
        other_client: args.other_load.map(|load| OtherClient {
            load,
            from: args.other_from,
            until: args.other_until,
        }),
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        faults: FaultConfig {
            plain_500: args.fail_500,
            drop_connection: args.drop_connection,
            commit_then_500: args.commit_then_500,
            commit_then_drop: args.commit_then_drop,
            commit_then_late: args.commit_then_late,
            late_by: Duration::from_millis(args.late_by_ms),
            seed: args.seed,
        },
        reject_mode: match args.reject_mode {
            RejectModeArg::Row => RejectMode::PerRow,
            RejectModeArg::Batch => RejectMode::WholeBatch,
        },
        update_answer: match args.update_answer {
            UpdateAnswerArg::Call => UpdateAnswer::WholeCall,
            UpdateAnswerArg::Row => UpdateAnswer::PerRow,
        },
        paging: match args.paging {
            PagingArg::ZeroPage => PagingMode::ZeroBasedPage,
            PagingArg::OnePage => PagingMode::OneBasedPage,
            PagingArg::Rows => PagingMode::RowOffset,
        },
        retrieve_dates: match args.retrieve_dates {
            RetrieveDatesArg::Ignored => RetrieveDates::Ignored,
            RetrieveDatesArg::Honoured => RetrieveDates::Honoured,
        },
        by_event_page_cap: args.by_event_page_cap.max(1),
        by_event_note: match args.by_event_note {
            ByEventNoteArg::Present => ByEventNote::Present,
            ByEventNoteArg::Absent => ByEventNote::Absent,
        },
        delete_delay: Duration::from_millis(args.delete_delay_ms),
        accept_any_lead: args.accept_any_lead,
        account_host: args.account_host.clone().unwrap_or_default(),
        outage: args.outage.as_deref().map(|kind| OutageSchedule {
            kind: match kind {
                "reset" => OutageKind::Reset,
                "refused" => OutageKind::Refused,
                _ => OutageKind::Plain500,
            },
            after: args.outage_after,
            lasts: args.outage_for,
        }),
        seeded_per_lead: args.seed_activities,
        ..defaults
    })
}

pub(crate) async fn run(args: SimulateArgs) -> Result<ExitStatus, CommandError> {
    let env = |name: &str| std::env::var(name).ok();
    let config = sim_config(&args, &env)?;
    let ip = crate::simulator::loopback_address(&args.bind)?;
    let sim = RunningSimulator::start_at(ip, args.port, config).await?;
    let mut stdout = std::io::stdout();
    // A closed stdout (the reader went away) is not a reason to stop serving.
    let _ = writeln!(stdout, "{}", sim.base_url()).and_then(|()| stdout.flush());
    tracing::info!(url = %sim.base_url(), "simulator listening; Ctrl-C or SIGTERM stops it");
    wait_for_stop_signal().await;
    sim.shutdown().await;
    Ok(ExitStatus::Success)
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
