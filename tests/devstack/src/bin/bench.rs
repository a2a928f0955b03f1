//! `bench`: latency of a cache hit against a floor measured in the same run, on loopback, at
//! concurrency 1, plus the size of the release wasm. Writes tests/devstack/BENCH_RESULTS.md.
//!
//! `cargo run -p devstack --release --bin bench [-- --requests N]`
//!
//! - tier-1 hit: `POST /v1/chat/completions` answered from edge KV, on a stack without Upstash,
//!   interleaved with the floor `GET /healthz` on the same worker (exactly one KV read there).
//! - tier-2 hit: the same request on a second stack with Upstash and `KV_BINDING=NOPE` (tier 1
//!   fails fast, every hit comes from Redis), interleaved with the same floor on the first stack
//!   and with the second stack's `/healthz` (a failing KV lookup plus one Redis PING).
//!
//! Wrangler's local proxy dominates the absolute numbers, so only a hit's difference to the floor
//! means anything. Must not: talk to anything but loopback, run unbounded (every loop has a count
//! and the whole run a time budget), or touch build/ (wasm-opt runs on a copy).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use devstack::cli::parse_flags;
use devstack::stack::{Stack, StackOptions, KEY_A};
use devstack::worker::repo_root;
use devstack::HttpRequest;
use serde_json::{json, Value};

const USAGE: &str = "usage: bench [--requests N] [--warmup N]   (N samples per series; defaults 2000 and 200)";
/// The measuring loops stop early (and say so) when a phase exceeds its budget.
const PHASE_BUDGET: Duration = Duration::from_secs(40);
const SEED_POLL_LIMIT: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const WASM_OPT_TIMEOUT: Duration = Duration::from_secs(90);
/// The wasm-opt runs whose output sizes are reported (`-Oz` drops the `name` section too).
const WASM_OPT_RUNS: &[&str] = &["-Oz"];

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let flags = parse_flags(std::env::args().skip(1), &["requests", "warmup"], USAGE)?;
    let requests: usize =
        flags.get("requests").map_or(Ok(2000), |n| n.parse()).context("--requests must be a number")?;
    let warmup: usize = flags.get("warmup").map_or(Ok(200), |n| n.parse()).context("--warmup must be a number")?;
    if requests == 0 || requests > 100_000 || warmup > 10_000 {
        bail!("--requests must be 1..=100000 and --warmup at most 10000\n{USAGE}");
    }
    let root = repo_root();
    let run = format!("bench-{}", std::process::id());
    let load_before = load_average();

    eprintln!("starting stack A (edge KV only)...");
    let no_upstash = vec![
        ("UPSTASH_REDIS_REST_URL".to_owned(), String::new()),
        ("UPSTASH_REDIS_REST_TOKEN".to_owned(), String::new()),
    ];
    let a = Stack::start(StackOptions { vars: no_upstash, ..StackOptions::default() }).context("stack A")?;
    let health = HttpRequest::get(&format!("{}/healthz", a.url())).send()?.json()?;
    if health["tiers"]["redis"]["state"] != "disabled" || health["tiers"]["edge_kv"]["state"] != "ok" {
        bail!("stack A's /healthz is not a bare KV read (Upstash must be disabled, KV ok): {health}");
    }
    let body_1 = chat_body(&format!("{run}: tier-1 hit, what is the capital of France?"));
    seed(&a, &body_1, "edge-kv")?;

    let mut client_a = KeepAlive::new(a.worker.port());
    let mut floor_a = KeepAlive::new(a.worker.port());
    let hit_1 = Probe::hit(&body_1, "edge-kv");
    let floor = Probe::floor("ok", "disabled");
    eprintln!("phase 1: tier-1 hit vs floor, {warmup} warm-up + {requests} samples each...");
    let phase_1 = measure(&mut [(&mut client_a, &hit_1)], &mut floor_a, &floor, warmup, requests)?;

    eprintln!("starting stack B (Upstash, KV_BINDING=NOPE)...");
    let b = Stack::start(StackOptions { vars: vec![("KV_BINDING".into(), "NOPE".into())], ..StackOptions::default() })
        .context("stack B")?;
    let body_2 = chat_body(&format!("{run}: tier-2 hit, what is the capital of Italy?"));
    seed(&b, &body_2, "redis")?;
    let mut client_b = KeepAlive::new(b.worker.port());
    let mut client_b_health = KeepAlive::new(b.worker.port());
    let hit_2 = Probe::hit(&body_2, "redis");
    let redis_floor = Probe::floor("down", "ok");
    eprintln!("phase 2: tier-2 hit vs floor (and stack B's /healthz), {warmup} warm-up + {requests} samples each...");
    let phase_2 = measure(
        &mut [(&mut client_b, &hit_2), (&mut client_b_health, &redis_floor)],
        &mut floor_a,
        &floor,
        warmup,
        requests,
    )?;
    let measured_in = started.elapsed();
    let load_after = load_average();
    let reconnects = [&client_a, &floor_a, &client_b, &client_b_health].iter().map(|c| c.reconnects).sum();
    drop(b);
    drop(a);

    eprintln!("measuring the wasm...");
    let wasm = wasm_sizes(&root.join("build/index_bg.wasm"), &root)?;

    let series = vec![
        Series::new("tier-1 hit (edge KV)", &phase_1.samples[0]),
        Series::new("floor, phase 1 (GET /healthz: one KV read)", &phase_1.samples[1]),
        Series::new("tier-2 hit (Redis via Upstash REST)", &phase_2.samples[0]),
        Series::new("floor, phase 2 (same as above)", &phase_2.samples[2]),
        Series::new("B: GET /healthz (failing KV + Redis PING)", &phase_2.samples[1]),
    ];
    let diffs = vec![
        ("tier-1 hit - floor (phase 1)", &series[0], &series[1]),
        ("tier-2 hit - floor (phase 2)", &series[2], &series[3]),
        ("tier-2 hit - B /healthz (one Redis round trip)", &series[2], &series[4]),
    ];
    let env = Environment::collect(&root);
    let report = Report {
        series: &series,
        diffs: &diffs,
        env: &env,
        wasm: &wasm,
        requests,
        warmup,
        truncated: phase_1.truncated || phase_2.truncated,
        reconnects,
        measured_in,
        load: [load_before, load_after],
    };
    print!("{}", report.terminal());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCH_RESULTS.md");
    std::fs::write(&path, report.markdown()).with_context(|| format!("write {}", path.display()))?;
    eprintln!("wrote {} in {:.1} s", path.display(), started.elapsed().as_secs_f64());
    Ok(())
}

