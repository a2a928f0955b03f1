//! A scriptable fake LLM upstream. It answers provider requests in three wire formats
//! (see `upstream::format`), records every call, and lets tests script failures through a
//! control API on the same server:
//!
//! - OpenAI chat completions: `POST /v1/chat/completions` (and `/chat/completions`)
//! - Anthropic Messages: `POST /v1/messages` (needs `x-api-key` and `anthropic-version`)
//! - Gemini: `POST /v1beta/models/{model}:generateContent` and
//!   `:streamGenerateContent?alt=sse` (key in `x-goog-api-key` or `?key=`)
//! - Embeddings (`upstream::embeddings`): OpenAI's `POST /v1/embeddings` and Gemini's
//!   `:batchEmbedContents`, embedded by the real all-MiniLM-L6-v2 (`minilm`), scripted like the
//!   others (`ok`, `status`, delays; `malformed` cuts the body in half)
//!
//! - `POST /__control/rules` `{"match","actions":[...],"repeat_last"}` -> `{"id"}`
//! - `DELETE /__control/rules`, `GET /__control/rules`, `POST /__control/reset`
//! - `GET /__control/calls?match=SUBSTRING` -> `{"count","calls":[...]}`
//!
//! This module is the engine (routing, recording, applying actions, streaming). It must
//! not render provider JSON itself (the format files do) and is for tests only: the
//! control API has no auth.

mod anthropic;
pub mod embeddings;
mod format;
mod gemini;
mod openai;
mod script;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use self::embeddings::EmbedRoute;
use self::format::Rejection;
pub use self::format::{ChatCall, Credential, FakeReply, RequestHead, Route, StreamPlan, WireFormat};
use self::script::Script;
pub use self::script::{Action, ActionKind, RecordedCall};
use crate::http_client::HttpRequest;
use crate::http_server::{bytes_response, json_response, read_body_limited, serve_with};
use crate::http_server::{BackgroundServer, Body, ServerError};
use crate::urlcodec::{percent_encode, query_param};

/// Largest request body the fake upstream reads.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The wire formats served, tried in order.
fn formats() -> Vec<Box<dyn WireFormat>> {
    vec![Box::new(openai::OpenAi), Box::new(anthropic::Anthropic), Box::new(gemini::Gemini)]
}

struct State {
    script: Mutex<Script>,
    formats: Vec<Box<dyn WireFormat>>,
}

