//! Host ports: the small traits through which the core reaches the outside world (edge KV, outbound
//! HTTP, the clock, randomness, work after the response, logging, configuration variables).
//!
//! The core does no IO and reads no clock of its own: everything goes through these traits, which
//! each adapter implements and nothing more. Futures are not `Send`: both hosts run one request on
//! one thread (workerd isolates, WASI components), and JS promises are `!Send`.

use std::future::Future;
use std::pin::{pin, Pin};

use bytes::{Bytes, BytesMut};
use futures_util::future::{select, Either};
use futures_util::stream::{Stream, StreamExt};

use crate::coalesce::Flights;
use crate::routing::health::Health;

/// A chunk stream: request bodies read from the client, streaming answers from a provider.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>>>>;

/// A request or response body, either already in memory or arriving chunk by chunk.
pub enum Body {
    Full(Bytes),
    Stream(BodyStream),
}

impl Body {
    pub fn empty() -> Body {
        Body::Full(Bytes::new())
    }

    /// Reads the whole body, refusing (without reading further) once it passes `limit` bytes.
    pub async fn collect(self, limit: usize) -> Result<Bytes, CollectError> {
        match self {
            Body::Full(bytes) if bytes.len() > limit => Err(CollectError::TooLarge { limit }),
            Body::Full(bytes) => Ok(bytes),
            Body::Stream(mut stream) => {
                let mut buf = BytesMut::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(CollectError::Read)?;
                    if buf.len() + chunk.len() > limit {
                        return Err(CollectError::TooLarge { limit });
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(buf.freeze())
            }
        }
    }
}

impl Body {
    /// Like `collect`, but when the body passes `limit` the part not yet read comes back with
    /// the error, so that the caller may still read it to its end.
    pub async fn collect_or_rest(self, limit: usize) -> Result<Bytes, (CollectError, Body)> {
        match self {
            Body::Full(bytes) if bytes.len() > limit => Err((CollectError::TooLarge { limit }, Body::empty())),
            Body::Full(bytes) => Ok(bytes),
            Body::Stream(mut stream) => {
                let mut buf = BytesMut::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| (CollectError::Read(e), Body::empty()))?;
                    if buf.len() + chunk.len() > limit {
                        return Err((CollectError::TooLarge { limit }, Body::Stream(stream)));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(buf.freeze())
            }
        }
    }

    /// Reads the body to its end, or `max` bytes, keeping none of it.
    pub async fn discard(self, max: usize) {
        if let Body::Stream(mut stream) = self {
            let mut read = 0usize;
            while let Some(Ok(chunk)) = stream.next().await {
                read = read.saturating_add(chunk.len());
                if read >= max {
                    break;
                }
            }
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Full(bytes) => write!(f, "Body::Full({} bytes)", bytes.len()),
            Body::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

/// A body stream broke off (connection reset, upstream cut the stream).
#[derive(Debug, Clone, thiserror::Error)]
#[error("body stream failed: {0}")]
pub struct BodyError(pub String);

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Read(BodyError),
}

/// What failed inside a port call. Ports only report; the core decides what a failure means.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PortError {
    /// The host could not reach the resource at all (binding missing, connection refused, DNS).
    /// (Displayed as the message alone: callers wrap it in their own kind.)
    #[error("{0}")]
    Unavailable(String),
    /// The host reached it but the exchange failed (bad reply, refused write).
    #[error("{0}")]
    Failed(String),
}

/// The limits of a host's key-value store; entries that do not fit are skipped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// The shortest expiry the store accepts (Workers KV: 60 s); `None`: the store has no TTL
    /// (Spin), so expiry lives only in the entry and expired entries are deleted when read.
    pub min_ttl_seconds: Option<u64>,
}

/// Tier 1: the edge key-value store.
#[allow(async_fn_in_trait)]
pub trait Kv {
    fn kv_limits(&self) -> KvLimits;
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError>;
    /// `value` may be shared with a write to another store: an adapter reads it, never needs it
    /// to itself.
    async fn kv_put(&self, key: &str, value: Bytes, ttl_seconds: Option<u64>) -> Result<(), PortError>;
    async fn kv_delete(&self, key: &str) -> Result<(), PortError>;
    /// Up to `limit` keys greater than `after`, in ascending order: for sweeping a store without
    /// TTL (Spin). A store with TTL (`min_ttl_seconds` set) is never swept and may return none.
    async fn kv_keys_after(&self, after: &str, limit: usize) -> Result<Vec<String>, PortError>;
}

/// Outbound HTTP. The response body may stream; the caller bounds time and size.
#[allow(async_fn_in_trait)]
pub trait Http {
    async fn fetch(&self, request: http::Request<Bytes>) -> Result<http::Response<Body>, PortError>;
}

/// Time, injected so that TTL, timeout and breaker decisions are deterministic in tests.
#[allow(async_fn_in_trait)]
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    async fn sleep_ms(&self, ms: u64);
}

