//! Routing on the real runtime, with the fake upstream speaking each provider's wire format:
//! fallback on 500, on 429 (with cool-down), on a stall and on a rejected key; no fallback on
//! the client's bad request; stale when all are down; the 503 listing; the breaker opening and
//! recovering, and opening for a peer on the other host that shares the Redis; translated answers,
//! streams and tool calls.
//!
//! Each scenario has a route (model) and target ids of its own on the routed stack, so one
//! scenario's breakers and cool-downs never touch another's. Rules match the target's model,
//! which appears in the body (OpenAI, Anthropic) or the path (Gemini).

use std::time::{Duration, Instant};

use devstack::stack::KEY_A;
use serde_json::{json, Value};

use crate::client::*;
use crate::runner::{eventually, Ctx, Host, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("routing::a_server_error_falls_back_to_anthropic", fallback_on_500),
        ("routing::a_429_falls_back_at_once_and_cools_down", fallback_on_429),
        ("routing::a_stalled_primary_falls_back_within_the_deadline", fallback_on_stall),
        ("routing::a_rejected_gateway_key_falls_back", fallback_on_rejected_key),
        ("routing::the_clients_bad_request_is_not_retried_elsewhere", no_fallback_on_bad_request),
        ("routing::all_down_lists_each_failure", all_down_503),
        ("routing::all_down_with_a_stale_entry_serves_it", all_down_stale),
        ("routing::the_breaker_opens_then_recovers", breaker_opens_and_recovers),
        ("routing::failures_through_one_host_open_the_breaker_for_the_other", breaker_shared_between_hosts),
        ("routing::anthropic_and_gemini_streams_arrive_as_openai_chunks", translated_streams),
        ("routing::tool_calls_translate_both_ways", tool_calls),
    ]
}

/// The routed stack's table: one route per scenario.
fn routes() -> Value {
    let oa = |id: &str, extra: Value| {
        let mut t = json!({"provider": "openai-compatible", "id": id, "base_url": "{upstream}/v1", "model": id});
        merge(&mut t, extra);
        t
    };
    let anthropic = |id: &str, extra: Value| {
        let mut t = json!({"provider": "anthropic", "id": id, "base_url": "{upstream}/v1", "model": id, "key": "ANTHROPIC_KEY"});
        merge(&mut t, extra);
        t
    };
    let gemini = |id: &str, extra: Value| {
        let mut t =
            json!({"provider": "gemini", "id": id, "base_url": "{upstream}/v1beta", "model": id, "key": "GEMINI_KEY"});
        merge(&mut t, extra);
        t
    };
    let mut table = json!({
        "r-500": [oa("r1-primary", json!({})), anthropic("r1-claude", json!({"priority": 1}))],
        "r-429": [oa("r2-primary", json!({})), gemini("r2-gemini", json!({"priority": 1}))],
        "r-stall": [oa("r3-primary", json!({"timeout_ms": 1000})), oa("r3-secondary", json!({"priority": 1}))],
        "r-key": [anthropic("r4-claude", json!({})), oa("r4-secondary", json!({"priority": 1}))],
        "r-400": [oa("r5-primary", json!({})), oa("r5-secondary", json!({"priority": 1}))],
        "r-down": [oa("r6-a", json!({})), anthropic("r6-b", json!({"priority": 1})), gemini("r6-c", json!({"priority": 2}))],
        "r-claude": [anthropic("r9-claude", json!({}))],
        "r-gemini": [gemini("r10-gemini", json!({}))],
        "r-ttft": [oa("r11-primary", json!({"first_token_timeout_ms": 1000})), oa("r11-secondary", json!({"priority": 1}))],
    });
    merge(&mut table, crate::embeddings::routes());
    table
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(extra)) = (target.as_object_mut(), extra) {
        t.extend(extra);
    }
}

/// Worker vars of the routed stack.
pub fn vars() -> Vec<(String, String)> {
    let mut vars = crate::runner::shared_vars();
    vars.retain(|(k, _)| k != "RETRIES_PER_TARGET" && k != "BREAKER_ERROR_PERCENT");
    vars.extend([
        ("ROUTES".to_owned(), routes().to_string()),
        ("ANTHROPIC_KEY".to_owned(), "sk-ant-fake".to_owned()),
        ("GEMINI_KEY".to_owned(), "gemini-fake-key".to_owned()),
        ("RETRIES_PER_TARGET".to_owned(), "1".to_owned()),
        ("RETRY_BASE_MS".to_owned(), "100".to_owned()),
    ]);
    vars
}

fn ask(model: &str, marker: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": marker}]}).to_string()
}

