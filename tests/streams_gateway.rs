//! Streams through the cache on the in-memory host, in virtual time: one entry serves stream and
//! non-stream requests (replayed hits, streamed answers stored after their clean end), the request
//! controls on streams, failover before the first content event (first-token timeout included),
//! in-band error events after it (counted against the breaker, nothing stored), stale answers
//! replayed as streams, and the stale deadline in both forms.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use llm_edge_cache::cache::entry::Entry;
use llm_edge_cache::ports::{Body, Clock, Memory};
use llm_edge_cache::providers::assemble::Assembler;
use llm_edge_cache::testing::Scripted;
use serde_json::{json, Value};
use support::*;

fn ask(content: &str) -> String {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}).to_string()
}

fn ask_streamed(content: &str, include_usage: bool) -> String {
    let mut body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": content}]});
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body.to_string()
}

/// Whether both tiers hold an entry for this body (tenant A); panics if only one does.
fn stored(w: &World, body: &str) -> bool {
    let key = key_for("tenant-a", body);
    let (kv, redis) = (w.host.kv_raw(key.as_str()).is_some(), w.upstash.keys().contains(&redis_key(&key)));
    assert_eq!(kv, redis, "tier 1 has it: {kv}, tier 2: {redis}");
    kv
}

/// A fixture's events, one network chunk each.
fn events_of(sse: &str) -> Vec<Result<Bytes, String>> {
    sse.split_inclusive("\n\n").map(|e| Ok(Bytes::from(e.to_owned()))).collect()
}

/// The `data:` payloads of a stream the client got.
fn data_of(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).expect("utf-8");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("a data event: {e:?}")).to_owned())
        .collect()
}

/// The completion a stream the client got amounts to, and whether it carried usage.
fn assembled(body: &[u8]) -> Value {
    let mut a = Assembler::new(1 << 20);
    a.push(body);
    serde_json::from_slice(&a.finish().expect("a complete stream").body).expect("json")
}

/// The provider streams `sse` (asked or not for usage as `asked` says; asserted).
fn provider_streams(w: &World, sse: &'static str, expect_usage_asked: bool) {
    w.upstream(move |req| {
        let sent = wire(req);
        assert_eq!(sent["stream"], true);
        let asked = sent["stream_options"]["include_usage"] == true;
        assert_eq!(asked, expect_usage_asked, "usage asked upstream: {sent}");
        Scripted::Stream { status: 200, chunks: events_of(&fixture(sse)) }
    });
}

#[test]
fn a_fresh_entry_is_replayed_as_a_stream_with_the_hit_headers() {
    let w = World::new();
    w.upstream_ok();
    let first = w.chat(&ask("replay"), &[]);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    w.host.run_background();
    w.host.advance(3_000);
    for include_usage in [false, true] {
        let r = w.chat(&ask_streamed("replay", include_usage), &[("x-request-id", "req-stream-1")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        assert_eq!(r.header("x-cache"), Some("HIT"));
        assert_eq!(r.header("x-cache-tier"), Some("edge-kv"));
        assert!(r.header("cache-status").is_some_and(|s| s.starts_with("edge-kv; hit; ttl=")), "{:?}", r.headers);
        assert_eq!(r.header("age"), Some("3"));
        assert_eq!(r.header("x-request-id"), Some("req-stream-1"));
        assert_eq!(r.header("x-provider"), Some("openai"));
        let data = data_of(&r.body);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> =
            data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).expect("chunk")).collect();
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
        let stored = first.json();
        let replayed = assembled(&r.body);
        assert_eq!(replayed["choices"][0]["message"], stored["choices"][0]["message"]);
        assert_eq!(replayed["choices"][0]["finish_reason"], "stop");
        assert_eq!(replayed["id"], stored["id"]);
        match include_usage {
            true => assert_eq!(chunks.last().expect("usage chunk")["usage"], stored["usage"]),
            false => assert!(chunks.iter().all(|c| c.get("usage").is_none()), "no usage unless asked"),
        }
    }
    assert_eq!(w.upstream_calls(), 1);
}

