//! Tier 2: entries in Upstash Redis, through its REST API over the `Http` port.
//!
//! One command per call: `POST {url}` with a JSON array body and a Bearer token; the reply is
//! `{"result": ...}` or `{"error": "..."}`. Entries are binary (MessagePack), so values are stored
//! base64-encoded. Every call, body read included, is bounded by one timeout.
//! Must not: put the token or the store URL into an error message.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

use crate::api::json_type_name;
use crate::cache::entry::Entry;
use crate::cache::key::CacheKey;
use crate::config::UpstashConfig;
use crate::error::{StoreError, StoreErrorKind, Tier};
use crate::ports::{with_timeout, Clock, Http};

/// Upstash's own request limit; a larger value could never be written.
pub const MAX_REQUEST_BYTES: usize = 10 << 20;

fn err(op: &'static str, kind: StoreErrorKind) -> StoreError {
    StoreError { tier: Tier::Redis, op, kind }
}

pub struct Upstash<'a> {
    config: &'a UpstashConfig,
}

impl<'a> Upstash<'a> {
    pub fn new(config: &'a UpstashConfig) -> Upstash<'a> {
        Upstash { config }
    }

    /// The HTTP request for one command.
    pub fn request(&self, args: &[&str]) -> http::Request<Bytes> {
        let body = serde_json::to_vec(args).expect("an array of strings always serializes");
        http::Request::post(&self.config.url)
            .header(http::header::AUTHORIZATION, format!("Bearer {}", self.config.token.expose()))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Bytes::from(body))
            .expect("the URL was validated when the configuration was read")
    }

    /// Runs one command within `timeout_ms` and returns its `result`.
    pub async fn command<H: Http + Clock>(
        &self,
        host: &H,
        op: &'static str,
        args: &[&str],
        reply_limit: usize,
        timeout_ms: u64,
    ) -> Result<Value, StoreError> {
        let exchange = async {
            let response = host
                .fetch(self.request(args))
                .await
                .map_err(|e| err(op, StoreErrorKind::Unavailable(e.to_string())))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect(reply_limit)
                .await
                .map_err(|e| err(op, StoreErrorKind::Protocol(e.to_string())))?;
            parse_reply(op, status, &body)
        };
        with_timeout(host, timeout_ms, exchange).await.unwrap_or_else(|| Err(err(op, StoreErrorKind::Timeout)))
    }

    pub async fn get<H: Http + Clock>(
        &self,
        host: &H,
        key: &CacheKey,
        max_entry_bytes: usize,
    ) -> Result<Option<Entry>, StoreError> {
        // base64 grows a value by 4/3; the reply envelope and the entry's own fields (times,
        // provider, model) come on top of the answer that MAX_ENTRY_BYTES bounds.
        let limit = max_entry_bytes / 3 * 4 + (64 << 10);
        let result = self.command(host, "get", &["GET", key.as_str()], limit, self.config.timeout_ms).await?;
        match result {
            Value::Null => Ok(None),
            Value::String(b64) => {
                let bytes = B64
                    .decode(b64.as_bytes())
                    .map_err(|e| err("get", StoreErrorKind::Garbage(format!("value is not base64: {e}"))))?;
                Entry::decode(&bytes).map(Some).map_err(|e| err("get", StoreErrorKind::Garbage(e.to_string())))
            }
            other => Err(err("get", StoreErrorKind::Protocol(format!("GET returned {}", json_type_name(&other))))),
        }
    }

    /// Stores an encoded entry for `ttl_ms` (Redis expires it; expiry on read is still checked).
    pub async fn put<H: Http + Clock>(
        &self,
        host: &H,
        key: &CacheKey,
        encoded: &[u8],
        ttl_ms: u64,
        timeout_ms: u64,
    ) -> Result<(), StoreError> {
        let b64 = B64.encode(encoded);
        if b64.len() + key.as_str().len() + 64 > MAX_REQUEST_BYTES {
            return Err(err("put", StoreErrorKind::TooLarge { size: encoded.len(), limit: MAX_REQUEST_BYTES / 4 * 3 }));
        }
        let ttl = ttl_ms.max(1).to_string();
        let result = self.command(host, "put", &["SET", key.as_str(), &b64, "PX", &ttl], 1024, timeout_ms).await?;
        match result {
            Value::String(s) if s == "OK" => Ok(()),
            other => Err(err("put", StoreErrorKind::Protocol(format!("SET returned {}", json_type_name(&other))))),
        }
    }

    /// `PING`, for `/healthz`.
    pub async fn ping<H: Http + Clock>(&self, host: &H) -> Result<(), StoreError> {
        match self.command(host, "ping", &["PING"], 1024, self.config.timeout_ms).await? {
            Value::String(s) if s == "PONG" => Ok(()),
            other => Err(err("ping", StoreErrorKind::Protocol(format!("PING returned {}", json_type_name(&other))))),
        }
    }
}

fn parse_reply(op: &'static str, status: http::StatusCode, body: &[u8]) -> Result<Value, StoreError> {
    let reply: Value = serde_json::from_slice(body)
        .map_err(|_| err(op, StoreErrorKind::Protocol(format!("HTTP {status} with a body that is not JSON"))))?;
    match reply {
        Value::Object(mut map) if status.is_success() => match map.remove("result") {
            Some(v) => Ok(v),
            None => Err(err(op, StoreErrorKind::Protocol("reply has no result".into()))),
        },
        Value::Object(map) => {
            let message = map.get("error").and_then(Value::as_str).unwrap_or("no error message");
            let kind = if status.is_server_error() {
                StoreErrorKind::Unavailable(format!("HTTP {status}: {message}"))
            } else {
                StoreErrorKind::Protocol(format!("HTTP {status}: {message}"))
            };
            Err(err(op, kind))
        }
        other => Err(err(op, StoreErrorKind::Protocol(format!("HTTP {status} with {}", json_type_name(&other))))),
    }
}
