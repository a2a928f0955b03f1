//! Every bad input from `fixtures/bad_input.json` gets its OpenAI-shaped error with the right
//! status, and never reaches the provider. The end-to-end suite runs the same matrix on workerd.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use llm_edge_cache::ports::{Body, BodyError};
use serde_json::Value;
use support::*;

const BODY_LIMIT: usize = 4096;

fn cases() -> Vec<Value> {
    let all: Value = serde_json::from_str(&fixture("bad_input.json")).expect("fixture is JSON");
    all["cases"].as_array().expect("cases").clone()
}

fn request_for(case: &Value, body: Body, content_length: Option<usize>) -> http::Request<Body> {
    let mut req = http::Request::builder()
        .method(case["method"].as_str().expect("method"))
        .uri(format!("https://gw.test{}", case["path"].as_str().expect("path")))
        .header("content-type", case["content_type"].as_str().unwrap_or("application/json"));
    match &case["auth"] {
        Value::Bool(false) => {}
        Value::String(v) => req = req.header("authorization", v.as_str()),
        _ => req = req.header("authorization", format!("Bearer {KEY_A}")),
    }
    if let Some(headers) = case["headers"].as_object() {
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str().expect("header value"));
        }
    }
    if let Some(n) = content_length {
        req = req.header("content-length", n);
    }
    req.body(body).expect("request")
}

#[test]
fn every_bad_input_gets_its_error() {
    let w = World::with_config(config_with(&[("MAX_BODY_BYTES", &BODY_LIMIT.to_string())]));
    w.upstream_ok();
    let cases = cases();
    assert!(cases.len() >= 60, "the matrix is complete");
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let body = if case["oversize"] == true {
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(BODY_LIMIT))
        } else {
            case["body"].as_str().unwrap_or("").to_owned()
        };
        let len = body.len();
        let reply = w.send(request_for(case, Body::Full(Bytes::from(body)), Some(len)));
        let status = case["status"].as_u64().expect("status") as u16;
        let code = case["code"].as_str().expect("code");
        assert_eq!(reply.status, status, "{name}: {:?}", reply.body);
        reply.assert_error(status, code);
        if let Some(param) = case["param"].as_str() {
            assert_eq!(reply.json()["error"]["param"], param, "{name}");
        }
        if status == 400 {
            assert_eq!(reply.json()["error"]["type"], "invalid_request_error", "{name}");
        }
        assert_eq!(reply.header("content-type"), Some("application/json"), "{name}");
        assert!(reply.header("x-request-id").is_some(), "{name}");
    }
    assert_eq!(w.upstream_calls(), 0, "no bad input reaches the provider");
}

/// A body over the limit is refused with a 413 after it has been read to its end and thrown
/// away: runtimes such as workerd behind wrangler's local proxy reset the connection (or answer
/// a 500 of their own) when the answer comes before the body was read. Without Content-Length.
#[test]
fn an_undeclared_oversize_body_is_drained_then_refused() {
    let w = World::with_config(config_with(&[("MAX_BODY_BYTES", &BODY_LIMIT.to_string())]));
    let (reply, pulled) = send_chunks(&w, 1000, 1024, None);
    reply.assert_error(413, "request_too_large");
    assert_eq!(pulled, 1000, "the whole body was read");
}

/// The same with a Content-Length that already says the body is too large.
#[test]
fn a_declared_oversize_body_is_drained_then_refused() {
    let w = World::with_config(config_with(&[("MAX_BODY_BYTES", &BODY_LIMIT.to_string())]));
    let (reply, pulled) = send_chunks(&w, 1000, 1024, Some(1000 * 1024));
    reply.assert_error(413, "request_too_large");
    assert_eq!(pulled, 1000, "the whole body was read");
}

/// What is drained is bounded: a body that never ends is not read forever.
#[test]
fn draining_an_oversize_body_is_bounded() {
    let w = World::with_config(config_with(&[("MAX_BODY_BYTES", &BODY_LIMIT.to_string())]));
    let (reply, pulled) = send_chunks(&w, 1_000_000, 1 << 20, None);
    reply.assert_error(413, "request_too_large");
    assert!(pulled <= 129, "read {pulled} MiB of an endless body");
}

/// Sends `n` chunks of `size` bytes; returns the reply and how many chunks were pulled.
fn send_chunks(w: &World, n: usize, size: usize, content_length: Option<usize>) -> (Reply, usize) {
    use futures_util::StreamExt as _;
    let pulled = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let counter = pulled.clone();
    let chunks = futures_util::stream::iter(0..n).map(move |_| {
        counter.set(counter.get() + 1);
        Ok::<_, BodyError>(Bytes::from(vec![b' '; size]))
    });
    let case = serde_json::json!({"method": "POST", "path": "/v1/chat/completions"});
    let reply = w.send(request_for(&case, Body::Stream(Box::pin(chunks)), content_length));
    (reply, pulled.get())
}

#[test]
fn a_body_that_breaks_off_is_a_400() {
    let w = World::new();
    let chunks = futures_util::stream::iter(vec![Ok(Bytes::from("{\"model\"")), Err(BodyError("reset".into()))]);
    let case = serde_json::json!({"method": "POST", "path": "/v1/chat/completions"});
    w.send(request_for(&case, Body::Stream(Box::pin(chunks)), None)).assert_error(400, "body_read_failed");
}

#[test]
fn error_bodies_never_echo_the_gateway_key() {
    let w = World::new();
    let case =
        serde_json::json!({"method": "POST", "path": "/v1/chat/completions", "auth": "Bearer sk-leak-check-123456"});
    let reply = w.send(request_for(&case, Body::Full(Bytes::from("{}")), None));
    reply.assert_error(401, "invalid_api_key");
    assert!(!String::from_utf8_lossy(&reply.body).contains("sk-leak-check"));
}
