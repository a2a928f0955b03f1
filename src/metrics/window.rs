//! A window of time read back from the per-minute or per-hour hashes, turned into the series the
//! stats page charts: requests by outcome, hit rate by tier, latency percentiles by tier and by
//! target (estimated from the fixed buckets as Prometheus's `histogram_quantile` does), provider
//! errors by class, failovers, tokens and cost by tenant, cost saved by the cache.
//! Must not: do IO or read a clock (the window's end is given).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{parse, Def, CALLS, COST, FAILOVERS, HITS, ORIGIN_MS, REQUESTS, STALE, TOKENS, TOTAL_MS};

/// A window the page may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Hour,
    Day,
    Week,
}

impl Window {
    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "hour" => Some(Window::Hour),
            "day" => Some(Window::Day),
            "week" => Some(Window::Week),
            _ => None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Week => "week",
        }
    }

    /// The length of one point, in ms: a minute for the last hour, an hour for longer windows.
    pub fn step_ms(self) -> u64 {
        match self {
            Window::Hour => 60_000,
            Window::Day | Window::Week => 3_600_000,
        }
    }

    /// The buckets (numbers from the epoch, of `step_ms`) the window ending at `now_ms` covers,
    /// oldest first.
    pub fn buckets(self, now_ms: u64) -> Vec<u64> {
        let count = match self {
            Window::Hour => 60,
            Window::Day => 24,
            Window::Week => 168,
        };
        let last = now_ms / self.step_ms();
        (last.saturating_sub(count - 1)..=last).collect()
    }
}

/// The page's view of a window: one value per bucket for each series.
pub fn view(window: Window, buckets: &[u64], hashes: &[BTreeMap<String, u64>]) -> Value {
    let n = buckets.len();
    let mut out = Map::new();
    out.insert("window".into(), json!(window.word()));
    out.insert("step_s".into(), json!(window.step_ms() / 1000));
    out.insert("times".into(), json!(buckets.iter().map(|b| b * window.step_ms() / 1000).collect::<Vec<_>>()));
    let by = |def: &Def, label: usize| grouped(hashes, def, label, n);
    out.insert("requests".into(), to_json(&by(&REQUESTS, 2)));
    out.insert("hits".into(), to_json(&by(&HITS, 0)));
    let requests = total(&by(&REQUESTS, 2), n);
    let hit_rate: BTreeMap<String, Vec<Option<f64>>> = by(&HITS, 0)
        .into_iter()
        .map(|(tier, hits)| {
            let rate = hits.iter().zip(&requests).map(|(h, r)| (*r > 0).then(|| *h as f64 / *r as f64)).collect();
            (tier, rate)
        })
        .collect();
    out.insert("hit_rate".into(), json!(hit_rate));
    let errors: BTreeMap<String, Vec<u64>> = by(&CALLS, 1).into_iter().filter(|(class, _)| class != "2xx").collect();
    out.insert("provider_errors".into(), to_json(&errors));
    out.insert("failovers".into(), to_json(&by(&FAILOVERS, 0)));
    out.insert("stale".into(), to_json(&by(&STALE, 0)));
    out.insert("tokens_by_tenant".into(), to_json(&by(&TOKENS, 0)));
    out.insert("cost_usd_by_tenant".into(), json!(dollars(&by(&COST, 0))));
    out.insert("cost_saved_usd".into(), json!(dollars(&by(&super::AVOIDED, 0))));
    out.insert("latency_ms_by_tier".into(), percentiles(hashes, &TOTAL_MS, n));
    out.insert("latency_ms_by_target".into(), percentiles(hashes, &ORIGIN_MS, n));
    Value::Object(out)
}

/// Per value of label `label` of counter `def`: its sum in each bucket.
fn grouped(hashes: &[BTreeMap<String, u64>], def: &Def, label: usize, n: usize) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (i, hash) in hashes.iter().enumerate() {
        for (field, value) in hash {
            let Some(p) = parse(field).filter(|p| p.def.name == def.name && p.part.is_none()) else { continue };
            out.entry(p.values[label].to_owned()).or_insert_with(|| vec![0; n])[i] += value;
        }
    }
    out
}

fn total(series: &BTreeMap<String, Vec<u64>>, n: usize) -> Vec<u64> {
    (0..n).map(|i| series.values().map(|v| v[i]).sum()).collect()
}

fn to_json(series: &BTreeMap<String, Vec<u64>>) -> Value {
    json!(series)
}

fn dollars(series: &BTreeMap<String, Vec<u64>>) -> BTreeMap<String, Vec<f64>> {
    series.iter().map(|(k, v)| (k.clone(), v.iter().map(|n| crate::prices::usd(*n)).collect())).collect()
}

/// Per value of a histogram's first label: p50, p95 and p99 in each bucket of time (`null` where
/// nothing was observed).
fn percentiles(hashes: &[BTreeMap<String, u64>], def: &Def, n: usize) -> Value {
    let Some(bounds) = def.buckets else { return Value::Null };
    // label -> time bucket -> histogram bucket -> count
    let mut counts: BTreeMap<String, Vec<Vec<u64>>> = BTreeMap::new();
    for (i, hash) in hashes.iter().enumerate() {
        for (field, value) in hash {
            let Some(p) = parse(field).filter(|p| p.def.name == def.name) else { continue };
            let Some(b) = p.part.and_then(|part| part.strip_prefix('b')).and_then(|b| b.parse::<usize>().ok()) else {
                continue;
            };
            let per_time = counts.entry(p.values[0].to_owned()).or_insert_with(|| vec![vec![0; bounds.len() + 1]; n]);
            if let Some(slot) = per_time[i].get_mut(b) {
                *slot += value;
            }
        }
    }
    let out: Map<String, Value> = counts
        .into_iter()
        .map(|(label, per_time)| {
            let q = |q: f64| per_time.iter().map(|h| quantile(bounds, h, q)).collect::<Vec<_>>();
            (label, json!({"p50": q(0.5), "p95": q(0.95), "p99": q(0.99)}))
        })
        .collect();
    Value::Object(out)
}

/// The `q` quantile of a histogram (`counts` per bucket, the last past every bound), by linear
/// interpolation inside the bucket it falls in; the last bound when it falls past it; `None`
/// without observations.
pub fn quantile(bounds: &[u64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, count) in counts.iter().enumerate() {
        let before = seen as f64;
        seen += count;
        if (seen as f64) >= rank && *count > 0 {
            let Some(upper) = bounds.get(i) else { return bounds.last().map(|b| *b as f64) };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] as f64 };
            return Some(lower + (*upper as f64 - lower) * (rank - before) / *count as f64);
        }
    }
    bounds.last().map(|b| *b as f64)
}
