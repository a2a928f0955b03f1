//! Samples and their summaries: the raw per-request times of one series, the summary the report
//! prints (nearest-rank percentiles of wall time, time to first byte and time to first body
//! byte, max, mean, and the mean of each `Server-Timing` metric), and the differences between two
//! series of the same run.
//!
//! Pure arithmetic: nothing here measures, prints or touches the network.

use std::collections::BTreeMap;

/// The raw samples of one series.
#[derive(Clone, Default)]
pub struct Samples {
    /// Client wall time per request, in milliseconds.
    pub wall_ms: Vec<f64>,
    /// Time to the first byte of the status line, per request (ms).
    pub ttfb_ms: Vec<f64>,
    /// Time to the first byte of the body, per request (ms).
    pub first_data_ms: Vec<f64>,
    /// Each `Server-Timing` metric (`kv`, `redis`, `origin`, `total`) per request: the gateway's
    /// own view.
    pub server_timing: BTreeMap<String, Vec<f64>>,
}

/// Summary of one series, in milliseconds.
pub struct Series {
    /// `Cloudflare` or `Spin`.
    pub host: &'static str,
    pub name: &'static str,
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    /// Time to first byte (status line): p50 and p99.
    pub ttfb: [f64; 2],
    /// Time to the first byte of the body: p50 and p99.
    pub first_data: [f64; 2],
    /// Mean of each `Server-Timing` metric (whole milliseconds each, so only the mean says much).
    pub server_timing: BTreeMap<String, f64>,
}

impl Series {
    pub fn new(host: &'static str, name: &'static str, samples: &Samples) -> Series {
        let server_timing = samples
            .server_timing
            .iter()
            .map(|(metric, values)| (metric.clone(), values.iter().sum::<f64>() / values.len().max(1) as f64))
            .collect();
        let sorted = sorted(&samples.wall_ms);
        let (ttfb, first_data) = (sorted_pair(&samples.ttfb_ms), sorted_pair(&samples.first_data_ms));
        let n = sorted.len();
        let mean = if n == 0 { f64::NAN } else { sorted.iter().sum::<f64>() / n as f64 };
        Series {
            host,
            name,
            n,
            p50: percentile(&sorted, 50.0),
            p90: percentile(&sorted, 90.0),
            p99: percentile(&sorted, 99.0),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            mean,
            ttfb,
            first_data,
            server_timing,
        }
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// p50 and p99 of unsorted samples.
fn sorted_pair(values: &[f64]) -> [f64; 2] {
    let sorted = sorted(values);
    [percentile(&sorted, 50.0), percentile(&sorted, 99.0)]
}

/// One series minus another of the same run and host (indices into the run's series).
pub struct Diff {
    pub host: &'static str,
    pub name: &'static str,
    pub minuend: usize,
    pub subtrahend: usize,
}

impl Diff {
    /// Of wall time: (at p50, at p99) in milliseconds.
    pub fn values(&self, series: &[Series]) -> (f64, f64) {
        let (a, b) = (&series[self.minuend], &series[self.subtrahend]);
        (a.p50 - b.p50, a.p99 - b.p99)
    }

    /// Of time to first byte: (at p50, at p99) in milliseconds.
    pub fn ttfb_values(&self, series: &[Series]) -> (f64, f64) {
        let (a, b) = (&series[self.minuend], &series[self.subtrahend]);
        (a.ttfb[0] - b.ttfb[0], a.ttfb[1] - b.ttfb[1])
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 1.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
