//! In-memory ports and a manual clock, for host tests of the core.
//!
//! `MemHost` stores KV entries in a map (with optional failure and delay switches), answers
//! outbound HTTP from a script keyed by URL, keeps background tasks until `run_background` is
//! called (so tests decide when "after the response" happens), and has a clock that moves only
//! when told or when a sleep is awaited. `another_isolate` gives a second host over the same
//! world (clock, KV, routes, background queue) with a memory of its own. `MemUpstash`
//! (`upstash.rs`) is Redis behind the Upstash REST API. Never compiled into the wasm build.

mod upstash;

pub use upstash::MemUpstash;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;

use crate::ports::{Background, Body, Clock, Http, Kv, KvLimits, Log, PortError, Random};

/// A scripted answer to one outbound request.
pub enum Scripted {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// Answer after the clock has moved `ms` (models a slow or stalled peer).
    Delay {
        ms: u64,
        then: Box<Scripted>,
    },
    /// Connection failure.
    Fail(String),
    /// A streaming body that goes silent forever after its chunks (a stalled provider).
    StallingStream {
        status: u16,
        chunks: Vec<Bytes>,
    },
    /// A streaming body, chunk by chunk; `Err` items break the stream.
    Stream {
        status: u16,
        chunks: Vec<Result<Bytes, String>>,
    },
}

impl Scripted {
    pub fn json(status: u16, body: &serde_json::Value) -> Scripted {
        Scripted::Respond {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body.to_string()),
        }
    }
}

/// A KV value and the TTL it was written with.
type StoredValue = (Vec<u8>, Option<u64>);

type Responder = Box<dyn Fn(&http::Request<Bytes>) -> Scripted>;

#[derive(Default)]
struct State {
    kv: RefCell<HashMap<String, StoredValue>>,
    kv_fail: Cell<bool>,
    kv_delay_ms: Cell<u64>,
    kv_limits: Cell<Option<KvLimits>>,
    now_ms: Cell<u64>,
    rng: Cell<u64>,
    timers: RefCell<Vec<u64>>,
    background: RefCell<VecDeque<Pin<Box<dyn Future<Output = ()>>>>>,
    /// Work spawned to start later (`Background::spawn_later`): run by `run_later` alone.
    later: RefCell<VecDeque<Pin<Box<dyn Future<Output = ()>>>>>,
    logs: RefCell<Vec<String>>,
    sent: RefCell<Vec<http::Request<Bytes>>>,
    routes: RefCell<Vec<(String, Responder)>>,
    /// False models Spin: memory is wiped before every request (see `forget_memory`).
    memory_is_fleeting: Cell<bool>,
}

#[derive(Clone, Default)]
pub struct MemHost {
    state: Rc<State>,
    /// This isolate's memory (the `Memory` port).
    health: Rc<crate::routing::health::Health>,
    flights: crate::coalesce::Flights,
    limits: Rc<crate::limits::memory::LimitMemory>,
    metrics: Rc<crate::metrics::Buffer>,
}

pub const WORKERS_KV_LIMITS: KvLimits =
    KvLimits { max_key_bytes: 512, max_value_bytes: 25 << 20, min_ttl_seconds: Some(60) };

impl MemHost {
    pub fn new(now_ms: u64) -> MemHost {
        let host = MemHost::default();
        host.state.now_ms.set(now_ms);
        host.state.rng.set(0x9e37_79b9_7f4a_7c15);
        host
    }

    /// A second isolate in the same world: the same clock, KV, routes, requests log and
    /// background queue, and a memory of its own (what another isolate or instance knows).
    pub fn another_isolate(&self) -> MemHost {
        MemHost {
            state: self.state.clone(),
            health: Rc::default(),
            flights: Default::default(),
            limits: Rc::default(),
            metrics: Rc::default(),
        }
    }

    pub fn advance(&self, ms: u64) {
        self.state.now_ms.set(self.state.now_ms.get() + ms);
    }

    /// Answers requests whose URL starts with `prefix` by calling `responder`.
    pub fn route(&self, prefix: &str, responder: impl Fn(&http::Request<Bytes>) -> Scripted + 'static) {
        self.state.routes.borrow_mut().push((prefix.to_owned(), Box::new(responder)));
    }

    /// Requests sent so far whose URL starts with `prefix`.
    pub fn sent_to(&self, prefix: &str) -> Vec<http::Request<Bytes>> {
        self.state.sent.borrow().iter().filter(|r| r.uri().to_string().starts_with(prefix)).cloned().collect()
    }

    pub fn kv_raw(&self, key: &str) -> Option<Vec<u8>> {
        self.state.kv.borrow().get(key).map(|(v, _)| v.clone())
    }

