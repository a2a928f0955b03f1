//! The way of one request, and the only orchestrator: route, authenticate, parse, decide the cache
//! policy, look up tier 1 (edge KV) with tier 2 (Redis) hedged (`lookup`), call the provider on a
//! double miss, write back in the background (`writes`), and fall back to a stale entry when the
//! provider fails. Responses are assembled in `reply`.
//!
//! Fail open: a store that errs, times out or holds garbage is a miss, logged and never an error
//! for the client. The client never waits for a cache write. Must not: do IO except through the
//! ports, or read time except from `Clock`.

mod admin;
mod counters;
mod info;
mod lookup;
mod origin;
mod reply;
mod streams;
mod writes;

use futures_util::stream;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::json;

use crate::api::chat::ChatRequest;
use crate::cache::entry::Entry;
use crate::cache::key::{CacheKey, KeyScope};
use crate::cache::policy::{Bypass, Policy};
use crate::cache::status::{CacheReport, Lookup, Served};
use crate::cache::storable::replayable;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, ErrorType};
use crate::ports::{Body, CollectError, Host};
use crate::providers::stream::SseTranslator;
use crate::routing::table::{NoRoute, Target};
use origin::{all_failed, routing_headers, speaks_openai, unsupported, Outcome};
use streams::{idle_bounded, translated};

pub use reply::Timing;

/// Background writes do not delay anyone, so they may take longer than reads.
const WRITE_TIMEOUT_MS: u64 = 10_000;
/// Longest error body read from a provider (only its message is used).
const MAX_ERROR_BODY: usize = 64 << 10;
/// What is read and thrown away of a request body over the limit before the 413 goes out: some
/// runtimes (workerd behind wrangler's local proxy) reset the connection, or answer with a 500 of
/// their own, when a handler answers before the body has been read.
const DRAIN_MAX_BYTES: usize = 128 << 20;
const DRAIN_MAX_MS: u64 = 10_000;

/// Handles one request. Never panics on input and never fails: every problem is a response.
pub async fn handle<H: Host>(
    host: &H,
    config: Result<&Config, &ConfigError>,
    request: Request<Body>,
) -> Response<Body> {
    let started_ms = host.now_ms();
    let request_id = reply::request_id(request.headers(), host);
    let origin = request.headers().get(http::header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut timing = Timing::default();
    let mut response = match config {
        Ok(config) => {
            let mut x = Exchange { host, config, request_id: &request_id, timing: &mut timing };
            x.route(request).await
        }
        Err(problems) => misconfigured(host, problems, request),
    };
    let total_ms = host.now_ms().saturating_sub(started_ms);
    let cors = config.ok().map(|c| &c.cors);
    reply::finish(&mut response, &request_id, &timing, total_ms, cors, origin.as_deref());
    response
}

/// Logs what is wrong with the configuration, once, when an adapter has read it (names only).
pub fn report_config<H: crate::ports::Log>(host: &H, config: Result<&Config, &ConfigError>) {
    let (level, problems) = match config {
        Ok(c) if c.problems.is_empty() => return,
        Ok(c) => ("warn", &c.problems),
        Err(e) => ("error", &e.problems),
    };
    host.log(&json!({"level": level, "event": "config_problems", "problems": problems}).to_string());
}

/// A configuration that can serve nothing: `/healthz` says 503, everything else is a 500 naming
/// the problem variables (never their values).
fn misconfigured<H: Host>(host: &H, problems: &ConfigError, request: Request<Body>) -> Response<Body> {
    if request.uri().path() == "/healthz" {
        return info::healthz(false);
    }
    host.log(&json!({"level": "error", "event": "config_invalid", "problems": problems.problems}).to_string());
    reply::error(&ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorType::Api,
        "gateway_misconfigured",
        format!("The gateway is misconfigured: {}.", problems.problems.join("; ")),
    ))
}

/// One request in flight.
struct Exchange<'a, H: Host> {
    host: &'a H,
    config: &'a Config,
    request_id: &'a str,
    timing: &'a mut Timing,
}

