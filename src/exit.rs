//! The process exit codes, in one place, as documented in the README.

/// How a run ended, as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every row was created.
    Success,
    /// The run finished, but some rows failed or were invalid (see the report).
    RowsNotCreated,
    /// Usage, configuration or input-file error before anything was sent.
    Usage,
    /// Aborted (e.g. bad credentials): nothing more could succeed; the report holds what was done.
    Aborted,
    /// Stopped by Ctrl-C (SIGINT): 128 + 2.
    Interrupted,
    /// Stopped by SIGTERM: 128 + 15.
    Terminated,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::RowsNotCreated => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Aborted => 3,
            ExitStatus::Interrupted => 130,
            ExitStatus::Terminated => 143,
        }
    }
}
