//! The Spin HTTP handler: converts the WASIp3 request to `http::Request<Body>`, runs the
//! gateway, and converts the answer back; streaming bodies stay streams (spin-sdk sends the
//! body after the handler returns). The configuration is read once per instance (Spin 4 reuses
//! an instance for many requests, several at once; variables cannot change while it lives) and
//! its problems are logged then.

use std::cell::OnceCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;
use spin_sdk::http::{IntoResponse, Request};

use super::vars::SpinVars;
use super::SpinHost;
use crate::config::{Config, ConfigError};
use crate::gateway;
use crate::ports::{Body, BodyError};

/// The gateway's body as an `http_body::Body` (spin-sdk streams it out after the handler
/// returns). Boxed bodies of the http-body crates require `Send`; ours never leave the instance.
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
async fn handle(request: Request) -> impl IntoResponse {
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
    http::Response::from_parts(parts, OutBody(body))
}
