//! The `Memory` port. Spin 4 reuses an instance for up to 128 requests, up to 16 at once (by
//! default; `spin up` flags change it), so this memory lasts as long as the instance: a new
//! instance starts empty and reads the shared health from Redis before its first routing (the
//! core does that for any memory that has never synced), later requests sync in the background.
//! `Health` keeps no borrow across an `.await`, so interleaved requests share it safely.

use super::SpinHost;
use crate::coalesce::Flights;
use crate::limits::memory::LimitMemory;
use crate::metrics::Buffer;
use crate::ports::Memory;
use crate::routing::health::Health;

thread_local! {
    // Leaked once per instance: the instance's lifetime is the program's lifetime.
    static HEALTH: &'static Health = Box::leak(Box::default());
    static FLIGHTS: &'static Flights = Box::leak(Box::default());
    static LIMITS: &'static LimitMemory = Box::leak(Box::default());
    static METRICS: &'static Buffer = Box::leak(Box::default());
}

impl Memory for SpinHost {
    fn health(&self) -> &Health {
        HEALTH.with(|h| *h)
    }

    fn flights(&self) -> &Flights {
        FLIGHTS.with(|f| *f)
    }

    fn limits(&self) -> &LimitMemory {
        LIMITS.with(|l| *l)
    }

    fn metrics(&self) -> &Buffer {
        METRICS.with(|m| *m)
    }
}
