//! Shared HTTP/1.1 server plumbing for the devstack servers: the accept loop, the response
//! body type (whole or streamed through a channel), JSON helpers, and a handle that runs a
//! server on its own tokio runtime in a background thread and stops it when dropped.
//!
//! This module knows nothing about Upstash or LLM providers; it must not route or parse
//! request bodies.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// Error type of response bodies. A streamed body that yields an error makes hyper abort
/// the connection without finishing the response (used to model a cut stream).
pub type BodyError = std::io::Error;

/// Response body: either complete, or streamed frame by frame through a channel.
pub enum Body {
    Full(Full<Bytes>),
    Channel(mpsc::Receiver<Result<Bytes, BodyError>>),
}

impl Body {
    pub fn empty() -> Body {
        Body::Full(Full::new(Bytes::new()))
    }

    pub fn from_bytes(bytes: impl Into<Bytes>) -> Body {
        Body::Full(Full::new(bytes.into()))
    }

    /// A streamed body and the sender that feeds it. Each `Ok` chunk is written (and
    /// flushed) as soon as it is sent; an `Err` aborts the connection; dropping the sender
    /// ends the body normally.
    pub fn channel() -> (mpsc::Sender<Result<Bytes, BodyError>>, Body) {
        let (tx, rx) = mpsc::channel(16);
        (tx, Body::Channel(rx))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Full(full) => Pin::new(full).poll_frame(cx).map_err(|never: Infallible| match never {}),
            Body::Channel(rx) => rx.poll_recv(cx).map(|item| item.map(|chunk| chunk.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(full) => full.is_end_stream(),
            Body::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(full) => full.size_hint(),
            Body::Channel(_) => SizeHint::default(),
        }
    }
}

/// A response with a JSON body and `content-type: application/json`.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    bytes_response(status, "application/json", value.to_string())
}

/// A response with the given body and content type.
pub fn bytes_response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::from_bytes(body));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Reads a request body up to `limit` bytes. `Ok(None)` means it was larger than `limit`;
/// the excess is then read and discarded (never stored) for at most `limit` more bytes and
/// two seconds, so the client can finish sending and see the error response instead of a
/// connection reset.
pub async fn read_body_limited(mut body: Incoming, limit: usize) -> Result<Option<Bytes>, hyper::Error> {
    let mut collected = Vec::new();
    let mut too_large = false;
    let mut discarded = 0usize;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let frame = if too_large {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => break,
            }
        } else {
            body.frame().await
        };
        let Some(frame) = frame else { break };
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        if too_large {
            discarded += data.len();
            if discarded > limit {
                break;
            }
        } else if collected.len() + data.len() > limit {
            too_large = true;
            collected = Vec::new();
        } else {
            collected.extend_from_slice(&data);
        }
    }
    Ok((!too_large).then(|| Bytes::from(collected)))
}

/// Serves HTTP/1.1 on `listener` forever, one task per connection.
pub async fn serve_with<H, Fut>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Typically EMFILE; back off briefly instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let handler = Arc::clone(&handler);
                async move { Ok::<_, Infallible>(handler(request).await) }
            });
            // Errors here are client disconnects or deliberately aborted bodies.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// Why a background server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind 127.0.0.1:0: {0}")]
    Bind(std::io::Error),
    #[error("cannot start the server's tokio runtime: {0}")]
    Runtime(std::io::Error),
}

/// A server running on its own runtime in a background thread; dropping it stops the
/// server and closes every connection it had open.
pub struct BackgroundServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    /// Binds `127.0.0.1:0` and runs `serve(listener)` in a new thread.
    pub fn start<F, Fut>(name: &str, serve: F) -> Result<BackgroundServer, ServerError>
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(ServerError::Bind)?;
        std_listener.set_nonblocking(true).map_err(ServerError::Bind)?;
        let addr = std_listener.local_addr().map_err(ServerError::Bind)?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ServerError::Runtime)?;
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("devstack-{name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener =
                        TcpListener::from_std(std_listener).expect("a std listener converts inside a runtime");
                    tokio::select! {
                        () = serve(listener) => {}
                        _ = shutdown_rx => {}
                    }
                });
                // Dropping the runtime here cancels every connection task.
                drop(runtime);
            })
            .map_err(ServerError::Runtime)?;
        Ok(BackgroundServer { addr, shutdown: Some(shutdown), thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
