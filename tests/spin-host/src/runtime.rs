//! The Wasm side: one wasmtime engine and linker, the application's compiled components, and the
//! execution of one request in a fresh instance (as Spin does: no instance reuse).
//!
//! WASIp3 lets a guest keep running after it has returned its response (`task.return` ends the
//! call, not the task). So the store is kept alive, and its event loop (`run_concurrent`) keeps
//! running, until BOTH the guest's tasks have exited (`Accessor::poll_no_interesting_tasks`) AND
//! the response body has been fully sent or dropped; the whole post-response phase is bounded by
//! `post_response_timeout`. See README.md for what wasmtime 48 and Spin do. This module must not
//! know about sockets or hyper: it takes an `http::Request` and gives back an `http::Response`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::{Notify, oneshot};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p3::Request as WasiRequest;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, ForbiddenHeaderFilter, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::error::{Error, wasm_message};
use crate::kv::{KvBackend, KvState, KvView, SpinKeyValue};
use crate::manifest::Manifest;
use crate::outbound::{AllowedHosts, OutboundHooks};
use crate::variables::{Resolver, SpinVariables, VariablesState, component_values};

/// The body of a response produced by a guest.
pub type ResponseBody = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// The data of one store (one request's instance).
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    table: ResourceTable,
    kv: KvState,
    vars: VariablesState,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

fn http_view(state: &mut HostState) -> WasiHttpCtxView<'_> {
    state.http()
}

/// One component, compiled and linked, with everything its instances need.
pub struct ComponentRuntime {
    id: Arc<str>,
    pre: ServicePre<HostState>,
    allowed_hosts: Arc<AllowedHosts>,
    kv_stores: Arc<BTreeSet<String>>,
    variables: Arc<BTreeMap<String, String>>,
    environment: Vec<(String, String)>,
}

impl ComponentRuntime {
    /// The component id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Options of the Wasm runtime that do not come from the manifest.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// `--variable name=value` values.
    pub variables: Vec<(String, String)>,
    /// Directory of the SQLite key-value database; in memory when `None`.
    pub kv_dir: Option<std::path::PathBuf>,
    /// How long a guest may keep working after its response (and the response body may take).
    pub post_response_timeout: Duration,
}

/// A loaded application: every component compiled, every variable resolved.
pub struct App {
    engine: Engine,
    components: BTreeMap<String, Arc<ComponentRuntime>>,
    kv: Arc<KvBackend>,
    post_response_timeout: Duration,
    instances: Arc<Instances>,
}

/// Counts live instances (request plus post-response work) so shutdown can wait for them.
#[derive(Default)]
struct Instances {
    live: AtomicUsize,
    idle: Notify,
}

/// Decrements the live-instance count when the instance's task ends (even by panic).
struct LiveInstance(Arc<Instances>);

impl LiveInstance {
    fn new(instances: &Arc<Instances>) -> Self {
        instances.live.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(instances))
    }
}

impl Drop for LiveInstance {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Hooks used only to convert the inbound request: like the defaults, except that `host` is
/// kept (Spin passes the client's `Host` header to the component).
struct InboundHooks;

impl WasiHttpHooks for InboundHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        Arc::new(|name| *name != http::header::HOST && DEFAULT_FORBIDDEN_HEADERS.contains(name))
    }
}

/// Why a request got no response from the guest.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The guest answered a `wasi:http` error code instead of a response.
    #[error("component `{component}` returned error code {code:?}")]
    ErrorCode {
        /// The component id.
        component: String,
        /// The error code, debug-printed.
        code: String,
    },
    /// The guest trapped, or the host failed, before a response existed.
    #[error("component `{component}` failed before responding: {message}")]
    Failed {
        /// The component id.
        component: String,
        /// The trap or error, with its chain.
        message: String,
    },
}

/// The engine, shared by every app of the process (its configuration never changes).
fn engine() -> Result<Engine, Error> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.wasm_component_model(true);
            config.wasm_component_model_async(true);
            Engine::new(&config).map_err(|e| wasm_message(&e))
        })
        .clone()
        .map_err(Error::Runtime)
}