/// Randomness from the host (request ids, jitter); the core has none of its own.
pub trait Random {
    fn random_u64(&self) -> u64;
}

/// Work that must finish after the response has been sent (Workers' `waitUntil`). It may also be
/// spawned by a response body stream while the host is still sending it (a streamed answer's cache
/// write, at the stream's end): both hosts keep such work running after the last byte.
pub trait Background {
    fn spawn_background(&self, task: Pin<Box<dyn Future<Output = ()>>>);

    /// Work after the response that starts `ms` from now (a flush of what the isolate added up
    /// meanwhile). Both hosts keep it running like any background work; the in-memory test host
    /// runs it only when a test says so, without moving its clock.
    fn spawn_later(&self, ms: u64, task: Pin<Box<dyn Future<Output = ()>>>)
    where
        Self: Clock + Clone + 'static,
    {
        let host = self.clone();
        self.spawn_background(Box::pin(async move {
            host.sleep_ms(ms).await;
            task.await;
        }));
    }
}

/// One structured log line (JSON) per call.
pub trait Log {
    fn log(&self, line: &str);
}

/// Named configuration values: plain variables and secrets alike.
pub trait Vars {
    fn var(&self, name: &str) -> Option<String>;
}

/// Isolate memory: state that lives as long as the host keeps this instance alive, which neither
/// host guarantees (a cold start begins empty; what must survive is shared through Redis).
pub trait Memory {
    fn health(&self) -> &Health;

    /// The provider calls in flight in this instance, for single flight (`coalesce`).
    fn flights(&self) -> &Flights;

    /// Tenants refused until a time, and targets switched off (`limits::memory`).
    fn limits(&self) -> &crate::limits::memory::LimitMemory;

    /// Metrics added up since the last flush to Redis (`metrics::Buffer`).
    fn metrics(&self) -> &crate::metrics::Buffer;

    /// Whether this memory serves later requests too (a Workers isolate, a reused Spin instance)
    /// or starts empty for each one (a host that never reuses an instance: the in-memory test
    /// host models it). Without it, health comes from Redis before every routing; with it, before
    /// the first routing of the instance and in the background after that.
    fn lasts_between_requests(&self) -> bool {
        true
    }
}

/// Everything the gateway needs from a host. Cloning must be cheap: background tasks own a clone.
pub trait Host: Kv + Http + Clock + Random + Background + Log + Memory + Clone + 'static {}
impl<T: Kv + Http + Clock + Random + Background + Log + Memory + Clone + 'static> Host for T {}

/// Runs `fut` for at most `ms` milliseconds of the host's clock; `None` when time ran out.
pub async fn with_timeout<C: Clock + ?Sized, F: Future>(clock: &C, ms: u64, fut: F) -> Option<F::Output> {
    let fut = pin!(fut);
    let sleep = pin!(clock.sleep_ms(ms));
    match select(fut, sleep).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}
