//! The fake upstream's Gemini endpoints over real HTTP: key lookup and the real API's
//! refusals, the GenerateContentResponse shape (text and `functionCall`), the exact SSE
//! framing of `streamGenerateContent?alt=sse` (and the JSON-array stream without it),
//! Gemini error envelopes for every scripted status, the other scripted actions, and call
//! recording and counting across all three formats.

use std::time::{Duration, Instant};

use devstack::{spawn_upstream, HttpClientError, HttpRequest, HttpResponse, UpstreamHandle};
use serde_json::{json, Value};

const KEY: &str = "AIza-test-key";
const MODEL: &str = "gemini-2.5-flash";

fn url(upstream: &UpstreamHandle, method: &str, query: &str) -> String {
    format!("{}/v1beta/models/{MODEL}:{method}{query}", upstream.url())
}

fn generate(upstream: &UpstreamHandle, body: &Value) -> HttpRequest {
    HttpRequest::post(&url(upstream, "generateContent", "")).header("x-goog-api-key", KEY).json(body)
}

fn stream(upstream: &UpstreamHandle, body: &Value) -> HttpRequest {
    HttpRequest::post(&url(upstream, "streamGenerateContent", "?alt=sse")).header("x-goog-api-key", KEY).json(body)
}

fn conversation(text: &str) -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "an earlier question"}]},
            {"role": "model", "parts": [{"text": "an earlier answer"}]},
            {"role": "user", "parts": [{"text": text}]}
        ]
    })
}

fn with_tools(text: &str, with_city: bool) -> Value {
    let properties = if with_city { json!({"city": {"type": "STRING"}}) } else { json!({"q": {"type": "STRING"}}) };
    let mut body = conversation(text);
    body["tools"] = json!([{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather", "parameters": {"type": "OBJECT", "properties": properties}},
        {"name": "other", "parameters": {"type": "OBJECT", "properties": {"city": {}}}}
    ]}]);
    body
}

/// Splits a Gemini SSE body into its JSON chunks, checking the exact framing the real
/// endpoint uses: `data: <one-line JSON>\r\n\r\n` per event, nothing else.
fn sse_chunks(body: &str) -> Vec<Value> {
    assert!(body.ends_with("\r\n\r\n"), "events end with CRLF CRLF: {body:?}");
    body.split_terminator("\r\n\r\n")
        .map(|event| {
            let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {event:?}"));
            assert!(!data.contains('\n') && !data.contains('\r'), "one line per event: {event:?}");
            serde_json::from_str(data).expect("chunk is JSON")
        })
        .collect()
}

fn streamed_text(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str()).collect()
}

fn reply_number(text: &str) -> u64 {
    text.strip_prefix("fake reply #").unwrap().split(':').next().unwrap().parse().unwrap()
}

