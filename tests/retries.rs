//! What each kind of failure costs through the gateway at the default retry settings (one retry
//! per target), in virtual time: which failures are retried on the same target, which move to the
//! next target at once, what a stall costs, and a rejection of a translated request.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use llm_edge_cache::ports::{Clock, Memory};
use llm_edge_cache::routing::backoff::RetryPolicy;
use llm_edge_cache::routing::breaker::BreakerConfig;
use llm_edge_cache::routing::sharing::Counts;
use llm_edge_cache::testing::Scripted;
use serde_json::{json, Value};
use support::*;

/// The default retry settings (`config_with` turns retries off for the other host tests).
const DEFAULTS: [(&str, &str); 1] = [("RETRIES_PER_TARGET", "1")];

fn at_defaults(routes: &str, extra: &[(&str, &str)]) -> World {
    let mut vars = DEFAULTS.to_vec();
    vars.extend_from_slice(extra);
    let w = world(routes, &vars);
    assert_eq!(w.config.retry, RetryPolicy::default(), "these tests run at the defaults");
    w
}

/// Asks once; returns the reply and the virtual time it took.
fn timed(w: &World, content: &str) -> (Reply, u64) {
    let started = w.host.now_ms();
    let r = ask(w, content);
    (r, w.host.now_ms() - started)
}

/// A failure that says nothing of the next attempt: one call, then the next target, no waiting.
fn moves_on_at_once(failure: Scripted, extra: &[(&str, &str)]) {
    let w = at_defaults(&two_targets(), extra);
    let primary = scripted(&w, PRIMARY, vec![failure]);
    let secondary = scripted(&w, SECONDARY, vec![]);
    let (r, took) = timed(&w, "moves on");
    assert_eq!((r.status, r.header("x-provider")), (200, Some("secondary")));
    assert_eq!((*primary.borrow(), *secondary.borrow()), (1, 1), "no second call to the primary");
    assert_eq!(took, 0, "no backoff before the next target");
    assert_eq!(r.header("x-attempts"), Some("2"));
}

#[test]
fn a_rejected_gateway_key_moves_to_the_next_target_at_once() {
    moves_on_at_once(Scripted::json(401, &serde_json::from_str(&fixture("openai/error_401.json")).expect("json")), &[]);
    moves_on_at_once(status(403), &[]);
}

#[test]
fn a_malformed_answer_moves_to_the_next_target_at_once() {
    let malformed =
        Scripted::Respond { status: 200, headers: vec![], body: Bytes::from(fixture("openai/malformed.json")) };
    moves_on_at_once(malformed, &[]);
}

