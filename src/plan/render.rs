//! The three faces of a plan: text for a terminal, markdown for a pull-request comment,
//! and JSON for machines. All three say the same counts.

use std::fmt::Write;

use serde_json::{json, Value};

use super::{Plan, SyncOutcome, SyncPlan};
use crate::manifest::Operation;

/// Output formats of `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

pub fn render(plan: &Plan, format: Format) -> String {
    match format {
        Format::Text => text(plan),
        Format::Markdown => markdown(plan),
        Format::Json => {
            let mut text = serde_json::to_string_pretty(&to_json(plan)).expect("plans serialize");
            text.push('\n');
            text
        }
    }
}

fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Plan for project `{}`", plan.project);
    for outcome in &plan.syncs {
        out.push('\n');
        match outcome {
            SyncOutcome::Failed(failure) => {
                let _ = writeln!(out, "{} ({})", failure.name, failure.manifest);
                let _ = writeln!(out, "  error: {}", failure.error);
            }
            SyncOutcome::Planned(sync) => text_sync(&mut out, sync),
        }
    }
    out.push('\n');
    out.push_str(&summary_line(plan));
    out.push('\n');
    out
}

fn text_sync(out: &mut String, sync: &SyncPlan) {
    let initial = if sync.initial { ", first run" } else { "" };
    let _ = writeln!(out, "{} ({}{initial})", sync.name, sync.manifest);
    let (i, s) = (&sync.invoke, &sync.silent);
    let _ = writeln!(
        out,
        "  to invoke: {} added, {} changed, {} removed",
        i.added, i.changed, i.removed
    );
    let _ = writeln!(
        out,
        "  silent:    {} added, {} changed, {} removed",
        s.added, s.changed, s.removed
    );
    if sync.pending > 0 {
        let _ = writeln!(out, "  pending retries: {} of the rows to invoke", sync.pending);
    }
    for warning in &sync.warnings {
        let _ = writeln!(out, "  warning: {warning}");
    }
    for (operation, rows) in &sync.examples {
        let total = sync.invoke.get(*operation);
        let _ = writeln!(out, "  {operation} ({} of {total}):", rows.len());
        for example in rows {
            let _ = writeln!(out, "    {}  {}", example.key, example.row);
            if let Some(previous) = &example.previous {
                let _ = writeln!(
                    out,
                    "    {}  was {previous}",
                    " ".repeat(example.key.chars().count())
                );
            }
        }
    }
}

/// One line a person reads first: how much there is to do.
pub fn summary_line(plan: &Plan) -> String {
    let planned: Vec<&SyncPlan> = plan.planned().collect();
    let invoke: u64 = planned.iter().map(|s| s.invoke.total()).sum();
    let silent: u64 = planned.iter().map(|s| s.silent.total()).sum();
    let failed = plan.syncs.len() - planned.len();
    let mut line = format!(
        "{} sync{} planned: {invoke} row{} to invoke, {silent} to commit silently",
        planned.len(),
        plural(planned.len() as u64),
        plural(invoke),
    );
    if failed > 0 {
        let _ = write!(line, "; {failed} sync{} failed", plural(failed as u64));
    }
    line.push('.');
    line
}

fn plural(count: u64) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### rowcast plan for `{}`\n", plan.project);
    out.push_str("| sync | added | changed | removed | silent | pending retries | notes |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---|\n");
    for outcome in &plan.syncs {
        match outcome {
            SyncOutcome::Failed(f) => {
                let _ = writeln!(out, "| `{}` | – | – | – | – | – | **error** |", f.name);
            }
            SyncOutcome::Planned(s) => {
                let notes = match (s.initial, s.warnings.len()) {
                    (_, n) if n > 0 => format!("{n} warning{}", plural(n as u64)),
                    (true, _) => "first run".to_string(),
                    _ => String::new(),
                };
                let (i, silent) = (&s.invoke, s.silent.total());
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} | {silent} | {} | {notes} |",
                    s.name, i.added, i.changed, i.removed, s.pending
                );
            }
        }
    }
    let _ = writeln!(out, "\n{}", summary_line(plan));
    for outcome in &plan.syncs {
        match outcome {
            SyncOutcome::Failed(f) => {
                let _ = writeln!(out, "\n**`{}` failed:**\n\n```text\n{}\n```", f.name, f.error);
            }
            SyncOutcome::Planned(s) => markdown_sync(&mut out, s),
        }
    }
    out
}

fn markdown_sync(out: &mut String, sync: &SyncPlan) {
    for warning in &sync.warnings {
        let _ = writeln!(out, "\n> [!WARNING]\n> `{}`: {}", sync.name, warning.replace('\n', " "));
    }
    if sync.examples.is_empty() {
        return;
    }
    let shown: usize = sync.examples.values().map(Vec::len).sum();
    let _ = writeln!(
        out,
        "\n<details><summary><code>{}</code>: {shown} example row{}</summary>\n",
        sync.name,
        plural(shown as u64)
    );
    for (operation, rows) in &sync.examples {
        let _ =
            writeln!(out, "**{operation}** ({} of {})\n", rows.len(), sync.invoke.get(*operation));
        out.push_str("```json\n");
        for example in rows {
            let _ = writeln!(out, "{}", example.row);
            if let Some(previous) = &example.previous {
                let _ = writeln!(out, "// was {previous}");
            }
        }
        out.push_str("```\n\n");
    }
    out.push_str("</details>\n");
}

/// The JSON form of a plan: for each sync the counts of rows to invoke by operation, the
/// rows committed silently, pending retries and warnings.
pub fn to_json(plan: &Plan) -> Value {
    let syncs: Vec<Value> = plan
        .syncs
        .iter()
        .map(|outcome| match outcome {
            SyncOutcome::Failed(f) => json!({
                "name": f.name, "manifest": f.manifest, "error": f.error,
                "added": null, "changed": null, "removed": null,
                "silent": null, "pending": null, "warnings": [],
            }),
            SyncOutcome::Planned(s) => json!({
                "name": s.name,
                "manifest": s.manifest,
                "error": null,
                "added": s.invoke.added,
                "changed": s.invoke.changed,
                "removed": s.invoke.removed,
                "silent": s.silent.total(),
                "silent_by_operation": s.silent,
                "pending": s.pending,
                "initial": s.initial,
                "snapshot_version": s.snapshot_version,
                "warnings": s.warnings,
                "examples": Operation::ALL
                    .iter()
                    .filter_map(|op| s.examples.get(op).map(|rows| (op.as_str().to_string(), json!(rows))))
                    .collect::<serde_json::Map<_, _>>(),
            }),
        })
        .collect();
    json!({
        "project": plan.project,
        "state_id": plan.state_id,
        "has_changes": plan.has_changes(),
        "syncs": syncs,
    })
}
