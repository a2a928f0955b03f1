//! The way of one request, and the only orchestrator: route, authenticate, parse, decide the cache
//! policy, look up tier 1 (edge KV) with tier 2 (Redis) hedged (`lookup`), call the provider on a
//! double miss (sharing a call already in flight for the same key: `coalesce`), write back in the
//! background (`writes`), and fall back to a stale entry when the provider fails. Responses are assembled in `reply`.
//!
//! Fail open: a store that errs, times out or holds garbage is a miss, logged and never an error
//! for the client. The client never waits for a cache write. Must not: do IO except through the
//! ports, or read time except from `Clock`.

mod admin;
mod budget;
mod coalesce;
mod counters;
mod embeddings;
mod guard;
mod info;
mod kill;
mod lookup;
mod meter;
mod origin;
mod pacing;
mod record;
mod reply;
mod stats;
mod streams;
mod tally;
mod writes;

use std::convert::Infallible;
use std::rc::Rc;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::json;

use crate::api::chat::ChatRequest;
use crate::auth::{self, Caller};
use crate::cache::entry::Entry;
use crate::cache::key::{CacheKey, KeyScope};
use crate::cache::policy::Policy;
use crate::cache::status::{CacheReport, Served};
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, ErrorType, Tier};
use crate::ports::{Body, CollectError, Host};
use crate::routing::table::{NoRoute, Target};
use coalesce::{Joined, Leading};
use guard::{Guard, Stage};
use origin::{all_failed, routing_headers, unsupported, Outcome};
use record::Record;
use reply::Form;
use streams::StreamEnd;

pub use kill::KILL_REFRESH_MS;
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
    let record = Record::new(started_ms, &request_id, &request);
    let mut response = match config {
        Ok(config) => {
            let mut x = Exchange { host, config, request_id: &request_id, timing: &mut timing, record: &record };
            x.route(request).await
        }
        Err(problems) => misconfigured(host, problems, request),
    };
    let total_ms = host.now_ms().saturating_sub(started_ms);
    let cors = config.ok().map(|c| &c.cors);
    reply::finish(&mut response, &request_id, &timing, total_ms, cors, origin.as_deref());
    // The request's log line and counts, after the response (a stream's, when it ends).
    record.finish(host, config.ok(), &response, total_ms);
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
    /// What the request's log line and metrics will say (`record`).
    record: &'a Record,
}

