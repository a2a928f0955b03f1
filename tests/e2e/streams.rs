//! Streams through the cache on the real runtimes: a streamed miss stored after its clean end (the
//! write spawned from the stream's end as work after the response) and replayed as a stream; one
//! entry serving both forms; a cut or a stall after the first byte ending with an in-band error
//! event and storing nothing; failover before the first content event; stale entries replayed as
//! streams and answering at the stale deadline; and the official OpenAI SDK reading replays.

use std::time::{Duration, Instant};

use devstack::node::run_script;
use devstack::stack::{Stack, KEY_A};
use devstack::HttpResponse;
use llm_edge_cache::providers::assemble::Assembler;
use serde_json::{json, Value};

use crate::client::*;
use crate::runner::{Ctx, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("streams::a_streamed_miss_is_stored_and_replayed", stored_and_replayed),
        ("streams::a_whole_answer_serves_a_stream_and_back", cross_serving),
        ("streams::a_cut_after_the_first_byte_is_an_error_event", cut_after_first_byte),
        ("streams::a_stall_after_the_first_byte_ends_at_the_idle_bound", stall_after_first_byte),
        ("streams::no_first_token_in_time_fails_over", first_token_failover),
        ("streams::a_stale_entry_is_replayed_as_a_stream", stale_replayed),
        ("streams::a_stale_entry_answers_at_the_stale_deadline", stale_deadline),
        ("streams::the_openai_sdk_reads_replays_like_whole_answers", openai_sdk),
    ]
}

fn streamed(marker: &str, include_usage: bool) -> String {
    let mut body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": marker}]});
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body.to_string()
}

/// The `data:` payloads of a stream.
fn events(r: &HttpResponse) -> Vec<String> {
    let text = r.text();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or(e).to_owned())
        .collect()
}

/// The completion a complete stream amounts to.
fn assembled(r: &HttpResponse) -> Value {
    let mut a = Assembler::new(1 << 20);
    a.push(&r.body);
    let answer = a.finish().unwrap_or_else(|e| panic!("not a complete stream ({e}): {}", r.text()));
    serde_json::from_slice(&answer.body).expect("json")
}

fn stream(s: &Stack, body: &str, headers: &[(&str, &str)]) -> HttpResponse {
    match read_stream(request(s, KEY_A, body, headers)) {
        Ok(r) => r,
        Err(partial) => panic!("the stream broke off at the HTTP level: {}", partial.text()),
    }
}

fn stored_and_replayed(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("sreplay");
    let miss = stream(s, &streamed(&m, false), &[]);
    assert_eq!(miss.status, 200, "{}", miss.text());
    assert!(header(&miss, "content-type").starts_with("text/event-stream"));
    assert_eq!((header(&miss, "x-cache"), header(&miss, "x-cache-tier")), ("MISS", "origin"));
    assert_eq!(header(&miss, "cache-status"), "redis; fwd=uri-miss, edge-kv; fwd=uri-miss");
    let data = events(&miss);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(data.iter().all(|d| !d.contains("usage")), "usage was not asked for: {data:?}");
    let sent = s.fake().calls_detail(&m);
    assert!(sent[0]["body"].as_str().is_some_and(|b| b.contains("\"include_usage\":true")), "asked for the cache");
    let answer = assembled(&miss);
    assert!(answer["choices"][0]["message"]["content"].as_str().is_some_and(|c| c.ends_with(&m)));

    // Stored by the stream's end, after the response: a whole request then hits.
    let hit = wait_cached(s, KEY_A, &body(&m));
    let whole = json_of(&hit);
    assert_eq!(whole["choices"][0]["message"]["content"], answer["choices"][0]["message"]["content"]);
    assert!(whole["usage"]["total_tokens"].as_u64().is_some(), "stored with usage: {whole}");

    for include_usage in [false, true] {
        let r = stream(s, &streamed(&m, include_usage), &[("x-request-id", "req-e2e-replay")]);
        assert_eq!((header(&r, "x-cache"), header(&r, "x-cache-tier")), ("HIT", "edge-kv"));
        assert!(header(&r, "content-type").starts_with("text/event-stream"));
        assert!(header(&r, "cache-status").starts_with("edge-kv; hit; ttl="));
        assert!(header(&r, "age").parse::<u64>().is_ok());
        assert_eq!(header(&r, "x-request-id"), "req-e2e-replay");
        assert_eq!(header(&r, "x-provider"), "openai");
        let replayed = assembled(&r);
        assert_eq!(replayed["choices"][0]["message"], whole["choices"][0]["message"]);
        assert_eq!(replayed["id"], whole["id"]);
        assert_eq!(replayed.get("usage").is_some(), include_usage);
    }
    assert_eq!(s.fake().calls(&m), 1);
}

