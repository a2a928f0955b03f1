//! Metrics as data: the series the gateway counts (each a name and its label names), the fixed
//! latency buckets, and the isolate's buffer that adds observations up between two flushes.
//!
//! A series value is one field of a Redis hash (`stores::redis::metrics`): its name and label
//! values joined by `|` (label values have `|` replaced), e.g. `requests|tenant-a|gpt-4o|hit`.
//! A histogram observation adds one to its bucket's field (`...|b3`: the first bucket whose bound
//! holds it, `b{n}` past the last bound: +Inf), its value to `...|sum` and one to `...|count`;
//! buckets are stored per bucket (not cumulative), so that fields only ever add up (`HINCRBY`).
//! Fields are counted per minute of the clock (the minute the request finished).
//!
//! `prometheus` turns the totals into the text exposition; `window` turns a window of minute or
//! hour hashes into the series the stats page charts.
//! Must not: do IO or read a clock (every time is given), or hold a `RefCell` borrow across an
//! `.await` (the buffer is shared by the requests of an isolate).

pub mod prometheus;
pub mod window;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// The upper bounds of the latency buckets, in milliseconds; one more bucket holds the rest.
pub const BUCKETS_MS: [u64; 12] = [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];

/// The upper bounds of the token-count buckets (OpenTelemetry's advice for
/// `gen_ai.client.token.usage`, up to 4 Mi); one more bucket holds the rest.
pub const BUCKETS_TOKENS: [u64; 12] = [1, 4, 16, 64, 256, 1_024, 4_096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304];

/// A counter or a histogram: its field name, the names of its labels (in the order of its
/// fields), its Prometheus name and help, and what one unit of it is in Prometheus's unit
/// (`divisor`: nano-dollars per dollar, milliseconds per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Def {
    pub name: &'static str,
    pub labels: &'static [&'static str],
    /// The bucket bounds of a histogram; `None`: a counter.
    pub buckets: Option<&'static [u64]>,
    pub prom: &'static str,
    pub help: &'static str,
    pub divisor: f64,
}

