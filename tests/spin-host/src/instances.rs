//! Instance reuse, as Spin 4 does it for WASIp3 HTTP components (spinframework/spin
//! `crates/trigger-http/src/server.rs`, which drives wasmtime-wasi-http's `handler::ProxyHandler`):
//!
//! - A request goes to a live instance of its component that can take it: one that has served
//!   fewer than its `max_requests` in all, is serving fewer than its `max_concurrent` now, and is
//!   not busy running guest code (a request only joins an instance whose current requests are
//!   all waiting on I/O, as `ProxyHandler` does). Otherwise a new instance is started.
//! - Each instance runs one `run_concurrent` event loop. Requests are component-model tasks in
//!   it; so is work the guest spawned (`wit_bindgen::spawn`), which goes on after its response
//!   while the instance serves other requests. Statics and `thread_local`s of the guest are
//!   shared by every request of the instance, including concurrent ones.
//! - With no request in flight, the instance stays until every guest task has exited and every
//!   response body it produced has been sent or dropped (bounded by the post-response timeout,
//!   counted from the last response), then it is idle: dropped when it has served `max_requests`,
//!   when the host shuts down, or after `idle_timeout` without a new request.
//! - A trap ends the instance: the requests it had accepted and not answered get a 500; requests
//!   handed to it but not yet started go to another instance.
//!
//! The pool does not use `ProxyHandler` itself because `ProxyHandler` converts the inbound request
//! with the store's outbound hooks, which drop the client's `Host` header (spin-host passes it to
//! the guest); the scheduling rules above are the same. Must not know about sockets or hyper.

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{Notify, mpsc, oneshot};
use wasmtime::component::Accessor;
use wasmtime_wasi_http::p3::Request as WasiRequest;
use wasmtime_wasi_http::p3::bindings::Service;

use crate::error::wasm_message;
use crate::reuse::InstanceLimits;
use crate::runtime::{ComponentRuntime, ExecuteError, GuardedBody, HostState, ResponseBody, http_view};

/// What a request gets back: a response, or why there is none.
pub(crate) type Outcome = Result<http::Response<ResponseBody>, ExecuteError>;

/// The inbound request body's I/O result, given back to `wasi:http` with the response.
pub(crate) type RequestIo = Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>>;

/// A request on its way to an instance.
pub(crate) struct Job {
    pub(crate) request: WasiRequest,
    pub(crate) request_io: RequestIo,
    pub(crate) reply: Reply,
}

/// Where the outcome of one request goes; delivered at most once, by whoever comes first (the
/// request's own task, or the instance's end if it traps before answering).
#[derive(Clone)]
pub(crate) struct Reply(Arc<Mutex<Option<oneshot::Sender<Outcome>>>>);

