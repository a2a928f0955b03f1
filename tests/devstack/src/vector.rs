//! An Upstash-Vector-compatible REST endpoint for local runs and tests, over an in-memory index
//! (`vector::index`) of all-MiniLM-L6-v2's 384 dimensions with exact cosine search. It speaks
//! Upstash's wire format as the official `@upstash/vector` client uses it: `POST /{command}` or
//! `POST /{command}/{namespace}` (`upsert`, `upsert-data`, `query`, `query-data`, `fetch`,
//! `delete`, `range`, `reset`, `reset?all`, `info`, `list-namespaces`,
//! `delete-namespace/{namespace}`), `Authorization: Bearer TOKEN`, `{"result": ...}` on success
//! and `{"error": "...", "status": N}` on failure (401 for a bad token). The `-data` commands
//! embed with the real model (`minilm`). Metadata filters are refused (400), not ignored.
//! For tests only: the index lives as long as the server.

mod index;

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub use self::index::{cosine, Failure, Index};
use crate::http_server::{json_response, read_body_limited, serve_with, BackgroundServer, Body, ServerError};
use crate::minilm;
use crate::upstream::embeddings::Embedder;

/// Upstash's own limit on a request body.
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Serves the endpoint on `listener` forever, accepting `token`.
pub async fn serve(listener: TcpListener, token: String) {
    let index = Arc::new(Mutex::new(Index::new(minilm::DIMENSIONS)));
    let token = Arc::new(token);
    serve_with(listener, move |request| handle(Arc::clone(&index), Arc::clone(&token), request)).await;
}

fn failure(status: u16, message: &str) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(code, &json!({"error": message, "status": status}))
}

async fn handle(index: Arc<Mutex<Index>>, token: Arc<String>, request: Request<Incoming>) -> Response<Body> {
    let authorized = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given.trim() == token.as_str());
    if !authorized {
        return failure(401, "Unauthorized: Invalid auth token");
    }
    if !matches!(*request.method(), Method::POST | Method::GET | Method::DELETE) {
        return failure(405, "Method not allowed");
    }
    let path = request.uri().path().trim_start_matches('/').to_owned();
    let all = request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "all"));
    let (command, ns) = path.split_once('/').unwrap_or((path.as_str(), ""));
    let (command, ns) = (command.to_owned(), crate::urlcodec::percent_decode(ns));
    let ns = String::from_utf8_lossy(&ns).into_owned();
    let body = match read_body_limited(request.into_body(), MAX_BODY_BYTES).await {
        Ok(Some(b)) => b,
        Ok(None) => return failure(413, "Request body is too large"),
        Err(_) => return failure(400, "Cannot read the request body"),
    };
    let body: Value = match body.is_empty() {
        true => Value::Null,
        false => match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return failure(400, &format!("Invalid request body: {e}")),
        },
    };
    let embed = |texts: &[String]| minilm::shared().and_then(|m| m.embed(texts));
    let result = index.lock().expect("index mutex poisoned").run(&command, &ns, all, &body, &embed);
    match result {
        Ok(result) => json_response(StatusCode::OK, &json!({ "result": result })),
        Err(Failure { status, message }) => failure(status, &message),
    }
}

/// A vector endpoint running in a background thread. Dropping it shuts it down.
pub struct VectorHandle {
    server: BackgroundServer,
    token: String,
}

impl VectorHandle {
    /// `http://127.0.0.1:PORT`, the `UPSTASH_VECTOR_REST_URL` to use.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

/// Starts a vector endpoint on `127.0.0.1:0` accepting `token`.
pub fn try_spawn_vector(token: &str) -> Result<VectorHandle, ServerError> {
    let owned = token.to_owned();
    let server = BackgroundServer::start("vector", move |listener| serve(listener, owned))?;
    Ok(VectorHandle { server, token: token.to_owned() })
}

/// Like [`try_spawn_vector`], panicking if it cannot start (for tests).
pub fn spawn_vector(token: &str) -> VectorHandle {
    try_spawn_vector(token).expect("start the vector endpoint")
}
