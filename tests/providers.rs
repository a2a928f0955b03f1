//! Translations from fixtures of each provider's real wire format: requests built from OpenAI
//! ones, answers and errors read back as OpenAI, streams translated chunk by chunk.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use llm_edge_cache::api::chat::ChatRequest;
use llm_edge_cache::error::{Scope, UpstreamError};
use llm_edge_cache::providers::stream::SseTranslator;
use llm_edge_cache::providers::{build_request, classify_error, parse_success};
use llm_edge_cache::routing::table::{ProviderKind, Target};
use serde_json::{json, Value};
use support::{fixture, target, wire};

fn request(v: Value) -> ChatRequest {
    ChatRequest::parse(v.to_string().as_bytes()).expect("valid request")
}

fn conversation() -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris? Here is a map."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 18}"},
            {"role": "user", "content": "Thanks, and tomorrow?"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "temperature": 0.3,
        "max_tokens": 200,
        "stop": "END",
        "user": "user-9"
    })
}

#[test]
fn anthropic_request_maps_roles_tools_images_and_limits() {
    let req = build_request(&target(ProviderKind::Anthropic, "claude-sonnet-4-5"), &request(conversation()))
        .expect("translatable");
    assert_eq!(req.uri().to_string(), "https://api.anthropic.com/v1/messages");
    assert_eq!(req.headers()["x-api-key"], "k-123");
    assert_eq!(req.headers()["anthropic-version"], "2023-06-01");
    assert!(req.headers().get("authorization").is_none());
    let w = wire(&req);
    assert_eq!(w["model"], "claude-sonnet-4-5");
    assert_eq!(w["system"], "Be brief.\n\nUse tools.");
    assert_eq!(w["max_tokens"], 200);
    assert_eq!(w["temperature"], 0.3);
    assert_eq!(w["stop_sequences"], json!(["END"]));
    assert_eq!(w["metadata"], json!({"user_id": "user-9"}));
    assert_eq!(w["tool_choice"], json!({"type": "any", "disable_parallel_tool_use": true}));
    assert_eq!(
        w["tools"],
        json!([{"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
    );
    assert_eq!(
        w["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris? Here is a map."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "{\"temp_c\": 18}"},
                {"type": "text", "text": "Thanks, and tomorrow?"}
            ]}
        ]),
        "tool results and the next user turn merge into one user turn (alternation)"
    );
}

#[test]
fn gemini_request_maps_roles_tools_and_generation_config() {
    let mut c = conversation();
    c["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}});
    c["seed"] = json!(5);
    c.as_object_mut().expect("object").remove("parallel_tool_calls");
    let req = build_request(&target(ProviderKind::Gemini, "gemini-2.5-flash"), &request(c)).expect("translatable");
    assert_eq!(
        req.uri().to_string(),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(req.headers()["x-goog-api-key"], "k-123");
    let w = wire(&req);
    assert_eq!(w["systemInstruction"], json!({"parts": [{"text": "Be brief.\n\nUse tools."}]}));
    assert_eq!(
        w["generationConfig"],
        json!({
            "temperature": 0.3, "seed": 5, "maxOutputTokens": 200, "stopSequences": ["END"],
            "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}
        })
    );
    assert_eq!(w["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
    assert_eq!(w["tools"][0]["functionDeclarations"][0]["name"], "get_weather");
    assert_eq!(
        w["contents"],
        json!([
            {"role": "user", "parts": [
                {"text": "Weather in Paris? Here is a map."},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}},
                {"text": "Thanks, and tomorrow?"}
            ]}
        ])
    );
    let stream = build_request(
        &target(ProviderKind::Gemini, "gemini-2.5-flash"),
        &request(json!({
            "model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]
        })),
    )
    .expect("translatable");
    assert!(stream.uri().to_string().ends_with("/models/gemini-2.5-flash:streamGenerateContent?alt=sse"));
}

#[test]
fn features_a_provider_lacks_are_refused_by_name() {
    let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    let refuse = |kind: ProviderKind, field: &str, value: Value| {
        let mut v = base.clone();
        v[field] = value;
        let err = build_request(&target(kind, "m"), &request(v)).expect_err(field);
        assert_eq!(err.field, field, "{err}");
    };
    refuse(ProviderKind::Anthropic, "n", json!(2));
    refuse(ProviderKind::Anthropic, "logprobs", json!(true));
    refuse(ProviderKind::Anthropic, "seed", json!(1));
    refuse(ProviderKind::Anthropic, "response_format", json!({"type": "json_object"}));
    refuse(ProviderKind::Anthropic, "some_vendor_field", json!(1));
    refuse(ProviderKind::Gemini, "logit_bias", json!({"1": 2}));
    refuse(ProviderKind::Gemini, "parallel_tool_calls", json!(false));
    // Neutral values change nothing and pass.
    let mut neutral = base.clone();
    neutral["n"] = json!(1);
    neutral["presence_penalty"] = json!(0.0);
    neutral["logprobs"] = json!(false);
    assert!(build_request(&target(ProviderKind::Anthropic, "m"), &request(neutral)).is_ok());
    // Gemini cannot fetch images by URL.
    let url_image = json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]});
    assert_eq!(
        build_request(&target(ProviderKind::Gemini, "m"), &request(url_image)).expect_err("url").field,
        "messages[0].content"
    );
}

