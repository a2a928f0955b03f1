//! The Redis side of guard rails (part of `stores::redis`, the one owner of Redis keys and
//! commands): per-tenant limit counters and per-target kill switches.
//!
//! | key | what |
//! |---|---|
//! | `{prefix}:limit:{tenant}:requests:{window}` | requests counted in one fixed minute (`limits::Position::window`), expiring two minutes later |
//! | `{prefix}:limit:{tenant}:tokens:{window}` | tokens the provider reported in that minute (`INCRBY` after the answer) |
//! | `{prefix}:spend:...` | spend per tenant and per target, per UTC day and month: see `spend` (the check reads the tenant's) |
//! | `{prefix}:kill:{target id}` | the target is switched off until this time (ms since the epoch; `0`: until switched on), with the same expiry when a time is given |
//!
//! A check is one script (`window.lua`) run with `EVALSHA`, and with `EVAL` when Redis answers
//! `NOSCRIPT` (its script cache is empty after a restart; `EVAL` fills it), as
//! `@upstash/ratelimit` does. The script is told the time (the window and the previous window's
//! weight); it reads no clock.
//! Must not: decide anything (the numbers go back to `limits` and the gateway).

use std::collections::HashMap;

use serde_json::Value;

use super::spend::{spend_key, Owner};
use super::{err, Redis};
use crate::api::json_type_name;
use crate::error::{StoreError, StoreErrorKind};
use crate::limits::budget::{Date, Period};
use crate::limits::{Counts, Kind, Position, COUNTER_TTL_MS};
use crate::ports::{Clock, Http};

/// The sliding-window check (see the script's own comments).
pub const WINDOW_SCRIPT: &str = include_str!("window.lua");
/// SHA-1 of `WINDOW_SCRIPT`, what `EVALSHA` names it by (checked against Redis's own
/// `SCRIPT LOAD` by the end-to-end suite).
pub const WINDOW_SCRIPT_SHA1: &str = "29be30e64cc46c26f513da1f17f67552d8e91994";

/// The Redis key of a tenant's counter of `kind` in fixed window `window`.
pub fn limit_key(prefix: &str, tenant: &str, kind: Kind, window: u64) -> String {
    format!("{prefix}:limit:{tenant}:{}:{window}", kind.word())
}

/// The Redis key of a target's kill switch.
pub fn kill_key(prefix: &str, target_id: &str) -> String {
    format!("{prefix}:kill:{target_id}")
}

/// One check of a tenant's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitCheck {
    pub at: Position,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// The tokens the request is estimated to cost.
    pub token_estimate: u64,
    /// Whether the token limit also decides whether the request is counted (false: counted on
    /// the request limit alone; the gateway judges tokens later from the numbers returned).
    pub tokens_gate: bool,
    /// With budgets: today's date (UTC), and the spend (nano-dollars) at which the day's and
    /// the month's budgets refuse (0: they do not; a degrading budget never refuses).
    pub budget: Option<BudgetCheck>,
}

/// The budget part of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetCheck {
    pub date: Date,
    pub day_refuses_at: u64,
    pub month_refuses_at: u64,
}

/// What Redis said to a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitReply {
    /// Whether the script admitted (and counted) the request.
    pub admitted: bool,
    /// Requests in this and the previous window (this request included when admitted).
    pub requests: Counts,
    pub tokens: Counts,
    /// The tenant's recorded spend today and this month (0 without budgets).
    pub spent_day: u64,
    pub spent_month: u64,
}