const fn counter(name: &'static str, labels: &'static [&'static str], prom: &'static str, help: &'static str) -> Def {
    Def { name, labels, buckets: None, prom, help, divisor: 1.0 }
}

const fn histogram(name: &'static str, labels: &'static [&'static str], prom: &'static str, help: &'static str) -> Def {
    Def { name, labels, buckets: Some(&BUCKETS_MS), prom, help, divisor: 1000.0 }
}

impl Def {
    pub fn is_histogram(&self) -> bool {
        self.buckets.is_some()
    }
}

/// Chat requests, by tenant, requested model and outcome (`hit`, `coalesced`, `miss`, `stale`,
/// `bypass`, `client_error`, `error`).
pub const REQUESTS: Def = counter(
    "requests",
    &["tenant", "model", "outcome"],
    "llmc_requests_total",
    "Chat requests by tenant, requested model and outcome.",
);
/// Answers from the cache, by tier (`edge-kv`, `redis`, `coalesced`; later `semantic`).
pub const HITS: Def = counter(
    "hits",
    &["tier"],
    "llmc_cache_hits_total",
    "Answers served without a provider call of their own, by tier.",
);
/// Provider calls, by target and outcome class (`OutcomeClass`).
pub const CALLS: Def = counter(
    "calls",
    &["target", "class"],
    "llmc_provider_calls_total",
    "Provider calls (attempts) by target and outcome class.",
);
/// Requests answered by a later target than the first one tried, by the first failure's class.
pub const FAILOVERS: Def = counter(
    "failovers",
    &["reason"],
    "llmc_failovers_total",
    "Requests answered by a fallback target, by why the first target failed.",
);
/// Stale answers served because no provider could answer, by tier.
pub const STALE: Def = counter(
    "stale",
    &["tier"],
    "llmc_stale_served_total",
    "Stale answers served because no provider could answer, by tier.",
);
/// Store operations that failed (a miss or a lost write for the client), by tier and kind.
pub const STORE_ERRORS: Def = counter(
    "store_errors",
    &["tier", "kind"],
    "llmc_store_errors_total",
    "Store operations that failed (counted as misses or lost writes), by tier and kind.",
);
/// Answers not stored, by reason (too large for a tier, not worth replaying).
pub const STORE_SKIPPED: Def =
    counter("store_skipped", &["reason"], "llmc_store_skipped_total", "Answers not stored, by reason.");
/// Tokens a provider reported, by tenant, target and type (`input`, `output`).
pub const TOKENS: Def = counter(
    "tokens",
    &["tenant", "target", "type"],
    "llmc_tokens_total",
    "Tokens providers reported, by tenant, target and type.",
);
/// What those tokens cost, in nano-dollars, by tenant and target.
pub const COST: Def = Def {
    divisor: 1e9,
    ..counter(
        "cost_nanos",
        &["tenant", "target"],
        "llmc_cost_usd_total",
        "What provider answers cost at list price (PRICES), in USD, by tenant and target.",
    )
};
/// What cache hits did not buy: the price of the stored answer's usage, by tenant and tier.
pub const AVOIDED: Def = Def {
    divisor: 1e9,
    ..counter(
        "cost_avoided_nanos",
        &["tenant", "tier"],
        "llmc_cost_avoided_usd_total",
        "The price of the tokens cache hits did not buy, in USD, by tenant and tier.",
    )
};
/// Tokens cache hits did not buy, by tenant and tier.
pub const AVOIDED_TOKENS: Def = counter(
    "tokens_avoided",
    &["tenant", "tier"],
    "llmc_tokens_avoided_total",
    "Tokens cache hits did not buy, by tenant and tier.",
);
/// Tokens per provider answer, as OpenTelemetry's `gen_ai.client.token.usage`.
pub const TOKEN_USAGE: Def = Def {
    buckets: Some(&BUCKETS_TOKENS),
    divisor: 1.0,
    ..histogram(
        "token_usage",
        &["target", "gen_ai_token_type"],
        "gen_ai_client_token_usage",
        "Tokens per provider answer (OpenTelemetry gen_ai.client.token.usage), by target and token type.",
    )
};
/// One provider call (one attempt), by target, as OpenTelemetry's
/// `gen_ai.client.operation.duration`.
pub const ORIGIN_MS: Def = histogram(
    "origin_ms",
    &["target"],
    "gen_ai_client_operation_duration_seconds",
    "One provider call (attempt), by target (OpenTelemetry gen_ai.client.operation.duration).",
);
/// The whole request, by the tier that answered (`origin` for a provider's answer).
pub const TOTAL_MS: Def = histogram(
    "duration_ms",
    &["tier"],
    "llmc_request_duration_seconds",
    "Whole chat requests, by the tier that answered.",
);
/// Time to the first byte of a stream's content, by tier.
pub const TTFB_TIER_MS: Def = histogram(
    "ttfb_ms",
    &["tier"],
    "llmc_stream_ttfb_seconds",
    "Time to a stream's first content, by the tier that answered.",
);
/// Time to the first token of a provider's stream, by target.
pub const TTFT_TARGET_MS: Def = histogram(
    "ttft_ms",
    &["target"],
    "llmc_time_to_first_token_seconds",
    "Time to the first token of a provider stream, by target.",
);

/// Every series, for reading fields back.
pub const ALL: [Def; 16] = [
    REQUESTS,
    HITS,
    CALLS,
    FAILOVERS,
    STALE,
    STORE_ERRORS,
    STORE_SKIPPED,
    TOKENS,
    COST,
    AVOIDED,
    AVOIDED_TOKENS,
    TOKEN_USAGE,
    ORIGIN_MS,
    TOTAL_MS,
    TTFB_TIER_MS,
    TTFT_TARGET_MS,
];

/// What became of one provider call, as the metrics and the request's log line count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeClass {
    Ok,
    ClientError,
    Auth,
    RateLimited,
    ServerError,
    Timeout,
    /// The stream broke off, or the answer could not be read or was too large.
    Cut,
    /// No connection at all.
    Unreachable,
}

impl OutcomeClass {
    pub fn word(self) -> &'static str {
        match self {
            OutcomeClass::Ok => "2xx",
            OutcomeClass::ClientError => "4xx",
            OutcomeClass::Auth => "401_403",
            OutcomeClass::RateLimited => "429",
            OutcomeClass::ServerError => "5xx",
            OutcomeClass::Timeout => "timeout",
            OutcomeClass::Cut => "cut",
            OutcomeClass::Unreachable => "unreachable",
        }
    }

    pub fn of(error: &crate::error::UpstreamError) -> OutcomeClass {
        use crate::error::UpstreamError as E;
        match error {
            E::Connect(_) | E::NotConfigured => OutcomeClass::Unreachable,
            E::Timeout { .. } => OutcomeClass::Timeout,
            E::RateLimited { .. } => OutcomeClass::RateLimited,
            E::Auth { .. } => OutcomeClass::Auth,
            E::Server { .. } => OutcomeClass::ServerError,
            E::ClientRequest { .. } => OutcomeClass::ClientError,
            E::Malformed(_) | E::TooLarge { .. } | E::Stream(_) => OutcomeClass::Cut,
        }
    }
}

