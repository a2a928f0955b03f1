//! What isolates tell each other about target health, as plain values: outcome counts per time
//! slice of the breaker window (totals that every isolate adds to), and marks (times) that only
//! ever move later. `routing::health` makes and folds them; `stores::redis` turns them into Redis
//! commands and back. Both operations commute: no isolate can erase what another reported.
//! Must not: do IO or read a clock (the times here are given).

/// Outcomes of calls to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub ok: u64,
    pub fail: u64,
}

impl Counts {
    pub fn total(self) -> u64 {
        self.ok.saturating_add(self.fail)
    }

    pub fn is_empty(self) -> bool {
        self.total() == 0
    }

    pub fn plus(self, other: Counts) -> Counts {
        Counts { ok: self.ok.saturating_add(other.ok), fail: self.fail.saturating_add(other.fail) }
    }

    pub fn minus(self, other: Counts) -> Counts {
        Counts { ok: self.ok.saturating_sub(other.ok), fail: self.fail.saturating_sub(other.fail) }
    }

    /// Each count the larger of the two (both are totals of the same slice, read at two times).
    pub fn max(self, other: Counts) -> Counts {
        Counts { ok: self.ok.max(other.ok), fail: self.fail.max(other.fail) }
    }
}

/// A target's marks, in ms since the epoch (0: none). Redis keeps the latest of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Marks {
    /// The breaker rests the target until then (the latest opening's end).
    pub open_until_ms: u64,
    /// When a half-open probe last succeeded and closed the breaker.
    pub closed_at_ms: u64,
    /// A 429 rests the target until then.
    pub cool_until_ms: u64,
}

impl Marks {
    pub fn is_empty(&self) -> bool {
        self.latest() == 0
    }

    /// The latest of the three.
    pub fn latest(&self) -> u64 {
        self.open_until_ms.max(self.closed_at_ms).max(self.cool_until_ms)
    }
}

/// What one read found of one target: the counts of the window's slices, and its marks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seen {
    /// `(slice number, totals)`, for the slices read.
    pub slices: Vec<(u64, Counts)>,
    pub marks: Marks,
}

/// Outcomes one isolate adds to one slice's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceReport {
    pub slice: u64,
    pub counts: Counts,
    /// How long the totals are of use from now: until the slice leaves the window.
    pub ttl_ms: u64,
}

/// What one isolate reports of one target: outcomes to add, and the marks it moved (0 where it
/// moved none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub target: String,
    pub slices: Vec<SliceReport>,
    pub marks: Marks,
    /// How long the marks are of use from now (they still explain the counts around them).
    pub marks_ttl_ms: u64,
    /// The breaker's epoch when the report was taken (`Breaker::confirm`).
    pub epoch: u32,
}

/// Redis's answer to one `SliceReport`: each total after the addition, where it is known to
/// have been made (`None`: not sent, or failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Added {
    pub ok: Option<u64>,
    pub fail: Option<u64>,
}
