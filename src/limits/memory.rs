//! What an isolate remembers about guard rails (the `Memory` port hands it out), so that it costs
//! no Redis call to know again:
//! - **blocked tenants**: a tenant refused by a limit is refused again, from memory, until the
//!   time the refusal said it would fit again;
//! - **tenants past a hard budget**: refused (or degraded) from memory until the period ends;
//! - **switched-off targets**: the kill switches last read from Redis (or set by an admin call in
//!   this isolate), and when they were read, so that the gateway re-reads them once they are
//!   older than its bound.
//!
//! Like all isolate memory it may vanish at any time: what matters is in Redis.
//! Must not: do IO or read a clock (times are given), or hold a borrow across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::budget::BudgetStanding;
use super::{Kind, Standing};

/// A refusal remembered: until when, and what the headers said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub until_ms: u64,
    pub standing: Standing,
}

/// The limits and switches this isolate knows.
#[derive(Debug, Default)]
pub struct LimitMemory {
    blocked: RefCell<HashMap<(String, KindKey), Blocked>>,
    /// Tenant → the budget it is past, and until when (the period's end).
    over_budget: RefCell<HashMap<String, (BudgetStanding, u64)>>,
    /// Target id → switched off until (ms since the epoch; `u64::MAX`: until switched on).
    kills: RefCell<HashMap<String, u64>>,
    /// When the switches were last read from Redis (0: never).
    pub kills_read_ms: Cell<u64>,
    /// Checks this isolate could not make (Redis down or slow) and let through.
    pub failed_open: Cell<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KindKey {
    Requests,
    Tokens,
}

fn key(kind: Kind) -> KindKey {
    match kind {
        Kind::Requests => KindKey::Requests,
        Kind::Tokens => KindKey::Tokens,
    }
}

impl LimitMemory {
    /// Remembers that `tenant` is refused for `kind` until `until_ms`.
    pub fn block(&self, tenant: &str, blocked: Blocked) {
        self.blocked.borrow_mut().insert((tenant.to_owned(), key(blocked.standing.kind)), blocked);
    }

    /// The refusal of `tenant` still in force at `now_ms`, requests first (forgetting those
    /// that have run out).
    pub fn blocked(&self, tenant: &str, now_ms: u64, kinds: &[Kind]) -> Option<Blocked> {
        let mut map = self.blocked.borrow_mut();
        map.retain(|_, b| b.until_ms > now_ms);
        kinds.iter().find_map(|k| map.get(&(tenant.to_owned(), key(*k))).copied())
    }

    /// Remembers that `tenant` is past a hard budget until `until_ms`.
    pub fn over_budget(&self, tenant: &str, standing: BudgetStanding, until_ms: u64) {
        self.over_budget.borrow_mut().insert(tenant.to_owned(), (standing, until_ms));
    }

    /// The hard budget `tenant` is known to be past at `now_ms`, and until when.
    pub fn past_budget(&self, tenant: &str, now_ms: u64) -> Option<(BudgetStanding, u64)> {
        let mut map = self.over_budget.borrow_mut();
        map.retain(|_, (_, until)| *until > now_ms);
        map.get(tenant).copied()
    }

    /// Replaces what is known of the switches with what was read at `now_ms`.
    pub fn set_kills(&self, kills: HashMap<String, u64>, now_ms: u64) {
        *self.kills.borrow_mut() = kills;
        self.kills_read_ms.set(now_ms.max(1));
    }

    /// Records one switch flipped in this isolate (`None`: switched on).
    pub fn set_kill(&self, id: &str, until_ms: Option<u64>) {
        let mut kills = self.kills.borrow_mut();
        match until_ms {
            Some(until) => kills.insert(id.to_owned(), until),
            None => kills.remove(id),
        };
    }

    /// Until when `id` is switched off, as far as this isolate knows (`None`: it is on).
    pub fn killed_until(&self, id: &str, now_ms: u64) -> Option<u64> {
        self.kills.borrow().get(id).copied().filter(|until| *until > now_ms)
    }

    /// Forgets everything (what a new instance starts with).
    pub fn clear(&self) {
        self.blocked.borrow_mut().clear();
        self.over_budget.borrow_mut().clear();
        self.kills.borrow_mut().clear();
        self.kills_read_ms.set(0);
        self.failed_open.set(0);
    }
}
