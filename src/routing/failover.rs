//! The failover of one request, as a sans-IO state machine (quinn-proto style): which target to
//! call, when to wait, when to give up, and what the client is told. It is given the targets in
//! the order to try them, the settings and the deadline; then it is told the time and each
//! outcome, and answers with the next `Action`. It admits targets and records outcomes through
//! `Health` (breakers and cool-downs, which `Health` reports to other isolates), and says what it
//! changed there (`changed`) so the caller can log it.
//!
//! The rules, per failure (`UpstreamError::scope`, refined here):
//! - retried on the same target, after a backoff: connection errors, 5xx, a 429 whose
//!   `retry-after` is at most the cap (it is the wait);
//! - the next target at once: our key rejected, a malformed or too large answer, a 429 with a long
//!   or no `retry-after` (every 429 also cools the target down for the advertised time);
//! - a timeout: the next target at once when one remains; the last target is retried only when
//!   the backoff and a whole attempt still fit before the deadline;
//! - the client's bad request: stops at once when the target speaks OpenAI (it saw the client's
//!   own request). A target that translated the request (Anthropic, Gemini) may have rejected the
//!   translation: the next target is tried, nothing is recorded in the breaker, and only when
//!   every target called rejected the request does the client get the first rejection.
//!
//! Must not: do IO, read a clock or draw randomness (the weighted order and the backoff jitter come
//! in as values), or build or send a request (the caller does, when told).

use std::marker::PhantomData;

use crate::error::{Scope, Unsupported, UpstreamError};
use crate::routing::backoff::{Next, RetryPolicy};
use crate::routing::breaker::BreakerConfig;
use crate::routing::health::{Health, Skip};
use crate::routing::table::{ProviderKind, Target};

/// One target's failure, as listed to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub target: String,
    pub code: &'static str,
}

/// How the failover of one request ended.
#[derive(Debug)]
pub enum Outcome<T> {
    Answered {
        value: T,
        target: Target,
        attempts: u32,
        fallback: bool,
    },
    /// The client's request was judged invalid: by a target that speaks OpenAI, or by every
    /// target called (then the first rejection).
    ClientError {
        error: UpstreamError,
        attempts: u32,
    },
    /// Every target failed or was skipped, in order.
    AllFailed {
        failures: Vec<Failure>,
        last: Option<UpstreamError>,
        attempts: u32,
        /// When the first resting target is back, if every target is resting.
        retry_after_ms: Option<u64>,
    },
    /// No target can express the request.
    Unsupported(Vec<Unsupported>),
}

/// An answer, with the target that gave it and how it went.
#[derive(Debug)]
pub struct Answered<T> {
    pub value: T,
    pub target: Target,
    pub attempts: u32,
    pub fallback: bool,
}

impl<T> Outcome<T> {
    /// The answer, or the outcome without one (whose `Answered` case cannot occur), so that the
    /// caller handles failures the same way whatever the answer's type.
    pub fn answer(self) -> Result<Answered<T>, Box<Outcome<std::convert::Infallible>>> {
        let unanswered = match self {
            Outcome::Answered { value, target, attempts, fallback } => {
                return Ok(Answered { value, target, attempts, fallback })
            }
            Outcome::ClientError { error, attempts } => Outcome::ClientError { error, attempts },
            Outcome::AllFailed { failures, last, attempts, retry_after_ms } => {
                Outcome::AllFailed { failures, last, attempts, retry_after_ms }
            }
            Outcome::Unsupported(reasons) => Outcome::Unsupported(reasons),
        };
        Err(Box::new(unanswered))
    }
}

/// What the caller does next. `target` is an index into the order the machine was given.
#[derive(Debug)]
pub enum Action<T> {
    /// Build the request for this target, then call `on_built`. Asked before the target is
    /// admitted, so a half-open probe is never claimed for a request the target cannot take.
    Build {
        target: usize,
    },
    /// Send the built request, bounded by `budget_ms`, then call `on_outcome`. `retry` counts
    /// earlier attempts on this target (0 for the first).
    Send {
        target: usize,
        retry: u32,
        budget_ms: u64,
    },
    /// Wait, then call `on_wake`.
    Sleep {
        ms: u64,
    },
    Done(Outcome<T>),
}

/// The settings of one request's failover.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    /// One attempt's bound for a target that sets none.
    pub timeout_ms: u64,
    /// When the whole request must be done (ms since the epoch).
    pub deadline_ms: u64,
}

/// What the last outcome changed, for the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changed {
    /// The attempt failed (worth an `upstream_failed` line).
    pub failed: bool,
    /// This failure opened the target's breaker.
    pub breaker_opened: bool,
    /// The target now cools down (a 429).
    pub cooled_down: bool,
}

