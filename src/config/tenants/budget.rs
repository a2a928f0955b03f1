//! The budget fields of a tenant's policy (`TENANTS`): `daily_budget_usd`, `monthly_budget_usd`,
//! `budget_soft_percent` (default 80), `budget_hard_percent` (default 100), `over_budget`
//! (`refuse` | `degrade`) and `degrade_model` (a routed model, required with `degrade`).
//! Must not: read variables, or put a value into a problem.

use serde_json::Value;

use crate::limits::budget::{Period, Thresholds};

/// What happens to a request of a tenant past a hard budget threshold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OverBudget {
    /// 429 `budget_exceeded` with `Retry-After` to the period's end.
    #[default]
    Refuse,
    /// Sent to this cheaper model of the route table instead (told in `x-budget-degraded-to`).
    Degrade(String),
}

/// A tenant's spend budgets (`None`: no budget for that period).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Budget {
    pub daily: Option<Thresholds>,
    pub monthly: Option<Thresholds>,
    pub over: OverBudget,
}

impl Budget {
    pub const NONE: Budget = Budget { daily: None, monthly: None, over: OverBudget::Refuse };

    pub fn is_set(&self) -> bool {
        self.daily.is_some() || self.monthly.is_some()
    }

    /// The periods with a budget, with their thresholds.
    pub fn periods(&self) -> impl Iterator<Item = (Period, Thresholds)> + '_ {
        [(Period::Day, self.daily), (Period::Month, self.monthly)].into_iter().filter_map(|(p, t)| Some((p, t?)))
    }

    /// The hard threshold the window script refuses at (0: none), for `refuse` budgets only.
    pub fn refusing_at(&self, period: Period) -> u64 {
        let thresholds = match period {
            Period::Day => self.daily,
            Period::Month => self.monthly,
        };
        match self.over {
            OverBudget::Refuse => thresholds.map_or(0, |t| t.hard),
            OverBudget::Degrade(_) => 0,
        }
    }
}

/// The largest budget accepted, in USD (a typo guard).
const MAX_BUDGET_USD: f64 = 1e9;

/// The budget fields as read, before they are checked together.
#[derive(Debug, Default)]
pub(super) struct RawBudget {
    daily_usd: Option<f64>,
    monthly_usd: Option<f64>,
    soft_percent: Option<u64>,
    hard_percent: Option<u64>,
    over: Option<&'static str>,
    degrade_model: Option<String>,
}

impl RawBudget {
    /// Reads `field` if it is a budget field: `None` when it is not one, else whether its value
    /// is good (the error names the field, never the value).
    pub fn read(&mut self, field: &str, value: &Value) -> Option<Result<(), String>> {
        let usd = || {
            value
                .as_f64()
                .filter(|v| v.is_finite() && *v > 0.0 && *v <= MAX_BUDGET_USD)
                .ok_or_else(|| format!("'{field}' must be a number of US dollars above 0"))
        };
        let percent = |max: u64| {
            value
                .as_u64()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("'{field}' must be a whole number from 1 to {max}"))
        };
        let result = match field {
            "daily_budget_usd" => usd().map(|v| self.daily_usd = Some(v)),
            "monthly_budget_usd" => usd().map(|v| self.monthly_usd = Some(v)),
            "budget_soft_percent" => percent(1000).map(|v| self.soft_percent = Some(v)),
            "budget_hard_percent" => percent(1000).map(|v| self.hard_percent = Some(v)),
            "over_budget" => match value.as_str() {
                Some(word @ ("refuse" | "degrade")) => {
                    self.over = Some(if word == "refuse" { "refuse" } else { "degrade" });
                    Ok(())
                }
                _ => Err(format!("'{field}' must be \"refuse\" or \"degrade\"")),
            },
            "degrade_model" => match value.as_str().filter(|s| !s.trim().is_empty() && s.len() <= 256) {
                Some(model) => {
                    self.degrade_model = Some(model.to_owned());
                    Ok(())
                }
                None => Err(format!("'{field}' must be a model name")),
            },
            _ => return None,
        };
        Some(result)
    }

    /// The budget, or every reason it is wrong. `is_model` says whether a model is routed;
    /// `allowed` whether the tenant may use it.
    pub fn finish(
        self,
        is_model: impl Fn(&str) -> bool,
        allowed: impl Fn(&str) -> bool,
        wrong: &mut Vec<String>,
    ) -> Budget {
        let (soft, hard) = (self.soft_percent.unwrap_or(80), self.hard_percent.unwrap_or(100));
        let any_budget = self.daily_usd.is_some() || self.monthly_usd.is_some();
        let set_without_budget = self.soft_percent.is_some()
            || self.hard_percent.is_some()
            || self.over.is_some()
            || self.degrade_model.is_some();
        if !any_budget && set_without_budget {
            wrong.push("the budget fields need 'daily_budget_usd' or 'monthly_budget_usd'".to_owned());
        }
        if soft > hard {
            wrong.push("'budget_soft_percent' must not be above 'budget_hard_percent'".to_owned());
        }
        let over = match (self.over, self.degrade_model) {
            (Some("degrade"), Some(model)) => {
                if !is_model(&model) {
                    wrong.push("'degrade_model' is not a model the gateway serves (ROUTES, MODELS)".to_owned());
                } else if !allowed(&model) {
                    wrong.push("'degrade_model' is not one of the tenant's 'models'".to_owned());
                }
                OverBudget::Degrade(model)
            }
            (Some("degrade"), None) => {
                wrong.push("'over_budget' \"degrade\" needs 'degrade_model'".to_owned());
                OverBudget::Refuse
            }
            (_, Some(_)) => {
                wrong.push("'degrade_model' needs 'over_budget' \"degrade\"".to_owned());
                OverBudget::Refuse
            }
            _ => OverBudget::Refuse,
        };
        Budget {
            daily: self.daily_usd.map(|usd| Thresholds::of(usd, soft, hard)),
            monthly: self.monthly_usd.map(|usd| Thresholds::of(usd, soft, hard)),
            over,
        }
    }
}