/// Serves the fake upstream on `listener` forever.
pub async fn serve(listener: TcpListener) {
    let state = Arc::new(State { script: Mutex::new(Script::default()), formats: formats() });
    serve_with(listener, move |request| handle(Arc::clone(&state), request)).await;
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    if let Some(control) = path.strip_prefix("/__control/") {
        return control_api(&state, control.to_string(), request).await;
    }
    if let Some(route) = embeddings::route(&path) {
        return embed(&state, route, request).await;
    }
    let Some((format, route)) =
        state.formats.iter().find_map(|f| f.route(&path, query.as_deref()).map(|route| (f.as_ref(), route)))
    else {
        return plain_error(StatusCode::NOT_FOUND, &format!("no fake endpoint at {path}"));
    };
    let (headers, raw) = match read_call(format, request).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let head = RequestHead { headers: &headers, query: query.as_deref() };
    let credential = format.credential(&head);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let parsed = serde_json::from_slice::<Value>(&raw)
        .map_err(|e| format!("We could not parse the JSON body of your request. ({e})"))
        .and_then(|value| format.parse(&value, &route));
    let model = match &parsed {
        Ok(call) => Some(call.model.clone()),
        Err(_) => route.model.clone(),
    };
    let decision = record(state.as_ref(), &path, model, &head, credential.as_ref(), &text);
    let n = decision.n;
    let mut response = answer(format, &head, credential.as_ref(), parsed, decision).await;
    let mut extra = format.response_headers(n);
    extra.push(("x-request-id", format!("req_fake_{n}")));
    for (name, value) in extra {
        // A header the rule set itself wins.
        if let (false, Ok(value)) = (response.headers().contains_key(name), HeaderValue::from_str(&value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Records a call and says what the script does with it.
fn record(
    state: &State,
    path: &str,
    model: Option<String>,
    head: &RequestHead<'_>,
    credential: Option<&Credential>,
    text: &str,
) -> script::Decision {
    let recorded = credential.map(|c| (c.source, c.value.as_str()));
    state.script.lock().expect("script mutex poisoned").on_call(
        path,
        model,
        head.header("authorization"),
        recorded,
        text,
    )
}

/// A provider call's headers and body, refused as `format`'s API refuses a method other than POST
/// or a body over the limit.
async fn read_call(
    format: &dyn WireFormat,
    request: Request<Incoming>,
) -> Result<(http::HeaderMap, Bytes), Response<Body>> {
    if request.method() != Method::POST {
        let body = format.error_body(405, Some("Method not allowed; use POST."));
        return Err(json_response(StatusCode::METHOD_NOT_ALLOWED, &body));
    }
    let headers = request.headers().clone();
    match read_body_limited(request.into_body(), MAX_BODY_BYTES).await {
        Ok(Some(raw)) => Ok((headers, raw)),
        Ok(None) => Err(json_response(StatusCode::PAYLOAD_TOO_LARGE, &format.error_body(413, None))),
        Err(e) => Err(plain_error(StatusCode::BAD_REQUEST, &format!("cannot read body: {e}"))),
    }
}

/// An embeddings call: recorded and scripted like a chat call, refused as its provider refuses.
async fn embed(state: &State, route: EmbedRoute, request: Request<Incoming>) -> Response<Body> {
    let format: &dyn WireFormat = match route {
        EmbedRoute::OpenAi => &openai::OpenAi,
        EmbedRoute::Gemini { .. } => &gemini::Gemini,
    };
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let (headers, raw) = match read_call(format, request).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let head = RequestHead { headers: &headers, query: query.as_deref() };
    let credential = format.credential(&head);
    let parsed = serde_json::from_slice::<Value>(&raw)
        .map_err(|e| format!("We could not parse the JSON body of your request. ({e})"))
        .and_then(|value| embeddings::parse(&route, &value));
    let model = parsed.as_ref().ok().map(|c| c.model.clone());
    let text = String::from_utf8_lossy(&raw).into_owned();
    let decision = record(state, &path, model, &head, credential.as_ref(), &text);
    if let Err(rejection) = format.check_head(&head, credential.as_ref(), decision.n) {
        return rejection_response(rejection);
    }
    let action = decision.action;
    if action.api_key.as_ref().is_some_and(|k| credential.as_ref().map(Credential::key) != Some(k.as_str())) {
        return rejection_response(format.invalid_key(credential.as_ref(), decision.n));
    }
    let call = match parsed {
        Ok(call) => call,
        Err(message) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &format.call_error_body(400, Some(&message), decision.n, None),
            )
        }
    };
    if action.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(action.delay_ms)).await;
    }
    if let ActionKind::Status { status, body, headers } = action.kind {
        return status_response(format, status, body, &headers, decision.n);
    }
    // The real model (loaded once per process, on the first embeddings call).
    let answer = match crate::minilm::shared().and_then(|model| embeddings::vectors(model.as_ref(), &call)) {
        Ok(vectors) => embeddings::render(&route, &call, &vectors),
        Err(e) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format.call_error_body(500, Some(&e), decision.n, None),
            )
        }
    };
    match action.kind {
        ActionKind::Malformed => {
            let full = answer.to_string();
            bytes_response(
                StatusCode::OK,
                "application/json",
                Bytes::copy_from_slice(&full.as_bytes()[..full.len() / 2]),
            )
        }
        _ => json_response(StatusCode::OK, &answer),
    }
}

/// The answer to a recorded call: the real API's refusals first (credential, required
/// headers, a rule's `api_key`, an unreadable body), then the scripted action.
async fn answer(
    format: &dyn WireFormat,
    head: &RequestHead<'_>,
    credential: Option<&Credential>,
    parsed: Result<ChatCall, String>,
    decision: script::Decision,
) -> Response<Body> {
    if let Err(rejection) = format.check_head(head, credential, decision.n) {
        return rejection_response(rejection);
    }
    let action = decision.action;
    if let Some(expected) = &action.api_key {
        if credential.map(Credential::key) != Some(expected.as_str()) {
            return rejection_response(format.invalid_key(credential, decision.n));
        }
    }
    let call = match parsed {
        Ok(call) => call,
        Err(message) => {
            let body = format.call_error_body(400, Some(&message), decision.n, None);
            return json_response(StatusCode::BAD_REQUEST, &body);
        }
    };
    if action.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(action.delay_ms)).await;
    }
    let mut reply = FakeReply::new(decision.n, &call, unix_seconds());
    if let Some(words) = action.words {
        reply = reply.lengthened(words);
    }
    match action.kind {
        ActionKind::Ok => success(format, &call, &reply, Duration::ZERO),
        ActionKind::SlowStream { chunk_delay_ms } => {
            success(format, &call, &reply, Duration::from_millis(chunk_delay_ms))
        }
        ActionKind::Status { status, body, headers } => status_response(format, status, body, &headers, decision.n),
        ActionKind::Malformed => {
            let full = format.completion(&call, &reply).to_string();
            let cut = &full.as_bytes()[..full.len() / 2];
            bytes_response(StatusCode::OK, "application/json", Bytes::copy_from_slice(cut))
        }
        ActionKind::CutStream { after_chunks } => cut_response(format, &call, &reply, after_chunks),
        ActionKind::StallStream { after_chunks } => stall_response(format, &call, &reply, after_chunks),
    }
}