#[test]
fn anthropic_answers_read_back_as_openai() {
    let t = target(ProviderKind::Anthropic, "claude-sonnet-4-5");
    let ok = parse_success(&t, Bytes::from(fixture("anthropic/ok.json")), "gpt-4o", 1_700_000_000_000).expect("ok");
    let v: Value = serde_json::from_slice(&ok.body).expect("json");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["created"], 1_700_000_000);
    assert_eq!(v["choices"][0]["message"], json!({"role": "assistant", "content": "Hello!"}));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(ok.model, "claude-sonnet-4-5");

    let tool = parse_success(&t, Bytes::from(fixture("anthropic/tool_use.json")), "gpt-4o", 0).expect("ok");
    let v: Value = serde_json::from_slice(&tool.body).expect("json");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "I'll check the current weather in San Francisco for you.");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().expect("string")).expect("json");
    assert_eq!(args, json!({"location": "San Francisco, CA", "unit": "celsius"}));

    assert!(matches!(
        parse_success(&t, Bytes::from(fixture("anthropic/malformed.json")), "m", 0),
        Err(UpstreamError::Malformed(_))
    ));
}

#[test]
fn gemini_answers_read_back_as_openai() {
    let t = target(ProviderKind::Gemini, "gemini-2.0-flash");
    let call = parse_success(&t, Bytes::from(fixture("gemini/function_call.json")), "gpt-4o", 0).expect("ok");
    let v: Value = serde_json::from_slice(&call.body).expect("json");
    assert_eq!(v["id"], "cPbXaLrYFpK2nvgPr_v2qAk");
    assert_eq!(v["model"], "gemini-2.0-flash");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(choice["message"]["tool_calls"][0]["function"]["name"], "schedule_meeting");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 111, "completion_tokens": 34, "total_tokens": 145, "prompt_tokens_details": {"cached_tokens": 0}})
    );
    assert!(matches!(
        parse_success(&t, Bytes::from(fixture("gemini/malformed.json")), "m", 0),
        Err(UpstreamError::Malformed(_))
    ));
}

#[test]
fn provider_errors_are_classified_for_failover() {
    let a = target(ProviderKind::Anthropic, "c");
    let g = target(ProviderKind::Gemini, "g");
    let none = HeaderMap::new();
    let mut retry = HeaderMap::new();
    retry.insert("retry-after", "12".parse().expect("header"));
    let cases: Vec<(&Target, u16, &HeaderMap, &str, &str)> = vec![
        (&a, 400, &none, "anthropic/error_400.json", "upstream_rejected_request"),
        (&a, 401, &none, "anthropic/error_401.json", "upstream_auth_failed"),
        (&a, 429, &retry, "anthropic/error_429.json", "upstream_rate_limited"),
        (&a, 500, &none, "anthropic/error_500.json", "upstream_server_error"),
        (&a, 529, &none, "anthropic/error_529.json", "upstream_server_error"),
        (&g, 400, &none, "gemini/error_400.json", "upstream_auth_failed"),
        (&g, 403, &none, "gemini/error_403.json", "upstream_auth_failed"),
        (&g, 429, &none, "gemini/error_429.json", "upstream_rate_limited"),
        (&g, 500, &none, "gemini/error_500.json", "upstream_server_error"),
        (&g, 503, &none, "gemini/error_503.json", "upstream_server_error"),
    ];
    for (t, status, headers, file, code) in cases {
        let e = classify_error(t, StatusCode::from_u16(status).expect("status"), headers, fixture(file).as_bytes());
        assert_eq!(e.code(), code, "{file}: {e:?}");
    }
    let limited = classify_error(&a, StatusCode::TOO_MANY_REQUESTS, &retry, b"{}");
    assert_eq!(limited, UpstreamError::RateLimited { retry_after_ms: Some(12_000) });
    let gemini_limited =
        classify_error(&g, StatusCode::TOO_MANY_REQUESTS, &none, fixture("gemini/error_429.json").as_bytes());
    assert_eq!(gemini_limited, UpstreamError::RateLimited { retry_after_ms: Some(17_000) }, "RetryInfo in the body");
    let rejected = classify_error(&a, StatusCode::BAD_REQUEST, &none, fixture("anthropic/error_400.json").as_bytes());
    assert!(
        matches!(rejected, UpstreamError::ClientRequest { status: 400, .. }) && rejected.scope(5_000) == Scope::Stop
    );
}

