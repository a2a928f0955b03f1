//! Per-tenant spend budgets (`daily_budget_usd`, `monthly_budget_usd` in `TENANTS`): problems
//! named without values, UTC days and months decided by pure code told the time, spend recorded
//! from the provider's usage per tenant and per target (cache hits never spend), a warning past
//! the soft threshold, a 429 `budget_exceeded` past the hard one with `Retry-After` to the
//! period's end (then from isolate memory, with no Redis call), degrading to a cheaper model
//! under that model's own cache key, and a new day starting afresh.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use llm_edge_cache::config::Config;
use llm_edge_cache::limits::budget::{judge, period_end_ms, BudgetStanding, Date, Period, Thresholds};
use llm_edge_cache::testing::MapVars;
use serde_json::{json, Value};
use support::*;

/// What one `ok.json` answer (9 input, 10 output tokens) costs, in nano-dollars.
const GPT_4O: u64 = 9 * 2_500 + 10 * 10_000;
const GPT_4O_MINI: u64 = 9 * 150 + 10 * 600;
const DAY_MS: u64 = 86_400_000;

fn tenants(policy: Value) -> World {
    let w = World::with_config(config_with(&[("TENANTS", &policy.to_string())]));
    w.upstream_ok();
    w
}

fn ask(model: &str, content: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": content}]}).to_string()
}

fn scripts_run(w: &World) -> usize {
    w.upstash.commands_run().iter().filter(|c| *c == "EVALSHA" || *c == "EVAL").count()
}

fn spent(w: &World, owner: &str, label: &str) -> Option<u64> {
    w.upstash.raw(&format!("llmc1:spend:{owner}:{label}")).and_then(|v| v.parse().ok())
}

