//! The faces of the run history: text for a terminal, JSON for machines, CSV for a
//! spreadsheet. All say the same counts.

use std::fmt::Write;

use serde_json::json;

use super::query::{Invocation, KeyHistory, KeyStatus, OutcomeCounts, RejectedRow, RunSummary};
use crate::plan::Counts;

/// Output formats of `runs`, `runs show` and `rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Csv,
}

/// A run as `runs show` prints it: its syncs, and the parts asked for.
pub struct RunDetail {
    pub run_id: String,
    pub syncs: Vec<RunSummary>,
    pub invocations: Option<Vec<Invocation>>,
    pub rejected: Option<Vec<RejectedRow>>,
}

/// `2026-12-04T07:50:12.345Z` as `2026-12-04 07:50:12`.
fn short_time(iso: &str) -> String {
    iso.get(..19).unwrap_or(iso).replace('T', " ")
}

fn seconds(ms: Option<i64>) -> String {
    ms.map_or("-".to_string(), |ms| format!("{:.2}s", ms as f64 / 1000.0))
}

fn total(counts: &Counts) -> u64 {
    counts.total()
}

/// Drops the padding that empty last columns leave at the ends of lines.
fn trim_lines(text: &str) -> String {
    text.lines().map(|line| format!("{}\n", line.trim_end())).collect()
}

/// The list of runs, one line per sync of each run.
pub fn list_text(runs: &[RunSummary]) -> String {
    if runs.is_empty() {
        return "No runs recorded yet; `rowcast apply` records one per sync it runs.\n".into();
    }
    let mut out = format!(
        "{:<36}  {:<24} {:<19}  {:>8}  {:<28} {:>7} {:>12} {:>8} {:>6} {:>7}\n",
        "run",
        "sync",
        "started (UTC)",
        "duration",
        "status",
        "invoked",
        "acknowledged",
        "rejected",
        "failed",
        "pending"
    );
    for run in runs {
        let c = &run.counts;
        let _ = writeln!(
            out,
            "{:<36}  {:<24} {:<19}  {:>8}  {:<28} {:>7} {:>12} {:>8} {:>6} {:>7}",
            run.run_id,
            run.sync,
            short_time(&run.started_at),
            seconds(run.duration_ms),
            run.status,
            run.invocations,
            total(&c.acknowledged),
            total(&c.rejected),
            total(&c.failed),
            run.pending
        );
    }
    trim_lines(&out)
}

/// The list of runs as JSON: every field and every count.
pub fn list_json(runs: &[RunSummary]) -> String {
    pretty(&json!({ "runs": runs }))
}

fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("history serializes");
    text.push('\n');
    text
}

const SUMMARY_HEADER: &[&str] = &[
    "run_id",
    "sync",
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "planned",
    "invocations",
    "pending",
    "acknowledged_added",
    "acknowledged_changed",
    "acknowledged_removed",
    "rejected_added",
    "rejected_changed",
    "rejected_removed",
    "failed_added",
    "failed_changed",
    "failed_removed",
    "silent_added",
    "silent_changed",
    "silent_removed",
    "error",
    "threshold",
];

fn summary_record(run: &RunSummary) -> Vec<String> {
    let opt = |value: &Option<String>| value.clone().unwrap_or_default();
    let mut record = vec![
        run.run_id.clone(),
        run.sync.clone(),
        run.status.clone(),
        run.started_at.clone(),
        opt(&run.finished_at),
        run.duration_ms.map(|ms| ms.to_string()).unwrap_or_default(),
        run.planned.to_string(),
        run.invocations.to_string(),
        run.pending.to_string(),
    ];
    let OutcomeCounts { acknowledged, rejected, failed, silent } = &run.counts;
    for counts in [acknowledged, rejected, failed, silent] {
        record.extend([counts.added, counts.changed, counts.removed].map(|n| n.to_string()));
    }
    record.push(opt(&run.error));
    record.push(opt(&run.threshold));
    record
}

