//! The `Memory` port. A Spin instance serves one request, so this memory starts empty every time:
//! what one request learns about a target's health reaches the next only through Redis (the core
//! reads the shared counts and marks before routing, and reports after the response, when the
//! host says its memory does not last).

use super::SpinHost;
use crate::ports::Memory;
use crate::routing::health::Health;

thread_local! {
    // Leaked once per instance; the instance ends with the request.
    static HEALTH: &'static Health = Box::leak(Box::default());
}

impl Memory for SpinHost {
    fn health(&self) -> &Health {
        HEALTH.with(|h| *h)
    }

    fn lasts_between_requests(&self) -> bool {
        false
    }
}