impl Reply {
    pub(crate) fn new() -> (Self, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        (Self(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// Deliver `outcome` unless something was delivered already; says whether anyone got it.
    fn send(&self, outcome: Outcome) -> bool {
        match lock(&self.0).take() {
            Some(tx) => tx.send(outcome).is_ok(),
            None => false,
        }
    }

    fn is_pending(&self) -> bool {
        lock(&self.0).is_some()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Live instances of the whole application, for shutdown.
#[derive(Default)]
pub(crate) struct Instances {
    live: AtomicUsize,
    none_left: Notify,
    closing: AtomicBool,
    closed: Notify,
}

impl Instances {
    /// Stop reusing: idle instances end now, busy ones when they are done.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.closed.notify_waiters();
    }

    /// Wait until no instance is left.
    pub(crate) async fn wait_none(&self) {
        loop {
            let none_left = self.none_left.notified();
            if self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            none_left.await;
        }
    }
}

/// Counts an instance as live from its start until its task ends (even by panic).
struct LiveInstance(Arc<ComponentRuntime>);

impl LiveInstance {
    fn new(component: &Arc<ComponentRuntime>) -> Self {
        component.shared().instances.live.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(component))
    }
}

impl Drop for LiveInstance {
    fn drop(&mut self) {
        let instances = &self.0.shared().instances;
        if instances.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            instances.none_left.notify_waiters();
        }
    }
}

/// The live instances of one component, as the dispatcher sees them.
#[derive(Default)]
pub(crate) struct Pool {
    slots: Mutex<Vec<Slot>>,
    next_id: AtomicU64,
}

struct Slot {
    id: u64,
    jobs: mpsc::UnboundedSender<Job>,
    limits: InstanceLimits,
    /// Requests handed to this instance in all.
    accepted: usize,
    /// Requests handed to it and not answered yet.
    in_flight: usize,
    /// Set when a request is handed over, cleared when the instance's event loop has nothing to
    /// run (every task waits on I/O): `ProxyHandler`'s `accept_concurrent`.
    running_guest: Arc<AtomicBool>,
}

impl Slot {
    fn can_take(&self) -> bool {
        self.accepted < self.limits.max_requests
            && self.in_flight < self.limits.max_concurrent
            && (self.in_flight == 0 || !self.running_guest.load(Ordering::SeqCst))
    }
}

impl Pool {
    /// A request of instance `id` has been answered.
    fn answered(&self, id: u64) {
        if let Some(slot) = lock(&self.slots).iter_mut().find(|s| s.id == id) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
        }
    }

    /// Remove idle instance `id` from the pool unless a request was handed to it meanwhile.
    fn retire_if_unused(&self, id: u64) -> bool {
        let mut slots = lock(&self.slots);
        match slots.iter().position(|s| s.id == id) {
            Some(i) if slots[i].in_flight > 0 => false,
            Some(i) => {
                slots.remove(i);
                true
            }
            None => true,
        }
    }

    /// Remove instance `id` and return the requests handed to it that it never started.
    fn remove(&self, id: u64, jobs: &mut mpsc::UnboundedReceiver<Job>) -> Vec<Job> {
        lock(&self.slots).retain(|s| s.id != id);
        // The slot held the only sender: once it is gone, nothing more can arrive.
        let mut stranded = Vec::new();
        while let Ok(job) = jobs.try_recv() {
            stranded.push(job);
        }
        stranded
    }
}

/// Hand `job` to an instance of `component` that can take it, or to a new one.
pub(crate) fn dispatch(component: &Arc<ComponentRuntime>, mut job: Job) {
    let pool = component.pool();
    let mut slots = lock(&pool.slots);
    for slot in slots.iter_mut().filter(|s| s.can_take()) {
        match slot.jobs.send(job) {
            Ok(()) => {
                slot.accepted += 1;
                slot.in_flight += 1;
                slot.running_guest.store(true, Ordering::SeqCst);
                return;
            }
            // Its task is gone (a panic): try the next one.
            Err(mpsc::error::SendError(back)) => job = back,
        }
    }
    let id = pool.next_id.fetch_add(1, Ordering::Relaxed);
    let limits = component.shared().reuse.draw();
    let (jobs, receiver) = mpsc::unbounded_channel();
    let running_guest = Arc::new(AtomicBool::new(true));
    slots.push(Slot { id, jobs, limits, accepted: 1, in_flight: 1, running_guest: Arc::clone(&running_guest) });
    drop(slots);
    let live = LiveInstance::new(component);
    let instance = Instance { component: Arc::clone(component), id, limits, running_guest };
    tokio::spawn(instance.run(job, receiver, live));
}

/// One instance's task.
struct Instance {
    component: Arc<ComponentRuntime>,
    id: u64,
    limits: InstanceLimits,
    running_guest: Arc<AtomicBool>,
}

impl Instance {
    async fn run(self, first: Job, mut jobs: mpsc::UnboundedReceiver<Job>, _live: LiveInstance) {
        let component = &self.component;
        let failed = |message: &str| ExecuteError::Failed {
            component: component.id().to_string(),
            message: message.to_string(),
        };
        let mut store = component.new_store();
        let service = match component.instantiate(&mut store).await {
            Ok(service) => service,
            Err(e) => {
                let message = wasm_message(&e);
                first.reply.send(Err(failed(&message)));
                for job in component.pool().remove(self.id, &mut jobs) {
                    job.reply.send(Err(failed(&message)));
                }
                return;
            }
        };
        let bodies = Arc::new(Bodies::default());
        let mut replies = Vec::new();
        let result = {
            let event_loop = store.run_concurrent(async |accessor| {
                self.serve(accessor, &service, first, &mut jobs, &bodies, &mut replies).await
            });
            let mut event_loop = pin!(event_loop);
            poll_fn(|cx| {
                let poll = event_loop.as_mut().poll(cx);
                if poll.is_pending() {
                    self.running_guest.store(false, Ordering::SeqCst);
                }
                poll
            })
            .await
        };
        // Whatever happened, this instance takes no more requests; any handed to it that it did
        // not start go to another instance.
        for job in component.pool().remove(self.id, &mut jobs) {
            dispatch(component, job);
        }
        if let Err(e) = result.and_then(|inner| inner) {
            // Bodies still open are cut when the store goes: say so, or they would end cleanly.
            bodies.stopped.store(true, Ordering::SeqCst);
            let message = wasm_message(&e);
            // Before a response, the error becomes the 500 (logged by the server); after it,
            // this log line is the only trace.
            let mut told = false;
            for reply in &replies {
                told |= reply.send(Err(failed(&message)));
            }
            if !told {
                eprintln!("spin-host: component `{}` failed after responding: {message}", component.id());
            }
        }
        // The store (and with it the instance) is dropped here, after every body is done.
        drop(store);
    }

