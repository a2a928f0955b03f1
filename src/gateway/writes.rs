//! Cache writes, all after the response: a new answer to both tiers, a tier-2 hit copied to
//! tier 1. Whether an answer is worth storing is `cache::storable`'s call and what fits where is
//! `cache::fit`'s (on the encoded size); both are asked before the write is promised. The entry is
//! encoded once, and both writes share the encoded bytes.
//!
//! `Writes` owns what a write needs, so the same path serves an answer read whole (decided before
//! the response, which then says `stored` in `Cache-Status`) and a streamed answer (decided when
//! its stream ends cleanly, long after `handle` returned). A request that leads a single flight
//! (`coalesce`) publishes the entry to its followers here, and its lead lasts until the write is
//! done.

use std::rc::Rc;

use bytes::Bytes;
use futures_util::future::join;
use serde_json::json;

use super::coalesce::Leading;
use super::{counters, Exchange, WRITE_TIMEOUT_MS};
use crate::cache::entry::Entry;
use crate::cache::fit::{self, Place, TooLarge};
use crate::cache::key::CacheKey;
use crate::cache::storable::{replayable, NotReplayable};
use crate::cache::verdict;
use crate::coalesce::{Lead, Outcome};
use crate::config::UpstashConfig;
use crate::error::{StoreError, StoreErrorKind, Tier};
use crate::ports::{Clock, Host, Kv, Log, Memory};
use crate::providers::Answer;
use crate::stores::{kv, redis::Redis};

/// What a write after the response needs, owned.
pub(super) struct Writes<H: Host> {
    host: H,
    upstash: Option<UpstashConfig>,
    pub request_id: String,
    max_entry_bytes: usize,
    fresh_ttl_s: u64,
    stale_ttl_s: u64,
    store_truncated: bool,
    /// The single flight this request leads, if any: ends when the last clone is dropped.
    flight: Option<Rc<Leading<H>>>,
}

/// The tiers a new answer is being written to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Stored {
    pub kv: bool,
    pub redis: bool,
}

impl<H: Host> Writes<H> {
    /// Stores a provider's answer, if it is worth replaying, in every tier it fits, after the
    /// response; says which. A skip is logged and counted here, once.
    pub fn keep(&self, key: CacheKey, answer: &Answer, provider: &str) -> Stored {
        let now = self.host.now_ms();
        // The entry shares the answer's bytes; the client is served from them too.
        let entry = Entry::new(now, self.fresh_ttl_s, self.stale_ttl_s, provider, &answer.model, answer.body.clone());
        // Requests of this isolate waiting for the same call get the answer, stored or not: they
        // asked the same question at the same time.
        self.publish(Outcome::Answer(entry.clone()));
        if let Err(reason) = replayable(&answer.body, self.store_truncated) {
            self.skipped(reason, provider);
            return Stored::default();
        }
        self.store(key, entry)
    }

    /// Stores an entry in every tier it fits (`MAX_ENTRY_BYTES` first, then each tier's own
    /// limit), after the response. A size refusal is logged and counted here, once.
    pub fn store(&self, key: CacheKey, entry: Entry) -> Stored {
        let size = entry.encoded_len();
        if let Err(e) = fit::fits(size, Place::Cache { max_entry_bytes: self.max_entry_bytes }) {
            self.too_large(Some(e.size), e.limit);
            return Stored::default();
        }
        let fits = |tier| match fits_tier(&self.host, self.upstash.as_ref(), tier, size, &key) {
            Ok(()) => true,
            Err(TooLarge { size, limit }) => {
                let e = StoreError { tier, op: "put", kind: StoreErrorKind::TooLarge { size, limit } };
                log_store_error(&self.host, &self.request_id, &e);
                self.count(too_large_counter(tier));
                false
            }
        };
        let stored = Stored { kv: fits(Tier::EdgeKv), redis: self.upstash.is_some() && fits(Tier::Redis) };
        if stored.kv || stored.redis {
            self.write_back(key, entry, stored.kv, stored.redis);
        }
        stored
    }

    /// An answer not worth replaying: served, not stored; logged and counted.
    pub fn skipped(&self, reason: NotReplayable, provider: &str) {
        self.log("info", "store_skipped", json!({"reason": reason.word(), "target": provider}));
        self.count(reason.word());
    }

    /// An answer over `MAX_ENTRY_BYTES` (`size` unknown for a stream, whose assembly stopped
    /// there): served, not stored; logged and counted.
    pub fn too_large(&self, size: Option<usize>, limit: usize) {
        self.log("warn", "entry_too_large", json!({"bytes": size, "limit": limit}));
        self.count(counters::ENTRY_TOO_LARGE);
    }

    /// These writes carry the lead of a single flight (see `coalesce`).
    pub fn leading(mut self, flight: Option<Rc<Leading<H>>>) -> Self {
        self.flight = flight;
        self
    }

    /// The isolate's flight this request leads, if any.
    pub fn flight(&self) -> Option<&Lead> {
        self.flight.as_deref().map(|f| &f.local)
    }

    fn publish(&self, outcome: Outcome) {
        if let Some(lead) = self.flight() {
            lead.publish(outcome);
        }
    }

    pub fn host(&self) -> &H {
        &self.host
    }

    pub fn upstash(&self) -> Option<&UpstashConfig> {
        self.upstash.as_ref()
    }

    /// Writes an entry to the chosen tiers after the response has gone out.
    pub fn write_back(&self, key: CacheKey, entry: Entry, to_kv: bool, to_redis: bool) {
        let writes = self.clone();
        self.host.spawn_background(Box::pin(async move { writes.entry(&key, &entry, to_kv, to_redis).await }));
    }

