//! The HTTP side: accept connections, route each request as Spin does, add Spin's `spin-*`
//! request headers, run it in the component, and shut down cleanly.
//!
//! [`spawn`] runs everything on its own thread and tokio runtime and returns once the socket is
//! bound and every component is compiled, so a test can send requests right away. Shutdown stops
//! accepting, lets open requests and post-response work finish (bounded by a grace period), then
//! drops the runtime. Accepted sockets keep the OS default (Nagle's algorithm on, no
//! `TCP_NODELAY`), as Spin's server does, unless `tcp_nodelay` asks for it. This module must not
//! touch Wasm internals beyond `runtime::App::execute`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::manifest::Manifest;
use crate::reuse::InstanceReuse;
use crate::routes::{RouteMatch, Router};
use crate::runtime::{App, RuntimeOptions};

/// How long shutdown waits for open requests and post-response work.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Path of `spin.toml`.
    pub manifest: PathBuf,
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Directory of the key-value database; in memory when `None`.
    pub kv_dir: Option<PathBuf>,
    /// `--variable name=value` values.
    pub variables: Vec<(String, String)>,
    /// Bound on an instance's work after its last response (guest tasks, bodies being sent).
    pub post_response_timeout: Duration,
    /// Instance reuse; the default is Spin's (128 requests, 16 at once, 1 s idle).
    pub reuse: InstanceReuse,
    /// Set `TCP_NODELAY` on accepted sockets (`--tcp-nodelay`); off by default, as in Spin.
    pub tcp_nodelay: bool,
}

impl Options {
    /// Options for `manifest` on `127.0.0.1:0`, in-memory key-value, no variables.
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            kv_dir: None,
            variables: Vec::new(),
            post_response_timeout: Duration::from_secs(30),
            reuse: InstanceReuse::default(),
            tcp_nodelay: false,
        }
    }
}

/// A running host. Dropping it shuts the host down and waits for its thread.
#[derive(Debug)]
pub struct SpinHostHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SpinHostHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shut down and wait (same as dropping).
    pub fn shutdown(self) {}
}

impl Drop for SpinHostHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("spin-host: server thread panicked");
        }
    }
}

/// Load the application and serve it on a new thread with its own tokio runtime.
pub fn spawn(options: Options) -> Result<SpinHostHandle, Error> {
    let manifest = Manifest::load(&options.manifest)?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<SocketAddr, Error>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("spin-host".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::Runtime(e.to_string())));
                    return;
                }
            };
            runtime.block_on(async move {
                match start(&manifest, &options).await {
                    Ok((server, addr)) => {
                        let _ = ready_tx.send(Ok(addr));
                        server.run(async { stop_rx.await.unwrap_or(()) }).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(|e| Error::Runtime(format!("cannot start the server thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(addr)) => Ok(SpinHostHandle { addr, stop: Some(stop_tx), thread: Some(thread) }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(Error::Runtime("the server thread stopped before it was ready".into()))
        }
    }
}

/// A bound, loaded server, ready to run.
pub struct Server {
    listener: TcpListener,
    state: Arc<ServerState>,
}

struct ServerState {
    app: App,
    router: Router,
    local: SocketAddr,
    tcp_nodelay: bool,
}

/// Load the app and bind the socket (inside a tokio runtime). Returns the bound address.
pub async fn start(manifest: &Manifest, options: &Options) -> Result<(Server, SocketAddr), Error> {
    let router = Router::build(&manifest.routes)?;
    let runtime_options = RuntimeOptions {
        variables: options.variables.clone(),
        kv_dir: options.kv_dir.clone(),
        post_response_timeout: options.post_response_timeout,
        reuse: options.reuse,
    };
    let manifest_copy = manifest.clone();
    let app = tokio::task::spawn_blocking(move || App::load(&manifest_copy, &runtime_options))
        .await
        .map_err(|e| Error::Runtime(format!("loading the application failed: {e}")))??;
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|source| Error::Listen { addr: options.listen.to_string(), source })?;
    let local = listener.local_addr().map_err(|source| Error::Listen { addr: options.listen.to_string(), source })?;
    let state = Arc::new(ServerState { app, router, local, tcp_nodelay: options.tcp_nodelay });
    Ok((Server { listener, state }, local))
}

impl Server {
    /// Serve until `stop` resolves, then shut down gracefully.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut stop = std::pin::pin!(stop);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        eprintln!("spin-host: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Spin never sets TCP_NODELAY on its connections; doing so by default would hide the
            // Nagle / delayed-ACK stalls its users see on keep-alive connections.
            if self.state.tcp_nodelay
                && let Err(e) = stream.set_nodelay(true)
            {
                eprintln!("spin-host: cannot set TCP_NODELAY on the connection from {peer}: {e}");
            }
            let state = Arc::clone(&self.state);
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(state, req, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await
                    && !e.is_incomplete_message()
                {
                    eprintln!("spin-host: connection from {peer}: {e}");
                }
            });
        }
        drop(self.listener);
        let state = Arc::clone(&self.state);
        let drained = async move {
            graceful.shutdown().await;
            state.app.wait_idle().await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
            eprintln!("spin-host: shutdown grace period of {SHUTDOWN_GRACE:?} elapsed; stopping anyway");
        }
    }
}

type HostBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn text(status: StatusCode, message: impl Into<String>) -> Response<HostBody> {
    let mut response = Response::new(Full::new(Bytes::from(message.into())).map_err(|e| match e {}).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

async fn handle(state: Arc<ServerState>, mut req: Request<Incoming>, peer: SocketAddr) -> Response<HostBody> {
    let Some(route) = state.router.route(req.uri().path()) else {
        return text(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(component) = state.app.component(&route.component).cloned() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "route refers to a missing component");
    };
    if let Err(message) = prepare_request(&mut req, &route, state.local, peer) {
        return text(StatusCode::BAD_REQUEST, message);
    }
    match state.app.execute(&component, req).await {
        Ok(response) => response.map(|body| body.map_err(Into::into).boxed_unsync()),
        Err(e) => {
            eprintln!("spin-host: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("Internal Server Error: {e}"))
        }
    }
}

/// Make the URI absolute and add Spin's headers, as `spin up` does for `wasi:http` components.
fn prepare_request(
    req: &mut Request<Incoming>,
    route: &RouteMatch,
    local: SocketAddr,
    peer: SocketAddr,
) -> Result<(), String> {
    let host = match req.headers().get(http::header::HOST) {
        Some(value) => value.to_str().map_err(|_| "invalid Host header".to_string())?.to_string(),
        None => {
            let host = local.to_string();
            let value = HeaderValue::from_str(&host).map_err(|e| e.to_string())?;
            req.headers_mut().insert(http::header::HOST, value);
            host
        }
    };
    let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_string();
    let full_url = format!("http://{host}{path_and_query}");
    *req.uri_mut() = full_url.parse().map_err(|e| format!("bad request URI {full_url:?}: {e}"))?;
    let headers = [
        ("spin-full-url", full_url.as_str()),
        ("spin-path-info", route.path_info.as_str()),
        ("spin-matched-route", route.matched_route.as_str()),
        ("spin-base-path", "/"),
        ("spin-raw-component-route", route.raw_route.as_str()),
        ("spin-component-route", route.component_route.as_str()),
        ("spin-client-addr", &peer.to_string()),
    ];
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).map_err(|_| format!("cannot put {value:?} in header {name}"))?;
        req.headers_mut().insert(HeaderName::from_static(name), value);
    }
    Ok(())
}