/// Rules match the target's model as it appears in the body of OpenAI and Anthropic calls.
fn model_in_body(id: &str) -> String {
    format!("\"model\":\"{id}\"")
}

fn fallback_on_500(ctx: &Ctx) {
    let s = ctx.routed;
    s.fake().add_rule(&model_in_body("r1-primary"), json!([{"kind": "status", "status": 500}]), true);
    let m = marker("r500");
    let r = chat_a(s, &ask("r-500", &m));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(header(&r, "x-provider"), "r1-claude");
    assert_eq!(header(&r, "x-fallback"), "true");
    assert_eq!(header(&r, "x-attempts"), "3", "the primary tried twice (one retry), then Anthropic");
    let v = json_of(&r);
    assert_eq!(v["object"], "chat.completion", "translated to OpenAI");
    assert!(content(&r).ends_with(&m), "{v}");
    let calls = s.fake().calls_detail(&m);
    let anthropic: Vec<&Value> = calls.iter().filter(|c| c["path"] == "/v1/messages").collect();
    assert_eq!(anthropic.len(), 1);
    assert_eq!(anthropic[0]["auth_header"], "x-api-key");
    assert_eq!(calls.len(), 3);
    // The client's request is the cache key: the translated answer now serves it.
    wait_cached(s, KEY_A, &ask("r-500", &m));
    assert_eq!(chat_a(s, &ask("r-500", &m)).body, r.body);
}

fn fallback_on_429(ctx: &Ctx) {
    let s = ctx.routed;
    s.fake().add_rule(
        &model_in_body("r2-primary"),
        json!([{"kind": "status", "status": 429, "retry_after": "30"}]),
        false,
    );
    let first = marker("r429a");
    let started = Instant::now();
    let r = chat_a(s, &ask("r-429", &first));
    assert_eq!((r.status, header(&r, "x-provider")), (200, "r2-gemini"), "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(2), "no waiting on a 429");
    assert_eq!(header(&r, "x-attempts"), "2", "no retry against a 429");
    let gemini = s
        .fake()
        .calls_detail(&first)
        .into_iter()
        .find(|c| c["path"].as_str().is_some_and(|p| p.contains(":generateContent")));
    assert_eq!(gemini.expect("a Gemini call")["auth_header"], "x-goog-api-key");
    // Cooling down: the next request does not call the primary at all.
    let second = marker("r429b");
    let r = chat_a(s, &ask("r-429", &second));
    assert_eq!((header(&r, "x-provider"), header(&r, "x-attempts")), ("r2-gemini", "1"));
    assert_eq!(s.fake().calls(&second), 1);
}

fn fallback_on_stall(ctx: &Ctx) {
    let s = ctx.routed;
    s.fake().add_rule(&model_in_body("r3-primary"), json!([{"kind": "ok", "delay_ms": 15000}]), true);
    let m = marker("rstall");
    let started = Instant::now();
    let r = chat_a(s, &ask("r-stall", &m));
    let elapsed = started.elapsed();
    assert_eq!((r.status, header(&r, "x-provider")), (200, "r3-secondary"));
    // One attempt of 1 s on the primary (a stall is not retried while a fallback remains), then
    // the secondary; two stalls and a backoff would take 2 s or more.
    assert_eq!((s.fake().calls(&m), header(&r, "x-attempts")), (2, "2"), "no second stall");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(1_900), "{elapsed:?}");
}

fn fallback_on_rejected_key(ctx: &Ctx) {
    let s = ctx.routed;
    s.fake().add_rule(&model_in_body("r4-claude"), json!([{"kind": "ok", "api_key": "not-the-gateways-key"}]), true);
    let r = chat_a(s, &ask("r-key", &marker("rkey")));
    assert_eq!((r.status, header(&r, "x-provider")), (200, "r4-secondary"), "the client never sees our key problem");
}

fn no_fallback_on_bad_request(ctx: &Ctx) {
    let s = ctx.routed;
    s.fake().add_rule(&model_in_body("r5-primary"), json!([{"kind": "status", "status": 400}]), true);
    let m = marker("r400");
    let r = chat_a(s, &ask("r-400", &m));
    assert_error(&r, 400, "upstream_rejected_request");
    assert_eq!(s.fake().calls(&m), 1, "neither retried nor sent elsewhere");
}

