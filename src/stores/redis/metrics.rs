//! The Redis side of metrics (part of `stores::redis`, the one owner of Redis keys and commands):
//! every isolate of both hosts adds its buffered counts to the same hashes.
//!
//! | key | what |
//! |---|---|
//! | `{prefix}:metrics:m:{minute}` | a hash of series fields (`metrics::field`) counted in one minute (from the epoch), expiring `METRICS_RETENTION_SECONDS` after that minute |
//! | `{prefix}:metrics:h:{hour}` | the same fields counted in one hour, for windows longer than an hour, expiring like the minutes |
//! | `{prefix}:metrics:total` | the same fields counted since the first flush, never expiring (what `/admin/metrics` exposes: Prometheus counters only grow) |
//!
//! A flush is one pipeline: `HINCRBY` of each field into its minute's hash, its hour's hash and
//! the totals, and one `PEXPIREAT` per minute and hour hash. Every command commutes: isolates may flush in any order.
//! Must not: decide anything, or send more than one round trip per flush or read.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{err, Redis};
use crate::api::json_type_name;
use crate::error::{StoreError, StoreErrorKind};
use crate::ports::{Clock, Http};

/// The Redis key of the hash of minute `minute`.
pub fn minute_key(prefix: &str, minute: u64) -> String {
    format!("{prefix}:metrics:m:{minute}")
}

/// The Redis key of the hash of hour `hour`.
pub fn hour_key(prefix: &str, hour: u64) -> String {
    format!("{prefix}:metrics:h:{hour}")
}

/// The Redis key of the totals.
pub fn totals_key(prefix: &str) -> String {
    format!("{prefix}:metrics:total")
}

/// The largest reply a metrics read takes (a minute's hash, or the totals).
const READ_LIMIT: usize = 4 << 20;

impl Redis<'_> {
    /// Adds `batch` (per minute, field -> how much) to the minute hashes and the totals, in one
    /// pipeline; each minute hash expires `retention_ms` after its minute ends. Returns the
    /// number of commands sent (for the measurement of what metrics cost).
    pub async fn add_metrics<H: Http + Clock>(
        &self,
        host: &H,
        batch: &BTreeMap<u64, BTreeMap<String, u64>>,
        retention_ms: u64,
        timeout_ms: u64,
    ) -> Result<usize, StoreError> {
        let prefix = self.prefix();
        let totals = totals_key(prefix);
        let mut commands: Vec<Vec<String>> = Vec::new();
        for (minute, fields) in batch {
            let key = minute_key(prefix, *minute);
            let hour = minute / 60;
            let hour_hash = hour_key(prefix, hour);
            for (field, n) in fields {
                for hash in [&key, &hour_hash, &totals] {
                    commands.push(vec!["HINCRBY".into(), hash.clone(), field.clone(), n.to_string()]);
                }
            }
            commands.push(vec!["PEXPIREAT".into(), key, ((minute + 1) * 60_000 + retention_ms).to_string()]);
            commands.push(vec!["PEXPIREAT".into(), hour_hash, ((hour + 1) * 3_600_000 + retention_ms).to_string()]);
        }
        if commands.is_empty() {
            return Ok(0);
        }
        let replies = self.rest.pipeline(host, "metrics_add", &commands, 256 << 10, timeout_ms).await?;
        if let Some(Err(e)) = replies.iter().find(|r| r.is_err()) {
            return Err(err("metrics_add", StoreErrorKind::Protocol(e.clone())));
        }
        Ok(commands.len())
    }

    /// The totals: every field and its value.
    pub async fn metric_totals<H: Http + Clock>(&self, host: &H) -> Result<BTreeMap<String, u64>, StoreError> {
        let key = totals_key(self.prefix());
        let reply =
            self.rest.command(host, "metrics_read", &["HGETALL", &key], READ_LIMIT, self.config.timeout_ms).await?;
        hash("metrics_read", &reply)
    }

    /// The hashes of `buckets` (minutes, or hours when `hours`), in order (an expired or empty
    /// one is an empty map), in one pipeline.
    pub async fn metric_buckets<H: Http + Clock>(
        &self,
        host: &H,
        buckets: &[u64],
        hours: bool,
    ) -> Result<Vec<BTreeMap<String, u64>>, StoreError> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = self.prefix();
        let key = |b: u64| if hours { hour_key(prefix, b) } else { minute_key(prefix, b) };
        let commands: Vec<Vec<String>> = buckets.iter().map(|b| vec!["HGETALL".to_owned(), key(*b)]).collect();
        let replies =
            self.rest.pipeline(host, "metrics_read", &commands, READ_LIMIT * 4, self.config.timeout_ms).await?;
        replies
            .iter()
            .map(|reply| match reply {
                Ok(value) => hash("metrics_read", value),
                Err(e) => Err(err("metrics_read", StoreErrorKind::Protocol(e.clone()))),
            })
            .collect()
    }
}

/// A hash as `HGETALL` returns it (a flat array of field, value); a value that is not a whole
/// number is left out.
fn hash(op: &'static str, reply: &Value) -> Result<BTreeMap<String, u64>, StoreError> {
    let Value::Array(items) = reply else {
        return Err(err(op, StoreErrorKind::Protocol(format!("HGETALL returned {}", json_type_name(reply)))));
    };
    Ok(items
        .chunks(2)
        .filter_map(|pair| match pair {
            [Value::String(field), Value::String(n)] => n.parse::<u64>().ok().map(|n| (field.clone(), n)),
            [Value::String(field), Value::Number(n)] => n.as_u64().map(|n| (field.clone(), n)),
            _ => None,
        })
        .collect())
}
