//! The tier lookup of one request: tier 1 (edge KV) first, tier 2 (Redis) hedged. Tier 2 is asked
//! as soon as tier 1 has answered without a fresh hit, or once tier 1 has not answered within
//! `TIER2_HEDGE_MS`; then the first fresh hit answers. What each tier found is judged by
//! `cache::decide`; this module only performs the verdict (keep a stale entry for stale-if-error,
//! delete an expired one where the store has no TTL) and records it for `Cache-Status`.
//!
//! - A tier-1 hit within the hedge delay costs no Redis command.
//! - A tier-2 hit while tier 1 is still out answers at once; tier 1's member says
//!   `fwd=miss; detail=hedged`, and tier 1 is backfilled after the response unless its read,
//!   finished then, shows it had a fresh entry after all.
//! - A tier-1 hit while tier 2 is still out answers at once; tier 2's read is dropped and its
//!   member left out (it took no part in the answer).
//! - A tier-2 miss still waits for tier 1 (up to `KV_TIMEOUT_MS`): a late tier-1 hit costs far
//!   less than a provider call.

use std::future::Future;
use std::pin::{pin, Pin};

use futures_util::future::{select, Either};

use http::Response;

use super::reply::{self, Form};
use super::{Exchange, WRITE_TIMEOUT_MS};
use crate::cache::entry::Entry;
use crate::cache::key::CacheKey;
use crate::cache::policy::{Bypass, Policy};
use crate::cache::status::{CacheReport, Lookup};
use crate::cache::verdict::{self, Verdict};
use crate::error::{StoreError, Tier};
use crate::ports::{with_timeout, Body, Host};
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

/// Tier 1's read, owning what it needs, so that it can finish after the response.
type Tier1Read = Pin<Box<dyn Future<Output = Read>>>;

/// Which tier answered first once both were asked.
enum First {
    Tier1(Read),
    Tier2(Read),
}

impl<H: Host> Exchange<'_, H> {
    /// The tiers' answer to a request that `policy` lets read: a fresh hit served in `form`
    /// (`Err`: the response), or else the stale entry kept for stale-if-error. A request that may
    /// not read is recorded as bypassing every tier.
    pub(super) async fn read_tiers(
        &mut self,
        policy: &Policy,
        key: &CacheKey,
        report: &mut CacheReport,
        form: Form,
    ) -> Result<Option<(Tier, Entry)>, Response<Body>> {
        if !policy.read {
            let bypass = Lookup::Bypassed(policy.bypass.unwrap_or(Bypass::Request));
            report.kv.lookup = bypass;
            if self.config.upstash.is_some() {
                report.redis.lookup = bypass;
            }
            return Ok(None);
        }
        let found = self.look_up(policy, key, report).await;
        if let Some((tier, entry)) = found.hit {
            self.record.served_entry(&entry);
            match reply::hit(tier, entry, report, self.host.now_ms(), form) {
                Ok(response) => return Err(response),
                // Not replayable after all (written by something else): a miss.
                Err(_) => report.tier_mut(tier).lookup = Lookup::Failed { detail: "garbage" },
            }
        }
        Ok(found.stale)
    }

    /// Looks `key` up in the tiers; records each tier's outcome in `report` and its time in
    /// `Server-Timing`. A tier-2 hit is copied to tier 1 after the response.
    pub(super) async fn look_up(&mut self, policy: &Policy, key: &CacheKey, report: &mut CacheReport) -> Found {
        let mut found = Found::default();
        let started = self.host.now_ms();
        let mut tier1 = self.read_tier1(key);
        let Some(upstash) = self.config.upstash.as_ref() else {
            let read = tier1.await;
            self.timing.kv_ms = Some(self.host.now_ms().saturating_sub(started));
            self.judge(Tier::EdgeKv, read, policy, key, report, &mut found);
            return found;
        };
        let early = with_timeout(self.host, self.config.tier2_hedge_ms, tier1.as_mut()).await;
        let tier1_done = early.is_some();
        if let Some(read) = early {
            self.timing.kv_ms = Some(self.host.now_ms().saturating_sub(started));
            if self.judge(Tier::EdgeKv, read, policy, key, report, &mut found) {
                return found;
            }
        }

        let redis = Redis::new(upstash);
        let tier2_started = self.host.now_ms();
        let mut tier2 = pin!(redis.get_entry(self.host, key, self.config.max_entry_bytes));
        let first = if tier1_done {
            First::Tier2(tier2.as_mut().await)
        } else {
            match select(tier1.as_mut(), tier2.as_mut()).await {
                Either::Left((read, _)) => First::Tier1(read),
                Either::Right((read, _)) => First::Tier2(read),
            }
        };
        match first {
            First::Tier1(read) => {
                self.timing.kv_ms = Some(self.host.now_ms().saturating_sub(started));
                if self.judge(Tier::EdgeKv, read, policy, key, report, &mut found) {
                    return found;
                }
                let read = tier2.await;
                self.timing.redis_ms = Some(self.host.now_ms().saturating_sub(tier2_started));
                if self.judge(Tier::Redis, read, policy, key, report, &mut found) {
                    self.backfill(key, &found, policy, report, None);
                }
            }
            First::Tier2(read) => {
                self.timing.redis_ms = Some(self.host.now_ms().saturating_sub(tier2_started));
                if self.judge(Tier::Redis, read, policy, key, report, &mut found) {
                    let pending = (!tier1_done).then_some(tier1);
                    self.backfill(key, &found, policy, report, pending);
                } else if !tier1_done {
                    let read = tier1.await;
                    self.timing.kv_ms = Some(self.host.now_ms().saturating_sub(started));
                    self.judge(Tier::EdgeKv, read, policy, key, report, &mut found);
                }
            }
        }
        found
    }

    /// Tier 1's read of `key`, bounded by `KV_TIMEOUT_MS`.
    fn read_tier1(&self, key: &CacheKey) -> Tier1Read {
        let (host, key, timeout_ms) = (self.host.clone(), key.clone(), self.config.kv_timeout_ms);
        Box::pin(async move { kv::get(&host, &key, timeout_ms).await })
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
    /// retry it). With tier 1's read still `pending`, the copy waits for it and is skipped if
    /// tier 1 had a fresh entry after all.
    fn backfill(
        &self,
        key: &CacheKey,
        found: &Found,
        policy: &Policy,
        report: &mut CacheReport,
        pending: Option<Tier1Read>,
    ) {
        let Some((_, entry)) = &found.hit else { return };
        let fits = self.fits_tier(Tier::EdgeKv, entry.encoded_len(), key).is_ok();
        let copy = policy.write && fits;
        let Some(pending) = pending else {
            report.kv.stored = copy;
            if copy {
                self.writes().write_back(key.clone(), entry.clone(), true, false);
            }
            return;
        };
        report.kv.lookup = Lookup::Hedged;
        if !copy {
            return;
        }
        let writes = self.writes();
        let (host, key, entry) = (self.host.clone(), key.clone(), entry.clone());
        self.host.spawn_background(Box::pin(async move {
            let read = pending.await;
            if let Err(e) = &read {
                super::writes::log_store_error(&host, &writes.request_id, e);
            }
            let had = read.ok().flatten();
            if verdict::needs_backfill(had.as_ref(), host.now_ms()) {
                writes.entry(&key, &entry, true, false).await;
            }
        }));
    }
}
