//! Response assembly: JSON and error bodies, event streams, answers from the cache (hits and stale
//! answers, in one place and in either form: JSON or a replayed stream), the cache headers, `Server-Timing`, request ids and CORS. Every response leaves
//! through `finish`, so these headers are the same on every path.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Response, StatusCode};

use crate::api::chat::ChatRequest;
use crate::api::envelope::error_body;
use crate::cache::entry::Entry;
use crate::cache::status::{CacheReport, Served};
use crate::cache::verdict;
use crate::config::Cors;
use crate::error::{ApiError, Tier};
use crate::ports::{Body, BodyStream, Random};
use crate::providers::replay::{replay, NotACompletion};

/// Headers a browser page may read from a cross-origin answer.
/// Every response header the README documents.
pub const EXPOSE: &str = "cache-status, x-cache, x-cache-tier, age, x-request-id, x-provider, x-attempts, x-fallback, x-cache-stale-reason, x-coalesced, server-timing, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, x-max-tokens-clamped";
/// Headers a preflight allows when the browser did not say which it needs.
const DEFAULT_ALLOW_HEADERS: &str = "authorization, content-type, cache-control, x-cache-namespace, x-request-id";
const MAX_REQUEST_ID: usize = 128;

/// Milliseconds spent in each step, for `Server-Timing`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub kv_ms: Option<u64>,
    pub redis_ms: Option<u64>,
    pub origin_ms: Option<u64>,
}

impl Timing {
    pub fn header(&self, total_ms: u64) -> String {
        let mut parts = Vec::with_capacity(4);
        for (name, value) in [("kv", self.kv_ms), ("redis", self.redis_ms), ("origin", self.origin_ms)] {
            if let Some(ms) = value {
                parts.push(format!("{name};dur={ms}"));
            }
        }
        parts.push(format!("total;dur={total_ms}"));
        parts.join(", ")
    }
}

/// The client's `x-request-id` if it is a sane token, else a new random one.
pub fn request_id(headers: &HeaderMap, random: &impl Random) -> String {
    let given = headers.get("x-request-id").and_then(|v| v.to_str().ok()).filter(|v| {
        !v.is_empty()
            && v.len() <= MAX_REQUEST_ID
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    });
    match given {
        Some(id) => id.to_owned(),
        None => format!("req_{:016x}", random.random_u64()),
    }
}

pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::Full(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub fn error(err: &ApiError) -> Response<Body> {
    let mut response = json(err.status, error_body(err));
    if let Some(seconds) = err.retry_after_s {
        response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The 404 of a path the gateway does not serve.
pub fn not_found(path: &str) -> Response<Body> {
    let shown: String = path.chars().take(100).collect();
    error(&ApiError::new(
        StatusCode::NOT_FOUND,
        crate::error::ErrorType::NotFound,
        "not_found",
        format!("Unknown path '{shown}'. This gateway serves POST /v1/chat/completions and GET /v1/models."),
    ))
}

/// The 405 of a known path asked with another method.
pub fn method_not_allowed(path: &str, allowed: &str, method: &http::Method) -> Response<Body> {
    let mut response = error(&ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        crate::error::ErrorType::InvalidRequest,
        "method_not_allowed",
        format!("{path} accepts {allowed} only, not {method}."),
    ));
    set(response.headers_mut(), "allow", &format!("{allowed}, OPTIONS"));
    response
}

/// How the client asked for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// One chat completion.
    Json,
    /// An OpenAI stream of chunks (`stream: true`), with the usage chunk if asked for.
    Stream { include_usage: bool },
}

impl Form {
    pub fn of(request: &ChatRequest) -> Form {
        match request.stream {
            true => Form::Stream { include_usage: crate::providers::client_wants_usage(request) },
            false => Form::Json,
        }
    }
}

/// A 200 whose body is a server-sent event stream.
pub fn event_stream(body: BodyStream) -> Response<Body> {
    let mut response = Response::new(Body::Stream(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A fresh entry from `tier` answering as a hit, in the form the client asked for; an error when
/// the entry cannot be replayed as a stream.
pub fn hit(
    tier: Tier,
    entry: Entry,
    report: &CacheReport,
    now_ms: u64,
    form: Form,
) -> Result<Response<Body>, NotACompletion> {
    let mut report = report.clone();
    report.served = Served::Hit(tier);
    cached(entry, &report, now_ms, form)
}

/// A stale entry from `tier` answering because no provider could (`reason`: the failure's code).
pub fn stale(
    tier: Tier,
    entry: Entry,
    mut report: CacheReport,
    now_ms: u64,
    reason: &str,
    form: Form,
) -> Result<Response<Body>, NotACompletion> {
    report.tier_mut(tier).lookup = verdict::served_stale(&entry, now_ms);
    report.served = Served::Stale(tier);
    let mut response = cached(entry, &report, now_ms, form)?;
    set(response.headers_mut(), "x-cache-stale-reason", reason);
    Ok(response)
}

/// The answer of another request's provider call for the same key (single flight), led by
/// `leader`: as fresh as a new answer, in the form this client asked for.
pub fn coalesced(
    entry: Entry,
    report: &CacheReport,
    now_ms: u64,
    form: Form,
    leader: &str,
) -> Result<Response<Body>, NotACompletion> {
    let mut report = report.clone();
    report.served = Served::Origin;
    report.collapsed = true;
    let mut response = cached(entry, &report, now_ms, form)?;
    set_coalesced(response.headers_mut(), leader);
    Ok(response)
}

/// `x-coalesced`: the request id whose provider call answered this one too.
pub fn set_coalesced(headers: &mut HeaderMap, leader: &str) {
    // Request ids are checked tokens, or made here; one from Redis that is not is left out.
    if let Ok(v) = HeaderValue::from_str(leader) {
        headers.insert(HeaderName::from_static("x-coalesced"), v);
    }
}

/// An entry's answer: its body as stored (shared, not copied) or replayed as a stream, its `Age`,
/// its provider and the cache headers.
fn cached(entry: Entry, report: &CacheReport, now_ms: u64, form: Form) -> Result<Response<Body>, NotACompletion> {
    let age = entry.age_s(now_ms);
    let mut response = match form {
        Form::Json => json(StatusCode::OK, entry.body),
        Form::Stream { include_usage } => event_stream(super::streams::replayed(replay(&entry.body, include_usage)?)),
    };
    let headers = response.headers_mut();
    cache_headers(headers, report);
    headers.insert(http::header::AGE, HeaderValue::from(age));
    set(headers, "x-provider", &entry.provider);
    Ok(response)
}

/// An error answer that also says what the cache did.
pub fn error_with_cache(err: &ApiError, report: &CacheReport) -> Response<Body> {
    let mut response = error(err);
    cache_headers(response.headers_mut(), report);
    response
}

/// The 504 of `Cache-Control: only-if-cached` when no entry may answer.
pub fn cache_miss(why: &str, report: &CacheReport) -> Response<Body> {
    let err = ApiError::new(StatusCode::GATEWAY_TIMEOUT, crate::error::ErrorType::InvalidRequest, "cache_miss", why);
    error_with_cache(&err, report)
}

/// Sets a header from a string this crate produced; such strings are always valid values.
pub fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    let value = HeaderValue::from_str(value).expect("header values built by the gateway are visible ASCII");
    headers.insert(HeaderName::from_static(name), value);
}

/// Adds the cache headers of `report` to a response.
pub fn cache_headers(headers: &mut HeaderMap, report: &CacheReport) {
    set(headers, "x-cache", report.x_cache());
    if let Some(tier) = report.x_cache_tier() {
        set(headers, "x-cache-tier", tier);
    }
    if let Some(status) = report.cache_status() {
        set(headers, "cache-status", &status);
    }
}

/// The last step of every response: request id, timing and CORS.
pub fn finish(
    response: &mut Response<Body>,
    request_id: &str,
    timing: &Timing,
    total_ms: u64,
    cors: Option<&Cors>,
    origin: Option<&str>,
) {
    let headers = response.headers_mut();
    set(headers, "x-request-id", request_id);
    set(headers, "server-timing", &timing.header(total_ms));
    if let (Some(cors), Some(origin)) = (cors, origin) {
        if let Some(allowed) = cors.allow(origin) {
            allow_origin(headers, &allowed);
            set(headers, "access-control-expose-headers", EXPOSE);
            set(headers, "timing-allow-origin", &allowed);
        }
    }
}

fn allow_origin(headers: &mut HeaderMap, allowed: &str) {
    // An origin that is not a valid header value was never in an allow-list: nothing to allow.
    if let Ok(v) = HeaderValue::from_str(allowed) {
        headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        headers.append(http::header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Answers a CORS preflight (`OPTIONS`).
pub fn preflight(cors: &Cors, request: &HeaderMap) -> Response<Body> {
    let origin = request.get(http::header::ORIGIN).and_then(|v| v.to_str().ok());
    let Some(origin) = origin else {
        // Not a browser preflight: say what the gateway supports.
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        set(response.headers_mut(), "allow", "GET, POST, OPTIONS");
        return response;
    };
    let Some(allowed) = cors.allow(origin) else {
        return error(&ApiError::new(
            StatusCode::FORBIDDEN,
            crate::error::ErrorType::Permission,
            "cors_origin_not_allowed",
            "This origin is not allowed to call the gateway (see CORS_ALLOWED_ORIGINS).",
        ));
    };
    let asked = request
        .get(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.bytes().all(|b| b.is_ascii_alphanumeric() || b", -_".contains(&b)))
        .filter(|v| !v.trim().is_empty())
        .unwrap_or(DEFAULT_ALLOW_HEADERS);
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    allow_origin(headers, &allowed);
    set(headers, "access-control-allow-methods", "GET, POST, OPTIONS");
    set(headers, "access-control-allow-headers", asked);
    set(headers, "access-control-max-age", "86400");
    headers.append(http::header::VARY, HeaderValue::from_static("Access-Control-Request-Headers"));
    response
}