fn assert_error(response: &HttpResponse, code: u16, status: &str) -> Value {
    assert_eq!(response.status, code, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json().unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["status"], status, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

#[test]
fn default_ok_is_a_real_shaped_response_and_the_call_is_recorded() {
    let upstream = spawn_upstream();
    let text = "what is 2+2? marker-g-ok";
    let r = generate(&upstream, &conversation(text)).send().unwrap();
    assert_eq!((r.status, r.header("content-type")), (200, Some("application/json")));
    let v = r.json().unwrap();
    let content = v["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap().to_string();
    let n = reply_number(&content);
    assert_eq!(content, format!("fake reply #{n}: {text}"));
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["candidates", "modelVersion", "responseId", "usageMetadata"]);
    assert_eq!(
        v["candidates"],
        json!([{"content": {"parts": [{"text": content}], "role": "model"}, "finishReason": "STOP", "index": 0}])
    );
    let usage = &v["usageMetadata"];
    let (p, c) = (usage["promptTokenCount"].as_u64().unwrap(), usage["candidatesTokenCount"].as_u64().unwrap());
    assert!(p > 0 && c > 0);
    assert_eq!(usage["totalTokenCount"].as_u64(), Some(p + c));
    assert_eq!(v["modelVersion"], MODEL);
    assert_eq!(v["responseId"], format!("fake-response-{n}"));

    // The key may also come as ?key=; the v1 path works too.
    let by_query = HttpRequest::post(&format!("{}/v1/models/gemini-2.0-flash:generateContent?key=k2", upstream.url()))
        .json(&conversation(text))
        .send()
        .unwrap();
    assert_eq!(by_query.json().unwrap()["modelVersion"], "gemini-2.0-flash");

    let calls = upstream.calls_detail("marker-g-ok");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["path"], format!("/v1beta/models/{MODEL}:generateContent"));
    assert_eq!(calls[0]["model"], MODEL);
    assert_eq!((calls[0]["auth_header"].as_str(), calls[0]["auth"].as_str()), (Some("x-goog-api-key"), Some(KEY)));
    assert_eq!((calls[1]["auth_header"].as_str(), calls[1]["auth"].as_str()), (Some("key"), Some("k2")));
    assert_eq!(calls[1]["model"], "gemini-2.0-flash");
}

#[test]
fn missing_keys_and_bad_bodies_get_the_real_errors_and_are_still_recorded() {
    let upstream = spawn_upstream();
    let body = conversation("marker-g-bad");
    let no_key = HttpRequest::post(&url(&upstream, "generateContent", "")).json(&body).send().unwrap();
    let e = assert_error(&no_key, 403, "PERMISSION_DENIED");
    assert!(e["error"]["message"].as_str().unwrap().starts_with("Method doesn't allow unregistered callers"));
    let empty = HttpRequest::post(&url(&upstream, "generateContent", "?key=")).json(&body).send().unwrap();
    assert_error(&empty, 403, "PERMISSION_DENIED");
    let bearer =
        HttpRequest::post(&url(&upstream, "generateContent", "")).header("authorization", "Bearer AIza").json(&body);
    assert_error(&bearer.send().unwrap(), 401, "UNAUTHENTICATED");
    assert_eq!(upstream.calls("marker-g-bad"), 3);

    let cases = [
        (json!({}), "* GenerateContentRequest.contents: contents is not specified\n"),
        (json!({"contents": []}), "* GenerateContentRequest.contents: contents is not specified\n"),
        (
            json!({"messages": [], "contents": []}),
            "Invalid JSON payload received. Unknown name \"messages\": Cannot find field.",
        ),
        (
            json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
            "Please use a valid role: user, model.",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}, {"role": "model", "parts": []}]}),
            "* GenerateContentRequest.contents[1].parts: contents.parts must not be empty.\n",
        ),
    ];
    for (body, message) in cases {
        let e = assert_error(&generate(&upstream, &body).send().unwrap(), 400, "INVALID_ARGUMENT");
        assert_eq!(e["error"]["message"], message);
    }
    let bad_json = generate(&upstream, &json!({})).body("{\"contents\": marker-g-badjson").send().unwrap();
    assert_error(&bad_json, 400, "INVALID_ARGUMENT");
    assert_eq!(upstream.calls("marker-g-badjson"), 1);
    assert_eq!(HttpRequest::get(&url(&upstream, "generateContent", "")).send().unwrap().status, 405);
    let unknown = HttpRequest::post(&url(&upstream, "countTokens", "")).json(&body).send().unwrap();
    assert_eq!(unknown.status, 404);
}

#[test]
fn a_rule_can_require_one_key() {
    let upstream = spawn_upstream();
    upstream.add_rule("marker-g-key", json!([{"kind": "ok", "api_key": "AIza-good"}]), true);
    let wrong = generate(&upstream, &conversation("marker-g-key")).send().unwrap();
    let e = assert_error(&wrong, 400, "INVALID_ARGUMENT");
    assert_eq!(e["error"]["message"], "API key not valid. Please pass a valid API key.");
    assert_eq!(e["error"]["details"][0]["reason"], "API_KEY_INVALID");
    let right = HttpRequest::post(&url(&upstream, "generateContent", "?key=AIza-good"))
        .json(&conversation("marker-g-key"))
        .send()
        .unwrap();
    assert_eq!(right.status, 200);
}

#[test]
fn function_declarations_and_tool_call_answer_with_a_function_call() {
    let upstream = spawn_upstream();
    let v = generate(&upstream, &with_tools("weather? TOOL_CALL", true)).send().unwrap().json().unwrap();
    assert_eq!(
        v["candidates"][0],
        json!({"content": {"parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}], "role": "model"},
               "finishReason": "STOP", "index": 0})
    );
    let v = generate(&upstream, &with_tools("TOOL_CALL", false)).send().unwrap().json().unwrap();
    assert_eq!(v["candidates"][0]["content"]["parts"][0]["functionCall"]["args"], json!({}));
    let v = generate(&upstream, &with_tools("weather?", true)).send().unwrap().json().unwrap();
    assert!(v["candidates"][0]["content"]["parts"][0]["text"].is_string());
    // The function response comes back in a user turn: a text answer that echoes it.
    let mut follow_up = with_tools("weather? TOOL_CALL", true);
    let contents = follow_up["contents"].as_array_mut().unwrap();
    contents.push(
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]}),
    );
    contents.push(
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 18}}}]}),
    );
    let v = generate(&upstream, &follow_up).send().unwrap().json().unwrap();
    let text = v["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap();
    assert!(text.ends_with(": {\"temp\":18}"), "{text}");
}

