//! The one owner of Redis: every key the gateway keeps there and every command it sends. All keys
//! start with the deployment prefix (`DEPLOYMENT_PREFIX`), so two deployments can share one
//! database without sharing state:
//!
//! | key | what |
//! |---|---|
//! | `{prefix}:{digest}` | a cache entry (base64 MessagePack), expiring with its stale window |
//! | `{prefix}:count:{name}` | a counter of events (stores skipped, ...) |
//! | `{prefix}:health:{target id}` | what one isolate shares of a target's health |
//!
//! Commands go out through the Upstash REST transport (`upstash.rs`), each bounded by a timeout.
//! Must not: be bypassed (no other module builds a Redis key or command), or put the token or the
//! store URL into an error.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;

use crate::api::json_type_name;
use crate::cache::entry::Entry;
use crate::cache::fit::{self, Place};
use crate::cache::key::CacheKey;
use crate::config::UpstashConfig;
use crate::error::{StoreError, StoreErrorKind, Tier};
use crate::ports::{Clock, Http};
use crate::stores::upstash::Upstash;

/// The prefix when `DEPLOYMENT_PREFIX` is unset (the key layout of earlier releases).
pub const DEFAULT_PREFIX: &str = "llmc1";

fn err(op: &'static str, kind: StoreErrorKind) -> StoreError {
    StoreError { tier: Tier::Redis, op, kind }
}

/// The Redis key of a cache entry.
pub fn entry_key(prefix: &str, key: &CacheKey) -> String {
    format!("{prefix}:{}", key.digest_hex())
}

/// The Redis key of a counter.
pub fn counter_key(prefix: &str, name: &str) -> String {
    format!("{prefix}:count:{name}")
}

/// The Redis key of a target's shared health record.
pub fn health_key(prefix: &str, target_id: &str) -> String {
    format!("{prefix}:health:{target_id}")
}

/// Redis as the gateway uses it.
pub struct Redis<'a> {
    rest: Upstash<'a>,
    config: &'a UpstashConfig,
}

