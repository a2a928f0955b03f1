//! Provider behaviour seen through the gateway on the real runtime: a stream stalled before its
//! first content, timeouts, rate limits, server and client errors, malformed answers (streams
//! through the cache: streams.rs).

use std::time::{Duration, Instant};

use devstack::stack::KEY_A;
use serde_json::json;

use crate::client::*;
use crate::runner::{Ctx, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("upstream::a_stream_stalled_before_its_first_content_times_out", stream_stalled),
        ("upstream::a_slow_provider_times_out", provider_timeout),
        ("upstream::rate_limits_become_503_with_retry_after", rate_limited),
        ("upstream::provider_errors_are_named_not_echoed", provider_errors),
        ("upstream::failed_answers_are_never_stored", failures_not_stored),
    ]
}

/// The role chunk at once, then 6 s of silence: nothing was shown yet, so the attempt fails by
/// the 1.5 s idle bound and the client gets the one target's timeout as a whole error.
fn stream_stalled(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("stall");
    s.fake().add_rule(&m, json!([{"kind": "slow_stream", "chunk_delay_ms": 6000}]), false);
    let started = Instant::now();
    let r = chat(s, KEY_A, &stream_body(&m), &[]);
    let elapsed = started.elapsed();
    assert_error(&r, 504, "upstream_timeout");
    assert!(elapsed >= Duration::from_millis(1_400) && elapsed < Duration::from_secs(5), "took {elapsed:?}");
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
