//! Asking a person before something is deleted: `--yes` says yes for them; with no terminal on
//! standard input nobody can answer, so the answer is no.
//!
//! A question goes to stderr, the answer comes from stdin; what comes back is `Ok(())` to go
//! ahead, or why not.

use std::io::{IsTerminal, Write};

/// Asks whether to `what` (a phrase: "delete 3 activities"); `yes` answers for the person.
/// `Err` says why not, in words fit for the run's status line.
pub(crate) async fn ask(yes: bool, what: &str) -> Result<(), String> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "refusing to {what} without --yes: stdin is not a terminal, so nobody can confirm; \
             nothing was deleted"
        ));
    }
    eprint!("Proceed to {what}? Type 'yes' to continue: ");
    let _ = std::io::stderr().flush();
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| format!("cannot read the answer: {e}"))?
    .map_err(|e| format!("cannot read the answer: {e}"))?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err("not confirmed; nothing was deleted".into())
    }
}