/// The field of `def` with these label values (in `def.labels` order).
pub fn field(def: &Def, values: &[&str]) -> String {
    let mut field = def.name.to_owned();
    for v in values {
        field.push('|');
        field.extend(v.chars().map(|c| if c == '|' || c.is_control() { '_' } else { c }));
    }
    field
}

/// The bucket of a value: the first whose bound holds it, `bounds.len()` past the last.
pub fn bucket(bounds: &[u64], value: u64) -> usize {
    bounds.iter().position(|bound| value <= *bound).unwrap_or(bounds.len())
}

/// The additions of one request (or one store event): fields and how much each grows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Adds(pub Vec<(String, u64)>);

impl Adds {
    pub fn count(&mut self, def: &Def, values: &[&str], n: u64) {
        if n > 0 {
            self.0.push((field(def, values), n));
        }
    }

    /// One observation of a histogram.
    pub fn observe(&mut self, def: &Def, values: &[&str], value: u64) {
        let Some(bounds) = def.buckets else { return };
        let base = field(def, values);
        self.0.push((format!("{base}|b{}", bucket(bounds, value)), 1));
        self.0.push((format!("{base}|sum"), value));
        self.0.push((format!("{base}|count"), 1));
    }
}

/// What one series field says, read back: the series, its label values and, for a histogram,
/// which part (`b{i}`, `sum`, `count`).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<'a> {
    pub def: Def,
    pub values: Vec<&'a str>,
    pub part: Option<&'a str>,
}

/// Parses a field; `None` for a field of no known series (written by a newer version, say).
pub fn parse(field: &str) -> Option<Parsed<'_>> {
    let mut parts = field.split('|');
    let name = parts.next()?;
    let def = ALL.iter().find(|d| d.name == name)?;
    let values: Vec<&str> = parts.by_ref().take(def.labels.len()).collect();
    if values.len() != def.labels.len() {
        return None;
    }
    let part = parts.next();
    if def.is_histogram() != part.is_some() || parts.next().is_some() {
        return None;
    }
    Some(Parsed { def: *def, values, part })
}

/// The isolate's additions not yet flushed, by minute (of the clock, from the epoch).
#[derive(Debug, Default)]
pub struct Buffer {
    pending: RefCell<BTreeMap<u64, BTreeMap<String, u64>>>,
    /// A flush is scheduled (one background task at a time).
    flushing: Cell<bool>,
}

/// The most distinct fields a buffer keeps for one minute; past it, new fields are dropped (a
/// bound on memory whatever the traffic; counted by `dropped`).
pub const MAX_FIELDS_PER_MINUTE: usize = 4_096;

impl Buffer {
    /// Adds `adds` to minute `minute`; returns how many fields were dropped for the bound.
    pub fn add(&self, minute: u64, adds: Adds) -> usize {
        let mut pending = self.pending.borrow_mut();
        let fields = pending.entry(minute).or_default();
        let mut dropped = 0;
        for (field, n) in adds.0 {
            if fields.len() >= MAX_FIELDS_PER_MINUTE && !fields.contains_key(&field) {
                dropped += 1;
                continue;
            }
            *fields.entry(field).or_default() += n;
        }
        dropped
    }

    /// Everything added since the last take, by minute; the buffer is empty after.
    pub fn take(&self) -> BTreeMap<u64, BTreeMap<String, u64>> {
        std::mem::take(&mut *self.pending.borrow_mut())
    }

    pub fn is_empty(&self) -> bool {
        self.pending.borrow().is_empty()
    }

    /// Marks a flush as scheduled; false when one already is.
    pub fn schedule(&self) -> bool {
        !self.flushing.replace(true)
    }

    /// The scheduled flush has taken what it sends: the next addition schedules another.
    pub fn flushed(&self) {
        self.flushing.set(false);
    }
}

/// Minute number of `now_ms`.
pub fn minute(now_ms: u64) -> u64 {
    now_ms / 60_000
}
