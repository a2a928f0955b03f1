//! The tier lookup of one request: tier 1 (edge KV), then tier 2 (Redis) when tier 1 has no fresh
//! hit. What each tier found is judged by `cache::decide`; this module only performs the verdict
//! (keep a stale entry for stale-if-error, delete an expired one where the store has no TTL),
//! records it for `Cache-Status`, and copies a tier-2 hit to tier 1 after the response.

use super::{Exchange, WRITE_TIMEOUT_MS};
use crate::cache::entry::Entry;
use crate::cache::key::CacheKey;
use crate::cache::policy::Policy;
use crate::cache::status::{CacheReport, Lookup};
use crate::cache::verdict::{self, Verdict};
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

    /// Records what one tier's read found and performs the verdict; true on a fresh hit (then in
    /// `found.hit`).
    fn judge(
        &self,
        tier: Tier,
        read: Read,
        policy: &Policy,
        key: &CacheKey,
        report: &mut CacheReport,
        found: &mut Found,
    ) -> bool {
        let status = report.tier_mut(tier);
        let entry = match read {
            Ok(entry) => entry,
            Err(e) => {
                status.lookup = Lookup::Failed { detail: e.kind.word() };
                super::writes::log_store_error(self.host, self.request_id, &e);
                return false;
            }
        };
        let verdict = crate::cache::decide(entry.as_ref(), policy, self.host.now_ms());
        status.lookup = verdict.lookup();
        match (verdict, entry) {
            (Verdict::Hit { .. }, Some(entry)) => {
                found.hit = Some((tier, entry));
                return true;
            }
            (Verdict::StaleIfError, Some(entry))
                if verdict::prefer_stale(found.stale.as_ref().map(|(_, kept)| kept), &entry) =>
            {
                found.stale = Some((tier, entry));
            }
            (Verdict::Expired, _) if tier == Tier::EdgeKv && self.host.kv_limits().min_ttl_seconds.is_none() => {
                // The store has no TTL of its own (Spin): delete what expired, after the response.
                let (host, key) = (self.host.clone(), key.clone());
                self.host.spawn_background(Box::pin(async move {
                    let _ = kv::delete(&host, &key, WRITE_TIMEOUT_MS).await;
                }));
            }
            _ => {}
        }
        false
    }

    /// Copies a tier-2 hit to tier 1 after the response, when the request allows writes and the
    /// entry fits there (else its first write was already refused and counted; every hit would
    /// retry it).
    fn backfill(&self, key: &CacheKey, found: &Found, policy: &Policy, report: &mut CacheReport) {
        let Some((_, entry)) = &found.hit else { return };
        let fits = self.fits_tier(Tier::EdgeKv, entry.encoded_len(), key).is_ok();
        report.kv.stored = policy.write && fits;
        if report.kv.stored {
            self.write_back(key.clone(), entry.clone(), true, false);
        }
    }
}