impl<'a, H: Host> Exchange<'a, H> {
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
            "/v1/chat/completions" | "/chat/completions" | "/v1/embeddings" | "/embeddings" => "POST",
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
            "/v1/embeddings" | "/embeddings" => self.embeddings(request).await,
            _ => self.chat(request).await,
        }
    }

    /// The caller: a gateway key's tenant, or a browser caller (publishable key, signed token).
    fn authenticate(&self, headers: &HeaderMap) -> Result<Caller<'a>, ApiError> {
        let key = bearer(headers)?;
        let origin = headers.get(http::header::ORIGIN).and_then(|v| v.to_str().ok());
        let config: &'a Config = self.config;
        auth::identify(config, key, origin, self.host.now_ms())
    }

    async fn chat(&mut self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let caller = match self.authenticate(&parts.headers) {
            Ok(caller) => caller,
            Err(e) => return reply::error(&e),
        };
        let (tenant, end_user) = (caller.tenant, caller.end_user.as_ref());
        self.record.tenant(tenant);
        let mut parsed = match self.read_request(&parts.headers, body).await {
            Ok(p) => p,
            Err(e) => return reply::error(&e),
        };
        // The tenant's guard rails that need no store: a model it may not use is absent for it.
        let config: &'a Config = self.config;
        let tenant_policy = config.tenant_policies.policy(tenant);
        let allowed =
            |model: &str| tenant_policy.allows_model(model) && end_user.is_none_or(|u| u.policy.allows_model(model));
        if !allowed(&parsed.model) {
            return reply::error(&model_not_found(&parsed.model));
        }
        let mut guard = match guard::shape(tenant, tenant_policy, end_user, &mut parsed) {
            Ok(g) => g,
            Err(e) => return reply::error(&e),
        };
        // A tenant known to be past a hard budget that degrades asks for the cheaper model.
        guard.degrade_if_known(self.host, &mut parsed);
        let policy = match Policy::from_headers(&parts.headers) {
            Ok(p) => p,
            Err(e) => return reply::error(&e),
        };
        loop {
            let targets = match self.config.routes.route(&parsed.model) {
                Ok(targets) => targets,
                Err(e) => return reply::error(&no_route(e, &parsed.model)),
            };
            let scope = KeyScope { generation: &self.config.generation, tenant, namespace: &policy.namespace };
            let key = CacheKey::chat_in(&scope, &parsed);
            self.record.model(&parsed.model, parsed.stream);
            let mut response = self.cached_chat(&parsed, &policy, key, targets, &mut guard).await;
            // Found past a hard budget that degrades on the way to the call: once more, from the
            // lookup on, as the cheaper model (whose cache key is the request actually sent).
            if guard.degrade(&mut parsed) {
                continue;
            }
            guard.decorate(response.headers_mut());
            return response;
        }
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

    /// The layered lookup and, on a double miss, the providers; in the form the client asked for
    /// (one entry serves both: a stream is replayed from it, a streamed answer is stored as one).
    async fn cached_chat(
        &mut self,
        request: &ChatRequest,
        policy: &Policy,
        key: CacheKey,
        targets: &[Target],
        guard: &mut Guard<'_>,
    ) -> Response<Body> {
        let form = Form::of(request);
        // A policy that counts cache hits is checked before the lookup (requests only).
        if let Err(e) = self.check_limits(guard, Stage::BeforeLookup).await {
            return reply::error(&e);
        }
        let mut report = CacheReport::new();
        // Tier 1, then tier 2 when tier 1 misses or is slow; a tier-2 hit is copied to tier 1.
        let mut stale = match self.read_tiers(policy, &key, &mut report, form).await {
            Ok(stale) => stale,
            Err(hit) => return hit,
        };
        if policy.only_if_cached {
            return reply::cache_miss("No fresh cached answer exists and the request said only-if-cached.", &report);
        }
        // Identical misses in flight share one provider call; a follower holding a stale entry
        // waits no longer than the stale deadline.
        let flight = match self.join_flight(&key, policy, form, &report, stale.is_some()).await {
            Joined::Served(response) => return response,
            Joined::Call(flight) => flight,
            Joined::StaleDue(why) => {
                let now = self.host.now_ms();
                let served = stale.take().and_then(|(tier, entry)| {
                    self.record.served_entry(&entry);
                    reply::stale(tier, entry, report.clone(), now, why, form).ok()
                });
                match served {
                    Some(response) => return response,
                    None => None,
                }
            }
        };
        // The limits, where the cost is: this request calls a provider (a refusal drops the
        // flight: its followers call for themselves). Then switched-off targets are left out,
        // and those at their share of their provider's limits.
        if let Err(e) = self.check_limits(guard, Stage::BeforeCall).await {
            return reply::error_with_cache(&e, &report);
        }
        let live = match self.live_targets(targets).await {
            Ok(live) => live,
            Err(e) => return reply::error_with_cache(&e, &report),
        };
        // Targets declaring their provider's limits are kept below them (priority permitting).
        let live = match self.pace(live, guard.policy.priority, guard.estimate()).await {
            Ok(live) => live,
            Err(e) => return reply::error_with_cache(&e, &report),
        };
        let targets = live.as_slice();
        let meter = self.meter_for(guard, request, targets);
        // With a stale entry in hand, the providers have until the stale deadline to start.
        let deadline = self.origin_deadline(stale.is_some());
        report.served = if policy.bypass.is_some() { Served::Bypass } else { Served::Origin };
        let started = self.host.now_ms();
        if request.stream {
            // Assembled (with usage asked for) to be stored, or for its tokens to be counted.
            let outcome = self.open_stream(request, targets, deadline, policy.write || meter.is_some()).await;
            self.timing.origin_ms = Some(self.host.now_ms().saturating_sub(started));
            let opened = match outcome.answer() {
                Ok(opened) => opened,
                Err(failed) => return self.unanswered(*failed, stale, report, form, flight),
            };
            self.record.first_token(&opened.target, &request.model, self.host.now_ms());
            // Stored, if at all, when the stream has ended cleanly: Cache-Status cannot promise it.
            let end = StreamEnd {
                record: Some(self.record.hand_over(self.host, self.config, report.x_cache(), opened.fallback)),
                writes: self.writes().leading(flight),
                key: policy.write.then_some(key),
                target: opened.target.id.clone(),
                breaker: self.config.breaker,
                meter,
            };
            let idle_ms = self.config.upstream.stream_idle_timeout_ms;
            let mut response = reply::event_stream(streams::tee(opened.value, end, idle_ms));
            reply::cache_headers(response.headers_mut(), &report);
            routing_headers(response.headers_mut(), &opened.target.id, opened.attempts, opened.fallback);
            return response;
        }
        let outcome = self.call_targets(request, targets, deadline).await;
        self.timing.origin_ms = Some(self.host.now_ms().saturating_sub(started));
        let answered = match outcome.answer() {
            Ok(answered) => answered,
            Err(failed) => return self.unanswered(*failed, stale, report, form, flight),
        };
        self.record.answered(&answered.target, &request.model, &answered.value.body);
        if let Some(meter) = meter {
            meter.record(&answered.value.body, &answered.target.id);
        }
        if policy.write {
            let stored = self.writes().leading(flight).keep(key, &answered.value, &answered.target.id);
            (report.kv.stored, report.redis.stored) = (stored.kv, stored.redis);
        }
        let mut response = reply::json(StatusCode::OK, answered.value.body);
        reply::cache_headers(response.headers_mut(), &report);
        routing_headers(response.headers_mut(), &answered.target.id, answered.attempts, answered.fallback);
        response
    }

    /// No provider answered: a stale entry if one is in hand (stale-if-error), else the error.
    fn unanswered(
        &self,
        outcome: Outcome<Infallible>,
        stale: Option<(Tier, Entry)>,
        mut report: CacheReport,
        form: Form,
        flight: Option<Rc<Leading<H>>>,
    ) -> Response<Body> {
        report.served = Served::Nothing;
        let (error, attempts) = match outcome {
            Outcome::Answered { value, .. } => match value {},
            Outcome::Unsupported(reasons) => return reply::error_with_cache(&unsupported(&reasons), &report),
            Outcome::ClientError { error, attempts } => (error.to_api_error(), attempts),
            Outcome::AllFailed { failures, last, attempts, retry_after_ms } => {
                let error = all_failed(&failures, last.as_ref(), retry_after_ms);
                // Followers holding a stale entry answer with it now, as this request may.
                if let Some(flight) = flight {
                    flight.local.publish(crate::coalesce::Outcome::ProvidersFailed { code: error.code });
                }
                let now = self.host.now_ms();
                let stale = stale.and_then(|(tier, entry)| {
                    self.record.served_entry(&entry);
                    reply::stale(tier, entry, report.clone(), now, error.code, form).ok()
                });
                if let Some(mut response) = stale {
                    reply::set(response.headers_mut(), "x-attempts", &attempts.to_string());
                    return response;
                }
                (error, attempts)
            }
        };
        let mut response = reply::error_with_cache(&error, &report);
        reply::set(response.headers_mut(), "x-attempts", &attempts.to_string());
        response
    }

    fn log(&self, level: &str, event: &str, fields: serde_json::Value) {
        log_line(self.host, self.request_id, level, event, fields);
    }
}

/// Why a model cannot be routed: not in the table (404), or none of its targets usable (500).
fn no_route(why: NoRoute, model: &str) -> ApiError {
    match why {
        NoRoute::Unknown => model_not_found(model),
        NoRoute::Unusable => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Api,
            "gateway_misconfigured",
            "The gateway is misconfigured: no target of this model's route in ROUTES is usable.",
        ),
    }
}

/// The 404 of a model the gateway does not serve (or the tenant may not use: the same answer).
fn model_not_found(model: &str) -> ApiError {
    let shown: String = model.chars().take(100).collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorType::NotFound,
        "model_not_found",
        format!("The model '{shown}' is not served by this gateway (see GET /v1/models)."),
    )
    .with_param("model")
}

/// One JSON log line of a request: its level, event and id, then `fields`.
fn log_line(host: &impl crate::ports::Log, request_id: &str, level: &str, event: &str, fields: serde_json::Value) {
    let mut line = json!({"level": level, "event": event, "request_id": request_id});
    if let (Some(line), serde_json::Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    host.log(&line.to_string());
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
