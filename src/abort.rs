//! A run-wide "stop now" signal: set once with a reason (bad credentials, wrong host), seen by
//! every stage, and awaitable so that sleeping tasks wake up instead of finishing their backoff.

use std::sync::Arc;

use tokio::sync::watch;

/// Cheap to clone; every clone sees the same signal.
#[derive(Debug, Clone)]
pub(crate) struct Abort {
    state: Arc<watch::Sender<Option<Arc<str>>>>,
}

impl Default for Abort {
    fn default() -> Self {
        Abort::new()
    }
}

impl Abort {
    pub(crate) fn new() -> Abort {
        Abort {
            state: Arc::new(watch::Sender::new(None)),
        }
    }

    /// Sets the signal; the first reason is kept.
    pub(crate) fn trigger(&self, reason: impl Into<String>) {
        let reason: Arc<str> = Arc::from(reason.into());
        self.state.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// The reason, once set.
    pub(crate) fn reason(&self) -> Option<Arc<str>> {
        self.state.borrow().clone()
    }

    /// Resolves when the signal is set.
    pub(crate) async fn triggered(&self) {
        let mut rx = self.state.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(Option::is_some).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_reason_wins_and_waiters_wake() {
        let abort = Abort::new();
        let waiter = {
            let abort = abort.clone();
            tokio::spawn(async move { abort.triggered().await })
        };
        assert!(abort.reason().is_none());
        abort.trigger("HTTP 401");
        abort.trigger("later");
        waiter.await.unwrap();
        assert_eq!(abort.reason().as_deref(), Some("HTTP 401"));
    }
}

/// A stop asked for by a signal (Ctrl-C, SIGTERM): no new batch is started, calls in flight
/// finish, and the run ends with the signal's exit code.
#[derive(Debug, Clone, Default)]
pub(crate) struct Interrupt {
    flag: Abort,
    status: Arc<std::sync::OnceLock<crate::exit::ExitStatus>>,
}

impl Interrupt {
    /// Records the first signal and raises the flag.
    pub(crate) fn trigger(&self, status: crate::exit::ExitStatus, reason: &str) {
        let _ = self.status.set(status);
        self.flag.trigger(reason);
    }

    /// The exit status the signal asks for, once one arrived.
    pub(crate) fn status(&self) -> Option<crate::exit::ExitStatus> {
        self.status.get().copied()
    }

    /// The flag the stages watch.
    pub(crate) fn flag(&self) -> &Abort {
        &self.flag
    }
}
