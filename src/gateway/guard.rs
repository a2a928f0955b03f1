//! A tenant's guard rails on the way of one request (`TENANTS`, `config::tenants`):
//! - `shape`, before anything is looked up: the model allow-list is checked by the caller;
//!   here the estimated input tokens (`max_input_tokens`, 400) and `max_tokens` over the cap
//!   (clamped and told in `x-max-tokens-clamped`, or refused with a 400);
//! - `check`, where the cost is: on the way to a provider call (after the cache lookup and after
//!   single flight: a hit and a follower cost no provider call, so they are not charged), or,
//!   when the policy counts cache hits, before the lookup (requests only; the token verdict is
//!   then judged on the miss path from the same reply, with no second round trip). One Redis
//!   round trip (`stores::redis::check_limits`), none for a tenant this isolate already knows to
//!   be refused until a time (`limits::memory`);
//! - budgets (`budget`): the same round trip reads the tenant's recorded spend today and this
//!   month; past a soft threshold the answer warns, past a hard one the request is refused or
//!   degraded to a cheaper model (the gateway then asks again, from the lookup on, as that
//!   model); a tenant past a hard budget is remembered until the period ends;
//! - `meter`: after the answer, in the background, the provider's reported usage is added to
//!   the tenant's token counter and its cost to the spend counters.
//!
//! - a browser caller's own limits (a token's or a publishable key's, `auth::EndUser`): checked
//!   after the tenant's, by the same script, as a subject of their own.
//!
//! Fail open: Redis down or slow (bounded by `REDIS_TIMEOUT_MS`) lets the request through,
//! logged (`limit_check_failed`) and counted; a `fail_closed` tenant gets a 503
//! `rate_limit_unavailable` instead.
//! Must not: read a clock or decide the window arithmetic (`limits` does), or build Redis keys.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::budget::BudgetNote;
use super::meter::Meter;
use super::Exchange;
use crate::api::chat::ChatRequest;
use crate::auth::EndUser;
use crate::config::{MaxTokensPolicy, TenantPolicy};
use crate::error::{ApiError, ErrorType};
use crate::limits::memory::Blocked;
use crate::limits::{duration, estimate_input_tokens, Counts, Kind, Position, Standing};
use crate::ports::{with_timeout, Host};
use crate::routing::table::Target;
use crate::stores::redis::{LimitCheck, LimitReply, Redis};

/// The fields that ask for at most so many output tokens.
const MAX_TOKENS_FIELDS: [&str; 2] = ["max_tokens", "max_completion_tokens"];

/// One request's guard rails, and what they said so far.
pub(super) struct Guard<'c> {
    pub tenant: &'c str,
    pub policy: &'c TenantPolicy,
    /// The cap `max_tokens` was lowered to, if it was.
    pub clamped: Option<u64>,
    /// Estimated tokens of the call: input plus the output asked for.
    estimate: u64,
    /// What the last check said of each limit, for the headers.
    standings: Vec<Standing>,
    /// The reply of a check made before the lookup (`count_cache_hits`), with its time.
    early: Option<(Position, LimitReply)>,
    /// What the budgets said.
    pub budget: BudgetNote,
    /// A browser caller's own limits (`auth::EndUser`), checked after the tenant's, the same way.
    user: Option<Box<Guard<'c>>>,
}

/// Where a check happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Before the cache lookup, for a policy that counts cache hits: requests only.
    BeforeLookup,
    /// On the way to a provider call.
    BeforeCall,
}

/// Applies the checks that need no store to `request`; the guard for the rest.
pub(super) fn shape<'c>(
    tenant: &'c str,
    policy: &'c TenantPolicy,
    end_user: Option<&'c EndUser>,
    request: &mut ChatRequest,
) -> Result<Guard<'c>, ApiError> {
    let input = estimate_input_tokens(&request.messages);
    if let Some(limit) = policy.max_input_tokens.filter(|limit| input > *limit) {
        return Err(ApiError::bad_request(
            "input_tokens_exceeded",
            format!("The messages are estimated at {input} tokens, over this key's limit of {limit} input tokens (max_input_tokens)."),
        )
        .with_param("messages"));
    }
    let mut clamped = None;
    if let Some(cap) = policy.max_tokens_cap {
        for field in MAX_TOKENS_FIELDS {
            let Some(asked) = request.params.get(field).and_then(Value::as_u64).filter(|n| *n > cap) else { continue };
            match policy.max_tokens_policy {
                MaxTokensPolicy::Refuse => {
                    return Err(ApiError::bad_request(
                        "max_tokens_exceeded",
                        format!("'{field}' asks for {asked} tokens, over this key's cap of {cap} (max_tokens_cap)."),
                    )
                    .with_param(field))
                }
                MaxTokensPolicy::Clamp => {
                    request.params.insert(field.to_owned(), Value::from(cap));
                    clamped = Some(cap);
                }
            }
        }
    }
    let output = MAX_TOKENS_FIELDS.iter().filter_map(|f| request.params.get(*f).and_then(Value::as_u64)).min();
    let estimate = input.saturating_add(output.unwrap_or(0));
    let guard = |tenant, policy, user| Guard {
        tenant,
        policy,
        clamped,
        estimate,
        standings: Vec::new(),
        early: None,
        budget: BudgetNote::default(),
        user,
    };
    let user = end_user.map(|u| Box::new(guard(u.subject.as_str(), &u.policy, None)));
    Ok(guard(tenant, policy, user))
}

