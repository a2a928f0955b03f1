//! Calling providers on a double miss: performs what the failover machine
//! (`routing::failover`) decides (build, send, sleep), logs each failure and shares target health
//! through Redis (`routing::health` decides what; `stores::redis` says how), best effort: a
//! Redis outage never stops routing.
//!
//! Where memory lasts (a Workers isolate), routing uses what the isolate knows and never waits
//! for Redis: after the response, every `HEALTH_SYNC_MS` (or at once when this isolate opened or
//! closed a breaker or cooled a target down) one round trip reports what it saw and reads what
//! all saw. Where memory starts empty (a Spin instance), one round trip before routing (bounded
//! by `REDIS_TIMEOUT_MS`) reads the shared health, and one after the response reports.
//! Must not: decide on its own which target to try, when to retry or what the client is told.

use bytes::Bytes;
use serde_json::json;

use http::{HeaderMap, StatusCode};

use super::streams::{self, Opened};
use super::{reply, Exchange, MAX_ERROR_BODY, WRITE_TIMEOUT_MS};
use crate::api::chat::ChatRequest;
use crate::config::UpstashConfig;
use crate::error::{ApiError, ErrorType, Unsupported, UpstreamError};
use crate::metrics::OutcomeClass;
use crate::ports::{with_timeout, CollectError, Host};
use crate::providers::{self, Answer};
use crate::routing::breaker::BreakerConfig;
use crate::routing::failover::{Action, Failover, Settings};
pub(super) use crate::routing::failover::{Failure, Outcome};
use crate::routing::select;
use crate::routing::sharing::Report;
use crate::routing::table::Target;
use crate::stores::redis::{HealthExchange, Redis};

/// How often an isolate whose memory lasts reports and reads shared health.
const HEALTH_SYNC_MS: u64 = 5_000;

