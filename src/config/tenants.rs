//! `TENANTS`: each tenant's guard rails, read once at start like `ROUTES`. A JSON object maps a
//! tenant name (a name of `GATEWAY_KEYS`) or `"*"` (every tenant without an entry of its own) to
//! a policy; every field is optional:
//!
//! `requests_per_minute`, `tokens_per_minute`, `max_tokens_cap` with `max_tokens_policy`
//! (`clamp` | `refuse`), `max_input_tokens`, `models` (an allow-list), `count_cache_hits`,
//! `fail_closed`, `priority` (`high` | `normal` | `low`, for pacing), and the budget fields
//! (`budget`).
//!
//! Every problem is reported at once, naming the tenant and the field, never a value; an entry
//! with a problem is dropped (its tenant falls back to `"*"`, or to no guard rails), never fatal.
//! Later fields (budgets, priority, per end-user limits) are new members of `TenantPolicy` and
//! new arms of `read_field`; nothing else here has to change.
//! Must not: read variables itself, or put a value into a problem.

mod budget;

use std::collections::BTreeMap;

use serde_json::Value;

use super::keys::is_name;
use crate::routing::pacing::Priority;
pub use budget::{Budget, OverBudget};

/// What happens to a request whose `max_tokens` is over the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxTokensPolicy {
    /// Lowered to the cap, and the client told so (`x-max-tokens-clamped`).
    #[default]
    Clamp,
    /// Refused with a 400 naming the cap.
    Refuse,
}

/// One tenant's guard rails (`None`: no limit of that kind).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantPolicy {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub max_tokens_cap: Option<u64>,
    pub max_tokens_policy: MaxTokensPolicy,
    pub max_input_tokens: Option<u64>,
    /// The models the tenant may use; `None`: every routed model.
    pub models: Option<Vec<String>>,
    /// Whether cache hits count toward `requests_per_minute` (default: no, they cost nothing).
    pub count_cache_hits: bool,
    /// Refuse (503 `rate_limit_unavailable`) rather than serve unchecked when the limits
    /// cannot be checked (Redis down or slow).
    pub fail_closed: bool,
    /// Daily and monthly spend budgets, and what happens past them.
    pub budget: Budget,
    /// Its place when a target is paced below its provider's limits.
    pub priority: Priority,
}

impl TenantPolicy {
    /// Whether a limit is kept in Redis for this tenant.
    pub fn has_rate_limits(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }

    /// Whether anything of this tenant is kept in Redis (limits or spend).
    pub fn uses_redis(&self) -> bool {
        self.has_rate_limits() || self.budget.is_set()
    }

    /// Whether the tenant may use `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.iter().any(|allowed| allowed == model))
    }
}

/// Every tenant's policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tenants {
    by_name: BTreeMap<String, TenantPolicy>,
    default: Option<TenantPolicy>,
}

/// The policy of a tenant with no entry and no `"*"`: no guard rails.
static NONE: TenantPolicy = TenantPolicy {
    requests_per_minute: None,
    tokens_per_minute: None,
    max_tokens_cap: None,
    max_tokens_policy: MaxTokensPolicy::Clamp,
    max_input_tokens: None,
    models: None,
    count_cache_hits: false,
    fail_closed: false,
    budget: Budget::NONE,
    priority: Priority::Normal,
};

/// The largest number a limit field takes.
const MAX_LIMIT: u64 = 1_000_000_000_000;

impl Tenants {
    /// The policy of `tenant`: its own entry, else `"*"`, else none.
    pub fn policy(&self, tenant: &str) -> &TenantPolicy {
        self.by_name.get(tenant).or(self.default.as_ref()).unwrap_or(&NONE)
    }

    /// Whether any tenant has limits or budgets kept in Redis.
    pub fn any_rate_limits(&self) -> bool {
        self.by_name.values().chain(self.default.iter()).any(TenantPolicy::uses_redis)
    }