    pub fn kv_ttl(&self, key: &str) -> Option<u64> {
        self.state.kv.borrow().get(key).and_then(|(_, ttl)| *ttl)
    }

    pub fn kv_insert(&self, key: &str, value: Vec<u8>) {
        self.state.kv.borrow_mut().insert(key.to_owned(), (value, None));
    }

    pub fn kv_keys(&self) -> Vec<String> {
        self.state.kv.borrow().keys().cloned().collect()
    }

    pub fn set_kv_failing(&self, failing: bool) {
        self.state.kv_fail.set(failing);
    }

    pub fn set_kv_delay(&self, ms: u64) {
        self.state.kv_delay_ms.set(ms);
    }

    pub fn set_kv_limits(&self, limits: KvLimits) {
        self.state.kv_limits.set(Some(limits));
    }

    pub fn logs(&self) -> Vec<String> {
        self.state.logs.borrow().clone()
    }

    pub fn pending_background(&self) -> usize {
        self.state.background.borrow().len()
    }

    /// Runs every background task (and any they spawn) to completion.
    pub fn run_background(&self) {
        loop {
            let task = self.state.background.borrow_mut().pop_front();
            match task {
                Some(task) => self.block_on(task),
                None => break,
            }
        }
    }

    /// Runs the work spawned to start later (metrics flushes) as if its time had come, without
    /// moving the clock, then the background work it spawned.
    pub fn run_later(&self) {
        loop {
            let task = self.state.later.borrow_mut().pop_front();
            match task {
                Some(task) => self.block_on(task),
                None => break,
            }
        }
        self.run_background();
    }

    async fn kv_wait(&self) -> Result<(), PortError> {
        let delay = self.state.kv_delay_ms.get();
        if delay > 0 {
            self.sleep_ms(delay).await;
        }
        if self.state.kv_fail.get() {
            return Err(PortError::Unavailable("kv switched off by the test".into()));
        }
        Ok(())
    }
}

impl Kv for MemHost {
    fn kv_limits(&self) -> KvLimits {
        self.state.kv_limits.get().unwrap_or(WORKERS_KV_LIMITS)
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        self.kv_wait().await?;
        Ok(self.kv_raw(key))
    }

    async fn kv_put(&self, key: &str, value: Bytes, ttl_seconds: Option<u64>) -> Result<(), PortError> {
        self.kv_wait().await?;
        self.state.kv.borrow_mut().insert(key.to_owned(), (value.to_vec(), ttl_seconds));
        Ok(())
    }

    async fn kv_delete(&self, key: &str) -> Result<(), PortError> {
        self.kv_wait().await?;
        self.state.kv.borrow_mut().remove(key);
        Ok(())
    }

    async fn kv_keys_after(&self, after: &str, limit: usize) -> Result<Vec<String>, PortError> {
        self.kv_wait().await?;
        let mut keys: Vec<String> = self.state.kv.borrow().keys().filter(|k| k.as_str() > after).cloned().collect();
        keys.sort();
        keys.truncate(limit);
        Ok(keys)
    }
}

impl Http for MemHost {
    async fn fetch(&self, request: http::Request<Bytes>) -> Result<http::Response<Body>, PortError> {
        self.state.sent.borrow_mut().push(request.clone());
        let url = request.uri().to_string();
        let scripted = {
            let routes = self.state.routes.borrow();
            let route = routes.iter().rev().find(|(prefix, _)| url.starts_with(prefix.as_str()));
            match route {
                Some((_, responder)) => responder(&request),
                None => Scripted::Fail(format!("no route for {url}")),
            }
        };
        self.play(scripted).await
    }
}

impl MemHost {
    fn play(&self, scripted: Scripted) -> Pin<Box<dyn Future<Output = Result<http::Response<Body>, PortError>> + '_>> {
        Box::pin(async move {
            match scripted {
                Scripted::Fail(why) => Err(PortError::Unavailable(why)),
                Scripted::Delay { ms, then } => {
                    self.sleep_ms(ms).await;
                    self.play(*then).await
                }
                Scripted::Respond { status, headers, body } => {
                    let mut builder = http::Response::builder().status(status);
                    for (k, v) in headers {
                        builder = builder.header(k, v);
                    }
                    Ok(builder.body(Body::Full(body)).expect("scripted responses are valid"))
                }
                Scripted::StallingStream { status, chunks } => {
                    let items = futures_util::stream::iter(chunks.into_iter().map(Ok));
                    let stream = futures_util::StreamExt::chain(items, futures_util::stream::pending());
                    Ok(http::Response::builder()
                        .status(status)
                        .header("content-type", "text/event-stream")
                        .body(Body::Stream(Box::pin(stream)))
                        .expect("scripted responses are valid"))
                }
                Scripted::Stream { status, chunks } => {
                    let items: Vec<Result<Bytes, crate::ports::BodyError>> =
                        chunks.into_iter().map(|c| c.map_err(crate::ports::BodyError)).collect();
                    let stream = futures_util::stream::iter(items);
                    Ok(http::Response::builder()
                        .status(status)
                        .header("content-type", "text/event-stream")
                        .body(Body::Stream(Box::pin(stream)))
                        .expect("scripted responses are valid"))
                }
            }
        })
    }
}