impl<H: Host> Exchange<'_, H> {
    /// A complete answer from the first target that gives one, before `deadline_ms`.
    pub(super) async fn call_targets(
        &self,
        request: &ChatRequest,
        targets: &[Target],
        deadline_ms: u64,
    ) -> Outcome<Answer> {
        let build = |target: &Target| providers::build_request(target, request);
        let parse = |target: &Target, body, now_ms| providers::parse_success(target, body, &request.model, now_ms);
        self.call_whole(targets, deadline_ms, build, parse).await
    }

    /// The first complete answer (read whole, `parse`d) of the targets, before `deadline_ms`:
    /// what chat and embeddings calls share.
    pub(super) async fn call_whole<T>(
        &self,
        targets: &[Target],
        deadline_ms: u64,
        build: impl Fn(&Target) -> Result<http::Request<Bytes>, Unsupported>,
        parse: impl Fn(&Target, Bytes, u64) -> Result<T, UpstreamError>,
    ) -> Outcome<T> {
        let host = self.host;
        let upstream = &self.config.upstream;
        self.failover(targets, deadline_ms, build, async |target: &Target, outgoing, budget_ms| {
            let first_byte = target.first_byte_timeout_ms.unwrap_or(budget_ms).min(budget_ms);
            let started = host.now_ms();
            let response = match with_timeout(host, first_byte, host.fetch(outgoing)).await {
                None => return Err(UpstreamError::Timeout { ms: first_byte }),
                Some(Err(e)) => return Err(UpstreamError::Connect(e.to_string())),
                Some(Ok(r)) => r,
            };
            let remaining = budget_ms.saturating_sub(host.now_ms().saturating_sub(started));
            let status = response.status();
            let (parts, body) = response.into_parts();
            let limit = if status.is_success() { upstream.max_response_bytes } else { MAX_ERROR_BODY };
            let body = match with_timeout(host, remaining, body.collect(limit)).await {
                None => return Err(UpstreamError::Timeout { ms: budget_ms }),
                Some(Err(CollectError::TooLarge { limit })) => return Err(UpstreamError::TooLarge { limit }),
                Some(Err(CollectError::Read(e))) => return Err(UpstreamError::Stream(e.0)),
                Some(Ok(b)) => b,
            };
            if status.is_success() {
                parse(target, body, host.now_ms())
            } else {
                Err(classify(target, status, &parts.headers, &body))
            }
        })
        .await
    }

    /// The first target whose stream starts: its first content event read (what came before it
    /// buffered, `streams::read_ahead`), before `deadline_ms`. Until then a stream fails over like
    /// any call; once it has started, its bytes go to the client and it is the answer.
    /// `storing`: its answer is to be assembled and stored.
    pub(super) async fn open_stream(
        &self,
        request: &ChatRequest,
        targets: &[Target],
        deadline_ms: u64,
        storing: bool,
    ) -> Outcome<Opened> {
        let host = self.host;
        let upstream = &self.config.upstream;
        let limit = self.config.max_entry_bytes;
        let build = |target: &Target| providers::build_stream_request(target, request, storing);
        self.failover(targets, deadline_ms, build, async |target: &Target, outgoing, budget_ms| {
            let started = host.now_ms();
            // Both bounds run from the attempt's start; the first token comes after the head.
            let first_token = target.first_token_timeout_ms.unwrap_or(upstream.first_token_timeout_ms).min(budget_ms);
            let first_byte = target.first_byte_timeout_ms.map_or(first_token, |ms| ms.min(first_token));
            let response = match with_timeout(host, first_byte, host.fetch(outgoing)).await {
                None => return Err(UpstreamError::Timeout { ms: first_byte }),
                Some(Err(e)) => return Err(UpstreamError::Connect(e.to_string())),
                Some(Ok(r)) => r,
            };
            let status = response.status();
            let (parts, body) = response.into_parts();
            if !status.is_success() {
                let body = with_timeout(host, first_byte, body.collect(MAX_ERROR_BODY))
                    .await
                    .and_then(Result::ok)
                    .unwrap_or_default();
                return Err(classify(target, status, &parts.headers, &body));
            }
            let relay = streams::relay_for(target, request, storing, limit, host.now_ms());
            let bounds = streams::Bounds {
                first_token_at_ms: started.saturating_add(first_token),
                first_token_ms: first_token,
                idle_ms: upstream.stream_idle_timeout_ms,
            };
            streams::read_ahead(host, body, relay, bounds).await
        })
        .await
    }

    /// When the providers must have answered: `UPSTREAM_DEADLINE_MS` from now, or, with a stale
    /// entry in hand, `STALE_DEADLINE_MS` when that is sooner (then the stale entry answers).
    pub(super) fn origin_deadline(&self, stale_in_hand: bool) -> u64 {
        let upstream = self.config.upstream.deadline_ms;
        let bound = if stale_in_hand { upstream.min(self.config.stale_deadline_ms) } else { upstream };
        self.host.now_ms().saturating_add(bound)
    }

    async fn failover<T>(
        &self,
        targets: &[Target],
        deadline_ms: u64,
        build: impl Fn(&Target) -> Result<http::Request<Bytes>, Unsupported>,
        attempt: impl AsyncFnMut(&Target, http::Request<Bytes>, u64) -> Result<T, UpstreamError>,
    ) -> Outcome<T> {
        let lasts = self.host.lasts_between_requests();
        let health = self.host.health();
        if !lasts || health.last_sync_ms.get() == 0 {
            // Memory that starts empty (a new isolate or instance) knows nothing: read what others
            // learned first (a Redis round trip on the way to a provider call, bounded by its
            // timeout, once per instance). Later requests sync in the background.
            if let Some(upstash) = &self.config.upstash {
                let ids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
                load_health(self.host, upstash, &self.config.breaker, &ids).await;
            }
        }
        let outcome = self.try_targets(targets, deadline_ms, build, attempt).await;
        let ids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
        share_health(self.host, self.config.upstash.as_ref(), self.config.breaker, &ids);
        outcome
    }

    async fn try_targets<T>(
        &self,
        targets: &[Target],
        deadline_ms: u64,
        build: impl Fn(&Target) -> Result<http::Request<Bytes>, Unsupported>,
        mut attempt: impl AsyncFnMut(&Target, http::Request<Bytes>, u64) -> Result<T, UpstreamError>,
    ) -> Outcome<T> {
        let host = self.host;
        let config = self.config;
        let settings = Settings {
            retry: config.retry,
            breaker: config.breaker,
            timeout_ms: config.upstream.timeout_ms,
            deadline_ms,
        };
        let order = select::order(targets, || host.random_u64());
        let mut machine = Failover::new(order, host.health(), settings);
        // The request built for the target in hand: every `Send` follows its target's `Build`.
        let mut outgoing = http::Request::default();
        let mut action = machine.start(host.now_ms());
        loop {
            action = match action {
                Action::Build { target } => {
                    let built = build(machine.target(target)).map(|r| outgoing = r);
                    machine.on_built(host.now_ms(), built)
                }
                Action::Send { target, retry, budget_ms } => {
                    let target = machine.target(target);
                    let started = host.now_ms();
                    let result = attempt(target, outgoing.clone(), budget_ms).await;
                    let class = result.as_ref().err().map_or(OutcomeClass::Ok, OutcomeClass::of);
                    self.record.attempt(target, class, host.now_ms().saturating_sub(started));
                    let error = result.as_ref().err().cloned();
                    let next = machine.on_outcome(host.now_ms(), result, host.random_u64());
                    let changed = machine.changed();
                    if let Some(error) = error.filter(|_| changed.failed) {
                        self.log_attempt(target, &error, retry);
                    }
                    if changed.breaker_opened {
                        self.log("warn", "breaker_opened", json!({"target": target.id}));
                    }
                    next
                }
                Action::Sleep { ms } => {
                    host.sleep_ms(ms).await;
                    machine.on_wake(host.now_ms())
                }
                Action::Done(outcome) => return outcome,
            };
        }
    }

    fn log_attempt(&self, target: &Target, error: &UpstreamError, retry: u32) {
        self.log(
            "warn",
            "upstream_failed",
            json!({"target": target.id, "provider": target.kind.as_str(), "code": error.code(), "detail": error.to_string(), "retry": retry}),
        );
    }
}

