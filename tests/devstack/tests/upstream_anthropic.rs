//! The fake upstream's Anthropic Messages endpoint over real HTTP: the real API's header
//! and body checks, the Message shape (text and `tool_use`), the exact named-event SSE
//! sequence, Anthropic error envelopes for every scripted status, the other scripted
//! actions, and call recording.

use std::time::{Duration, Instant};

use devstack::{spawn_upstream, HttpClientError, HttpRequest, HttpResponse, UpstreamHandle};
use serde_json::{json, Value};

const KEY: &str = "sk-ant-test-key";

fn url(upstream: &UpstreamHandle) -> String {
    format!("{}/v1/messages", upstream.url())
}

/// A valid request with `body` (model, max_tokens and messages added if absent).
fn messages(upstream: &UpstreamHandle, mut body: Value) -> HttpRequest {
    let defaults = json!({"model": "claude-sonnet-4-5", "max_tokens": 256});
    for (k, v) in defaults.as_object().unwrap() {
        body.as_object_mut().unwrap().entry(k.clone()).or_insert(v.clone());
    }
    HttpRequest::post(&url(upstream)).header("x-api-key", KEY).header("anthropic-version", "2023-06-01").json(&body)
}

fn ask(upstream: &UpstreamHandle, text: &str, stream: bool) -> HttpRequest {
    messages(
        upstream,
        json!({"stream": stream, "system": "be brief", "messages": [
            {"role": "user", "content": "an earlier question"},
            {"role": "assistant", "content": "an earlier answer"},
            {"role": "user", "content": text}
        ]}),
    )
}

fn weather_tools(with_city: bool) -> Value {
    let properties = if with_city { json!({"city": {"type": "string"}}) } else { json!({"q": {"type": "string"}}) };
    json!([{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": properties}},
           {"name": "other_tool", "input_schema": {"type": "object", "properties": {"city": {}}}}])
}

/// Splits an Anthropic SSE body into `(event, data)` pairs, checking the framing and that
/// each event's name equals its data's `type`.
fn events(body: &str) -> Vec<(String, Value)> {
    assert!(body.ends_with("\n\n"), "SSE body must end with a blank line: {body:?}");
    body.split_terminator("\n\n")
        .map(|event| {
            let (name_line, data_line) = event.split_once('\n').unwrap_or_else(|| panic!("two lines: {event:?}"));
            let name = name_line.strip_prefix("event: ").unwrap_or_else(|| panic!("event line: {event:?}"));
            let data = data_line.strip_prefix("data: ").unwrap_or_else(|| panic!("data line: {event:?}"));
            assert!(!data.contains('\n'), "one data line: {event:?}");
            let value: Value = serde_json::from_str(data).expect("event data is JSON");
            assert_eq!(value["type"], name, "event name and data type differ: {event:?}");
            (name.to_string(), value)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

fn reply_number(text: &str) -> u64 {
    text.strip_prefix("fake reply #").unwrap().split(':').next().unwrap().parse().unwrap()
}

fn assert_error(response: &HttpResponse, status: u16, kind: &str) -> Value {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json().unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(body["request_id"].as_str(), response.header("request-id"), "{body}");
    body
}

#[test]
fn default_ok_is_a_real_shaped_message_and_the_call_is_recorded() {
    let upstream = spawn_upstream();
    let text = "what is 2+2? marker-a-ok";
    let r = ask(&upstream, text, false).send().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json().unwrap();
    let content = v["content"][0]["text"].as_str().unwrap().to_string();
    let n = reply_number(&content);
    assert_eq!(content, format!("fake reply #{n}: {text}"));
    assert_eq!(r.header("request-id"), Some(format!("req_fake_{n}").as_str()));
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["content", "id", "model", "role", "stop_reason", "stop_sequence", "type", "usage"]);
    assert_eq!(v["id"], format!("msg_fake_{n}"));
    assert_eq!((v["type"].as_str(), v["role"].as_str()), (Some("message"), Some("assistant")));
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["content"], json!([{"type": "text", "text": content}]));
    assert_eq!((v["stop_reason"].as_str(), &v["stop_sequence"]), (Some("end_turn"), &Value::Null));
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["usage"]["output_tokens"].as_u64().unwrap(), content.split_whitespace().count() as u64);

    let calls = upstream.calls_detail("marker-a-ok");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["path"], "/v1/messages");
    assert_eq!(calls[0]["model"], "claude-sonnet-4-5");
    assert_eq!((calls[0]["auth_header"].as_str(), calls[0]["auth"].as_str()), (Some("x-api-key"), Some(KEY)));
    assert_eq!(calls[0]["authorization"], Value::Null);
    assert!(calls[0]["body"].as_str().unwrap().contains("\"max_tokens\":256"));
}

