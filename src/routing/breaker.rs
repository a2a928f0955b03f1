//! A circuit breaker per target, as a pure state machine over injected time (`allow(now)`,
//! `record(now, ok)`, `merge(now, seen)`), whose window adds up what every isolate saw.
//!
//! Closed: requests flow; outcomes are counted per slice of the window (`SLICES` fixed slices,
//! numbered from the epoch, so every isolate numbers them alike). A slice's count is what this
//! isolate saw and has not yet seen confirmed in Redis, plus the slice's total over all isolates
//! as last learned from Redis (a read, or the reply to this isolate's own addition: a total that
//! only grows, so the larger of two is the newer). When at least `min_requests` were counted in
//! the window and the error share passes `error_rate`, it opens: on an outcome, or on learning
//! others' counts. Open: requests skip the target until `open_ms` has passed. Half-open: one
//! probe at a time is let through; a success closes the breaker, a failure opens it again. A
//! probe whose outcome never comes is given up after `open_ms`, so a lost probe never strands a
//! target.
//!
//! An opening or a closing starts a clean window: this isolate's own earlier outcomes are
//! dropped, and shared counts of slices up to the one it happened in are no longer counted
//! (they hold what led to it). Openings and closings are marks that only move later (`Marks`):
//! one learned from another isolate rests the target here too, and one that has run out with no
//! closing since leaves the target half-open here, as if it had opened here. A closing never
//! undoes a later opening, whoever reports it last.
//! Defaults (5% over 60 s, at least 20 requests, open 30 s) follow common production settings
//! (Envoy outlier detection and resilience4j use the same shape).

use std::ops::RangeInclusive;

use crate::routing::sharing::{Added, Counts, SliceReport};

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

/// The slices of a window.
pub const SLICES: u64 = 6;

impl BreakerConfig {
    pub fn slice_ms(&self) -> u64 {
        (self.window_ms / SLICES).max(1)
    }

    /// The slice `now_ms` falls in.
    pub fn slice(&self, now_ms: u64) -> u64 {
        now_ms / self.slice_ms()
    }

    /// The slices of the window that ends at `now_ms`.
    pub fn window(&self, now_ms: u64) -> RangeInclusive<u64> {
        let last = self.slice(now_ms);
        last.saturating_sub(SLICES - 1)..=last
    }

    /// How long after `now_ms` the count of `slice` is of use: until it leaves the window.
    pub fn slice_ttl_ms(&self, slice: u64, now_ms: u64) -> u64 {
        (slice + SLICES).saturating_mul(self.slice_ms()).saturating_sub(now_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// One slice of the window: the shared total and this isolate's outcomes, by how far they got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Slot {
    /// Which slice this is (`BreakerConfig::slice`); a slot is reused for a later slice.
    slice: u64,
    /// The slice's total over all isolates, as last learned from Redis.
    shared: Counts,
    /// Not yet reported.
    unsent: Counts,
    /// Reported, not yet confirmed.
    sending: Counts,
    /// Whose report failed: known to this isolate only.
    kept: Counts,
}

impl Slot {
    fn local(&self) -> Counts {
        self.unsent.plus(self.sending).plus(self.kept)
    }

    fn clear_local(&mut self) {
        (self.unsent, self.sending, self.kept) = (Counts::default(), Counts::default(), Counts::default());
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    state: State,
    slots: [Slot; SLICES as usize],
    /// Shared counts of slices before this one are not counted: they led to the last change.
    floor: u64,
    /// The latest opening's end and closing known here (this isolate's or learned).
    open_until_ms: u64,
    closed_at_ms: u64,
    /// The opening and closing this isolate made and has not reported (0: none).
    news_open_until_ms: u64,
    news_closed_at_ms: u64,
    /// Counts changes, so a late confirmation of outcomes a change dropped is not counted again.
    epoch: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: State::Closed,
            slots: [Slot::default(); SLICES as usize],
            floor: 0,
            open_until_ms: 0,
            closed_at_ms: 0,
            news_open_until_ms: 0,
            news_closed_at_ms: 0,
            epoch: 0,
        }
    }
}

/// What a breaker has to report: outcomes per slice, its own opening and closing (0: none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BreakerReport {
    pub slices: Vec<SliceReport>,
    pub open_until_ms: u64,
    pub closed_at_ms: u64,
    pub epoch: u32,
}

