//! The results as text: a terminal summary and the markdown of BENCH_RESULTS.md (machine and
//! run details, what each series measures, latency and difference tables per host, the streams
//! table (time to first byte next to wall time), the gateway's own `Server-Timing` view, and the
//! wasm sizes).
//!
//! Formatting only: nothing here measures or decides what is measured.

use std::fmt::Write as _;
use std::time::Duration;

use crate::env::Environment;
use crate::stats::Series;
use crate::wasm::WasmSizes;
use crate::{host_label, PhaseName, Results, Settings};

pub struct Report<'a> {
    pub results: &'a Results,
    pub env: &'a Environment,
    pub wasm: &'a [WasmSizes],
    pub settings: &'a Settings,
    pub measured_in: Duration,
    /// /proc/loadavg (1, 5, 15 min) before and after measuring: other work on the machine shows.
    pub load: [String; 2],
}

fn kb(bytes: u64) -> String {
    format!("{bytes} B ({:.1} KiB)", bytes as f64 / 1024.0)
}

impl Report<'_> {
    fn latency_table(&self) -> String {
        let mut t = String::new();
        t.push_str("| host | series | n | p50 | p90 | p99 | max | mean |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
        for s in &self.results.series {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                s.host, s.name, s.n, s.p50, s.p90, s.p99, s.max, s.mean
            );
        }
        t
    }

    fn diff_table(&self) -> String {
        let mut t = String::from("| host | difference | at p50 | at p99 |\n|---|---|---:|---:|\n");
        for d in &self.results.diffs {
            let (p50, p99) = d.values(&self.results.series);
            let _ = writeln!(t, "| {} | {} | {p50:+.3} | {p99:+.3} |", d.host, d.name);
        }
        t
    }

    /// Mean of each `Server-Timing` metric per series; `-` where the gateway did not send it.
    /// The streams phase: time to first byte, to the first body byte, and wall time, then the
    /// differences of both.
    fn stream_table(&self) -> String {
        let mut t = String::from(
            "| host | series | n | TTFB p50 | TTFB p99 | first body byte p50 | wall p50 | wall p99 |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for s in self.results.streams.iter().map(|&i| &self.results.series[i]) {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                s.host, s.name, s.n, s.ttfb[0], s.ttfb[1], s.first_data[0], s.p50, s.p99
            );
        }
        t.push_str("\n| host | difference | TTFB at p50 | TTFB at p99 | wall at p50 | wall at p99 |\n|---|---|---:|---:|---:|---:|\n");
        for d in &self.results.stream_diffs {
            let (t50, t99) = d.ttfb_values(&self.results.series);
            let (w50, w99) = d.values(&self.results.series);
            let _ = writeln!(t, "| {} | {} | {t50:+.3} | {t99:+.3} | {w50:+.3} | {w99:+.3} |", d.host, d.name);
        }
        t
    }

    fn server_timing_table(&self) -> String {
        let metrics = ["kv", "redis", "origin", "total"];
        let mut t = String::from("| host | series | kv | redis | origin | total |\n|---|---|---:|---:|---:|---:|\n");
        for s in &self.results.series {
            let cells: Vec<String> = metrics.iter().map(|m| cell(s, m)).collect();
            let _ = writeln!(t, "| {} | {} | {} |", s.host, s.name, cells.join(" | "));
        }
        t
    }

    fn wasm_table(&self) -> String {
        let mut t = String::from("| artefact | file | raw | gzip -9 |\n|---|---|---:|---:|\n");
        for w in self.wasm {
            let _ = writeln!(t, "| {} | `{}` | {} | {} |", w.label, w.path.display(), kb(w.raw), kb(w.gzip));
        }
        t.push('\n');
        for w in self.wasm {
            let sections: Vec<String> = w.sections.iter().map(|(name, size)| format!("{name} {}", kb(*size))).collect();
            let sections = if sections.is_empty() { "no sections read".to_owned() } else { sections.join(", ") };
            let _ = writeln!(t, "- {} (built {}): {}.", w.label, w.built, sections);
        }
        t
    }

    fn hosts(&self) -> String {
        self.settings.hosts.iter().map(|h| host_label(*h)).collect::<Vec<_>>().join(" and ")
    }

    fn phases(&self) -> String {
        let names: Vec<String> = self.settings.phases.iter().map(|p| format!("{p:?}").to_lowercase()).collect();
        names.join(", ")
    }

    fn runs_streams(&self) -> bool {
        self.settings.runs(PhaseName::Streams)
    }

    fn machine(&self) -> Vec<(&'static str, String)> {
        let e = self.env;
        vec![
            ("date", e.date.clone()),
            ("command", format!("`{}`", e.command)),
            ("commit", format!("{} (worktree as it was; build/ and target/ used as built, not rebuilt)", e.commit)),
            ("machine", format!("{} cores (nproc), {}, {}", e.nproc, e.uname, e.cpu)),
            (
                "runtimes",
                format!(
                    "Cloudflare: wrangler {} (workerd {}), node {}; Spin: the Spin-compatible test host \
                     (`target/release/spin-host`, wasmtime {}){}",
                    e.wrangler,
                    e.workerd,
                    e.node,
                    e.wasmtime,
                    if e.spin_overrides.is_empty() {
                        String::new()
                    } else {
                        format!(", run with `{}`", e.spin_overrides.join(" "))
                    }
                ),
            ),
            (
                "run",
                format!(
                    "hosts {}; phases {}; concurrency 1, {} warm-up rounds + {} samples per series ({} + {} in the \
                     streams phase){}, HTTP/1.1 keep-alive ({} reconnects), measured in {:.1} s",
                    self.hosts(),
                    self.phases(),
                    self.settings.warmup,
                    self.settings.requests,
                    self.settings.stream_warmup,
                    self.settings.stream_requests,
                    if self.results.truncated { " (a phase was stopped early by its time budget: see n)" } else { "" },
                    self.results.reconnects,
                    self.measured_in.as_secs_f64()
                ),
            ),
            (
                "load",
                format!(
                    "load average (1/5/15 min) {} before, {} after measuring (other work on the machine shows \
                     here; with 2 cores, anything above ~1 competes with the runtimes)",
                    self.load[0], self.load[1]
                ),
            ),
        ]
    }

    pub fn terminal(&self) -> String {
        let mut t = String::new();
        for (key, value) in self.machine() {
            let _ = writeln!(t, "{key:<8} {}", value.replace('`', ""));
        }
        let _ = writeln!(t, "\nlatency in ms (client wall time per request)\n{}", self.latency_table());
        let _ = writeln!(t, "{}", self.diff_table());
        if self.runs_streams() {
            let _ = writeln!(t, "streams, ms from the request's write\n{}", self.stream_table());
        }
        let _ = writeln!(t, "Server-Timing means (the gateway's own clock, ms)\n{}", self.server_timing_table());
        let _ = writeln!(t, "wasm\n{}", self.wasm_table());
        t
    }

    pub fn markdown(&self) -> String {
        let mut m = String::new();
        m.push_str("# Benchmark results\n\n");
        m.push_str(
            "Generated by `tests/devstack/src/bin/bench/` (`main.rs` and its modules); rerun it to refresh this \
             file (it is overwritten).\n\n",
        );
        for (key, value) in self.machine() {
            let _ = writeln!(m, "- **{key}**: {value}");
        }
        let _ = write!(
            m,
            "\n## What is measured\n\n\
             Client wall time of one request at a time (concurrency 1) over kept-alive HTTP/1.1 connections on \
             loopback, each answer checked (status and headers, see below) outside the timed part. The phases \
             on the run line run on each host, on stacks started for the run (each a redis-server, devstack's Upstash \
             REST endpoint and fake upstream, and the gateway), each phase interleaving its series round by round with the order \
             rotating every round (shuffled in the streams phase), so drift, GC and CPU contention affect them alike. Each series has {} \
             samples after {} unrecorded warm-up rounds (the default is 1500, down from 2000 before both \
             hosts and the fallback phase were measured, to keep the run short); a phase stops early after {} s per series it \
             interleaves (the run line above says whether that happened), which bounds the whole run to under \
             nine minutes.\n\n\
             - **Cloudflare**: the worker from `build/` in workerd under `wrangler dev`, which puts a local \
             proxy (node) in front of workerd.\n\
             - **Spin**: the Spin component from `target/wasm32-wasip2/spin/` in the Spin-compatible test host \
             (wasmtime, with a SQLite key-value store), which serves it directly, instances reused \
             as Spin 4 reuses them.\n\n\
             ### Phase 1: tier-1 hit against the floor\n\n\
             - **tier-1 hit**: `POST /v1/chat/completions` answered from edge KV (`x-cache: HIT`, \
             `x-cache-tier: edge-kv`) on stack A, which has no Upstash. The whole gateway path runs: auth, JSON \
             parse and validation, cache key (SHA-256 of the canonical request), one KV read, MessagePack decode, \
             response headers.\n\
             - **floor**: `GET /admin/health` on the same stack A (checked: edge KV `ok`, Redis `disabled`), which does \
             exactly one bare KV read (of a key that never exists) and returns a small JSON body, in the same \
             runtime, through the same front. The difference hit - floor is the cost the gateway adds on top of \
             a bare KV read on that host.\n\n\
             ### Phase 2: tier-2 hit\n\n\
             - **tier-2 hit**: the same kind of request on stack B, deployed with the Upstash tier and without \
             tier 1 (`kv_unbound`: no KV binding on Workers, no store granted on Spin), so tier 1 fails fast and \
             every hit is a `GET` through the Upstash REST endpoint (over a real redis-server on loopback). Each \
             hit also schedules a KV backfill after the response, which fails at once here and logs, so this \
             series slightly overstates a real tier-2 hit.\n\
             - **B: GET /admin/health**: stack B's detailed health view, for scale: a failing KV lookup, a Redis `PING`, \
             one read of the shared target health and an `MGET` of the skip counters, i.e. three Redis round trips.\n\
             - **floor, phase 2**: stack A's floor again, interleaved with the above (another gateway process of \
             the same build on the same host).\n\n\
             ### Phase 3: fallback against a direct call\n\n\
             Stack F has `ROUTES` with a model `direct` (one `openai-compatible` target `d`) and a model \
             `fallback` (target `f1`, then `f2` at priority 1), all on the fake upstream, plus \
             `RETRIES_PER_TARGET=0` and `BREAKER_ERROR_PERCENT=100` so that `f1` is never rested and every \
             request really pays its failed attempt. The fake upstream answers every call for `f1-model` with a \
             500 at once. Both series send `cache-control: no-store`, so no cache is read or written and every \
             request goes to the upstream; each `fallback` answer must carry `x-provider: f2`, `x-fallback: true` \
             and `x-attempts: 2`, each `direct` one `x-provider: d` and `x-attempts: 1`, and the fake upstream \
             must have seen one `f1` call per fallback request. The difference fallback - direct is the added \
             latency of a fallback whose first target fails fast: one more upstream round trip, reading its \
             error, and the failover itself. Stack F has Upstash (as a deployment would): on Spin, whose memory \
             does not outlive a request, each routed request first reads the targets' shared health from Redis \
             (both series pay it) and shares it back after the response.\n\n\
             ### Why a floor\n\n\
             Absolute numbers on this machine say little about latency in production: on Cloudflare, \
             `wrangler dev`'s local proxy dominates them (a request that does almost nothing costs several \
             milliseconds); on Spin, the test host's own HTTP server and wasmtime are in every number. Only the \
             difference between a series and its counterpart measured in the same run on the same host is the \
             cost of what differs. A difference near zero means that cost is within the noise.\n\n\
             ## Latency (milliseconds)\n\n",
            self.settings.requests,
            self.settings.warmup,
            crate::BUDGET_PER_SERIES.as_secs(),
        );
        m.push_str(&self.latency_table());
        m.push('\n');
        m.push_str(&self.diff_table());
        if self.runs_streams() {
            m.push_str(&self.streams_section());
        }
        m.push_str(
            "\n### The gateway's own view\n\n\
             Means of the `Server-Timing` metrics the gateway sends (ms, whole milliseconds per request); `-` \
             means the metric was absent. On Cloudflare the clock is workerd's, which only advances across I/O, \
             so these show where a request waits (KV, Redis, origin), not CPU time; on Spin it is the wall \
             clock.\n\n",
        );
        m.push_str(&self.server_timing_table());
        m.push_str("\n## Size of the wasm\n\n");
        m.push_str(&self.wasm_table());
        m.push_str(
            "\nBoth as built (measured, and served, from copies taken at the start of the run), never rebuilt or \
             rewritten by the bench. The Cloudflare module is what \
             wrangler.toml's build command leaves: `worker-build --release`, then binaryen's `wasm-opt -Oz` \
             with `--strip-debug --strip-producers` on `build/index_bg.wasm` itself. The Spin component is \
             `cargo build --target wasm32-wasip2 --profile spin` (release with `strip = true`; wasm-opt does not \
             read components). Workers limits apply to the compressed size.\n",
        );
        m
    }
}

