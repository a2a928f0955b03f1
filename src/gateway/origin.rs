//! Calling providers on a double miss: performs what the failover machine
//! (`routing::failover`) decides (build, send, sleep), logs each failure and shares what the
//! machine changed in target health. Target health lives in isolate memory and is shared through
//! Redis after the response, best effort: a Redis outage never stops routing.
//! Must not: decide on its own which target to try, when to retry or what the client is told.

use bytes::Bytes;
use serde_json::json;

use http::{HeaderMap, StatusCode};

use super::{reply, Exchange, MAX_ERROR_BODY, WRITE_TIMEOUT_MS};
use crate::api::chat::ChatRequest;
use crate::error::{ApiError, ErrorType, UpstreamError};
use crate::ports::{with_timeout, Body, CollectError, Host};
use crate::providers::{self, Answer};
use crate::routing::failover::{Action, Failover, Settings};
pub(super) use crate::routing::failover::{Failure, Outcome};
use crate::routing::health::Shared;
use crate::routing::select;
use crate::routing::table::Target;
use crate::stores::redis::Redis;

/// How often an isolate reads the health other isolates shared.
const HEALTH_SYNC_MS: u64 = 5_000;

impl<H: Host> Exchange<'_, H> {
    /// A complete answer from the first target that gives one.
    pub(super) async fn call_targets(&self, request: &ChatRequest, targets: &[Target]) -> Outcome<Answer> {
        let host = self.host;
        let upstream = &self.config.upstream;
        self.failover(request, targets, async |target: &Target, outgoing, budget_ms| {
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
                providers::parse_success(target, body, &request.model, host.now_ms())
            } else {
                Err(classify(target, status, &parts.headers, &body))
            }
        })
        .await
    }

    /// The response head and streaming body of the first target that starts answering.
    /// Failover stops once a stream has started: its bytes may already be with the client.
    pub(super) async fn open_stream(
        &self,
        request: &ChatRequest,
        targets: &[Target],
    ) -> Outcome<(http::response::Parts, Body)> {
        let host = self.host;
        self.failover(request, targets, async |target: &Target, outgoing, budget_ms| {
            let first_byte = target.first_byte_timeout_ms.unwrap_or(budget_ms).min(budget_ms);
            let response = match with_timeout(host, first_byte, host.fetch(outgoing)).await {
                None => return Err(UpstreamError::Timeout { ms: first_byte }),
                Some(Err(e)) => return Err(UpstreamError::Connect(e.to_string())),
                Some(Ok(r)) => r,
            };
            let status = response.status();
            let (parts, body) = response.into_parts();
            if status.is_success() {
                return Ok((parts, body));
            }
            let body = with_timeout(host, first_byte, body.collect(MAX_ERROR_BODY))
                .await
                .and_then(Result::ok)
                .unwrap_or_default();
            Err(classify(target, status, &parts.headers, &body))
        })
        .await
    }

    async fn failover<T>(
        &self,
        request: &ChatRequest,
        targets: &[Target],
        attempt: impl AsyncFnMut(&Target, http::Request<Bytes>, u64) -> Result<T, UpstreamError>,
    ) -> Outcome<T> {
        if self.host.lasts_between_requests() {
            self.sync_health(targets);
            return self.try_targets(request, targets, attempt).await;
        }
        // Memory that starts empty knows nothing: read what earlier requests learned first (a
        // Redis round trip on the way to a provider call, bounded by its timeout), and leave
        // what this request learned for the next.
        self.load_health(targets).await;
        let outcome = self.try_targets(request, targets, attempt).await;
        for target in targets {
            self.share_health(&target.id, true);
        }
        outcome
    }

    async fn try_targets<T>(
        &self,
        request: &ChatRequest,
        targets: &[Target],
        mut attempt: impl AsyncFnMut(&Target, http::Request<Bytes>, u64) -> Result<T, UpstreamError>,
    ) -> Outcome<T> {
        let host = self.host;
        let config = self.config;
        let settings = Settings {
            retry: config.retry,
            breaker: config.breaker,
            timeout_ms: config.upstream.timeout_ms,
            deadline_ms: host.now_ms().saturating_add(config.upstream.deadline_ms),
        };
        let order = select::order(targets, || host.random_u64());
        let mut machine = Failover::new(order, host.health(), settings);
        // The request built for the target in hand: every `Send` follows its target's `Build`.
        let mut outgoing = http::Request::default();
        let mut action = machine.start(host.now_ms());
        loop {
            action = match action {
                Action::Build { target } => {
                    let built = providers::build_request(machine.target(target), request).map(|r| outgoing = r);
                    machine.on_built(host.now_ms(), built)
                }
                Action::Send { target, retry, budget_ms } => {
                    let target = machine.target(target);
                    let result = attempt(target, outgoing.clone(), budget_ms).await;
                    let error = result.as_ref().err().cloned();
                    let next = machine.on_outcome(host.now_ms(), result, host.random_u64());
                    let changed = machine.changed();
                    if let Some(error) = error.filter(|_| changed.failed) {
                        self.log_attempt(target, &error, retry);
                    }
                    if changed.breaker_opened {
                        self.log("warn", "breaker_opened", json!({"target": target.id}));
                        self.share_health(&target.id, false);
                    }
                    if changed.cooled_down {
                        self.share_health(&target.id, false);
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

    /// Tells other isolates (through Redis, after the response) what this one knows of `id`;
    /// `with_breaker` shares the breaker's window of outcomes too.
    fn share_health(&self, id: &str, with_breaker: bool) {
        let Some(upstash) = self.config.upstash.clone() else { return };
        let shared = self.host.health().shared(id, with_breaker);
        // The record lives as long as what it reports, counted from now, not from when the
        // background task happens to run; a breaker window lives as long as the window.
        let mut ttl = shared.open_until_ms.max(shared.cooldown_until_ms).saturating_sub(self.host.now_ms());
        if shared.breaker.is_some() {
            ttl = ttl.max(self.config.breaker.window_ms);
        }
        if ttl == 0 {
            return;
        }
        let host = self.host.clone();
        let id = id.to_owned();
        self.host.spawn_background(Box::pin(async move {
            let Ok(value) = serde_json::to_string(&shared) else { return };
            let _ = Redis::new(&upstash).put_health(&host, &id, &value, ttl, WRITE_TIMEOUT_MS).await;
        }));
    }

    /// Every few seconds, reads what other isolates shared about these targets (after the
    /// response: the request in hand uses what this isolate knows now).
    fn sync_health(&self, targets: &[Target]) {
        let Some(upstash) = self.config.upstash.clone() else { return };
        let health = self.host.health();
        let now = self.host.now_ms();
        if now.saturating_sub(health.last_sync_ms.get()) < HEALTH_SYNC_MS {
            return;
        }
        health.last_sync_ms.set(now);
        let ids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
        let host = self.host.clone();
        self.host.spawn_background(Box::pin(async move { read_health(&host, &upstash, &ids).await }));
    }

    /// Reads the shared records now, for memory that starts empty.
    async fn load_health(&self, targets: &[Target]) {
        let Some(upstash) = &self.config.upstash else { return };
        let ids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
        read_health(self.host, upstash, &ids).await;
    }
}

/// Merges the shared records of `ids` into this instance's memory; a Redis failure leaves it as
/// it was (routing goes on with what it knows).
async fn read_health<H: Host>(host: &H, upstash: &crate::config::UpstashConfig, ids: &[String]) {
    let Ok(values) = Redis::new(upstash).health(host, ids).await else {
        return;
    };
    let now = host.now_ms();
    for (id, value) in ids.iter().zip(values) {
        if let Some(shared) = value.as_deref().and_then(|s| serde_json::from_str::<Shared>(s).ok()) {
            host.health().merge(id, shared, now);
        }
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

pub(super) fn speaks_openai(target: &Target) -> bool {
    matches!(
        target.kind,
        crate::routing::table::ProviderKind::OpenAi | crate::routing::table::ProviderKind::OpenAiCompatible
    )
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
