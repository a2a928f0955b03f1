//! An Upstash-REST-compatible HTTP endpoint over a real Redis: `POST /` (JSON command),
//! path-style commands, `/pipeline`, `/multi-exec`, Bearer or `_token` auth, and
//! `Upstash-Encoding: base64`, so the official clients can be pointed at a local Redis.
//!
//! This module routes and answers HTTP. It must not talk RESP or manage connections
//! (`redis_client`) or map replies (`upstash::reply`), and it is for tests and local runs only:
//! it is not hardened for the internet.

mod command;
mod reply;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub use self::command::{Command, CommandError};
pub use self::reply::Encoding;
use crate::http_server::{json_response, read_body_limited, serve_with, BackgroundServer};
use crate::http_server::{Body, ServerError};
use crate::redis_client::{RedisClient, RedisError, Transaction, Value as Reply, COMMAND_TIMEOUT, CONNECT_TIMEOUT};
use crate::urlcodec::query_param;

/// Largest request body accepted (Upstash's limit on paid plans; larger is rejected
/// before it is read).
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

/// The message Upstash answers a missing or wrong token with (status 401).
pub const UNAUTHORIZED_MESSAGE: &str = "WRONGPASS invalid or missing auth token";

struct State {
    redis: RedisClient,
    token: String,
}

/// Serves the Upstash REST API on `listener`, forwarding to Redis at `redis`, forever.
pub async fn serve(listener: TcpListener, redis: SocketAddr, token: String) {
    serve_with_options(listener, redis, token, UpstashOptions::default()).await;
}

/// Timeouts towards Redis. When one expires the client gets a 5xx `{"error"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstashOptions {
    /// Time to open a TCP connection to Redis (default 1 s).
    pub connect_timeout: Duration,
    /// Time for one whole request, connecting included (default 5 s). Expiry is a 504.
    pub command_timeout: Duration,
}

impl Default for UpstashOptions {
    fn default() -> UpstashOptions {
        UpstashOptions { connect_timeout: CONNECT_TIMEOUT, command_timeout: COMMAND_TIMEOUT }
    }
}

/// [`serve`] with explicit timeouts.
pub async fn serve_with_options(listener: TcpListener, redis: SocketAddr, token: String, options: UpstashOptions) {
    let redis = RedisClient::with_timeouts(redis, options.connect_timeout, options.command_timeout);
    let state = Arc::new(State { redis, token });
    serve_with(listener, move |request| handle(Arc::clone(&state), request)).await;
}

/// An Upstash endpoint running in a background thread. Dropping it shuts it down.
pub struct UpstashHandle {
    server: BackgroundServer,
    token: String,
}

impl UpstashHandle {
    /// Base URL, e.g. `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

/// Starts an endpoint on `127.0.0.1:0` in front of Redis at `redis`.
pub fn try_spawn_upstash(redis: SocketAddr, token: &str) -> Result<UpstashHandle, ServerError> {
    try_spawn_upstash_with(redis, token, UpstashOptions::default())
}

/// [`try_spawn_upstash`] with explicit timeouts.
pub fn try_spawn_upstash_with(
    redis: SocketAddr,
    token: &str,
    options: UpstashOptions,
) -> Result<UpstashHandle, ServerError> {
    let owned = token.to_string();
    let server =
        BackgroundServer::start("upstash", move |listener| serve_with_options(listener, redis, owned, options))?;
    Ok(UpstashHandle { server, token: token.to_string() })
}

/// Like [`try_spawn_upstash`], panicking if the server cannot start (for tests).
pub fn spawn_upstash(redis: SocketAddr, token: &str) -> UpstashHandle {
    try_spawn_upstash(redis, token).expect("start the Upstash REST endpoint")
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({ "error": message.into() }))
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    // Upstash documents HEAD, GET, POST and PUT as the allowed methods.
    let has_body = match method {
        Method::POST | Method::PUT => true,
        Method::GET | Method::HEAD => false,
        _ => {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("HEAD, GET, POST, PUT"));
            return response;
        }
    };
    if !authorized(&request, &state.token) {
        return error(StatusCode::UNAUTHORIZED, UNAUTHORIZED_MESSAGE);
    }
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(format) = header("upstash-response-format") {
        if !format.trim().eq_ignore_ascii_case("json") {
            return error(StatusCode::BAD_REQUEST, "ERR this emulator supports only Upstash-Response-Format: json");
        }
    }
    let encoding = Encoding::from_header(header("upstash-encoding").as_deref());
    let declared_len = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    // Far too large: refuse without reading. Slightly too large: read_body_limited drains
    // it (bounded) so the client sees the error instead of a reset.
    if declared_len.is_some_and(|len| len > 2 * MAX_REQUEST_BYTES as u64) {
        let mut response = too_large();
        response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        return response;
    }
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let body = if has_body {
        match read_body_limited(request.into_body(), MAX_REQUEST_BYTES).await {
            Ok(Some(body)) => body,
            Ok(None) => return too_large(),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("ERR cannot read body: {e}")),
        }
    } else {
        Bytes::new()
    };

    let outcome = match path.as_str() {
        "/" => match command::parse_single(&body) {
            Ok(cmd) => run_single(&state.redis, cmd, encoding).await,
            Err(e) => Err(bad_request(e)),
        },
        "/pipeline" | "/pipeline/" => match command::parse_batch(&body) {
            Ok(cmds) => run_pipeline(&state.redis, cmds, encoding).await,
            Err(e) => Err(bad_request(e)),
        },
        "/multi-exec" | "/multi-exec/" => match command::parse_batch(&body) {
            Ok(cmds) => run_multi_exec(&state.redis, cmds, encoding).await,
            Err(e) => Err(bad_request(e)),
        },
        _ => match command::parse_path(&path, &body, query.as_deref()) {
            Ok(cmd) => run_single(&state.redis, cmd, encoding).await,
            Err(e) => Err(bad_request(e)),
        },
    };
    outcome.unwrap_or_else(|response| response)
}

