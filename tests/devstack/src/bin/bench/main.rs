//! `bench`: latency of a cache hit against a floor measured in the same run on the same host,
//! of a fallback against a direct provider call, and time to first byte of streamed answers
//! against whole or direct ones, on loopback at concurrency 1, on both hosts
//! (Cloudflare: workerd under `wrangler dev`; Spin: the Spin-compatible test host), plus the
//! size of both wasm artefacts. Writes tests/devstack/BENCH_RESULTS.md.
//!
//! `cargo run -p devstack --release --bin bench [-- --requests N --warmup N --hosts cloudflare,spin
//! --phases tier1,tier2,fallback,streams --stream-requests N --stream-warmup N]`
//!
//! Per host, four phases (all unless `--phases` names some), each interleaving its probes round
//! by round:
//! 1. tier-1 hit: `POST /v1/chat/completions` answered from edge KV on a stack without Upstash,
//!    against the floor `GET /admin/health` on the same gateway (exactly one bare KV read there).
//! 2. tier-2 hit: the same request on a second stack with Upstash and no KV binding
//!    (`kv_unbound`: tier 1 fails fast, every hit comes from Redis), against the same floor on
//!    the first stack and the second stack's own `/admin/health`.
//! 3. fallback: `cache-control: no-store` requests to a model whose first target fails fast
//!    (a 500 from the fake upstream, no retry) and whose second answers, against a model routed
//!    straight to one target.
//! 4. streams (`streams.rs`): time to first byte and wall time of streamed hits against whole
//!    hits (short and long answers), and of streamed `no-store` misses through the gateway
//!    against the same streamed call sent to the fake upstream directly.
//!
//! This file is the orchestration only (flags, stacks, phases, which differences are reported);
//! see the modules for the client, the loop, the statistics, the sizes and the report. Must not:
//! talk to anything but loopback, run unbounded (every phase has a count and a time budget), or
//! build anything (it measures build/ and target/ as they are, from copies taken at its start:
//! `snapshot.rs`).

mod env;
mod http;
mod measure;
mod probe;
mod report;
mod snapshot;
mod sse;
mod stats;
mod streams;
mod wasm;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use devstack::stack::{HostKind, Stack, StackOptions};
use devstack::worker::repo_root;
use serde_json::json;

use crate::env::{load_average, Environment};
use crate::http::KeepAlive;
use crate::measure::{measure, Phase};
use crate::probe::{chat_body, expect_health, seed, Probe};
use crate::report::Report;
use crate::snapshot::Snapshot;
use crate::stats::{Diff, Samples, Series};
use crate::wasm::wasm_sizes;

const DEFAULT_REQUESTS: u32 = 1500;
const DEFAULT_WARMUP: u32 = 150;
/// The streams phase interleaves eight series, two of them long streams through the gateway
/// (about 0.3 s a round on Cloudflare): fewer rounds.
const DEFAULT_STREAM_REQUESTS: u32 = 250;
const DEFAULT_STREAM_WARMUP: u32 = 25;
/// A phase stops early (and the report says so) when it runs longer than this per series it
/// interleaves: at most 30 s for phases 1 and 3, 45 s for phase 2 and 120 s for the streams
/// phase, so with the stacks' start-up the whole run stays under nine minutes even on a loaded
/// machine (about five normally). The default counts are set so that no phase needs its budget
/// on an idle machine.
pub const BUDGET_PER_SERIES: Duration = Duration::from_secs(15);

/// The fallback stack's routing table: `direct` has one target, `fallback` two priorities.
const FALLBACK_ROUTES: &str = r#"{"direct": [{"provider":"openai-compatible","id":"d","base_url":"{upstream}/v1","model":"d-model"}], "fallback": [{"provider":"openai-compatible","id":"f1","base_url":"{upstream}/v1","model":"f1-model"},{"provider":"openai-compatible","id":"f2","base_url":"{upstream}/v1","model":"f2-model","priority":1}]}"#;