fn rejection_response(rejection: Rejection) -> Response<Body> {
    let code = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(code, &rejection.body)
}

/// A normal answer: JSON, or SSE with `delay` between events.
fn success(format: &dyn WireFormat, call: &ChatCall, reply: &FakeReply, delay: Duration) -> Response<Body> {
    if !call.stream {
        return json_response(StatusCode::OK, &format.completion(call, reply));
    }
    let plan = format.stream(call, reply);
    stream_response(plan.events, plan.content_type, delay, false)
}

/// Sends `events` (each flushed on its own), pausing `delay` between them; if `abort`,
/// ends by aborting the connection instead of finishing the body.
fn stream_response(events: Vec<Bytes>, content_type: &'static str, delay: Duration, abort: bool) -> Response<Body> {
    let (tx, body) = Body::channel();
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(event)).await.is_err() {
                return; // client went away
            }
        }
        if abort {
            // Let hyper see an empty channel (Pending) and flush what was sent; an error
            // right behind the data would abort the connection with the data still buffered.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let cut = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "cut_stream");
            let _ = tx.send(Err(cut)).await;
        }
    });
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Streaming request: the first `after_chunks` events (never the terminal ones), then an
/// aborted connection. Non-streaming request: half the JSON body, then an abort.
fn cut_response(format: &dyn WireFormat, call: &ChatCall, reply: &FakeReply, after_chunks: usize) -> Response<Body> {
    if call.stream {
        let plan = format.stream(call, reply);
        let keep = after_chunks.min(plan.terminal_from);
        let events = plan.events.into_iter().take(keep).collect();
        return stream_response(events, plan.content_type, Duration::ZERO, true);
    }
    let full = format.completion(call, reply).to_string();
    let half = Bytes::copy_from_slice(&full.as_bytes()[..full.len() / 2]);
    stream_response(vec![half], "application/json", Duration::ZERO, true)
}

/// Longest a stalled stream keeps its connection open.
const STALL_LIMIT: Duration = Duration::from_secs(600);

