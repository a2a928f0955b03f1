//! The `Http` port over Spin's outbound `wasi:http` (only hosts in `allowed_outbound_hosts` are
//! reachable; others fail as unavailable). Response bodies stay streams. When the core gives up
//! on a call (a timeout drops the future or the stream), the outbound request is dropped, which
//! cancels it in the component model.

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