/// The command line.
#[derive(Parser)]
#[command(name = "bench", about = "Latency of cache hits and fallbacks against floors measured in the same run")]
struct Args {
    /// Samples per series
    #[arg(long, default_value_t = DEFAULT_REQUESTS, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    requests: u32,
    /// Warm-up rounds before sampling
    #[arg(long, default_value_t = DEFAULT_WARMUP, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    warmup: u32,
    /// Hosts to measure, comma-separated
    #[arg(long, value_enum, value_delimiter = ',', num_args = 1.., default_values_t = [HostKind::Cloudflare, HostKind::Spin])]
    hosts: Vec<HostKind>,
    /// Phases to run on each host, comma-separated
    #[arg(long, value_enum, value_delimiter = ',', num_args = 1.., default_values_t = PhaseName::ALL)]
    phases: Vec<PhaseName>,
    /// Samples per series of the streams phase
    #[arg(long, default_value_t = DEFAULT_STREAM_REQUESTS, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    stream_requests: u32,
    /// Warm-up rounds of the streams phase
    #[arg(long, default_value_t = DEFAULT_STREAM_WARMUP, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    stream_warmup: u32,
}

/// The phases, as `--phases` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PhaseName {
    /// Tier-1 hit against the floor.
    Tier1,
    /// Tier-2 hit against the floor.
    Tier2,
    /// Fallback against a direct call.
    Fallback,
    /// Streamed answers: time to first byte.
    Streams,
}

impl PhaseName {
    const ALL: [PhaseName; 4] = [PhaseName::Tier1, PhaseName::Tier2, PhaseName::Fallback, PhaseName::Streams];
}

/// How the run was asked to go.
pub struct Settings {
    pub requests: usize,
    pub warmup: usize,
    pub hosts: Vec<HostKind>,
    pub phases: Vec<PhaseName>,
    pub stream_requests: usize,
    pub stream_warmup: usize,
}

impl Settings {
    pub fn runs(&self, phase: PhaseName) -> bool {
        self.phases.contains(&phase)
    }
}

/// Everything measured, across hosts.
#[derive(Default)]
pub struct Results {
    pub series: Vec<Series>,
    pub diffs: Vec<Diff>,
    /// The series of the streams phase (indices into `series`) and their differences.
    pub streams: Vec<usize>,
    pub stream_diffs: Vec<Diff>,
    /// Some phase was stopped by its time budget (see each series' n).
    pub truncated: bool,
    pub reconnects: u64,
}

impl Results {
    fn add(&mut self, host: &'static str, name: &'static str, samples: &Samples) -> usize {
        self.series.push(Series::new(host, name, samples));
        self.series.len() - 1
    }

    fn diff(&mut self, host: &'static str, name: &'static str, minuend: usize, subtrahend: usize) {
        self.diffs.push(Diff { host, name, minuend, subtrahend });
    }

    fn add_stream(&mut self, host: &'static str, name: &'static str, samples: &Samples) -> usize {
        let at = self.add(host, name, samples);
        self.streams.push(at);
        at
    }

    fn stream_diff(&mut self, host: &'static str, name: &'static str, minuend: usize, subtrahend: usize) {
        self.stream_diffs.push(Diff { host, name, minuend, subtrahend });
    }

    fn phase(&mut self, phase: &Phase, clients: &[&KeepAlive]) {
        self.truncated |= phase.truncated;
        self.reconnects += clients.iter().map(|c| c.reconnects).sum::<u64>();
    }
}

