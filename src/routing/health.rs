//! What the gateway knows about each target's health: its breaker and its 429 cool-down. Kept
//! in isolate memory that the adapter provides (the `Memory` port); shared between isolates
//! through Redis on a best-effort basis as `Shared` records.
//! Must not: block a request on Redis (sharing happens after the response).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::routing::breaker::{Breaker, BreakerConfig};

/// Per-isolate health of every target, by target id.
#[derive(Debug, Default)]
pub struct Health {
    breakers: RefCell<HashMap<String, Breaker>>,
    cooldowns: RefCell<HashMap<String, u64>>,
    /// When this isolate last read the shared records.
    pub last_sync_ms: Cell<u64>,
}

/// What one isolate tells the others about a target. Hosts whose memory does not last between
/// requests also share the whole breaker (its window of outcomes), which is all they have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    pub open_until_ms: u64,
    pub cooldown_until_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<Breaker>,
}

/// Why a target was skipped without being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    CircuitOpen,
    CoolingDown,
}

impl Health {
    /// Whether `id` may be called now (claims a half-open probe if that is what lets it, so call
    /// it only right before calling the target).
    pub fn admit(&self, id: &str, now_ms: u64, config: &BreakerConfig) -> Result<(), Skip> {
        if self.cooldowns.borrow().get(id).is_some_and(|until| *until > now_ms) {
            return Err(Skip::CoolingDown);
        }
        let mut breakers = self.breakers.borrow_mut();
        if breakers.entry(id.to_owned()).or_default().allow(now_ms, config) {
            Ok(())
        } else {
            Err(Skip::CircuitOpen)
        }
    }

    /// Records an attempt's outcome; true when it opened the breaker.
    pub fn record(&self, id: &str, now_ms: u64, ok: bool, config: &BreakerConfig) -> bool {
        self.breakers.borrow_mut().entry(id.to_owned()).or_default().record(now_ms, ok, config)
    }

    pub fn cool_down(&self, id: &str, until_ms: u64) {
        let mut cooldowns = self.cooldowns.borrow_mut();
        let entry = cooldowns.entry(id.to_owned()).or_insert(0);
        *entry = (*entry).max(until_ms);
    }

    /// The record to share for `id`, with the whole breaker when `with_breaker`.
    pub fn shared(&self, id: &str, with_breaker: bool) -> Shared {
        let breakers = self.breakers.borrow();
        Shared {
            open_until_ms: breakers.get(id).and_then(Breaker::open_until).unwrap_or(0),
            cooldown_until_ms: self.cooldowns.borrow().get(id).copied().unwrap_or(0),
            breaker: if with_breaker { breakers.get(id).cloned() } else { None },
        }
    }

    /// Adopts what another isolate shared. A whole breaker is adopted only where this isolate
    /// has none of its own yet (a fresh Spin instance).
    pub fn merge(&self, id: &str, shared: Shared, now_ms: u64) {
        if let Some(breaker) = shared.breaker {
            self.breakers.borrow_mut().entry(id.to_owned()).or_insert(breaker);
        }
        self.breakers.borrow_mut().entry(id.to_owned()).or_default().merge_open_until(shared.open_until_ms, now_ms);
        if shared.cooldown_until_ms > now_ms {
            self.cool_down(id, shared.cooldown_until_ms);
        }
    }

    /// Forgets everything (what a new instance starts with).
    pub fn clear(&self) {
        self.breakers.borrow_mut().clear();
        self.cooldowns.borrow_mut().clear();
        self.last_sync_ms.set(0);
    }

    /// A short word for `/healthz`.
    pub fn describe(&self, id: &str, now_ms: u64) -> &'static str {
        if self.cooldowns.borrow().get(id).is_some_and(|until| *until > now_ms) {
            return "cooling-down";
        }
        match self.breakers.borrow().get(id).map(Breaker::state) {
            Some(crate::routing::breaker::State::Open { until_ms }) if until_ms > now_ms => "open",
            Some(crate::routing::breaker::State::Open { .. } | crate::routing::breaker::State::HalfOpen { .. }) => {
                "half-open"
            }
            _ => "closed",
        }
    }
}
