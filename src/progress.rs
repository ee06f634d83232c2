//! The progress bar (rows done of total, rows/s, ETA) on stderr when it is a terminal, and
//! nothing otherwise, so cron mail and CI logs stay clean.
//!
//! Log lines and the bar share stderr: [`LogWriter`] hides the bar while a line is written so
//! the two never interleave.

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Whether stderr may carry colour codes: it is a terminal and `NO_COLOR` is not set to
/// anything (<https://no-color.org>).
pub fn colour_allowed() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A progress bar, or nothing when stderr is not a terminal or progress is turned off.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `total` rows are expected.
    pub(crate) fn new(total: u64, enabled: bool) -> Progress {
        if !enabled || !io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let template = if colour_allowed() {
            "{bar:40.cyan/blue} {pos}/{len} rows  {rate}  ETA {eta}  {msg}"
        } else {
            "{bar:40} {pos}/{len} rows  {rate}  ETA {eta}  {msg}"
        };
        let style = ProgressStyle::with_template(template)
            .map(|style| {
                style.with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} rows/s", state.per_sec());
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(250));
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        Progress { bar: Some(bar) }
    }

    pub(crate) fn advance(&self, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(rows);
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.bar.is_some() {
            self.finish();
        }
    }
}

/// Shows `message` next to the bar while it is drawn (e.g. "waiting for the API"); an empty
/// message clears it. Nothing happens without a bar.
pub(crate) fn set_message(message: &str) {
    let active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(bar) = active {
        bar.set_message(message.to_string());
    }
}

/// stderr for tracing, hiding the progress bar while a line is written.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match active {
            Some(bar) => bar
                .suspend(|| io::stderr().write_all(buf))
                .map(|()| buf.len()),
            None => io::stderr().write_all(buf).map(|()| buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}