/// After the response: reports what this instance saw and, where memory lasts, reads what all saw
/// of `targets` (see the module's doc for when). Also called when a stream fails after its first
/// byte, long after the response began.
pub(super) fn share_health<H: Host>(
    host: &H,
    upstash: Option<&UpstashConfig>,
    breaker: BreakerConfig,
    targets: &[String],
) {
    let Some(upstash) = upstash.cloned() else { return };
    let health = host.health();
    let now = host.now_ms();
    let read: Vec<String> = if host.lasts_between_requests() {
        let due = now.saturating_sub(health.last_sync_ms.get()) >= HEALTH_SYNC_MS;
        if !due && !health.has_news() {
            return;
        }
        health.last_sync_ms.set(now);
        targets.to_vec()
    } else {
        Vec::new()
    };
    let reports = health.report(now, &breaker);
    if reports.is_empty() && read.is_empty() {
        return;
    }
    let task_host = host.clone();
    host.spawn_background(Box::pin(async move {
        let exchange = Redis::new(&upstash)
            .exchange_health(&task_host, &reports, &read, breaker.window(now), WRITE_TIMEOUT_MS)
            .await;
        fold_health(&task_host, &breaker, &reports, &read, exchange.ok());
    }));
}

/// Reads the shared health of the targets `read` now, for memory that starts empty; a Redis
/// failure leaves memory as it was (routing goes on with what it knows).
pub(super) async fn load_health<H: Host>(host: &H, upstash: &UpstashConfig, breaker: &BreakerConfig, read: &[String]) {
    let window = breaker.window(host.now_ms());
    let exchange = Redis::new(upstash).exchange_health(host, &[], read, window, upstash.timeout_ms).await;
    fold_health(host, breaker, &[], read, exchange.ok());
}

