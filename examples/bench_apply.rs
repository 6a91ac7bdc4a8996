//! Benchmark of `rowcast apply` delivering to a local no-op endpoint, side by side in one
//! run with `wrk` driving the same endpoint with the same payload and connection count.
//!
//! The endpoint is this example re-invoked with `--serve`: a separate process on
//! 127.0.0.1:0 that answers every request with an empty 200 and keeps the first body it
//! receives, so wrk replays a real rowcast payload. Each rowcast run starts from an empty
//! state (every row is `added`); rowcast and wrk runs alternate, and medians are printed.
//!
//! - per row (`batching.size: 1`): rowcast invocations/s against wrk requests/s;
//! - batch 1000: rows/s committed and peak RSS of the rowcast process, for each model size.
//!
//! The delivery rate is taken from the apply summary (invocations, acknowledged rows and
//! the sync's duration, which covers delivery and its commits but not the plan before it
//! nor the fold of the journal after it); the rows committed are counted in the state
//! afterwards, and the wall time of the whole process is printed beside it.
//!
//! Usage: `cargo run --release --example bench_apply -- [--runs N] [--concurrency C]
//! [--per-row ROWS] [--batch ROWS,ROWS] [--wrk-seconds S]` (defaults: 3 runs, 32, 700000,
//! 1000000,10000000, 10). A count of 0 skips that scenario. Needs `wrk` on the PATH.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use support::{median, run_measured, sibling_binary};

const SYNC: &str = "bench";

/// Rows per invocation in the batch scenario.
const BATCH_SIZE: u64 = 1000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve(args.get(1).map(PathBuf::from));
    }
    let options = Options::parse(&args)?;
    let rowcast = sibling_binary("rowcast")?;
    check_wrk()?;

    if options.per_row > 0 {
        per_row(&rowcast, &options)?;
    }
    let mut summaries = Vec::new();
    for &rows in &options.batch {
        summaries.push(batch(&rowcast, &options, rows)?);
    }
    if !summaries.is_empty() {
        print_batch_summary(&summaries, options.concurrency);
    }
    Ok(())
}

/// Command-line options of the benchmark.
struct Options {
    runs: usize,
    concurrency: u32,
    per_row: u64,
    batch: Vec<u64>,
    wrk_seconds: u64,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            runs: 3,
            concurrency: 32,
            per_row: 700_000,
            batch: vec![1_000_000, 10_000_000],
            wrk_seconds: 10,
        };
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let value = iter.next().with_context(|| format!("`{flag}` needs a value"))?;
            match flag.as_str() {
                "--runs" => options.runs = value.parse()?,
                "--concurrency" => options.concurrency = value.parse()?,
                "--per-row" => options.per_row = count(value)?,
                "--batch" => {
                    options.batch = value.split(',').map(count).collect::<Result<_, _>>()?;
                    options.batch.retain(|&rows| rows > 0);
                }
                "--wrk-seconds" => options.wrk_seconds = value.parse()?,
                other => bail!("unknown option `{other}`; see the header of bench_apply.rs"),
            }
        }
        anyhow::ensure!(options.runs > 0 && options.concurrency > 0, "runs and C must be > 0");
        Ok(options)
    }
}

