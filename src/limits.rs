//! Rate limits as pure arithmetic: a sliding window of one minute over two fixed windows (the
//! approximation `@upstash/ratelimit` and Cloudflare use). A count in the window is
//! `floor(previous window's count × the share of it still inside the sliding window) + this
//! window's count`. Redis keeps the fixed windows' counters (`stores::redis`, one script round
//! trip per check); this module says which window `now` is in, how much of the previous one
//! still counts, whether a request fits, when it would, and what the OpenAI-style headers say.
//!
//! `budget` does the same for daily and monthly spend budgets (UTC days and months).
//! `memory` keeps in isolate memory what costs nothing to know again: tenants refused until a
//! time, tenants past a hard budget until the period ends, and targets switched off by an
//! operator.
//! Must not: do IO or read a clock (every time is given), or decide what a client is told
//! beyond the numbers (the gateway does).

pub mod budget;
pub mod memory;

/// The window of every per-minute limit.
pub const WINDOW_MS: u64 = 60_000;
/// How long a window's counter is kept: it still counts as the previous window.
pub const COUNTER_TTL_MS: u64 = 2 * WINDOW_MS;

/// What the limits are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Requests,
    Tokens,
}

impl Kind {
    /// The word of headers, Redis keys and the 429's `type` (as OpenAI names them).
    pub fn word(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Tokens => "tokens",
        }
    }
}

/// Where `now_ms` falls: the fixed window's number (from the epoch) and how far into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub window: u64,
    pub elapsed_ms: u64,
}

impl Position {
    pub fn at(now_ms: u64) -> Position {
        Position { window: now_ms / WINDOW_MS, elapsed_ms: now_ms % WINDOW_MS }
    }

    /// The previous window's weight, in parts per million: the share of it still inside the
    /// sliding window (what the script is told; it has no clock of its own either).
    pub fn previous_weight_ppm(self) -> u64 {
        (WINDOW_MS - self.elapsed_ms) * 1_000_000 / WINDOW_MS
    }

    /// Milliseconds until this fixed window ends.
    pub fn left_ms(self) -> u64 {
        WINDOW_MS - self.elapsed_ms
    }
}

/// The two fixed windows' counts of one kind, as Redis returned them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub current: u64,
    pub previous: u64,
}

impl Counts {
    /// The count in the sliding window at `at` (the same rounding as the script).
    pub fn used(self, at: Position) -> u64 {
        self.previous.saturating_mul(at.previous_weight_ppm()) / 1_000_000 + self.current
    }

    /// How long from `at` until `cost` more fit under `limit`; `None` when they never would
    /// (`cost` alone is over the limit). 0 when they fit now.
    pub fn wait_ms(self, at: Position, limit: u64, cost: u64) -> Option<u64> {
        if cost > limit {
            return None;
        }
        if self.used(at).saturating_add(cost) <= limit {
            return Some(0);
        }
        let room = limit - cost;
        if self.current <= room {
            // In this window, once enough of the previous one has slid out:
            // previous × (W − e) / W ≤ room − current  ⇔  e ≥ W − (room − current) × W / previous.
            let e = WINDOW_MS - ((room - self.current) * WINDOW_MS / self.previous.max(1)).min(WINDOW_MS);
            return Some(e.saturating_sub(at.elapsed_ms).max(1));
        }
        // In the next window, once enough of this one has slid out.
        let e = WINDOW_MS - (room * WINDOW_MS / self.current).min(WINDOW_MS);
        Some(at.left_ms() + e.max(1))
    }

    /// How long from `at` until the sliding window holds nothing of what is counted now (what
    /// OpenAI's `x-ratelimit-reset-*` means: back to the full limit).
    pub fn reset_ms(self, at: Position) -> u64 {
        if self.current > 0 {
            at.left_ms() + WINDOW_MS
        } else if self.previous > 0 {
            at.left_ms()
        } else {
            0
        }
    }
}

/// The state of one limit after a check, for the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub kind: Kind,
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

impl Standing {
    /// The three headers OpenAI's SDKs read: `x-ratelimit-limit-<kind>`,
    /// `x-ratelimit-remaining-<kind>`, `x-ratelimit-reset-<kind>`.
    pub fn headers(&self) -> [(String, String); 3] {
        let kind = self.kind.word();
        [
            (format!("x-ratelimit-limit-{kind}"), self.limit.to_string()),
            (format!("x-ratelimit-remaining-{kind}"), self.remaining.to_string()),
            (format!("x-ratelimit-reset-{kind}"), duration(self.reset_ms)),
        ]
    }
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*` (Go's format): `0s`, `20ms`, `1s`,
/// `1.5s`, `6m0s`, `1h2m3s`.
pub fn duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    let seconds = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

/// A rough count of a request's input tokens, without a tokenizer: a quarter of the bytes of
/// its messages as JSON, rounded up (about right for English text and code; generous for JSON
/// punctuation). Used before the call only; after it the provider's own count is used.
pub fn estimate_input_tokens(messages: &[serde_json::Value]) -> u64 {
    let bytes: usize = messages.iter().map(|m| serde_json::to_vec(m).map_or(0, |v| v.len())).sum();
    (bytes as u64).div_ceil(4)
}

/// The tokens a completion used, from its `usage` (`total_tokens`, else input plus output).
pub fn used_tokens(usage: &serde_json::Value) -> Option<u64> {
    let n = |name: &str| usage.get(name).and_then(serde_json::Value::as_u64);
    n("total_tokens").or_else(|| Some(n("prompt_tokens")? + n("completion_tokens").unwrap_or(0)))
}
