//! Confirmation of commands that discard state: asked on a terminal, given by `--yes`
//! in scripts, and refused with a sentence that says so when there is no terminal.

use std::io::{BufRead, IsTerminal, Write};

/// Asks `question` on the terminal, unless `yes`. Fails when the answer is not yes, or
/// when there is no terminal to ask on.
pub fn confirm(question: &str, yes: bool, command: &str, sync: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "`rowcast {command}` asks for confirmation, and there is no terminal to ask on; \
             pass `--yes` to {command} sync `{sync}` from a script"
        );
    }
    let mut stderr = std::io::stderr();
    write!(stderr, "{question}\nType `yes` to go on: ")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "yes" | "y") {
        Ok(())
    } else {
        anyhow::bail!("`rowcast {command}` of sync `{sync}` cancelled; nothing was changed")
    }
}
