//! Counters of what the cache had to skip and of provider calls saved, kept in Redis so that every instance adds to the same
//! number (instance memory is not shared, and on Spin it does not outlive a request). Best
//! effort: counted after the response, and a Redis outage loses counts, never requests.

use crate::cache::storable::NotReplayable;
use crate::config::UpstashConfig;
use crate::ports::Host;
use crate::stores::redis::Redis;

/// Answers served but not stored at all: larger than `MAX_ENTRY_BYTES`.
pub const ENTRY_TOO_LARGE: &str = "entry_too_large";
/// Entries not written to tier 1 because they exceed the host's KV value limit (1 MiB on Spin).
pub const EDGE_KV_TOO_LARGE: &str = "edge_kv_too_large";
/// Entries not written to tier 2 because they exceed Upstash's request limit.
pub const REDIS_TOO_LARGE: &str = "redis_too_large";

/// Requests answered by another request's provider call (single flight), by where that call ran:
/// provider calls saved.
pub const COALESCED_ISOLATE: &str = "coalesced_isolate";
pub const COALESCED_REDIS: &str = "coalesced_redis";

/// Every counter, for `/admin/health`: the size skips above, then one per reason an answer was
/// not worth replaying (`cache::storable`), then the calls saved by single flight.
pub fn all() -> Vec<&'static str> {
    let sizes = [ENTRY_TOO_LARGE, EDGE_KV_TOO_LARGE, REDIS_TOO_LARGE];
    let saved = [COALESCED_ISOLATE, COALESCED_REDIS];
    sizes.into_iter().chain(NotReplayable::ALL.iter().map(|r| r.word())).chain(saved).collect()
}

const TIMEOUT_MS: u64 = 5_000;

pub async fn bump<H: Host>(host: &H, upstash: Option<&UpstashConfig>, counter: &str) {
    if counter != COALESCED_ISOLATE && counter != COALESCED_REDIS {
        super::tally::skipped(host, counter);
    }
    if let Some(config) = upstash {
        let _ = Redis::new(config).count(host, counter, TIMEOUT_MS).await;
    }
}

/// Every counter's value, for `/admin/health`; `None` when Redis is not answering.
pub async fn read<H: Host>(host: &H, upstash: &UpstashConfig) -> Option<serde_json::Value> {
    let names = all();
    let values = Redis::new(upstash).counters(host, &names).await.ok()?;
    let counts = names.iter().zip(values).map(|(name, n)| ((*name).to_owned(), serde_json::Value::from(n)));
    Some(serde_json::Value::Object(counts.collect()))
}