fn count(text: &str) -> anyhow::Result<u64> {
    text.replace('_', "").parse().with_context(|| format!("`{text}` is not a row count"))
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

/// Per-row delivery: rowcast invocations/s against wrk requests/s, alternating.
fn per_row(rowcast: &Path, options: &Options) -> anyhow::Result<()> {
    let c = options.concurrency;
    let project = BenchProject::create(options.per_row, 1, c)?;
    let server = Server::start(&project.capture())?;
    println!("\n### Per-row delivery: {} rows, concurrency {c}\n", options.per_row);
    println!(
        "| run | rowcast invocations | delivery | rowcast inv/s | rowcast CPU per invocation \
         | rowcast peak RSS | wrk req/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");

    let (mut ours, mut theirs, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    let mut script = None;
    for run in 1..=options.runs {
        let applied = project.apply(rowcast, &server.url())?;
        if applied.delivery < Duration::from_secs(10) {
            eprintln!("warning: this per-row run lasted under 10 s; raise --per-row");
        }
        if script.is_none() {
            script = Some(project.wrk_script()?);
        }
        let (lua, _) = script.as_ref().expect("made above");
        let wrk = run_wrk(lua, &server.url(), c, options.wrk_seconds)?;
        let rate = applied.invoked as f64 / applied.delivery.as_secs_f64();
        let cpu_micros = applied.cpu.as_secs_f64() * 1e6 / applied.invoked.max(1) as f64;
        println!(
            "| {run} | {} | {:.2} s | {rate:.0} | {cpu_micros:.1} µs | {} MiB | {:.0} |",
            applied.invoked,
            applied.delivery.as_secs_f64(),
            applied.peak_rss_kib / 1024,
            wrk.requests_per_second,
        );
        ours.push(rate);
        theirs.push(wrk.requests_per_second);
        rss.push(applied.peak_rss_kib);
    }

    let (ours, theirs) = (median(&mut ours), median(&mut theirs));
    let payload = script.map_or(0, |s| s.1);
    println!(
        "\n| rows | C | payload | rowcast inv/s (median) | wrk req/s (median) | ratio | peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {c} | {payload} B | {ours:.0} | {theirs:.0} | {:.0}% | {} MiB |",
        options.per_row,
        100.0 * ours / theirs,
        median(&mut rss) / 1024,
    );
    Ok(())
}

/// The medians of one model size in the batch scenario.
struct BatchSummary {
    rows: u64,
    committed: u64,
    delivery_rate: f64,
    wall_rate: f64,
    wrk_rate: f64,
    peak_rss_kib: u64,
}

/// Batch-1000 delivery of `rows` rows: rows/s committed and peak RSS, beside wrk.
fn batch(rowcast: &Path, options: &Options, rows: u64) -> anyhow::Result<BatchSummary> {
    let c = options.concurrency;
    let project = BenchProject::create(rows, BATCH_SIZE, c)?;
    let server = Server::start(&project.capture())?;
    println!("\n### Batch-{BATCH_SIZE} delivery: {rows} rows, concurrency {c}\n");
    println!(
        "| run | committed | plan | delivery | after | wall | rows/s (delivery) \
         | rows/s (wall) | peak RSS | wrk rows/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");

    let mut samples = Vec::new();
    let mut script = None;
    for run in 1..=options.runs {
        let applied = project.apply(rowcast, &server.url())?;
        if script.is_none() {
            script = Some(project.wrk_script()?);
        }
        let (lua, _) = script.as_ref().expect("made above");
        let wrk = run_wrk(lua, &server.url(), c, options.wrk_seconds)?;
        let delivery_rate = applied.acknowledged as f64 / applied.delivery.as_secs_f64();
        let wall_rate = applied.committed as f64 / applied.wall.as_secs_f64();
        let wrk_rate = wrk.requests_per_second * BATCH_SIZE as f64;
        let after = applied.wall.saturating_sub(applied.plan + applied.delivery);
        println!(
            "| {run} | {} | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {delivery_rate:.0} \
             | {wall_rate:.0} | {} MiB | {wrk_rate:.0} |",
            applied.committed,
            applied.plan.as_secs_f64(),
            applied.delivery.as_secs_f64(),
            after.as_secs_f64(),
            applied.wall.as_secs_f64(),
            applied.peak_rss_kib / 1024,
        );
        if applied.committed != rows {
            eprintln!("warning: {} of {rows} rows committed in run {run}", applied.committed);
        }
        samples.push((applied, delivery_rate, wall_rate, wrk_rate));
    }

    let pick = |f: &dyn Fn(&Sample) -> f64| median(&mut samples.iter().map(f).collect::<Vec<_>>());
    Ok(BatchSummary {
        rows,
        committed: pick(&|s| s.0.committed as f64) as u64,
        delivery_rate: pick(&|s| s.1),
        wall_rate: pick(&|s| s.2),
        wrk_rate: pick(&|s| s.3),
        peak_rss_kib: median(&mut samples.iter().map(|s| s.0.peak_rss_kib).collect::<Vec<_>>()),
    })
}

/// One batch run: the apply, then its delivery, wall and wrk rates in rows/s.
type Sample = (Applied, f64, f64, f64);

fn print_batch_summary(summaries: &[BatchSummary], c: u32) {
    println!("\n### Batch-{BATCH_SIZE} delivery, medians (concurrency {c})\n");
    println!(
        "| model rows | committed | rows/s (delivery) | rows/s (wall, with plan) \
         | wrk rows/s | delivery / wrk | peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for s in summaries {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0}% | {} MiB |",
            s.rows,
            s.committed,
            s.delivery_rate,
            s.wall_rate,
            s.wrk_rate,
            100.0 * s.delivery_rate / s.wrk_rate,
            s.peak_rss_kib / 1024,
        );
    }
}

// ---------------------------------------------------------------------------------------
// The project under test
// ---------------------------------------------------------------------------------------

/// A scratch project: one sync over a warehouse table of `rows` rows.
struct BenchProject {
    dir: tempfile::TempDir,
}

/// What one `rowcast apply` did and cost.
struct Applied {
    /// Until the plan's summary line appeared on stdout (process start, open, plan).
    plan: Duration,
    /// The sync's duration from the apply summary: delivery and its commits.
    delivery: Duration,
    wall: Duration,
    /// Processor time of the whole process, user and system.
    cpu: Duration,
    peak_rss_kib: u64,
    invoked: u64,
    acknowledged: u64,
    /// Rows in the snapshot after the apply.
    committed: u64,
}

impl BenchProject {
    fn create(rows: u64, batch: u64, concurrency: u32) -> anyhow::Result<BenchProject> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("syncs"))?;
        std::fs::write(
            root.join("rowcast.yaml"),
            "name: bench\nwarehouse:\n  type: duckdb\n  path: warehouse.duckdb\n",
        )?;
        std::fs::write(
            root.join("syncs/bench.yaml"),
            format!(
                "name: {SYNC}\nmodel:\n  sql: SELECT * FROM t\n  primary_key: id\n\
                 destination: {{type: http, url: http://127.0.0.1:9/}}\n\
                 triggers: [added, changed, removed]\ninitial_sync: backfill\n\
                 batching: {{size: {batch}}}\nlimits: {{concurrency: {concurrency}}}\n"
            ),
        )?;
        let started = Instant::now();
        let warehouse = duckdb::Connection::open(root.join("warehouse.duckdb"))?;
        warehouse.execute_batch(&format!(
            "CREATE TABLE t AS SELECT i AS id, md5(i::VARCHAR) AS v FROM range({rows}) t(i);"
        ))?;
        eprintln!("warehouse of {rows} rows built in {:.1} s", started.elapsed().as_secs_f64());
        Ok(BenchProject { dir })
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Where the endpoint keeps the first body it receives.
    fn capture(&self) -> PathBuf {
        self.root().join("payload.json")
    }

    /// `rowcast apply` from an empty state, measured.
    fn apply(&self, rowcast: &Path, url: &str) -> anyhow::Result<Applied> {
        let state_dir = self.root().join(".rowcast");
        if state_dir.exists() {
            std::fs::remove_dir_all(&state_dir)?;
        }
        let state = state_dir.join("state.duckdb");
        let log = self.root().join("apply.log");
        let mut command = Command::new(rowcast);
        command
            .current_dir(self.root())
            .args(["apply", "--quiet", "--destination-url", url, "--state"])
            .arg(&state)
            .stderr(std::fs::File::create(&log)?);
        let run = run_measured(&mut command)?;
        if !matches!(run.exit_code, Some(0) | Some(3)) {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("rowcast apply exited with {:?}:\n{}\n{log}", run.exit_code, run.text());
        }

        let plan = run.lines.first().map(|l| l.0).context("rowcast apply printed nothing")?;
        let summary = run
            .lines
            .iter()
            .map(|l| l.1.split_whitespace().collect::<Vec<_>>())
            .find(|words| words.len() == 9 && words[0] == SYNC)
            .with_context(|| format!("no summary line for `{SYNC}` in:\n{}", run.text()))?;
        let seconds: f64 = summary[7].trim_end_matches('s').parse()?;
        Ok(Applied {
            plan,
            delivery: Duration::from_secs_f64(seconds),
            wall: run.wall,
            cpu: run.cpu,
            peak_rss_kib: run.peak_rss_kib,
            invoked: summary[1].parse()?,
            acknowledged: summary[2].parse()?,
            committed: committed_rows(&state)?,
        })
    }

    /// A wrk script replaying the first body the endpoint received, and its size.
    fn wrk_script(&self) -> anyhow::Result<(PathBuf, usize)> {
        let body = std::fs::read(self.capture()).context("the endpoint kept no payload")?;
        let path = self.root().join("post.lua");
        std::fs::write(
            &path,
            format!(
                "wrk.method = \"POST\"\n\
                 wrk.headers[\"Content-Type\"] = \"application/json\"\n\
                 wrk.body = {}\n",
                lua_string(&body)
            ),
        )?;
        Ok((path, body.len()))
    }
}

