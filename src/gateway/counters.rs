//! Counters of what the cache had to skip, kept in Redis so that every instance adds to the same
//! number (instance memory is not shared, and on Spin it does not outlive a request). Best
//! effort: counted after the response, and a Redis outage loses counts, never requests.

use crate::config::UpstashConfig;
use crate::ports::Host;
use crate::stores::upstash::Upstash;

/// Answers served but not stored at all: larger than `MAX_ENTRY_BYTES`.
pub const ENTRY_TOO_LARGE: &str = "entry_too_large";
/// Entries not written to tier 1 because they exceed the host's KV value limit (1 MiB on Spin).
pub const EDGE_KV_TOO_LARGE: &str = "edge_kv_too_large";
/// Entries not written to tier 2 because they exceed Upstash's request limit.
pub const REDIS_TOO_LARGE: &str = "redis_too_large";

pub const ALL: &[&str] = &[ENTRY_TOO_LARGE, EDGE_KV_TOO_LARGE, REDIS_TOO_LARGE];

const TIMEOUT_MS: u64 = 5_000;

pub fn key(counter: &str) -> String {
    format!("llmc1:count:{counter}")
}

pub async fn bump<H: Host>(host: &H, upstash: Option<&UpstashConfig>, counter: &str) {
    if let Some(config) = upstash {
        let key = key(counter);
        let _ = Upstash::new(config).command(host, "count", &["INCR", &key], 1024, TIMEOUT_MS).await;
    }
}

/// Every counter's value, for `/healthz`; `None` when Redis is not configured or not answering.
pub async fn read<H: Host>(host: &H, upstash: &UpstashConfig) -> Option<serde_json::Value> {
    let keys: Vec<String> = ALL.iter().map(|c| key(c)).collect();
    let mut args = vec!["MGET"];
    args.extend(keys.iter().map(String::as_str));
    let values = Upstash::new(upstash).command(host, "count_get", &args, 4096, upstash.timeout_ms).await.ok()?;
    let values = values.as_array()?;
    let counts = ALL.iter().zip(values).map(|(name, v)| {
        let n = v.as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        ((*name).to_owned(), serde_json::Value::from(n))
    });
    Some(serde_json::Value::Object(counts.collect()))
}