    /// Reads `raw` (the `TENANTS` variable). `is_tenant` says whether a name belongs to some
    /// gateway key, `is_model` whether a model is routed. Every problem goes to `problems`.
    pub fn parse(
        raw: &str,
        is_tenant: impl Fn(&str) -> bool,
        is_model: impl Fn(&str) -> bool,
        problems: &mut Vec<String>,
    ) -> Tenants {
        let parsed: BTreeMap<String, Value> = match serde_json::from_str(raw) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!(
                    "TENANTS must be a JSON object mapping each tenant name (or \"*\") to a policy object (unreadable at line {}, column {})",
                    e.line(),
                    e.column()
                ));
                return Tenants::default();
            }
        };
        let mut tenants = Tenants::default();
        let mut bad_names = 0;
        for (name, value) in parsed {
            if name != "*" && !is_name(&name) {
                bad_names += 1;
                continue;
            }
            let at = format!("TENANTS: '{name}'");
            if name != "*" && !is_tenant(&name) {
                problems.push(format!("{at} is dropped: it names no tenant of GATEWAY_KEYS"));
                continue;
            }
            let Value::Object(fields) = value else {
                problems.push(format!("{at} is dropped: its policy must be a JSON object"));
                continue;
            };
            let mut policy = TenantPolicy::default();
            let mut wrong = Vec::new();
            let mut budget = budget::RawBudget::default();
            for (field, value) in &fields {
                let read = budget.read(field, value).unwrap_or_else(|| read_field(&mut policy, field, value));
                if let Err(why) = read {
                    wrong.push(why);
                }
            }
            policy.budget = budget.finish(&is_model, |m| policy.allows_model(m), &mut wrong);
            if policy.max_tokens_cap.is_none() && fields.contains_key("max_tokens_policy") {
                wrong.push("'max_tokens_policy' needs 'max_tokens_cap'".to_owned());
            }
            if !wrong.is_empty() {
                problems.push(format!("{at} is dropped: {}", wrong.join("; ")));
                continue;
            }
            if name == "*" {
                tenants.default = Some(policy);
            } else {
                tenants.by_name.insert(name, policy);
            }
        }
        if bad_names > 0 {
            problems.push(format!(
                "TENANTS: {bad_names} entry(ies) dropped: a tenant name is 1 to 64 letters, digits, '.', '_' or '-' (or \"*\")"
            ));
        }
        tenants
    }
}

/// Reads one field into `policy`; the error names the field and what it must be, never the value.
fn read_field(policy: &mut TenantPolicy, field: &str, value: &Value) -> Result<(), String> {
    let limit = |min: u64| {
        value
            .as_u64()
            .filter(|n| (min..=MAX_LIMIT).contains(n))
            .ok_or_else(|| format!("'{field}' must be a whole number from {min} to {MAX_LIMIT}"))
    };
    let flag = || value.as_bool().ok_or_else(|| format!("'{field}' must be true or false"));
    match field {
        "requests_per_minute" => policy.requests_per_minute = Some(limit(1)?),
        "tokens_per_minute" => policy.tokens_per_minute = Some(limit(1)?),
        "max_tokens_cap" => policy.max_tokens_cap = Some(limit(1)?),
        "max_input_tokens" => policy.max_input_tokens = Some(limit(1)?),
        "max_tokens_policy" => {
            policy.max_tokens_policy = match value.as_str() {
                Some("clamp") => MaxTokensPolicy::Clamp,
                Some("refuse") => MaxTokensPolicy::Refuse,
                _ => return Err(format!("'{field}' must be \"clamp\" or \"refuse\"")),
            }
        }
        "models" => {
            let names = value.as_array().and_then(|a| {
                a.iter()
                    .map(|m| m.as_str().filter(|s| !s.trim().is_empty()).map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            });
            policy.models = Some(names.ok_or_else(|| format!("'{field}' must be a list of model names"))?);
        }
        "count_cache_hits" => policy.count_cache_hits = flag()?,
        "priority" => {
            policy.priority = value
                .as_str()
                .and_then(Priority::parse)
                .ok_or_else(|| format!("'{field}' must be \"high\", \"normal\" or \"low\""))?
        }
        "fail_closed" => policy.fail_closed = flag()?,
        // A field's name is shown only when it looks like one (never a pasted value).
        _ if is_name(field) && field.len() <= 40 => return Err(format!("unknown field '{field}'")),
        _ => return Err("a field with an unknown name is set".to_owned()),
    }
    Ok(())
}
