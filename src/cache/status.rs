//! What the cache did for one request, and its rendering as response headers: `Cache-Status`
//! (RFC 9211, one member per tier consulted), `x-cache` and `x-cache-tier`.
//!
//! RFC 9211 lists caches from the one closest to the origin to the one closest to the client, so
//! Redis (tier 2) comes before the edge KV (tier 1). A tier that was not consulted and not written
//! is left out, and so is tier 2 when its hedged read was still out as tier 1 answered with a hit
//! (its answer took no part in the response). A miss that shared another request's provider call
//! (single flight) says `collapsed` on tier 1's member.

use std::fmt::Write as _;

use crate::cache::policy::Bypass;
use crate::error::Tier;

/// The outcome of one tier's lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lookup {
    /// Not consulted (an earlier tier answered, or the tier is not configured).
    #[default]
    NotAsked,
    /// A fresh entry answered; `ttl_s` is its remaining freshness.
    Hit { ttl_s: u64 },
    /// No entry.
    Miss,
    /// An entry was found but was past freshness or older than the client's `max-age`.
    Stale,
    /// The store failed or held garbage; treated as a miss.
    Failed { detail: &'static str },
    /// Reads were skipped.
    Bypassed(Bypass),
    /// A stale entry from this tier answered because no provider could (`ttl_s` seconds past).
    ServedStale { past_s: u64 },
    /// Tier 1 had not answered when tier 2's hedged read answered with a hit: its lookup did not
    /// complete in time to be used (`fwd=miss; detail=hedged`).
    Hedged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TierStatus {
    pub lookup: Lookup,
    /// The answer is being written to this tier (in the background).
    pub stored: bool,
}

/// Where the answer came from, for `x-cache` / `x-cache-tier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Hit(Tier),
    Stale(Tier),
    /// From a provider after a miss.
    Origin,
    /// From a provider with reads skipped by the request (`no-cache`, `no-store`).
    Bypass,
    /// No answer (an error envelope).
    Nothing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheReport {
    pub kv: TierStatus,
    pub redis: TierStatus,
    pub served: Served,
    /// The answer came from another request's provider call for the same key.
    pub collapsed: bool,
}

impl CacheReport {
    pub fn new() -> CacheReport {
        CacheReport {
            kv: TierStatus::default(),
            redis: TierStatus::default(),
            served: Served::Nothing,
            collapsed: false,
        }
    }

    pub fn tier_mut(&mut self, tier: Tier) -> &mut TierStatus {
        match tier {
            Tier::EdgeKv => &mut self.kv,
            Tier::Redis => &mut self.redis,
        }
    }

    /// `x-cache`: HIT, MISS, STALE or BYPASS.
    pub fn x_cache(&self) -> &'static str {
        match self.served {
            Served::Hit(_) => "HIT",
            Served::Stale(_) => "STALE",
            Served::Bypass => "BYPASS",
            Served::Origin | Served::Nothing => "MISS",
        }
    }

    /// `x-cache-tier`: the tier that answered, or "origin"; `None` when nothing answered.
    pub fn x_cache_tier(&self) -> Option<&'static str> {
        match self.served {
            Served::Hit(t) | Served::Stale(t) => Some(t.as_str()),
            Served::Origin | Served::Bypass => Some("origin"),
            Served::Nothing => None,
        }
    }

    /// The `Cache-Status` field value, or `None` when no tier took part.
    pub fn cache_status(&self) -> Option<String> {
        let members: Vec<String> = [(Tier::Redis, self.redis), (Tier::EdgeKv, self.kv)]
            .into_iter()
            .filter_map(|(tier, status)| {
                let mut m = member(tier, status)?;
                if self.collapsed && tier == Tier::EdgeKv {
                    m.push_str("; collapsed");
                }
                Some(m)
            })
            .collect();
        (!members.is_empty()).then(|| members.join(", "))
    }
}

impl Default for CacheReport {
    fn default() -> Self {
        CacheReport::new()
    }
}

fn member(tier: Tier, status: TierStatus) -> Option<String> {
    let mut m = tier.as_str().to_owned();
    match status.lookup {
        Lookup::NotAsked if !status.stored => return None,
        Lookup::NotAsked => {}
        Lookup::Hit { ttl_s } => write!(m, "; hit; ttl={ttl_s}").expect("String write"),
        Lookup::Miss => m.push_str("; fwd=uri-miss"),
        Lookup::Stale => m.push_str("; fwd=stale"),
        Lookup::Failed { detail } => write!(m, "; fwd=miss; detail={detail}").expect("String write"),
        Lookup::Hedged => m.push_str("; fwd=miss; detail=hedged"),
        Lookup::Bypassed(Bypass::Request) => m.push_str("; fwd=request"),
        Lookup::ServedStale { past_s } => {
            write!(m, "; hit; ttl=-{past_s}; detail=stale-if-error").expect("String write")
        }
    }
    if status.stored {
        m.push_str("; stored");
    }
    Some(m)
}