fn all_down_503(ctx: &Ctx) {
    let s = ctx.routed;
    s.fake().add_rule(&model_in_body("r6-a"), json!([{"kind": "status", "status": 500}]), true);
    s.fake().add_rule(&model_in_body("r6-b"), json!([{"kind": "status", "status": 529}]), true);
    s.fake().add_rule("r6-c:generateContent", json!([{"kind": "status", "status": 503}]), true);
    let r = chat_a(s, &ask("r-down", &marker("rdown")));
    assert_error(&r, 503, "all_providers_failed");
    assert_eq!(
        json_of(&r)["error"]["failures"],
        json!([
            {"target": "r6-a", "code": "upstream_server_error"},
            {"target": "r6-b", "code": "upstream_server_error"},
            {"target": "r6-c", "code": "upstream_server_error"}
        ])
    );
    assert_eq!(header(&r, "x-attempts"), "6");
    let text = r.text();
    for leak in ["sk-ant-fake", "gemini-fake-key", "Overloaded", "/v1/messages"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

fn all_down_stale(ctx: &Ctx) {
    let base = vars();
    let s = ctx.stack_with(base, &[("CACHE_FRESH_TTL_SECONDS", "1")]);
    let m = marker("rstale");
    let b = ask("r-down", &m);
    let original = chat_a(&s, &b);
    assert_eq!(original.status, 200);
    wait_cached(&s, KEY_A, &b);
    std::thread::sleep(Duration::from_millis(1_300));
    for (matcher, status) in
        [(model_in_body("r6-a"), 500), (model_in_body("r6-b"), 500), ("r6-c:generateContent".into(), 500)]
    {
        s.fake().add_rule(&matcher, json!([{"kind": "status", "status": status}]), true);
    }
    let r = chat_a(&s, &b);
    assert_eq!((r.status, header(&r, "x-cache")), (200, "STALE"), "{}", r.text());
    assert_eq!(header(&r, "x-cache-stale-reason"), "all_providers_failed");
    assert_eq!(r.body, original.body);
}

fn breaker_opens_and_recovers(ctx: &Ctx) {
    let breaker = [
        ("BREAKER_MIN_REQUESTS", "4"),
        ("BREAKER_ERROR_PERCENT", "50"),
        ("BREAKER_OPEN_SECONDS", "3"),
        ("RETRIES_PER_TARGET", "0"),
    ];
    let s = ctx.stack_with(vars(), &breaker);
    let rule = model_in_body("r5-primary");
    s.fake().add_rule(&rule, json!([{"kind": "status", "status": 500}]), true);
    for i in 0..4 {
        let r = chat_a(&s, &ask("r-400", &marker(&format!("brk{i}"))));
        assert_eq!(header(&r, "x-provider"), "r5-secondary");
    }
    assert_eq!(s.fake().calls(&rule), 4);
    for i in 4..8 {
        let r = chat_a(&s, &ask("r-400", &marker(&format!("brk{i}"))));
        assert_eq!((header(&r, "x-provider"), header(&r, "x-attempts")), ("r5-secondary", "1"), "open: not tried");
    }
    assert_eq!(s.fake().calls(&rule), 4, "no calls while the breaker is open");
    assert!(s.worker.log().contains("breaker_opened"));
    s.fake().clear_rules();
    std::thread::sleep(Duration::from_millis(3_100));
    eventually(Duration::from_secs(5), "a half-open probe to succeed", || {
        let r = chat_a(&s, &ask("r-400", &marker("probe")));
        (header(&r, "x-provider") == "r5-primary").then_some(())
    });
    let r = chat_a(&s, &ask("r-400", &marker("closed")));
    assert_eq!(header(&r, "x-provider"), "r5-primary", "closed again");
}

/// Two gateways of one deployment, one on this host and a peer on the other, share one Redis:
/// the failures seen through this host open the breaker for the peer, which has seen too few to
/// open it alone. The peer on Spin reads Redis before routing; on workerd it routes on what its
/// isolate knows and reads after the response, so its first request may still call the target.
fn breaker_shared_between_hosts(ctx: &Ctx) {
    let breaker = [
        ("BREAKER_MIN_REQUESTS", "4"),
        ("BREAKER_ERROR_PERCENT", "50"),
        ("BREAKER_OPEN_SECONDS", "60"),
        ("RETRIES_PER_TARGET", "0"),
    ];
    let s = ctx.stack_with(vars(), &breaker);
    let other = ctx.host.other();
    let peer = s.start_peer(other.kind()).unwrap_or_else(|e| panic!("a peer on {}: {e}", other.name()));
    let rule = model_in_body("r5-primary");
    s.fake().add_rule(&rule, json!([{"kind": "status", "status": 500}]), true);
    for i in 0..4 {
        let r = chat_a(&s, &ask("r-400", &marker(&format!("shared{i}"))));
        assert_eq!(header(&r, "x-provider"), "r5-secondary");
    }
    // Spin reads before a request what the one before wrote after its response: allow a request
    // or two more for the fourth failure to be counted.
    eventually(Duration::from_secs(10), "the breaker to open through this host", || {
        let r = chat_a(&s, &ask("r-400", &marker("shared-open")));
        (header(&r, "x-attempts") == "1").then_some(())
    });
    assert!(s.worker.log().contains("breaker_opened"));
    eventually(Duration::from_secs(10), "the opening to be reported to Redis", || {
        let until = redis(&s, json!(["ZSCORE", "llmc1:health:r5-primary:marks", "open_until"]));
        (!until.is_null()).then_some(())
    });
    let before_peer = s.fake().calls(&rule);
    assert!(before_peer >= 4, "{before_peer} failures through this host");
    let mut answers = Vec::new();
    for i in 0..10 {
        let r = request_to(&peer.url(), KEY_A, &ask("r-400", &marker(&format!("peer{i}"))), &[])
            .send()
            .unwrap_or_else(|e| panic!("the peer on {} did not answer: {e}", other.name()));
        assert_eq!((r.status, header(&r, "x-provider")), (200, "r5-secondary"), "{}", r.text());
        answers.push(header(&r, "x-attempts").to_owned());
        if answers.last().is_some_and(|a| a == "1") {
            break;
        }
        // The peer's report and read run after its response.
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(answers.last().map(String::as_str), Some("1"), "the peer skips the open target: {answers:?}");
    let by_peer = s.fake().calls(&rule) - before_peer;
    assert!(by_peer < 4, "the peer called the target {by_peer} times: enough to open its breaker alone");
    if other == Host::Spin {
        assert_eq!(by_peer, 0, "a Spin instance reads Redis before routing");
    }
    drop(peer);
}

fn read_chunks(r: &devstack::HttpResponse) -> (String, Vec<Value>) {
    let text = r.text();
    let mut events: Vec<&str> = text.split("\n\n").filter(|e| !e.trim().is_empty()).collect();
    assert_eq!(events.pop(), Some("data: [DONE]"), "{text}");
    let chunks: Vec<Value> =
        events.iter().map(|e| serde_json::from_str(&e["data: ".len()..]).expect("chunk")).collect();
    let said = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    (said, chunks)
}

fn translated_streams(ctx: &Ctx) {
    let s = ctx.routed;
    for (model, provider) in [("r-claude", "r9-claude"), ("r-gemini", "r10-gemini")] {
        let m = marker("rstream");
        let body = json!({"model": model, "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": m}]});
        let r = read_stream(request(s, KEY_A, &body.to_string(), &[])).expect("a complete stream");
        assert_eq!((r.status, header(&r, "x-provider")), (200, provider));
        assert!(header(&r, "content-type").starts_with("text/event-stream"));
        let (said, chunks) = read_chunks(&r);
        assert!(said.ends_with(&m), "{provider}: {said}");
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
        assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
        assert!(chunks.last().expect("chunks")["usage"]["total_tokens"].as_u64().is_some_and(|n| n > 0), "{provider}");
    }
    // A cut Anthropic stream (after its first text) ends with an error event, never as complete.
    let m = marker("rcut");
    s.fake().add_rule(&m, json!([{"kind": "cut_stream", "after_chunks": 4}]), false);
    let body = json!({"model": "r-claude", "stream": true, "messages": [{"role": "user", "content": m}]});
    let text = match read_stream(request(s, KEY_A, &body.to_string(), &[])) {
        Ok(r) | Err(r) => r.text(),
    };
    assert!(!text.contains("[DONE]"), "a cut stream must not look complete: {text}");
    assert!(text.trim_end().ends_with("}}") && text.contains("\"code\":\"upstream_stream_error\""), "{text}");
}

fn tool_calls(ctx: &Ctx) {
    let s = ctx.routed;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    for model in ["r-claude", "r-gemini"] {
        let m = marker("rtool");
        let body = json!({"model": model, "tools": tools, "messages": [{"role": "user", "content": format!("TOOL_CALL {m}")}]});
        let r = chat_a(s, &body.to_string());
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let v = json_of(&r);
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{model}: {v}");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().expect("string")).expect("JSON arguments");
        assert_eq!(args, json!({"city": "Paris"}), "{model}");
        // The tool result goes back in the provider's own shape.
        let id = call["id"].as_str().expect("id");
        let follow = json!({"model": model, "tools": tools, "messages": [
            {"role": "user", "content": format!("TOOL_CALL {m}")},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": id, "content": "{\"temp_c\": 18}"},
            {"role": "user", "content": format!("thanks {m}")}
        ]});
        let r = chat_a(s, &follow.to_string());
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert!(content(&r).contains(&format!("thanks {m}")));
    }
}
