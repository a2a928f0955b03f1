//! What the gateway knows about each target's health: its breaker and its 429 cool-down. Kept
//! in isolate memory that the adapter provides (the `Memory` port) and shared between isolates
//! through Redis as commutative reports (`routing::sharing`): this isolate's outcomes are added
//! to per-slice totals, and its openings, closings and cool-downs are marks that only move
//! later. `report` takes what to send, `confirm` takes Redis's answer, `merge` folds in a read.
//! Must not: do IO or read a clock; block a request on Redis (the gateway decides when to sync).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::routing::breaker::{Breaker, BreakerConfig, State};
use crate::routing::sharing::{Added, Marks, Report, Seen};

/// Per-isolate health of every target, by target id.
#[derive(Debug, Default)]
pub struct Health {
    targets: RefCell<HashMap<String, TargetHealth>>,
    /// When this isolate last read the shared state.
    pub last_sync_ms: Cell<u64>,
}

#[derive(Debug, Clone, Default)]
struct TargetHealth {
    breaker: Breaker,
    cool_until_ms: u64,
    /// A cool-down this isolate started and has not reported.
    cool_news: bool,
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
        let mut targets = self.targets.borrow_mut();
        let target = targets.entry(id.to_owned()).or_default();
        if target.cool_until_ms > now_ms {
            return Err(Skip::CoolingDown);
        }
        if target.breaker.allow(now_ms, config) {
            Ok(())
        } else {
            Err(Skip::CircuitOpen)
        }
    }

    /// Records an attempt's outcome; true when it opened the breaker.
    pub fn record(&self, id: &str, now_ms: u64, ok: bool, config: &BreakerConfig) -> bool {
        self.targets.borrow_mut().entry(id.to_owned()).or_default().breaker.record(now_ms, ok, config)
    }

    /// Rests `id` until `until_ms` (a 429), unless it already rests longer.
    pub fn cool_down(&self, id: &str, until_ms: u64) {
        let mut targets = self.targets.borrow_mut();
        let target = targets.entry(id.to_owned()).or_default();
        if until_ms > target.cool_until_ms {
            target.cool_until_ms = until_ms;
            target.cool_news = true;
        }
    }

    /// A copy of `id`'s breaker, if this isolate has one.
    pub fn breaker(&self, id: &str) -> Option<Breaker> {
        self.targets.borrow().get(id).map(|t| t.breaker.clone())
    }

    /// The marks this isolate knows of `id` (its own and those it read).
    pub fn marks(&self, id: &str) -> Marks {
        self.targets.borrow().get(id).map_or_else(Marks::default, |t| {
            let (open_until_ms, closed_at_ms) = t.breaker.marks();
            Marks { open_until_ms, closed_at_ms, cool_until_ms: t.cool_until_ms }
        })
    }

    /// Whether this isolate opened or closed a breaker or started a cool-down since it last
    /// reported (worth telling the others without waiting for the next sync).
    pub fn has_news(&self) -> bool {
        self.targets.borrow().values().any(|t| t.cool_news || t.breaker.has_news())
    }

    /// Takes what this isolate has to tell the others, one report per target with anything to
    /// say. Give each back to `confirm` with Redis's answer.
    pub fn report(&self, now_ms: u64, config: &BreakerConfig) -> Vec<Report> {
        let mut reports = Vec::new();
        for (id, target) in self.targets.borrow_mut().iter_mut() {
            let taken = target.breaker.report(now_ms, config);
            let cool_until_ms = if std::mem::take(&mut target.cool_news) { target.cool_until_ms } else { 0 };
            let marks = Marks { open_until_ms: taken.open_until_ms, closed_at_ms: taken.closed_at_ms, cool_until_ms };
            if taken.slices.is_empty() && marks.is_empty() {
                continue;
            }
            // Marks outlive themselves by a window: they still explain the counts around them.
            let (open_until_ms, closed_at_ms) = target.breaker.marks();
            let known = Marks { open_until_ms, closed_at_ms, cool_until_ms: target.cool_until_ms };
            let marks_ttl_ms = known.latest().saturating_add(config.window_ms).saturating_sub(now_ms).max(1);
            reports.push(Report { target: id.clone(), slices: taken.slices, marks, marks_ttl_ms, epoch: taken.epoch });
        }
        reports.sort_by(|a, b| a.target.cmp(&b.target));
        reports
    }

    /// Takes Redis's answer to `reports` (`None`: they failed as a whole), in their order.
    /// Returns the targets whose breaker the confirmed totals opened.
    pub fn confirm(
        &self,
        reports: &[Report],
        added: Option<&[Vec<Added>]>,
        now_ms: u64,
        config: &BreakerConfig,
    ) -> Vec<String> {
        let mut opened = Vec::new();
        let mut targets = self.targets.borrow_mut();
        for (i, report) in reports.iter().enumerate() {
            let Some(target) = targets.get_mut(&report.target) else { continue };
            let answer = added.map(|a| a.get(i).map_or(&[][..], Vec::as_slice));
            if target.breaker.confirm(&report.slices, report.epoch, answer, now_ms, config) {
                opened.push(report.target.clone());
            }
        }
        opened
    }

    /// Folds in what a read found of `id`. Returns true when it opened the breaker here.
    pub fn merge(&self, id: &str, seen: &Seen, now_ms: u64, config: &BreakerConfig) -> bool {
        let mut targets = self.targets.borrow_mut();
        let target = targets.entry(id.to_owned()).or_default();
        target.cool_until_ms = target.cool_until_ms.max(seen.marks.cool_until_ms);
        target.breaker.merge(now_ms, &seen.slices, seen.marks.open_until_ms, seen.marks.closed_at_ms, config)
    }

    /// Forgets everything (what a new instance starts with).
    pub fn clear(&self) {
        self.targets.borrow_mut().clear();
        self.last_sync_ms.set(0);
    }

    /// A short word for `/admin/health`.
    pub fn describe(&self, id: &str, now_ms: u64) -> &'static str {
        let targets = self.targets.borrow();
        let Some(target) = targets.get(id) else { return "closed" };
        if target.cool_until_ms > now_ms {
            return "cooling-down";
        }
        match target.breaker.state() {
            State::Open { until_ms } if until_ms > now_ms => "open",
            State::Open { .. } | State::HalfOpen { .. } => "half-open",
            State::Closed => "closed",
        }
    }
}
