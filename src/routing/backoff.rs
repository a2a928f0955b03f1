//! Retry timing: jittered exponential backoff, and the provider's own advice (`retry-after`)
//! honoured up to a cap. Pure: the caller supplies randomness and does the waiting.

/// How one target is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt on the same target.
    pub retries: u32,
    pub base_ms: u64,
    pub max_ms: u64,
    /// A provider asking for a longer wait than this is left for the next target instead.
    pub retry_after_cap_ms: u64,
    /// How long a target that answered 429 without `retry-after` is skipped.
    pub default_cooldown_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { retries: 1, base_ms: 250, max_ms: 4_000, retry_after_cap_ms: 5_000, default_cooldown_ms: 10_000 }
    }
}

/// What to do after a retryable failure of attempt number `attempt` (0 for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try the same target again.
    RetryAfter { ms: u64 },
    /// Move on to the next target now.
    NextTarget,
}

impl RetryPolicy {
    /// "Full jitter": a uniform draw in [0, min(max, base * 2^attempt)]; a provider's
    /// `retry_after_ms` replaces it when within the cap, and sends the request elsewhere when not.
    pub fn next(&self, attempt: u32, retry_after_ms: Option<u64>, random: u64) -> Next {
        if attempt >= self.retries {
            return Next::NextTarget;
        }
        match retry_after_ms {
            Some(ms) if ms > self.retry_after_cap_ms => Next::NextTarget,
            Some(ms) => Next::RetryAfter { ms },
            None => {
                let ceiling = self.base_ms.saturating_mul(1u64 << attempt.min(20)).min(self.max_ms);
                Next::RetryAfter { ms: random % (ceiling + 1) }
            }
        }
    }
}