/// `Authorization: Bearer TOKEN` wins when present (no fallback to `_token` if it is
/// wrong); otherwise the `_token` query parameter.
fn authorized(request: &Request<Incoming>, token: &str) -> bool {
    match request.headers().get(http::header::AUTHORIZATION) {
        Some(value) => {
            value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).is_some_and(|given| given.trim() == token)
        }
        None => query_param(request.uri().query(), "_token").is_some_and(|given| given == token),
    }
}

fn too_large() -> Response<Body> {
    error(StatusCode::BAD_REQUEST, "ERR max request size exceeded")
}

fn bad_request(e: CommandError) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, e.0)
}

/// Redis could not answer: 504 if it timed out, 502 if it answered nonsense, else 503.
fn unavailable(e: RedisError) -> Response<Body> {
    let status = match e {
        RedisError::CommandTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        RedisError::Unexpected { .. } => StatusCode::BAD_GATEWAY,
        RedisError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, format!("ERR {e}"))
}

type Outcome = Result<Response<Body>, Response<Body>>;

async fn run_single(redis: &RedisClient, cmd: Command, encoding: Encoding) -> Outcome {
    command::refuse_unsupported(&cmd).map_err(bad_request)?;
    let replies = redis.pipeline(&[cmd]).await.map_err(unavailable)?;
    let reply = replies.into_iter().next().expect("one reply per command");
    let status = match reply {
        Reply::ServerError(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    Ok(json_response(status, &reply::envelope(&reply, encoding)))
}

/// Not atomic: each command answers `{"result"}` or `{"error"}` in order, status 200.
async fn run_pipeline(redis: &RedisClient, cmds: Vec<Command>, encoding: Encoding) -> Outcome {
    let mut slots: Vec<Option<Value>> = Vec::with_capacity(cmds.len());
    let mut to_send = Vec::with_capacity(cmds.len());
    for cmd in cmds {
        match command::refuse_unsupported(&cmd) {
            Ok(()) => {
                slots.push(None);
                to_send.push(cmd);
            }
            Err(e) => slots.push(Some(json!({ "error": e.0 }))),
        }
    }
    let mut replies =
        if to_send.is_empty() { Vec::new() } else { redis.pipeline(&to_send).await.map_err(unavailable)? }.into_iter();
    let results: Vec<Value> = slots
        .into_iter()
        .map(|slot| {
            slot.unwrap_or_else(|| {
                let reply = replies.next().expect("one reply per sent command");
                reply::envelope(&reply, encoding)
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(results)))
}

/// Atomic: `MULTI`, the commands, `EXEC` on one connection. A command Redis refuses to
/// queue discards the whole transaction (400 with one `{"error"}`), as Upstash documents;
/// a command that fails while executing is an `{"error"}` entry and the rest still run.
async fn run_multi_exec(redis: &RedisClient, cmds: Vec<Command>, encoding: Encoding) -> Outcome {
    for cmd in &cmds {
        command::refuse_unsupported(cmd).map_err(bad_request)?;
    }
    match redis.transaction(&cmds).await.map_err(unavailable)? {
        Transaction::Ran(results) => {
            let results = results.iter().map(|r| reply::envelope(r, encoding)).collect();
            Ok(json_response(StatusCode::OK, &Value::Array(results)))
        }
        Transaction::Discarded(refusal) => Err(error(StatusCode::BAD_REQUEST, reply::error_message(&refusal))),
    }
}
