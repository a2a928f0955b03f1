//! The measuring loop: sends several probes in rounds at concurrency 1, each on its own
//! keep-alive connection, rotating their order every round so that none always goes first (or,
//! with `Order::Shuffle`, in a new pseudo-random order every round, so that no probe always
//! follows the same one either: what a heavy request leaves running after its answer then
//! burdens every series alike), and
//! records each answer's wall time, time to first byte (of the status line and of the body) and
//! `Server-Timing` after checking it.
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

/// The order of the probes within a round.
#[derive(Clone, Copy)]
pub enum Order {
    /// Rotated by one each round.
    Rotate,
    /// Shuffled each round (a fixed seed: runs are repeatable).
    Shuffle,
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
    measure_in(probes, warmup, requests, budget, Order::Rotate)
}

/// [`measure`] with the probes in `order`.
pub fn measure_in(
    probes: &mut [(&mut KeepAlive, &Probe)],
    warmup: usize,
    requests: usize,
    budget: Duration,
    order: Order,
) -> anyhow::Result<Phase> {
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut slots: Vec<usize> = (0..probes.len()).collect();
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
        match order {
            Order::Rotate => slots.iter_mut().enumerate().for_each(|(slot, which)| *which = (slot + round) % n),
            Order::Shuffle => shuffle(&mut slots, &mut rng),
        }
        for &which in &slots {
            let (client, probe) = &mut probes[which];
            let (timed, response) = client.timed(probe)?;
            probe.verify(&response).with_context(|| format!("round {round}, {} {}", probe.method, probe.path))?;
            if !keep {
                continue;
            }
            let samples = &mut phase.samples[which];
            samples.wall_ms.push(timed.wall_ms);
            samples.ttfb_ms.push(timed.ttfb_ms);
            samples.first_data_ms.push(timed.first_data_ms);
            for (name, dur) in server_timing(&response) {
                samples.server_timing.entry(name).or_default().push(dur);
            }
        }
    }
    Ok(phase)
}

/// Fisher-Yates with xorshift64: no dependency, and the same sequence every run.
fn shuffle(slots: &mut [usize], state: &mut u64) {
    for i in (1..slots.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        slots.swap(i, (*state % (i as u64 + 1)) as usize);
    }
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
    fn shuffled_rounds_hold_every_probe_once_and_vary() {
        let (mut slots, mut state) = ((0..8).collect::<Vec<usize>>(), 1u64);
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..100 {
            shuffle(&mut slots, &mut state);
            let mut sorted = slots.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..8).collect::<Vec<_>>());
            firsts.insert(slots[0]);
        }
        assert_eq!(firsts.len(), 8);
    }

    #[test]
    fn server_timing_metrics() {
        let parsed = parse_server_timing("kv;dur=0, redis;desc=\"x\";dur=2.5, bad, total;dur=3");
        assert_eq!(parsed, vec![("kv".into(), 0.0), ("redis".into(), 2.5), ("total".into(), 3.0)]);
    }
}