/// The failover of one request. Drive it with `start`, then answer each `Action` with the call it
/// names, until `Done`.
pub struct Failover<'a, T> {
    order: Vec<&'a Target>,
    health: &'a Health,
    settings: Settings,
    /// The target in hand, as an index into `order`.
    at: usize,
    /// Earlier attempts on the target in hand.
    retry: u32,
    attempts: u32,
    failures: Vec<Failure>,
    unsupported: Vec<Unsupported>,
    last: Option<UpstreamError>,
    /// The first rejection of the request by a target that translated it.
    rejection: Option<UpstreamError>,
    /// A target was called and failed otherwise than by rejecting the request.
    target_failed: bool,
    changed: Changed,
    answer: PhantomData<fn() -> T>,
}

impl<'a, T> Failover<'a, T> {
    /// A failover over `order` (the targets in the order to try them, randomness already spent).
    pub fn new(order: Vec<&'a Target>, health: &'a Health, settings: Settings) -> Self {
        Failover {
            order,
            health,
            settings,
            at: 0,
            retry: 0,
            attempts: 0,
            failures: Vec::new(),
            unsupported: Vec::new(),
            last: None,
            rejection: None,
            target_failed: false,
            changed: Changed::default(),
            answer: PhantomData,
        }
    }

    /// The target an `Action` names.
    pub fn target(&self, index: usize) -> &'a Target {
        self.order[index]
    }

    /// What the last call changed in `Health`.
    pub fn changed(&self) -> Changed {
        self.changed
    }

    pub fn start(&mut self, now_ms: u64) -> Action<T> {
        self.changed = Changed::default();
        self.next_target(now_ms)
    }

    /// After `Build`: whether the target can express the request.
    pub fn on_built(&mut self, now_ms: u64, built: Result<(), Unsupported>) -> Action<T> {
        self.changed = Changed::default();
        if let Err(reason) = built {
            self.unsupported.push(reason);
            return self.leave(now_ms, "unsupported_request");
        }
        // The deadline first: admitting may claim a half-open probe, which must then be used.
        if now_ms >= self.settings.deadline_ms {
            return self.out_of_time(now_ms);
        }
        match self.health.admit(&self.order[self.at].id, now_ms, &self.settings.breaker) {
            Ok(()) => self.send(now_ms),
            Err(Skip::CircuitOpen) => self.leave(now_ms, "circuit_open"),
            Err(Skip::CoolingDown) => self.leave(now_ms, "cooling_down"),
        }
    }

    /// After `Send`: the attempt's result; `jitter` is a fresh random value for the backoff.
    pub fn on_outcome(&mut self, now_ms: u64, result: Result<T, UpstreamError>, jitter: u64) -> Action<T> {
        self.changed = Changed::default();
        let target = self.order[self.at];
        let (id, breaker) = (target.id.as_str(), &self.settings.breaker);
        let error = match result {
            Ok(value) => {
                self.health.record(id, now_ms, true, breaker);
                let fallback = !self.failures.is_empty();
                return Action::Done(Outcome::Answered {
                    value,
                    target: target.clone(),
                    attempts: self.attempts,
                    fallback,
                });
            }
            Err(error) => error,
        };
        let scope = error.scope(self.settings.retry.retry_after_cap_ms);
        if scope == Scope::Stop {
            if !translates(target) {
                // The target worked and saw the client's own request: the request was at fault.
                self.health.record(id, now_ms, true, breaker);
                return Action::Done(Outcome::ClientError { error, attempts: self.attempts });
            }
            // Perhaps the translation's fault: neither the target's success nor its failure. A
            // half-open probe it held is given up by the breaker's lost-probe rule (`open_ms`).
            self.changed.failed = true;
            let code = error.code();
            if self.rejection.is_none() {
                self.rejection = Some(error.clone());
            }
            self.last = Some(error);
            return self.leave(now_ms, code);
        }
        self.changed.failed = true;
        self.changed.breaker_opened = self.health.record(id, now_ms, false, breaker);
        if let UpstreamError::RateLimited { retry_after_ms } = &error {
            let cooldown = retry_after_ms.unwrap_or(self.settings.retry.default_cooldown_ms);
            self.health.cool_down(id, now_ms.saturating_add(cooldown));
            self.changed.cooled_down = true;
        }
        let wait = match scope {
            // A target whose breaker this failure opened is rested: no retry to wait for.
            Scope::RetrySame if !self.changed.breaker_opened => self.backoff(now_ms, &error, jitter),
            Scope::RetrySame | Scope::NextTarget | Scope::Stop => None,
        };
        let code = error.code();
        self.last = Some(error);
        match wait {
            Some(ms) => {
                self.retry += 1;
                Action::Sleep { ms }
            }
            None => self.leave_failed(now_ms, code),
        }
    }

    /// After `Sleep`: the same target again, if it is still admitted and time remains.
    pub fn on_wake(&mut self, now_ms: u64) -> Action<T> {
        self.changed = Changed::default();
        if now_ms >= self.settings.deadline_ms {
            self.target_failed = true;
            return self.out_of_time(now_ms);
        }
        if self.health.admit(&self.order[self.at].id, now_ms, &self.settings.breaker).is_err() {
            // Rested meanwhile (another request opened its breaker or cooled it down): listed by
            // the failure that led to the retry.
            let code = self.last.as_ref().map_or("upstream_unreachable", UpstreamError::code);
            return self.leave_failed(now_ms, code);
        }
        self.send(now_ms)
    }

    /// The wait before retrying the target in hand, if a retry is worth it.
    fn backoff(&self, now_ms: u64, error: &UpstreamError, jitter: u64) -> Option<u64> {
        let stalled = matches!(error, UpstreamError::Timeout { .. });
        if stalled && self.at + 1 < self.order.len() {
            // Another target may answer now; a second stall would cost a whole timeout more.
            return None;
        }
        let advice = match error {
            UpstreamError::Server { retry_after_ms, .. } | UpstreamError::RateLimited { retry_after_ms } => {
                *retry_after_ms
            }
            _ => None,
        };
        let Next::RetryAfter { ms } = self.settings.retry.next(self.retry, advice, jitter) else { return None };
        let deadline = self.settings.deadline_ms;
        let fits = if stalled {
            // Only with room for a whole attempt: one cut short by the deadline is not worth it.
            now_ms.saturating_add(ms).saturating_add(self.timeout_ms()) <= deadline
        } else {
            now_ms.saturating_add(ms) < deadline
        };
        fits.then_some(ms)
    }

    /// Calls the target in hand (admitted, before the deadline).
    fn send(&mut self, now_ms: u64) -> Action<T> {
        self.attempts += 1;
        let budget_ms = self.timeout_ms().min(self.settings.deadline_ms.saturating_sub(now_ms));
        Action::Send { target: self.at, retry: self.retry, budget_ms }
    }

    fn timeout_ms(&self) -> u64 {
        self.order[self.at].timeout_ms.unwrap_or(self.settings.timeout_ms)
    }

    /// Lists the target in hand as failed by a call, and moves on.
    fn leave_failed(&mut self, now_ms: u64, code: &'static str) -> Action<T> {
        self.target_failed = true;
        self.leave(now_ms, code)
    }

    /// Lists the target in hand with `code` and moves on.
    fn leave(&mut self, now_ms: u64, code: &'static str) -> Action<T> {
        self.failures.push(Failure { target: self.order[self.at].id.clone(), code });
        self.at += 1;
        self.next_target(now_ms)
    }

    fn next_target(&mut self, now_ms: u64) -> Action<T> {
        self.retry = 0;
        if self.at < self.order.len() {
            Action::Build { target: self.at }
        } else {
            Action::Done(self.finish(now_ms))
        }
    }

    /// The deadline passed at the target in hand: it and the rest are not tried.
    fn out_of_time(&mut self, now_ms: u64) -> Action<T> {
        self.failures.push(Failure { target: self.order[self.at].id.clone(), code: "deadline_exceeded" });
        self.at = self.order.len();
        Action::Done(self.finish(now_ms))
    }

    fn finish(&mut self, now_ms: u64) -> Outcome<T> {
        let failures = std::mem::take(&mut self.failures);
        let attempts = self.attempts;
        if !self.unsupported.is_empty() && self.unsupported.len() == failures.len() {
            return Outcome::Unsupported(std::mem::take(&mut self.unsupported));
        }
        if !self.target_failed {
            if let Some(error) = self.rejection.take() {
                return Outcome::ClientError { error, attempts };
            }
        }
        let last = self.last.take();
        // Only when every target is resting (rate limited, cooling down, breaker open) is there a
        // time to come back: when the first of them is back.
        let resting = |code: &str| matches!(code, "cooling_down" | "circuit_open" | "upstream_rate_limited");
        if !failures.iter().all(|f| resting(f.code)) {
            return Outcome::AllFailed { failures, last, attempts, retry_after_ms: None };
        }
        let retry_after_ms = self
            .order
            .iter()
            .map(|t| self.health.marks(&t.id))
            .map(|m| m.cool_until_ms.max(m.open_until_ms).saturating_sub(now_ms))
            .filter(|ms| *ms > 0)
            .min();
        Outcome::AllFailed { failures, last, attempts, retry_after_ms }
    }
}

/// Whether the target gets a translation of the client's request rather than the request itself.
fn translates(target: &Target) -> bool {
    matches!(target.kind, ProviderKind::Anthropic | ProviderKind::Gemini)
}