fn chat_body(message: &str) -> Vec<u8> {
    json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": message }] }).to_string().into_bytes()
}

/// One MISS, then polls with `only-if-cached` (never reaching the provider) until it is a HIT
/// from `tier`.
fn seed(stack: &Stack, body: &[u8], tier: &str) -> anyhow::Result<()> {
    let url = format!("{}/v1/chat/completions", stack.url());
    let request = HttpRequest::post(&url)
        .header("authorization", &format!("Bearer {KEY_A}"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    let first = request.send()?;
    if first.status != 200 || first.header("x-cache") != Some("MISS") {
        bail!("seeding: expected a 200 MISS, got {} {:?}: {}", first.status, first.header("x-cache"), first.text());
    }
    let started = Instant::now();
    while started.elapsed() < SEED_POLL_LIMIT {
        let poll = request.clone().header("cache-control", "only-if-cached").send()?;
        match poll.status {
            200 if poll.header("x-cache") == Some("HIT") && poll.header("x-cache-tier") == Some(tier) => return Ok(()),
            200 => bail!(
                "seeding: expected a HIT from {tier}, got {:?} from {:?}",
                poll.header("x-cache"),
                poll.header("x-cache-tier")
            ),
            504 => std::thread::sleep(Duration::from_millis(100)),
            other => bail!("seeding: only-if-cached answered {other}: {}", poll.text()),
        }
    }
    bail!("seeding: no HIT from {tier} within {SEED_POLL_LIMIT:?}; worker log:\n{}", stack.worker.log())
}

/// A request of the benchmark and what its answer must be.
struct Probe {
    method: &'static str,
    path: &'static str,
    body: Vec<u8>,
    check: Check,
}

enum Check {
    Hit { tier: &'static str },
    Health { kv: &'static str, redis: &'static str },
}

impl Probe {
    fn hit(body: &[u8], tier: &'static str) -> Probe {
        Probe { method: "POST", path: "/v1/chat/completions", body: body.to_vec(), check: Check::Hit { tier } }
    }

    fn floor(kv: &'static str, redis: &'static str) -> Probe {
        Probe { method: "GET", path: "/healthz", body: Vec::new(), check: Check::Health { kv, redis } }
    }

    fn verify(&self, response: &Response) -> anyhow::Result<()> {
        if response.status != 200 {
            bail!("{} {} answered {}: {}", self.method, self.path, response.status, response.text());
        }
        match &self.check {
            Check::Hit { tier } => {
                let (cache, got_tier) = (response.header("x-cache"), response.header("x-cache-tier"));
                if cache != Some("HIT") || got_tier != Some(tier) {
                    bail!("expected x-cache HIT and x-cache-tier {tier}, got {cache:?} and {got_tier:?}");
                }
            }
            Check::Health { kv, redis } => {
                let body: Value = serde_json::from_slice(&response.body).context("/healthz body")?;
                if body["tiers"]["edge_kv"]["state"] != *kv || body["tiers"]["redis"]["state"] != *redis {
                    bail!("expected /healthz with edge_kv {kv} and redis {redis}, got {body}");
                }
            }
        }
        Ok(())
    }
}

struct Phase {
    /// One per probe, in the order given, then the floor's.
    samples: Vec<Samples>,
    truncated: bool,
}

#[derive(Clone, Default)]
struct Samples {
    /// Client wall time per request, in milliseconds.
    wall_ms: Vec<f64>,
    /// Each `Server-Timing` metric (`kv`, `redis`, `total`) per request: the worker's own view.
    server_timing: BTreeMap<String, Vec<f64>>,
}

/// Interleaves every probe with the floor, rotating the order each round so that neither always
/// goes first; every answer is checked (outside the timed part).
fn measure(
    probes: &mut [(&mut KeepAlive, &Probe)],
    floor_client: &mut KeepAlive,
    floor: &Probe,
    warmup: usize,
    requests: usize,
) -> anyhow::Result<Phase> {
    let n = probes.len();
    let mut phase = Phase { samples: vec![Samples::default(); n + 1], truncated: false };
    let started = Instant::now();
    for round in 0..warmup + requests {
        if round >= warmup && started.elapsed() > PHASE_BUDGET {
            eprintln!("  time budget of {PHASE_BUDGET:?} reached after {} samples per series", round - warmup);
            phase.truncated = true;
            break;
        }
        let keep = round >= warmup;
        for slot in 0..=n {
            let which = (slot + round) % (n + 1);
            let (client, probe): (&mut KeepAlive, &Probe) = if which == n {
                (&mut *floor_client, floor)
            } else {
                let (client, probe) = &mut probes[which];
                (&mut **client, &**probe)
            };
            let (ms, response) = client.timed(probe)?;
            probe.verify(&response).with_context(|| format!("round {round}"))?;
            if !keep {
                continue;
            }
            let samples = &mut phase.samples[which];
            samples.wall_ms.push(ms);
            for (name, dur) in server_timing(&response) {
                samples.server_timing.entry(name).or_default().push(dur);
            }
        }
    }
    Ok(phase)
}

/// `Server-Timing: kv;dur=0, total;dur=1` -> [("kv", 0.0), ("total", 1.0)].
fn server_timing(response: &Response) -> Vec<(String, f64)> {
    let Some(header) = response.header("server-timing") else { return Vec::new() };
    header
        .split(',')
        .filter_map(|metric| {
            let (name, params) = metric.trim().split_once(';')?;
            let dur = params.split(';').find_map(|p| p.trim().strip_prefix("dur=")?.parse().ok())?;
            Some((name.to_owned(), dur))
        })
        .collect()
}

/// A response read off a keep-alive connection.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 keep-alive connection to 127.0.0.1:port, reopened when the server closes it.
struct KeepAlive {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
    reconnects: u64,
}

impl KeepAlive {
    fn new(port: u16) -> KeepAlive {
        KeepAlive { port, conn: None, reconnects: 0 }
    }

    /// Sends `probe` and reads the whole answer; returns the wall time in milliseconds. A reused
    /// connection the server closed in the meantime is reopened once, and only the attempt that
    /// succeeded is timed.
    fn timed(&mut self, probe: &Probe) -> anyhow::Result<(f64, Response)> {
        let reused = self.conn.is_some();
        let start = Instant::now();
        match self.exchange(probe) {
            Ok(response) => Ok((start.elapsed().as_secs_f64() * 1000.0, response)),
            Err(e) if reused => {
                self.conn = None;
                self.reconnects += 1;
                let start = Instant::now();
                let response = self.exchange(probe).with_context(|| format!("after a reconnect (first error: {e})"))?;
                Ok((start.elapsed().as_secs_f64() * 1000.0, response))
            }
            Err(e) => Err(e),
        }
    }

    fn exchange(&mut self, probe: &Probe) -> anyhow::Result<Response> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))?;
            self.conn = Some(BufReader::with_capacity(64 * 1024, stream));
        }
        let conn = self.conn.as_mut().expect("connected above");
        let mut request = format!("{} {} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n", probe.method, probe.path, self.port);
        if probe.method == "POST" {
            write!(
                request,
                "authorization: Bearer {KEY_A}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                probe.body.len()
            )?;
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(&probe.body);
        conn.get_mut().write_all(&bytes)?;
        let response = read_response(conn)?;
        let close = response.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if close {
            self.conn = None;
        }
        Ok(response)
    }
}