fn cross_serving(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("scross");
    let whole = chat_a(s, &body(&m));
    assert_eq!(header(&whole, "x-cache"), "MISS");
    wait_cached(s, KEY_A, &body(&m));
    let r = stream(s, &streamed(&m, true), &[]);
    assert_eq!(header(&r, "x-cache"), "HIT");
    let replayed = assembled(&r);
    let original = json_of(&whole);
    assert_eq!(replayed["choices"][0]["message"], original["choices"][0]["message"]);
    assert_eq!(replayed["choices"][0]["finish_reason"], "stop");
    assert_eq!(replayed["usage"], original["usage"]);
    assert_eq!(s.fake().calls(&m), 1);
}

fn cut_after_first_byte(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("scut");
    // The role chunk and the first piece of text, then the connection drops.
    s.fake().add_rule(&m, json!([{"kind": "cut_stream", "after_chunks": 2}]), false);
    let r = stream(s, &streamed(&m, false), &[("x-request-id", "req-e2e-cut")]);
    assert_eq!((r.status, header(&r, "x-cache")), (200, "MISS"));
    let data = events(&r);
    assert!(!data.iter().any(|d| d == "[DONE]"), "never a made-up end: {data:?}");
    assert!(!data.iter().any(|d| d.contains("\"finish_reason\":\"")), "no made-up finish reason: {data:?}");
    let last: Value = serde_json::from_str(data.last().expect("events")).expect("the error event is JSON");
    assert_eq!(last["error"]["code"], "upstream_stream_error", "{data:?}");
    assert_eq!(last["error"]["type"], "api_error");
    assert_eq!(data.len(), 3, "two events from the provider, then the error: {data:?}");
    std::thread::sleep(Duration::from_millis(700));
    assert_error(&chat(s, KEY_A, &body(&m), &[("cache-control", "only-if-cached")]), 504, "cache_miss");
    let log = gateway_log(s);
    assert!(
        log.lines().any(|l| l.contains("\"stream_failed\"") && l.contains("req-e2e-cut")),
        "logged with the request id:\n{log}"
    );
    // Cut before any content: nothing was shown, so it is an attempt's failure (one target here).
    let early = marker("scut-early");
    s.fake().add_rule(&early, json!([{"kind": "cut_stream", "after_chunks": 1}]), false);
    let r = chat(s, KEY_A, &streamed(&early, false), &[]);
    assert_error(&r, 502, "upstream_stream_error");
}

fn stall_after_first_byte(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("sstall");
    s.fake().add_rule(&m, json!([{"kind": "stall_stream", "after_chunks": 3}]), false);
    let started = Instant::now();
    let r = stream(s, &streamed(&m, false), &[]);
    let elapsed = started.elapsed();
    let data = events(&r);
    let last: Value = serde_json::from_str(data.last().expect("events")).expect("json");
    assert_eq!(last["error"]["code"], "upstream_timeout", "{data:?}");
    assert!(!data.iter().any(|d| d == "[DONE]"));
    assert!(
        elapsed >= Duration::from_millis(1_400) && elapsed < Duration::from_secs(5),
        "1.5 s idle bound: {elapsed:?}"
    );
}

