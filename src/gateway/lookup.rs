//! The tier lookup of one request: tier 1 (edge KV), then tier 2 (Redis) when tier 1 has no fresh
//! hit. Records each tier's outcome for `Cache-Status`, keeps a stale entry for stale-if-error,
//! deletes an expired one where the store has no TTL, and copies a tier-2 hit to tier 1 after
//! the response.

use serde_json::json;

use super::{Exchange, WRITE_TIMEOUT_MS};
use crate::cache::entry::{Entry, Freshness};
use crate::cache::key::CacheKey;
use crate::cache::policy::Policy;
use crate::cache::status::{CacheReport, Lookup};
use crate::error::{StoreError, Tier};
use crate::ports::Host;
use crate::stores::{kv, redis::Redis};

/// What the tiers had for this request.
#[derive(Default)]
pub(super) struct Found {
    /// A fresh entry that answers now, and its tier.
    pub hit: Option<(Tier, Entry)>,
    /// The newest stale entry of either tier, for when no provider can answer.
    pub stale: Option<(Tier, Entry)>,
}

/// One tier's read: an entry, nothing, or a failure (a miss for the client).
type Read = Result<Option<Entry>, StoreError>;

impl<H: Host> Exchange<'_, H> {
    /// Looks `key` up in the tiers; records each tier's outcome in `report` and its time in
    /// `Server-Timing`. A tier-2 hit is copied to tier 1 after the response.
    pub(super) async fn look_up(&mut self, policy: &Policy, key: &CacheKey, report: &mut CacheReport) -> Found {
        let mut found = Found::default();
        let started = self.host.now_ms();
        let read = kv::get(self.host, key, self.config.kv_timeout_ms).await;
        self.timing.kv_ms = Some(self.host.now_ms().saturating_sub(started));
        if self.judge(Tier::EdgeKv, read, policy, key, report, &mut found) {
            return found;
        }
        let Some(upstash) = self.config.upstash.as_ref() else { return found };
        let started = self.host.now_ms();
        let read = Redis::new(upstash).get_entry(self.host, key, self.config.max_entry_bytes).await;
        self.timing.redis_ms = Some(self.host.now_ms().saturating_sub(started));
        if self.judge(Tier::Redis, read, policy, key, report, &mut found) {
            self.backfill(key, &found, policy, report);
        }
        found
    }

    /// Records what one tier's read found; true on a fresh hit (then in `found.hit`).
    fn judge(
        &self,
        tier: Tier,
        read: Read,
        policy: &Policy,
        key: &CacheKey,
        report: &mut CacheReport,
        found: &mut Found,
    ) -> bool {
        let now = self.host.now_ms();
        let status = report.tier_mut(tier);
        let entry = match read {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                status.lookup = Lookup::Miss;
                return false;
            }
            Err(e) => {
                status.lookup = Lookup::Failed { detail: e.kind.word() };
                self.log("warn", "store_error", json!({"tier": tier.as_str(), "op": e.op, "kind": e.kind.word(), "detail": e.kind.to_string(), "retryable": e.kind.retryable()}));
                return false;
            }
        };
        match entry.freshness(now) {
            Freshness::Fresh { ttl_s } if policy.accepts_age(entry.age_s(now)) => {
                status.lookup = Lookup::Hit { ttl_s };
                found.hit = Some((tier, entry));
                true
            }
            Freshness::Fresh { .. } => {
                // Fresh, but older than the client's max-age: the client refuses it outright.
                status.lookup = Lookup::Stale;
                false
            }
            Freshness::Stale { .. } => {
                status.lookup = Lookup::Stale;
                // A client that set max-age accepts nothing older, not even on error.
                let keep = policy.max_age_s.is_none()
                    && found.stale.as_ref().is_none_or(|(_, kept)| kept.created_ms < entry.created_ms);
                if keep {
                    found.stale = Some((tier, entry));
                }
                false
            }
            Freshness::Expired => {
                status.lookup = Lookup::Miss;
                if tier == Tier::EdgeKv && self.host.kv_limits().min_ttl_seconds.is_none() {
                    // The store has no TTL of its own (Spin): delete what expired, after the response.
                    let (host, key) = (self.host.clone(), key.clone());
                    self.host.spawn_background(Box::pin(async move {
                        let _ = kv::delete(&host, &key, WRITE_TIMEOUT_MS).await;
                    }));
                }
                false
            }
        }
    }

    /// Tier 1 missed a tier-2 hit: copy it there, after the response, unless it cannot fit (its
    /// first write was already refused and counted; every hit would retry).
    fn backfill(&self, key: &CacheKey, found: &Found, policy: &Policy, report: &mut CacheReport) {
        let Some((_, entry)) = &found.hit else { return };
        let fits = entry.body.len() + 512 <= self.host.kv_limits().max_value_bytes;
        if policy.write && fits {
            report.kv.stored = true;
            self.write_back(key.clone(), entry.clone(), true, false);
        }
    }
}
