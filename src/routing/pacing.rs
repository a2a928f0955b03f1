//! Pacing below the providers' own limits: a target of `ROUTES` may declare its provider's
//! per-minute limits (`rpm`, `tpm`); the gateway keeps its sustained use at or below a share of
//! them (`PACING_SHARE_PERCENT`, default 80) for `low` and `normal` priority tenants, while
//! `high` priority ones may use the rest up to the whole limit and, when even that is full, wait
//! a bounded time (`PACING_HIGH_WAIT_MS`, default 2 s) for room.
//!
//! Pure: which limits a request of a priority is checked against, and what to do when a target
//! has no room. The counting is the sliding window of `limits`, kept in Redis under a subject of
//! the target's own (`pacing_subject`), by the same script as the tenants' limits.
//! Must not: do IO or read a clock.

use super::table::ProviderLimits;

/// The default share of a provider's limits that `low` and `normal` requests may use.
pub const DEFAULT_SHARE_PERCENT: u64 = 80;
/// The default longest wait of a `high` priority request for room.
pub const DEFAULT_HIGH_WAIT_MS: u64 = 2000;

/// A tenant's priority (`TENANTS` `priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub fn parse(word: &str) -> Option<Priority> {
        match word {
            "high" => Some(Priority::High),
            "normal" => Some(Priority::Normal),
            "low" => Some(Priority::Low),
            _ => None,
        }
    }
}

/// The pacing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub share_percent: u64,
    pub high_wait_ms: u64,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing { share_percent: DEFAULT_SHARE_PERCENT, high_wait_ms: DEFAULT_HIGH_WAIT_MS }
    }
}

impl Pacing {
    /// The per-minute limits a request of `priority` may use of a target's `limits`:
    /// `(requests, tokens)`, `None` where the target declares none.
    pub fn allowance(&self, limits: ProviderLimits, priority: Priority) -> (Option<u64>, Option<u64>) {
        let share = |limit: u64| match priority {
            Priority::High => limit,
            Priority::Normal | Priority::Low => (limit * self.share_percent / 100).max(1),
        };
        (limits.rpm.map(share), limits.tpm.map(share))
    }

    /// Whether a request of `priority` that found no room waits `wait_ms` for it, having waited
    /// `waited_ms` already.
    pub fn waits(&self, priority: Priority, waited_ms: u64, wait_ms: u64) -> bool {
        priority == Priority::High && waited_ms.saturating_add(wait_ms) <= self.high_wait_ms
    }
}

/// The name a target's pacing counters are kept under (never a tenant's: `@` is in no tenant name).
pub fn pacing_subject(target_id: &str) -> String {
    format!("target@{target_id}")
}
