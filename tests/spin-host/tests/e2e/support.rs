//! Test support: builds the test guest (once per run, cargo decides whether it is stale), writes
//! test manifests into scratch directories, starts hosts, and talks HTTP/1.1 over loopback with a
//! tiny blocking client and a scriptable upstream. Everything is bounded in time.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Timeout of every socket operation of the test client and upstream.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Build the guest (`cargo build --release --target wasm32-wasip2`, its own workspace and target
/// dir `target/spin-guest`) and return the component path. Cargo makes this a no-op when fresh.
pub fn guest_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("guest");
        let target_dir = repo_root().join("target/spin-guest");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let build = || {
            Command::new(&cargo)
                .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--target-dir"])
                .arg(&target_dir)
                .current_dir(&guest)
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .output()
                .expect("cargo runs")
        };
        let mut out = build();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && stderr.contains("wasm32-wasip2") && stderr.contains("not installed") {
            let added = Command::new("rustup").args(["target", "add", "wasm32-wasip2"]).status();
            assert!(added.is_ok_and(|s| s.success()), "`rustup target add wasm32-wasip2` failed");
            out = build();
        }
        assert!(out.status.success(), "building the test guest failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let wasm = target_dir.join("wasm32-wasip2/release/spin_host_test_guest.wasm");
        assert!(wasm.is_file(), "guest built but {} is missing", wasm.display());
        wasm
    })
}

/// A scratch directory under `target/spin-host-tests`, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = repo_root().join(format!("target/spin-host-tests/{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The standard test application: component `main` on `/...` with KV and variables, and
/// component `other` on `/other/...` with neither KV nor outbound access.
pub fn standard_manifest(wasm: &Path) -> String {
    format!(
        r#"spin_manifest_version = 2

[application]
name = "spin-host-e2e"

[variables]
greeting = {{ default = "hello" }}
upstream_port = {{ required = true }}
api_token = {{ default = "t0ken", secret = true }}

[[trigger.http]]
route = "/..."
component = "main"

[[trigger.http]]
route = "/other/..."
component = "other"

[component.main]
source = "{wasm}"
allowed_outbound_hosts = ["http://127.0.0.1:{{{{ upstream_port }}}}"]
key_value_stores = ["default"]

[component.main.variables]
message = "{{{{ greeting }}}}, world"
token = "{{{{ api_token }}}}"

[component.other]
source = "{wasm}"

[component.other.variables]
who = "other"
"#,
        wasm = wasm.display()
    )
}

/// Write `text` as `spin.toml` in `dir` and return its path.
pub fn write_manifest(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// Options for the standard app in `dir` with `upstream_port` set, on 127.0.0.1:0.
pub fn standard_options(dir: &Scratch, upstream_port: u16) -> spin_host::Options {
    let manifest = write_manifest(dir.path(), &standard_manifest(guest_wasm()));
    let mut options = spin_host::Options::new(manifest);
    options.variables.push(("upstream_port".into(), upstream_port.to_string()));
    options.post_response_timeout = Duration::from_secs(10);
    options
}

/// Start the standard app (see [`standard_options`]), optionally with a kv dir.
pub fn start_standard(dir: &Scratch, upstream_port: u16, kv_dir: Option<PathBuf>) -> spin_host::SpinHostHandle {
    let mut options = standard_options(dir, upstream_port);
    options.kv_dir = kv_dir;
    spin_host::spawn(options).expect("host starts")
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send one request (`Connection: close`) and read the whole response.
pub fn request(method: &str, url: &str, body: &[u8]) -> Reply {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = TcpStream::connect(authority).expect("connect to host");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(body).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

pub fn get(url: &str) -> Reply {
    request("GET", url, b"")
}

pub fn post(url: &str, body: &[u8]) -> Reply {
    request("POST", url, body)
}

fn parse_response(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("complete response head");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let body = if headers.get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Reply { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().expect("size").trim(), 16).expect("hex size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Read a streamed response incrementally; returns (time to `first` appearing, full raw text).
pub fn time_to_first(url: &str, first: &str) -> (Duration, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_at(rest.find('/').expect("path"));
    let mut stream = TcpStream::connect(authority).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let start = Instant::now();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").expect("send");
    let mut reader = BufReader::new(stream);
    let (mut text, mut first_at) = (String::new(), None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read") == 0 {
            break;
        }
        if first_at.is_none() && line.contains(first) {
            first_at = Some(start.elapsed());
        }
        text.push_str(&line);
    }
    (first_at.expect("first chunk seen"), text)
}

/// A loopback upstream: `/hello` answers `hello from upstream`; `/gated` answers `released`
/// only after [`Upstream::release`] (or after the IO timeout). Counts requests.
pub struct Upstream {
    pub port: u16,
    pub hits: Arc<AtomicUsize>,
    gate: Sender<()>,
}

impl Upstream {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let (gate, gate_rx) = channel::<()>();
        let gate_rx = Arc::new(Mutex::new(gate_rx));
        let counter = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (counter, gate_rx) = (Arc::clone(&counter), Arc::clone(&gate_rx));
                std::thread::spawn(move || serve_upstream(stream, &counter, &gate_rx));
            }
        });
        Self { port, hits, gate }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn release(&self) {
        let _ = self.gate.send(());
    }
}

fn serve_upstream(mut stream: TcpStream, hits: &AtomicUsize, gate: &Mutex<Receiver<()>>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_or(true, |n| n == 0) || line == "\r\n" {
            break;
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let body = if request_line.contains(" /gated ") {
        let _ = gate.lock().expect("gate lock").recv_timeout(IO_TIMEOUT);
        "released"
    } else {
        "hello from upstream"
    };
    let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
}

/// Poll `f` every 50 ms until it returns `Some`, for at most `limit`.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An address nothing listens on (bound then released).
pub fn unused_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr")
}
