//! Requests to the gateway as a client sends them, and the assertions every scenario shares.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use devstack::stack::{Stack, KEY_A, UPSTASH_TOKEN};
use devstack::{HttpClientError, HttpRequest, HttpResponse};
use llm_edge_cache::api::chat::ChatRequest;
use llm_edge_cache::cache::key::CacheKey;
use serde_json::{json, Value};

use crate::runner::eventually;

/// A string no other scenario uses: it goes into the message, so the fake upstream counts this
/// scenario's calls alone.
pub fn marker(scenario: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{scenario}-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

pub fn body(marker: &str) -> String {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": marker}]}).to_string()
}

pub fn stream_body(marker: &str) -> String {
    json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": marker}]}).to_string()
}

pub fn request(stack: &Stack, key: &str, body: &str, headers: &[(&str, &str)]) -> HttpRequest {
    request_to(&stack.url(), key, body, headers)
}

/// A chat request to the gateway at `base` (a peer started by `Stack::start_peer`, say).
pub fn request_to(base: &str, key: &str, body: &str, headers: &[(&str, &str)]) -> HttpRequest {
    let mut req = HttpRequest::post(&format!("{base}/v1/chat/completions"))
        .header("authorization", &format!("Bearer {key}"))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(20))
        .body(body.as_bytes().to_vec());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req
}

pub fn chat(stack: &Stack, key: &str, body: &str, headers: &[(&str, &str)]) -> HttpResponse {
    request(stack, key, body, headers).send().unwrap_or_else(|e| panic!("chat request failed: {e}"))
}

pub fn chat_a(stack: &Stack, body: &str) -> HttpResponse {
    chat(stack, KEY_A, body, &[])
}

/// Waits until the answer for `body` is in the cache (the writes happen after the response), by
/// asking with `only-if-cached`, which never calls the provider. Returns the first hit.
pub fn wait_cached(stack: &Stack, key: &str, body: &str) -> HttpResponse {
    eventually(Duration::from_secs(10), "the entry to be cached", || {
        let r = chat(stack, key, body, &[("cache-control", "only-if-cached")]);
        (r.status == 200).then_some(r)
    })
}

pub fn header<'a>(r: &'a HttpResponse, name: &str) -> &'a str {
    r.header(name).unwrap_or_else(|| panic!("no {name} header; headers {:?}", r.headers))
}

pub fn content(r: &HttpResponse) -> String {
    let v = json_of(r);
    v["choices"][0]["message"]["content"].as_str().unwrap_or_else(|| panic!("no content in {v}")).to_owned()
}

pub fn json_of(r: &HttpResponse) -> Value {
    r.json().unwrap_or_else(|e| panic!("not JSON ({e}): status {} body {}", r.status, r.text()))
}

/// The OpenAI error envelope with this status and code, and nothing that must not leak.
pub fn assert_error(r: &HttpResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "status; body {}", r.text());
    let v = json_of(r);
    assert_eq!(v["error"]["code"], code, "code; body {v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "message; body {v}");
    assert!(v["error"]["type"].as_str().is_some_and(|m| !m.is_empty()), "type; body {v}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = r.text();
    for leak in ["127.0.0.1", devstack::stack::UPSTREAM_KEY, UPSTASH_TOKEN, "sk-local-tenant"] {
        assert!(!text.contains(leak), "{leak:?} leaked in {text}");
    }
}

/// The cache key the gateway computes for `body` (tenant A, no namespace).
pub fn key_of(tenant: &str, body: &str) -> CacheKey {
    CacheKey::chat(tenant, "", &ChatRequest::parse(body.as_bytes()).expect("valid request"))
}

/// The detailed health view (`/admin/health`, with the stack's admin key).
pub fn admin_health(stack: &Stack) -> Value {
    let r = devstack::HttpRequest::get(&format!("{}/admin/health", stack.url()))
        .header("authorization", &format!("Bearer {}", devstack::stack::ADMIN_KEY))
        .send()
        .expect("admin health");
    assert_eq!(r.status, 200, "{}", r.text());
    json_of(&r)
}

/// The gateway's own log lines (JSON), without what the runtime prints around them.
pub fn gateway_log(stack: &Stack) -> String {
    stack.worker.log().lines().filter(|l| l.trim_start().starts_with('{')).collect::<Vec<_>>().join("\n")
}

/// Runs one command on the stack's Redis through the Upstash REST endpoint.
pub fn redis(stack: &Stack, command: Value) -> Value {
    let r = HttpRequest::post(&stack.upstash.url())
        .header("authorization", &format!("Bearer {UPSTASH_TOKEN}"))
        .json(&command)
        .send()
        .expect("upstash endpoint answers");
    assert_eq!(r.status, 200, "redis command {command}: {}", r.text());
    r.json().expect("json")["result"].clone()
}

/// Reads a streaming answer; `Err` carries what arrived before the stream broke.
pub fn read_stream(req: HttpRequest) -> Result<HttpResponse, HttpResponse> {
    match req.send() {
        Ok(r) => Ok(r),
        Err(HttpClientError::Incomplete { partial }) => Err(partial),
        Err(e) => panic!("stream request failed outright: {e}"),
    }
}

/// The cases of `fixtures/bad_input.json`, shared with the host tests.
pub fn bad_input_cases() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/bad_input.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    all["cases"].as_array().expect("cases").clone()
}

/// The request of one bad-input case; an `oversize` case gets a body of `body_limit + 1` bytes or more.
pub fn bad_input_request(stack: &Stack, case: &Value, body_limit: usize) -> HttpRequest {
    let mut req = HttpRequest::new(
        case["method"].as_str().expect("method"),
        &format!("{}{}", stack.url(), case["path"].as_str().expect("path")),
    )
    .header("content-type", case["content_type"].as_str().unwrap_or("application/json"));
    match &case["auth"] {
        Value::Bool(false) => {}
        Value::String(v) => req = req.header("authorization", v),
        _ => req = req.header("authorization", &format!("Bearer {KEY_A}")),
    }
    if let Some(headers) = case["headers"].as_object() {
        for (k, v) in headers {
            req = req.header(k, v.as_str().expect("header value"));
        }
    }
    let body = if case["oversize"] == true {
        format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(body_limit))
    } else {
        case["body"].as_str().unwrap_or("").to_owned()
    };
    if case["method"] != "GET" {
        req = req.body(body.into_bytes());
    }
    req
}