impl Clock for MemHost {
    fn now_ms(&self) -> u64 {
        self.state.now_ms.get()
    }

    /// Virtual time: the sleep is pending until `block_on` moves the clock past its deadline.
    async fn sleep_ms(&self, ms: u64) {
        let deadline = self.now_ms().saturating_add(ms);
        std::future::poll_fn(|_| {
            if self.now_ms() >= deadline {
                std::task::Poll::Ready(())
            } else {
                self.state.timers.borrow_mut().push(deadline);
                std::task::Poll::Pending
            }
        })
        .await
    }
}

impl MemHost {
    /// Runs `fut` to completion in virtual time: whenever it cannot progress, the clock jumps to
    /// the earliest pending sleep. A future stuck with no sleep pending is a bug in the test.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            self.state.timers.borrow_mut().clear();
            if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            let next = self.state.timers.borrow().iter().min().copied();
            match next {
                Some(deadline) if deadline > self.now_ms() => self.state.now_ms.set(deadline),
                Some(_) => {}
                None => panic!("the future is pending with no sleep to wait for: it would hang"),
            }
        }
    }
}

impl MemHost {
    /// Like `block_on`, with the background tasks spawned meanwhile running beside `fut` (as a
    /// host runs them while other requests go on); those still running when `fut` is done go
    /// back to the queue, for `run_background`.
    pub fn block_on_with_background<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut running: Vec<Pin<Box<dyn Future<Output = ()>>>> = Vec::new();
        loop {
            // Two passes per instant: what one side did may let the other go on at once.
            for _ in 0..2 {
                self.state.timers.borrow_mut().clear();
                if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    self.state.background.borrow_mut().extend(running);
                    return v;
                }
                loop {
                    let task = self.state.background.borrow_mut().pop_front();
                    match task {
                        Some(task) => running.push(task),
                        None => break,
                    }
                }
                running.retain_mut(|task| task.as_mut().poll(&mut cx).is_pending());
            }
            let next = self.state.timers.borrow().iter().min().copied();
            match next {
                Some(deadline) if deadline > self.now_ms() => self.state.now_ms.set(deadline),
                Some(_) => {}
                None => panic!("the future is pending with no sleep to wait for: it would hang"),
            }
        }
    }
}

impl Random for MemHost {
    fn random_u64(&self) -> u64 {
        // xorshift64: deterministic ids in tests.
        let mut x = self.state.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.rng.set(x);
        x
    }
}

impl Background for MemHost {
    fn spawn_background(&self, task: Pin<Box<dyn Future<Output = ()>>>) {
        self.state.background.borrow_mut().push_back(task);
    }

    fn spawn_later(&self, _ms: u64, task: Pin<Box<dyn Future<Output = ()>>>) {
        self.state.later.borrow_mut().push_back(task);
    }
}

impl crate::ports::Memory for MemHost {
    fn health(&self) -> &crate::routing::health::Health {
        &self.health
    }

    fn flights(&self) -> &crate::coalesce::Flights {
        &self.flights
    }

    fn limits(&self) -> &crate::limits::memory::LimitMemory {
        &self.limits
    }

    fn metrics(&self) -> &crate::metrics::Buffer {
        &self.metrics
    }

    fn lasts_between_requests(&self) -> bool {
        !self.state.memory_is_fleeting.get()
    }
}

impl MemHost {
    /// Makes this host's memory start empty for every request, as a Spin instance's does;
    /// the test calls `forget_memory` between requests.
    pub fn set_memory_fleeting(&self, fleeting: bool) {
        self.state.memory_is_fleeting.set(fleeting);
    }

    /// What a new instance starts with: no knowledge of any target.
    pub fn forget_memory(&self) {
        self.health.clear();
        self.limits.clear();
    }
}

impl Log for MemHost {
    fn log(&self, line: &str) {
        self.state.logs.borrow_mut().push(line.to_owned());
    }
}

/// Configuration variables from a list of pairs.
pub struct MapVars(pub HashMap<String, String>);

impl MapVars {
    pub fn new(pairs: &[(&str, &str)]) -> MapVars {
        MapVars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

impl crate::ports::Vars for MapVars {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}