#[test]
fn a_streamed_answer_is_stored_after_its_clean_end_and_serves_non_stream_requests() {
    let w = World::new();
    provider_streams(&w, "openai/stream_usage.sse", true);
    let r = w.chat(&ask_streamed("cross", false), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("x-cache"), Some("MISS"));
    assert_eq!(r.header("x-cache-tier"), Some("origin"));
    // Stored only once the stream has ended: the head cannot promise it.
    assert_eq!(r.header("cache-status"), Some("redis; fwd=uri-miss, edge-kv; fwd=uri-miss"));
    let data = data_of(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    // The client did not ask for usage: no usage chunk, no `usage` member.
    assert!(data.iter().all(|d| !d.contains("usage")), "{data:?}");
    let text: String = data[..data.len() - 1]
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "Hello! How can I help you today?");
    assert!(w.host.pending_background() > 0, "the write was spawned at the stream's end");
    w.host.run_background();
    assert!(stored(&w, &ask("cross")), "written to both tiers");

    let hit = w.chat(&ask("cross"), &[]);
    assert_eq!((hit.status, hit.header("x-cache")), (200, Some("HIT")));
    let v = hit.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello! How can I help you today?");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 19, "the usage asked for the cache is stored");
    assert_eq!(v["id"], "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG");
    // And a stream asking for usage gets it replayed.
    let again = w.chat(&ask_streamed("cross", true), &[]);
    let data = data_of(&again.body);
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).expect("usage chunk");
    assert_eq!(usage["usage"]["total_tokens"], 19);
    assert_eq!(w.upstream_calls(), 1);
}

#[test]
fn a_client_that_asked_for_usage_gets_the_providers_stream_unchanged() {
    let w = World::new();
    provider_streams(&w, "openai/stream_usage.sse", true);
    let r = w.chat(&ask_streamed("usage", true), &[]);
    assert_eq!(r.body, Bytes::from(fixture("openai/stream_usage.sse")));
}

#[test]
fn no_store_streams_are_not_asked_for_usage_nor_stored() {
    let w = World::new();
    provider_streams(&w, "openai/stream_ok.sse", false);
    for _ in 0..2 {
        let r = w.chat(&ask_streamed("nostore", false), &[("cache-control", "no-store")]);
        assert_eq!(r.header("x-cache"), Some("BYPASS"));
        assert_eq!(r.header("cache-status"), Some("redis; fwd=request, edge-kv; fwd=request"));
        assert_eq!(r.body, Bytes::from(fixture("openai/stream_ok.sse")));
    }
    w.host.run_background();
    assert!(!stored(&w, &ask("nostore")));
    assert_eq!(w.upstream_calls(), 2);
}

