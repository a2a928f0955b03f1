//! The Upstash REST transport over the `Http` port, with a Bearer token: one command per call
//! (`POST {url}` with a JSON array; the reply is `{"result": ...}` or `{"error": "..."}`), or
//! several in one round trip (`POST {url}/pipeline` with an array of such arrays; the reply is an
//! array with one `{"result"}` or `{"error"}` per command, in order; not atomic: each command
//! succeeds or fails on its own). Every call, body read included, is bounded by one timeout.
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

    /// The HTTP request of a call: `body` to `{url}{path}`. The URL and token were checked when
    /// the configuration was read; should either still not fit a request, the store is
    /// unavailable, never a panic.
    fn request(&self, op: &'static str, path: &str, body: Bytes) -> Result<http::Request<Bytes>, StoreError> {
        http::Request::post(format!("{}{path}", self.config.url))
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
        let (status, reply) = self.call(host, op, "", body, reply_limit, timeout_ms).await?;
        match reply {
            Value::Object(mut map) if status.is_success() => match map.remove("result") {
                Some(v) => Ok(v),
                None => Err(err(op, StoreErrorKind::Protocol("reply has no result".into()))),
            },
            other => Err(failed(op, status, other)),
        }
    }

    /// Runs one command within `timeout_ms`: its `result`, or Redis's own error message (a
    /// command Redis refused, e.g. `NOSCRIPT`), which the caller may act on.
    pub async fn try_command<H: Http + Clock>(
        &self,
        host: &H,
        op: &'static str,
        args: &[&str],
        reply_limit: usize,
        timeout_ms: u64,
    ) -> Result<Result<Value, String>, StoreError> {
        let body = serde_json::to_vec(args).map_err(|e| err(op, StoreErrorKind::Protocol(e.to_string())))?;
        let (status, reply) = self.call(host, op, "", Bytes::from(body), reply_limit, timeout_ms).await?;
        match reply {
            Value::Object(mut map) if status.is_success() => match map.remove("result") {
                Some(v) => Ok(Ok(v)),
                None => Err(err(op, StoreErrorKind::Protocol("reply has no result".into()))),
            },
            Value::Object(map) if status.is_client_error() && status.as_u16() != 401 => match map.get("error") {
                Some(Value::String(message)) => Ok(Err(message.clone())),
                _ => Err(failed(op, status, Value::Object(map))),
            },
            other => Err(failed(op, status, other)),
        }
    }

    /// Runs `commands` in one round trip within `timeout_ms`: each command's `result`, or its
    /// error message, in order.
    pub async fn pipeline<H: Http + Clock>(
        &self,
        host: &H,
        op: &'static str,
        commands: &[Vec<String>],
        reply_limit: usize,
        timeout_ms: u64,
    ) -> Result<Vec<Result<Value, String>>, StoreError> {
        let body = serde_json::to_vec(commands).map_err(|e| err(op, StoreErrorKind::Protocol(e.to_string())))?;
        let (status, reply) = self.call(host, op, "/pipeline", Bytes::from(body), reply_limit, timeout_ms).await?;
        let replies = match reply {
            Value::Array(replies) if status.is_success() && replies.len() == commands.len() => replies,
            Value::Array(replies) if status.is_success() => {
                let why = format!("{} replies to {} commands", replies.len(), commands.len());
                return Err(err(op, StoreErrorKind::Protocol(why)));
            }
            other => return Err(failed(op, status, other)),
        };
        replies
            .into_iter()
            .map(|reply| match reply {
                Value::Object(mut map) => match (map.remove("result"), map.remove("error")) {
                    (Some(v), _) => Ok(Ok(v)),
                    (None, Some(e)) => Ok(Err(e.as_str().unwrap_or("no error message").to_owned())),
                    (None, None) => Err(err(op, StoreErrorKind::Protocol("a reply has no result".into()))),
                },
                other => Err(err(op, StoreErrorKind::Protocol(format!("a reply is {}", json_type_name(&other))))),
            })
            .collect()
    }

    /// One call: its status and JSON reply.
    async fn call<H: Http + Clock>(
        &self,
        host: &H,
        op: &'static str,
        path: &str,
        body: Bytes,
        reply_limit: usize,
        timeout_ms: u64,
    ) -> Result<(http::StatusCode, Value), StoreError> {
        let exchange = async {
            let response = host
                .fetch(self.request(op, path, body)?)
                .await
                .map_err(|e| err(op, StoreErrorKind::Unavailable(e.to_string())))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect(reply_limit)
                .await
                .map_err(|e| err(op, StoreErrorKind::Protocol(e.to_string())))?;
            let reply: Value = serde_json::from_slice(&body).map_err(|_| {
                err(op, StoreErrorKind::Protocol(format!("HTTP {status} with a body that is not JSON")))
            })?;
            Ok((status, reply))
        };
        with_timeout(host, timeout_ms, exchange).await.unwrap_or_else(|| Err(err(op, StoreErrorKind::Timeout)))
    }
}

/// The error of a call that failed as a whole.
fn failed(op: &'static str, status: http::StatusCode, reply: Value) -> StoreError {
    match reply {
        Value::Object(map) if !status.is_success() => {
            let message = map.get("error").and_then(Value::as_str).unwrap_or("no error message");
            let kind = if status.is_server_error() {
                StoreErrorKind::Unavailable(format!("HTTP {status}: {message}"))
            } else {
                StoreErrorKind::Protocol(format!("HTTP {status}: {message}"))
            };
            err(op, kind)
        }
        other => err(op, StoreErrorKind::Protocol(format!("HTTP {status} with {}", json_type_name(&other)))),
    }
}
