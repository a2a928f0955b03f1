//! The cache verdict: the one place that decides what an entry found in a tier may do for a
//! request, from the entry's times, the request's policy and `now`. Every freshness, `max-age` and
//! stale-if-error rule lives here; the gateway only performs what the verdict says (answer, keep
//! for an error, delete) and `cache::status` renders it.
//!
//! The rules:
//! - before `fresh_until` an entry is fresh: it answers, unless it is older than the client's
//!   `max-age` (then it is refused, `fwd=stale`);
//! - from `fresh_until` to `stale_until` it is stale: it answers only when no provider can
//!   (stale-if-error), and never for a client that set `max-age`;
//! - from `stale_until` on it is expired: as good as absent, and a store without a TTL of its own
//!   should delete it;
//! - of two stale entries (one per tier), the newer is kept;
//! - tier 1 gets a copy of a tier-2 hit unless it holds a fresh entry itself;
//! - a store keeps an entry until `stale_until`, not longer.
//!
//! Pure: no IO, no clock (`now_ms` is an argument).

use crate::cache::entry::Entry;
use crate::cache::policy::Policy;
use crate::cache::status::Lookup;

/// Where an entry stands at `now`, whatever the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// It may answer; `ttl_s` is the remaining freshness.
    Fresh { ttl_s: u64 },
    /// Past freshness but inside the stale window: only for when no provider can answer.
    Stale { stale_for_s: u64 },
    /// Past the stale window.
    Expired,
}

pub fn freshness(entry: &Entry, now_ms: u64) -> Freshness {
    if now_ms < entry.fresh_until_ms {
        Freshness::Fresh { ttl_s: (entry.fresh_until_ms - now_ms) / 1000 }
    } else if now_ms < entry.stale_until_ms {
        Freshness::Stale { stale_for_s: (now_ms - entry.fresh_until_ms) / 1000 }
    } else {
        Freshness::Expired
    }
}

/// What one tier's entry may do for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No entry.
    Miss,
    /// Past its stale window: a miss, and a store without TTL should delete it.
    Expired,
    /// Fresh and young enough for the client: it answers now.
    Hit { ttl_s: u64 },
    /// The client's `max-age` refuses it, now and on error.
    Refused,
    /// Stale: kept to answer if no provider can.
    StaleIfError,
}

/// The verdict on what a tier `found` (`None`: nothing there) for a request with `policy` at `now_ms`.
pub fn decide(found: Option<&Entry>, policy: &Policy, now_ms: u64) -> Verdict {
    let Some(entry) = found else { return Verdict::Miss };
    let young_enough = policy.max_age_s.is_none_or(|max| entry.age_s(now_ms) <= max);
    match freshness(entry, now_ms) {
        Freshness::Fresh { ttl_s } if young_enough => Verdict::Hit { ttl_s },
        Freshness::Fresh { .. } => Verdict::Refused,
        // A client that set max-age accepts nothing older, not even on error.
        Freshness::Stale { .. } if policy.max_age_s.is_some() => Verdict::Refused,
        Freshness::Stale { .. } => Verdict::StaleIfError,
        Freshness::Expired => Verdict::Expired,
    }
}

impl Verdict {
    /// What `Cache-Status` says of the tier's lookup.
    pub fn lookup(self) -> Lookup {
        match self {
            Verdict::Miss | Verdict::Expired => Lookup::Miss,
            Verdict::Hit { ttl_s } => Lookup::Hit { ttl_s },
            Verdict::Refused | Verdict::StaleIfError => Lookup::Stale,
        }
    }
}

/// Whether a stale `candidate` should replace the stale entry `kept` for stale-if-error: the
/// newer answer wins.
pub fn prefer_stale(kept: Option<&Entry>, candidate: &Entry) -> bool {
    kept.is_none_or(|kept| kept.created_ms < candidate.created_ms)
}

/// Whether tier 1, having `found` this, should get a copy of a tier-2 hit: unless it holds a
/// fresh entry already.
pub fn needs_backfill(found: Option<&Entry>, now_ms: u64) -> bool {
    !found.is_some_and(|entry| matches!(freshness(entry, now_ms), Freshness::Fresh { .. }))
}

/// What `Cache-Status` says of a stale entry that answered because no provider could.
pub fn served_stale(entry: &Entry, now_ms: u64) -> Lookup {
    Lookup::ServedStale { past_s: now_ms.saturating_sub(entry.fresh_until_ms) / 1000 }
}

/// How long a store should keep the entry from `now_ms`: until it is useless even as a stale
/// answer. (A store's expiry is only a clean-up: `decide` is the source of truth.)
pub fn store_ttl_ms(entry: &Entry, now_ms: u64) -> u64 {
    entry.stale_until_ms.saturating_sub(now_ms)
}