impl Guard<'_> {
    /// Estimated tokens of the call: input plus the output asked for.
    pub fn estimate(&self) -> u64 {
        self.estimate
    }

    /// Whether a check happens at `stage`.
    pub fn checks_at(&self, stage: Stage) -> bool {
        let p = self.policy;
        match stage {
            Stage::BeforeLookup => p.count_cache_hits && p.requests_per_minute.is_some() && self.early.is_none(),
            Stage::BeforeCall => p.has_rate_limits() || self.checks_budget(),
        }
    }

    /// Adds the guard's headers to a response: the rate-limit headers of the last check, and
    /// `x-max-tokens-clamped`.
    pub fn decorate(&self, headers: &mut HeaderMap) {
        for standing in &self.standings {
            for (name, value) in standing.headers() {
                if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                    headers.insert(name, value);
                }
            }
        }
        if let Some(cap) = self.clamped {
            headers.insert(HeaderName::from_static("x-max-tokens-clamped"), HeaderValue::from(cap));
        }
        self.budget.decorate(headers);
        if let Some(user) = &self.user {
            user.decorate(headers);
        }
    }
}

impl<H: Host> Exchange<'_, H> {
    /// The limits check of `stage` (see the module documentation): `Err` is the client's answer.
    pub(super) async fn check_limits(&self, guard: &mut Guard<'_>, stage: Stage) -> Result<(), ApiError> {
        self.check_one(guard, stage).await?;
        match guard.user.as_deref_mut() {
            Some(user) => self.check_one(user, stage).await,
            None => Ok(()),
        }
    }

    /// The check of one set of limits (a tenant's, or an end user's).
    async fn check_one(&self, guard: &mut Guard<'_>, stage: Stage) -> Result<(), ApiError> {
        if !guard.checks_at(stage) {
            return Ok(());
        }
        let p = guard.policy;
        let now = self.host.now_ms();
        let at = Position::at(now);
        let judge_tokens = stage == Stage::BeforeCall && p.tokens_per_minute.is_some();
        let count_requests = p.requests_per_minute.is_some() && (stage == Stage::BeforeLookup || guard.early.is_none());
        let mut kinds = Vec::new();
        if count_requests {
            kinds.push(Kind::Requests);
        }
        if judge_tokens {
            kinds.push(Kind::Tokens);
        }
        // A refusal this isolate remembers costs no Redis call.
        if stage == Stage::BeforeCall {
            self.budget_from_memory(guard, now)?;
        }
        if let Some(blocked) = self.host.limits().blocked(guard.tenant, now, &kinds) {
            let mut standing = blocked.standing;
            standing.reset_ms = blocked.until_ms - now;
            guard.standings = vec![standing];
            return Err(refusal(guard.tenant, &standing, blocked.until_ms - now, guard.estimate, true));
        }
        let reply = match (count_requests, guard.early) {
            (false, Some((_, early))) => early,
            _ => {
                let check = LimitCheck {
                    at,
                    requests_per_minute: if count_requests { p.requests_per_minute } else { None },
                    tokens_per_minute: p.tokens_per_minute,
                    token_estimate: guard.estimate,
                    tokens_gate: judge_tokens,
                    budget: guard.budget_check(now, stage),
                };
                match self.limit_round_trip(guard.tenant, &check).await {
                    Some(reply) => reply,
                    None => return self.unchecked(guard),
                }
            }
        };
        if stage == Stage::BeforeLookup {
            guard.early = Some((at, reply));
        }
        self.judge_limits(guard, at, reply, count_requests, judge_tokens)?;
        if stage == Stage::BeforeCall && guard.checks_budget() {
            // Degraded, the request is asked again; its rate limits are then judged from this
            // reply (counted once), its budget not again.
            self.judge_budget(guard, now, &reply).inspect_err(|_| guard.early = Some((at, reply)))?;
        }
        Ok(())
    }

    /// Turns Redis's numbers into the headers and a verdict, remembering a refusal.
    fn judge_limits(
        &self,
        guard: &mut Guard<'_>,
        at: Position,
        reply: LimitReply,
        requests: bool,
        tokens: bool,
    ) -> Result<(), ApiError> {
        let p = guard.policy;
        let mut refused: Option<(Standing, Option<u64>)> = None;
        guard.standings.clear();
        if let (true, Some(limit)) = (requests || guard.early.is_some(), p.requests_per_minute) {
            let used = reply.requests.used(at);
            let mut standing = standing(Kind::Requests, limit, used, reply.requests, at);
            if requests && !reply.admitted && used.saturating_add(1) > limit {
                standing.remaining = 0;
                refused = Some((standing, reply.requests.wait_ms(at, limit, 1)));
            }
            guard.standings.push(standing);
        }
        if let (true, Some(limit)) = (tokens, p.tokens_per_minute) {
            let used = reply.tokens.used(at);
            let mut standing = standing(Kind::Tokens, limit, used, reply.tokens, at);
            if refused.is_none() && used.saturating_add(guard.estimate) > limit {
                standing.remaining = limit.saturating_sub(used);
                refused = Some((standing, reply.tokens.wait_ms(at, limit, guard.estimate)));
            }
            guard.standings.push(standing);
        }
        let Some((standing, wait)) = refused else { return Ok(()) };
        let now = self.host.now_ms();
        let wait_ms = match wait {
            Some(ms) => {
                // Refused again from memory until it would fit.
                self.host.limits().block(guard.tenant, Blocked { until_ms: now + ms, standing });
                ms
            }
            // The request alone is over the limit: it never fits, whatever the wait.
            None => crate::limits::WINDOW_MS,
        };
        self.log("info", "rate_limited", json!({"tenant": guard.tenant, "type": standing.kind.word(), "limit": standing.limit, "retry_after_ms": wait_ms}));
        Err(refusal(guard.tenant, &standing, wait_ms, guard.estimate, wait.is_some()))
    }

    /// One script round trip, bounded by `REDIS_TIMEOUT_MS`; `None` when it failed (logged).
    async fn limit_round_trip(&self, tenant: &str, check: &LimitCheck) -> Option<LimitReply> {
        let upstash = self.config.upstash.as_ref()?;
        let redis = Redis::new(upstash);
        let result = with_timeout(self.host, upstash.timeout_ms, redis.check_limits(self.host, tenant, check)).await;
        let error = match result {
            Some(Ok(reply)) => return Some(reply),
            Some(Err(e)) => e.to_string(),
            None => format!("no answer within {} ms", upstash.timeout_ms),
        };
        self.log("warn", "limit_check_failed", json!({"tenant": tenant, "detail": error}));
        None
    }

    /// What records the usage of this request's call of `request`'s model to `targets`, if
    /// anything of it is kept.
    pub(super) fn meter_for(&self, guard: &Guard<'_>, request: &ChatRequest, targets: &[Target]) -> Option<Meter<H>> {
        let counted = |g: &Guard<'_>| g.policy.tokens_per_minute.is_some().then(|| g.tenant.to_owned());
        let mut subjects: Vec<String> = counted(guard).into_iter().collect();
        subjects.extend(guard.user.as_deref().and_then(counted));
        self.meter(guard.tenant, subjects, guard.policy.budget.is_set(), &request.model, targets)
    }

    /// The limits could not be checked: through (counted) or, for a fail-closed tenant, a 503.
    fn unchecked(&self, guard: &Guard<'_>) -> Result<(), ApiError> {
        let memory = self.host.limits();
        memory.failed_open.set(memory.failed_open.get() + 1);
        if !guard.policy.fail_closed {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Api,
            "rate_limit_unavailable",
            "The rate limits of this key cannot be checked right now, and it is set to refuse then; try again shortly.",
        )
        .with_retry_after(Some(1)))
    }
}

fn standing(kind: Kind, limit: u64, used: u64, counts: Counts, at: Position) -> Standing {
    Standing { kind, limit, remaining: limit.saturating_sub(used), reset_ms: counts.reset_ms(at) }
}

/// The 429 of a limit, as OpenAI words it, with `Retry-After`.
fn refusal(tenant: &str, standing: &Standing, wait_ms: u64, estimate: u64, fits_later: bool) -> ApiError {
    let (kind, per) = match standing.kind {
        Kind::Requests => (ErrorType::Requests, "requests per min (RPM)"),
        Kind::Tokens => (ErrorType::Tokens, "tokens per min (TPM)"),
    };
    let message = if fits_later {
        format!(
            "Rate limit reached for tenant '{tenant}' on {per}: Limit {}, Remaining {}. Please try again in {}.",
            standing.limit,
            standing.remaining,
            duration(wait_ms)
        )
    } else {
        format!(
            "Request too large for tenant '{tenant}' on {per}: Limit {}, Requested about {estimate}. Send fewer tokens or ask for fewer with max_tokens.",
            standing.limit
        )
    };
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, kind, "rate_limit_exceeded", message)
        .with_retry_after(Some(wait_ms.div_ceil(1000).max(1)))
}