/// Writes a header and records as CSV (RFC 4180, comma separated, quoted as needed).
fn csv(header: &[&str], records: impl Iterator<Item = Vec<String>>) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(header).expect("writing to memory");
    for record in records {
        writer.write_record(&record).expect("writing to memory");
    }
    String::from_utf8(writer.into_inner().expect("writing to memory")).expect("CSV of UTF-8")
}

pub fn list_csv(runs: &[RunSummary]) -> String {
    csv(SUMMARY_HEADER, runs.iter().map(summary_record))
}

/// One run: a block per sync, then the invocations and rejected rows when asked.
pub fn show_text(detail: &RunDetail) -> String {
    let mut out = format!("Run {}\n", detail.run_id);
    for sync in &detail.syncs {
        out.push('\n');
        sync_block(&mut out, sync);
    }
    if let Some(invocations) = &detail.invocations {
        invocations_text(&mut out, invocations);
    }
    if let Some(rejected) = &detail.rejected {
        rejected_text(&mut out, rejected);
    }
    trim_lines(&out)
}

fn sync_block(out: &mut String, sync: &RunSummary) {
    let _ = writeln!(out, "{}: {}", sync.sync, sync.status);
    let _ = writeln!(
        out,
        "  started {} UTC, took {}",
        short_time(&sync.started_at),
        seconds(sync.duration_ms)
    );
    let _ = writeln!(
        out,
        "  {} rows to invoke, {} invocations, {} rows pending",
        sync.planned, sync.invocations, sync.pending
    );
    let _ = writeln!(out, "  {:<14} {:>7} {:>7} {:>7}", "", "added", "changed", "removed");
    let c = &sync.counts;
    for (name, counts) in [
        ("acknowledged", &c.acknowledged),
        ("rejected", &c.rejected),
        ("failed", &c.failed),
        ("silent", &c.silent),
    ] {
        let _ = writeln!(
            out,
            "  {:<14} {:>7} {:>7} {:>7}",
            name, counts.added, counts.changed, counts.removed
        );
    }
    if let Some(error) = &sync.error {
        let _ = writeln!(out, "  error: {error}");
    }
    if let Some(threshold) = &sync.threshold {
        let _ = writeln!(out, "  threshold passed: {threshold}");
    }
}

fn invocations_text(out: &mut String, invocations: &[Invocation]) {
    let _ = writeln!(out, "\nInvocations ({})", invocations.len());
    if invocations.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  {:<23}  {:<20} {:>5} {:>7}  {:<9} {:>5} {:>6} {:>9} {:>8}  {:<12} error",
        "started (UTC)",
        "sync",
        "batch",
        "attempt",
        "operation",
        "rows",
        "status",
        "latency",
        "bytes",
        "outcome",
    );
    for i in invocations {
        let status = i.http_status.map_or("-".to_string(), |s| s.to_string());
        let error = i.error.as_deref().or(i.error_class.as_deref()).unwrap_or("");
        let _ = writeln!(
            out,
            "  {:<23}  {:<20} {:>5} {:>7}  {:<9} {:>5} {:>6} {:>7.1}ms {:>8}  {:<12} {}",
            i.started_at.replace('T', " ").trim_end_matches('Z'),
            i.sync,
            i.batch,
            i.attempt,
            i.operation,
            i.rows,
            status,
            i.latency_ms,
            i.request_bytes,
            i.outcome,
            error
        );
    }
}

fn rejected_text(out: &mut String, rejected: &[RejectedRow]) {
    let _ = writeln!(out, "\nRejected and failed rows ({})", rejected.len());
    if rejected.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  {:<20} {:<16} {:<9} {:<9} {:>8}  reason",
        "sync", "key", "operation", "outcome", "attempts"
    );
    for row in rejected {
        let _ = writeln!(
            out,
            "  {:<20} {:<16} {:<9} {:<9} {:>8}  {}",
            row.sync,
            row.key,
            row.operation,
            row.outcome,
            row.attempts,
            row.reason.as_deref().unwrap_or("")
        );
    }
}

pub fn show_json(detail: &RunDetail) -> String {
    let mut value = json!({ "run_id": detail.run_id, "syncs": detail.syncs });
    if let Some(invocations) = &detail.invocations {
        value["invocations"] = json!(invocations);
    }
    if let Some(rejected) = &detail.rejected {
        value["rejected"] = json!(rejected);
    }
    pretty(&value)
}

