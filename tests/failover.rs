//! Routing through the gateway on the in-memory host, in virtual time: fallback on each kind of
//! failure, retries with backoff, 429 cool-downs, timeouts and the deadline, the breaker opening
//! and recovering, stale-if-error, the 503 listing, translation and its caching.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use llm_edge_cache::ports::Clock;
use llm_edge_cache::testing::Scripted;
use serde_json::{json, Value};
use support::*;

#[test]
fn a_server_error_falls_back_to_the_next_target() {
    let w = world(&two_targets(), &[]);
    let primary = scripted(&w, PRIMARY, vec![status(500)]);
    let secondary = scripted(&w, SECONDARY, vec![]);
    let r = ask(&w, "fallback");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], format!("from {SECONDARY}"));
    assert_eq!(r.header("x-provider"), Some("secondary"));
    assert_eq!(r.header("x-fallback"), Some("true"));
    assert_eq!(r.header("x-attempts"), Some("2"));
    assert_eq!((*primary.borrow(), *secondary.borrow()), (1, 1));
    let sent = w.host.sent_to(SECONDARY);
    assert_eq!(sent[0].headers()["authorization"], "Bearer sk-secondary", "each target its own key");
    let body: Value = serde_json::from_slice(sent[0].body()).expect("json");
    assert_eq!(body["model"], "s-model", "each target its own model");
}

#[test]
fn retries_back_off_then_succeed_on_the_same_target() {
    let w = world(&two_targets(), &[("RETRIES_PER_TARGET", "2"), ("RETRY_BASE_MS", "400")]);
    let primary = scripted(&w, PRIMARY, vec![status(503), status(502)]);
    let secondary = scripted(&w, SECONDARY, vec![]);
    let started = w.host.now_ms();
    let r = ask(&w, "retry");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-provider"), Some("primary"));
    assert_eq!(r.header("x-attempts"), Some("3"));
    assert_eq!(r.header("x-fallback"), None);
    assert_eq!((*primary.borrow(), *secondary.borrow()), (3, 0));
    let waited = w.host.now_ms() - started;
    assert!(waited <= 400 + 800, "two jittered waits within their ceilings, waited {waited} ms");
}

