//! The streams phase (issue 9): time to first byte (TTFB) and wall time of streamed answers on
//! one host, against their whole or direct counterparts, interleaved round by round on one stack
//! (edge KV, no Upstash: every hit is from tier 1, and `no-store` requests neither read nor
//! write a cache nor wait for another request's call):
//!
//! The order of the eight is shuffled every round (not rotated), so that no series always
//! follows the same one: a long stream leaves work behind in the host and the fake upstream.
//!
//! - whole hit / streamed hit: the same request (the cache key ignores `stream`) answered from
//!   one tier-1 entry, as JSON or replayed as an OpenAI stream; short (a one-line answer) and
//!   long (an answer of `LONG_WORDS` words, which the fake upstream makes for a short prompt);
//! - streamed miss via the gateway (`cache-control: no-store`: one provider call each, relayed
//!   as it arrives) / the same streamed call sent to the fake upstream directly, the floor;
//!   short and long. The fake upstream must have seen exactly one call per miss.
//!
//! Every answer is checked outside the timed part: headers, whole SSE events ending with
//! `data: [DONE]`, no error event, and the text (the seeded answer's for hits, a fake reply of
//! the expected length otherwise). Must not: run unbounded (a sample count and `BUDGET`).

use std::time::Duration;

use anyhow::{bail, Context as _};
use devstack::stack::{HostKind, Stack, StackOptions, KEY_A};
use devstack::HttpRequest;
use serde_json::{json, Value};

use crate::http::KeepAlive;
use crate::measure::{measure_in, Order};
use crate::probe::{chat_body, expect_health, seed, stream_body, Cache, Probe, Text};
use crate::{host_label, Results, Settings, BUDGET_PER_SERIES};

/// Words of the long answer (about 12 KB of text, some 200 KB as a replayed stream).
pub const LONG_WORDS: usize = 2000;
/// The fake upstream lengthens every answer to a prompt holding this to `LONG_WORDS` words.
const LONG_MARKER: &str = "long-answer";
/// The whole phase stops after this (eight series).
pub const BUDGET: Duration = Duration::from_secs(BUDGET_PER_SERIES.as_secs() * 8);
const CHAT: &str = "/v1/chat/completions";
const MODEL: &str = "gpt-4o-mini";

