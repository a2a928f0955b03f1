//! A tenant's spend budgets on the way of one request (`daily_budget_usd`,
//! `monthly_budget_usd` in `TENANTS`), judged from the spend Redis recorded (read in the same
//! script round trip as the rate limits, `guard`), on the way to a provider call only: a cache
//! hit never spends, so it is never refused for a budget.
//! - past a soft threshold: served, with `x-budget-warning` and a `budget_warning` log line;
//! - past a hard one: refused (429 `budget_exceeded`, `Retry-After` to the period's end), or,
//!   with `over_budget: "degrade"`, asked again as `degrade_model` from the lookup on (its own
//!   cache key), told in `x-budget-degraded-to`;
//! - a tenant past a hard budget is remembered in isolate memory until the period ends: a
//!   refusal then costs no Redis call, and a degraded request is degraded before its lookup.
//!
//! Must not: read a clock or decide the calendar (`limits::budget` does), or build Redis keys.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::json;

use super::guard::{Guard, Stage};
use super::Exchange;
use crate::api::chat::ChatRequest;
use crate::config::OverBudget;
use crate::error::{ApiError, ErrorType};
use crate::limits::budget::{judge, warning_header, BudgetStanding, Date, Period};
use crate::ports::Host;
use crate::prices::usd;
use crate::stores::redis::{BudgetCheck, LimitReply};

/// What the budgets said of one request.
#[derive(Debug, Clone, Default)]
pub(super) struct BudgetNote {
    /// `x-budget-warning`: the periods past their soft threshold.
    warning: Option<String>,
    /// The model the request was degraded to, once it was.
    degraded_to: Option<String>,
    /// Past the hard budget with `degrade`: the model to ask again with.
    pending: Option<String>,
}

impl BudgetNote {
    pub fn decorate(&self, headers: &mut HeaderMap) {
        let pairs = [("x-budget-warning", &self.warning), ("x-budget-degraded-to", &self.degraded_to)];
        for (name, value) in pairs {
            if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
}

impl Guard<'_> {
    /// Whether the budgets are checked (a degraded request is not checked again).
    pub fn checks_budget(&self) -> bool {
        self.policy.budget.is_set() && self.budget.degraded_to.is_none()
    }

    /// The budget part of a check at `stage`; the script refuses past a refusing budget on the
    /// way to a call only (a cache hit counted before the lookup is never refused for spend).
    pub fn budget_check(&self, now_ms: u64, stage: Stage) -> Option<BudgetCheck> {
        let budget = &self.policy.budget;
        let refusing = |period| if stage == Stage::BeforeCall { budget.refusing_at(period) } else { 0 };
        self.checks_budget().then(|| BudgetCheck {
            date: Date::of_ms(now_ms),
            day_refuses_at: refusing(Period::Day),
            month_refuses_at: refusing(Period::Month),
        })
    }

    /// Switches `request` to the degrade model when the check found the tenant past its hard
    /// budget (`pending`); true when the gateway is to ask again.
    pub fn degrade(&mut self, request: &mut ChatRequest) -> bool {
        let Some(model) = self.budget.pending.take() else { return false };
        request.model = model.clone();
        self.budget.degraded_to = Some(model);
        true
    }

    /// Degrades `request` at once when this isolate knows the tenant to be past a hard budget
    /// with `degrade` (before the lookup: the cache key is the degraded request's).
    pub fn degrade_if_known<H: Host>(&mut self, host: &H, request: &mut ChatRequest) {
        let OverBudget::Degrade(model) = &self.policy.budget.over else { return };
        if host.limits().past_budget(self.tenant, host.now_ms()).is_some() {
            self.budget.pending = Some(model.clone());
            self.degrade(request);
        }
    }
}

impl<H: Host> Exchange<'_, H> {
    /// A tenant this isolate knows to be past a refusing hard budget is refused with no Redis call.
    pub(super) fn budget_from_memory(&self, guard: &mut Guard<'_>, now: u64) -> Result<(), ApiError> {
        if !guard.checks_budget() {
            return Ok(());
        }
        match self.host.limits().past_budget(guard.tenant, now) {
            Some((standing, until)) => self.past_hard(guard, standing, until, now, true),
            None => Ok(()),
        }
    }

    /// Judges the spend the check read: a warning, or past a hard threshold (remembered).
    pub(super) fn judge_budget(&self, guard: &mut Guard<'_>, now: u64, reply: &LimitReply) -> Result<(), ApiError> {
        let spent = |period| match period {
            Period::Day => reply.spent_day,
            Period::Month => reply.spent_month,
        };
        let standings: Vec<BudgetStanding> = guard
            .policy
            .budget
            .periods()
            .map(|(period, thresholds)| BudgetStanding { period, spent: spent(period), thresholds })
            .collect();
        let verdict = judge(now, &standings);
        if let Some((standing, until)) = verdict.over {
            self.host.limits().over_budget(guard.tenant, standing, until);
            self.log("info", "budget_exceeded", log_fields(guard.tenant, &standing, until));
            return self.past_hard(guard, standing, until, now, false);
        }
        guard.budget.warning = warning_header(&verdict.warnings);
        for w in &verdict.warnings {
            self.log("info", "budget_warning", json!({"tenant": guard.tenant, "period": w.period.word(), "percent": w.percent(), "spent_usd": usd(w.spent), "budget_usd": usd(w.thresholds.budget)}));
        }
        Ok(())
    }

    /// Past a hard threshold: the refusal, or (degrade) the model to ask again with, held in
    /// `guard` (the error then stands for a response the gateway throws away).
    fn past_hard(
        &self,
        guard: &mut Guard<'_>,
        standing: BudgetStanding,
        until: u64,
        now: u64,
        remembered: bool,
    ) -> Result<(), ApiError> {
        if let OverBudget::Degrade(model) = &guard.policy.budget.over {
            guard.budget.pending = Some(model.clone());
        }
        let wait_s = until.saturating_sub(now).div_ceil(1000).max(1);
        let (period, limit) = (standing.period, usd(standing.thresholds.budget));
        let resets = match period {
            Period::Day => "at 00:00 UTC",
            Period::Month => "on the 1st at 00:00 UTC",
        };
        let why = if remembered { "" } else { " (recorded spend)" };
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::InsufficientQuota,
            "budget_exceeded",
            format!(
                "Tenant '{}' has used its {} budget of {limit:.2} USD{why}; it resets {resets}, in {wait_s} s.",
                guard.tenant,
                period.word()
            ),
        )
        .with_retry_after(Some(wait_s)))
    }
}

fn log_fields(tenant: &str, standing: &BudgetStanding, until: u64) -> serde_json::Value {
    json!({
        "tenant": tenant,
        "period": standing.period.word(),
        "spent_usd": usd(standing.spent),
        "budget_usd": usd(standing.thresholds.budget),
        "until_ms": until,
    })
}
