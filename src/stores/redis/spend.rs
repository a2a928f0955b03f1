//! The Redis side of spend budgets and token counts after an answer (part of `stores::redis`):
//!
//! | key | what |
//! |---|---|
//! | `{prefix}:spend:tenant:{tenant}:{YYYY-MM-DD}` | nano-dollars a tenant's provider answers cost on one UTC day (`INCRBY`), expiring 7 days after the day ends |
//! | `{prefix}:spend:tenant:{tenant}:{YYYY-MM}` | the same for one UTC month, expiring 35 days after the month ends |
//! | `{prefix}:spend:target:{target id}:{YYYY-MM-DD}`, `...:{YYYY-MM}` | the same per target |
//!
//! What one answer used (its tokens toward the per-minute limit, its cost toward the budgets) is
//! added in one pipeline, after the response.
//! Must not: decide anything, or price anything (`crate::prices` does).

use super::{err, Redis};
use crate::error::{StoreError, StoreErrorKind};
use crate::limits::budget::{period_end_ms, Date, Period};
use crate::limits::{Kind, COUNTER_TTL_MS};
use crate::ports::{Clock, Http};

/// How long a period's counter is kept after the period ends (for operators to read).
const DAY_KEPT_MS: u64 = 7 * 86_400_000;
const MONTH_KEPT_MS: u64 = 35 * 86_400_000;

/// Whose spend a counter holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    Tenant(&'a str),
    Target(&'a str),
}

/// The Redis key of `owner`'s spend in the `period` holding `date`.
pub fn spend_key(prefix: &str, owner: Owner<'_>, period: Period, date: Date) -> String {
    let (kind, name) = match owner {
        Owner::Tenant(name) => ("tenant", name),
        Owner::Target(name) => ("target", name),
    };
    format!("{prefix}:spend:{kind}:{name}:{}", date.label(period))
}

/// What one answer used, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub tenant: String,
    /// Whose per-minute token counters `tokens` go to (the tenant, an end user).
    pub token_subjects: Vec<String>,
    /// Tokens toward the per-minute counters of this fixed window: `(window, tokens)`.
    pub tokens: Option<(u64, u64)>,
    /// Cost toward the budgets: `(target id, nano-dollars)`.
    pub spend: Option<(String, u64)>,
    /// When the answer came (decides the day and month).
    pub at_ms: u64,
}

impl Redis<'_> {
    /// Adds `record` to its counters, each with its expiry: one round trip.
    pub async fn record_usage<H: Http + Clock>(
        &self,
        host: &H,
        record: &UsageRecord,
        timeout_ms: u64,
    ) -> Result<(), StoreError> {
        let prefix = self.prefix();
        let mut commands = Vec::new();
        let mut add = |key: String, amount: u64, ttl_ms: u64| {
            commands.push(vec!["INCRBY".to_owned(), key.clone(), amount.to_string()]);
            commands.push(vec!["PEXPIRE".to_owned(), key, ttl_ms.to_string()]);
        };
        if let Some((window, tokens)) = record.tokens {
            for subject in &record.token_subjects {
                add(super::limit_key(prefix, subject, Kind::Tokens, window), tokens, COUNTER_TTL_MS);
            }
        }
        if let Some((target, nanos)) = &record.spend {
            let date = Date::of_ms(record.at_ms);
            for (period, kept) in [(Period::Day, DAY_KEPT_MS), (Period::Month, MONTH_KEPT_MS)] {
                let ttl = period_end_ms(period, record.at_ms) - record.at_ms + kept;
                add(spend_key(prefix, Owner::Tenant(&record.tenant), period, date), *nanos, ttl);
                add(spend_key(prefix, Owner::Target(target), period, date), *nanos, ttl);
            }
        }
        if commands.is_empty() {
            return Ok(());
        }
        let replies = self.rest.pipeline(host, "usage", &commands, 4096, timeout_ms).await?;
        match replies.into_iter().find_map(Result::err) {
            Some(message) => Err(err("usage", StoreErrorKind::Protocol(message))),
            None => Ok(()),
        }
    }
}