/// Folds what an exchange brought back (`None`: it failed) into this instance's memory, and
/// logs the breakers that shared counts opened here.
fn fold_health<H: Host>(
    host: &H,
    breaker: &BreakerConfig,
    reports: &[Report],
    read: &[String],
    exchange: Option<HealthExchange>,
) {
    let health = host.health();
    let now = host.now_ms();
    let (added, seen) = exchange.map_or((None, None), |e| (Some(e.added), e.seen));
    let mut opened = health.confirm(reports, added.as_deref(), now, breaker);
    for (id, seen) in read.iter().zip(seen.iter().flatten()) {
        if health.merge(id, seen, now, breaker) {
            opened.push(id.clone());
        }
    }
    for id in opened {
        let line = json!({"level": "warn", "event": "breaker_opened", "target": id, "by": "shared_counts"});
        host.log(&line.to_string());
    }
}

/// A provider's error, with one routing rule on top: when the gateway chose the model (the
/// target names one), "model not found" is the gateway's fault, so it fails over.
fn classify(target: &Target, status: http::StatusCode, headers: &http::HeaderMap, body: &[u8]) -> UpstreamError {
    let error = providers::classify_error(target, status, headers, body);
    match error {
        UpstreamError::ClientRequest { status: 404, .. } if target.model.is_some() => {
            UpstreamError::Server { status: 404, retry_after_ms: None }
        }
        other => other,
    }
}

/// `x-provider`, `x-attempts` and, when an earlier target failed, `x-fallback`.
pub(super) fn routing_headers(headers: &mut HeaderMap, target: &str, attempts: u32, fallback: bool) {
    reply::set(headers, "x-provider", target);
    reply::set(headers, "x-attempts", &attempts.to_string());
    if fallback {
        reply::set(headers, "x-fallback", "true");
    }
}

/// The client's answer when no target answered. With one target, its own error (502, 503, 504)
/// says the most; with several, a 503 that lists each target's failure, in order.
pub(super) fn all_failed(failures: &[Failure], last: Option<&UpstreamError>, retry_after_ms: Option<u64>) -> ApiError {
    let listed: Vec<(String, &'static str)> = failures.iter().map(|f| (f.target.clone(), f.code)).collect();
    let mut error = match (failures, last) {
        ([_], Some(last)) => last.to_api_error(),
        // One target, skipped without a call: say why in the words its own failure used.
        ([only], None) if only.code == "cooling_down" => UpstreamError::RateLimited { retry_after_ms }.to_api_error(),
        ([only], None) if only.code == "circuit_open" => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Api,
            "upstream_circuit_open",
            "The provider failed too often recently and is being rested; try again later.",
        ),
        _ => {
            let summary: Vec<String> = failures.iter().map(|f| format!("{}: {}", f.target, f.code)).collect();
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::Api,
                "all_providers_failed",
                format!("No provider could answer ({}).", summary.join(", ")),
            )
        }
    };
    if error.retry_after_s.is_none() {
        error.retry_after_s = retry_after_ms.map(|ms| ms.div_ceil(1000));
    }
    error.failures = listed;
    error
}

/// A 400 naming the first field no target could express.
pub(super) fn unsupported(reasons: &[crate::error::Unsupported]) -> ApiError {
    let first = reasons.first().expect("an unsupported outcome has at least one reason");
    let detail: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    ApiError::bad_request(
        "unsupported_parameter",
        format!("No provider for this model can serve the request: {}.", detail.join("; ")),
    )
    .with_param(first.field.clone())
}