/// Compile a component, reusing an earlier compilation of the same bytes in this process
/// (Cranelift is slow in debug builds, and tests start many hosts on one guest).
fn compile(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    static CACHE: Mutex<Vec<(Vec<u8>, Component)>> = Mutex::new(Vec::new());
    if let Some((_, component)) = CACHE.lock().ok().and_then(|c| c.iter().find(|(b, _)| b == bytes).cloned()) {
        return Ok(component);
    }
    let component = Component::new(engine, bytes)?;
    if let Ok(mut cache) = CACHE.lock() {
        cache.push((bytes.to_vec(), component.clone()));
    }
    Ok(component)
}

fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    // Rust's std for wasm32-wasip2 imports WASIp2 (cli, io, clocks, random, filesystem).
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    crate::bindings::spin::key_value::key_value::add_to_linker::<HostState, SpinKeyValue>(&mut linker, |s| KvView {
        state: &mut s.kv,
        table: &mut s.table,
    })?;
    crate::bindings::spin::variables::variables::add_to_linker::<HostState, SpinVariables>(&mut linker, |s| {
        &mut s.vars
    })?;
    Ok(linker)
}

impl App {
    /// Resolve variables, check the manifest against what the host backs, compile every component.
    pub fn load(manifest: &Manifest, options: &RuntimeOptions) -> Result<Self, Error> {
        let resolver = Resolver::new(&manifest.variables, &options.variables, |name| std::env::var(name).ok())?;
        let engine = engine()?;
        let linker = linker(&engine).map_err(|e| Error::Runtime(wasm_message(&e)))?;
        let kv = KvBackend::open(options.kv_dir.as_deref())?;
        let mut components = BTreeMap::new();
        for (id, decl) in &manifest.components {
            for label in &decl.key_value_stores {
                if label != crate::kv::DEFAULT_STORE {
                    return Err(Error::Unsupported(format!(
                        "[component.{id}] key_value_stores: store {label:?} is not defined (only \"default\" is)"
                    )));
                }
            }
            let hosts = decl
                .allowed_outbound_hosts
                .iter()
                .map(|entry| resolver.resolve_str(entry))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|hosts| AllowedHosts::parse(&hosts))
                .map_err(|message| Error::AllowedHost { component: id.clone(), message })?;
            let variables = component_values(id, &decl.variables, &resolver)?;
            let component_error = |message: String| Error::Component { component: id.clone(), message };
            let bytes = std::fs::read(&decl.source)
                .map_err(|e| component_error(format!("cannot read {}: {e}", decl.source.display())))?;
            let component = compile(&engine, &bytes).map_err(|e| component_error(wasm_message(&e)))?;
            let pre = linker.instantiate_pre(&component).map_err(|e| component_error(wasm_message(&e)))?;
            let pre = ServicePre::new(pre).map_err(|e| {
                component_error(format!(
                    "does not export wasi:http/handler@0.3.0 (only WASIp3 HTTP components are supported): {}",
                    wasm_message(&e)
                ))
            })?;
            let runtime = ComponentRuntime {
                id: Arc::from(id.as_str()),
                pre,
                allowed_hosts: Arc::new(hosts),
                kv_stores: Arc::new(decl.key_value_stores.iter().cloned().collect()),
                variables: Arc::new(variables),
                environment: decl.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            };
            components.insert(id.clone(), Arc::new(runtime));
        }
        Ok(Self {
            engine,
            components,
            kv,
            post_response_timeout: options.post_response_timeout,
            instances: Arc::default(),
        })
    }

    /// A compiled component by id.
    pub fn component(&self, id: &str) -> Option<&Arc<ComponentRuntime>> {
        self.components.get(id)
    }

    /// Wait until no instance is running (requests and post-response work all done).
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.instances.idle.notified();
            if self.instances.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// The key-value database.
    pub fn kv(&self) -> &Arc<KvBackend> {
        &self.kv
    }

    fn new_store(&self, component: &ComponentRuntime) -> Store<HostState> {
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout().inherit_stderr().envs(&component.environment);
        // Raw sockets are not part of what spin-host implements: outbound goes through wasi:http.
        wasi.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks::new(Arc::clone(&component.id), Arc::clone(&component.allowed_hosts)),
            table: ResourceTable::new(),
            kv: KvState::new(Arc::clone(&self.kv), Arc::clone(&component.kv_stores)),
            vars: VariablesState { values: Arc::clone(&component.variables) },
        };
        Store::new(&self.engine, state)
    }

    /// Run `request` in a fresh instance of `component`; the instance lives on (in a spawned
    /// task) after this returns, until its post-response work and the response body are done.
    pub async fn execute<B>(
        &self,
        component: &Arc<ComponentRuntime>,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, ExecuteError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let id = component.id.to_string();
        let failed = |e: wasmtime::Error| ExecuteError::Failed { component: id.clone(), message: wasm_message(&e) };
        let mut store = self.new_store(component);
        let (request, request_io) = WasiRequest::from_http(&mut InboundHooks, request);
        let service = component.pre.instantiate_async(&mut store).await.map_err(failed)?;

        type Outcome = Result<http::Response<ResponseBody>, ExecuteError>;
        let (tx, rx) = oneshot::channel::<Outcome>();
        let tx = Arc::new(Mutex::new(Some(tx)));
        // Delivers the outcome once; says whether anyone was still waiting for it.
        let send = {
            let tx = Arc::clone(&tx);
            move |outcome: Outcome| match tx.lock().ok().and_then(|mut t| t.take()) {
                Some(tx) => tx.send(outcome).is_ok(),
                None => false,
            }
        };
        let timeout = self.post_response_timeout;
        let (task_id, log_id) = (id.clone(), id.clone());
        let send_in_loop = send.clone();
        let live = LiveInstance::new(&self.instances);
        tokio::spawn(async move {
            let _live = live;
            let id = task_id;
            let result = store
                .run_concurrent(async move |accessor| -> wasmtime::Result<()> {
                    let (guard, body_done) = oneshot::channel::<()>();
                    match service.handle(accessor, request).await? {
                        Ok(response) => {
                            let response = accessor.with(|mut access| {
                                response.into_http_with_getter(&mut access, request_io, http_view)
                            })?;
                            send_in_loop(Ok(response.map(|body| GuardedBody { body, _guard: guard }.boxed())));
                        }
                        Err(code) => {
                            send_in_loop(Err(ExecuteError::ErrorCode {
                                component: id.clone(),
                                code: format!("{code:?}"),
                            }));
                            drop(guard);
                        }
                    }
                    // Post-response phase: the guest may still be running (WASIp3 allows work
                    // after `task.return`), and the body may still be streaming out of it.
                    let finished = async {
                        poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                        let _ = body_done.await;
                    };
                    tokio::time::timeout(timeout, finished).await.map_err(|_| {
                        wasmtime::format_err!(
                            "stopped: still busy {timeout:?} after the response (post-response timeout)"
                        )
                    })
                })
                .await;
            if let Err(e) = result.and_then(|inner| inner) {
                let message = wasm_message(&e);
                // Before the response, the error becomes the 500 (logged by the server); after
                // it, this log line is the only trace.
                if !send(Err(ExecuteError::Failed { component: log_id.clone(), message: message.clone() })) {
                    eprintln!("spin-host: component `{log_id}` failed after responding: {message}");
                }
            }
        });
        match rx.await {
            Ok(outcome) => outcome,
            Err(_) => {
                Err(ExecuteError::Failed { component: id, message: "the instance stopped without an answer".into() })
            }
        }
    }
}

/// A response body that tells the instance's task, by being dropped, that it has been fully
/// sent (or abandoned by the client). Spin does the same (its `BodyWithAttachment`).
struct GuardedBody {
    body: ResponseBody,
    _guard: oneshot::Sender<()>,
}

impl GuardedBody {
    fn boxed(self) -> ResponseBody {
        UnsyncBoxBody::new(self)
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
