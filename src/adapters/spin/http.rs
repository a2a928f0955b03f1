//! The `Http` port over Spin's outbound `wasi:http` (only hosts in `allowed_outbound_hosts` are
//! reachable; others fail as unavailable). The request is converted to WASI and the task yields
//! once before it is sent: measured on real Spin 4, Spin's client then sends head and body in one
//! write (see `fetch`). Response bodies stay streams. When the core gives up on a call (a timeout
//! drops the future or the stream), the outbound request is dropped, which cancels it in the
//! component model.

use bytes::Bytes;
use futures_util::StreamExt;

use super::SpinHost;
use crate::ports::{Body, BodyError, Http, PortError};

impl Http for SpinHost {
    async fn fetch(&self, request: http::Request<Bytes>) -> Result<http::Response<Body>, PortError> {
        let (mut parts, body) = request.into_parts();
        // With its length and in one piece: see entry.rs on small writes and TCP_NODELAY.
        parts.headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
        let request = http::Request::from_parts(parts, http_body_util::Full::new(body));
        // As for answers (entry.rs): convert, yield once to the host, then send. Measured on real
        // Spin 4.1: without the yield its outbound client sent the head and the body in two
        // `sendto` calls for most requests, and the upstream's delayed ACK held the body ~40 ms;
        // with it, one `sendto` for all but a few in a thousand.
        let request = spin_sdk::wasip3::http_compat::http_into_wasi_request(request)
            .map_err(|e| PortError::Unavailable(e.to_string()))?;
        spin_sdk::wasip3::wit_bindgen::yield_async().await;
        let response = spin_sdk::http::send(request).await.map_err(|e| PortError::Unavailable(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let stream = http_body_util::BodyStream::new(body).filter_map(|frame| async move {
            match frame {
                Ok(frame) => frame.into_data().ok().map(Ok),
                Err(e) => Some(Err(BodyError(e.to_string()))),
            }
        });
        Ok(http::Response::from_parts(parts, Body::Stream(Box::pin(stream))))
    }
}