impl Report<'_> {
    fn streams_section(&self) -> String {
        let mut m = format!(
            "\n## Streams: time to first byte (milliseconds)\n\n\
             Phase 4, on stack S per host (edge KV, no Upstash), eight series interleaved round by round, {} \
             samples each after {} warm-up rounds, stopped after {} s at most. Times run from the request's \
             write: **TTFB** to the first byte of the status line, **first body byte** to the first byte of \
             the body (for a chunked body its first chunk), **wall** to the last byte. Every answer is checked \
             outside the timed part: status, `x-cache` and `x-cache-tier`, `text/event-stream`, whole `data:` \
             events ending with `data: [DONE]` and no error event, and the text.\n\n\
             - **whole hit / streamed hit**: one request, answered from one tier-1 entry as JSON or replayed \
             as an OpenAI stream (the cache key ignores `stream`); the text must be the seeded answer's. \
             **long**: the fake upstream answered that prompt with {} words (its `words` action), about \
             12 KB as JSON and about 200 KB as a replayed stream.\n\
             - **streamed miss via the gateway**: `stream: true` with `cache-control: no-store`: no cache read \
             or write, one provider call each (counted at the fake upstream), relayed event by event as it \
             arrives (the fake upstream sends one event per word).\n\
             - **streamed call direct to the fake upstream**: the same request sent to the fake upstream itself \
             over its own kept-alive connection: the floor. The difference is what the gateway adds to the \
             first byte (and to the whole stream). The fake upstream renders a whole stream before its first \
             byte (a few milliseconds for the long one), which the direct and the gateway series pay alike; on \
             Cloudflare the difference also holds `wrangler dev`'s local proxy (see the floor of phase 1).\n\n\
             The order of the eight is shuffled every round, so that no series always follows the same one (a \
             long stream leaves work behind in the host and in the fake upstream). On Spin, whose server does \
             not set `TCP_NODELAY` (nor does the test host), a stream goes out in several writes and the last \
             ones can wait for the client's delayed ACK (up to about 40 ms): that shows in the wall p99 of \
             streams, not in their time to first byte.\n\n",
            self.settings.stream_requests,
            self.settings.stream_warmup,
            crate::streams::BUDGET.as_secs(),
            crate::streams::LONG_WORDS,
        );
        m.push_str(&self.stream_table());
        m
    }
}

fn cell(series: &Series, metric: &str) -> String {
    series.server_timing.get(metric).map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}
