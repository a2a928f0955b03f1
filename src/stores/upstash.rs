//! The Upstash REST transport: one Redis command per call over the `Http` port. `POST {url}`
//! with a JSON array body and a Bearer token; the reply is `{"result": ...}` or `{"error": "..."}`.
//! Every call, body read included, is bounded by one timeout.
//! Must not: build keys or choose commands (that is `stores::redis`), or put the token or the
//! store URL into an error message.

use bytes::Bytes;
use serde_json::Value;

use crate::api::json_type_name;
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

    /// The HTTP request for one command, given as its JSON array. The URL and token were checked
    /// when the configuration was read; should either still not fit a request, the store is
    /// unavailable, never a panic.
    fn request(&self, op: &'static str, body: Bytes) -> Result<http::Request<Bytes>, StoreError> {
        http::Request::post(&self.config.url)
            .header(http::header::AUTHORIZATION, format!("Bearer {}", self.config.token.expose()))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|_| err(op, StoreErrorKind::Unavailable("the store URL or token cannot form a request".into())))
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
        let body = serde_json::to_vec(args).map_err(|e| err(op, StoreErrorKind::Protocol(e.to_string())))?;
        self.send(host, op, Bytes::from(body), reply_limit, timeout_ms).await
    }

    /// Runs one command already written as its JSON array (`["SET","k","v"]`), for a caller that
    /// writes a large value straight into the body instead of copying it in twice.
    pub async fn send<H: Http + Clock>(
        &self,
        host: &H,
        op: &'static str,
        body: Bytes,
        reply_limit: usize,
        timeout_ms: u64,
    ) -> Result<Value, StoreError> {
        let exchange = async {
            let response = host
                .fetch(self.request(op, body)?)
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