impl<'a> Redis<'a> {
    pub fn new(config: &'a UpstashConfig) -> Redis<'a> {
        Redis { rest: Upstash::new(config), config }
    }

    fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// Reads and decodes the entry under `key`; garbage is an error (a miss for the caller).
    pub async fn get_entry<H: Http + Clock>(
        &self,
        host: &H,
        key: &CacheKey,
        max_entry_bytes: usize,
    ) -> Result<Option<Entry>, StoreError> {
        let limit = fit::redis_reply_limit(max_entry_bytes);
        let redis_key = entry_key(self.prefix(), key);
        let result = self.rest.command(host, "get", &["GET", &redis_key], limit, self.config.timeout_ms).await?;
        match result {
            Value::Null => Ok(None),
            Value::String(b64) => {
                let bytes = B64
                    .decode(b64.as_bytes())
                    .map_err(|e| err("get", StoreErrorKind::Garbage(format!("value is not base64: {e}"))))?;
                let decoded = Entry::decode_shared(bytes::Bytes::from(bytes));
                decoded.map(Some).map_err(|e| err("get", StoreErrorKind::Garbage(e.to_string())))
            }
            other => Err(err("get", StoreErrorKind::Protocol(format!("GET returned {}", json_type_name(&other))))),
        }
    }

    /// Stores an encoded entry for `ttl_ms` (Redis expires it; expiry on read is still checked).
    /// The base64 of the entry is written straight into the request body: its one copy here.
    pub async fn put_entry<H: Http + Clock>(
        &self,
        host: &H,
        key: &CacheKey,
        encoded: &[u8],
        ttl_ms: u64,
        timeout_ms: u64,
    ) -> Result<(), StoreError> {
        let redis_key = entry_key(self.prefix(), key);
        if let Err(e) = fit::fits(encoded.len(), Place::Redis { key_bytes: redis_key.len() }) {
            return Err(err("put", StoreErrorKind::TooLarge { size: e.size, limit: e.limit }));
        }
        // ["SET",<key>,"<base64>","PX","<ttl>"]: base64 needs no JSON escaping.
        let key_json =
            serde_json::to_string(&redis_key).map_err(|e| err("put", StoreErrorKind::Protocol(e.to_string())))?;
        let mut body = String::with_capacity(fit::base64_len(encoded.len()) + key_json.len() + 64);
        body.push_str("[\"SET\",");
        body.push_str(&key_json);
        body.push_str(",\"");
        B64.encode_string(encoded, &mut body);
        body.push_str("\",\"PX\",\"");
        body.push_str(&ttl_ms.max(1).to_string());
        body.push_str("\"]");
        let result = self.rest.send(host, "put", bytes::Bytes::from(body), 1024, timeout_ms).await?;
        match result {
            Value::String(s) if s == "OK" => Ok(()),
            other => Err(err("put", StoreErrorKind::Protocol(format!("SET returned {}", json_type_name(&other))))),
        }
    }

    /// Deletes the entry under `key`; true when there was one.
    pub async fn delete_entry<H: Http + Clock>(&self, host: &H, key: &CacheKey) -> Result<bool, StoreError> {
        let redis_key = entry_key(self.prefix(), key);
        match self.rest.command(host, "delete", &["DEL", &redis_key], 1024, self.config.timeout_ms).await? {
            Value::Number(n) => Ok(n.as_u64().unwrap_or(0) > 0),
            other => Err(err("delete", StoreErrorKind::Protocol(format!("DEL returned {}", json_type_name(&other))))),
        }
    }

    /// `PING`, for the detailed health view.
    pub async fn ping<H: Http + Clock>(&self, host: &H) -> Result<(), StoreError> {
        match self.rest.command(host, "ping", &["PING"], 1024, self.config.timeout_ms).await? {
            Value::String(s) if s == "PONG" => Ok(()),
            other => Err(err("ping", StoreErrorKind::Protocol(format!("PING returned {}", json_type_name(&other))))),
        }
    }

    /// Adds one to a counter.
    pub async fn count<H: Http + Clock>(&self, host: &H, name: &str, timeout_ms: u64) -> Result<(), StoreError> {
        let key = counter_key(self.prefix(), name);
        self.rest.command(host, "count", &["INCR", &key], 1024, timeout_ms).await.map(|_| ())
    }

    /// The values of these counters, in order (0 for a counter never bumped).
    pub async fn counters<H: Http + Clock>(&self, host: &H, names: &[&str]) -> Result<Vec<u64>, StoreError> {
        let keys: Vec<String> = names.iter().map(|n| counter_key(self.prefix(), n)).collect();
        let values = self.mget(host, "count_get", &keys, 4096).await?;
        Ok(values.iter().map(|v| v.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)).collect())
    }

    /// Shares a target's health record for `ttl_ms`.
    pub async fn put_health<H: Http + Clock>(
        &self,
        host: &H,
        target_id: &str,
        record: &str,
        ttl_ms: u64,
        timeout_ms: u64,
    ) -> Result<(), StoreError> {
        let key = health_key(self.prefix(), target_id);
        let ttl = ttl_ms.max(1).to_string();
        self.rest.command(host, "health_put", &["SET", &key, record, "PX", &ttl], 1024, timeout_ms).await.map(|_| ())
    }

    /// The shared health records of these targets, in order (`None` where there is none).
    pub async fn health<H: Http + Clock>(
        &self,
        host: &H,
        target_ids: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let keys: Vec<String> = target_ids.iter().map(|id| health_key(self.prefix(), id)).collect();
        self.mget(host, "health_get", &keys, 64 << 10).await
    }

    async fn mget<H: Http + Clock>(
        &self,
        host: &H,
        op: &'static str,
        keys: &[String],
        reply_limit: usize,
    ) -> Result<Vec<Option<String>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["MGET"];
        args.extend(keys.iter().map(String::as_str));
        match self.rest.command(host, op, &args, reply_limit, self.config.timeout_ms).await? {
            Value::Array(values) if values.len() == keys.len() => {
                Ok(values.into_iter().map(|v| v.as_str().map(str::to_owned)).collect())
            }
            other => Err(err(op, StoreErrorKind::Protocol(format!("MGET returned {}", json_type_name(&other))))),
        }
    }
}
