//! Request validation refuses what OpenAI refuses and nothing more: valid edge values, nulls for
//! optional parameters, tool-calling assistant turns without content, unknown fields and unknown
//! content part types all reach the provider unchanged. (What is refused, and that it never
//! reaches the provider, is the matrix in `fixtures/bad_input.json`, run by `tests/bad_input.rs`.)
#![cfg(not(target_arch = "wasm32"))]

mod support;

use llm_edge_cache::api::chat::ChatRequest;
use serde_json::{json, Value};
use support::*;

fn user() -> Value {
    json!([{"role": "user", "content": "x"}])
}

/// Valid requests at the edges of what OpenAI documents.
fn valid_cases() -> Vec<(&'static str, Value)> {
    let call = json!({"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}});
    vec![
        (
            "lowest sampling values",
            json!({"temperature": 0, "top_p": 0, "frequency_penalty": -2, "presence_penalty": -2}),
        ),
        (
            "highest sampling values",
            json!({"temperature": 2, "top_p": 1, "frequency_penalty": 2, "presence_penalty": 2.0}),
        ),
        ("fractional sampling values", json!({"temperature": 1.99, "top_p": 0.001, "presence_penalty": -1.5})),
        (
            "smallest counts",
            json!({"n": 1, "max_tokens": 1, "max_completion_tokens": 1, "top_logprobs": 0, "logprobs": true}),
        ),
        (
            "largest counts",
            json!({"n": 128, "max_tokens": 1_000_000, "top_logprobs": 20, "seed": -9_007_199_254_740_991_i64}),
        ),
        ("integral float counts", json!({"n": 2.0, "max_tokens": 64.0})),
        ("logit_bias at its bounds", json!({"logit_bias": {"50256": -100, "1": 100, "2": 0.5}})),
        ("four stop strings", json!({"stop": ["a", "b", "c", "d"]})),
        ("one stop string", json!({"stop": "END"})),
        ("no stop strings", json!({"stop": []})),
        (
            "null optional parameters",
            json!({"temperature": null, "top_p": null, "n": null, "max_tokens": null, "stop": null,
                   "logit_bias": null, "tools": null, "tool_choice": null, "response_format": null,
                   "seed": null, "reasoning_effort": null, "service_tier": null, "user": null}),
        ),
        (
            "unknown fields with any value",
            json!({"x_vendor": {"b": [1, null, "z"]}, "temperaturee": "hot", "top_k": -3, "guided_json": true}),
        ),
        ("free-form strings", json!({"reasoning_effort": "minimal", "service_tier": "flex", "verbosity": "low"})),
        (
            "response formats",
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "weather-v2", "strict": true, "schema": {"type": "object"}}}}),
        ),
        ("json_object response format", json!({"response_format": {"type": "json_object"}})),
        (
            "tools and tool choices",
            json!({"tools": [
                      {"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}, "strict": null}},
                      {"type": "function", "function": {"name": "A-b_9"}},
                      {"type": "custom", "custom": {"name": "grep"}},
                      {"type": "some_future_tool", "whatever": 1}],
                   "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                   "parallel_tool_calls": false}),
        ),
        (
            "tool_choice required",
            json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}),
        ),
        (
            "tool_choice of an unknown object type",
            json!({"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}}),
        ),
        (
            "deprecated functions",
            json!({"functions": [{"name": "f", "parameters": {}}], "function_call": {"name": "f"}}),
        ),
        (
            "assistant content null with tool_calls, then the tool's answer",
            json!({"messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "18C"}]}]}),
        ),
        (
            "assistant content absent with tool_calls",
            json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call], "name": null}]}),
        ),
        (
            "assistant refusal and custom tool call",
            json!({"messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": null, "refusal": "no"},
                {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "b"}],
                 "tool_calls": [{"id": "c2", "type": "custom", "custom": {"name": "grep", "input": "todo"}}]},
                {"role": "function", "name": "f", "content": null}]}),
        ),
        (
            "every known content part, and unknown ones",
            json!({"messages": [{"role": "user", "name": "ann", "content": [
                {"type": "text", "text": ""},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-1"}},
                {"type": "input_video", "video": 42},
                {"type": "text", "text": "t", "cache_control": {"type": "ephemeral"}}]}]}),
        ),
        (
            "empty content array",
            json!({"messages": [{"role": "developer", "content": []}, {"role": "user", "content": ""}]}),
        ),
    ]
}

fn body_of(extra: &Value) -> Value {
    let mut body = json!({"model": "gpt-4o-mini", "messages": user()});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

#[test]
fn valid_edge_values_parse_unchanged() {
    for (name, extra) in valid_cases() {
        let body = body_of(&extra);
        let parsed = ChatRequest::parse(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut expected = body.as_object().expect("object").clone();
        // `user: null` is the default and is not kept; every other field is.
        if expected.get("user") == Some(&Value::Null) {
            expected.remove("user");
        }
        assert_eq!(parsed.to_json(), expected, "{name}: the request is kept as sent");
    }
}

#[test]
fn valid_edge_values_reach_the_provider() {
    let w = World::new();
    w.upstream_ok();
    for (i, (name, extra)) in valid_cases().into_iter().enumerate() {
        let body = body_of(&extra);
        let reply = w.chat(&body.to_string(), &[]);
        assert_eq!(reply.status, 200, "{name}: {:?}", reply.body);
        assert_eq!(w.upstream_calls(), i + 1, "{name}: the provider is called");
        let sent = w.host.sent_to(UPSTREAM);
        let wire = wire(sent.last().expect("a call"));
        assert_eq!(wire["messages"], body["messages"], "{name}: messages are forwarded unchanged");
        for (k, v) in extra.as_object().expect("object") {
            if k != "messages" && !v.is_null() {
                assert_eq!(&wire[k], v, "{name}: {k} is forwarded unchanged");
            }
        }
    }
}

/// Every refusal is OpenAI's: 400, `invalid_request_error`, a code, a message naming the field.
#[test]
fn refusals_are_shaped_as_openai_shapes_them() {
    let w = World::new();
    w.upstream_ok();
    let cases = [
        (json!({"temperature": 9}), "invalid_value", "temperature", "<= 2"),
        (json!({"max_tokens": -5}), "invalid_value", "max_tokens", ">= 1"),
        (
            json!({"messages": [{"role": "user", "content": {"text": "x"}}]}),
            "invalid_type",
            "messages[0].content",
            "string",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "", "arguments": "{}"}}]}]}),
            "invalid_value",
            "messages[1].tool_calls[0].function.name",
            "non-empty",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "a.b"}}]}),
            "invalid_value",
            "tools[0].function.name",
            "a.b",
        ),
    ];
    for (extra, code, param, says) in cases {
        let reply = w.chat(&body_of(&extra).to_string(), &[]);
        reply.assert_error(400, code);
        let e = &reply.json()["error"];
        assert_eq!(e["type"], "invalid_request_error", "{param}");
        assert_eq!(e["param"], param);
        let message = e["message"].as_str().expect("message");
        assert!(message.contains(param) && message.contains(says), "{param}: {message}");
    }
    assert_eq!(w.upstream_calls(), 0, "no refused request reaches the provider");
}
