//! Cache writes, all after the response: a new answer to both tiers, a tier-2 hit copied to
//! tier 1.

use futures_util::future::join;
use serde_json::json;

use super::{counters, Exchange, WRITE_TIMEOUT_MS};
use crate::cache::entry::Entry;
use crate::cache::key::CacheKey;
use crate::cache::status::CacheReport;
use crate::error::{StoreErrorKind, Tier};
use crate::ports::Host;
use crate::stores::{kv, redis::Redis};

impl<H: Host> Exchange<'_, H> {
    /// Stores a new answer in both tiers after the response, unless it is over `MAX_ENTRY_BYTES`
    /// (then it is logged and counted); marks in `report` the tiers it goes to.
    pub(super) fn store(&self, key: CacheKey, entry: Entry, report: &mut CacheReport) {
        if entry.body.len() + 512 > self.config.max_entry_bytes {
            let fields = json!({"bytes": entry.body.len(), "limit": self.config.max_entry_bytes});
            self.log("warn", "entry_too_large", fields);
            self.count(counters::ENTRY_TOO_LARGE);
            return;
        }
        let to_redis = self.config.upstash.is_some();
        report.kv.stored = true;
        report.redis.stored = to_redis;
        self.write_back(key, entry, true, to_redis);
    }

    /// Writes an entry to the chosen tiers after the response has gone out.
    pub(super) fn write_back(&self, key: CacheKey, entry: Entry, to_kv: bool, to_redis: bool) {
        let host = self.host.clone();
        let counters = self.config.upstash.clone();
        let upstash = if to_redis { counters.clone() } else { None };
        let request_id = self.request_id.to_owned();
        self.host.spawn_background(Box::pin(async move {
            let encoded = entry.encode();
            let kv_write = async {
                if to_kv {
                    kv::put(&host, &key, &entry, encoded.clone(), WRITE_TIMEOUT_MS).await
                } else {
                    Ok(())
                }
            };
            let redis_write = async {
                match &upstash {
                    Some(config) => {
                        let ttl_ms = entry.stale_until_ms.saturating_sub(host.now_ms());
                        Redis::new(config).put_entry(&host, &key, &encoded, ttl_ms, WRITE_TIMEOUT_MS).await
                    }
                    None => Ok(()),
                }
            };
            let (kv_result, redis_result) = join(kv_write, redis_write).await;
            for e in [kv_result.err(), redis_result.err()].into_iter().flatten() {
                let line = json!({"level": "warn", "event": "store_error", "request_id": request_id, "tier": e.tier.as_str(), "op": e.op, "kind": e.kind.word(), "detail": e.kind.to_string(), "retryable": e.kind.retryable()});
                host.log(&line.to_string());
                if matches!(e.kind, StoreErrorKind::TooLarge { .. }) {
                    let counter = match e.tier {
                        Tier::EdgeKv => counters::EDGE_KV_TOO_LARGE,
                        Tier::Redis => counters::REDIS_TOO_LARGE,
                    };
                    counters::bump(&host, counters.as_ref(), counter).await;
                }
            }
        }));
    }
}
