//! The Prometheus text exposition (format 0.0.4) of the metrics' totals: counters as `_total`
//! counters, histograms as real Prometheus histograms (cumulative `_bucket{le}` series ending in
//! `+Inf`, `_sum`, `_count`), in the units Prometheus names them in (seconds, dollars).
//! Must not: do IO; a field of no known series is left out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{parse, Def, ALL};

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition of `totals` (field -> value, as `stores::redis::metrics` reads them).
pub fn exposition(totals: &BTreeMap<String, u64>) -> String {
    // Per series, per label values: a counter's value, or a histogram's buckets, sum and count.
    let mut counters: BTreeMap<&str, BTreeMap<Vec<&str>, u64>> = BTreeMap::new();
    let mut histograms: BTreeMap<&str, BTreeMap<Vec<&str>, Histogram>> = BTreeMap::new();
    for (field, value) in totals {
        let Some(parsed) = parse(field) else { continue };
        match parsed.part {
            None => *counters.entry(parsed.def.name).or_default().entry(parsed.values).or_default() += value,
            Some(part) => {
                let h = histograms.entry(parsed.def.name).or_default().entry(parsed.values).or_default();
                match part {
                    "sum" => h.sum += value,
                    "count" => h.count += value,
                    bucket => {
                        if let Some(i) = bucket.strip_prefix('b').and_then(|i| i.parse::<usize>().ok()) {
                            *h.buckets.entry(i).or_default() += value;
                        }
                    }
                }
            }
        }
    }
    let mut out = String::new();
    for def in ALL {
        let kind = if def.is_histogram() { "histogram" } else { "counter" };
        let _ = writeln!(out, "# HELP {} {}", family(&def), def.help);
        let _ = writeln!(out, "# TYPE {} {kind}", family(&def));
        if let Some(series) = counters.get(def.name) {
            for (values, value) in series {
                let _ =
                    writeln!(out, "{}{} {}", def.prom, labels(&def, values, None), number(*value as f64 / def.divisor));
            }
        }
        if let (Some(series), Some(bounds)) = (histograms.get(def.name), def.buckets) {
            for (values, h) in series {
                let mut cumulative = 0;
                for (i, bound) in bounds.iter().enumerate() {
                    cumulative += h.buckets.get(&i).copied().unwrap_or(0);
                    let le = number(*bound as f64 / def.divisor);
                    let _ = writeln!(out, "{}_bucket{} {cumulative}", def.prom, labels(&def, values, Some(&le)));
                }
                // +Inf holds every observation: the count (what the buckets add up to, and more
                // should a bucket's field have been lost).
                let inf = h.count.max(cumulative + h.buckets.get(&bounds.len()).copied().unwrap_or(0));
                let _ = writeln!(out, "{}_bucket{} {inf}", def.prom, labels(&def, values, Some("+Inf")));
                let _ = writeln!(
                    out,
                    "{}_sum{} {}",
                    def.prom,
                    labels(&def, values, None),
                    number(h.sum as f64 / def.divisor)
                );
                let _ = writeln!(out, "{}_count{} {inf}", def.prom, labels(&def, values, None));
            }
        }
    }
    out
}

#[derive(Default)]
struct Histogram {
    buckets: BTreeMap<usize, u64>,
    sum: u64,
    count: u64,
}

/// A family's name in `# HELP` and `# TYPE`: a counter's without `_total`.
fn family(def: &Def) -> &'static str {
    match def.buckets {
        None => def.prom.strip_suffix("_total").unwrap_or(def.prom),
        Some(_) => def.prom,
    }
}

fn labels(def: &Def, values: &[&str], le: Option<&str>) -> String {
    let mut pairs: Vec<String> =
        def.labels.iter().zip(values).map(|(name, value)| format!("{name}=\"{}\"", escape(value))).collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A sample value: whole numbers without a fraction, others as Rust prints them (both parse as
/// Go's `ParseFloat`, which Prometheus uses).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}