    /// The instance's event loop: take requests, answer them, and decide when to end.
    async fn serve(
        &self,
        accessor: &Accessor<HostState>,
        service: &Service,
        first: Job,
        jobs: &mut mpsc::UnboundedReceiver<Job>,
        bodies: &Arc<Bodies>,
        replies: &mut Vec<Reply>,
    ) -> wasmtime::Result<()> {
        let component = &self.component;
        let post_response_timeout = component.shared().post_response_timeout;
        let instances = &component.shared().instances;
        let mut requests = FuturesUnordered::new();
        let mut accepted = 1;
        replies.push(first.reply.clone());
        requests.push(answer(accessor, service, first, Arc::clone(bodies), component.id()));
        let mut phase = Phase::Requests;
        let mut timer = pin!(tokio::time::sleep(Duration::ZERO));
        let mut closed = pin!(instances.closed.notified());
        let mut closing = false;
        poll_fn(|cx| {
            loop {
                // Answers first: a trap must end the instance before it takes anything new.
                while let Poll::Ready(Some(result)) = requests.poll_next_unpin(cx) {
                    result?;
                    component.pool().answered(self.id);
                    replies.retain(Reply::is_pending);
                }
                if let Poll::Ready(Some(job)) = jobs.poll_recv(cx) {
                    accepted += 1;
                    replies.push(job.reply.clone());
                    requests.push(answer(accessor, service, job, Arc::clone(bodies), component.id()));
                    continue;
                }
                if !requests.is_empty() {
                    phase = Phase::Requests;
                    return Poll::Pending;
                }
                // No request in flight. Work after the responses: guest tasks (spawned futures
                // keep their task alive) and bodies still being sent.
                let tasks_left = accessor.poll_no_interesting_tasks(cx).is_pending();
                let bodies_left = bodies.poll_none_open(cx).is_pending();
                if tasks_left || bodies_left {
                    if phase != Phase::PostResponse {
                        phase = Phase::PostResponse;
                        timer.as_mut().reset(deadline(post_response_timeout));
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(wasmtime::format_err!(
                            "stopped: still busy {post_response_timeout:?} after its last response \
                             (post-response timeout)"
                        )));
                    }
                    return Poll::Pending;
                }
                if phase != Phase::Idle {
                    phase = Phase::Idle;
                    timer.as_mut().reset(deadline(self.limits.idle_timeout));
                }
                if !closing && closed.as_mut().poll(cx).is_ready() {
                    closing = true;
                }
                closing |= instances.closing.load(Ordering::SeqCst);
                let done = accepted >= self.limits.max_requests || closing || timer.as_mut().poll(cx).is_ready();
                if done {
                    if component.pool().retire_if_unused(self.id) {
                        return Poll::Ready(Ok(()));
                    }
                    // A request was handed over just now: take it (it is in `jobs`).
                    continue;
                }
                return Poll::Pending;
            }
        })
        .await
    }
}

/// `after` from now, or about a year from now for durations too large to add.
fn deadline(after: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(after).unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// At least one request has not been answered.
    Requests,
    /// All answered; guest tasks or response bodies are still going.
    PostResponse,
    /// Nothing left to do; waiting for a request.
    Idle,
}

/// Run one request in the instance and deliver its response. Resolves once the response exists
/// (the guest may go on after that); an error is a trap or a host failure, which ends the
/// instance.
async fn answer(
    accessor: &Accessor<HostState>,
    service: &Service,
    job: Job,
    bodies: Arc<Bodies>,
    component: &str,
) -> wasmtime::Result<()> {
    let Job { request, request_io, reply } = job;
    match service.handle(accessor, request).await? {
        Ok(response) => {
            let response =
                accessor.with(|mut access| response.into_http_with_getter(&mut access, request_io, http_view))?;
            let guard = bodies.open();
            // If nobody waits any more, the response and its guard are dropped right here.
            reply.send(Ok(response.map(|body| GuardedBody { body, guard }.boxed())));
        }
        Err(code) => {
            reply.send(Err(ExecuteError::ErrorCode { component: component.to_string(), code: format!("{code:?}") }));
        }
    }
    Ok(())
}

/// The response bodies of one instance that are still being sent.
#[derive(Default)]
pub(crate) struct Bodies {
    open: AtomicUsize,
    waker: Mutex<Option<Waker>>,
    /// The instance was stopped (trap, post-response timeout) with bodies still open.
    stopped: AtomicBool,
}

impl Bodies {
    fn open(self: &Arc<Self>) -> BodyGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        BodyGuard(Arc::clone(self))
    }

    /// Ready when no body is open; otherwise wakes `cx` when the last one closes.
    fn poll_none_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        *lock(&self.waker) = Some(cx.waker().clone());
        if self.open.load(Ordering::SeqCst) == 0 { Poll::Ready(()) } else { Poll::Pending }
    }
}

/// Held by a response body; dropping it (body sent, or abandoned) lets the instance go on.
pub(crate) struct BodyGuard(Arc<Bodies>);

impl BodyGuard {
    /// Whether the instance was stopped before this body was done: its end is then a cut.
    pub(crate) fn instance_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(waker) = lock(&self.0.waker).take()
        {
            waker.wake();
        }
    }
}
