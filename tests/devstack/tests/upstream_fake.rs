//! The scriptable fake LLM upstream: default answers in the OpenAI wire format (JSON and
//! SSE), every scripted action kind, the control API, and exact call counting by marker
//! while tests run in parallel.

use std::time::{Duration, Instant};

use devstack::{spawn_upstream, HttpClientError, HttpRequest, HttpResponse, UpstreamHandle};
use serde_json::{json, Value};

fn chat(upstream: &UpstreamHandle, text: &str, stream: bool) -> HttpRequest {
    HttpRequest::post(&format!("{}/v1/chat/completions", upstream.url()))
        .header("authorization", "Bearer sk-test-key")
        .json(&json!({
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "an earlier question"},
                {"role": "assistant", "content": "an earlier answer"},
                {"role": "user", "content": text}
            ]
        }))
}

/// Splits an SSE body into its `data:` payloads, checking the framing.
fn sse_data(body: &str) -> Vec<String> {
    assert!(body.ends_with("\n\n"), "SSE body must end with a blank line: {body:?}");
    body.split_terminator("\n\n")
        .map(|event| {
            let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {event:?}"));
            assert!(!data.contains('\n'), "one line per event: {event:?}");
            data.to_string()
        })
        .collect()
}

fn chunks(data: &[String]) -> Vec<Value> {
    data.iter().filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).expect("chunk is JSON")).collect()
}

fn streamed_text(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect()
}

fn reply_number(content: &str) -> u64 {
    let rest = content.strip_prefix("fake reply #").expect("fake reply prefix");
    rest.split(':').next().unwrap().parse().expect("reply number")
}

#[test]
fn default_ok_is_a_real_shaped_chat_completion() {
    let upstream = spawn_upstream();
    let marker = "marker-default-ok";
    let text = format!("what is 2+2? {marker}");
    let first = chat(&upstream, &text, false).send().unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-type"), Some("application/json"));
    let v = first.json().unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    let n = reply_number(&content);
    assert_eq!(content, format!("fake reply #{n}: {text}"));
    assert_eq!(v["id"], json!(format!("chatcmpl-fake-{n}")));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
    assert!(v["system_fingerprint"].is_string());
    let usage = &v["usage"];
    let (p, c, t) =
        (usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64(), usage["total_tokens"].as_u64());
    assert!(p.unwrap() > 0 && c.unwrap() > 0);
    assert_eq!(t.unwrap(), p.unwrap() + c.unwrap());

    // A second call is a new upstream call with a new number; the alias path works too.
    let second = HttpRequest::post(&format!("{}/chat/completions", upstream.url()))
        .json(&json!({"model": "m2", "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}))
        .send()
        .unwrap();
    let v2 = second.json().unwrap();
    let n2 = reply_number(v2["choices"][0]["message"]["content"].as_str().unwrap());
    assert_ne!(n, n2);
    assert_eq!(v2["model"], "m2");

    assert_eq!(upstream.calls(marker), 2);
    let calls = upstream.calls_detail(marker);
    assert_eq!(calls[0]["path"], "/v1/chat/completions");
    assert_eq!(calls[0]["model"], "gpt-4o-mini");
    assert_eq!(calls[0]["authorization"], "Bearer sk-test-key");
    assert!(calls[0]["body"].as_str().unwrap().contains(marker));
    assert_eq!(calls[1]["path"], "/chat/completions");
    assert_eq!(calls[1]["authorization"], Value::Null);
}

#[test]
fn streaming_is_well_formed_sse_ending_with_done() {
    let upstream = spawn_upstream();
    let text = "stream please marker-sse";
    let response = chat(&upstream, text, true).send().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let data = sse_data(&response.text());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks = chunks(&data);
    assert_eq!(chunks.len(), data.len() - 1);
    let id = chunks[0]["id"].clone();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["model"], "gpt-4o-mini");
        assert!(chunk.get("usage").is_none(), "no usage without include_usage: {chunk}");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
    let content = streamed_text(&chunks);
    let n = reply_number(&content);
    assert_eq!(content, format!("fake reply #{n}: {text}"));
    assert_eq!(id, json!(format!("chatcmpl-fake-{n}")));
    // One content chunk per word.
    assert_eq!(chunks.len(), 1 + content.split(' ').count() + 1);
}

#[test]
fn include_usage_adds_a_usage_chunk_before_done() {
    let upstream = spawn_upstream();
    let response = HttpRequest::post(&format!("{}/v1/chat/completions", upstream.url()))
        .json(&json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "count me"}]}))
        .send()
        .unwrap();
    let data = sse_data(&response.text());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks = chunks(&data);
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let usage = &usage_chunk["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["usage"].is_null()));
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
}

