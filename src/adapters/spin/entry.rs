//! The Spin HTTP handler: converts the WASIp3 request to `http::Request<Body>`, runs the
//! gateway, and converts the answer back; streaming bodies stay streams (a task spawned by the
//! conversion writes the body to the response's WASIp3 stream). The handler yields once to the
//! host between converting and returning: measured on real Spin 4, this is what makes an answer
//! in memory leave with its head in one write instead of two (see `handle`). The configuration
//! is read once per instance (Spin 4 reuses an instance for many requests, several at once;
//! variables cannot change while it lives) and its problems are logged then.

use std::cell::OnceCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;
use spin_sdk::http::Request;
use spin_sdk::wasip3::http::types::{ErrorCode, Response};

use super::vars::SpinVars;
use super::SpinHost;
use crate::config::{Config, ConfigError};
use crate::gateway;
use crate::ports::{Body, BodyError};

/// The gateway's body as an `http_body::Body` (the conversion's spawned task streams it out).
/// Boxed bodies of the http-body crates require `Send`; ours never leave the instance.
struct OutBody(Body);

impl http_body::Body for OutBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().0 {
            Body::Full(bytes) if bytes.is_empty() => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(bytes))))),
            Body::Stream(stream) => stream.as_mut().poll_next(cx).map(|item| item.map(|r| r.map(Frame::data))),
        }
    }
}

thread_local! {
    static CONFIG: OnceCell<Rc<Result<Config, ConfigError>>> = const { OnceCell::new() };
}

/// This instance's configuration, read on its first request. Requests that start together
/// before it is set each read it; the first to finish keeps its copy (they are equal).
async fn config(host: &SpinHost) -> Rc<Result<Config, ConfigError>> {
    if let Some(config) = CONFIG.with(|cell| cell.get().cloned()) {
        return config;
    }
    let vars = SpinVars::load().await;
    let config = Rc::new(Config::from_vars(&vars));
    CONFIG.with(|cell| {
        if cell.set(config.clone()).is_ok() {
            gateway::report_config(host, config.as_ref().as_ref());
        }
        cell.get().cloned().unwrap_or(config)
    })
}

#[spin_sdk::http_service]
async fn handle(request: Request) -> Result<Response, ErrorCode> {
    let host = SpinHost::default();
    let config = config(&host).await;
    let (parts, body) = request.into_parts();
    let body = http_body_util::BodyStream::new(body).filter_map(|frame| async move {
        match frame {
            Ok(frame) => frame.into_data().ok().map(Ok),
            Err(e) => Some(Err(BodyError(e.to_string()))),
        }
    });
    let request = http::Request::from_parts(parts, Body::Stream(Box::pin(body)));
    let response = gateway::handle(&host, config.as_ref().as_ref(), request).await;
    let (mut parts, body) = response.into_parts();
    // An answer already in memory goes out with its length and as one frame, so the host can
    // write head and body together (Spin's server does not set TCP_NODELAY: every extra small
    // write on a keep-alive connection can wait for a delayed ACK).
    let bodiless = parts.status == http::StatusCode::NO_CONTENT || parts.status == http::StatusCode::NOT_MODIFIED;
    if let (Body::Full(bytes), false) = (&body, bodiless) {
        parts.headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(bytes.len()));
    }
    // Convert here and yield once (`yield_async`: the guest task yields to the host) before
    // returning. Measured on real Spin 4.1 (wasmtime-wasi-http 47 + hyper, no TCP_NODELAY): without
    // the yield, the head of about half of the tier-1 hits left alone and the body ~40 ms later,
    // after the client's delayed ACK; with it, head and body leave in one `writev`
    // (tests/devstack/SPIN_REAL_RESULTS.md). wasmtime's trace shows the same order inside the
    // component either way (task.return, then the body write, before the host attaches its
    // reader); the yield changes how the host schedules the rest, which was not traced further.
    // It costs one host round trip and nothing on hosts without the race.
    let response =
        spin_sdk::wasip3::http_compat::http_into_wasi_response(http::Response::from_parts(parts, OutBody(body)))?;
    spin_sdk::wasip3::wit_bindgen::yield_async().await;
    Ok(response)
}