/// Feeds `sse` to a translator in pieces of `step` bytes and returns the OpenAI stream.
fn translate(t: &Target, sse: &str, step: usize, include_usage: bool) -> Result<String, String> {
    let mut tr = SseTranslator::new(t, "requested", 1_700_000_000, include_usage).expect("needs translation");
    let mut out = Vec::new();
    for piece in sse.as_bytes().chunks(step) {
        out.extend(tr.push(piece).map_err(|e| e.to_string())?);
    }
    out.extend(tr.finish().map_err(|e| e.to_string())?);
    Ok(String::from_utf8(out).expect("utf-8"))
}

fn chunks(stream: &str) -> Vec<Value> {
    let mut events: Vec<&str> = stream.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.pop(), Some("data: [DONE]"), "ends with [DONE]: {stream}");
    events
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").expect("data event")).expect("json chunk"))
        .collect()
}

#[test]
fn anthropic_streams_become_openai_chunks_whatever_the_network_pieces() {
    let t = target(ProviderKind::Anthropic, "c");
    let sse = fixture("anthropic/stream_ok.sse");
    let whole = translate(&t, &sse, sse.len(), false).expect("complete");
    for step in [1, 7, 64] {
        assert_eq!(translate(&t, &sse, step, false).expect("complete"), whole, "pieces of {step} bytes");
    }
    let c = chunks(&whole);
    assert_eq!(c[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert!(c.iter().all(|x| x["object"] == "chat.completion.chunk"));
    let text: String = c.iter().filter_map(|x| x["choices"][0]["delta"]["content"].as_str()).collect();
    assert!(!text.is_empty());
    assert_eq!(c.last().expect("chunks")["choices"][0]["finish_reason"], "stop");

    let tools = chunks(&translate(&t, &fixture("anthropic/stream_tool_use.sse"), 13, true).expect("complete"));
    let call =
        tools.iter().find_map(|x| x["choices"][0]["delta"]["tool_calls"][0]["id"].as_str()).expect("a tool call");
    assert!(call.starts_with("toolu_"));
    let args: String = tools
        .iter()
        .filter_map(|x| x["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert!(serde_json::from_str::<Value>(&args).is_ok(), "partial JSON joins into JSON: {args}");
    assert!(tools.iter().any(|x| x["choices"][0]["finish_reason"] == "tool_calls"));
    assert!(
        tools.last().expect("usage")["usage"]["total_tokens"].as_u64().is_some(),
        "include_usage adds a usage chunk"
    );

    // Cut before message_stop: an error, never a made-up [DONE].
    let cut = &sse[..sse.find("event: message_stop").expect("has a stop")];
    assert!(translate(&t, cut, 50, false).is_err());
}

#[test]
fn gemini_streams_become_openai_chunks() {
    let path = format!("{}/fixtures/gemini/stream_ok.sse", env!("CARGO_MANIFEST_DIR"));
    let sse = std::fs::read_to_string(&path).expect("the Gemini stream fixture");
    let t = target(ProviderKind::Gemini, "g");
    let out = translate(&t, &sse, 5, false).expect("complete");
    let c = chunks(&out);
    let text: String = c.iter().filter_map(|x| x["choices"][0]["delta"]["content"].as_str()).collect();
    assert!(!text.is_empty());
    assert_eq!(c.last().expect("chunks")["choices"][0]["finish_reason"], "stop");
    let without_finish: String = sse.split_inclusive("\n\n").filter(|e| !e.contains("finishReason")).collect();
    assert!(translate(&t, &without_finish, 5, false).is_err(), "no finishReason: cut");
}

#[test]
fn gemini_safety_blocks_are_content_filter_answers() {
    let t = target(ProviderKind::Gemini, "g");
    for file in ["gemini/safety_blocked.json", "gemini/safety_finish.json"] {
        let a = parse_success(&t, Bytes::from(fixture(file)), "m", 0).unwrap_or_else(|e| panic!("{file}: {e}"));
        let v: Value = serde_json::from_slice(&a.body).expect("json");
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter", "{file}");
        assert!(v["choices"][0]["message"]["tool_calls"].is_null(), "{file}");
    }
}
