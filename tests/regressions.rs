//! Regressions: defects found in review, each proven by its test failing before the fix.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use llm_edge_cache::api::chat::ChatRequest;
use llm_edge_cache::cache::entry::Entry;
use llm_edge_cache::cache::key::CacheKey;
use llm_edge_cache::providers::stream::SseTranslator;
use llm_edge_cache::providers::{build_request, parse_success};
use llm_edge_cache::routing::table::ProviderKind;
use llm_edge_cache::testing::Scripted;
use serde_json::{json, Value};
use support::*;

/// A deadline that runs out as a target's half-open probe comes due must not strand that target:
/// the deadline is checked before a probe is claimed, and a probe whose outcome never comes is
/// given up after an open period. (A claimed-then-unused probe used to leave the target skipped
/// as `circuit_open` for the life of the isolate.)
#[test]
fn a_probe_claimed_at_the_deadline_does_not_strand_the_target() {
    let secondary =
        json!({"provider": "openai-compatible", "id": "secondary", "base_url": SECONDARY, "model": "s", "priority": 1});
    let routes = json!({
        "gpt-4o": [
            {"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY, "model": "p"},
            secondary.clone()
        ],
        "b-only": [secondary]
    })
    .to_string();
    let w = World::with_config(config_with(&[
        ("ROUTES", routes.as_str()),
        ("BREAKER_MIN_REQUESTS", "1"),
        ("BREAKER_ERROR_PERCENT", "50"),
        ("BREAKER_OPEN_SECONDS", "30"),
        ("UPSTREAM_DEADLINE_MS", "1000"),
    ]));
    // 1. Both targets fail once: both breakers open.
    w.host.route(PRIMARY, |_| status(500));
    w.host.route(SECONDARY, |_| status(500));
    let ask = |model: &str, content: &str| {
        w.chat(&json!({"model": model, "messages": [{"role": "user", "content": content}]}).to_string(), &[])
    };
    ask("gpt-4o", "open").assert_error(503, "all_providers_failed");

    // 2. After the open period, the primary's probe stalls until the deadline; the secondary's
    //    probe is claimed but the deadline has passed, so it is never sent.
    w.host.advance(31_000);
    w.host.route(PRIMARY, |_| Scripted::Delay { ms: 60_000, then: Box::new(ok("late")) });
    w.host.route(SECONDARY, |_| ok("secondary"));
    let r = ask("gpt-4o", "probe");
    assert_eq!(
        r.json()["error"]["failures"],
        json!([{"target": "primary", "code": "upstream_timeout"}, {"target": "secondary", "code": "deadline_exceeded"}])
    );

    // 3. Ten minutes later the secondary is healthy and its open period is long over: it must be
    //    tried (half-open probe). It is skipped as circuit_open forever instead.
    w.host.advance(600_000);
    let later = ask("b-only", "much later");
    assert_eq!(
        (later.status, later.header("x-provider")),
        (200, Some("secondary")),
        "secondary is never tried again; body {}",
        String::from_utf8_lossy(&later.body)
    );
}

/// `"max_completion_tokens": null` (clients that write unset fields as null) means "not given":
/// the client's `max_tokens` still reaches Anthropic and Gemini (it used to be hidden by the null).
#[test]
fn a_null_max_completion_tokens_keeps_the_clients_max_tokens() {
    let request = ChatRequest::parse(
        json!({"model": "gpt-4o", "max_completion_tokens": null, "max_tokens": 100,
               "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
        .as_bytes(),
    )
    .expect("valid");
    let anthropic = wire(&build_request(&target(ProviderKind::Anthropic, "c"), &request).expect("builds"));
    let gemini = wire(&build_request(&target(ProviderKind::Gemini, "g"), &request).expect("builds"));
    assert_eq!(
        (anthropic["max_tokens"].clone(), gemini["generationConfig"]["maxOutputTokens"].clone()),
        (json!(100), json!(100)),
        "anthropic body {anthropic}; gemini body {gemini}"
    );
}

/// A streamed Anthropic answer reports the same `prompt_tokens` as the same answer not streamed:
/// prompt-cache writes and reads included (the stream used to count `input_tokens` alone).
#[test]
fn anthropic_stream_usage_counts_cached_prompt_tokens() {
    let t = target(ProviderKind::Anthropic, "c");
    let usage = json!({"input_tokens": 5, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 100, "output_tokens": 1});
    let message = json!({"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "c",
                         "stop_reason": null, "stop_sequence": null, "usage": usage});
    let events = [
        ("message_start", json!({"type": "message_start", "message": message})),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 3}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let sse: String = events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect();
    let mut tr = SseTranslator::new(&t, "c", 0, true).expect("translates");
    let mut out = tr.push(sse.as_bytes()).expect("reads");
    out.extend(tr.finish().expect("complete"));
    let out = String::from_utf8(out).expect("utf-8");
    let streamed = out
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).expect("json"))
        .find_map(|c| c.get("usage").cloned())
        .expect("a usage chunk");

    let whole = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
                       "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
                       "usage": {"input_tokens": 5, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 100, "output_tokens": 3}});
    let answer = parse_success(&t, Bytes::from(whole.to_string()), "c", 0).expect("ok");
    let unstreamed: Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(
        streamed["prompt_tokens"], unstreamed["usage"]["prompt_tokens"],
        "streamed usage {streamed} vs non-streamed {}",
        unstreamed["usage"]
    );
}

/// Streamed answers are translated one choice at a time, so several choices (`n > 1`) in a
/// Gemini stream are refused by name; they used to be sent as `candidateCount` and all but the
/// first silently dropped.
#[test]
fn several_choices_in_a_gemini_stream_are_refused_by_name() {
    let t = target(ProviderKind::Gemini, "g");
    let request = ChatRequest::parse(
        json!({"model": "gpt-4o", "n": 2, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes(),
    )
    .expect("valid");
    let refused = build_request(&t, &request).expect_err("several streamed choices cannot be translated");
    assert_eq!(refused.field, "n");
    // Without streaming, several choices translate (candidateCount) and all come back.
    let whole = ChatRequest::parse(
        json!({"model": "gpt-4o", "n": 2, "messages": [{"role": "user", "content": "hi"}]}).to_string().as_bytes(),
    )
    .expect("valid");
    assert_eq!(wire(&build_request(&t, &whole).expect("translatable"))["generationConfig"]["candidateCount"], 2);
}

/// An entry that decodes (right format, consistent times) but whose provider could not be a
/// header value was not written by this gateway: it is unreadable, a miss (it used to panic the
/// request when its provider became `x-provider`).
#[test]
fn an_entry_with_an_odd_provider_name_is_a_miss() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("odd entry");
    let key = CacheKey::chat("tenant-a", "", &ChatRequest::parse(body.as_bytes()).expect("valid"));
    let entry = Entry::new(T0, 3600, 0, "bad\nprovider", "m", fixture("openai/ok.json").into_bytes());
    w.host.kv_insert(key.as_str(), entry.encode());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.chat(&body, &[]).status));
    assert!(matches!(result, Ok(200)), "the request panicked instead of treating the entry as a miss");
}
