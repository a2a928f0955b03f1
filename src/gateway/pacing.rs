//! Pacing on the way of one request (`routing::pacing`): before the provider call, the targets
//! that declare their provider's limits are asked, in route order, for room under the share this
//! request's priority may use (one script round trip each, the tenants' window script over the
//! target's own counters). The first with room takes the call, with the targets after it that
//! declare no limits as its fallbacks (a limited target that was not asked is never called, so
//! none sees more than its declared limit); a target without limits always has room. When none
//! has room, a `high` request waits (bounded) for the soonest, and everything else gets a 429
//! `provider_capacity_exceeded` with `Retry-After`.
//!
//! Fail open: a check that fails lets the target take the call (logged as `pacing_check_failed`).
//! Must not: read a clock except through the host, or build Redis keys.

use http::StatusCode;
use serde_json::json;

use super::Exchange;
use crate::error::{ApiError, ErrorType};
use crate::limits::{Position, WINDOW_MS};
use crate::ports::{with_timeout, Host};
use crate::routing::pacing::{pacing_subject, Priority};
use crate::routing::table::Target;
use crate::stores::redis::{LimitCheck, Redis};

/// What a target said to a request.
enum Room {
    Yes,
    /// Full for this request's share until this many ms from now.
    No(u64),
}

impl<H: Host> Exchange<'_, H> {
    /// The targets this request may call, in order, after pacing (see the module documentation).
    pub(super) async fn pace(
        &self,
        targets: Vec<Target>,
        priority: Priority,
        estimate: u64,
    ) -> Result<Vec<Target>, ApiError> {
        if self.config.upstash.is_none() || !targets.iter().any(|t| t.limits.is_set()) {
            return Ok(targets);
        }
        let mut waited = 0;
        loop {
            let mut soonest = u64::MAX;
            for (i, target) in targets.iter().enumerate() {
                let room = if target.limits.is_set() { self.room(target, priority, estimate).await } else { Room::Yes };
                match room {
                    Room::Yes => {
                        let fallbacks = targets[i + 1..].iter().filter(|t| !t.limits.is_set()).cloned();
                        return Ok(std::iter::once(target.clone()).chain(fallbacks).collect());
                    }
                    Room::No(wait) => {
                        self.log("info", "pacing_full", json!({"target": target.id, "retry_after_ms": wait}));
                        soonest = soonest.min(wait);
                    }
                }
            }
            if self.config.pacing.waits(priority, waited, soonest) {
                self.host.sleep_ms(soonest).await;
                waited += soonest;
                continue;
            }
            let message = "Every provider of this model is at the share of its rate limits this request may use; try again shortly.";
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorType::RateLimit,
                "provider_capacity_exceeded",
                message,
            )
            .with_retry_after(Some(soonest.min(WINDOW_MS).div_ceil(1000).max(1))));
        }
    }

    /// Asks `target`'s counters for room for one request of `estimate` tokens (counted if so).
    async fn room(&self, target: &Target, priority: Priority, estimate: u64) -> Room {
        let Some(upstash) = self.config.upstash.as_ref() else { return Room::Yes };
        let (rpm, tpm) = self.config.pacing.allowance(target.limits, priority);
        let at = Position::at(self.host.now_ms());
        let check = LimitCheck {
            at,
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            token_estimate: estimate,
            tokens_gate: true,
            budget: None,
        };
        let redis = Redis::new(upstash);
        let subject = pacing_subject(&target.id);
        let reply =
            match with_timeout(self.host, upstash.timeout_ms, redis.check_limits(self.host, &subject, &check)).await {
                Some(Ok(reply)) => reply,
                other => {
                    let detail = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => format!("no answer within {} ms", upstash.timeout_ms),
                    };
                    self.log("warn", "pacing_check_failed", json!({"target": target.id, "detail": detail}));
                    return Room::Yes;
                }
            };
        if reply.admitted {
            return Room::Yes;
        }
        let waits = [
            rpm.map(|limit| reply.requests.wait_ms(at, limit, 1)),
            tpm.map(|limit| reply.tokens.wait_ms(at, limit, estimate)),
        ];
        Room::No(waits.into_iter().flatten().map(|w| w.unwrap_or(WINDOW_MS)).max().unwrap_or(WINDOW_MS).max(1))
    }
}
