//! The keyed sync's deletions, done as `undo` does them: [`SurgicalDeleter`] is the
//! [`Deleter`] a keyed import is handed (`--delete-missing`, `--replace-changed`).
//!
//! Ids to delete enter per lead and code; the lead's activities of that code are listed (Get
//! Activities, every page, dates read on our side), [`crate::ops::undo::judge`] plans the
//! fewest windows that hold those ids and nothing the tool did not create, and each window is
//! one queued Delete Activities call through the run's `Api`. An id that shares its second with
//! a foreign activity is kept (no window can separate them); an id the listing no longer shows
//! is gone already. What leaves is one [`Deleted`] per id.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::import::deletion::{DeleteTarget, Deleted, Deleter};
use crate::lsq::activities::{ActivityQuery, FetchError, Fetcher};
use crate::lsq::calls::Api;
use crate::ops::deletes::{DeleteError, DeleteWindow, Remote};
use crate::ops::undo::{Decision, UndoGroup, judge};

/// Deletes by surgical windows; polls for a deletion to show for at most `wait`.
pub(crate) struct SurgicalDeleter {
    /// How long [`Deleter::wait_gone`] polls before giving up.
    pub wait: Duration,
}

/// Every activity of `code` on `lead`, whatever its date.
fn listing(lead: &str, code: i64) -> ActivityQuery {
    ActivityQuery {
        lead_id: lead.to_string(),
        event: Some(code),
        from: None,
        to: None,
    }
}

impl SurgicalDeleter {
    async fn delete_group(
        &self,
        api: &Api,
        lead: &str,
        code: i64,
        targets: &[DeleteTarget],
    ) -> Vec<Deleted> {
        let remote = Remote {
            fetcher: Fetcher::new(api.clone()),
        };
        let found = match remote.fetcher.fetch_all(&listing(lead, code)).await {
            Ok(found) => found,
            Err(e) => {
                let answer = match e {
                    FetchError::Unauthorized(m) | FetchError::Fatal(m) => Deleted::Abort(m),
                    other => Deleted::Failed(format!("cannot list the lead's activities: {other}")),
                };
                return vec![answer; targets.len()];
            }
        };
        let group = UndoGroup {
            lead: lead.to_string(),
            code,
            ids: targets
                .iter()
                .map(|t| t.id.clone())
                .collect::<BTreeSet<_>>(),
            window: DeleteWindow::default(),
            undated: Vec::new(),
        };
        let mut answers: Vec<Option<Deleted>> = vec![None; targets.len()];
        let mut answer = |id: &str, a: Deleted| {
            for (slot, t) in answers.iter_mut().zip(targets) {
                if t.id.eq_ignore_ascii_case(id) && slot.is_none() {
                    *slot = Some(a.clone());
                }
            }
        };
        match judge(&group, &found, false) {
            Decision::NothingLeft => {}
            Decision::Refuse { reason } => {
                for t in targets {
                    answer(&t.id, Deleted::Failed(reason.clone()));
                }
            }
            Decision::Delete { cuts, left, .. } => {
                for cut in cuts {
                    let result = remote
                        .delete_activities(lead, &[code], &cut.window, None)
                        .await;
                    let a = match result {
                        Ok(message) => Deleted::Queued(message),
                        Err(DeleteError::Abort(m)) => Deleted::Abort(m),
                        Err(DeleteError::Failed(m)) => Deleted::Failed(m),
                    };
                    for id in &cut.ids {
                        answer(id, a.clone());
                    }
                }
                for l in left {
                    for id in &l.ours {
                        answer(
                            id,
                            Deleted::Kept(format!(
                                "it shares its second ({}) with activity {} that lsq-sync did not \
                                 create, and the API deletes by time window, so it stays",
                                l.at,
                                l.foreign.join(", ")
                            )),
                        );
                    }
                }
            }
        }
        // Not in the listing: deleted already.
        answers
            .into_iter()
            .map(|a| a.unwrap_or(Deleted::Gone))
            .collect()
    }

    async fn wait_group(
        &self,
        api: &Api,
        lead: &str,
        code: i64,
        ids: &[String],
    ) -> Result<bool, String> {
        let fetcher = Fetcher::new(api.clone());
        let deadline = Instant::now() + self.wait;
        let mut pause = Duration::from_millis(100);
        loop {
            let found = fetcher
                .fetch_all(&listing(lead, code))
                .await
                .map_err(|e| e.to_string())?;
            let left = found
                .iter()
                .any(|a| ids.iter().any(|id| id.eq_ignore_ascii_case(&a.id)));
            if !left {
                return Ok(true);
            }
            if Instant::now() + pause > deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

impl Deleter for SurgicalDeleter {
    fn delete<'a>(
        &'a self,
        api: &'a Api,
        lead: &'a str,
        code: i64,
        targets: &'a [DeleteTarget],
    ) -> BoxFuture<'a, Vec<Deleted>> {
        Box::pin(self.delete_group(api, lead, code, targets))
    }

    fn wait_gone<'a>(
        &'a self,
        api: &'a Api,
        lead: &'a str,
        code: i64,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(self.wait_group(api, lead, code, ids))
    }
}