pub fn host_label(host: HostKind) -> &'static str {
    match host {
        HostKind::Cloudflare => "Cloudflare",
        HostKind::Spin => "Spin",
    }
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let settings = parse_settings()?;
    let root = repo_root();
    let tag = format!("bench-{}", std::process::id());
    // What the caller asked to run on Spin, before the snapshot points the dev stack at its copies.
    let spin_overrides = env::spin_overrides();
    let snapshot = Snapshot::take(&root, &tag)?;
    let load_before = load_average();

    let mut results = Results::default();
    for &host in &settings.hosts {
        bench_host(host, &settings, &tag, &mut results).with_context(|| format!("on {}", host_label(host)))?;
    }
    let measured_in = started.elapsed();
    let load_after = load_average();

    eprintln!("measuring the wasm...");
    let wasm = vec![
        wasm_sizes("Cloudflare module", &snapshot.root, "build/index_bg.wasm")?,
        wasm_sizes("Spin component", &snapshot.root, snapshot::SPIN_COMPONENT)?,
    ];
    drop(snapshot);
    let env = Environment::collect(&root, spin_overrides);
    let report = Report {
        results: &results,
        env: &env,
        wasm: &wasm,
        settings: &settings,
        measured_in,
        load: [load_before, load_after],
    };
    print!("{}", report.terminal());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCH_RESULTS.md");
    std::fs::write(&path, report.markdown()).with_context(|| format!("write {}", path.display()))?;
    eprintln!("wrote {} in {:.1} s", path.display(), started.elapsed().as_secs_f64());
    Ok(())
}

fn parse_settings() -> anyhow::Result<Settings> {
    let Args { requests, warmup, hosts, mut phases, stream_requests, stream_warmup } = Args::parse();
    phases.sort_by_key(|p| PhaseName::ALL.iter().position(|q| q == p));
    phases.dedup();
    Ok(Settings {
        requests: usize::try_from(requests)?,
        warmup: usize::try_from(warmup)?,
        hosts,
        phases,
        stream_requests: usize::try_from(stream_requests)?,
        stream_warmup: usize::try_from(stream_warmup)?,
    })
}

/// The phases asked for on one host, each stack stopped once its phases are done.
fn bench_host(host: HostKind, settings: &Settings, tag: &str, results: &mut Results) -> anyhow::Result<()> {
    if settings.runs(PhaseName::Tier1) || settings.runs(PhaseName::Tier2) {
        bench_hits(host, settings, tag, results)?;
    }
    if settings.runs(PhaseName::Fallback) {
        bench_fallback(host, settings, results)?;
    }
    if settings.runs(PhaseName::Streams) {
        streams::bench(host, settings, tag, results)?;
    }
    Ok(())
}

fn announce(label: &str, settings: &Settings, what: &str) {
    let (warmup, requests) = (settings.warmup, settings.requests);
    eprintln!("[{label}] {what}: {warmup} warm-up + up to {requests} rounds...");
}