fn first_token_failover(ctx: &Ctx) {
    let s = ctx.routed;
    let m = marker("sttft");
    // The primary sends its role chunk at once, then nothing: it has 1 s to show content.
    s.fake().add_rule("\"model\":\"r11-primary\"", json!([{"kind": "stall_stream", "after_chunks": 1}]), true);
    let body = json!({"model": "r-ttft", "stream": true, "messages": [{"role": "user", "content": m}]}).to_string();
    let started = Instant::now();
    let r = stream(s, &body, &[]);
    let elapsed = started.elapsed();
    assert_eq!(
        (r.status, header(&r, "x-provider"), header(&r, "x-fallback")),
        (200, "r11-secondary", "true"),
        "{}",
        r.text()
    );
    let answer = assembled(&r);
    assert!(answer["choices"][0]["message"]["content"].as_str().is_some_and(|c| c.ends_with(&m)));
    assert_eq!(answer["model"], "r11-secondary", "nothing of the primary reached the client");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2_500), "{elapsed:?}");
}

fn stale_replayed(ctx: &Ctx) {
    let s = ctx.own_stack(&[("CACHE_FRESH_TTL_SECONDS", "1")]);
    let m = marker("sstale");
    let original = chat_a(&s, &body(&m));
    wait_cached(&s, KEY_A, &body(&m));
    std::thread::sleep(Duration::from_millis(1_300));
    s.fake().add_rule(&m, json!([{"kind": "status", "status": 500}]), true);
    let r = stream(&s, &streamed(&m, false), &[]);
    assert_eq!((r.status, header(&r, "x-cache")), (200, "STALE"), "{}", r.text());
    assert!(header(&r, "content-type").starts_with("text/event-stream"));
    assert_eq!(header(&r, "x-cache-stale-reason"), "upstream_server_error");
    assert!(header(&r, "cache-status").contains("detail=stale-if-error"));
    assert_eq!(assembled(&r)["choices"][0]["message"], json_of(&original)["choices"][0]["message"]);
}

fn stale_deadline(ctx: &Ctx) {
    let s = ctx.own_stack(&[("CACHE_FRESH_TTL_SECONDS", "1"), ("STALE_DEADLINE_MS", "1500")]);
    let m = marker("sdeadline");
    chat_a(&s, &body(&m));
    wait_cached(&s, KEY_A, &body(&m));
    std::thread::sleep(Duration::from_millis(1_300));
    // The provider now takes 15 s; the shared timeout would give up after 3 s.
    s.fake().add_rule(&m, json!([{"kind": "ok", "delay_ms": 15000}]), true);
    for stream_it in [false, true] {
        let started = Instant::now();
        let r = if stream_it { stream(&s, &streamed(&m, false), &[]) } else { chat_a(&s, &body(&m)) };
        let elapsed = started.elapsed();
        assert_eq!((r.status, header(&r, "x-cache")), (200, "STALE"), "stream {stream_it}: {}", r.text());
        assert_eq!(header(&r, "x-cache-stale-reason"), "upstream_timeout");
        assert!(
            elapsed >= Duration::from_millis(1_400) && elapsed < Duration::from_millis(2_800),
            "stream {stream_it}: answered at the 1.5 s stale deadline, took {elapsed:?}"
        );
    }
}

fn openai_sdk(ctx: &Ctx) {
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let runs = [
        (ctx.shared, json!([{"model": "gpt-4o-mini", "content": marker("sdk-text")}])),
        (
            ctx.routed,
            json!([{"model": "r-claude", "content": format!("TOOL_CALL {}", marker("sdk-tool")), "tools": tools}]),
        ),
    ];
    for (stack, cases) in runs {
        let env = [("GATEWAY_URL", stack.url()), ("GATEWAY_KEY", KEY_A.to_owned()), ("CASES", cases.to_string())];
        let unset = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_LOG"];
        let out = run_script("openai-stream-replay-check.mjs", "openai", &env, &unset, Duration::from_secs(90))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.status.success(), "the SDK's checks failed:\n{}\n{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("stream replay checks passed"), "{}\n{}", out.stdout, out.stderr);
    }
}