#[test]
fn a_too_large_answer_moves_to_the_next_target_at_once() {
    let big = json!({"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "x".repeat(4096)}, "finish_reason": "stop"}]});
    moves_on_at_once(Scripted::json(200, &big), &[("MAX_RESPONSE_BYTES", "1024")]);
}

#[test]
fn a_429_with_a_long_retry_after_moves_on_at_once() {
    let limited =
        Scripted::Respond { status: 429, headers: vec![("retry-after".into(), "30".into())], body: Bytes::from("{}") };
    moves_on_at_once(limited, &[]);
}

#[test]
fn a_server_error_is_retried_once_on_the_same_target_then_the_next() {
    let w = at_defaults(&two_targets(), &[]);
    let primary = scripted(&w, PRIMARY, vec![status(500), status(500)]);
    let secondary = scripted(&w, SECONDARY, vec![]);
    let (r, took) = timed(&w, "500 twice");
    assert_eq!((r.status, r.header("x-provider")), (200, Some("secondary")));
    assert_eq!((*primary.borrow(), *secondary.borrow()), (2, 1));
    assert_eq!(r.header("x-attempts"), Some("3"));
    assert!(took <= 250, "one jittered backoff within RETRY_BASE_MS, took {took} ms");
    let retries: Vec<_> = w.host.logs().into_iter().filter(|l| l.contains("upstream_failed")).collect();
    assert_eq!(retries.len(), 2, "each failed attempt is logged: {retries:?}");
}

#[test]
fn a_429_with_a_short_retry_after_waits_that_long_and_retries_the_same_target() {
    let w = at_defaults(&two_targets(), &[]);
    let limited = Scripted::Respond {
        status: 429,
        headers: vec![("retry-after-ms".into(), "200".into())],
        body: Bytes::from(fixture("openai/error_429.json")),
    };
    let primary = scripted(&w, PRIMARY, vec![limited]);
    let secondary = scripted(&w, SECONDARY, vec![]);
    let (r, took) = timed(&w, "short 429");
    assert_eq!((r.status, r.header("x-provider")), (200, Some("primary")));
    assert_eq!((*primary.borrow(), *secondary.borrow()), (2, 0));
    assert_eq!(took, 200, "waited exactly what the provider asked");
}

fn stalling_routes(timeout_ms: u64, with_fallback: bool) -> String {
    let mut targets = vec![
        json!({"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY, "model": "p", "timeout_ms": timeout_ms}),
    ];
    if with_fallback {
        targets.push(json!({"provider": "openai-compatible", "id": "secondary", "base_url": SECONDARY, "model": "s", "priority": 1}));
    }
    routes(Value::Array(targets))
}

fn stall() -> Scripted {
    Scripted::Delay { ms: 600_000, then: Box::new(ok("late")) }
}

#[test]
fn a_stall_moves_to_the_next_target_at_once_when_one_remains() {
    let w = at_defaults(&stalling_routes(1_500, true), &[]);
    let primary = scripted(&w, PRIMARY, vec![stall(), stall()]);
    let secondary = scripted(&w, SECONDARY, vec![]);
    let (r, took) = timed(&w, "stall then fallback");
    assert_eq!((r.status, r.header("x-provider")), (200, Some("secondary")));
    assert_eq!(took, 1_500, "one timeout, not two and a backoff");
    assert_eq!((*primary.borrow(), *secondary.borrow()), (1, 1));
}

#[test]
fn the_last_target_is_retried_after_a_stall_when_a_whole_attempt_fits() {
    let w = at_defaults(&stalling_routes(1_000, false), &[("UPSTREAM_DEADLINE_MS", "5000")]);
    let primary = scripted(&w, PRIMARY, vec![stall()]);
    let (r, took) = timed(&w, "stall then retry");
    assert_eq!((r.status, r.header("x-provider")), (200, Some("primary")));
    assert_eq!(*primary.borrow(), 2);
    assert!((1_000..=1_250).contains(&took), "a timeout and a jittered backoff, took {took} ms");
}

#[test]
fn the_last_target_is_not_retried_after_a_stall_when_the_deadline_leaves_no_whole_attempt() {
    let w = at_defaults(&stalling_routes(1_000, false), &[("UPSTREAM_DEADLINE_MS", "1500")]);
    let primary = scripted(&w, PRIMARY, vec![stall(), stall()]);
    let (r, took) = timed(&w, "stall, no room");
    r.assert_error(504, "upstream_timeout");
    assert_eq!(*primary.borrow(), 1);
    assert_eq!(took, 1_000, "no second attempt cut short by the deadline");
}

fn translated_routes() -> String {
    routes(json!([
        {"provider": "anthropic", "id": "anthropic", "base_url": ANTHROPIC, "model": "claude-sonnet-4-5", "key": "ANTHROPIC_KEY"},
        {"provider": "gemini", "id": "gemini", "base_url": GEMINI, "model": "gemini-2.5-flash", "key": "GEMINI_KEY", "priority": 1},
        {"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY, "model": "p-model", "key": "PRIMARY_KEY", "priority": 2}
    ]))
}

fn anthropic_400() -> Scripted {
    Scripted::json(400, &serde_json::from_str(&fixture("anthropic/error_400.json")).expect("json"))
}

fn gemini_400() -> Scripted {
    let body =
        json!({"error": {"code": 400, "message": "Invalid value at 'contents[0]'", "status": "INVALID_ARGUMENT"}});
    Scripted::json(400, &body)
}

/// The outcomes the breaker of `id` counts (none recorded: all zero).
fn counted(w: &World, id: &str) -> Counts {
    let breaker = w.host.health().breaker(id).unwrap_or_default();
    breaker.counted(w.host.now_ms(), &BreakerConfig::default())
}

#[test]
fn a_rejected_translation_tries_the_next_target_and_records_nothing() {
    let w = at_defaults(&translated_routes(), &[]);
    let anthropic = scripted(&w, ANTHROPIC, vec![anthropic_400()]);
    let gemini = scripted(&w, GEMINI, vec![gemini_ok()]);
    let (r, took) = timed(&w, "translated 400");
    assert_eq!((r.status, r.header("x-provider")), (200, Some("gemini")), "{:?}", r.body);
    assert_eq!(r.header("x-fallback"), Some("true"));
    assert_eq!((*anthropic.borrow(), *gemini.borrow(), took), (1, 1, 0), "no retry, no waiting");
    assert_eq!(counted(&w, "anthropic"), Counts::default(), "neither a success nor a failure");
}

#[test]
fn when_every_target_rejects_the_request_the_client_gets_the_first_rejection() {
    let two = routes(json!([
        {"provider": "anthropic", "id": "anthropic", "base_url": ANTHROPIC, "model": "claude-sonnet-4-5", "key": "ANTHROPIC_KEY"},
        {"provider": "gemini", "id": "gemini", "base_url": GEMINI, "model": "gemini-2.5-flash", "key": "GEMINI_KEY", "priority": 1}
    ]));
    let w = at_defaults(&two, &[]);
    let anthropic = scripted(&w, ANTHROPIC, vec![anthropic_400()]);
    let gemini = scripted(&w, GEMINI, vec![gemini_400()]);
    let (r, _) = timed(&w, "rejected everywhere");
    r.assert_error(400, "upstream_rejected_request");
    let error = &r.json()["error"];
    assert_eq!(error["type"], "invalid_request_error");
    let message = error["message"].as_str().expect("message");
    assert!(message.contains("Prefilling assistant messages"), "the first target's words: {message}");
    assert_eq!(r.header("x-attempts"), Some("2"));
    assert_eq!((*anthropic.borrow(), *gemini.borrow()), (1, 1));
    assert_eq!(counted(&w, "anthropic"), Counts::default());
    assert_eq!(counted(&w, "gemini"), Counts::default());
}

#[test]
fn a_rejection_by_a_target_that_saw_the_clients_request_stops_at_once() {
    let w = at_defaults(&two_targets(), &[]);
    let rejected = Scripted::json(400, &serde_json::from_str(&fixture("openai/error_400.json")).expect("json"));
    let primary = scripted(&w, PRIMARY, vec![rejected]);
    let secondary = scripted(&w, SECONDARY, vec![]);
    let (r, took) = timed(&w, "own 400");
    r.assert_error(400, "upstream_rejected_request");
    assert_eq!(r.json()["error"]["param"], "temperature");
    assert_eq!((*primary.borrow(), *secondary.borrow(), took), (1, 0, 0));
    assert_eq!(counted(&w, "primary"), Counts { ok: 1, fail: 0 }, "recorded: the target worked");
}

#[test]
fn after_a_rejected_translation_an_openai_rejection_is_the_one_returned() {
    let w = at_defaults(&translated_routes(), &[]);
    scripted(&w, ANTHROPIC, vec![anthropic_400()]);
    scripted(&w, GEMINI, vec![gemini_400()]);
    let rejected = Scripted::json(400, &serde_json::from_str(&fixture("openai/error_400.json")).expect("json"));
    let primary = scripted(&w, PRIMARY, vec![rejected]);
    let (r, _) = timed(&w, "rejected in the client's own terms");
    r.assert_error(400, "upstream_rejected_request");
    assert_eq!(r.json()["error"]["param"], "temperature", "the rejection of the client's own request");
    assert_eq!((*primary.borrow(), r.header("x-attempts")), (1, Some("3")));
}

#[test]
fn a_rejected_translation_then_a_failing_target_is_a_503_listing_both() {
    let two = routes(json!([
        {"provider": "anthropic", "id": "anthropic", "base_url": ANTHROPIC, "model": "claude-sonnet-4-5", "key": "ANTHROPIC_KEY"},
        {"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY, "model": "p-model", "key": "PRIMARY_KEY", "priority": 1}
    ]));
    let w = at_defaults(&two, &[]);
    scripted(&w, ANTHROPIC, vec![anthropic_400()]);
    scripted(&w, PRIMARY, vec![status(401)]);
    let (r, _) = timed(&w, "rejected, then down");
    r.assert_error(503, "all_providers_failed");
    assert_eq!(
        r.json()["error"]["failures"],
        json!([
            {"target": "anthropic", "code": "upstream_rejected_request"},
            {"target": "primary", "code": "upstream_auth_failed"}
        ])
    );
}

fn gemini_ok() -> Scripted {
    Scripted::json(
        200,
        &json!({"candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}, "finishReason": "STOP"}], "modelVersion": "gemini-2.5-flash"}),
    )
}