fn read_response(conn: &mut BufReader<TcpStream>) -> anyhow::Result<Response> {
    let status_line = read_line(conn)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(conn)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| anyhow!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = Response { status, headers, body: Vec::new() };
    let chunked = response.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let size_line = read_line(conn)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| anyhow!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                while !read_line(conn)?.is_empty() {}
                break;
            }
            let at = response.body.len();
            response.body.resize(at + size, 0);
            conn.read_exact(&mut response.body[at..])?;
            let mut crlf = [0u8; 2];
            conn.read_exact(&mut crlf)?;
        }
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().map_err(|_| anyhow!("bad content-length {length:?}"))?;
        response.body.resize(length, 0);
        conn.read_exact(&mut response.body)?;
    } else if status != 204 && status != 304 {
        bail!("a response without content-length or chunked encoding cannot be kept alive");
    }
    Ok(response)
}

fn read_line(conn: &mut BufReader<TcpStream>) -> anyhow::Result<String> {
    let mut line = Vec::new();
    let n = conn.take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 || !line.ends_with(b"\n") {
        bail!("connection closed");
    }
    Ok(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned())
}

/// Summary of one series, in milliseconds.
struct Series {
    name: &'static str,
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
    /// Mean of each `Server-Timing` metric (whole milliseconds each, so only the mean says much).
    server_timing: BTreeMap<String, f64>,
}

