//! Provider behaviour seen through the gateway on the real runtime: streams passed through (and
//! cut or stalled), timeouts, rate limits, server and client errors, malformed answers.

use std::time::{Duration, Instant};

use devstack::stack::KEY_A;
use serde_json::json;

use crate::client::*;
use crate::runner::{Ctx, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("upstream::stream_is_passed_through_uncached", stream_passthrough),
        ("upstream::a_cut_stream_reaches_the_client_as_cut", stream_cut),
        ("upstream::a_stalled_stream_ends_at_the_idle_timeout", stream_stalled),
        ("upstream::a_slow_provider_times_out", provider_timeout),
        ("upstream::rate_limits_become_503_with_retry_after", rate_limited),
        ("upstream::provider_errors_are_named_not_echoed", provider_errors),
        ("upstream::failed_answers_are_never_stored", failures_not_stored),
    ]
}

fn stream_passthrough(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("stream");
    for round in 1..=2 {
        let r = read_stream(request(s, KEY_A, &stream_body(&m), &[])).expect("complete stream");
        assert_eq!(r.status, 200);
        assert!(header(&r, "content-type").starts_with("text/event-stream"));
        assert_eq!(header(&r, "x-cache"), "BYPASS");
        assert_eq!(header(&r, "cache-status"), "redis; fwd=bypass, edge-kv; fwd=bypass");
        let text = r.text();
        let events: Vec<&str> = text.split("\n\n").filter(|e| e.starts_with("data: ")).collect();
        assert!(events.len() >= 4, "round {round}: {text}");
        assert_eq!(*events.last().expect("events"), "data: [DONE]");
        let said: String = events[..events.len() - 1]
            .iter()
            .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e["data: ".len()..]).ok())
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
            .collect();
        assert!(said.ends_with(&m), "round {round}: {said}");
    }
    assert_eq!(s.fake().calls(&m), 2, "streams are not cached");
}

fn stream_cut(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("cut");
    s.fake().add_rule(&m, json!([{"kind": "cut_stream", "after_chunks": 2}]), false);
    match read_stream(request(s, KEY_A, &stream_body(&m), &[])) {
        Err(partial) => assert!(!partial.text().contains("[DONE]")),
        Ok(r) => panic!("a cut stream must not look complete: {}", r.text()),
    }
}

fn stream_stalled(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("stall");
    s.fake().add_rule(&m, json!([{"kind": "slow_stream", "chunk_delay_ms": 6000}]), false);
    let started = Instant::now();
    let outcome = read_stream(request(s, KEY_A, &stream_body(&m), &[]));
    let elapsed = started.elapsed();
    let text = match &outcome {
        Ok(r) | Err(r) => r.text(),
    };
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(outcome.is_err(), "the stream must end as broken, not as complete");
    assert!(elapsed < Duration::from_secs(5), "ended by the 1.5 s idle bound, took {elapsed:?}");
}

fn provider_timeout(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("slow");
    s.fake().add_rule(&m, json!([{"kind": "ok", "delay_ms": 15000}]), false);
    let started = Instant::now();
    let r = chat_a(s, &body(&m));
    let elapsed = started.elapsed();
    assert_error(&r, 504, "upstream_timeout");
    assert!(elapsed >= Duration::from_millis(2_900) && elapsed < Duration::from_secs(6), "{elapsed:?}");
}

fn rate_limited(ctx: &Ctx) {
    // A 429 cools the only target down: that must not leak into the shared stack's scenarios.
    let s = ctx.own_stack(&[]);
    let m = marker("429");
    s.fake().add_rule(&m, json!([{"kind": "status", "status": 429, "retry_after": "7"}]), false);
    let r = chat_a(&s, &body(&m));
    assert_error(&r, 503, "upstream_rate_limited");
    assert_eq!(header(&r, "retry-after"), "7");
    // While it cools down the target is not called at all.
    let other = marker("429-cooling");
    let r = chat_a(&s, &body(&other));
    assert_error(&r, 503, "upstream_rate_limited");
    assert_eq!(s.fake().calls(&other), 0, "skipped while cooling down");
    let retry_after: u64 = header(&r, "retry-after").parse().expect("seconds");
    assert!((1..=7).contains(&retry_after), "{retry_after}");
}

fn provider_errors(ctx: &Ctx) {
    let s = ctx.shared;
    let cases = [
        (json!({"kind": "status", "status": 500}), 502, "upstream_server_error"),
        (json!({"kind": "status", "status": 529}), 502, "upstream_server_error"),
        (json!({"kind": "status", "status": 401}), 502, "upstream_auth_failed"),
        (json!({"kind": "malformed"}), 502, "upstream_malformed_response"),
        (json!({"kind": "status", "status": 400}), 400, "upstream_rejected_request"),
    ];
    for (action, status, code) in cases {
        let m = marker("err");
        s.fake().add_rule(&m, json!([action]), false);
        let r = chat_a(s, &body(&m));
        assert_error(&r, status, code);
        assert_eq!(header(&r, "x-cache"), "MISS");
    }
}

fn failures_not_stored(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("not-stored");
    let b = body(&m);
    s.fake().add_rule(&m, json!([{"kind": "malformed"}, {"kind": "status", "status": 500}]), false);
    chat_a(s, &b);
    chat_a(s, &b);
    std::thread::sleep(Duration::from_millis(500));
    assert_error(&chat(s, KEY_A, &b, &[("cache-control", "only-if-cached")]), 504, "cache_miss");
    // The third call succeeds (the rule is used up) and is stored.
    assert_eq!(chat_a(s, &b).status, 200);
    wait_cached(s, KEY_A, &b);
    assert_eq!(s.fake().calls(&m), 3);
}
