//! The `Http` port over the Workers `fetch`. Response bodies stay streams. When the core gives up
//! on a call (a timeout drops the future or the stream), the fetch is aborted, so a stalled peer
//! does not keep a connection open.

use bytes::Bytes;
use futures_util::StreamExt;
use worker::{AbortController, Fetch, Headers, Method, RequestInit};

use super::CfHost;
use crate::ports::{Body, BodyError, Http, PortError};

/// Aborts the fetch when dropped before `disarm`.
struct AbortOnDrop(Option<AbortController>);

impl AbortOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(controller) = self.0.take() {
            controller.abort();
        }
    }
}

impl Http for CfHost {
    async fn fetch(&self, request: http::Request<Bytes>) -> Result<http::Response<Body>, PortError> {
        let (parts, body) = request.into_parts();
        let headers = Headers::new();
        for (name, value) in &parts.headers {
            let value = value.to_str().map_err(|e| PortError::Failed(e.to_string()))?;
            headers.append(name.as_str(), value).map_err(|e| PortError::Failed(e.to_string()))?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::from(parts.method.as_str().to_owned())).with_headers(headers);
        if !body.is_empty() {
            init.with_body(Some(js_sys::Uint8Array::from(&body[..]).into()));
        }
        let outgoing = worker::Request::new_with_init(&parts.uri.to_string(), &init)
            .map_err(|e| PortError::Failed(e.to_string()))?;
        let controller = AbortController::default();
        let signal = controller.signal();
        let mut guard = AbortOnDrop(Some(controller));
        let mut response = Fetch::Request(outgoing)
            .send_with_signal(&signal)
            .await
            .map_err(|e| PortError::Unavailable(e.to_string()))?;

        let mut builder = http::Response::builder().status(response.status_code());
        for (name, value) in response.headers().entries() {
            builder = builder.header(name, value);
        }
        let body = match response.stream() {
            Ok(stream) => {
                // The guard lives as long as the stream: dropping an unfinished stream aborts it.
                Body::Stream(Box::pin(futures_util::stream::unfold(Some((stream, guard)), |state| async move {
                    let (mut stream, mut guard) = state?;
                    match stream.next().await {
                        Some(Ok(chunk)) => Some((Ok(Bytes::from(chunk)), Some((stream, guard)))),
                        Some(Err(e)) => Some((Err(BodyError(e.to_string())), None)),
                        None => {
                            guard.disarm();
                            None
                        }
                    }
                })))
            }
            Err(_) => {
                guard.disarm();
                Body::empty()
            }
        };
        builder.body(body).map_err(|e| PortError::Failed(e.to_string()))
    }
}
