//! Calling providers on a double miss: the route's targets in order, each admitted by its
//! breaker and cool-down, retried with jittered backoff, all within one deadline. A 429 moves on
//! at once and cools the target down for the advertised time; the client's own bad request ends
//! failover at once. Target health lives in isolate memory and is shared through Redis after the
//! response, best effort: a Redis outage never stops routing.

use bytes::Bytes;
use serde_json::json;

use http::{HeaderMap, StatusCode};

use super::{reply, Exchange, MAX_ERROR_BODY, WRITE_TIMEOUT_MS};
use crate::api::chat::ChatRequest;
use crate::error::{ApiError, ErrorType};
use crate::error::{Unsupported, UpstreamError};
use crate::ports::{with_timeout, Body, CollectError, Host};
use crate::providers::{self, Answer};
use crate::routing::backoff::Next;
use crate::routing::health::{Shared, Skip};
use crate::routing::select;
use crate::routing::table::Target;
use crate::stores::redis::Redis;

/// How often an isolate reads the health other isolates shared.
const HEALTH_SYNC_MS: u64 = 5_000;

/// One target's failure, as listed to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub target: String,
    pub code: &'static str,
}

pub enum Outcome<T> {
    Answered {
        value: T,
        target: Target,
        attempts: u32,
        fallback: bool,
    },
    /// The provider judged the client's request invalid: no other target is tried.
    ClientError {
        error: UpstreamError,
        attempts: u32,
    },
    /// Every target failed or was skipped, in order.
    AllFailed {
        failures: Vec<Failure>,
        last: Option<UpstreamError>,
        attempts: u32,
        retry_after_ms: Option<u64>,
    },
    /// No target can express the request.
    Unsupported(Vec<Unsupported>),
}

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
        let health = host.health();
        let deadline = host.now_ms().saturating_add(config.upstream.deadline_ms);
        let order = select::order(targets, || host.random_u64());
        let mut failures: Vec<Failure> = Vec::new();
        let mut unsupported = Vec::new();
        let mut last = None;
        let mut attempts = 0u32;
        'targets: for target in order {
            let outgoing = match providers::build_request(target, request) {
                Ok(r) => r,
                Err(u) => {
                    failures.push(Failure { target: target.id.clone(), code: "unsupported_request" });
                    unsupported.push(u);
                    continue;
                }
            };
            // The deadline first: admitting may claim a half-open probe, which must then be used.
            if host.now_ms() >= deadline {
                failures.push(Failure { target: target.id.clone(), code: "deadline_exceeded" });
                break;
            }
            if let Err(skip) = health.admit(&target.id, host.now_ms(), &config.breaker) {
                let code = match skip {
                    Skip::CircuitOpen => "circuit_open",
                    Skip::CoolingDown => "cooling_down",
                };
                failures.push(Failure { target: target.id.clone(), code });
                continue;
            }
            let mut retry = 0u32;
            loop {
                let now = host.now_ms();
                if now >= deadline {
                    failures.push(Failure { target: target.id.clone(), code: "deadline_exceeded" });
                    break 'targets;
                }
                attempts += 1;
                let budget = target.timeout_ms.unwrap_or(config.upstream.timeout_ms).min(deadline - now);
                let result = attempt(target, outgoing.clone(), budget).await;
                let now = host.now_ms();
                let error = match result {
                    Ok(value) => {
                        health.record(&target.id, now, true, &config.breaker);
                        let fallback = !failures.is_empty();
                        return Outcome::Answered { value, target: target.clone(), attempts, fallback };
                    }
                    Err(error) if !error.retryable() => {
                        // The target worked; the request was at fault.
                        health.record(&target.id, now, true, &config.breaker);
                        return Outcome::ClientError { error, attempts };
                    }
                    Err(error) => error,
                };
                self.log_attempt(target, &error, retry);
                if health.record(&target.id, now, false, &config.breaker) {
                    self.log("warn", "breaker_opened", json!({"target": target.id}));
                    self.share_health(&target.id, false);
                }
                let code = error.code();
                let retry_after = match &error {
                    UpstreamError::RateLimited { retry_after_ms } => {
                        let cooldown = retry_after_ms.unwrap_or(config.retry.default_cooldown_ms);
                        health.cool_down(&target.id, now.saturating_add(cooldown));
                        self.share_health(&target.id, false);
                        failures.push(Failure { target: target.id.clone(), code });
                        last = Some(error);
                        continue 'targets;
                    }
                    UpstreamError::Server { retry_after_ms, .. } => *retry_after_ms,
                    _ => None,
                };
                last = Some(error);
                match config.retry.next(retry, retry_after, host.random_u64()) {
                    Next::RetryAfter { ms } if now.saturating_add(ms) < deadline => {
                        host.sleep_ms(ms).await;
                        retry += 1;
                        if health.admit(&target.id, host.now_ms(), &config.breaker).is_err() {
                            failures.push(Failure { target: target.id.clone(), code });
                            continue 'targets;
                        }
                    }
                    _ => {
                        failures.push(Failure { target: target.id.clone(), code });
                        continue 'targets;
                    }
                }
            }
        }
        if !unsupported.is_empty() && unsupported.len() == failures.len() {
            return Outcome::Unsupported(unsupported);
        }
        let now = host.now_ms();
        // Only when every target is resting (rate limited, cooling down, breaker open) is there a
        // time to come back: when the first of them is back.
        let resting = |code: &str| matches!(code, "cooling_down" | "circuit_open" | "upstream_rate_limited");
        if !failures.iter().all(|f| resting(f.code)) {
            return Outcome::AllFailed { failures, last, attempts, retry_after_ms: None };
        }
        let retry_after_ms = targets
            .iter()
            .map(|t| health.shared(&t.id, false))
            .map(|s| s.cooldown_until_ms.max(s.open_until_ms).saturating_sub(now))
            .filter(|ms| *ms > 0)
            .min();
        Outcome::AllFailed { failures, last, attempts, retry_after_ms }
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