impl<H: Host> Exchange<'_, H> {
    async fn route(&mut self, request: Request<Body>) -> Response<Body> {
        let path = request.uri().path();
        let method = request.method();
        if method == Method::OPTIONS {
            return reply::preflight(&self.config.cors, request.headers());
        }
        if path.starts_with("/admin/") {
            return self.admin(request).await;
        }
        let allowed = match path {
            "/v1/chat/completions" | "/chat/completions" => "POST",
            "/v1/models" | "/models" | "/healthz" => "GET",
            _ => return reply::not_found(path),
        };
        if method.as_str() != allowed && !(allowed == "GET" && method == Method::HEAD) {
            return reply::method_not_allowed(path, allowed, method);
        }
        match path {
            "/healthz" => info::healthz(true),
            "/v1/models" | "/models" => match self.authenticate(request.headers()) {
                Ok(_) => info::models(self.config),
                Err(e) => reply::error(&e),
            },
            _ => self.chat(request).await,
        }
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<&str, ApiError> {
        let key = bearer(headers)?;
        self.config.tenant_for_key(key).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorType::Authentication,
                "invalid_api_key",
                "The gateway key is not valid.",
            )
        })
    }

    async fn chat(&mut self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let tenant = match self.authenticate(&parts.headers) {
            Ok(t) => t,
            Err(e) => return reply::error(&e),
        };
        let parsed = match self.read_request(&parts.headers, body).await {
            Ok(p) => p,
            Err(e) => return reply::error(&e),
        };
        let policy = match Policy::from_headers(&parts.headers, parsed.stream) {
            Ok(p) => p,
            Err(e) => return reply::error(&e),
        };
        let targets = match self.config.routes.route(&parsed.model) {
            Ok(targets) => targets,
            Err(NoRoute::Unknown) => {
                let shown: String = parsed.model.chars().take(100).collect();
                return reply::error(
                    &ApiError::new(
                        StatusCode::NOT_FOUND,
                        ErrorType::NotFound,
                        "model_not_found",
                        format!("The model '{shown}' is not served by this gateway (see GET /v1/models)."),
                    )
                    .with_param("model"),
                );
            }
            Err(NoRoute::Unusable) => {
                return reply::error(&ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorType::Api,
                    "gateway_misconfigured",
                    "The gateway is misconfigured: no target of this model's route in ROUTES is usable.",
                ))
            }
        };
        if parsed.stream {
            return self.stream(&parsed, &policy, targets).await;
        }
        let scope = KeyScope { generation: &self.config.generation, tenant, namespace: &policy.namespace };
        let key = CacheKey::chat_in(&scope, &parsed);
        self.cached_chat(&parsed, &policy, key, targets).await
    }

    async fn read_request(&self, headers: &HeaderMap, body: Body) -> Result<ChatRequest, ApiError> {
        let object = self.read_json(headers, body, self.config.max_body_bytes).await?;
        ChatRequest::from_object(object)
    }

    /// Reads a JSON object body of at most `limit` bytes. A larger body is read to its end (up to
    /// `DRAIN_MAX_BYTES`) and thrown away, so that the 413 reaches the client on every runtime.
    async fn read_json(
        &self,
        headers: &HeaderMap,
        body: Body,
        limit: usize,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/json") {
            self.drain(body).await;
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorType::InvalidRequest,
                "unsupported_media_type",
                "The request body must be JSON, sent with 'Content-Type: application/json'.",
            ));
        }
        let declared =
            headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorType::InvalidRequest,
                "request_too_large",
                format!("The request body is larger than the limit of {limit} bytes."),
            )
        };
        if declared.is_some_and(|n| n > limit as u64) {
            self.drain(body).await;
            return Err(too_large());
        }
        let bytes = match body.collect_or_rest(limit).await {
            Ok(bytes) => bytes,
            Err((CollectError::TooLarge { .. }, rest)) => {
                self.drain(rest).await;
                return Err(too_large());
            }
            Err((CollectError::Read(_), _)) => {
                return Err(ApiError::bad_request("body_read_failed", "The request body could not be read."))
            }
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("The request body is not valid JSON: {e}.")))?;
        match value {
            serde_json::Value::Object(map) => Ok(map),
            _ => Err(ApiError::bad_request("invalid_request", "The request body must be a JSON object.")),
        }
    }

    /// Reads what is left of a refused body and throws it away, within a bound of bytes and time.
    async fn drain(&self, body: Body) {
        let _ = crate::ports::with_timeout(self.host, DRAIN_MAX_MS, body.discard(DRAIN_MAX_BYTES)).await;
    }

    /// The layered lookup and, on a double miss, the provider.
    async fn cached_chat(
        &mut self,
        request: &ChatRequest,
        policy: &Policy,
        key: CacheKey,
        targets: &[Target],
    ) -> Response<Body> {
        let mut report = CacheReport::new();
        let mut stale = None;
        if !policy.read {
            let bypass = Lookup::Bypassed(policy.bypass.unwrap_or(Bypass::Request));
            report.kv.lookup = bypass;
            if self.config.upstash.is_some() {
                report.redis.lookup = bypass;
            }
        } else {
            // Tier 1, then tier 2 when tier 1 misses or is slow; a tier-2 hit is copied to tier 1.
            let found = self.look_up(policy, &key, &mut report).await;
            if let Some((tier, entry)) = found.hit {
                return reply::hit(tier, entry, report, self.host.now_ms());
            }
            stale = found.stale;
        }
        if policy.only_if_cached {
            return reply::cache_miss("No fresh cached answer exists and the request said only-if-cached.", &report);
        }

        let started = self.host.now_ms();
        let outcome = self.call_targets(request, targets).await;
        self.timing.origin_ms = Some(self.host.now_ms().saturating_sub(started));
        match outcome {
            Outcome::Answered { value: answer, target, attempts, fallback } => {
                report.served = if policy.bypass.is_some() { Served::Bypass } else { Served::Origin };
                let worth = replayable(&answer.body, self.config.store_truncated);
                if let (true, Err(reason)) = (policy.write, worth) {
                    self.log("info", "store_skipped", json!({"reason": reason.word(), "target": target.id}));
                    self.count(reason.word());
                } else if policy.write {
                    // The entry shares the answer's bytes; the client is served from them too.
                    let (now, fresh, stale) = (self.host.now_ms(), self.config.fresh_ttl_s, self.config.stale_ttl_s);
                    let entry = Entry::new(now, fresh, stale, &target.id, &answer.model, answer.body.clone());
                    self.store(key, entry, &mut report);
                }
                let mut response = reply::json(StatusCode::OK, answer.body);
                reply::cache_headers(response.headers_mut(), &report);
                routing_headers(response.headers_mut(), &target.id, attempts, fallback);
                response
            }
            Outcome::ClientError { error, attempts } => {
                let mut response = reply::error_with_cache(&error.to_api_error(), &report);
                reply::set(response.headers_mut(), "x-attempts", &attempts.to_string());
                response
            }
            Outcome::AllFailed { failures, last, attempts, retry_after_ms } => {
                let error = all_failed(&failures, last.as_ref(), retry_after_ms);
                let mut response = match stale {
                    Some((tier, entry)) => reply::stale(tier, entry, report, self.host.now_ms(), error.code),
                    None => reply::error_with_cache(&error, &report),
                };
                reply::set(response.headers_mut(), "x-attempts", &attempts.to_string());
                response
            }
            Outcome::Unsupported(reasons) => reply::error_with_cache(&unsupported(&reasons), &report),
        }
    }

    /// Streams the first answering target's stream through, uncached (`x-cache: BYPASS`),
    /// translated to OpenAI chunks when the provider speaks another format.
    async fn stream(&mut self, request: &ChatRequest, policy: &Policy, targets: &[Target]) -> Response<Body> {
        let mut report = CacheReport::new();
        report.kv.lookup = Lookup::Bypassed(Bypass::Stream);
        if self.config.upstash.is_some() {
            report.redis.lookup = Lookup::Bypassed(Bypass::Stream);
        }
        if policy.only_if_cached {
            let why = "Streaming answers are not cached, so an only-if-cached streaming request cannot be served.";
            return reply::cache_miss(why, &report);
        }
        let started = self.host.now_ms();
        let outcome = self.open_stream(request, targets).await;
        self.timing.origin_ms = Some(self.host.now_ms().saturating_sub(started));
        let error = match outcome {
            Outcome::Answered { value: (parts, body), target, attempts, fallback } => {
                report.served = Served::Bypass;
                let idle_ms = self.config.upstream.stream_idle_timeout_ms;
                let include_usage = request
                    .stream_options
                    .as_ref()
                    .and_then(|o| o.get("include_usage"))
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                let now_s = self.host.now_ms() / 1000;
                let model = target.model_for(&request.model).to_owned();
                let translator = SseTranslator::new(&target, &model, now_s, include_usage);
                let body = match body {
                    Body::Stream(s) => idle_bounded(s, self.host.clone(), idle_ms),
                    Body::Full(bytes) => Box::pin(stream::iter([Ok(bytes)])),
                };
                let body = match translator {
                    Some(t) => translated(body, t),
                    None => body,
                };
                let mut response = Response::new(Body::Stream(body));
                let headers = response.headers_mut();
                // A translated stream is ours; an OpenAI-format one keeps the provider's type.
                let content_type = match parts.headers.get(CONTENT_TYPE) {
                    Some(v) if speaks_openai(&target) => v.clone(),
                    _ => HeaderValue::from_static("text/event-stream"),
                };
                headers.insert(CONTENT_TYPE, content_type);
                headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                reply::cache_headers(headers, &report);
                routing_headers(headers, &target.id, attempts, fallback);
                return response;
            }
            Outcome::ClientError { error, .. } => error.to_api_error(),
            Outcome::AllFailed { failures, last, retry_after_ms, .. } => {
                all_failed(&failures, last.as_ref(), retry_after_ms)
            }
            Outcome::Unsupported(reasons) => unsupported(&reasons),
        };
        reply::error_with_cache(&error, &report)
    }

    /// Counts an event in Redis after the response (best effort).
    fn count(&self, counter: &'static str) {
        let host = self.host.clone();
        let upstash = self.config.upstash.clone();
        self.host.spawn_background(Box::pin(async move { counters::bump(&host, upstash.as_ref(), counter).await }));
    }

    fn log(&self, level: &str, event: &str, fields: serde_json::Value) {
        let mut line = json!({"level": level, "event": event, "request_id": self.request_id});
        if let (Some(line), serde_json::Value::Object(fields)) = (line.as_object_mut(), fields) {
            line.extend(fields);
        }
        self.host.log(&line.to_string());
    }
}

/// The key of `Authorization: Bearer <key>`.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let unauthorized =
        |code, message: &str| ApiError::new(StatusCode::UNAUTHORIZED, ErrorType::Authentication, code, message);
    let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        unauthorized("missing_api_key", "No key was given. Send it as 'Authorization: Bearer <key>'.")
    })?;
    let value = value.to_str().unwrap_or("");
    value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .ok_or_else(|| unauthorized("invalid_authorization", "The Authorization header must be 'Bearer <key>'."))
}