/// Streaming request: the first `after_chunks` events (never the terminal ones), then silence
/// with the connection open until the client goes away. Non-streaming request: the same with
/// half the JSON body.
fn stall_response(format: &dyn WireFormat, call: &ChatCall, reply: &FakeReply, after_chunks: usize) -> Response<Body> {
    let (events, content_type) = if call.stream {
        let plan = format.stream(call, reply);
        let keep = after_chunks.min(plan.terminal_from);
        (plan.events.into_iter().take(keep).collect::<Vec<_>>(), plan.content_type)
    } else {
        let full = format.completion(call, reply).to_string();
        (vec![Bytes::copy_from_slice(&full.as_bytes()[..full.len() / 2])], "application/json")
    };
    let (tx, body) = Body::channel();
    tokio::spawn(async move {
        for event in events {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        let _ = tokio::time::timeout(STALL_LIMIT, tx.closed()).await;
    });
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn status_response(
    format: &dyn WireFormat,
    status: u16,
    body: Option<String>,
    headers: &std::collections::BTreeMap<String, String>,
    n: u64,
) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry_after = headers.get("retry-after").map(String::as_str);
    let body = body.unwrap_or_else(|| format.call_error_body(status, None, n, retry_after).to_string());
    let mut response = bytes_response(code, "application/json", body);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn plain_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": { "message": message } }))
}

async fn control_api(state: &State, what: String, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let query = request.uri().query().map(str::to_string);
    let body = match read_body_limited(request.into_body(), MAX_BODY_BYTES).await {
        Ok(Some(body)) => body,
        _ => return plain_error(StatusCode::BAD_REQUEST, "cannot read control body"),
    };
    let mut script = state.script.lock().expect("script mutex poisoned");
    match (method, what.as_str()) {
        (Method::POST, "rules") => match parse_rule(&body) {
            Ok((matcher, actions, repeat_last)) => {
                let id = script.add_rule(matcher, actions, repeat_last);
                json_response(StatusCode::OK, &json!({ "id": id }))
            }
            Err(message) => plain_error(StatusCode::BAD_REQUEST, &message),
        },
        (Method::DELETE, "rules") => {
            let cleared = script.clear_rules();
            json_response(StatusCode::OK, &json!({ "cleared": cleared }))
        }
        (Method::GET, "rules") => json_response(StatusCode::OK, &script.rules_json()),
        (Method::POST, "reset") => {
            script.reset();
            json_response(StatusCode::OK, &json!({ "ok": true }))
        }
        (Method::GET, "calls") => {
            let matcher = query_param(query.as_deref(), "match");
            let calls = script.calls(matcher.as_deref());
            let body = json!({ "count": calls.len(), "calls": calls });
            json_response(StatusCode::OK, &body)
        }
        (_, "rules" | "reset" | "calls") => plain_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => plain_error(StatusCode::NOT_FOUND, "unknown control endpoint"),
    }
}

fn parse_rule(body: &[u8]) -> Result<(String, Vec<Action>, bool), String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))?;
    let matcher = value.get("match").and_then(Value::as_str).ok_or("a rule needs a string \"match\"")?.to_string();
    let actions = value
        .get("actions")
        .and_then(Value::as_array)
        .ok_or("a rule needs an \"actions\" array")?
        .iter()
        .map(Action::from_json)
        .collect::<Result<Vec<_>, _>>()?;
    let repeat_last = value.get("repeat_last").and_then(Value::as_bool).unwrap_or(false);
    Ok((matcher, actions, repeat_last))
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A fake upstream running in a background thread. Dropping it shuts it down.
///
/// The blocking helpers panic with a clear message if the control API fails: they are
/// meant for tests.
pub struct UpstreamHandle {
    server: BackgroundServer,
}

/// Starts a fake upstream on `127.0.0.1:0`.
pub fn try_spawn_upstream() -> Result<UpstreamHandle, ServerError> {
    let server = BackgroundServer::start("upstream", serve)?;
    Ok(UpstreamHandle { server })
}

/// Like [`try_spawn_upstream`], panicking if it cannot start (for tests).
pub fn spawn_upstream() -> UpstreamHandle {
    try_spawn_upstream().expect("start the fake upstream")
}

impl UpstreamHandle {
    /// Base URL, e.g. `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// Adds a rule; `actions` is a JSON array of actions. Returns the rule id.
    pub fn add_rule(&self, matcher: &str, actions: Value, repeat_last: bool) -> u64 {
        let body = json!({ "match": matcher, "actions": actions, "repeat_last": repeat_last });
        let value = self.control("POST", "rules", Some(&body));
        value["id"].as_u64().unwrap_or_else(|| panic!("control API returned no rule id: {value}"))
    }

    /// Number of recorded calls whose raw body or path contains `matcher`.
    pub fn calls(&self, matcher: &str) -> usize {
        self.calls_detail(matcher).len()
    }

    /// The recorded calls whose raw body or path contains `matcher`, as JSON objects.
    pub fn calls_detail(&self, matcher: &str) -> Vec<Value> {
        let path = format!("calls?match={}", percent_encode(matcher.as_bytes()));
        let value = self.control("GET", &path, None);
        value["calls"].as_array().cloned().unwrap_or_else(|| panic!("control API returned no calls: {value}"))
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        self.control("DELETE", "rules", None);
    }

    /// Removes every rule and recorded call.
    pub fn reset(&self) {
        self.control("POST", "reset", None);
    }

    fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let url = format!("{}/__control/{path}", self.url());
        let mut request = HttpRequest::new(method, &url).timeout(Duration::from_secs(10));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().unwrap_or_else(|e| panic!("fake upstream control {method} {path} failed: {e}"));
        assert_eq!(response.status, 200, "fake upstream control {method} {path}: {}", response.text());
        response.json().unwrap_or_else(|e| panic!("fake upstream control {method} {path}: {e}"))
    }
}