#[test]
fn missing_or_bad_headers_and_fields_get_the_real_errors_and_are_still_recorded() {
    let upstream = spawn_upstream();
    let body = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "marker-a-head"}]});
    let no_key = HttpRequest::post(&url(&upstream)).header("anthropic-version", "2023-06-01").json(&body);
    let e = assert_error(&no_key.send().unwrap(), 401, "authentication_error");
    assert_eq!(e["error"]["message"], "x-api-key header is required");
    let empty_key = no_key.clone().header("x-api-key", "");
    assert_error(&empty_key.send().unwrap(), 401, "authentication_error");
    let no_version = HttpRequest::post(&url(&upstream)).header("x-api-key", KEY).json(&body);
    let e = assert_error(&no_version.send().unwrap(), 400, "invalid_request_error");
    assert_eq!(e["error"]["message"], "anthropic-version: header is required");
    let bad_version = no_version.clone().header("anthropic-version", "2099-01-01");
    assert_error(&bad_version.send().unwrap(), 400, "invalid_request_error");
    // The key is checked before the version, as by the real API.
    let neither = HttpRequest::post(&url(&upstream)).json(&body);
    assert_error(&neither.send().unwrap(), 401, "authentication_error");
    assert_eq!(upstream.calls("marker-a-head"), 5);
    // An Anthropic key sent as a bearer token is not an x-api-key.
    let bearer = neither.header("authorization", &format!("Bearer {KEY}")).header("anthropic-version", "2023-06-01");
    assert_error(&bearer.send().unwrap(), 401, "authentication_error");

    let cases = [
        (json!({"max_tokens": 5, "messages": []}), "model: Field required"),
        (json!({"model": "m", "messages": []}), "max_tokens: Field required"),
        (json!({"model": "m", "max_tokens": 5}), "messages: Field required"),
        (
            json!({"model": "m", "max_tokens": 0, "messages": []}),
            "max_tokens: Input should be greater than or equal to 1",
        ),
        (json!({"model": "m", "max_tokens": 5, "messages": []}), "messages: at least one message is required"),
    ];
    for (body, message) in cases {
        let r = HttpRequest::post(&url(&upstream))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(assert_error(&r, 400, "invalid_request_error")["error"]["message"], message);
    }
    let system_role = messages(&upstream, json!({"messages": [{"role": "system", "content": "x"}]})).send().unwrap();
    let e = assert_error(&system_role, 400, "invalid_request_error");
    assert!(e["error"]["message"].as_str().unwrap().contains("top-level `system` parameter"), "{e}");
    let bad_json = HttpRequest::post(&url(&upstream))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .body("{\"model\": marker-a-badjson")
        .send()
        .unwrap();
    assert_error(&bad_json, 400, "invalid_request_error");
    assert_eq!(upstream.calls("marker-a-badjson"), 1);
    let get = HttpRequest::get(&url(&upstream)).send().unwrap();
    assert_eq!(get.status, 405);
    assert_eq!(get.json().unwrap()["type"], "error");
}

#[test]
fn a_rule_can_require_one_key() {
    let upstream = spawn_upstream();
    upstream.add_rule("marker-a-key", json!([{"kind": "ok", "api_key": "sk-ant-good"}]), true);
    let body = json!({"messages": [{"role": "user", "content": "marker-a-key"}]});
    let wrong = messages(&upstream, body.clone()).send().unwrap();
    assert_eq!(assert_error(&wrong, 401, "authentication_error")["error"]["message"], "invalid x-api-key");
    let right = HttpRequest::post(&url(&upstream))
        .header("x-api-key", "sk-ant-good")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "m", "max_tokens": 9, "messages": body["messages"]}))
        .send()
        .unwrap();
    assert_eq!(right.status, 200);
    assert_eq!(upstream.calls("marker-a-key"), 2);
}