#[test]
fn every_bad_budget_value_is_reported_by_name_without_its_value() {
    let keys = format!(r#"{{"{KEY_A}":"tenant-a","{KEY_B}":"tenant-b"}}"#);
    let raw = json!({
        "tenant-a": {"daily_budget_usd": "sk-SECRET-1", "monthly_budget_usd": -3, "over_budget": "sk-SECRET-2"},
        "tenant-b": {"daily_budget_usd": 5, "over_budget": "degrade", "degrade_model": "sk-SECRET-3",
                     "budget_soft_percent": 90, "budget_hard_percent": 50},
        "*": {"budget_soft_percent": 0, "degrade_model": "gpt-4o-mini"},
    })
    .to_string();
    let config = Config::from_vars(&MapVars::new(&[
        ("GATEWAY_KEYS", &keys),
        ("MODELS", "gpt-4o-mini,gpt-4o"),
        ("TENANTS", &raw),
        ("UPSTASH_REDIS_REST_URL", UPSTASH),
        ("UPSTASH_REDIS_REST_TOKEN", UPSTASH_TOKEN),
    ]))
    .expect("a bad TENANTS is not fatal");
    let all = config.problems.join("\n");
    assert!(!all.contains("SECRET"), "a value was echoed: {all}");
    for expected in [
        "TENANTS: 'tenant-a' is dropped: ",
        "'daily_budget_usd' must be a number of US dollars above 0",
        "'monthly_budget_usd' must be a number of US dollars above 0",
        "'over_budget' must be \"refuse\" or \"degrade\"",
        "TENANTS: 'tenant-b' is dropped: ",
        "'budget_soft_percent' must not be above 'budget_hard_percent'",
        "'degrade_model' is not a model the gateway serves (ROUTES, MODELS)",
        "'budget_soft_percent' must be a whole number from 1 to 1000",
        "the budget fields need 'daily_budget_usd' or 'monthly_budget_usd'",
        "'degrade_model' needs 'over_budget' \"degrade\"",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(!config.tenant_policies.policy("tenant-b").budget.is_set(), "a dropped entry gives no budget");
    // The degrade model must also be one the tenant may use.
    let narrow = json!({
        "tenant-a": {"models": ["gpt-4o"], "daily_budget_usd": 1, "over_budget": "degrade", "degrade_model": "gpt-4o-mini"},
        "tenant-b": {"daily_budget_usd": 1},
    });
    let config = Config::from_vars(&MapVars::new(&[
        ("GATEWAY_KEYS", &keys),
        ("MODELS", "gpt-4o-mini,gpt-4o"),
        ("TENANTS", &narrow.to_string()),
    ]))
    .expect("serves");
    let all = config.problems.join("\n");
    assert!(all.contains("'degrade_model' is not one of the tenant's 'models'"), "{all}");
    assert!(all.contains("TENANTS sets rate limits or budgets, which are kept in Redis"), "no Redis: {all}");
}

#[test]
fn utc_days_and_months_are_arithmetic_told_the_time() {
    assert_eq!(Date::of_ms(T0), Date { year: 2026, month: 1, day: 1 });
    assert_eq!(Date::of_ms(T0 - 1).day_label(), "2025-12-31");
    assert_eq!(Date::of_ms(T0 - 1).month_label(), "2025-12");
    assert_eq!(period_end_ms(Period::Day, T0 - 1), T0, "the last ms of a day ends at midnight");
    assert_eq!(period_end_ms(Period::Month, T0 - 1), T0, "December ends on January 1st");
    assert_eq!(period_end_ms(Period::Day, T0), T0 + DAY_MS);
    assert_eq!(period_end_ms(Period::Month, T0 + 5 * DAY_MS), T0 + 31 * DAY_MS, "January has 31 days");
    // 2028 is a leap year: February has 29 days.
    let feb_2028 = T0 + (365 + 365 + 31) * DAY_MS;
    assert_eq!(Date::of_ms(feb_2028).day_label(), "2028-02-01");
    assert_eq!(Date::of_ms(period_end_ms(Period::Month, feb_2028) - 1).day_label(), "2028-02-29");
    let t = Thresholds::of(1.0, 80, 100);
    assert_eq!((t.budget, t.soft, t.hard), (1_000_000_000, 800_000_000, 1_000_000_000));
    let at = |period, spent| BudgetStanding { period, spent, thresholds: t };
    let v = judge(T0, &[at(Period::Day, 850_000_000), at(Period::Month, 100)]);
    assert_eq!((v.warnings.len(), v.over), (1, None));
    let v = judge(T0, &[at(Period::Day, 1_000_000_000), at(Period::Month, 1_000_000_000)]);
    assert_eq!(
        v.over.map(|(s, until)| (s.period, until)),
        Some((Period::Month, T0 + 31 * DAY_MS)),
        "the longer wait wins"
    );
}

#[test]
fn spend_is_recorded_from_usage_per_tenant_and_target_and_hits_never_spend() {
    let w = tenants(json!({"tenant-a": {"daily_budget_usd": 100}}));
    let body = ask("gpt-4o", "spend");
    assert_eq!(w.chat(&body, &[]).status, 200);
    w.host.run_background();
    assert_eq!(spent(&w, "tenant:tenant-a", "2026-01-01"), Some(GPT_4O));
    assert_eq!(spent(&w, "tenant:tenant-a", "2026-01"), Some(GPT_4O));
    assert_eq!(spent(&w, "target:openai", "2026-01-01"), Some(GPT_4O), "per target too");
    assert_eq!(spent(&w, "target:openai", "2026-01"), Some(GPT_4O));
    let hit = w.chat(&body, &[]);
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    w.host.run_background();
    assert_eq!(spent(&w, "tenant:tenant-a", "2026-01-01"), Some(GPT_4O), "a hit never spends");
    // A cheaper model costs less; a tenant without a budget records nothing.
    assert_eq!(w.chat(&ask("gpt-4o-mini", "cheap"), &[]).status, 200);
    assert_eq!(w.chat_as(KEY_B, &ask("gpt-4o", "free"), &[]).status, 200);
    w.host.run_background();
    assert_eq!(spent(&w, "tenant:tenant-a", "2026-01-01"), Some(GPT_4O + GPT_4O_MINI));
    assert_eq!(spent(&w, "tenant:tenant-b", "2026-01-01"), None);
}

#[test]
fn past_the_soft_threshold_warns_and_past_the_hard_one_refuses_until_the_next_day() {
    // Three gpt-4o answers: 40%, 81%, 122% of the budget.
    let w = tenants(json!({"tenant-a": {"daily_budget_usd": 0.0003, "budget_soft_percent": 50}}));
    let first = w.chat(&ask("gpt-4o", "one"), &[]);
    assert_eq!((first.status, first.header("x-budget-warning")), (200, None));
    w.host.run_background();
    assert_eq!(w.chat(&ask("gpt-4o", "two"), &[]).header("x-budget-warning"), None, "40% is under the soft 50%");
    w.host.run_background();
    let warned = w.chat(&ask("gpt-4o", "three"), &[]);
    assert_eq!((warned.status, warned.header("x-budget-warning")), (200, Some("daily=81%")));
    assert!(w.host.logs().iter().any(|l| l.contains("\"event\":\"budget_warning\"") && l.contains("\"percent\":81")));
    w.host.run_background();
    w.host.advance(3_600_000);
    let refused = w.chat(&ask("gpt-4o", "four"), &[]);
    refused.assert_error(429, "budget_exceeded");
    assert_eq!(refused.json()["error"]["type"], "insufficient_quota");
    assert_eq!(refused.header("retry-after"), Some("82800"), "23 hours to midnight UTC");
    assert_eq!(w.upstream_calls(), 3);
    // A cache hit is still served: it costs nothing.
    assert_eq!(w.chat(&ask("gpt-4o", "one"), &[]).header("x-cache"), Some("HIT"));
    // Refused again from memory: no script run.
    let before = scripts_run(&w);
    w.chat(&ask("gpt-4o", "five"), &[]).assert_error(429, "budget_exceeded");
    assert_eq!(scripts_run(&w), before, "a tenant known over its budget costs no Redis call");
    // Another isolate learns it from Redis.
    w.another_isolate().chat(&ask("gpt-4o", "six"), &[]).assert_error(429, "budget_exceeded");
    assert_eq!(scripts_run(&w), before + 1);
    // A new UTC day starts afresh.
    w.host.advance(23 * 3_600_000);
    let next_day = w.chat(&ask("gpt-4o", "seven"), &[]);
    assert_eq!((next_day.status, next_day.header("x-budget-warning")), (200, None), "{:?}", next_day.body);
}

#[test]
fn a_monthly_budget_refuses_until_the_first_of_next_month() {
    let w = tenants(json!({"tenant-a": {"monthly_budget_usd": 0.0001}}));
    w.host.advance(30 * DAY_MS); // January 31st, 00:00 UTC
    assert_eq!(w.chat(&ask("gpt-4o", "m1"), &[]).status, 200);
    w.host.run_background();
    let refused = w.chat(&ask("gpt-4o", "m2"), &[]);
    refused.assert_error(429, "budget_exceeded");
    assert_eq!(refused.header("retry-after"), Some("86400"), "one day to February 1st");
    assert!(refused.json()["error"]["message"].as_str().is_some_and(|m| m.contains("monthly budget")));
}

#[test]
fn past_the_hard_threshold_a_degrading_tenant_is_sent_to_the_cheaper_model_under_its_own_key() {
    let w = tenants(
        json!({"tenant-b": {"daily_budget_usd": 0.0001, "over_budget": "degrade", "degrade_model": "gpt-4o-mini"}}),
    );
    assert_eq!(w.chat_as(KEY_B, &ask("gpt-4o", "d1"), &[]).status, 200);
    w.host.run_background();
    let body = ask("gpt-4o", "d2");
    let degraded = w.chat_as(KEY_B, &body, &[]);
    assert_eq!(degraded.status, 200, "{:?}", degraded.body);
    assert_eq!(degraded.header("x-budget-degraded-to"), Some("gpt-4o-mini"));
    let sent: Value = serde_json::from_slice(w.host.sent_to(UPSTREAM)[1].body()).expect("json");
    assert_eq!(sent["model"], "gpt-4o-mini", "the provider is asked for the cheaper model");
    w.host.run_background();
    // Stored under the key of the request actually sent, never under the one asked for.
    let sent_key = key_for("tenant-b", &ask("gpt-4o-mini", "d2"));
    assert!(w.upstash.raw(&redis_key(&sent_key)).is_some(), "the degraded request's entry");
    assert!(w.upstash.raw(&redis_key(&key_for("tenant-b", &body))).is_none());
    assert_eq!(spent(&w, "tenant:tenant-b", "2026-01-01"), Some(GPT_4O + GPT_4O_MINI), "priced as sent");
    // Known in this isolate now: degraded before the lookup, so the cheaper model's entry answers.
    let before = scripts_run(&w);
    let hit = w.chat_as(KEY_B, &body, &[]);
    assert_eq!((hit.header("x-cache"), hit.header("x-budget-degraded-to")), (Some("HIT"), Some("gpt-4o-mini")));
    assert_eq!(scripts_run(&w), before);
    assert_eq!(w.upstream_calls(), 2);
}