#[test]
fn streaming_is_exact_sse_one_chunk_per_word_and_the_last_finishes() {
    let upstream = spawn_upstream();
    let text = "stream this please marker-g-sse";
    let r = stream(&upstream, &conversation(text)).send().unwrap();
    assert_eq!((r.status, r.header("content-type")), (200, Some("text/event-stream")));
    let chunks = sse_chunks(&r.text());
    let content = streamed_text(&chunks);
    let n = reply_number(&content);
    assert_eq!(content, format!("fake reply #{n}: {text}"));
    assert_eq!(chunks.len(), content.split(' ').count());
    let (last, rest) = chunks.split_last().unwrap();
    for chunk in &chunks {
        assert_eq!(chunk["candidates"][0]["content"]["role"], "model");
        assert_eq!(chunk["candidates"][0]["index"], 0);
        assert_eq!(
            (chunk["modelVersion"].as_str(), chunk["responseId"].as_str()),
            (Some(MODEL), Some(&*format!("fake-response-{n}")))
        );
    }
    for chunk in rest {
        assert!(chunk["candidates"][0].get("finishReason").is_none(), "{chunk}");
        assert!(chunk["usageMetadata"].get("candidatesTokenCount").is_none(), "{chunk}");
        assert!(chunk["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
    }
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    let usage = &last["usageMetadata"];
    assert_eq!(usage["candidatesTokenCount"].as_u64(), Some(chunks.len() as u64));
    assert_eq!(
        usage["totalTokenCount"].as_u64().unwrap(),
        usage["promptTokenCount"].as_u64().unwrap() + usage["candidatesTokenCount"].as_u64().unwrap()
    );

    // A tool call streams as one chunk.
    let r = stream(&upstream, &with_tools("TOOL_CALL", true)).send().unwrap();
    let chunks = sse_chunks(&r.text());
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"], "get_weather");
    assert_eq!(chunks[0]["candidates"][0]["finishReason"], "STOP");
}

#[test]
fn streaming_without_alt_sse_is_one_json_array() {
    let upstream = spawn_upstream();
    let r = HttpRequest::post(&url(&upstream, "streamGenerateContent", ""))
        .header("x-goog-api-key", KEY)
        .json(&conversation("as an array"))
        .send()
        .unwrap();
    assert_eq!(r.header("content-type"), Some("application/json"));
    let chunks = r.json().unwrap().as_array().cloned().expect("a JSON array");
    assert!(streamed_text(&chunks).ends_with(": as an array"));
    assert_eq!(chunks.last().unwrap()["candidates"][0]["finishReason"], "STOP");
}

#[test]
fn status_actions_answer_with_gemini_error_bodies() {
    let upstream = spawn_upstream();
    let marker = "marker-g-status";
    upstream.add_rule(
        marker,
        json!([
            {"kind": "status", "status": 429, "retry_after": "7"},
            {"kind": "status", "status": 429},
            {"kind": "status", "status": 400},
            {"kind": "status", "status": 403},
            {"kind": "status", "status": 404},
            {"kind": "status", "status": 500},
            {"kind": "status", "status": 503},
            {"kind": "status", "status": 504, "body": "{\"error\":{\"code\":504}}"},
        ]),
        false,
    );
    let r = generate(&upstream, &conversation(marker)).send().unwrap();
    assert_eq!(r.header("retry-after"), Some("7"));
    let e = assert_error(&r, 429, "RESOURCE_EXHAUSTED");
    let details = e["error"]["details"].as_array().unwrap();
    let types: Vec<&str> = details.iter().map(|d| d["@type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/google.rpc.QuotaFailure",
            "type.googleapis.com/google.rpc.Help",
            "type.googleapis.com/google.rpc.RetryInfo"
        ]
    );
    assert_eq!(details[2]["retryDelay"], "7s");
    let e = assert_error(&stream(&upstream, &conversation(marker)).send().unwrap(), 429, "RESOURCE_EXHAUSTED");
    assert_eq!(e["error"]["details"].as_array().unwrap().len(), 2, "no RetryInfo without a retry_after");
    for (code, status) in [
        (400, "INVALID_ARGUMENT"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
    ] {
        assert_error(&generate(&upstream, &conversation(marker)).send().unwrap(), code, status);
    }
    let r = generate(&upstream, &conversation(marker)).send().unwrap();
    assert_eq!((r.status, r.text()), (504, "{\"error\":{\"code\":504}}".to_string()));
    assert_eq!(generate(&upstream, &conversation(marker)).send().unwrap().status, 200);
}

#[test]
fn malformed_cut_slow_and_delayed_answers() {
    let upstream = spawn_upstream();
    upstream.add_rule("marker-g-malformed", json!([{"kind": "malformed"}]), false);
    let r = generate(&upstream, &conversation("marker-g-malformed")).send().unwrap();
    assert_eq!((r.status, r.header("content-type")), (200, Some("application/json")));
    assert!(!r.body.is_empty() && serde_json::from_slice::<Value>(&r.body).is_err());

    upstream.add_rule("marker-g-cut", json!([{"kind": "cut_stream", "after_chunks": 2}, {"kind": "cut_stream", "after_chunks": 99}, {"kind": "cut_stream"}]), false);
    // 2 chunks; then every chunk but the finishing one ("fake reply #N: a b c marker" = 7).
    for expected in [2, 6] {
        match stream(&upstream, &conversation("a b c marker-g-cut")).send() {
            Err(HttpClientError::Incomplete { partial }) => {
                let chunks = sse_chunks(&String::from_utf8(partial.body).unwrap());
                assert_eq!(chunks.len(), expected);
                assert!(chunks.iter().all(|c| c["candidates"][0].get("finishReason").is_none()));
            }
            other => panic!("expected a truncated stream, got {other:?}"),
        }
    }
    match generate(&upstream, &conversation("marker-g-cut")).send() {
        Err(HttpClientError::Incomplete { partial }) => {
            assert!(serde_json::from_slice::<Value>(&partial.body).is_err())
        }
        other => panic!("expected a truncated body, got {other:?}"),
    }

    upstream.add_rule("marker-g-slow", json!([{"kind": "slow_stream", "chunk_delay_ms": 150}]), false);
    let started = Instant::now();
    let mut arrivals = Vec::new();
    let r =
        stream(&upstream, &conversation("marker-g-slow")).send_streaming(|_| arrivals.push(started.elapsed())).unwrap();
    let total = started.elapsed();
    assert_eq!(sse_chunks(&r.text()).len(), 4);
    assert!(total >= Duration::from_millis(450), "total {total:?}");
    assert!(arrivals.len() >= 3 && arrivals[0] < total - Duration::from_millis(300), "{arrivals:?}");

    upstream.add_rule("marker-g-delay", json!([{"kind": "ok", "delay_ms": 300}]), false);
    let started = Instant::now();
    assert_eq!(generate(&upstream, &conversation("marker-g-delay")).send().unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn one_marker_counts_calls_across_all_three_formats() {
    let upstream = spawn_upstream();
    let marker = "marker-all-formats";
    upstream.add_rule(marker, json!([{"kind": "status", "status": 503}]), true);
    let openai = HttpRequest::post(&format!("{}/v1/chat/completions", upstream.url()))
        .header("authorization", "Bearer sk-openai")
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": marker}]}))
        .send()
        .unwrap();
    assert_eq!(openai.json().unwrap()["error"]["type"], "server_error");
    let anthropic = HttpRequest::post(&format!("{}/v1/messages", upstream.url()))
        .header("x-api-key", "sk-ant")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": marker}]}))
        .send()
        .unwrap();
    assert_eq!(anthropic.json().unwrap()["error"]["type"], "api_error");
    let gemini = stream(&upstream, &conversation(marker)).send().unwrap();
    assert_eq!(gemini.json().unwrap()["error"]["status"], "UNAVAILABLE");
    assert_eq!((openai.status, anthropic.status, gemini.status), (503, 503, 503));

    let calls = upstream.calls_detail(marker);
    let seen: Vec<(&str, &str, &str, &str)> = calls
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap(),
                c["model"].as_str().unwrap(),
                c["auth_header"].as_str().unwrap(),
                c["auth"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("/v1/chat/completions", "gpt-4o-mini", "authorization", "Bearer sk-openai"),
            ("/v1/messages", "claude-haiku-4-5", "x-api-key", "sk-ant"),
            ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", MODEL, "x-goog-api-key", KEY),
        ]
    );
    assert_eq!(upstream.calls(marker), 3);
}

fn fixture(name: &str) -> String {
    let path = format!("{}/../../fixtures/gemini/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect();
    keys.sort();
    keys
}

#[test]
fn the_fake_has_the_shape_of_the_documented_schema_examples() {
    let upstream = spawn_upstream();
    let documented = fixture_json("ok.json");
    let fake = generate(&upstream, &conversation("shape")).send().unwrap().json().unwrap();
    assert_eq!(keys(&fake), keys(&documented));
    assert_eq!(keys(&fake["candidates"][0]), keys(&documented["candidates"][0]));
    assert_eq!(keys(&fake["candidates"][0]["content"]), keys(&documented["candidates"][0]["content"]));
    assert!(keys(&fake["usageMetadata"]).iter().all(|k| documented["usageMetadata"].get(k).is_some()));

    let documented = fixture_json("function_call.json");
    let fake = generate(&upstream, &with_tools("TOOL_CALL", true)).send().unwrap().json().unwrap();
    let part = |v: &Value| v["candidates"][0]["content"]["parts"][0]["functionCall"].clone();
    assert_eq!(keys(&part(&fake)), keys(&part(&documented)));
    assert_eq!(fake["candidates"][0]["finishReason"], documented["candidates"][0]["finishReason"]);

    upstream.add_rule(
        "marker-g-shape",
        json!([{"kind": "status", "status": 400}, {"kind": "status", "status": 403}, {"kind": "status", "status": 429, "retry_after": "17"},
               {"kind": "status", "status": 500}, {"kind": "status", "status": 503}]),
        false,
    );
    for (code, status) in [
        (400, "INVALID_ARGUMENT"),
        (403, "PERMISSION_DENIED"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
    ] {
        let documented = fixture_json(&format!("error_{code}.json"));
        assert_eq!(
            (documented["error"]["code"].as_u64(), documented["error"]["status"].as_str()),
            (Some(u64::from(code)), Some(status))
        );
        let fake = assert_error(&generate(&upstream, &conversation("marker-g-shape")).send().unwrap(), code, status);
        let types = |v: &Value| -> Vec<String> {
            v["error"]["details"]
                .as_array()
                .map_or_else(Vec::new, |d| d.iter().map(|x| x["@type"].to_string()).collect())
        };
        if code != 400 {
            // (The documented 400 is the invalid-key case; the fake's is a plain one.)
            assert_eq!(types(&fake), types(&documented), "{code}");
        }
    }
    // The fake's invalid-key answer is the documented 400.
    upstream.add_rule("marker-g-keycheck", json!([{"kind": "ok", "api_key": "other"}]), false);
    let fake = generate(&upstream, &conversation("marker-g-keycheck")).send().unwrap().json().unwrap();
    assert_eq!(fake, fixture_json("error_400.json"));
    let no_key = HttpRequest::post(&url(&upstream, "generateContent", "")).json(&conversation("x")).send().unwrap();
    assert_eq!(no_key.json().unwrap(), fixture_json("error_403.json"));
    assert!(serde_json::from_str::<Value>(&fixture("malformed.json")).is_err());
    assert_eq!(fixture_json("safety_blocked.json")["promptFeedback"]["blockReason"], "SAFETY");
    assert_eq!(fixture_json("safety_finish.json")["candidates"][0]["finishReason"], "SAFETY");

    // Streams: the same framing (checked by sse_chunks) and the same fields per chunk.
    let documented = sse_chunks(&fixture("stream_ok.sse"));
    let fake = sse_chunks(&stream(&upstream, &conversation("shape")).send().unwrap().text());
    for (fake, documented) in [(&fake[0], &documented[0]), (fake.last().unwrap(), documented.last().unwrap())] {
        assert_eq!(keys(fake), keys(documented));
        assert_eq!(keys(&fake["candidates"][0]), keys(&documented["candidates"][0]));
        assert!(keys(&fake["usageMetadata"]).iter().all(|k| documented["usageMetadata"].get(k).is_some()));
    }
}
