//! The `Memory` port: state kept in the isolate's memory for as long as workerd keeps the isolate
//! (minutes to hours, never guaranteed; a new isolate starts empty and learns from Redis).

use super::CfHost;
use crate::coalesce::Flights;
use crate::limits::memory::LimitMemory;
use crate::metrics::Buffer;
use crate::ports::Memory;
use crate::routing::health::Health;

thread_local! {
    // Leaked once per isolate: the isolate's lifetime is the program's lifetime.
    static HEALTH: &'static Health = Box::leak(Box::default());
    static FLIGHTS: &'static Flights = Box::leak(Box::default());
    static LIMITS: &'static LimitMemory = Box::leak(Box::default());
    static METRICS: &'static Buffer = Box::leak(Box::default());
}

impl Memory for CfHost {
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
