//! Instance reuse settings, as `spin up` takes them (spinframework/spin
//! `crates/trigger-http/src/lib.rs`): how many requests one instance serves in all
//! (`--max-instance-reuse-count`, default 128 for WASIp3 components), how many at once
//! (`--max-instance-concurrent-reuse-count`, default 16) and how long an idle instance is kept for
//! the next request (`--idle-instance-timeout`, default 1 s).
//!
//! Each value is a single value or a half-open range `a..b`, from which every new instance draws
//! its own value at random (Spin's syntax and meaning). Durations are a number of seconds, or a
//! number with `s`, `ms`, `us`/`μs` or `ns`. Nothing here touches Wasm or sockets.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Spin's default for `--max-instance-reuse-count` (WASIp3 components).
pub const DEFAULT_MAX_INSTANCE_REUSE_COUNT: usize = 128;
/// Spin's default for `--max-instance-concurrent-reuse-count` (WASIp3 components).
pub const DEFAULT_MAX_INSTANCE_CONCURRENT_REUSE_COUNT: usize = 16;
/// Spin's default for `--idle-instance-timeout`.
pub const DEFAULT_IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(1);

/// A value, or a half-open range `[start, end)` each new instance draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range<T> {
    /// Always this value.
    Value(T),
    /// Drawn uniformly from `start..end` (never empty: the parser refuses `a..b` with `a >= b`).
    Bounds(T, T),
}

/// How instances are reused. [`Default`] is what `spin up` does for WASIp3 components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Requests one instance serves before it is dropped (a value of 1 gives one instance per
    /// request). 0 is taken as 1: an instance always serves the request it was made for.
    pub max_requests: Range<usize>,
    /// Requests one instance serves at the same time (0 is taken as 1).
    pub max_concurrent: Range<usize>,
    /// How long an instance with nothing left to do waits for another request.
    pub idle_timeout: Range<Duration>,
}

impl Default for InstanceReuse {
    fn default() -> Self {
        Self {
            max_requests: Range::Value(DEFAULT_MAX_INSTANCE_REUSE_COUNT),
            max_concurrent: Range::Value(DEFAULT_MAX_INSTANCE_CONCURRENT_REUSE_COUNT),
            idle_timeout: Range::Value(DEFAULT_IDLE_INSTANCE_TIMEOUT),
        }
    }
}

/// The values one instance lives by, drawn from [`InstanceReuse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceLimits {
    /// Requests in all (at least 1).
    pub max_requests: usize,
    /// Requests at once (at least 1).
    pub max_concurrent: usize,
    /// Idle time before the instance is dropped.
    pub idle_timeout: Duration,
}

impl InstanceReuse {
    /// One instance per request and nothing shared: what spin-host did before it reused instances.
    pub fn single_use() -> Self {
        Self { max_requests: Range::Value(1), max_concurrent: Range::Value(1), ..Self::default() }
    }

    /// Draw the limits of a new instance.
    pub fn draw(&self) -> InstanceLimits {
        InstanceLimits {
            max_requests: draw_usize(self.max_requests).max(1),
            max_concurrent: draw_usize(self.max_concurrent).max(1),
            idle_timeout: match self.idle_timeout {
                Range::Value(v) => v,
                Range::Bounds(a, b) => {
                    let span = u64::try_from((b - a).as_nanos()).unwrap_or(u64::MAX);
                    a + Duration::from_nanos(random_below(span))
                }
            },
        }
    }
}

fn draw_usize(range: Range<usize>) -> usize {
    match range {
        Range::Value(v) => v,
        Range::Bounds(a, b) => {
            let span = u64::try_from(b - a).unwrap_or(u64::MAX);
            a + usize::try_from(random_below(span)).unwrap_or(0)
        }
    }
}

/// A number in `0..n` (n > 0). Not for anything secret: only spreads instance limits.
fn random_below(n: u64) -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(n);
    hasher.finish() % n.max(1)
}