#[test]
fn status_actions_set_status_headers_and_openai_error_bodies_then_fall_back_to_ok() {
    let upstream = spawn_upstream();
    let marker = "marker-status";
    upstream.add_rule(
        marker,
        json!([
            {"kind": "status", "status": 429, "retry_after": "2", "retry_after_ms": "1500"},
            {"kind": "status", "status": 500},
            {"kind": "status", "status": 401},
            {"kind": "status", "status": 400, "body": "{\"error\":{\"message\":\"custom\"}}"},
        ]),
        false,
    );
    let r = chat(&upstream, marker, false).send().unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.header("retry-after-ms"), Some("1500"));
    let e = r.json().unwrap();
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    assert!(e["error"]["message"].is_string() && e["error"]["type"].is_string());
    assert_eq!(e["error"]["param"], Value::Null);

    let r = chat(&upstream, marker, false).send().unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.header("retry-after"), None);
    assert_eq!(r.json().unwrap()["error"]["type"], "server_error");

    let r = chat(&upstream, marker, true).send().unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json().unwrap()["error"]["code"], "invalid_api_key");

    let r = chat(&upstream, marker, false).send().unwrap();
    assert_eq!((r.status, r.text()), (400, "{\"error\":{\"message\":\"custom\"}}".to_string()));

    // Exhausted: default ok.
    let r = chat(&upstream, marker, false).send().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(upstream.calls(marker), 5);
}

#[test]
fn repeat_last_keeps_failing_and_other_markers_are_unaffected() {
    let upstream = spawn_upstream();
    upstream.add_rule("marker-repeat", json!([{"kind": "ok"}, {"kind": "status", "status": 503}]), true);
    assert_eq!(chat(&upstream, "marker-repeat", false).send().unwrap().status, 200);
    for _ in 0..3 {
        let r = chat(&upstream, "marker-repeat", false).send().unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.json().unwrap()["error"]["type"], "server_error");
    }
    assert_eq!(chat(&upstream, "marker-unrelated", false).send().unwrap().status, 200);
}

#[test]
fn malformed_is_200_json_that_does_not_parse() {
    let upstream = spawn_upstream();
    upstream.add_rule("marker-malformed", json!([{"kind": "malformed"}]), false);
    let r = chat(&upstream, "marker-malformed", false).send().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(!r.body.is_empty());
    assert!(serde_json::from_slice::<Value>(&r.body).is_err(), "body parsed: {}", r.text());
}