impl Breaker {
    pub fn state(&self) -> State {
        self.state
    }

    /// The latest opening's end and closing known here (0: none).
    pub fn marks(&self) -> (u64, u64) {
        (self.open_until_ms, self.closed_at_ms)
    }

    /// Whether this breaker opened or closed and has not reported it yet.
    pub fn has_news(&self) -> bool {
        self.news_open_until_ms > 0 || self.news_closed_at_ms > 0
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
    /// outcome opened the breaker.
    pub fn record(&mut self, now_ms: u64, ok: bool, config: &BreakerConfig) -> bool {
        match self.state {
            State::HalfOpen { .. } if ok => {
                self.state = State::Closed;
                self.closed_at_ms = self.closed_at_ms.max(now_ms);
                self.news_closed_at_ms = self.closed_at_ms;
                self.change(now_ms, config);
                false
            }
            State::HalfOpen { .. } => {
                self.open(now_ms, config);
                true
            }
            // A late outcome of a request sent before the breaker opened changes nothing.
            State::Open { .. } => false,
            State::Closed => {
                if let Some(slot) = self.slot(config.slice(now_ms)) {
                    let one = if ok { Counts { ok: 1, fail: 0 } } else { Counts { ok: 0, fail: 1 } };
                    slot.unsent = slot.unsent.plus(one);
                }
                self.trip(now_ms, config)
            }
        }
    }

    /// Folds in what a read of Redis found: the window's totals and the latest opening and
    /// closing. Returns true when the counts, added up, opened the breaker here.
    pub fn merge(
        &mut self,
        now_ms: u64,
        slices: &[(u64, Counts)],
        open_until_ms: u64,
        closed_at_ms: u64,
        config: &BreakerConfig,
    ) -> bool {
        for (slice, counts) in slices {
            if let Some(slot) = self.slot(*slice) {
                slot.shared = slot.shared.max(*counts);
            }
        }
        if open_until_ms > self.open_until_ms {
            self.open_until_ms = open_until_ms;
            self.change(open_until_ms.saturating_sub(config.open_ms), config);
        }
        let learned_close = closed_at_ms > self.closed_at_ms;
        if learned_close {
            self.closed_at_ms = closed_at_ms;
            self.change(closed_at_ms, config);
        }
        if self.open_until_ms > self.closed_at_ms {
            // An opening no closing followed: open until its end, half-open after it. A probe in
            // flight decides by its own outcome.
            match self.state {
                State::HalfOpen { probe_since_ms: Some(_) } => {}
                State::Open { until_ms } if until_ms >= self.open_until_ms => {}
                _ => self.state = State::Open { until_ms: self.open_until_ms },
            }
        } else if learned_close && !matches!(self.state, State::HalfOpen { probe_since_ms: Some(_) }) {
            self.state = State::Closed;
        }
        self.trip(now_ms, config)
    }

    /// Takes what is to be reported: the outcomes not yet sent (of the window's slices) and this
    /// isolate's own opening and closing. Hand it back to `confirm` with Redis's answer.
    pub fn report(&mut self, now_ms: u64, config: &BreakerConfig) -> BreakerReport {
        let window = config.window(now_ms);
        let mut slices = Vec::new();
        for slot in &mut self.slots {
            if slot.unsent.is_empty() {
                continue;
            }
            if window.contains(&slot.slice) {
                let ttl_ms = config.slice_ttl_ms(slot.slice, now_ms);
                slices.push(SliceReport { slice: slot.slice, counts: slot.unsent, ttl_ms });
                slot.sending = slot.sending.plus(slot.unsent);
            }
            slot.unsent = Counts::default();
        }
        slices.sort_by_key(|s| s.slice);
        let report = BreakerReport {
            slices,
            open_until_ms: self.news_open_until_ms,
            closed_at_ms: self.news_closed_at_ms,
            epoch: self.epoch,
        };
        (self.news_open_until_ms, self.news_closed_at_ms) = (0, 0);
        report
    }

    /// Takes Redis's answer to the slices of a report taken at `epoch` (`None`: the report failed
    /// as a whole). A confirmed addition moves from this isolate's count into the shared total; a
    /// failed one stays counted here alone, as a failed mark stays known here alone (neither is
    /// sent twice: a report that timed out may have been applied). Returns true when the totals
    /// it brought opened the breaker.
    pub fn confirm(
        &mut self,
        sent: &[SliceReport],
        epoch: u32,
        added: Option<&[Added]>,
        now_ms: u64,
        config: &BreakerConfig,
    ) -> bool {
        let (current, floor) = (self.epoch, self.floor);
        for (i, sent) in sent.iter().enumerate() {
            let answer = added.and_then(|a| a.get(i)).copied().unwrap_or_default();
            let Some(slot) = self.slot(sent.slice) else { continue };
            let total = Counts { ok: answer.ok.unwrap_or(0), fail: answer.fail.unwrap_or(0) };
            slot.shared = slot.shared.max(total);
            // Outcomes a change dropped since the report are not this isolate's to count again.
            if epoch == current || sent.slice >= floor {
                slot.sending = slot.sending.minus(sent.counts);
                let lost = Counts {
                    ok: if answer.ok.is_none() { sent.counts.ok } else { 0 },
                    fail: if answer.fail.is_none() { sent.counts.fail } else { 0 },
                };
                slot.kept = slot.kept.plus(lost);
            }
        }
        self.trip(now_ms, config)
    }

    /// When an open breaker lets a probe through, if it is open.
    pub fn open_until(&self) -> Option<u64> {
        match self.state {
            State::Open { until_ms } => Some(until_ms),
            _ => None,
        }
    }

    /// The window's counts: this isolate's outcomes and the shared totals above the floor.
    pub fn counted(&self, now_ms: u64, config: &BreakerConfig) -> Counts {
        let window = config.window(now_ms);
        self.slots.iter().filter(|s| window.contains(&s.slice)).fold(Counts::default(), |sum, s| {
            let shared = if s.slice >= self.floor { s.shared } else { Counts::default() };
            sum.plus(s.local()).plus(shared)
        })
    }

    /// Opens a closed breaker whose window crossed the thresholds.
    fn trip(&mut self, now_ms: u64, config: &BreakerConfig) -> bool {
        if self.state != State::Closed {
            return false;
        }
        let counted = self.counted(now_ms, config);
        let total = counted.total();
        if total >= u64::from(config.min_requests)
            && total > 0
            && counted.fail as f64 / total as f64 > config.error_rate
        {
            self.open(now_ms, config);
            true
        } else {
            false
        }
    }

    fn open(&mut self, now_ms: u64, config: &BreakerConfig) {
        let until_ms = now_ms.saturating_add(config.open_ms);
        self.state = State::Open { until_ms };
        self.open_until_ms = self.open_until_ms.max(until_ms);
        self.news_open_until_ms = self.open_until_ms;
        self.change(now_ms, config);
    }

    /// A clean window from the change at `at_ms` on (see the module's doc).
    fn change(&mut self, at_ms: u64, config: &BreakerConfig) {
        let slice = config.slice(at_ms);
        self.floor = self.floor.max(slice + 1);
        for slot in self.slots.iter_mut().filter(|s| s.slice <= slice) {
            slot.clear_local();
        }
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// The slot of `slice`, taken over from an older slice if need be; `None` when it already
    /// holds a later one (the slice has left the window).
    fn slot(&mut self, slice: u64) -> Option<&mut Slot> {
        let slot = &mut self.slots[(slice % SLICES) as usize];
        if slot.slice < slice {
            *slot = Slot { slice, ..Slot::default() };
        }
        (slot.slice == slice).then_some(slot)
    }
}