impl Redis<'_> {
    /// Checks (and, if it fits, counts) one request of `tenant`: one round trip, two on the
    /// first check after Redis lost its script cache.
    pub async fn check_limits<H: Http + Clock>(
        &self,
        host: &H,
        tenant: &str,
        check: &LimitCheck,
    ) -> Result<LimitReply, StoreError> {
        let prefix = self.prefix();
        let (now, before) = (check.at.window, check.at.window.saturating_sub(1));
        let mut keys = vec![
            limit_key(prefix, tenant, Kind::Requests, now),
            limit_key(prefix, tenant, Kind::Requests, before),
            limit_key(prefix, tenant, Kind::Tokens, now),
            limit_key(prefix, tenant, Kind::Tokens, before),
        ];
        if let Some(budget) = &check.budget {
            keys.push(spend_key(prefix, Owner::Tenant(tenant), Period::Day, budget.date));
            keys.push(spend_key(prefix, Owner::Tenant(tenant), Period::Month, budget.date));
        }
        let numkeys = keys.len().to_string();
        let refuses = check.budget.map_or((0, 0), |b| (b.day_refuses_at, b.month_refuses_at));
        let args = [
            check.requests_per_minute.unwrap_or(0).to_string(),
            check.tokens_per_minute.unwrap_or(0).to_string(),
            check.token_estimate.to_string(),
            check.at.previous_weight_ppm().to_string(),
            COUNTER_TTL_MS.to_string(),
            if check.tokens_gate { "1" } else { "0" }.to_owned(),
            refuses.0.to_string(),
            refuses.1.to_string(),
        ];
        let command = |first: &'static str, script: &'static str| {
            let mut all: Vec<&str> = vec![first, script, numkeys.as_str()];
            all.extend(keys.iter().map(String::as_str));
            all.extend(args.iter().map(String::as_str));
            all
        };
        let timeout = self.config.timeout_ms;
        let evalsha = command("EVALSHA", WINDOW_SCRIPT_SHA1);
        let reply = match self.rest.try_command(host, "limit", &evalsha, 4096, timeout).await? {
            Err(message) if message.starts_with("NOSCRIPT") => {
                let eval = command("EVAL", WINDOW_SCRIPT);
                self.rest.try_command(host, "limit", &eval, 4096, timeout).await?
            }
            other => other,
        };
        let reply = reply.map_err(|message| err("limit", StoreErrorKind::Protocol(message)))?;
        let numbers: Option<Vec<u64>> = match &reply {
            Value::Array(items) if items.len() == 7 => items.iter().map(Value::as_u64).collect(),
            _ => None,
        };
        let Some([ok, rc, rp, tc, tp, sd, sm]) = numbers.as_deref().and_then(|n| <[u64; 7]>::try_from(n).ok()) else {
            let why = format!("the limit script returned {}", json_type_name(&reply));
            return Err(err("limit", StoreErrorKind::Protocol(why)));
        };
        Ok(LimitReply {
            admitted: ok == 1,
            requests: Counts { current: rc, previous: rp },
            tokens: Counts { current: tc, previous: tp },
            spent_day: sd,
            spent_month: sm,
        })
    }

    /// The kill switches of `ids` that are on: id → until (ms; `u64::MAX`: until switched on).
    pub async fn read_kills<H: Http + Clock>(
        &self,
        host: &H,
        ids: &[String],
    ) -> Result<HashMap<String, u64>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| kill_key(self.prefix(), id)).collect();
        let values = self.mget(host, "kills", &keys, 64 << 10).await?;
        Ok(ids
            .iter()
            .zip(values)
            .filter_map(|(id, v)| {
                let until = v?.parse::<u64>().ok()?;
                Some((id.clone(), if until == 0 { u64::MAX } else { until }))
            })
            .collect())
    }

    /// Switches `id` off until `until_ms` (`None`: until switched on); the key expires then.
    pub async fn set_kill<H: Http + Clock>(&self, host: &H, id: &str, until_ms: Option<u64>) -> Result<(), StoreError> {
        let key = kill_key(self.prefix(), id);
        let value = until_ms.unwrap_or(0).to_string();
        let ttl = until_ms.map(|until| until.saturating_sub(host.now_ms()).max(1).to_string());
        let mut args = vec!["SET", key.as_str(), value.as_str()];
        if let Some(ttl) = &ttl {
            args.extend(["PX", ttl.as_str()]);
        }
        match self.rest.command(host, "kill", &args, 1024, self.config.timeout_ms).await? {
            Value::String(s) if s == "OK" => Ok(()),
            other => Err(err("kill", StoreErrorKind::Protocol(format!("SET returned {}", json_type_name(&other))))),
        }
    }

    /// Switches `id` on again; true when it was off.
    pub async fn clear_kill<H: Http + Clock>(&self, host: &H, id: &str) -> Result<bool, StoreError> {
        let key = kill_key(self.prefix(), id);
        match self.rest.command(host, "kill", &["DEL", &key], 1024, self.config.timeout_ms).await? {
            Value::Number(n) => Ok(n.as_u64().unwrap_or(0) > 0),
            other => Err(err("kill", StoreErrorKind::Protocol(format!("DEL returned {}", json_type_name(&other))))),
        }
    }
}