#[test]
fn cut_stream_really_truncates_the_response() {
    let upstream = spawn_upstream();
    upstream.add_rule("marker-cut", json!([{"kind": "cut_stream", "after_chunks": 2}, {"kind": "cut_stream", "after_chunks": 99}, {"kind": "cut_stream"}]), false);
    match chat(&upstream, "a b c d e f marker-cut", true).send() {
        Err(HttpClientError::Incomplete { partial }) => {
            assert_eq!(partial.status, 200);
            assert_eq!(partial.header("content-type"), Some("text/event-stream"));
            let data = sse_data(&String::from_utf8(partial.body).unwrap());
            assert_eq!(data.len(), 2, "{data:?}");
            assert!(chunks(&data).iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
        }
        other => panic!("expected a truncated body, got {other:?}"),
    }
    // More chunks than the content has: still never the final chunk or [DONE].
    match chat(&upstream, "short marker-cut", true).send() {
        Err(HttpClientError::Incomplete { partial }) => {
            let text = String::from_utf8(partial.body).unwrap();
            assert!(!text.contains("[DONE]") && !text.contains("\"stop\""), "{text}");
            assert!(streamed_text(&chunks(&sse_data(&text))).ends_with("short marker-cut"));
        }
        other => panic!("expected a truncated body, got {other:?}"),
    }
    // A non-streaming request is cut mid-JSON.
    match chat(&upstream, "marker-cut", false).send() {
        Err(HttpClientError::Incomplete { partial }) => {
            assert!(serde_json::from_slice::<Value>(&partial.body).is_err());
        }
        other => panic!("expected a truncated body, got {other:?}"),
    }
}

#[test]
fn slow_stream_flushes_each_event_as_it_is_produced() {
    let upstream = spawn_upstream();
    upstream.add_rule("marker-slow", json!([{"kind": "slow_stream", "chunk_delay_ms": 100}]), false);
    let started = Instant::now();
    let mut arrivals = Vec::new();
    let response = chat(&upstream, "marker-slow", true)
        .send_streaming(|piece| arrivals.push((started.elapsed(), piece.len())))
        .unwrap();
    let total = started.elapsed();
    let data = sse_data(&response.text());
    assert_eq!(data.last().unwrap(), "[DONE]");
    // role + 4 words + stop + [DONE] = 7 events, 6 pauses.
    assert_eq!(data.len(), 7);
    assert!(total >= Duration::from_millis(550), "total {total:?}");
    assert!(arrivals.len() >= 5, "events were not sent separately: {arrivals:?}");
    assert!(arrivals[0].0 < total - Duration::from_millis(400), "first event was held back: {arrivals:?}");
}

#[test]
fn words_make_a_long_answer_to_a_short_prompt_in_both_modes() {
    let upstream = spawn_upstream();
    upstream.add_rule("marker-long", json!([{"kind": "ok", "words": 2000}]), true);
    let whole = chat(&upstream, "marker-long", false).send().unwrap().json().unwrap();
    let content = whole["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    let n = reply_number(&content);
    assert!(content.starts_with(&format!("fake reply #{n}: marker-long the cached answer")), "{content:.80}");
    assert_eq!(content.split(' ').count(), 2000);
    assert_eq!(whole["usage"]["completion_tokens"], 2000);

    let data = sse_data(&chat(&upstream, "marker-long", true).send().unwrap().text());
    let chunks = chunks(&data);
    let streamed = streamed_text(&chunks);
    assert_eq!(streamed.split(' ').count(), 2000);
    assert_eq!(streamed.split_once(": ").unwrap().1, content.split_once(": ").unwrap().1);
    // Still one event per word: a provider streaming a long answer.
    assert_eq!(chunks.len(), 1 + 2000 + 1);
    // Other calls are not lengthened.
    let short = chat(&upstream, "marker-short", false).send().unwrap().json().unwrap();
    assert_eq!(short["choices"][0]["message"]["content"].as_str().unwrap().split(' ').count(), 4);
}

#[test]
fn ok_delay_holds_back_the_headers() {
    let upstream = spawn_upstream();
    upstream.add_rule("marker-delay", json!([{"kind": "ok", "delay_ms": 300}]), false);
    let started = Instant::now();
    let r = chat(&upstream, "marker-delay", false).send().unwrap();
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_stalled_call_times_out_the_client_and_does_not_block_shutdown() {
    let upstream = spawn_upstream();
    upstream.add_rule("marker-stall", json!([{"kind": "ok", "delay_ms": 600_000}]), false);
    let started = Instant::now();
    let result = chat(&upstream, "marker-stall", false).timeout(Duration::from_millis(300)).send();
    assert!(matches!(result, Err(HttpClientError::Io(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(upstream.calls("marker-stall"), 1);
    let dropping = Instant::now();
    drop(upstream);
    assert!(dropping.elapsed() < Duration::from_secs(2), "shutdown took {:?}", dropping.elapsed());
}

#[test]
fn bad_requests_are_openai_errors_and_still_recorded() {
    let upstream = spawn_upstream();
    let r = HttpRequest::post(&format!("{}/v1/chat/completions", upstream.url()))
        .body("{\"model\": \"m\", \"messages\": [ marker-badjson")
        .send()
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json().unwrap()["error"]["type"], "invalid_request_error");
    assert_eq!(upstream.calls("marker-badjson"), 1);

    let missing_model = HttpRequest::post(&format!("{}/v1/chat/completions", upstream.url()))
        .json(&json!({"messages": []}))
        .send()
        .unwrap();
    assert_eq!(missing_model.status, 400);
    let get = HttpRequest::get(&format!("{}/v1/chat/completions", upstream.url())).send().unwrap();
    assert_eq!(get.status, 405);
    let unknown = HttpRequest::post(&format!("{}/v1/nothing", upstream.url())).json(&json!({})).send().unwrap();
    assert_eq!(unknown.status, 404);
}

#[test]
fn control_api_validates_clears_and_resets() {
    let upstream = spawn_upstream();
    let control = |method: &str, path: &str, body: Option<Value>| -> HttpResponse {
        let mut request = HttpRequest::new(method, &format!("{}/__control/{path}", upstream.url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().unwrap()
    };
    let bad = control("POST", "rules", Some(json!({"match": "x", "actions": [{"kind": "explode"}]})));
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("explode"));
    let missing = control("POST", "rules", Some(json!({"actions": []})));
    assert_eq!(missing.status, 400);

    let first = upstream.add_rule("marker-ctl", json!([{"kind": "status", "status": 500}]), true);
    let second = upstream.add_rule("marker-other", json!([]), false);
    assert!(second > first);
    assert_eq!(chat(&upstream, "marker-ctl", false).send().unwrap().status, 500);
    let rules = control("GET", "rules", None).json().unwrap();
    assert_eq!(rules.as_array().unwrap().len(), 2);

    upstream.clear_rules();
    assert_eq!(chat(&upstream, "marker-ctl", false).send().unwrap().status, 200);
    assert_eq!(upstream.calls("marker-ctl"), 2);
    let all = control("GET", "calls", None).json().unwrap();
    assert_eq!(all["count"], 2);

    upstream.reset();
    assert_eq!(upstream.calls("marker-ctl"), 0);
    assert_eq!(control("GET", "calls", None).json().unwrap()["count"], 0);
    // Markers with characters that need escaping are counted exactly.
    let odd = "marker odd&chars=+%/?";
    chat(&upstream, odd, false).send().unwrap();
    assert_eq!(upstream.calls(odd), 1);
    assert_eq!(control("PUT", "rules", None).status, 405);
    assert_eq!(control("GET", "nothing", None).status, 404);
}

#[test]
fn parallel_tests_count_their_own_calls_exactly() {
    let upstream = spawn_upstream();
    std::thread::scope(|scope| {
        for worker in 0..8usize {
            let upstream = &upstream;
            scope.spawn(move || {
                let marker = format!("marker-parallel-{worker}-");
                // Worker 1 is a prefix of worker 10..: markers end with '-' to stay unique.
                upstream.add_rule(&marker, json!([{"kind": "status", "status": 500}]), false);
                let calls = worker + 1;
                let mut statuses = Vec::new();
                for i in 0..calls {
                    let r = chat(upstream, &format!("{marker} call {i}"), i % 2 == 0).send().unwrap();
                    statuses.push(r.status);
                }
                assert_eq!(statuses[0], 500, "{marker}");
                assert!(statuses[1..].iter().all(|s| *s == 200), "{marker}: {statuses:?}");
                assert_eq!(upstream.calls(&marker), calls, "{marker}");
            });
        }
    });
    assert_eq!(upstream.calls("marker-parallel-"), (1..=8).sum::<usize>());
}
