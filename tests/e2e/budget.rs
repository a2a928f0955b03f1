//! Spend budgets on the real runtimes, with a real Redis and the fake upstream's usage: a tenant
//! crosses its soft threshold (warned) then its hard one (refused with `Retry-After` to the next
//! UTC midnight, on the other host too, cache hits still served), with its spend recorded per
//! tenant and per target, per day and month, expiring; a degrading tenant is sent to the cheaper
//! model, stored under that model's key, on both hosts.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use devstack::stack::{KEY_A, KEY_B};
use devstack::HttpResponse;
use llm_edge_cache::limits::budget::{period_end_ms, Date, Period};
use llm_edge_cache::prices::{Prices, Usage};
use serde_json::{json, Value};

use crate::client::*;
use crate::guard::{commands_per_request, percentiles};
use crate::runner::{eventually, Ctx, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("budget::soft_then_hard_threshold_from_the_providers_usage", soft_then_hard),
        ("budget::past_the_hard_threshold_a_tenant_is_degraded_to_the_cheaper_model", degrade),
        ("budget::what_a_budget_check_costs", cost_of_a_check),
    ]
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn ask(model: &str, content: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": content}]}).to_string()
}

/// What an answer cost at `model`'s built-in price, in nano-dollars, from its own usage.
fn cost(r: &HttpResponse, model: &str) -> u64 {
    let usage = Usage::of_completion(&json_of(r)).expect("the answer has usage");
    Prices::default().cost_nanos(model, &usage).expect("a built-in price")
}

