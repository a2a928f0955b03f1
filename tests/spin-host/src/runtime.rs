//! The Wasm side: one wasmtime engine and linker, the application's compiled components, and how
//! a request reaches an instance. Instances are reused as Spin 4 reuses them for WASIp3 HTTP
//! components (up to 128 requests each, up to 16 at once, dropped after 1 s idle, by default);
//! the pool and the instances' event loops are in `instances.rs`.
//!
//! WASIp3 lets a guest keep running after it has returned its response (`task.return` ends the
//! call, not the task). So a store is kept alive, and its event loop (`run_concurrent`) keeps
//! running, until the guest's tasks have exited (`Accessor::poll_no_interesting_tasks`) AND every
//! response body of that instance has been fully sent or dropped; that phase is bounded by
//! `post_response_timeout`. See README.md for what wasmtime 48 and Spin do. This module must not
//! know about sockets or hyper: it takes an `http::Request` and gives back an `http::Response`.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p3::Request as WasiRequest;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, ForbiddenHeaderFilter, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::error::{Error, wasm_message};
use crate::instances::{BodyGuard, Instances, Job, Pool, Reply, dispatch};
use crate::kv::{KvBackend, KvState, KvView, SpinKeyValue};
use crate::manifest::Manifest;
use crate::outbound::{AllowedHosts, OutboundHooks};
use crate::reuse::InstanceReuse;
use crate::variables::{Resolver, SpinVariables, VariablesState, component_values};

/// The body of a response produced by a guest.
pub type ResponseBody = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// The data of one store (one instance, which may serve many requests).
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

pub(crate) fn http_view(state: &mut HostState) -> WasiHttpCtxView<'_> {
    state.http()
}

/// One component, compiled and linked, with everything its instances need, and its instances.
pub struct ComponentRuntime {
    id: Arc<str>,
    pre: ServicePre<HostState>,
    allowed_hosts: Arc<AllowedHosts>,
    kv_stores: Arc<BTreeSet<String>>,
    variables: Arc<BTreeMap<String, String>>,
    environment: Vec<(String, String)>,
    shared: Arc<Shared>,
    pool: Pool,
}

impl ComponentRuntime {
    /// The component id.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A fresh store for a new instance of this component.
    pub(crate) fn new_store(&self) -> Store<HostState> {
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout().inherit_stderr().envs(&self.environment);
        // Raw sockets are not part of what spin-host implements: outbound goes through wasi:http.
        wasi.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks::new(Arc::clone(&self.id), Arc::clone(&self.allowed_hosts)),
            table: ResourceTable::new(),
            kv: KvState::new(Arc::clone(&self.shared.kv), Arc::clone(&self.kv_stores)),
            vars: VariablesState { values: Arc::clone(&self.variables) },
        };
        Store::new(&self.shared.engine, state)
    }

    /// Instantiate this component in `store`.
    pub(crate) async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Service> {
        self.pre.instantiate_async(store).await
    }
}

/// Options of the Wasm runtime that do not come from the manifest.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// `--variable name=value` values.
    pub variables: Vec<(String, String)>,
    /// Directory of the SQLite key-value database; in memory when `None`.
    pub kv_dir: Option<std::path::PathBuf>,
    /// How long an instance may keep working after its last response (background work and
    /// response bodies still being sent).
    pub post_response_timeout: Duration,
    /// How instances are reused (Spin's `--max-instance-*` and `--idle-instance-timeout`).
    pub reuse: InstanceReuse,
}

/// What every instance of the application shares.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) kv: Arc<KvBackend>,
    pub(crate) post_response_timeout: Duration,
    pub(crate) reuse: InstanceReuse,
    pub(crate) instances: Instances,
}

/// A loaded application: every component compiled, every variable resolved.
pub struct App {
    components: BTreeMap<String, Arc<ComponentRuntime>>,
    shared: Arc<Shared>,
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
        let shared = Arc::new(Shared {
            engine: engine.clone(),
            kv,
            post_response_timeout: options.post_response_timeout,
            reuse: options.reuse,
            instances: Instances::default(),
        });
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
                shared: Arc::clone(&shared),
                pool: Pool::default(),
            };
            components.insert(id.clone(), Arc::new(runtime));
        }
        Ok(Self { components, shared })
    }

    /// A compiled component by id.
    pub fn component(&self, id: &str) -> Option<&Arc<ComponentRuntime>> {
        self.components.get(id)
    }

    /// Stop reusing instances and wait until none is left: idle ones are dropped at once, busy
    /// ones when their requests, post-response work and response bodies are done.
    pub async fn wait_idle(&self) {
        self.shared.instances.close();
        self.shared.instances.wait_none().await;
    }

    /// The key-value database.
    pub fn kv(&self) -> &Arc<KvBackend> {
        &self.shared.kv
    }

    /// Run `request` in an instance of `component`: a reused one if one can take it (as Spin
    /// does), else a new one. Instances outlive the call (see `instances.rs`).
    pub async fn execute<B>(
        &self,
        component: &Arc<ComponentRuntime>,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, ExecuteError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let (request, request_io) = WasiRequest::from_http(&mut InboundHooks, request);
        let (reply, answer) = Reply::new();
        dispatch(component, Job { request, request_io: Box::pin(request_io), reply });
        answer.await.unwrap_or_else(|_| {
            Err(ExecuteError::Failed {
                component: component.id.to_string(),
                message: "the instance stopped without an answer".into(),
            })
        })
    }
}

/// A response body that tells its instance, by being dropped, that it has been fully sent (or
/// abandoned by the client), so the store is kept until then. Spin did the same with its
/// `NotifyOnDropBody` when it ran one request per store.
///
/// If the instance is stopped (a trap, the post-response timeout) while the body is still being
/// written, wasmtime ends the body as if it were complete; this ends it with an error instead, so
/// hyper aborts the connection and the client sees an incomplete response, not a short one.
pub(crate) struct GuardedBody {
    pub(crate) body: ResponseBody,
    pub(crate) guard: BodyGuard,
}

impl GuardedBody {
    pub(crate) fn boxed(self) -> ResponseBody {
        UnsyncBoxBody::new(self)
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(None) if self.guard.instance_stopped() => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseIncomplete)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.guard.instance_stopped() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