/// Rows of the sync in the snapshot of a state file.
fn committed_rows(state: &Path) -> anyhow::Result<u64> {
    let conn = duckdb::Connection::open(state)?;
    let rows: i64 =
        conn.query_row("SELECT count(*) FROM snapshot WHERE sync = ?", [SYNC], |r| r.get(0))?;
    Ok(rows as u64)
}

/// A Lua string literal of arbitrary bytes.
fn lua_string(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &byte in bytes {
        match byte {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(byte as char);
            }
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\{byte:03}")),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------
// wrk
// ---------------------------------------------------------------------------------------

struct WrkRun {
    requests_per_second: f64,
}

fn check_wrk() -> anyhow::Result<()> {
    match Command::new("wrk").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("`wrk` is not on the PATH; run ./scripts/bench.sh, or apt-get install -y wrk")
        }
        Err(error) => Err(error.into()),
    }
}

/// wrk with 2 threads and `connections` connections against `url` for `seconds`.
fn run_wrk(script: &Path, url: &str, connections: u32, seconds: u64) -> anyhow::Result<WrkRun> {
    let mut command = Command::new("wrk");
    command
        .args(["-t", "2", "-c", &connections.to_string(), "-d", &format!("{seconds}s")])
        .args(["--timeout", "10s", "-s"])
        .arg(script)
        .arg(url)
        .stderr(Stdio::inherit());
    let run = run_measured(&mut command)?;
    let text = run.text();
    anyhow::ensure!(run.exit_code == Some(0), "wrk exited with {:?}:\n{text}", run.exit_code);
    for problem in ["Non-2xx", "Socket errors"] {
        if let Some(line) = text.lines().find(|l| l.contains(problem)) {
            eprintln!("warning: wrk reported `{}`", line.trim());
        }
    }
    let rate = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .with_context(|| format!("no `Requests/sec:` in wrk's output:\n{text}"))?;
    Ok(WrkRun { requests_per_second: rate.trim().parse()? })
}