#[test]
fn retry_after_on_a_server_error_is_honoured() {
    let w = world(&two_targets(), &[("RETRIES_PER_TARGET", "1")]);
    let slow_down = Scripted::Respond {
        status: 503,
        headers: vec![("retry-after".into(), "2".into())],
        body: Bytes::from(r#"{"error":{"message":"busy"}}"#),
    };
    scripted(&w, PRIMARY, vec![slow_down]);
    let started = w.host.now_ms();
    let r = ask(&w, "retry-after");
    assert_eq!(r.header("x-provider"), Some("primary"));
    assert_eq!(w.host.now_ms() - started, 2_000, "waited exactly what the provider asked");
}

#[test]
fn a_429_moves_on_at_once_and_cools_the_target_down() {
    let w = world(&two_targets(), &[("RETRIES_PER_TARGET", "3")]);
    let limited = Scripted::Respond {
        status: 429,
        headers: vec![("retry-after".into(), "20".into())],
        body: Bytes::from(fixture("openai/error_429.json")),
    };
    let primary = scripted(&w, PRIMARY, vec![limited]);
    let secondary = scripted(&w, SECONDARY, vec![]);
    let started = w.host.now_ms();
    let r = ask(&w, "429 a");
    assert_eq!((r.status, r.header("x-provider")), (200, Some("secondary")));
    assert_eq!(w.host.now_ms(), started, "no waiting on a rate-limited target");
    assert_eq!(*primary.borrow(), 1, "no retry against a 429");
    w.host.run_background();
    assert!(w.upstash.zscore("llmc1:health:primary:marks", "cool_until").is_some(), "the cool-down was shared");
    w.host.advance(19_000);
    let r = ask(&w, "429 b");
    assert_eq!(r.header("x-provider"), Some("secondary"));
    assert_eq!(*primary.borrow(), 1, "skipped while cooling down");
    w.host.advance(1_000);
    let r = ask(&w, "429 c");
    assert_eq!(r.header("x-provider"), Some("primary"), "back after the advertised time");
    assert_eq!((*primary.borrow(), *secondary.borrow()), (2, 2));
}

#[test]
fn a_stalled_target_times_out_and_the_next_answers_within_the_deadline() {
    let routes = routes(json!([
        {"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY, "model": "p", "timeout_ms": 1000},
        {"provider": "openai-compatible", "id": "secondary", "base_url": SECONDARY, "model": "s", "priority": 1}
    ]));
    let w = world(&routes, &[]);
    scripted(&w, PRIMARY, vec![Scripted::Delay { ms: 60_000, then: Box::new(ok("late")) }]);
    scripted(&w, SECONDARY, vec![]);
    let started = w.host.now_ms();
    let r = ask(&w, "stall");
    assert_eq!((r.status, r.header("x-provider")), (200, Some("secondary")));
    assert_eq!(w.host.now_ms() - started, 1_000, "gave up on the primary at its timeout");
}

#[test]
fn the_deadline_bounds_the_whole_request() {
    let routes = routes(json!([
        {"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY, "model": "p", "timeout_ms": 1000},
        {"provider": "openai-compatible", "id": "secondary", "base_url": SECONDARY, "model": "s", "priority": 1},
        {"provider": "openai-compatible", "id": "tertiary", "base_url": "http://tertiary.test/v1", "model": "t", "priority": 2}
    ]));
    let w = world(&routes, &[("UPSTREAM_DEADLINE_MS", "1500")]);
    scripted(&w, PRIMARY, vec![Scripted::Delay { ms: 60_000, then: Box::new(ok("late")) }]);
    scripted(&w, SECONDARY, vec![Scripted::Delay { ms: 60_000, then: Box::new(ok("late")) }]);
    let tertiary = scripted(&w, "http://tertiary.test/v1", vec![]);
    let started = w.host.now_ms();
    let r = ask(&w, "deadline");
    r.assert_error(503, "all_providers_failed");
    assert_eq!(w.host.now_ms() - started, 1_500, "the second attempt got only what was left");
    let failures = &r.json()["error"]["failures"];
    assert_eq!(
        failures,
        &json!([
            {"target": "primary", "code": "upstream_timeout"},
            {"target": "secondary", "code": "upstream_timeout"},
            {"target": "tertiary", "code": "deadline_exceeded"}
        ])
    );
    assert_eq!(*tertiary.borrow(), 0);
}

#[test]
fn a_rejected_gateway_key_is_a_gateway_fault_and_falls_back() {
    let w = world(&two_targets(), &[]);
    scripted(
        &w,
        PRIMARY,
        vec![Scripted::json(401, &serde_json::from_str(&fixture("openai/error_401.json")).expect("json"))],
    );
    scripted(&w, SECONDARY, vec![]);
    let r = ask(&w, "401");
    assert_eq!((r.status, r.header("x-provider")), (200, Some("secondary")));
}

#[test]
fn the_clients_bad_request_is_returned_without_fallback() {
    let w = world(&two_targets(), &[]);
    scripted(
        &w,
        PRIMARY,
        vec![Scripted::json(400, &serde_json::from_str(&fixture("openai/error_400.json")).expect("json"))],
    );
    let secondary = scripted(&w, SECONDARY, vec![]);
    let r = ask(&w, "400");
    r.assert_error(400, "upstream_rejected_request");
    assert_eq!(r.json()["error"]["param"], "temperature");
    assert_eq!(*secondary.borrow(), 0);
}

#[test]
fn model_not_found_for_a_configured_model_is_the_gateways_fault() {
    let w = world(&two_targets(), &[]);
    scripted(
        &w,
        PRIMARY,
        vec![Scripted::json(404, &serde_json::from_str(&fixture("openai/error_404_model.json")).expect("json"))],
    );
    scripted(&w, SECONDARY, vec![]);
    assert_eq!(ask(&w, "404").header("x-provider"), Some("secondary"));
}

#[test]
fn all_down_serves_stale_or_lists_every_failure() {
    let w = world(&two_targets(), &[]);
    scripted(&w, PRIMARY, vec![]);
    assert_eq!(ask(&w, "cached").status, 200);
    w.host.run_background();
    w.host.advance(8 * 86_400_000);
    w.host.route(PRIMARY, |_| status(500));
    w.host.route(SECONDARY, |_| Scripted::Fail("connection refused".into()));
    let stale = ask(&w, "cached");
    assert_eq!((stale.status, stale.header("x-cache")), (200, Some("STALE")));
    assert_eq!(stale.header("x-cache-stale-reason"), Some("all_providers_failed"));
    assert_eq!(stale.header("x-provider"), Some("primary"), "who produced the stale answer");

    let none = ask(&w, "never cached");
    none.assert_error(503, "all_providers_failed");
    let v = none.json();
    assert_eq!(
        v["error"]["failures"],
        json!([
            {"target": "primary", "code": "upstream_server_error"},
            {"target": "secondary", "code": "upstream_unreachable"}
        ])
    );
    let text = String::from_utf8_lossy(&none.body);
    for leak in ["primary.test", "secondary.test", "sk-primary", "sk-secondary", "status 500"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

#[test]
fn the_breaker_opens_stops_calls_then_recovers() {
    let config = [("BREAKER_MIN_REQUESTS", "4"), ("BREAKER_ERROR_PERCENT", "50"), ("BREAKER_OPEN_SECONDS", "30")];
    let w = world(&two_targets(), &config);
    let failing = Rc::new(RefCell::new(true));
    let primary_calls = Rc::new(RefCell::new(0));
    let (f, c) = (failing.clone(), primary_calls.clone());
    w.host.route(PRIMARY, move |_| {
        *c.borrow_mut() += 1;
        if *f.borrow() {
            status(500)
        } else {
            ok("primary")
        }
    });
    scripted(&w, SECONDARY, vec![]);
    for i in 0..4 {
        assert_eq!(ask(&w, &format!("b{i}")).header("x-provider"), Some("secondary"));
    }
    assert_eq!(*primary_calls.borrow(), 4);
    assert!(w.host.logs().iter().any(|l| l.contains("breaker_opened")));
    for i in 4..10 {
        let r = ask(&w, &format!("b{i}"));
        assert_eq!(r.header("x-attempts"), Some("1"), "the open target is skipped, not tried");
    }
    assert_eq!(*primary_calls.borrow(), 4, "no calls while open");
    w.host.run_background();
    assert!(w.upstash.zscore("llmc1:health:primary:marks", "open_until").is_some(), "the opening was shared");

    *failing.borrow_mut() = false;
    w.host.advance(30_000);
    assert_eq!(ask(&w, "probe").header("x-provider"), Some("primary"), "a half-open probe succeeds");
    assert_eq!(ask(&w, "closed").header("x-provider"), Some("primary"), "and the breaker is closed");
    assert_eq!(*primary_calls.borrow(), 6);
}

#[test]
fn an_unrouted_model_is_a_404() {
    let w = world(&two_targets(), &[]);
    let r = w.chat(&body_with("x"), &[]);
    r.assert_error(404, "model_not_found");
    assert_eq!(r.json()["error"]["param"], "model");
}

#[test]
fn weights_spread_requests_over_same_priority_targets() {
    let routes = routes(json!([
        {"provider": "openai-compatible", "id": "heavy", "base_url": PRIMARY, "model": "p", "weight": 3},
        {"provider": "openai-compatible", "id": "light", "base_url": SECONDARY, "model": "s", "weight": 1}
    ]));
    let w = world(&routes, &[]);
    let heavy = scripted(&w, PRIMARY, vec![]);
    let light = scripted(&w, SECONDARY, vec![]);
    for i in 0..400 {
        assert_eq!(ask(&w, &format!("w{i}")).status, 200);
    }
    let share = *heavy.borrow() as f64 / 400.0;
    assert!((share - 0.75).abs() < 0.08, "heavy got {share}, light {}", light.borrow());
}

fn anthropic_routes() -> String {
    routes(json!([
        {"provider": "anthropic", "base_url": ANTHROPIC, "model": "claude-sonnet-4-5", "key": "ANTHROPIC_KEY", "max_tokens": 512},
        {"provider": "gemini", "base_url": GEMINI, "model": "gemini-2.5-flash", "key": "GEMINI_KEY", "priority": 1}
    ]))
}

#[test]
fn anthropic_answers_are_translated_cached_and_served_as_openai() {
    let w = world(&anthropic_routes(), &[]);
    w.host.route(ANTHROPIC, |_| {
        Scripted::json(
            200,
            &json!({
                "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                "content": [{"type": "text", "text": "Bonjour"}], "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 3}
            }),
        )
    });
    let body = json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hello"}
    ]});
    let r = w.chat(&body.to_string(), &[]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Bonjour");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 15);
    assert_eq!(r.header("x-provider"), Some("anthropic:claude-sonnet-4-5"));
    let sent = &w.host.sent_to(ANTHROPIC)[0];
    assert_eq!(sent.uri().to_string(), format!("{ANTHROPIC}/messages"));
    assert_eq!(sent.headers()["x-api-key"], "sk-ant-key");
    assert_eq!(sent.headers()["anthropic-version"], "2023-06-01");
    let wire: Value = serde_json::from_slice(sent.body()).expect("json");
    assert_eq!(wire["system"], "Answer in French.");
    assert_eq!(wire["max_tokens"], 512, "the target's default, since the client sent none");
    assert_eq!(wire["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]));
    w.host.run_background();
    let hit = w.chat(&body.to_string(), &[]);
    assert_eq!((hit.header("x-cache"), hit.body.clone()), (Some("HIT"), r.body.clone()), "cached in OpenAI form");
}

#[test]
fn a_target_that_cannot_express_the_request_is_skipped_with_a_reason() {
    let w = world(&anthropic_routes(), &[]);
    let gemini_calls = Rc::new(RefCell::new(0));
    let c = gemini_calls.clone();
    w.host.route(GEMINI, move |_| {
        *c.borrow_mut() += 1;
        Scripted::json(200, &json!({"candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}, "finishReason": "STOP"}], "modelVersion": "gemini-2.5-flash"}))
    });
    // Anthropic has no seed; Gemini has.
    let body = json!({"model": "gpt-4o", "seed": 3, "messages": [{"role": "user", "content": "x"}]});
    let r = w.chat(&body.to_string(), &[]);
    assert_eq!((r.status, r.header("x-provider")), (200, Some("gemini:gemini-2.5-flash")));
    assert_eq!(*gemini_calls.borrow(), 1);
    assert!(w.host.sent_to(ANTHROPIC).is_empty());
    // Neither has logit_bias: a clear 400 naming the field, nothing sent.
    let body =
        json!({"model": "gpt-4o", "logit_bias": {"50256": -100}, "messages": [{"role": "user", "content": "x"}]});
    let r = w.chat(&body.to_string(), &[]);
    r.assert_error(400, "unsupported_parameter");
    assert_eq!(r.json()["error"]["param"], "logit_bias");
    assert_eq!(*gemini_calls.borrow(), 1);
}

#[test]
fn a_streaming_request_falls_back_before_its_first_byte() {
    let w = world(&two_targets(), &[]);
    scripted(&w, PRIMARY, vec![status(500)]);
    let sse = fixture("openai/stream_ok.sse");
    let chunks: Vec<Result<Bytes, String>> =
        sse.split_inclusive("\n\n").map(|c| Ok(Bytes::from(c.to_owned()))).collect();
    let cell = RefCell::new(Some(chunks));
    w.host.route(SECONDARY, move |_| Scripted::Stream {
        status: 200,
        chunks: cell.borrow_mut().take().expect("one call"),
    });
    let r = w.chat(
        &json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "s"}]}).to_string(),
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!((r.header("x-provider"), r.header("x-fallback")), (Some("secondary"), Some("true")));
    assert_eq!(r.body, Bytes::from(sse));
}

#[test]
fn a_single_resting_target_says_why_and_when() {
    let single = routes(json!([{"provider": "openai-compatible", "id": "only", "base_url": PRIMARY, "model": "p"}]));
    let w = world(&single, &[]);
    let limited =
        Scripted::Respond { status: 429, headers: vec![("retry-after".into(), "9".into())], body: Bytes::from("{}") };
    let calls = scripted(&w, PRIMARY, vec![limited]);
    let first = ask(&w, "r1");
    first.assert_error(503, "upstream_rate_limited");
    assert_eq!(first.header("retry-after"), Some("9"));
    w.host.advance(4_000);
    let second = ask(&w, "r2");
    second.assert_error(503, "upstream_rate_limited");
    assert_eq!(second.header("retry-after"), Some("5"), "what is left of the cool-down");
    assert_eq!(second.json()["error"]["failures"], json!([{"target": "only", "code": "cooling_down"}]));
    assert_eq!(*calls.borrow(), 1);
}

/// Spin: every request starts in a fresh instance, so the breaker's window can only accumulate
/// through Redis, read before routing and written after.
#[test]
fn the_breaker_works_through_redis_when_memory_does_not_last() {
    let config = [("BREAKER_MIN_REQUESTS", "4"), ("BREAKER_ERROR_PERCENT", "50"), ("BREAKER_OPEN_SECONDS", "30")];
    let w = world(&two_targets(), &config);
    w.host.set_memory_fleeting(true);
    let primary = scripted(&w, PRIMARY, (0..100).map(|_| status(500)).collect());
    scripted(&w, SECONDARY, vec![]);
    let mut providers = Vec::new();
    for i in 0..8 {
        w.host.forget_memory();
        providers.push(ask(&w, &format!("fleeting {i}")).header("x-provider").map(str::to_owned));
        w.host.run_background();
    }
    assert!(providers.iter().all(|p| p.as_deref() == Some("secondary")));
    assert_eq!(*primary.borrow(), 4, "after 4 failures in fresh instances the breaker rests the target");
    w.upstash.set_down(true);
    w.host.forget_memory();
    assert_eq!(ask(&w, "redis down").header("x-provider"), Some("secondary"), "a Redis outage does not stop routing");
    assert_eq!(*primary.borrow(), 5, "without Redis a fresh instance knows nothing and tries the primary");
}