#[test]
fn tool_call_streams_are_stored_and_replayed_both_ways() {
    let w = World::new();
    provider_streams(&w, "openai/stream_tool_call.sse", true);
    let tools =
        json!([{"type": "function", "function": {"name": "get_current_weather", "parameters": {"type": "object"}}}]);
    let body = |stream: bool| {
        json!({"model": "gpt-4o-mini", "stream": stream, "tools": tools, "messages": [{"role": "user", "content": "weather?"}]})
            .to_string()
    };
    let streamed = w.chat(&body(true), &[]);
    assert_eq!(streamed.header("x-cache"), Some("MISS"));
    w.host.run_background();
    let whole = w.chat(&body(false), &[]);
    assert_eq!(whole.header("x-cache"), Some("HIT"));
    let expected: Value = serde_json::from_str(&fixture("openai/tool_call.json")).expect("json");
    let v = whole.json();
    assert_eq!(v["choices"][0]["message"]["tool_calls"], expected["choices"][0]["message"]["tool_calls"]);
    assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let replayed = w.chat(&body(true), &[]);
    assert_eq!(replayed.header("x-cache"), Some("HIT"));
    let again = assembled(&replayed.body);
    assert_eq!(again["choices"][0]["message"]["tool_calls"], expected["choices"][0]["message"]["tool_calls"]);
    assert_eq!(again["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(w.upstream_calls(), 1);
}

#[test]
fn anthropic_streams_are_stored_with_their_usage() {
    let routes = routes(
        json!([{"provider": "anthropic", "id": "claude", "base_url": ANTHROPIC, "model": "c", "key": "ANTHROPIC_KEY"}]),
    );
    let w = world(&routes, &[]);
    let sse = fixture("anthropic/stream_ok.sse");
    w.host.route(ANTHROPIC, move |_| Scripted::Stream { status: 200, chunks: events_of(&sse) });
    let body = json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let r = w.chat(&body, &[]);
    let data = data_of(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(data.iter().all(|d| !d.contains("usage")), "usage kept from the client: {data:?}");
    w.host.run_background();
    let hit = w.chat(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string(), &[]);
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert!(hit.json()["usage"]["total_tokens"].as_u64().is_some_and(|n| n > 0), "{}", hit.json());
}

#[test]
fn a_stream_cut_after_its_first_byte_ends_with_an_error_event_is_not_stored_and_counts() {
    let w = World::new();
    let sse = fixture("openai/stream_usage.sse");
    let mut chunks = events_of(&sse)[..3].to_vec();
    chunks.push(Err("connection reset".into()));
    w.upstream(move |_| Scripted::Stream { status: 200, chunks: chunks.clone() });
    let r = w.chat(&ask_streamed("cut", false), &[("x-request-id", "req-cut")]);
    assert_eq!(r.status, 200);
    let data = data_of(&r.body);
    let last: Value = serde_json::from_str(data.last().expect("events")).expect("json");
    assert_eq!(last["error"]["code"], "upstream_stream_error", "{data:?}");
    assert_eq!(last["error"]["type"], "api_error");
    assert!(last["error"]["message"].as_str().is_some_and(|m| m.contains("incomplete")));
    assert!(!data.iter().any(|d| d == "[DONE]"), "never a made-up end");
    assert!(!data.iter().any(|d| d.contains("\"finish_reason\":\"")), "no made-up finish reason");
    assert_eq!(data.len(), 4, "the three events the provider sent, then the error: {data:?}");
    w.host.run_background();
    assert!(!stored(&w, &ask("cut")), "nothing stored");
    let breaker = w.host.health().breaker("openai").expect("a breaker");
    let counted = breaker.counted(w.host.now_ms(), &w.config.breaker);
    assert_eq!((counted.ok, counted.fail), (1, 1), "the start counted, then the cut");
    assert!(w.host.logs().iter().any(|l| l.contains("\"stream_failed\"") && l.contains("req-cut")));
}

#[test]
fn an_error_event_after_the_first_byte_is_not_forwarded() {
    let w = World::new();
    w.upstream(|_| Scripted::Stream { status: 200, chunks: events_of(&fixture("openai/stream_error.sse")) });
    let r = w.chat(&ask_streamed("errev", false), &[]);
    let text = String::from_utf8(r.body.to_vec()).expect("utf-8");
    assert!(!text.contains("Sorry about that"), "the provider's words stay out: {text}");
    let data = data_of(&r.body);
    assert_eq!(data.len(), 3, "{text}");
    let last: Value = serde_json::from_str(&data[2]).expect("json");
    assert_eq!(last["error"]["code"], "upstream_stream_error");
}

#[test]
fn a_stall_after_the_first_byte_ends_at_the_idle_bound_with_an_error_event() {
    let w = World::with_config(config_with(&[("UPSTREAM_STREAM_IDLE_TIMEOUT_MS", "1000")]));
    let chunks: Vec<Bytes> =
        events_of(&fixture("openai/stream_ok.sse"))[..2].iter().map(|c| c.clone().expect("ok")).collect();
    w.upstream(move |_| Scripted::StallingStream { status: 200, chunks: chunks.clone() });
    let request = http::Request::post("https://gw.test/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY_A}"))
        .header("content-type", "application/json")
        .body(Body::Full(Bytes::from(ask_streamed("stall", false))))
        .expect("request");
    let response = w.host.block_on(llm_edge_cache::gateway::handle(&w.host, Ok(&w.config), request));
    assert_eq!(response.status(), 200);
    let Body::Stream(mut stream) = response.into_body() else { panic!("a streaming body") };
    use futures_util::StreamExt as _;
    for _ in 0..2 {
        let held = w.host.block_on(stream.next()).expect("a chunk").expect("ok");
        assert!(held.starts_with(b"data: {"), "the role, then the first content");
    }
    let before = w.host.now_ms();
    let error = w.host.block_on(stream.next()).expect("an event, not a silent end").expect("in band");
    assert_eq!(w.host.now_ms() - before, 1000, "ended exactly at the idle bound");
    let text = std::str::from_utf8(&error).expect("utf-8");
    assert!(text.contains("\"code\":\"upstream_timeout\"") && text.contains("1000 ms"), "{text}");
    assert!(w.host.block_on(stream.next()).is_none(), "and then ends");
}

/// `primary` (with `extra` settings) then `secondary`, both OpenAI-compatible.
fn two(extra: Value) -> World {
    let mut primary = json!({"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY, "model": "p", "key": "PRIMARY_KEY"});
    if let (Some(p), Value::Object(extra)) = (primary.as_object_mut(), extra) {
        p.extend(extra);
    }
    let secondary = json!({"provider": "openai-compatible", "id": "secondary", "base_url": SECONDARY, "model": "s", "key": "SECONDARY_KEY", "priority": 1});
    let w = world(&routes(json!([primary, secondary])), &[]);
    w.host.route(SECONDARY, |_| Scripted::Stream { status: 200, chunks: events_of(&fixture("openai/stream_ok.sse")) });
    w
}

fn gpt4o_streamed(content: &str) -> String {
    json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": content}]}).to_string()
}

#[test]
fn no_first_content_event_within_the_first_token_timeout_fails_over() {
    let w = two(json!({"first_token_timeout_ms": 2000}));
    let role = events_of(&fixture("openai/stream_ok.sse"))[0].clone().expect("ok");
    w.host.route(PRIMARY, move |_| Scripted::StallingStream { status: 200, chunks: vec![role.clone()] });
    let before = w.host.now_ms();
    let r = w.chat(&gpt4o_streamed("ttft"), &[]);
    assert_eq!(w.host.now_ms() - before, 2000, "the primary had exactly its first-token bound");
    assert_eq!((r.status, r.header("x-provider"), r.header("x-fallback")), (200, Some("secondary"), Some("true")));
    assert_eq!(r.body, Bytes::from(fixture("openai/stream_ok.sse")), "nothing of the primary reached the client");
    assert!(w.host.logs().iter().any(|l| l.contains("upstream_failed") && l.contains("upstream_timeout")));
}

#[test]
fn the_global_first_token_timeout_applies_without_a_target_setting() {
    let mut primary = json!({"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY, "model": "p", "key": "PRIMARY_KEY"});
    primary["timeout_ms"] = json!(60_000);
    let secondary = json!({"provider": "openai-compatible", "id": "secondary", "base_url": SECONDARY, "model": "s", "key": "SECONDARY_KEY", "priority": 1});
    let w = world(&routes(json!([primary, secondary])), &[("UPSTREAM_FIRST_TOKEN_TIMEOUT_MS", "3500")]);
    w.host.route(SECONDARY, |_| Scripted::Stream { status: 200, chunks: events_of(&fixture("openai/stream_ok.sse")) });
    // Headers after 1 s, then a role chunk every 500 ms: never silent, never content.
    let role = fixture("openai/stream_ok.sse").split_inclusive("\n\n").next().expect("role").to_owned();
    w.host.route(PRIMARY, move |_| Scripted::Delay {
        ms: 1000,
        then: Box::new(Scripted::StallingStream { status: 200, chunks: vec![Bytes::from(role.clone())] }),
    });
    let before = w.host.now_ms();
    let r = w.chat(&gpt4o_streamed("ttft-global"), &[]);
    assert_eq!(w.host.now_ms() - before, 3500, "bounded from the attempt's start, headers included");
    assert_eq!(r.header("x-provider"), Some("secondary"));
}

/// A provider's scripted answer to each call.
type Script = Box<dyn Fn() -> Scripted>;

#[test]
fn failures_before_the_first_content_event_fail_over() {
    let role = fixture("openai/stream_ok.sse").split_inclusive("\n\n").next().expect("role").to_owned();
    let cases: Vec<(&str, Script)> = vec![
        ("a 500", Box::new(|| status(500))),
        ("a 429", Box::new(|| status(429))),
        ("a connection error", Box::new(|| Scripted::Fail("refused".into()))),
        ("our key rejected", Box::new(|| status(401))),
        ("an end before content", {
            let role = role.clone();
            Box::new(move || Scripted::Stream { status: 200, chunks: vec![Ok(Bytes::from(role.clone()))] })
        }),
        ("[DONE] before content", {
            let role = role.clone();
            Box::new(move || Scripted::Stream {
                status: 200,
                chunks: vec![Ok(Bytes::from(role.clone())), Ok(Bytes::from("data: [DONE]\n\n"))],
            })
        }),
        ("a cut before content", {
            let role = role.clone();
            Box::new(move || Scripted::Stream {
                status: 200,
                chunks: vec![Ok(Bytes::from(role.clone())), Err("reset".into())],
            })
        }),
        ("an error event before content", {
            let role = role.clone();
            Box::new(move || Scripted::Stream {
                status: 200,
                chunks: vec![
                    Ok(Bytes::from(role.clone())),
                    Ok(Bytes::from("data: {\"error\":{\"message\":\"overloaded\"}}\n\n")),
                ],
            })
        }),
        ("no headers in time", Box::new(|| Scripted::Delay { ms: 600_000, then: Box::new(status(200)) })),
    ];
    for (what, script) in cases {
        let w = two(json!({"first_byte_timeout_ms": 1000}));
        w.host.route(PRIMARY, move |_| script());
        let r = w.chat(&gpt4o_streamed(what), &[]);
        assert_eq!((r.status, r.header("x-provider")), (200, Some("secondary")), "{what}: {:?}", r.body);
        assert_eq!(r.body, Bytes::from(fixture("openai/stream_ok.sse")), "{what}");
    }
}

/// A world whose entry for `body` is stale (past freshness, within the stale window).
fn with_stale_entry(body: &str) -> World {
    let w = World::with_config(config_with(&[("CACHE_FRESH_TTL_SECONDS", "60")]));
    w.upstream_ok();
    assert_eq!(w.chat(body, &[]).header("x-cache"), Some("MISS"));
    w.host.run_background();
    w.host.advance(61_000);
    w
}

#[test]
fn a_stale_entry_is_replayed_as_a_stream_when_every_target_fails_before_the_first_byte() {
    let w = with_stale_entry(&ask("stale"));
    w.upstream(|_| status(500));
    let r = w.chat(&ask_streamed("stale", true), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("x-cache"), Some("STALE"));
    assert_eq!(r.header("x-cache-stale-reason"), Some("upstream_server_error"));
    assert!(r.header("cache-status").is_some_and(|s| s.contains("detail=stale-if-error")));
    let v = assembled(&r.body);
    assert_eq!(v["choices"][0]["message"]["content"], "Hello! How can I help you today?");
    assert_eq!(v["usage"]["total_tokens"], 19);
}

#[test]
fn a_stale_entry_answers_at_the_stale_deadline_in_both_forms() {
    for stream in [false, true] {
        let w = with_stale_entry(&ask("deadline"));
        // A provider that never answers: without a stale entry, the request waits its whole timeout.
        w.upstream(|_| Scripted::Delay { ms: 3_600_000, then: Box::new(status(200)) });
        let body = if stream { ask_streamed("deadline", false) } else { ask("deadline") };
        let before = w.host.now_ms();
        let r = w.chat(&body, &[]);
        assert_eq!(w.host.now_ms() - before, 10_000, "stream {stream}: STALE_DEADLINE_MS, not UPSTREAM_TIMEOUT_MS");
        assert_eq!((r.status, r.header("x-cache")), (200, Some("STALE")), "stream {stream}");
        assert_eq!(r.header("x-cache-stale-reason"), Some("upstream_timeout"));
        let expect_type = if stream { "text/event-stream" } else { "application/json" };
        assert_eq!(r.header("content-type"), Some(expect_type));

        // Without one, a call waits its whole timeout, and a stream its first-token bound.
        let without = w.chat(&if stream { ask_streamed("no entry", false) } else { ask("no entry") }, &[]);
        without.assert_error(504, "upstream_timeout");
        let waited = if stream { 60_000 } else { 120_000 };
        assert_eq!(w.host.now_ms() - before - 10_000, waited, "stream {stream}: no stale entry");
    }
}

#[test]
fn the_stale_deadline_is_configurable_and_never_longer_than_the_deadline() {
    let w = World::with_config(config_with(&[
        ("CACHE_FRESH_TTL_SECONDS", "60"),
        ("STALE_DEADLINE_MS", "2500"),
        ("UPSTREAM_DEADLINE_MS", "2000"),
    ]));
    w.upstream_ok();
    w.chat(&ask("short"), &[]);
    w.host.run_background();
    w.host.advance(61_000);
    w.upstream(|_| Scripted::Delay { ms: 3_600_000, then: Box::new(status(200)) });
    let before = w.host.now_ms();
    assert_eq!(w.chat(&ask_streamed("short", false), &[]).header("x-cache"), Some("STALE"));
    assert_eq!(w.host.now_ms() - before, 2000);
}

#[test]
fn request_controls_apply_to_streams() {
    let w = World::new();
    w.upstream_ok();
    // only-if-cached: a miss is a 504, a hit is replayed.
    w.chat(&ask_streamed("controls", false), &[("cache-control", "only-if-cached")]).assert_error(504, "cache_miss");
    assert_eq!(w.upstream_calls(), 0);
    w.chat(&ask("controls"), &[]);
    w.host.run_background();
    let oic = w.chat(&ask_streamed("controls", false), &[("cache-control", "only-if-cached")]);
    assert_eq!((oic.header("x-cache"), oic.header("content-type")), (Some("HIT"), Some("text/event-stream")));
    // max-age refuses an entry older than it.
    w.host.advance(5_000);
    provider_streams(&w, "openai/stream_usage.sse", true);
    let young = w.chat(&ask_streamed("controls", false), &[("cache-control", "max-age=3")]);
    assert_eq!(young.header("x-cache"), Some("MISS"));
    assert!(young.header("cache-status").is_some_and(|s| s.contains("edge-kv; fwd=stale")));
    // no-cache skips reads, stores the new answer.
    let fresh = w.chat(&ask_streamed("controls", false), &[("cache-control", "no-cache")]);
    assert_eq!(fresh.header("x-cache"), Some("BYPASS"));
    assert_eq!(fresh.header("cache-status"), Some("redis; fwd=request, edge-kv; fwd=request"));
    w.host.run_background();
    let newer = w.chat(&ask("controls"), &[]);
    assert_eq!(newer.json()["usage"]["total_tokens"], 19, "the streamed answer replaced the entry");
    assert_eq!(newer.header("age"), Some("0"));
    // A namespace has its own entries.
    let other =
        w.chat(&ask_streamed("controls", false), &[("x-cache-namespace", "ns-2"), ("cache-control", "only-if-cached")]);
    other.assert_error(504, "cache_miss");
    // Another tenant too.
    let b = w.chat_as(KEY_B, &ask_streamed("controls", false), &[("cache-control", "only-if-cached")]);
    b.assert_error(504, "cache_miss");
}

#[test]
fn the_cache_key_ignores_stream_and_stream_options() {
    let plain = key_for("tenant-a", &ask("k"));
    for streamed in [ask_streamed("k", false), ask_streamed("k", true)] {
        assert_eq!(key_for("tenant-a", &streamed).as_str(), plain.as_str());
    }
}

#[test]
fn a_streamed_answer_over_the_largest_entry_is_served_not_stored_and_counted() {
    let w = World::with_config(config_with(&[("MAX_ENTRY_BYTES", "1024")]));
    let long = "word ".repeat(400);
    let chunks: Vec<Result<Bytes, String>> = [
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": long}, "finish_reason": null}]}),
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    ]
    .iter()
    .map(|c| Ok(Bytes::from(format!("data: {c}\n\n"))))
    .chain([Ok(Bytes::from("data: [DONE]\n\n"))])
    .collect();
    w.upstream(move |_| Scripted::Stream { status: 200, chunks: chunks.clone() });
    let r = w.chat(&ask_streamed("big", false), &[]);
    assert_eq!(data_of(&r.body).last().map(String::as_str), Some("[DONE]"), "served whole");
    w.host.run_background();
    assert!(!stored(&w, &ask("big")));
    assert!(w.host.logs().iter().any(|l| l.contains("\"entry_too_large\"")));
    assert!(w.upstash.keys().iter().any(|k| k.contains("entry_too_large")), "counted");
}

#[test]
fn a_truncated_stream_is_served_and_not_stored() {
    let w = World::new();
    let sse = fixture("openai/stream_ok.sse").replace("\"finish_reason\":\"stop\"", "\"finish_reason\":\"length\"");
    w.upstream(move |_| Scripted::Stream { status: 200, chunks: events_of(&sse) });
    let r = w.chat(&ask_streamed("trunc", false), &[]);
    assert_eq!(data_of(&r.body).last().map(String::as_str), Some("[DONE]"));
    w.host.run_background();
    assert!(!stored(&w, &ask("trunc")));
    assert!(w.host.logs().iter().any(|l| l.contains("store_skipped") && l.contains("truncated")));
}

#[test]
fn an_entry_that_is_not_a_completion_is_a_miss_for_a_stream() {
    let w = World::new();
    provider_streams(&w, "openai/stream_ok.sse", true);
    let key = key_for("tenant-a", &ask("garbage"));
    let entry =
        Entry::new(T0, 3600, 0, "openai", "m", Bytes::from_static(b"{\"choices\":[{\"finish_reason\":\"stop\"}]}"));
    w.host.kv_insert(key.as_str(), entry.encode());
    let r = w.chat(&ask_streamed("garbage", false), &[]);
    assert_eq!((r.status, r.header("x-cache")), (200, Some("MISS")));
    assert!(r.header("cache-status").is_some_and(|s| s.contains("edge-kv; fwd=miss; detail=garbage")));
}