    /// Writes `entry` to the chosen tiers: one encoding, shared by both writes. Failures are
    /// logged; a refusal for size is counted too.
    pub async fn entry(&self, key: &CacheKey, entry: &Entry, to_kv: bool, to_redis: bool) {
        let host = &self.host;
        let encoded = Bytes::from(entry.encode());
        let kv_write = async {
            match to_kv {
                true => kv::put(host, key, entry, encoded.clone(), WRITE_TIMEOUT_MS).await,
                false => Ok(()),
            }
        };
        let redis_write = async {
            match self.upstash.as_ref().filter(|_| to_redis) {
                Some(config) => {
                    let ttl_ms = verdict::store_ttl_ms(entry, host.now_ms());
                    Redis::new(config).put_entry(host, key, &encoded, ttl_ms, WRITE_TIMEOUT_MS).await
                }
                None => Ok(()),
            }
        };
        let (kv_result, redis_result) = join(kv_write, redis_write).await;
        if to_kv && kv_result.is_ok() {
            self.maybe_sweep().await;
        }
        for e in [kv_result.err(), redis_result.err()].into_iter().flatten() {
            log_store_error(host, &self.request_id, &e);
            if matches!(e.kind, StoreErrorKind::TooLarge { .. }) {
                counters::bump(host, self.upstash.as_ref(), too_large_counter(e.tier)).await;
            }
        }
    }

    /// Counts an event in Redis after the response (best effort).
    pub fn count(&self, counter: &'static str) {
        let (host, upstash) = (self.host.clone(), self.upstash.clone());
        self.host.spawn_background(Box::pin(async move { counters::bump(&host, upstash.as_ref(), counter).await }));
    }

    pub fn log(&self, level: &str, event: &str, fields: serde_json::Value) {
        super::log_line(&self.host, self.request_id.as_str(), level, event, fields);
    }
}

impl<H: Host> Clone for Writes<H> {
    fn clone(&self) -> Self {
        Writes {
            host: self.host.clone(),
            upstash: self.upstash.clone(),
            request_id: self.request_id.clone(),
            max_entry_bytes: self.max_entry_bytes,
            fresh_ttl_s: self.fresh_ttl_s,
            stale_ttl_s: self.stale_ttl_s,
            store_truncated: self.store_truncated,
            flight: self.flight.clone(),
        }
    }
}

impl<H: Host> Writes<H> {
    /// On a store without TTL, one write in `SWEEP_ONE_WRITE_IN` sweeps tier 1 from a random
    /// point (see `stores::kv::sweep`), logged when it deleted anything.
    async fn maybe_sweep(&self) {
        let host = &self.host;
        if host.kv_limits().min_ttl_seconds.is_some() || !host.random_u64().is_multiple_of(kv::SWEEP_ONE_WRITE_IN) {
            return;
        }
        let start = format!("llmc1:{:016x}", host.random_u64());
        let swept = kv::sweep(host, &start, WRITE_TIMEOUT_MS).await;
        if swept.deleted > 0 {
            let line = json!({"level": "info", "event": "kv_sweep", "request_id": self.request_id, "examined": swept.examined, "deleted": swept.deleted});
            host.log(&line.to_string());
        }
    }
}

impl<H: Host> Exchange<'_, H> {
    pub(super) fn writes(&self) -> Writes<H> {
        let c = self.config;
        Writes {
            host: self.host.clone(),
            upstash: c.upstash.clone(),
            request_id: self.request_id.to_owned(),
            max_entry_bytes: c.max_entry_bytes,
            fresh_ttl_s: c.fresh_ttl_s,
            stale_ttl_s: c.stale_ttl_s,
            store_truncated: c.store_truncated,
            flight: None,
        }
    }

    /// Whether an entry of `size` encoded bytes fits `tier`.
    pub(super) fn fits_tier(&self, tier: Tier, size: usize, key: &CacheKey) -> Result<(), TooLarge> {
        fits_tier(self.host, self.config.upstash.as_ref(), tier, size, key)
    }
}

/// Whether an entry of `size` encoded bytes fits `tier`.
fn fits_tier(
    host: &impl Kv,
    upstash: Option<&UpstashConfig>,
    tier: Tier,
    size: usize,
    key: &CacheKey,
) -> Result<(), TooLarge> {
    let place = match (tier, upstash) {
        (Tier::EdgeKv, _) => Place::EdgeKv(host.kv_limits()),
        (Tier::Redis, Some(upstash)) => {
            Place::Redis { key_bytes: crate::stores::redis::entry_key(&upstash.prefix, key).len() }
        }
        (Tier::Redis, None) => return Ok(()),
    };
    fit::fits(size, place)
}

fn too_large_counter(tier: Tier) -> &'static str {
    match tier {
        Tier::EdgeKv => counters::EDGE_KV_TOO_LARGE,
        Tier::Redis => counters::REDIS_TOO_LARGE,
    }
}

/// One JSON log line for a store failure (never an error for the client: fail open).
pub(super) fn log_store_error(host: &(impl Log + Memory + Clock), request_id: &str, e: &StoreError) {
    super::tally::store_error(host, e);
    let line = json!({"level": "warn", "event": "store_error", "request_id": request_id, "tier": e.tier.as_str(), "op": e.op, "kind": e.kind.word(), "detail": e.kind.to_string(), "retryable": e.kind.retryable()});
    host.log(&line.to_string());
}