/// One table as CSV: the invocations, the rejected rows, or else the syncs' counts.
pub fn show_csv(detail: &RunDetail) -> String {
    if let Some(invocations) = &detail.invocations {
        let header = [
            "sync",
            "invocation_id",
            "batch",
            "attempt",
            "operation",
            "rows",
            "started_at",
            "latency_ms",
            "request_bytes",
            "http_status",
            "outcome",
            "error_class",
            "rejected_rows",
            "error",
            "response_excerpt",
        ];
        let records = invocations.iter().map(|i| {
            vec![
                i.sync.clone(),
                i.invocation_id.clone(),
                i.batch.to_string(),
                i.attempt.to_string(),
                i.operation.clone(),
                i.rows.to_string(),
                i.started_at.clone(),
                format!("{:.3}", i.latency_ms),
                i.request_bytes.to_string(),
                i.http_status.map(|s| s.to_string()).unwrap_or_default(),
                i.outcome.clone(),
                i.error_class.clone().unwrap_or_default(),
                i.rejected_rows.to_string(),
                i.error.clone().unwrap_or_default(),
                i.response_excerpt.clone().unwrap_or_default(),
            ]
        });
        return csv(&header, records);
    }
    if let Some(rejected) = &detail.rejected {
        let header =
            ["sync", "key", "operation", "outcome", "reason", "attempts", "invocation_id", "at"];
        let records = rejected.iter().map(|r| {
            vec![
                r.sync.clone(),
                r.key.clone(),
                r.operation.clone(),
                r.outcome.clone(),
                r.reason.clone().unwrap_or_default(),
                r.attempts.to_string(),
                r.invocation_id.clone().unwrap_or_default(),
                r.at.clone(),
            ]
        });
        return csv(&header, records);
    }
    csv(SUMMARY_HEADER, detail.syncs.iter().map(summary_record))
}

/// The history of one key: where it stands, then its events, oldest first.
pub fn key_text(history: &KeyHistory) -> String {
    let mut out = format!("Key `{}` of sync `{}`: ", history.key, history.sync);
    match &history.now {
        KeyStatus::InSnapshot { row, committed_at } => {
            let _ = writeln!(
                out,
                "acknowledged, in the snapshot since {} UTC",
                short_time(committed_at)
            );
            let _ = writeln!(out, "  {row}");
        }
        KeyStatus::Pending { operation, reason, attempts } => {
            let _ = writeln!(
                out,
                "pending ({operation}) after {attempts} attempts, sent again by the next apply"
            );
            let _ = writeln!(out, "  last reason: {reason}");
        }
        KeyStatus::NotTracked => {
            out.push_str("not tracked: never acknowledged, or removed\n");
        }
    }
    if history.events.is_empty() {
        out.push_str("\nNo events recorded for this key.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<19}  {:<36}  {:<9} {:<24} {:>7}  reason",
        "time (UTC)", "run", "operation", "event", "attempt"
    );
    for event in &history.events {
        let what =
            if event.retried { format!("{}, retried", event.event) } else { event.event.clone() };
        let _ = writeln!(
            out,
            "{:<19}  {:<36}  {:<9} {:<24} {:>7}  {}",
            short_time(&event.at),
            event.run_id,
            event.operation,
            what,
            event.attempt,
            event.reason.as_deref().unwrap_or("")
        );
    }
    trim_lines(&out)
}

pub fn key_json(history: &KeyHistory) -> String {
    pretty(&json!(history))
}

pub fn key_csv(history: &KeyHistory) -> String {
    let header =
        ["at", "run_id", "operation", "event", "reason", "attempt", "retried", "invocation_id"];
    let records = history.events.iter().map(|e| {
        vec![
            e.at.clone(),
            e.run_id.clone(),
            e.operation.clone(),
            e.event.clone(),
            e.reason.clone().unwrap_or_default(),
            e.attempt.to_string(),
            e.retried.to_string(),
            e.invocation_id.clone().unwrap_or_default(),
        ]
    });
    csv(&header, records)
}