/// Parse a count or a range of counts (`16`, `1..8`), as `spin up` does.
pub fn parse_count_range(text: &str) -> Result<Range<usize>, String> {
    parse_range(text, |s| s.trim().parse::<usize>().map_err(|e| e.to_string()))
}

/// Parse a duration or a range of durations (`1s`, `500ms`, `2`, `1..8s`), as `spin up` does:
/// a bare number is seconds.
pub fn parse_duration_range(text: &str) -> Result<Range<Duration>, String> {
    parse_range(text, parse_duration)
}

fn parse_range<T: PartialOrd + Copy>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Range<T>, String> {
    let error = |e: String| format!("expected a value or a range a..b; got {text:?}: {e}");
    match text.split_once("..") {
        Some((start, end)) => {
            let (start, end) = (parse(start).map_err(error)?, parse(end).map_err(error)?);
            if start < end {
                Ok(Range::Bounds(start, end))
            } else {
                Err(error("the range is empty (it is half-open: a..b needs a < b)".into()))
            }
        }
        None => parse(text).map(Range::Value).map_err(error),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let number = |n: &str| n.parse::<u64>().map_err(|e| format!("{n:?}: {e}"));
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if let Some(n) = text.strip_suffix("ms") {
        Ok(Duration::from_millis(number(n)?))
    } else if let Some(n) = text.strip_suffix("us").or_else(|| text.strip_suffix("μs")) {
        Ok(Duration::from_micros(number(n)?))
    } else if let Some(n) = text.strip_suffix("ns") {
        Ok(Duration::from_nanos(number(n)?))
    } else if let Some(n) = text.strip_suffix('s') {
        Ok(Duration::from_secs(number(n)?))
    } else {
        Err("expected an integer with an optional suffix s, ms, us, μs or ns".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_spin_up() {
        assert_eq!(parse_count_range("16"), Ok(Range::Value(16)));
        assert_eq!(parse_count_range("1..8"), Ok(Range::Bounds(1, 8)));
        assert!(parse_count_range("8..8").is_err(), "half-open: empty");
        assert!(parse_count_range("x").is_err());
        assert!(parse_count_range("-1").is_err());
        assert_eq!(parse_duration_range("1s"), Ok(Range::Value(Duration::from_secs(1))));
        assert_eq!(parse_duration_range("2"), Ok(Range::Value(Duration::from_secs(2))));
        assert_eq!(parse_duration_range("250ms"), Ok(Range::Value(Duration::from_millis(250))));
        assert_eq!(parse_duration_range("7us"), Ok(Range::Value(Duration::from_micros(7))));
        assert_eq!(parse_duration_range("7μs"), Ok(Range::Value(Duration::from_micros(7))));
        assert_eq!(parse_duration_range("9ns"), Ok(Range::Value(Duration::from_nanos(9))));
        assert_eq!(
            parse_duration_range("1..8s"),
            Ok(Range::Bounds(Duration::from_secs(1), Duration::from_secs(8))),
            "a bare number is seconds on either side"
        );
        assert!(parse_duration_range("1m").is_err());
    }

    #[test]
    fn draws_within_the_range_and_at_least_one() {
        let reuse = InstanceReuse {
            max_requests: Range::Bounds(3, 5),
            max_concurrent: Range::Value(0),
            idle_timeout: Range::Bounds(Duration::from_millis(10), Duration::from_millis(20)),
        };
        for _ in 0..200 {
            let limits = reuse.draw();
            assert!((3..5).contains(&limits.max_requests), "{limits:?}");
            assert_eq!(limits.max_concurrent, 1, "0 means 1, as in Spin");
            assert!((Duration::from_millis(10)..Duration::from_millis(20)).contains(&limits.idle_timeout));
        }
        let defaults = InstanceReuse::default().draw();
        assert_eq!((defaults.max_requests, defaults.max_concurrent), (128, 16));
        assert_eq!(defaults.idle_timeout, Duration::from_secs(1));
    }
}
