//! Cache writes, all after the response: a new answer to both tiers, a tier-2 hit copied to
//! tier 1. What fits where is decided before the response (`cache::fit`, on the encoded size), so
//! that `Cache-Status` promises only writes that can happen. The entry is encoded once, and both
//! writes share the encoded bytes.

use bytes::Bytes;
use futures_util::future::join;
use serde_json::json;

use super::{counters, Exchange, WRITE_TIMEOUT_MS};
use crate::cache::entry::Entry;
use crate::cache::fit::{self, Place, TooLarge};
use crate::cache::key::CacheKey;
use crate::cache::status::CacheReport;
use crate::cache::verdict;
use crate::config::UpstashConfig;
use crate::error::{StoreError, StoreErrorKind, Tier};
use crate::ports::{Host, Log};
use crate::stores::{kv, redis::Redis};

/// What a write after the response needs, owned.
pub(super) struct Writes<H: Host> {
    host: H,
    upstash: Option<UpstashConfig>,
    pub request_id: String,
}

impl<H: Host> Writes<H> {
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
        Writes { host: self.host.clone(), upstash: self.config.upstash.clone(), request_id: self.request_id.to_owned() }
    }

    /// Stores a new answer in every tier it fits (`MAX_ENTRY_BYTES` first, then each tier's own
    /// limit), after the response; marks in `report` the tiers it goes to. A size refusal is
    /// logged and counted here, once.
    pub(super) fn store(&self, key: CacheKey, entry: Entry, report: &mut CacheReport) {
        let size = entry.encoded_len();
        if let Err(e) = fit::fits(size, Place::Cache { max_entry_bytes: self.config.max_entry_bytes }) {
            self.log("warn", "entry_too_large", json!({"bytes": e.size, "limit": e.limit}));
            self.count(counters::ENTRY_TOO_LARGE);
            return;
        }
        let fits = |tier| match self.fits_tier(tier, size, &key) {
            Ok(()) => true,
            Err(TooLarge { size, limit }) => {
                let e = StoreError { tier, op: "put", kind: StoreErrorKind::TooLarge { size, limit } };
                log_store_error(self.host, self.request_id, &e);
                self.count(too_large_counter(tier));
                false
            }
        };
        let to_kv = fits(Tier::EdgeKv);
        let to_redis = self.config.upstash.is_some() && fits(Tier::Redis);
        report.kv.stored = to_kv;
        report.redis.stored = to_redis;
        if to_kv || to_redis {
            self.write_back(key, entry, to_kv, to_redis);
        }
    }

    /// Whether an entry of `size` encoded bytes fits `tier`.
    pub(super) fn fits_tier(&self, tier: Tier, size: usize, key: &CacheKey) -> Result<(), TooLarge> {
        let place = match (tier, &self.config.upstash) {
            (Tier::EdgeKv, _) => Place::EdgeKv(self.host.kv_limits()),
            (Tier::Redis, Some(upstash)) => {
                Place::Redis { key_bytes: crate::stores::redis::entry_key(&upstash.prefix, key).len() }
            }
            (Tier::Redis, None) => return Ok(()),
        };
        fit::fits(size, place)
    }

    /// Writes an entry to the chosen tiers after the response has gone out.
    pub(super) fn write_back(&self, key: CacheKey, entry: Entry, to_kv: bool, to_redis: bool) {
        let writes = self.writes();
        self.host.spawn_background(Box::pin(async move { writes.entry(&key, &entry, to_kv, to_redis).await }));
    }
}

fn too_large_counter(tier: Tier) -> &'static str {
    match tier {
        Tier::EdgeKv => counters::EDGE_KV_TOO_LARGE,
        Tier::Redis => counters::REDIS_TOO_LARGE,
    }
}

/// One JSON log line for a store failure (never an error for the client: fail open).
pub(super) fn log_store_error(host: &impl Log, request_id: &str, e: &StoreError) {
    let line = json!({"level": "warn", "event": "store_error", "request_id": request_id, "tier": e.tier.as_str(), "op": e.op, "kind": e.kind.word(), "detail": e.kind.to_string(), "retryable": e.kind.retryable()});
    host.log(&line.to_string());
}
