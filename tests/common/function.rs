//! Real functions for tests: the Python recorder served by Google's Functions Framework,
//! and a Rust HTTP server on 127.0.0.1:0 for tests that must control timing.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The recorder function (`tests/functions/recorder/main.py`) under the Functions
/// Framework, in its own process group so that dropping it stops every process it made.
pub struct Recorder {
    pub url: String,
    child: Child,
    pub record_file: PathBuf,
    pub control_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// The port a process listens on, found from its sockets in /proc: servers here bind
/// port 0, so two of them never race for a port picked in advance.
pub fn listening_port(pid: u32, limit: Duration) -> Option<u16> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(port) = listening_port_now(pid) {
            return Some(port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn listening_port_now(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            Some(text.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    // Node.js listens on the IPv6 wildcard, which /proc lists under tcp6.
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|table| {
        let table = std::fs::read_to_string(table).ok()?;
        table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN; the inode is field 9.
            let listening = fields.get(3) == Some(&"0A");
            let ours = fields.get(9).is_some_and(|inode| inodes.iter().any(|i| i == inode));
            if !(listening && ours) {
                return None;
            }
            u16::from_str_radix(fields[1].rsplit(':').next()?, 16).ok()
        })
    })
}

/// Waits until something accepts connections on `port`, for at most `limit`.
pub fn wait_for_port(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listened on port {port} within {limit:?}");
}

impl Recorder {
    pub fn start() -> Recorder {
        Self::serve(&super::repo().join("tests/functions/recorder"), "receive")
    }

    /// Serves `target` from `source/main.py` with the Python Functions Framework.
    pub fn serve(source: &Path, target: &str) -> Recorder {
        let mut command = Command::new("functions-framework");
        command.args(["--target", target, "--source"]).arg(source.join("main.py"));
        command.args(["--host", "127.0.0.1"]);
        Self::spawn(command, "functions-framework is installed by scripts/test.sh (pip)")
    }

    /// Serves `target` from the Node.js package in `source` with the Node.js Functions
    /// Framework installed in its `node_modules`.
    pub fn serve_node(source: &Path, target: &str) -> Recorder {
        let mut command = Command::new(source.join("node_modules/.bin/functions-framework"));
        command.current_dir(source).arg(format!("--target={target}"));
        Self::spawn(
            command,
            "the Node.js Functions Framework is installed by scripts/test.sh (npm ci)",
        )
    }

    /// Starts `command` on port 0 (it must take `--port`) and waits until it listens.
    fn spawn(mut command: Command, missing: &str) -> Recorder {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let record_file = dir.path().join("record.jsonl");
        let control_file = dir.path().join("control");
        std::fs::write(&record_file, "").unwrap();
        let mut child = command
            .arg("--port=0")
            .env("RECORD_FILE", &record_file)
            .env("CONTROL_FILE", &control_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect(missing);
        let Some(port) = listening_port(child.id(), Duration::from_secs(30)) else {
            // SAFETY: kill(2) with a negative pid signals the process group we created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("the Functions Framework did not listen within 30 s");
        };
        wait_for_port(port, Duration::from_secs(10));
        Recorder {
            url: format!("http://127.0.0.1:{port}/"),
            child,
            record_file,
            control_file,
            _dir: dir,
        }
    }

    /// Every invocation received so far.
    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record_file)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Sets the control file: `fail`, `deny`, `slow N`, or "" for normal answers.
    pub fn control(&self, text: &str) {
        std::fs::write(&self.control_file, text).unwrap();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: kill(2) with a negative pid signals the process group we created.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// What the Rust test server saw.
#[derive(Default)]
pub struct Seen {
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// When each request arrived, since the server started, and its body.
    pub requests: Mutex<Vec<(Duration, Value)>>,
}

/// A Rust HTTP server on 127.0.0.1:0 that answers every POST with an empty 200 after
/// `delay`, counting requests in flight. It runs on its own thread and runtime and stops
/// when dropped.
pub struct TestServer {
    pub url: String,
    pub seen: Arc<Seen>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(delay: Duration) -> TestServer {
        let seen = Arc::new(Seen::default());
        let (ready_sender, ready) = std::sync::mpsc::channel::<SocketAddr>();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = seen.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let started = Instant::now();
                let handler = move |body: axum::body::Bytes| {
                    let state = state.clone();
                    async move {
                        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
                        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        state.requests.lock().unwrap().push((started.elapsed(), value));
                        tokio::time::sleep(delay).await;
                        state.in_flight.fetch_sub(1, Ordering::SeqCst);
                        ""
                    }
                };
                let app = axum::Router::new().route("/", axum::routing::post(handler));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_sender.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let address = ready.recv().unwrap();
        TestServer {
            url: format!("http://{address}/"),
            seen,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn request_times(&self) -> Vec<Duration> {
        self.seen.requests.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.seen.requests.lock().unwrap().iter().map(|(_, b)| b.clone()).collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