#[test]
fn tools_and_tool_call_answer_with_a_tool_use_block() {
    let upstream = spawn_upstream();
    let ask_tool = |tools: Value, text: &str| {
        messages(
            &upstream,
            json!({"tools": tools, "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap()
    };
    let v = ask_tool(weather_tools(true), "weather? TOOL_CALL");
    let id = v["id"].as_str().unwrap();
    let n = id.strip_prefix("msg_fake_").unwrap();
    assert_eq!(
        v["content"],
        json!([{"type": "tool_use", "id": format!("toolu_fake_{n}"), "name": "get_weather", "input": {"city": "Paris"}}])
    );
    assert_eq!(v["stop_reason"], "tool_use");
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(ask_tool(weather_tools(false), "TOOL_CALL")["content"][0]["input"], json!({}));
    // No TOOL_CALL, or no tools: a text answer.
    assert_eq!(ask_tool(weather_tools(true), "weather?")["stop_reason"], "end_turn");
    let no_tools = messages(&upstream, json!({"messages": [{"role": "user", "content": "TOOL_CALL"}]})).send().unwrap();
    assert_eq!(no_tools.json().unwrap()["content"][0]["type"], "text");
    // The tool result comes back in a user turn: the answer is text again and echoes it.
    let follow_up = messages(
        &upstream,
        json!({"tools": weather_tools(true), "messages": [
            {"role": "user", "content": "weather? TOOL_CALL"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C sunny"}]}
        ]}),
    )
    .send()
    .unwrap()
    .json()
    .unwrap();
    assert!(follow_up["content"][0]["text"].as_str().unwrap().ends_with(": 18C sunny"), "{follow_up}");
}

#[test]
fn streaming_text_is_the_exact_real_event_sequence() {
    let upstream = spawn_upstream();
    let text = "stream this please marker-a-sse";
    let r = ask(&upstream, text, true).send().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = events(&r.text());
    let words = format!("fake reply #0: {text}").split(' ').count();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", words));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names(&events), expected);

    let start = &events[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!((&start["stop_reason"], &start["stop_sequence"]), (&Value::Null, &Value::Null));
    assert_eq!((start["role"].as_str(), start["model"].as_str()), (Some("assistant"), Some("claude-sonnet-4-5")));
    assert!(start["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        events[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    let mut streamed = String::new();
    for (_, delta) in &events[3..3 + words] {
        assert_eq!((delta["index"].as_u64(), delta["delta"]["type"].as_str()), (Some(0), Some("text_delta")));
        streamed.push_str(delta["delta"]["text"].as_str().unwrap());
    }
    let n = reply_number(&streamed);
    assert_eq!(streamed, format!("fake reply #{n}: {text}"));
    assert_eq!(start["id"], format!("msg_fake_{n}"));
    assert_eq!(events[3 + words].1, json!({"type": "content_block_stop", "index": 0}));
    let delta = &events[4 + words].1;
    assert_eq!(delta["delta"], json!({"stop_reason": "end_turn", "stop_sequence": null}));
    assert_eq!(delta["usage"]["output_tokens"].as_u64(), Some(words as u64));
    assert_eq!(events[5 + words].1, json!({"type": "message_stop"}));
}

#[test]
fn streaming_tool_use_sends_input_json_deltas() {
    let upstream = spawn_upstream();
    let r = messages(
        &upstream,
        json!({"stream": true, "tools": weather_tools(true), "messages": [{"role": "user", "content": "TOOL_CALL marker-a-st"}]}),
    )
    .send()
    .unwrap();
    let events = events(&r.text());
    let deltas = events.len() - 6;
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names(&events), expected);
    let block = &events[1].1["content_block"];
    assert_eq!((block["type"].as_str(), block["name"].as_str()), (Some("tool_use"), Some("get_weather")));
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["input"], json!({}));
    let fragments: Vec<&str> = events[3..3 + deltas]
        .iter()
        .map(|(_, e)| {
            assert_eq!(e["delta"]["type"], "input_json_delta");
            e["delta"]["partial_json"].as_str().unwrap()
        })
        .collect();
    assert_eq!(fragments[0], "", "the real stream opens with an empty fragment");
    assert!(fragments.len() >= 3, "the input arrives in pieces: {fragments:?}");
    assert_eq!(serde_json::from_str::<Value>(&fragments.concat()).unwrap(), json!({"city": "Paris"}));
    assert_eq!(events[deltas + 4].1["delta"]["stop_reason"], "tool_use");
}

#[test]
fn status_actions_answer_with_anthropic_error_bodies() {
    let upstream = spawn_upstream();
    let marker = "marker-a-status";
    upstream.add_rule(
        marker,
        json!([
            {"kind": "status", "status": 429, "retry_after": "2"},
            {"kind": "status", "status": 500},
            {"kind": "status", "status": 529},
            {"kind": "status", "status": 400},
            {"kind": "status", "status": 401},
            {"kind": "status", "status": 403},
            {"kind": "status", "status": 404},
            {"kind": "status", "status": 503, "body": "upstream connect error", "headers": {"x-extra": "1"}},
        ]),
        false,
    );
    let r = ask(&upstream, marker, false).send().unwrap();
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_error(&r, 429, "rate_limit_error");
    let r = ask(&upstream, marker, true).send().unwrap();
    assert_eq!(r.header("retry-after"), None);
    assert_error(&r, 500, "api_error");
    assert_eq!(
        assert_error(&ask(&upstream, marker, false).send().unwrap(), 529, "overloaded_error")["error"]["message"],
        "Overloaded"
    );
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
    ] {
        assert_error(&ask(&upstream, marker, false).send().unwrap(), status, kind);
    }
    let r = ask(&upstream, marker, false).send().unwrap();
    assert_eq!((r.status, r.text(), r.header("x-extra")), (503, "upstream connect error".to_string(), Some("1")));
    assert_eq!(ask(&upstream, marker, false).send().unwrap().status, 200);
    assert_eq!(upstream.calls(marker), 9);
}

#[test]
fn malformed_cut_slow_and_delayed_answers() {
    let upstream = spawn_upstream();
    upstream.add_rule("marker-a-malformed", json!([{"kind": "malformed"}]), false);
    let r = ask(&upstream, "marker-a-malformed", false).send().unwrap();
    assert_eq!((r.status, r.header("content-type")), (200, Some("application/json")));
    assert!(!r.body.is_empty() && serde_json::from_slice::<Value>(&r.body).is_err(), "{}", r.text());

    upstream.add_rule("marker-a-cut", json!([{"kind": "cut_stream", "after_chunks": 4}, {"kind": "cut_stream", "after_chunks": 99}, {"kind": "cut_stream"}]), false);
    // 4 events; then everything but the terminal events (start, block start, ping, 7 words).
    for expected in [4, 10] {
        match ask(&upstream, "a b c marker-a-cut", true).send() {
            Err(HttpClientError::Incomplete { partial }) => {
                let text = String::from_utf8(partial.body).unwrap();
                let events = events(&text);
                assert_eq!(events.len(), expected, "{text}");
                assert!(!names(&events)
                    .iter()
                    .any(|n| matches!(*n, "content_block_stop" | "message_delta" | "message_stop")));
            }
            other => panic!("expected a truncated stream, got {other:?}"),
        }
    }
    match ask(&upstream, "marker-a-cut", false).send() {
        Err(HttpClientError::Incomplete { partial }) => {
            assert!(serde_json::from_slice::<Value>(&partial.body).is_err())
        }
        other => panic!("expected a truncated body, got {other:?}"),
    }

    upstream.add_rule("marker-a-slow", json!([{"kind": "slow_stream", "chunk_delay_ms": 80}]), false);
    let started = Instant::now();
    let mut arrivals = Vec::new();
    let r = ask(&upstream, "marker-a-slow", true)
        .send_streaming(|piece| arrivals.push((started.elapsed(), piece.len())))
        .unwrap();
    let total = started.elapsed();
    let events = events(&r.text());
    assert_eq!(events.len(), 3 + 4 + 3);
    assert!(total >= Duration::from_millis(80 * 9), "total {total:?}");
    assert!(arrivals.len() >= 5 && arrivals[0].0 < total - Duration::from_millis(400), "{arrivals:?}");

    upstream.add_rule("marker-a-delay", json!([{"kind": "ok", "delay_ms": 300}]), false);
    let started = Instant::now();
    assert_eq!(ask(&upstream, "marker-a-delay", false).send().unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

fn fixture(name: &str) -> String {
    let path = format!("{}/../../fixtures/anthropic/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect();
    keys.sort();
    keys
}

/// Event names with repeated deltas collapsed, and each event's top-level keys.
fn outline(events: &[(String, Value)]) -> Vec<(String, Vec<String>)> {
    let mut outline: Vec<(String, Vec<String>)> = Vec::new();
    for (name, data) in events {
        if outline.last().is_none_or(|(last, _)| last != name || name != "content_block_delta") {
            outline.push((name.clone(), keys(data)));
        }
    }
    outline
}

#[test]
fn the_fake_has_the_shape_of_the_documented_examples() {
    let upstream = spawn_upstream();
    let documented: Value = serde_json::from_str(&fixture("ok.json")).unwrap();
    let fake = ask(&upstream, "shape", false).send().unwrap().json().unwrap();
    assert_eq!(keys(&fake), keys(&documented));
    assert_eq!(keys(&fake["content"][0]), keys(&documented["content"][0]));
    assert!(keys(&documented["usage"]).iter().all(|k| fake["usage"].get(k).is_some()));

    let documented: Value = serde_json::from_str(&fixture("tool_use.json")).unwrap();
    let fake = messages(
        &upstream,
        json!({"tools": weather_tools(true), "messages": [{"role": "user", "content": "TOOL_CALL"}]}),
    )
    .send()
    .unwrap()
    .json()
    .unwrap();
    assert_eq!(keys(&fake["content"][0]), keys(&documented["content"][1]));
    assert_eq!(fake["stop_reason"], documented["stop_reason"]);

    let documented: Value = serde_json::from_str(&fixture("error_404.json")).unwrap();
    upstream.add_rule("marker-a-shape-404", json!([{"kind": "status", "status": 404}]), false);
    let fake = assert_error(&ask(&upstream, "marker-a-shape-404", false).send().unwrap(), 404, "not_found_error");
    assert_eq!((keys(&fake), keys(&fake["error"])), (keys(&documented), keys(&documented["error"])));
    for (file, kind) in [
        ("error_400.json", "invalid_request_error"),
        ("error_401.json", "authentication_error"),
        ("error_429.json", "rate_limit_error"),
        ("error_500.json", "api_error"),
        ("error_529.json", "overloaded_error"),
    ] {
        let v: Value = serde_json::from_str(&fixture(file)).unwrap();
        assert_eq!((v["type"].as_str(), v["error"]["type"].as_str()), (Some("error"), Some(kind)), "{file}");
    }
    assert!(serde_json::from_str::<Value>(&fixture("malformed.json")).is_err());

    // Streams: the same event sequence, each event with the same fields.
    let documented = events(&fixture("stream_ok.sse"));
    let fake = events(&ask(&upstream, "shape", true).send().unwrap().text());
    assert_eq!(outline(&fake), outline(&documented));
    let (fake_start, documented_start) = (&fake[0].1["message"], &documented[0].1["message"]);
    assert!(keys(documented_start).iter().all(|k| fake_start.get(k).is_some()), "{fake_start}");

    let documented = events(&fixture("stream_tool_use.sse"));
    let fake = events(
        &messages(&upstream, json!({"stream": true, "tools": weather_tools(true), "messages": [{"role": "user", "content": "TOOL_CALL"}]}))
            .send()
            .unwrap()
            .text(),
    );
    let documented_tool = documented.iter().find(|(_, d)| d["content_block"]["type"] == "tool_use").unwrap();
    assert_eq!(keys(&fake[1].1["content_block"]), keys(&documented_tool.1["content_block"]));
    let first_fragment = |events: &[(String, Value)]| {
        events.iter().find(|(_, d)| d["delta"]["type"] == "input_json_delta").map(|(_, d)| d["delta"].clone())
    };
    assert_eq!(first_fragment(&fake), first_fragment(&documented));
    // The documented stream has a text block first; both end the same way.
    assert_eq!(outline(&fake)[3..], outline(&documented)[outline(&documented).len() - 4..]);
}
