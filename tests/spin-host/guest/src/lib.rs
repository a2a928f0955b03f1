//! Test guest for spin-host: one async `#[http_service]` handler that exercises each capability
//! the host provides, so the e2e tests can check them for real. Not part of the product; it must
//! stay small and deterministic (no clocks except the explicit `delay_ms` of `/stream`).
//!
//! Routes, relative to the component's route (all GET unless said otherwise; plain text):
//! - `/var/NAME`: the component variable NAME, or `error: <variant>` with status 500
//! - `/kv/set/KEY` (POST, body = value), `/kv/get/KEY`, `/kv/delete/KEY`, `/kv/exists/KEY`,
//!   `/kv/keys`, `/kv/open/LABEL`, `/kv/big/SIZE` (sets key `big` to SIZE bytes)
//! - `/fetch?url=URL`: outbound GET; `status NNN\n<body>` or `error: <ErrorCode>` with 502
//! - `/stream?chunks=N&delay_ms=D`: N lines `chunk i` streamed, D ms apart
//! - `/after?key=KEY&url=URL`: answers `accepted` at once, then (after the response) fetches URL
//!   and stores its body under KEY: post-response work
//! - `/headers`: the `host` and `spin-*` request headers, one `name: value` per line
//! - `/instance?wait=URL`: `N`, the number of this request among those the instance has served
//!   (a static counter, so 1 on a fresh instance); with `wait`, fetches URL before answering
//!   (held open by a gated upstream, so tests can keep several requests in one instance)
//! - `/trap`: panics (the host must answer 500 and keep serving)

use std::sync::atomic::{AtomicU32, Ordering};

use futures::SinkExt;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{IntoResponse, Request, Response, StatusCode};
use spin_sdk::http_service;
use spin_sdk::key_value::Store;

fn text(status: u16, body: impl Into<String>) -> Response<String> {
    let status = StatusCode::from_u16(status).expect("static status codes are valid");
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
}

fn query<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })
}

async fn kv(req: Request, op: &str, arg: &str) -> Response<String> {
    let label = if op == "open" { arg } else { "default" };
    let store = match Store::open(label).await {
        Ok(store) => store,
        Err(e) => return text(500, format!("error: {e:?}")),
    };
    let result = match op {
        "open" => Ok("ok".to_string()),
        "set" => match req.into_body().bytes().await {
            Ok(body) => store.set(arg, &body).await.map(|()| "ok".to_string()),
            Err(e) => return text(400, format!("bad body: {e:?}")),
        },
        "get" => match store.get(arg).await {
            Ok(Some(value)) => Ok(String::from_utf8_lossy(&value).into_owned()),
            Ok(None) => return text(404, "absent"),
            Err(e) => Err(e),
        },
        "delete" => store.delete(arg).await.map(|()| "ok".to_string()),
        "exists" => store.exists(arg).await.map(|b| b.to_string()),
        "keys" => store.get_keys().await.collect().await.map(|keys| keys.join(",")),
        "big" => {
            let size: usize = arg.parse().unwrap_or(0);
            store.set("big", &vec![b'x'; size]).await.map(|()| "ok".to_string())
        }
        _ => return text(404, "unknown kv op"),
    };
    match result {
        Ok(body) => text(200, body),
        Err(e) => text(500, format!("error: {e:?}")),
    }
}

async fn fetch(url: &str) -> Result<(u16, String), String> {
    let response = spin_sdk::http::get(url).await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response.into_body().bytes().await.map_err(|e| format!("{e:?}"))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Requests this instance has served (every route counts). Hosts that reuse instances keep it.
static REQUESTS: AtomicU32 = AtomicU32::new(0);

#[http_service]
async fn handle(req: Request) -> impl IntoResponse {
    let nth = REQUESTS.fetch_add(1, Ordering::SeqCst) + 1;
    // Route on Spin's `spin-path-info` (the part after the component's route prefix), so the
    // same guest can be mounted under several routes.
    let path = match req.headers().get("spin-path-info").and_then(|v| v.to_str().ok()) {
        Some(info) if !info.is_empty() => info.to_string(),
        _ => req.uri().path().to_string(),
    };
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(3, '/').collect();
    match segments.as_slice() {
        ["var", name] => match spin_sdk::variables::get(*name).await {
            Ok(value) => text(200, value).into_response(),
            Err(e) => text(500, format!("error: {e:?}")).into_response(),
        },
        ["kv", op, arg] => kv(req, op, arg).await.into_response(),
        ["kv", "keys"] => kv(req, "keys", "").await.into_response(),
        ["fetch"] => match query(&req, "url") {
            Some(url) => match fetch(url).await {
                Ok((status, body)) => text(200, format!("status {status}\n{body}")).into_response(),
                Err(e) => text(502, format!("error: {e}")).into_response(),
            },
            None => text(400, "missing url").into_response(),
        },
        ["stream"] => {
            let chunks: u32 = query(&req, "chunks").and_then(|v| v.parse().ok()).unwrap_or(3);
            let delay_ms: u64 = query(&req, "delay_ms").and_then(|v| v.parse().ok()).unwrap_or(0);
            let (mut tx, body) = spin_sdk::http::body::stream::<String>();
            spin_sdk::wasip3::spawn(async move {
                for i in 0..chunks {
                    if delay_ms > 0 && i > 0 {
                        spin_sdk::wasip3::clocks::monotonic_clock::wait_for(delay_ms * 1_000_000).await;
                    }
                    if tx.send(format!("chunk {i}\n")).await.is_err() {
                        break;
                    }
                }
            });
            Response::new(body).into_response()
        }
        ["after"] => {
            let (Some(key), Some(url)) = (query(&req, "key"), query(&req, "url")) else {
                return text(400, "missing key or url").into_response();
            };
            let (key, url) = (key.to_string(), url.to_string());
            // Runs in the same component-model task after the handler has returned its response.
            spin_sdk::wasip3::spawn(async move {
                let value = match fetch(&url).await {
                    Ok((_, body)) => body,
                    Err(e) => format!("error: {e}"),
                };
                if let Ok(store) = Store::open_default().await {
                    let _ = store.set(&key, value.as_bytes()).await;
                }
            });
            text(202, "accepted").into_response()
        }
        ["headers"] => {
            let mut lines: Vec<String> = req
                .headers()
                .iter()
                .filter(|(name, _)| name.as_str() == "host" || name.as_str().starts_with("spin-"))
                .map(|(name, value)| format!("{}: {}", name, value.to_str().unwrap_or("<binary>")))
                .collect();
            lines.sort();
            lines.push(format!("uri: {}", req.uri()));
            text(200, lines.join("\n")).into_response()
        }
        ["instance"] => {
            if let Some(url) = query(&req, "wait")
                && let Err(e) = fetch(url).await
            {
                return text(502, format!("error: {e}")).into_response();
            }
            text(200, nth.to_string()).into_response()
        }
        ["trap"] => panic!("the test guest was asked to trap"),
        _ => text(404, format!("no route for {path}")).into_response(),
    }
}