fn spend(s: &devstack::stack::Stack, key: &str) -> u64 {
    redis(s, json!(["GET", key])).as_str().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn soft_then_hard(ctx: &Ctx) {
    // 100 micro-dollars a day, warned from 40: a few gpt-4o answers of the fake upstream.
    let tenants = json!({"tenant-a": {"daily_budget_usd": 0.0001, "budget_soft_percent": 40}}).to_string();
    let s = ctx.own_stack(&[("TENANTS", &tenants)]);
    let m = marker("budget");
    let day = Date::of_ms(now_ms());
    let tenant_day = format!("llmc1:spend:tenant:tenant-a:{}", day.day_label());
    let (mut spent, mut served) = (0u64, Vec::new());
    let refused = loop {
        let body = ask("gpt-4o", &format!("{m} {}", served.len()));
        let r = chat(&s, KEY_A, &body, &[]);
        if r.status != 200 {
            break r;
        }
        assert!(spent < 100_000, "served past the hard threshold: spent {spent}");
        let warned = spent >= 40_000;
        assert_eq!(r.header("x-budget-warning").is_some(), warned, "spent {spent}: {:?}", r.header("x-budget-warning"));
        if warned {
            let percent = spent * 100 / 100_000;
            assert_eq!(header(&r, "x-budget-warning"), format!("daily={percent}%"));
        }
        spent += cost(&r, "gpt-4o");
        // Recorded after the response: the next check must see it.
        eventually(Duration::from_secs(10), "the spend to be recorded", || {
            (spend(&s, &tenant_day) == spent).then_some(())
        });
        served.push(body);
        assert!(served.len() < 20, "never refused");
    };
    assert!(served.len() >= 2, "a warning came before the refusal");
    assert_error(&refused, 429, "budget_exceeded");
    assert_eq!(json_of(&refused)["error"]["type"], "insufficient_quota");
    let to_midnight = (period_end_ms(Period::Day, now_ms()) - now_ms()) / 1000;
    let retry: u64 = header(&refused, "retry-after").parse().expect("seconds");
    assert!(retry.abs_diff(to_midnight) <= 5, "Retry-After {retry} s, midnight UTC in {to_midnight} s");
    assert!(gateway_log(&s).contains("\"event\":\"budget_warning\""));
    assert!(gateway_log(&s).contains("\"event\":\"budget_exceeded\""));
    // Recorded per tenant and per target, per day and month, each expiring.
    for key in [
        tenant_day.clone(),
        format!("llmc1:spend:tenant:tenant-a:{}", day.month_label()),
        format!("llmc1:spend:target:openai:{}", day.day_label()),
        format!("llmc1:spend:target:openai:{}", day.month_label()),
    ] {
        assert_eq!(spend(&s, &key), spent, "{key}");
        let ttl = redis(&s, json!(["PTTL", key])).as_i64().unwrap_or(-1);
        assert!(ttl > 0, "{key} expires");
    }
    // A cache hit costs nothing, so it is still served; a new question is refused.
    let hit = chat(&s, KEY_A, &served[0], &[]);
    assert_eq!((hit.status, header(&hit, "x-cache")), (200, "HIT"), "{}", hit.text());
    assert_error(&chat(&s, KEY_A, &ask("gpt-4o", &format!("{m} again")), &[]), 429, "budget_exceeded");
    // The other host reads the same spend from Redis.
    let other = ctx.host.other();
    let peer = s.start_peer(other.kind()).unwrap_or_else(|e| panic!("a peer on {}: {e}", other.name()));
    let r = request_to(&peer.url(), KEY_A, &ask("gpt-4o", &format!("{m} peer")), &[]).send().expect("peer answers");
    assert_error(&r, 429, "budget_exceeded");
    assert_eq!(s.fake().calls(&m), served.len(), "no provider call past the budget");
    drop(peer);
}

fn degrade(ctx: &Ctx) {
    let tenants =
        json!({"tenant-b": {"daily_budget_usd": 0.00001, "over_budget": "degrade", "degrade_model": "gpt-4o-mini"}})
            .to_string();
    let s = ctx.own_stack(&[("TENANTS", &tenants)]);
    let m = marker("degrade");
    let day = Date::of_ms(now_ms()).day_label();
    let first = chat(&s, KEY_B, &ask("gpt-4o", &format!("{m} first")), &[]);
    assert_eq!((first.status, first.header("x-budget-degraded-to")), (200, None), "{}", first.text());
    let spent = cost(&first, "gpt-4o");
    assert!(spent >= 10_000, "one answer crosses the budget");
    let tenant_day = format!("llmc1:spend:tenant:tenant-b:{day}");
    eventually(Duration::from_secs(10), "the spend to be recorded", || (spend(&s, &tenant_day) == spent).then_some(()));
    let asked = ask("gpt-4o", &format!("{m} second"));
    let degraded = chat(&s, KEY_B, &asked, &[]);
    assert_eq!(degraded.status, 200, "{}", degraded.text());
    assert_eq!(header(&degraded, "x-budget-degraded-to"), "gpt-4o-mini");
    let calls = s.fake().calls_detail(&format!("{m} second"));
    assert_eq!(calls.len(), 1);
    let sent: Value = serde_json::from_str(calls[0]["body"].as_str().expect("body")).expect("json");
    assert_eq!(sent["model"], "gpt-4o-mini", "the provider is asked for the cheaper model");
    // Stored under the key of the request actually sent; priced as sent.
    let sent_key = format!("llmc1:{}", key_of("tenant-b", &ask("gpt-4o-mini", &format!("{m} second"))).digest_hex());
    eventually(Duration::from_secs(10), "the degraded entry to be stored", || {
        (redis(&s, json!(["EXISTS", sent_key])) == 1).then_some(())
    });
    let asked_key = format!("llmc1:{}", key_of("tenant-b", &asked).digest_hex());
    assert_eq!(redis(&s, json!(["EXISTS", asked_key])), 0, "never under the key of the model asked for");
    let total = spent + cost(&degraded, "gpt-4o-mini");
    eventually(Duration::from_secs(10), "the degraded spend", || (spend(&s, &tenant_day) == total).then_some(()));
    // Asked again, on both hosts: degraded before the lookup, so the cheaper model's entry answers.
    let again = chat(&s, KEY_B, &asked, &[]);
    assert_eq!((header(&again, "x-cache"), header(&again, "x-budget-degraded-to")), ("HIT", "gpt-4o-mini"));
    let other = ctx.host.other();
    let peer = s.start_peer(other.kind()).unwrap_or_else(|e| panic!("a peer on {}: {e}", other.name()));
    let r = request_to(&peer.url(), KEY_B, &ask("gpt-4o", &format!("{m} peer")), &[]).send().expect("peer answers");
    assert_eq!((r.status, header(&r, "x-budget-degraded-to")), (200, "gpt-4o-mini"), "{}", r.text());
    assert_eq!(s.fake().calls(&m), 3, "first, second and the peer's; the repeat was a hit");
    drop(peer);
}

/// Measures, one run on this machine: the latency of a no-store miss of a tenant with a budget
/// (and no rate limit) against one of a tenant without guard rails on the same gateway, and the
/// Redis commands each costs. Prints them; asserts the command counts (one script run before the
/// call and four more INCRBY after it than without a budget).
fn cost_of_a_check(ctx: &Ctx) {
    const N: usize = 40;
    let tenants = json!({"tenant-a": {"daily_budget_usd": 1000}}).to_string();
    let s = ctx.own_stack(&[("TENANTS", &tenants)]);
    let m = marker("budget-cost");
    let timed = |key: &str, i: usize, what: &str| {
        let t = Instant::now();
        let r = chat(&s, key, &ask("gpt-4o", &format!("{m} {what} {i}")), &[("cache-control", "no-store")]);
        assert_eq!(r.status, 200, "{}", r.text());
        t.elapsed().as_secs_f64() * 1000.0
    };
    timed(KEY_A, 0, "warm");
    timed(KEY_B, 0, "warm");
    std::thread::sleep(Duration::from_millis(500));
    // Redis commands, tenant by tenant.
    let (b_scripts, b_incr, b_all) = commands_per_request(&s, N, |i| {
        timed(KEY_A, i, "budget");
    });
    let (f_scripts, f_incr, f_all) = commands_per_request(&s, N, |i| {
        timed(KEY_B, i, "free");
    });
    // Latency, interleaved so that the machine's load falls on both alike.
    let (mut budget, mut free) = (Vec::new(), Vec::new());
    for i in 0..N {
        budget.push(timed(KEY_A, i, "budget-timed"));
        free.push(timed(KEY_B, i, "free-timed"));
    }
    let ((bp50, bp99), (fp50, fp99)) = (percentiles(budget), percentiles(free));
    eprintln!(
        "budget check cost on {}: no-store miss with a budget p50 {bp50:.1} ms p99 {bp99:.1} ms ({b_scripts:.2} script runs, \
         {b_incr:.2} INCRBY, {b_all:.2} Redis commands in all per request); without guard rails p50 {fp50:.1} ms p99 {fp99:.1} ms \
         ({f_scripts:.2} script runs, {f_incr:.2} INCRBY, {f_all:.2} commands)",
        ctx.host.name()
    );
    // INCRBY also counts the breakers' shared health (now and then, for both tenants alike).
    assert_eq!((b_scripts, f_scripts), (1.0, 0.0), "one script before a call with a budget, none without");
    assert_eq!((b_incr - f_incr).round(), 4.0, "four spend counters after the call");
}