/// Phases 1 and 2 (either or both): stack A is the floor of both.
fn bench_hits(host: HostKind, settings: &Settings, tag: &str, results: &mut Results) -> anyhow::Result<()> {
    let label = host_label(host);
    let (warmup, requests) = (settings.warmup, settings.requests);
    eprintln!("[{label}] starting stack A (edge KV only, no Upstash)...");
    let no_upstash = vec![
        ("UPSTASH_REDIS_REST_URL".to_owned(), String::new()),
        ("UPSTASH_REDIS_REST_TOKEN".to_owned(), String::new()),
    ];
    let a = Stack::start(StackOptions { host, vars: no_upstash, ..StackOptions::default() }).context("stack A")?;
    expect_health(&a, "ok", "disabled", "stack A's floor must be a bare KV read")?;
    let mut floor_a = KeepAlive::new(a.worker.port());
    let floor = Probe::health("ok", "disabled");
    if settings.runs(PhaseName::Tier1) {
        let body_1 = chat_body("gpt-4o-mini", &format!("{tag} {label}: tier-1 hit, what is the capital of France?"));
        seed(&a, &body_1, "edge-kv")?;
        let mut client_a = KeepAlive::new(a.worker.port());
        let hit_1 = Probe::hit(&body_1, "edge-kv");
        announce(label, settings, "phase 1, tier-1 hit vs floor");
        let phase_1 =
            measure(&mut [(&mut client_a, &hit_1), (&mut floor_a, &floor)], warmup, requests, BUDGET_PER_SERIES * 2)?;
        results.phase(&phase_1, &[&client_a]);
        let t1 = results.add(label, "tier-1 hit (edge KV)", &phase_1.samples[0]);
        let f1 = results.add(label, "floor, phase 1 (A: GET /admin/health, one KV read)", &phase_1.samples[1]);
        results.diff(label, "tier-1 hit - floor (phase 1)", t1, f1);
    }
    if !settings.runs(PhaseName::Tier2) {
        return Ok(());
    }
    eprintln!("[{label}] starting stack B (Upstash, no KV binding)...");
    let b = Stack::start(StackOptions { host, kv_unbound: true, ..StackOptions::default() }).context("stack B")?;
    expect_health(&b, "down", "ok", "stack B must have Redis and no edge KV")?;
    let body_2 = chat_body("gpt-4o-mini", &format!("{tag} {label}: tier-2 hit, what is the capital of Italy?"));
    seed(&b, &body_2, "redis")?;
    let mut client_b = KeepAlive::new(b.worker.port());
    let mut health_b = KeepAlive::new(b.worker.port());
    let (hit_2, b_floor) = (Probe::hit(&body_2, "redis"), Probe::health("down", "ok"));
    announce(label, settings, "phase 2, tier-2 hit vs floor and B's /admin/health");
    let phase_2 = measure(
        &mut [(&mut client_b, &hit_2), (&mut health_b, &b_floor), (&mut floor_a, &floor)],
        warmup,
        requests,
        BUDGET_PER_SERIES * 3,
    )?;
    results.phase(&phase_2, &[&client_b, &health_b, &floor_a]);
    let t2 = results.add(label, "tier-2 hit (Redis via Upstash REST)", &phase_2.samples[0]);
    results.add(label, "B: GET /admin/health (failing KV, Redis PING, health read, MGET)", &phase_2.samples[1]);
    let f2 = results.add(label, "floor, phase 2 (A: GET /admin/health, as above)", &phase_2.samples[2]);
    results.diff(label, "tier-2 hit - floor (phase 2)", t2, f2);
    drop((floor_a, client_b, health_b));
    drop(b);
    drop(a);
    Ok(())
}

/// Phase 3.
fn bench_fallback(host: HostKind, settings: &Settings, results: &mut Results) -> anyhow::Result<()> {
    let label = host_label(host);
    let (warmup, requests) = (settings.warmup, settings.requests);
    eprintln!("[{label}] starting stack F (ROUTES: direct, and fallback whose first target fails)...");
    let vars = [("ROUTES", FALLBACK_ROUTES), ("RETRIES_PER_TARGET", "0"), ("BREAKER_ERROR_PERCENT", "100")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let f = Stack::start(StackOptions { host, vars, ..StackOptions::default() }).context("stack F")?;
    f.fake().add_rule("\"model\":\"f1-model\"", json!([{"kind": "status", "status": 500}]), true);
    let mut client_direct = KeepAlive::new(f.worker.port());
    let mut client_fallback = KeepAlive::new(f.worker.port());
    let direct = Probe::routed("direct", "d", "1", false);
    let fallback = Probe::routed("fallback", "f2", "2", true);
    announce(label, settings, "phase 3, fallback vs direct (no-store)");
    let phase_3 = measure(
        &mut [(&mut client_direct, &direct), (&mut client_fallback, &fallback)],
        warmup,
        requests,
        BUDGET_PER_SERIES * 2,
    )?;
    results.phase(&phase_3, &[&client_direct, &client_fallback]);
    let d = results.add(label, "direct (model `direct`, one target)", &phase_3.samples[0]);
    let fb = results.add(label, "fallback (f1 answers 500, f2 answers)", &phase_3.samples[1]);
    results.diff(label, "fallback - direct (phase 3)", fb, d);
    // One failed call per fallback request (a reconnect may have resent one).
    let failed = f.fake().calls("\"model\":\"f1-model\"");
    let expected = warmup + phase_3.samples[1].wall_ms.len();
    if failed < expected || failed > expected + client_fallback.reconnects as usize {
        bail!("the failing target f1 was called {failed} times, expected one call per fallback request ({expected})");
    }
    Ok(())
}