// ---------------------------------------------------------------------------------------
// The no-op endpoint
// ---------------------------------------------------------------------------------------

/// The endpoint process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts this example with `--serve` and waits for the port it bound.
    fn start(capture: &Path) -> anyhow::Result<Server> {
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .arg("--serve")
            .arg(capture)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut server = Server { child, port: 0 };
        let stdout = server.child.stdout.take().context("no stdout")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        // The server prints its port once it listens; give it ten seconds.
        let text = receiver.recv_timeout(Duration::from_secs(10)).context("no port")?;
        server.port = text.trim().parse().with_context(|| format!("no port in `{text}`"))?;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static CAPTURE: OnceLock<PathBuf> = OnceLock::new();
static CAPTURED: AtomicBool = AtomicBool::new(false);

/// The `--serve` mode: a no-op HTTP endpoint on 127.0.0.1:0. It prints its port on
/// stdout, keeps the first body in `capture`, and exits when its stdin closes (the
/// benchmark ended, however it ended).
fn serve(capture: Option<PathBuf>) -> anyhow::Result<()> {
    if let Some(path) = capture {
        CAPTURE.get_or_init(|| path);
    }
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        // The port on stdout tells the benchmark the server is ready.
        println!("{}", listener.local_addr()?.port());
        let app =
            axum::Router::new().fallback(no_op).layer(axum::extract::DefaultBodyLimit::disable());
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// Reads the body and answers an empty 200.
async fn no_op(body: axum::body::Bytes) -> axum::http::StatusCode {
    if !CAPTURED.load(Ordering::Relaxed) && !CAPTURED.swap(true, Ordering::Relaxed) {
        if let Some(path) = CAPTURE.get() {
            let _ = std::fs::write(path, &body);
        }
    }
    axum::http::StatusCode::OK
}
