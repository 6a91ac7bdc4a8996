//! The HTML report of a run: one self-contained file (inline CSS, inline SVG charts and
//! a few lines of inline script to search rejected rows by primary key), so it opens
//! anywhere with no network: counts, a latency histogram, invocations and errors over
//! time, the rejected rows with their reasons, and the invocations.

use std::fmt::Write;

use super::query::{Invocation, RejectedRow, RunSummary};
use super::render::RunDetail;

/// How many invocations the report lists one by one; the charts use them all.
const LISTED_INVOCATIONS: usize = 500;

/// Upper bounds (milliseconds) of the latency histogram's bins; the last is open.
const LATENCY_BINS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0];

/// How many bars the timeline has.
const TIMELINE_BARS: usize = 40;

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2430;
  background:#f6f7f9}
main{max-width:1120px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 10px}
.muted{color:#5d6778}.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
.cards{display:grid;grid-template-columns:repeat(6,1fr);gap:10px;margin-top:18px}
.card{background:#fff;border:1px solid #dfe3ea;border-radius:8px;padding:10px 14px}
.card b{display:block;font-size:24px}
.card span{color:#5d6778;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.ok b{color:#1a7f4b}.bad b{color:#c62f2f}.warn b{color:#b26a00}
.panel{background:#fff;border:1px solid #dfe3ea;border-radius:8px;padding:14px 16px}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:14px;margin-top:22px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceff3;vertical-align:top}
th{font-size:12px;color:#5d6778;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.status{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.s-succeeded{background:#dff3e8;color:#1a7f4b}.s-failed{background:#fbe2e2;color:#c62f2f}
.s-completed_with_rejected_rows{background:#fdf0d8;color:#9a5b00}
.s-interrupted,.s-running{background:#e6e9ef;color:#3d4656}
.o-acknowledged{color:#1a7f4b}.o-partial{color:#b26a00}.o-failed,.o-denied{color:#c62f2f}
input[type=search]{padding:6px 10px;border:1px solid #c8ced8;border-radius:6px;width:260px;
  margin-bottom:8px}
svg text{font-size:11px;fill:#5d6778}
";

const SCRIPT: &str = "
(function () {
  var input = document.getElementById('key-search');
  if (input) {
    var rows = Array.prototype.slice.call(document.querySelectorAll('#rejected tbody tr'));
    var shown = document.getElementById('key-shown');
    input.addEventListener('input', function () {
      var query = input.value.trim();
      var count = 0;
      rows.forEach(function (row) {
        var match = query === '' || row.getAttribute('data-key').indexOf(query) !== -1;
        row.hidden = !match;
        if (match) { count += 1; }
      });
      shown.textContent = count + ' of ' + rows.length;
    });
  }
  document.body.setAttribute('data-rendered', 'ok');
})();
";

/// Escapes text for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole report as one HTML document. `detail` must carry its invocations and
/// rejected rows.
pub fn report(detail: &RunDetail) -> String {
    let invocations = detail.invocations.as_deref().unwrap_or_default();
    let rejected = detail.rejected.as_deref().unwrap_or_default();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>rowcast run {id}</title><style>{STYLE}</style></head><body><main>\
         <h1>rowcast run</h1><div class=\"muted mono\">{id}</div>",
        id = escape(&detail.run_id)
    );
    cards(&mut out, &detail.syncs, invocations.len());
    syncs_table(&mut out, &detail.syncs);
    out.push_str("<div class=\"charts\">");
    out.push_str("<section class=\"panel\"><h2 style=\"margin-top:0\">Latency</h2>");
    out.push_str(&latency_histogram(invocations));
    out.push_str(
        "</section><section class=\"panel\">\
         <h2 style=\"margin-top:0\">Invocations and errors over time</h2>",
    );
    out.push_str(&timeline(invocations));
    out.push_str("</section></div>");
    rejected_table(&mut out, rejected);
    invocations_table(&mut out, invocations);
    let _ = writeln!(out, "</main><script>{SCRIPT}</script></body></html>");
    out
}

fn cards(out: &mut String, syncs: &[RunSummary], invocations: usize) {
    let sum = |f: &dyn Fn(&RunSummary) -> u64| syncs.iter().map(f).sum::<u64>();
    let acknowledged = sum(&|s| s.counts.acknowledged.total());
    let rejected = sum(&|s| s.counts.rejected.total());
    let failed = sum(&|s| s.counts.failed.total());
    let pending = sum(&|s| s.pending);
    let silent = sum(&|s| s.counts.silent.total());
    out.push_str("<div class=\"cards\">");
    for (class, value, label) in [
        ("", invocations as u64, "invocations"),
        ("ok", acknowledged, "acknowledged"),
        ("bad", rejected, "rejected"),
        ("bad", failed, "failed"),
        ("warn", pending, "pending"),
        ("", silent, "silent"),
    ] {
        let _ = write!(out, "<div class=\"card {class}\"><b>{value}</b><span>{label}</span></div>");
    }
    out.push_str("</div>");
}

fn syncs_table(out: &mut String, syncs: &[RunSummary]) {
    out.push_str(
        "<h2>Syncs</h2><table><thead><tr><th>sync</th><th>status</th><th>started (UTC)</th>\
         <th class=\"n\">duration</th><th class=\"n\">planned</th><th class=\"n\">invocations</th>\
         <th class=\"n\">acknowledged</th><th class=\"n\">rejected</th><th class=\"n\">failed</th>\
         <th class=\"n\">pending</th><th class=\"n\">silent</th></tr></thead><tbody>",
    );
    for s in syncs {
        let duration = s.duration_ms.map_or("-".into(), |ms| format!("{:.2}s", ms as f64 / 1e3));
        let c = &s.counts;
        let _ = write!(
            out,
            "<tr><td>{sync}</td><td><span class=\"status s-{status}\">{status_text}</span></td>\
             <td class=\"mono\">{started}</td><td class=\"n\">{duration}</td>\
             <td class=\"n\">{planned}</td>\
             <td class=\"n\">{inv}</td><td class=\"n\">{ack}</td><td class=\"n\">{rej}</td>\
             <td class=\"n\">{failed}</td><td class=\"n\">{pending}</td>\
             <td class=\"n\">{silent}</td></tr>",
            sync = escape(&s.sync),
            status = escape(&s.status),
            status_text = escape(&s.status.replace('_', " ")),
            started = escape(&s.started_at.replace('T', " ")),
            planned = s.planned,
            inv = s.invocations,
            ack = c.acknowledged.total(),
            rej = c.rejected.total(),
            failed = c.failed.total(),
            pending = s.pending,
            silent = c.silent.total(),
        );
        for note in [&s.error, &s.threshold].into_iter().flatten() {
            let _ = write!(
                out,
                "<tr><td></td><td colspan=\"10\" class=\"o-failed\">{}</td></tr>",
                escape(note)
            );
        }
    }
    out.push_str("</tbody></table>");
}

/// Bars of equal width under a shared scale, with a label under each.
fn bars(series: &[(String, Vec<(u64, &str)>)]) -> String {
    let (width, height, bottom, left) = (500.0, 200.0, 34.0, 34.0);
    let max = series.iter().map(|(_, stack)| stack.iter().map(|(n, _)| n).sum::<u64>()).max();
    let max = max.unwrap_or(0).max(1) as f64;
    let slot = (width - left) / series.len().max(1) as f64;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {width} {height}\" width=\"100%\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let plot = height - bottom;
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{plot}\" x2=\"{width}\" y2=\"{plot}\" stroke=\"#c8ced8\"/>\
         <text x=\"{x}\" y=\"12\" text-anchor=\"end\">{max}</text>\
         <text x=\"{x}\" y=\"{plot}\" text-anchor=\"end\">0</text>",
        x = left - 4.0
    );
    let label_every = (series.len() / 8).max(1);
    for (index, (label, stack)) in series.iter().enumerate() {
        let x = left + index as f64 * slot + slot * 0.1;
        let mut y = plot;
        for (count, color) in stack {
            let h = *count as f64 / max * (plot - 8.0);
            if h > 0.0 {
                y -= h;
                let _ = write!(
                    svg,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" \
                     fill=\"{color}\"><title>{label}: {count}</title></rect>",
                    w = slot * 0.8,
                    label = escape(label)
                );
            }
        }
        if index % label_every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{cx:.1}\" y=\"{ty}\" text-anchor=\"middle\">{}</text>",
                escape(label),
                cx = x + slot * 0.4,
                ty = plot + 14.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn latency_histogram(invocations: &[Invocation]) -> String {
    let mut counts = vec![0u64; LATENCY_BINS.len() + 1];
    for i in invocations {
        let bin = LATENCY_BINS.iter().position(|bound| i.latency_ms < *bound);
        counts[bin.unwrap_or(LATENCY_BINS.len())] += 1;
    }
    // Each bar is labelled with its upper bound, short enough to fit under it.
    let label = |ms: f64| {
        if ms >= 1000.0 {
            format!("{}k", ms / 1000.0)
        } else {
            format!("{ms}")
        }
    };
    let series: Vec<(String, Vec<(u64, &str)>)> = counts
        .iter()
        .enumerate()
        .map(|(index, count)| {
            let name = LATENCY_BINS.get(index).map_or("more".to_string(), |b| label(*b));
            (name, vec![(*count, "#3f6fd1")])
        })
        .collect();
    let mut sorted: Vec<f64> = invocations.iter().map(|i| i.latency_ms).collect();
    sorted.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0)
    };
    format!(
        "{}<div class=\"muted\">Invocations by latency, in milliseconds (each bar up to its \
         label). p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms</div>",
        bars(&series),
        quantile(0.5),
        quantile(0.9),
        quantile(0.99),
        sorted.last().copied().unwrap_or(0.0)
    )
}

fn timeline(invocations: &[Invocation]) -> String {
    let Some(first) = invocations.iter().map(|i| i.started_ms).min() else {
        return "<p class=\"muted\">No invocations.</p>".into();
    };
    let last = invocations.iter().map(|i| i.started_ms).max().unwrap_or(first);
    let span = (last - first + 1) as f64;
    let mut ok = vec![0u64; TIMELINE_BARS];
    let mut bad = vec![0u64; TIMELINE_BARS];
    for i in invocations {
        let bar = (((i.started_ms - first) as f64 / span) * TIMELINE_BARS as f64) as usize;
        let bar = bar.min(TIMELINE_BARS - 1);
        if i.outcome == "acknowledged" {
            ok[bar] += 1;
        } else {
            bad[bar] += 1;
        }
    }
    let series: Vec<(String, Vec<(u64, &str)>)> = (0..TIMELINE_BARS)
        .map(|bar| {
            let at = span * bar as f64 / TIMELINE_BARS as f64 / 1000.0;
            (format!("+{at:.1}s"), vec![(ok[bar], "#2f9e63"), (bad[bar], "#d64545")])
        })
        .collect();
    format!(
        "{}<div class=\"muted\"><span style=\"color:#2f9e63\">■</span> acknowledged \
         <span style=\"color:#d64545\">■</span> rejected rows, failed or denied</div>",
        bars(&series)
    )
}

fn rejected_table(out: &mut String, rejected: &[RejectedRow]) {
    let _ = write!(out, "<h2>Rejected and failed rows ({})</h2>", rejected.len());
    if rejected.is_empty() {
        out.push_str("<p class=\"muted\">Every row sent was acknowledged.</p>");
        return;
    }
    let _ = write!(
        out,
        "<input type=\"search\" id=\"key-search\" placeholder=\"Search by primary key\" \
         aria-label=\"Search by primary key\"> \
         <span class=\"muted\" id=\"key-shown\">{n} of {n}</span>\
         <table id=\"rejected\"><thead><tr><th>sync</th><th>primary key</th><th>operation</th>\
         <th>outcome</th><th class=\"n\">attempts</th><th>reason</th></tr></thead><tbody>",
        n = rejected.len()
    );
    for row in rejected {
        let _ = write!(
            out,
            "<tr data-key=\"{key}\"><td>{sync}</td><td class=\"mono\">{key}</td><td>{op}</td>\
             <td class=\"o-failed\">{outcome}</td><td class=\"n\">{attempts}</td>\
             <td>{reason}</td></tr>",
            key = escape(&row.key),
            sync = escape(&row.sync),
            op = escape(&row.operation),
            outcome = escape(&row.outcome),
            attempts = row.attempts,
            reason = escape(row.reason.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody></table>");
}

fn invocations_table(out: &mut String, invocations: &[Invocation]) {
    let listed = invocations.len().min(LISTED_INVOCATIONS);
    let _ = write!(out, "<h2>Invocations ({})</h2>", invocations.len());
    if listed < invocations.len() {
        let _ = write!(
            out,
            "<p class=\"muted\">The first {listed}; `rowcast runs show RUN_ID --invocations \
             --format csv` lists them all.</p>"
        );
    }
    out.push_str(
        "<table><thead><tr><th>started (UTC)</th><th>sync</th><th class=\"n\">batch</th>\
         <th class=\"n\">attempt</th><th>operation</th><th class=\"n\">rows</th>\
         <th class=\"n\">status</th><th class=\"n\">latency</th><th class=\"n\">bytes</th>\
         <th>outcome</th><th>error</th></tr></thead><tbody>",
    );
    for i in &invocations[..listed] {
        let status = i.http_status.map_or("-".into(), |s| s.to_string());
        let error = i
            .error
            .as_deref()
            .or(i.response_excerpt.as_deref().filter(|_| i.outcome != "acknowledged"));
        let _ = write!(
            out,
            "<tr><td class=\"mono\">{started}</td><td>{sync}</td><td class=\"n\">{batch}</td>\
             <td class=\"n\">{attempt}</td><td>{op}</td><td class=\"n\">{rows}</td>\
             <td class=\"n\">{status}</td><td class=\"n\">{latency:.1} ms</td>\
             <td class=\"n\">{bytes}</td>\
             <td class=\"o-{outcome}\">{outcome}</td><td>{error}</td></tr>",
            started = escape(&i.started_at.replace('T', " ")),
            sync = escape(&i.sync),
            batch = i.batch,
            attempt = i.attempt,
            op = escape(&i.operation),
            rows = i.rows,
            latency = i.latency_ms,
            bytes = i.request_bytes,
            outcome = escape(&i.outcome),
            error = escape(error.unwrap_or("")),
        );
    }
    out.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_rows_and_responses_cannot_open_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }
}
