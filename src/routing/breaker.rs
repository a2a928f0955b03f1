//! A circuit breaker per target, as a pure state machine over injected time (`allow(now)`,
//! `record(now, ok)`), serializable so its openings can be shared between isolates.
//!
//! Closed: requests flow; outcomes are counted in a sliding window of buckets. When at least
//! `min_requests` were seen in the window and the error share passes `error_rate`, it opens.
//! Open: requests skip the target until `open_ms` has passed. Half-open: one probe at a time is
//! let through; a success closes the breaker (with a clean window), a failure opens it again. A
//! probe whose outcome never comes (its request was dropped, or ran out of time before the call)
//! is given up after `open_ms`, so the next request may probe: a lost probe never strands a target.
//! Defaults (5% over 60 s, at least 20 requests, open 30 s) follow common production settings
//! (Envoy outlier detection and resilience4j use the same shape).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    pub error_rate: f64,
    pub window_ms: u64,
    pub min_requests: u32,
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { error_rate: 0.05, window_ms: 60_000, min_requests: 20, open_ms: 30_000 }
    }
}

const BUCKETS: u64 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Closed,
    Open {
        until_ms: u64,
    },
    /// `probe_since_ms`: when the probe in flight was let through, if one is.
    HalfOpen {
        probe_since_ms: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
struct Bucket {
    /// Which bucket period this is (now / bucket length); stale buckets are reset on use.
    period: u64,
    ok: u32,
    err: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    state: State,
    buckets: [Bucket; BUCKETS as usize],
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { state: State::Closed, buckets: [Bucket::default(); BUCKETS as usize] }
    }
}

impl Breaker {
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether a request may go to the target now. In half-open this claims the one probe.
    pub fn allow(&mut self, now_ms: u64, config: &BreakerConfig) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until_ms } if now_ms < until_ms => false,
            State::HalfOpen { probe_since_ms: Some(since) } if now_ms < since.saturating_add(config.open_ms) => false,
            State::Open { .. } | State::HalfOpen { .. } => {
                self.state = State::HalfOpen { probe_since_ms: Some(now_ms) };
                true
            }
        }
    }

    /// Records the outcome of a request that `allow` let through. Returns true when this
    /// outcome opened the breaker (worth telling other isolates).
    pub fn record(&mut self, now_ms: u64, ok: bool, config: &BreakerConfig) -> bool {
        match self.state {
            State::HalfOpen { .. } => {
                if ok {
                    *self = Breaker::default();
                    false
                } else {
                    self.state = State::Open { until_ms: now_ms + config.open_ms };
                    true
                }
            }
            // A late outcome of a request sent before the breaker opened changes nothing.
            State::Open { .. } => false,
            State::Closed => {
                let bucket_ms = (config.window_ms / BUCKETS).max(1);
                let period = now_ms / bucket_ms;
                let slot = &mut self.buckets[(period % BUCKETS) as usize];
                if slot.period != period {
                    *slot = Bucket { period, ok: 0, err: 0 };
                }
                if ok {
                    slot.ok += 1;
                } else {
                    slot.err += 1;
                }
                let (oks, errs) = self
                    .buckets
                    .iter()
                    .filter(|b| b.period + BUCKETS > period)
                    .fold((0u32, 0u32), |(o, e), b| (o + b.ok, e + b.err));
                let total = oks + errs;
                if total >= config.min_requests && f64::from(errs) / f64::from(total) > config.error_rate {
                    self.state = State::Open { until_ms: now_ms + config.open_ms };
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Adopts an opening learned from another isolate, if it is later than what this one knows.
    pub fn merge_open_until(&mut self, until_ms: u64, now_ms: u64) {
        if until_ms <= now_ms {
            return;
        }
        match self.state {
            State::Open { until_ms: mine } if mine >= until_ms => {}
            State::HalfOpen { probe_since_ms: Some(_) } => {}
            _ => self.state = State::Open { until_ms },
        }
    }

    /// When an open breaker lets a probe through, if it is open.
    pub fn open_until(&self) -> Option<u64> {
        match self.state {
            State::Open { until_ms } => Some(until_ms),
            _ => None,
        }
    }
}
