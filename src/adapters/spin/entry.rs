//! The Spin HTTP handler: converts the WASIp3 request to `http::Request<Body>`, runs the
//! gateway, and converts the answer back; streaming bodies stay streams (spin-sdk sends the
//! body after the handler returns). The configuration is read on every request: a Spin
//! instance serves one request, so there is nothing to keep it in.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;
use spin_sdk::http::{IntoResponse, Request};

use super::vars::SpinVars;
use super::SpinHost;
use crate::config::Config;
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

#[spin_sdk::http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let host = SpinHost::default();
    let vars = SpinVars::load().await;
    let config = Config::from_vars(&vars);
    let (parts, body) = request.into_parts();
    let body = http_body_util::BodyStream::new(body).filter_map(|frame| async move {
        match frame {
            Ok(frame) => frame.into_data().ok().map(Ok),
            Err(e) => Some(Err(BodyError(e.to_string()))),
        }
    });
    let request = http::Request::from_parts(parts, Body::Stream(Box::pin(body)));
    let response = gateway::handle(&host, config.as_ref(), request).await;
    let (parts, body) = response.into_parts();
    http::Response::from_parts(parts, OutBody(body))
}
