//! The pacing settings (`routing::pacing`): `PACING_SHARE_PERCENT` (1 to 100, default 80), the
//! share of a target's declared `rpm`/`tpm` that `low` and `normal` priority requests may use,
//! and `PACING_HIGH_WAIT_MS` (0 to 30000, default 2000), the longest a `high` priority request
//! waits for room.
//! Must not: put a value into a problem.

use crate::ports::Vars;
use crate::routing::pacing::Pacing;

pub fn read(vars: &impl Vars, problems: &mut Vec<String>) -> Pacing {
    let mut pacing = Pacing::default();
    let mut number = |name: &str, min: u64, max: u64, default: u64| {
        let Some(raw) = vars.var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else { return default };
        raw.parse::<u64>().ok().filter(|n| (min..=max).contains(n)).unwrap_or_else(|| {
            problems.push(format!("{name} must be a whole number from {min} to {max}; {default} applies"));
            default
        })
    };
    pacing.share_percent = number("PACING_SHARE_PERCENT", 1, 100, pacing.share_percent);
    pacing.high_wait_ms = number("PACING_HIGH_WAIT_MS", 0, 30_000, pacing.high_wait_ms);
    pacing
}