/// Runs the phase on `host` and adds its series (and their differences) to `results`.
pub fn bench(host: HostKind, settings: &Settings, tag: &str, results: &mut Results) -> anyhow::Result<()> {
    let label = host_label(host);
    eprintln!("[{label}] starting stack S (edge KV only, no Upstash) for the streams phase...");
    let no_upstash = vec![
        ("UPSTASH_REDIS_REST_URL".to_owned(), String::new()),
        ("UPSTASH_REDIS_REST_TOKEN".to_owned(), String::new()),
    ];
    let s = Stack::start(StackOptions { host, vars: no_upstash, ..StackOptions::default() }).context("stack S")?;
    expect_health(&s, "ok", "disabled", "stack S must have edge KV and no Redis")?;
    s.fake().add_rule(LONG_MARKER, json!([{"kind": "ok", "words": LONG_WORDS}]), true);

    // The cached answers, seeded through the gateway (one MISS each) and read back once.
    let short_prompt = format!("{tag} {label}: streams, what is the capital of Spain?");
    let long_prompt = format!("{tag} {label}: streams, a {LONG_MARKER} about rivers");
    let short_text = seeded_text(&s, &short_prompt)?;
    let long_text = seeded_text(&s, &long_prompt)?;
    if long_text.split(' ').count() != LONG_WORDS {
        bail!("the long answer has {} words, not {LONG_WORDS}", long_text.split(' ').count());
    }

    // Provider calls: the same prompt through the gateway (`g`) and directly (`d`), each with its
    // own marker of the same length so that the answers are the same size and calls countable.
    let call = |route: &str, long: bool| match long {
        false => format!("{tag} {label}: streamed call {route}, name three rivers"),
        true => format!("{tag} {label}: streamed call {route}, a {LONG_MARKER} about rivers"),
    };
    let reply_words = |prompt: &str, long: bool| if long { LONG_WORDS } else { 3 + prompt.split(' ').count() };
    let (g1, d1, g2, d2) =
        (call("route-g1", false), call("route-d1", false), call("route-g2", true), call("route-d2", true));

    let stream = |prompt: &str| stream_body(MODEL, prompt);
    let exact = |text: &str| Text::Exact(text.to_owned());
    let probes = [
        Probe::hit_text(&chat_body(MODEL, &short_prompt), "edge-kv", &short_text),
        Probe::stream(CHAT, &stream(&short_prompt), Cache::Hit("edge-kv"), exact(&short_text)),
        Probe::hit_text(&chat_body(MODEL, &long_prompt), "edge-kv", &long_text),
        Probe::stream(CHAT, &stream(&long_prompt), Cache::Hit("edge-kv"), exact(&long_text)),
        Probe::stream(CHAT, &stream(&g1), Cache::Miss, Text::Reply { words: reply_words(&g1, false) }),
        Probe::stream(CHAT, &stream(&d1), Cache::Direct, Text::Reply { words: reply_words(&d1, false) }),
        Probe::stream(CHAT, &stream(&g2), Cache::Miss, Text::Reply { words: reply_words(&g2, true) }),
        Probe::stream(CHAT, &stream(&d2), Cache::Direct, Text::Reply { words: reply_words(&d2, true) }),
    ];
    let (gateway, upstream) = (s.worker.port(), s.fake().addr().port());
    let mut clients: Vec<KeepAlive> =
        [gateway, gateway, gateway, gateway, gateway, upstream, gateway, upstream].map(KeepAlive::new).into();

    let (warmup, requests) = (settings.stream_warmup, settings.stream_requests);
    eprintln!("[{label}] streams: {warmup} warm-up + up to {requests} rounds of 8 series...");
    let mut pairs: Vec<(&mut KeepAlive, &Probe)> = clients.iter_mut().zip(&probes).collect();
    let phase = measure_in(&mut pairs, warmup, requests, BUDGET, Order::Shuffle)?;
    drop(pairs);
    results.phase(&phase, &clients.iter().collect::<Vec<_>>());

    let names = [
        "whole hit (edge KV)",
        "streamed hit (edge KV)",
        "whole hit, long (edge KV)",
        "streamed hit, long (edge KV)",
        "streamed miss via the gateway (no-store)",
        "streamed call direct to the fake upstream",
        "streamed miss via the gateway, long (no-store)",
        "streamed call direct to the fake upstream, long",
    ];
    let at: Vec<usize> =
        names.iter().zip(&phase.samples).map(|(name, samples)| results.add_stream(label, name, samples)).collect();
    results.stream_diff(label, "streamed hit - whole hit", at[1], at[0]);
    results.stream_diff(label, "streamed hit - whole hit, long", at[3], at[2]);
    results.stream_diff(label, "streamed miss via the gateway - direct (added by the gateway)", at[4], at[5]);
    results.stream_diff(label, "streamed miss via the gateway - direct, long", at[6], at[7]);

    // One provider call per miss and per direct call (a reconnect may have resent one).
    let reconnects: u64 = clients.iter().map(|c| c.reconnects).sum();
    for (marker, series) in [("route-g1", 4), ("route-d1", 5), ("route-g2", 6), ("route-d2", 7)] {
        let calls = s.fake().calls(marker);
        let expected = warmup + phase.samples[series].wall_ms.len();
        if calls < expected || calls > expected + reconnects as usize {
            bail!("the fake upstream saw {calls} calls marked {marker}, expected one per request ({expected})");
        }
    }
    Ok(())
}

/// Seeds the answer to `prompt` in tier 1 and returns its text (read with `only-if-cached`).
fn seeded_text(stack: &Stack, prompt: &str) -> anyhow::Result<String> {
    let body = chat_body(MODEL, prompt);
    seed(stack, &body, "edge-kv")?;
    let hit = HttpRequest::post(&format!("{}{CHAT}", stack.url()))
        .header("authorization", &format!("Bearer {KEY_A}"))
        .header("content-type", "application/json")
        .header("cache-control", "only-if-cached")
        .body(body)
        .send()?;
    let answer: Value = hit.json().context("the seeded hit")?;
    let text = answer["choices"][0]["message"]["content"].as_str();
    text.map(str::to_owned).with_context(|| format!("the seeded hit has no text: {answer}"))
}
