//! The measuring loop: sends several probes in rounds at concurrency 1, each on its own
//! keep-alive connection, rotating their order every round so that none always goes first, and
//! records each answer's wall time and `Server-Timing` after checking it.
//!
//! Must not: run unbounded (every phase has a sample count and a time budget) or keep a sample
//! whose answer failed its check (the run stops instead).

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::http::{KeepAlive, Response};
use crate::probe::Probe;
use crate::stats::Samples;

/// The samples of one phase.
pub struct Phase {
    /// One per probe, in the order given.
    pub samples: Vec<Samples>,
    /// The time budget stopped the phase before `requests` rounds.
    pub truncated: bool,
}

/// Runs `warmup` unrecorded rounds, then up to `requests` recorded ones, each sending every
/// probe once (the order rotates each round); stops early after `budget`. Every answer is
/// checked outside the timed part.
pub fn measure(
    probes: &mut [(&mut KeepAlive, &Probe)],
    warmup: usize,
    requests: usize,
    budget: Duration,
) -> anyhow::Result<Phase> {
    let n = probes.len();
    let mut phase = Phase { samples: vec![Samples::default(); n], truncated: false };
    let started = Instant::now();
    for round in 0..warmup + requests {
        if round >= warmup && started.elapsed() > budget {
            eprintln!("  time budget of {budget:?} reached after {} samples per series", round - warmup);
            phase.truncated = true;
            break;
        }
        let keep = round >= warmup;
        for slot in 0..n {
            let which = (slot + round) % n;
            let (client, probe) = &mut probes[which];
            let (ms, response) = client.timed(probe)?;
            probe.verify(&response).with_context(|| format!("round {round}, {} {}", probe.method, probe.path))?;
            if !keep {
                continue;
            }
            let samples = &mut phase.samples[which];
            samples.wall_ms.push(ms);
            for (name, dur) in server_timing(&response) {
                samples.server_timing.entry(name).or_default().push(dur);
            }
        }
    }
    Ok(phase)
}

/// `Server-Timing: kv;dur=0, total;dur=1` -> [("kv", 0.0), ("total", 1.0)].
fn server_timing(response: &Response) -> Vec<(String, f64)> {
    let Some(header) = response.header("server-timing") else { return Vec::new() };
    parse_server_timing(header)
}

fn parse_server_timing(header: &str) -> Vec<(String, f64)> {
    header
        .split(',')
        .filter_map(|metric| {
            let (name, params) = metric.trim().split_once(';')?;
            let dur = params.split(';').find_map(|p| p.trim().strip_prefix("dur=")?.parse().ok())?;
            Some((name.to_owned(), dur))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_metrics() {
        let parsed = parse_server_timing("kv;dur=0, redis;desc=\"x\";dur=2.5, bad, total;dur=3");
        assert_eq!(parsed, vec![("kv".into(), 0.0), ("redis".into(), 2.5), ("total".into(), 3.0)]);
    }
}