impl Series {
    fn new(name: &'static str, samples: &Samples) -> Series {
        let server_timing = samples
            .server_timing
            .iter()
            .map(|(metric, values)| (metric.clone(), values.iter().sum::<f64>() / values.len().max(1) as f64))
            .collect();
        let mut sorted = samples.wall_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = if n == 0 { f64::NAN } else { sorted.iter().sum::<f64>() / n as f64 };
        Series {
            name,
            n,
            p50: percentile(&sorted, 50.0),
            p90: percentile(&sorted, 90.0),
            p99: percentile(&sorted, 99.0),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            mean,
            server_timing,
        }
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Raw and gzip sizes of a wasm-opt output, or why wasm-opt could not make it.
type OptSizes = Result<(u64, u64), String>;

struct WasmSizes {
    path: PathBuf,
    raw: u64,
    gzip: u64,
    /// When build/ was last written (the bench never builds; see `mtime`).
    built: String,
    /// Code and data section sizes and every custom section, e.g. ("custom name", 8529).
    sections: Vec<(String, u64)>,
    /// (flags, raw, gzip) per wasm-opt run, or why it could not run.
    optimized: Vec<(&'static str, OptSizes)>,
}

/// The sizes of the code, data and custom sections of a wasm module (empty if it is malformed).
fn wasm_sections(bytes: &[u8]) -> Vec<(String, u64)> {
    fn leb(bytes: &[u8], at: &mut usize) -> Option<u64> {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }
    let mut sections = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let Some(size) = leb(bytes, &mut at) else { return Vec::new() };
        let start = at;
        let label = match id {
            10 => Some("code".to_owned()),
            11 => Some("data".to_owned()),
            0 => leb(bytes, &mut at).and_then(|n| {
                let name = bytes.get(at..at + n as usize)?;
                Some(format!("custom `{}`", String::from_utf8_lossy(name)))
            }),
            _ => None,
        };
        if let Some(label) = label {
            sections.push((label, size));
        }
        at = start + size as usize;
    }
    sections
}

fn wasm_sizes(wasm: &Path, root: &Path) -> anyhow::Result<WasmSizes> {
    let bytes = std::fs::read(wasm).with_context(|| format!("read {} (build the worker first)", wasm.display()))?;
    let gzip = gzip_len(wasm)?;
    let dir = root.join("target/devstack").join(format!("bench-wasm-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join("index_bg.wasm");
    std::fs::write(&copy, &bytes)?;
    // More variants may be added here (e.g. "-O3"); each costs ~13 s on this machine.
    let optimized = WASM_OPT_RUNS
        .iter()
        .map(|&flags| {
            let out = dir.join("opt.wasm");
            let _ = std::fs::remove_file(&out);
            let result = wasm_opt(root, &copy, &out, flags).and_then(|()| {
                let raw = std::fs::metadata(&out).map_err(|e| e.to_string())?.len();
                let gz = gzip_len(&out).map_err(|e| e.to_string())?;
                Ok((raw, gz))
            });
            (flags, result)
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let built = run(&["date", "-u", "-r", &wasm.display().to_string(), "+%Y-%m-%d %H:%M:%S UTC"]);
    let sections = wasm_sections(&bytes);
    Ok(WasmSizes { path: wasm.to_path_buf(), raw: bytes.len() as u64, gzip, built, sections, optimized })
}

fn gzip_len(path: &Path) -> anyhow::Result<u64> {
    let output =
        Command::new("gzip").args(["-9", "-c"]).arg(path).stderr(Stdio::inherit()).output().context("run gzip")?;
    if !output.status.success() {
        bail!("gzip -9 failed on {}", path.display());
    }
    Ok(output.stdout.len() as u64)
}

/// The features the module uses but its `target_features` section does not list (wasm-bindgen
/// rewrites it to `+reference-types` only), so wasm-opt must be told: rustc's wasm32 defaults
/// and wasm-bindgen's exception-handling catch wrappers.
const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-bulk-memory-opt",
    "--enable-exception-handling",
    "--enable-nontrapping-float-to-int",
    "--enable-reference-types",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-multivalue",
];

/// Runs binaryen's wasm-opt (npm `binaryen`, a node program) on a copy, bounded in time.
fn wasm_opt(root: &Path, input: &Path, output: &Path, flags: &str) -> Result<(), String> {
    let tool = root.join("node_modules/.bin/wasm-opt");
    if !tool.exists() {
        return Err(format!("{} is missing (run `npm ci`)", tool.display()));
    }
    let path =
        format!("{}:{}", root.join("node_modules/node/bin").display(), std::env::var("PATH").unwrap_or_default());
    let mut child = Command::new(&tool)
        .args(flags.split(' '))
        .args(WASM_FEATURES)
        .arg(input)
        .arg("-o")
        .arg(output)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn wasm-opt: {e}"))?;
    // Drain stderr while waiting: a validation failure prints megabytes, which would fill the
    // pipe and block wasm-opt forever. Only its end is kept for the message.
    let mut pipe = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = pipe.read_to_end(&mut text);
        let tail = &text[text.len().saturating_sub(300)..];
        String::from_utf8_lossy(tail).trim().to_owned()
    });
    let deadline = Instant::now() + WASM_OPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("wasm-opt {flags} did not finish within {WASM_OPT_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = reader.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(format!("wasm-opt {flags} failed ({status}): ...{stderr}"))
    }
}

struct Environment {
    nproc: String,
    uname: String,
    cpu: String,
    wrangler: String,
    workerd: String,
    node: String,
    date: String,
    commit: String,
    command: String,
}

impl Environment {
    fn collect(root: &Path) -> Environment {
        let version = |package: &str| {
            std::fs::read(root.join("node_modules").join(package).join("package.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["version"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        if !args.is_empty() {
            args.insert(0, "--".to_owned());
        }
        let command = format!("cargo run -p devstack --release --bin bench {}", args.join(" ")).trim_end().to_owned();
        Environment {
            nproc: run(&["nproc"]),
            uname: run(&["uname", "-srm"]),
            cpu,
            wrangler: version("wrangler"),
            workerd: version("workerd"),
            node: version("node"),
            date: run(&["date", "-u", "+%Y-%m-%d %H:%M:%S UTC"]),
            commit: run(&["git", "-C", &root.display().to_string(), "rev-parse", "--short", "HEAD"]),
            command,
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn run(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

struct Report<'a> {
    series: &'a [Series],
    diffs: &'a [(&'static str, &'a Series, &'a Series)],
    env: &'a Environment,
    wasm: &'a WasmSizes,
    requests: usize,
    warmup: usize,
    truncated: bool,
    reconnects: u64,
    measured_in: Duration,
    /// /proc/loadavg (1, 5, 15 min) before and after measuring: other work on the machine shows.
    load: [String; 2],
}

fn kb(bytes: u64) -> String {
    format!("{bytes} B ({:.1} KiB)", bytes as f64 / 1024.0)
}

impl Report<'_> {
    fn latency_table(&self) -> String {
        let mut t = String::new();
        t.push_str("| series | n | p50 | p90 | p99 | max | mean |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for s in self.series {
            let _ = writeln!(
                t,
                "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                s.name, s.n, s.p50, s.p90, s.p99, s.max, s.mean
            );
        }
        t.push_str("\n| difference | at p50 | at p99 |\n|---|---:|---:|\n");
        for (name, hit, floor) in self.diffs {
            let _ = writeln!(t, "| {name} | {:+.3} | {:+.3} |", hit.p50 - floor.p50, hit.p99 - floor.p99);
        }
        t
    }

    /// Mean of each `Server-Timing` metric per series: the worker's own clock, which in workerd
    /// only advances across I/O, so it shows where the waiting happens, not CPU time.
    fn server_timing_table(&self) -> String {
        let metrics = ["kv", "redis", "total"];
        let mut t = String::from("| series | kv | redis | total |\n|---|---:|---:|---:|\n");
        for s in self.series {
            let cells: Vec<String> = metrics
                .iter()
                .map(|m| s.server_timing.get(*m).map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")))
                .collect();
            let _ = writeln!(t, "| {} | {} |", s.name, cells.join(" | "));
        }
        t
    }

    fn wasm_table(&self) -> String {
        let mut t = String::new();
        t.push_str("| build | raw | gzip -9 |\n|---|---:|---:|\n");
        let _ = writeln!(t, "| `build/index_bg.wasm` as built | {} | {} |", kb(self.wasm.raw), kb(self.wasm.gzip));
        for (flags, result) in &self.wasm.optimized {
            match result {
                Ok((raw, gz)) => {
                    let _ = writeln!(
                        t,
                        "| after `wasm-opt {flags}` (binaryen 132, on a copy) | {} | {} |",
                        kb(*raw),
                        kb(*gz)
                    );
                }
                Err(e) => {
                    let _ = writeln!(t, "| after `wasm-opt {flags}` | failed: {} | |", e.replace('\n', " "));
                }
            }
        }
        let sections: Vec<String> =
            self.wasm.sections.iter().map(|(name, size)| format!("{name} {}", kb(*size))).collect();
        let _ = writeln!(t, "\nAs built ({}): {}.", self.wasm.built, sections.join(", "));
        t
    }

    fn machine(&self) -> BTreeMap<&'static str, String> {
        let e = self.env;
        BTreeMap::from([
            ("1 date", e.date.clone()),
            ("2 command", format!("`{}`", e.command)),
            ("3 commit", format!("{} (worktree as it was; the worker from build/, not rebuilt)", e.commit)),
            ("4 machine", format!("{} cores (nproc), {}, {}", e.nproc, e.uname, e.cpu)),
            ("5 runtime", format!("wrangler {} (workerd {}), node {}", e.wrangler, e.workerd, e.node)),
            (
                "6 run",
                format!(
                    "concurrency 1, {} warm-up + {} samples per series{}, HTTP/1.1 keep-alive ({} reconnects), \
                     measured in {:.1} s",
                    self.warmup,
                    self.requests,
                    if self.truncated { " (stopped early by the time budget: see n)" } else { "" },
                    self.reconnects,
                    self.measured_in.as_secs_f64()
                ),
            ),
            (
                "7 load",
                format!(
                    "load average (1/5/15 min) {} before, {} after measuring (other work on the machine shows \
                     here; with 2 cores, anything above ~1 competes with wrangler and workerd)",
                    self.load[0], self.load[1]
                ),
            ),
        ])
    }

    fn terminal(&self) -> String {
        let mut t = String::new();
        for (key, value) in self.machine() {
            let _ = writeln!(t, "{:<8} {}", &key[2..], value.replace('`', ""));
        }
        let _ = writeln!(t, "\nlatency in ms (client wall time per request)\n{}", self.latency_table());
        let _ = writeln!(t, "Server-Timing means (the worker's own clock, ms)\n{}", self.server_timing_table());
        let _ = writeln!(t, "wasm ({})\n{}", self.wasm.path.display(), self.wasm_table());
        t
    }

    fn markdown(&self) -> String {
        let mut m = String::new();
        m.push_str("# Benchmark results\n\n");
        m.push_str(
            "Generated by `tests/devstack/src/bin/bench.rs`; rerun it to refresh this file (it is overwritten).\n\n",
        );
        for (key, value) in self.machine() {
            let _ = writeln!(m, "- **{}**: {}", &key[2..], value);
        }
        m.push_str(
            "\n## What is measured\n\n\
             Client wall time of one request at a time (concurrency 1) over a kept-alive HTTP/1.1 \
             connection on loopback, to the worker running in workerd under `wrangler dev`, each \
             answer checked (status, `x-cache: HIT`, `x-cache-tier`) outside the timed part.\n\n\
             - **tier-1 hit**: `POST /v1/chat/completions` answered from edge KV (local KV in workerd), \
             on a stack without Upstash. The whole gateway path runs: auth, JSON parse and validation, \
             cache key (SHA-256 of the canonical request), one KV read, MessagePack decode, response \
             headers.\n\
             - **tier-2 hit**: the same request on a second stack with the Upstash tier and \
             `KV_BINDING=NOPE`, so tier 1 fails fast (and is logged) and every hit is a `GET` through \
             the Upstash REST endpoint (devstack's, over a real redis-server on loopback). Each hit \
             also schedules a KV backfill after the response, which fails at once here, and logs two \
             `store_error` lines (KV get and put), so this series slightly overstates a real tier-2 \
             hit. Its floor is the first stack's (another workerd process of the same build).\n\
             - **floor**: `GET /healthz` on the first stack, which does exactly one bare KV read (of a \
             key that never exists) and returns a small JSON body, in the same runtime, through the \
             same proxy. It is interleaved with the hits (the order rotates every round), so drift, \
             GC and CPU contention affect both alike.\n\
             - **B: GET /healthz**: the second stack's health check: a failing KV lookup plus one \
             Redis `PING` through the Upstash endpoint, i.e. roughly one Redis round trip.\n\n\
             ### Why a floor\n\n\
             `wrangler dev` puts a local proxy (node) in front of workerd, and that proxy dominates the \
             absolute numbers: a request that does almost nothing costs several milliseconds here, far \
             more than the gateway's own work, and it says nothing about the latency on Cloudflare's \
             edge. Absolute numbers are therefore meaningless; only the difference between a hit and \
             the floor measured in the same run is the cost the gateway adds on top of a bare KV read. \
             A difference near zero means the hit path costs about as much as the proxy's noise.\n\n\
             ## Latency (milliseconds)\n\n",
        );
        m.push_str(&self.latency_table());
        m.push_str(
            "\n### The worker's own view\n\n\
             Means of the `Server-Timing` metrics the gateway sends (ms). Its clock is workerd's, \
             which only advances across I/O and counts whole milliseconds, so these show where a \
             request waits (KV, Redis), not CPU time; `-` means the metric was absent.\n\n",
        );
        m.push_str(&self.server_timing_table());
        m.push('\n');
        m.push_str("## Size of the release wasm\n\n");
        m.push_str(&self.wasm_table());
        m.push_str(
            "\n`build/index_bg.wasm` is what `worker-build --release` left (wasm-opt off in the build, \
             see Cargo.toml); the wasm-opt rows run binaryen 132 from npm on a copy in a temporary \
             folder, never on build/, with the features the module uses enabled explicitly (its \
             `target_features` section lists only `reference-types`, so wasm-opt rejects it \
             otherwise): bulk memory, exception handling, non-trapping float-to-int, sign-ext, \
             mutable globals, multivalue. Workers limits apply to the compressed size.\n",
        );
        m
    }
}
