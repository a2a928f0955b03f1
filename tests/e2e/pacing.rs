//! Pacing on the real runtimes, both hosts at once against one Redis: a burst of `low` requests
//! through both hosts fills a target's declared `rpm` up to its 80% share and the rest goes to
//! the next target; `high` requests use the last 20%; the provider never sees more than it
//! declared in the minute; with no other target, `low` gets a 429 `provider_capacity_exceeded`
//! with `Retry-After`, and so does `high` once the whole limit is used and no room comes within
//! its bounded wait.

use std::time::{Duration, Instant};

use devstack::stack::{KEY_A, KEY_B};
use devstack::HttpResponse;
use serde_json::json;

use crate::client::*;
use crate::guard::{commands_per_request, early_in_a_minute, percentiles};
use crate::runner::{Ctx, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("pacing::a_burst_stays_below_the_providers_declared_limit_on_both_hosts", burst),
        ("pacing::what_a_pacing_check_costs", cost_of_a_check),
    ]
}

fn ask(model: &str, content: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": content}]}).to_string()
}

fn oa(id: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut t = json!({"provider": "openai-compatible", "id": id, "base_url": "{upstream}/v1", "model": id});
    if let (Some(t), serde_json::Value::Object(extra)) = (t.as_object_mut(), extra) {
        t.extend(extra);
    }
    t
}

fn burst(ctx: &Ctx) {
    let routes = json!({
        "p-burst": [oa("p-primary", json!({"rpm": 5})), oa("p-secondary", json!({"priority": 1}))],
        "p-only": [oa("p-only", json!({"rpm": 10}))],
    })
    .to_string();
    let tenants = json!({"tenant-a": {"priority": "low"}, "tenant-b": {"priority": "high"}}).to_string();
    let s = ctx.own_stack(&[("ROUTES", &routes), ("TENANTS", &tenants)]);
    let other = ctx.host.other();
    let peer = s.start_peer(other.kind()).unwrap_or_else(|e| panic!("a peer on {}: {e}", other.name()));
    let m = marker("pacing");
    let bases = [s.url(), peer.url()];
    early_in_a_minute();
    // Eight low requests at once, half through each host.
    let answers: Vec<HttpResponse> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (base, body) = (&bases[i % 2], ask("p-burst", &format!("{m} low {i}")));
                scope.spawn(move || request_to(base, KEY_A, &body, &[]).send().expect("answers"))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let on = |who: &str| answers.iter().filter(|r| r.header("x-provider") == Some(who)).count();
    assert!(
        answers.iter().all(|r| r.status == 200),
        "{:?}",
        answers.iter().map(HttpResponse::text).collect::<Vec<_>>()
    );
    assert_eq!((on("p-primary"), on("p-secondary")), (4, 4), "80% of rpm 5 for low priority");
    let high: Vec<String> = (0..2)
        .map(|i| {
            let r = request_to(&bases[i % 2], KEY_B, &ask("p-burst", &format!("{m} high {i}")), &[])
                .send()
                .expect("answers");
            header(&r, "x-provider").to_owned()
        })
        .collect();
    assert_eq!(high, ["p-primary", "p-secondary"], "high uses the last 20%, then the next target");
    assert_eq!(s.fake().calls("\"model\":\"p-primary\""), 5, "the provider never sees more than its declared 5");
    // One target only: low stops at 8 of 10, high at 10, each refused with Retry-After.
    for i in 0..8 {
        let r =
            request_to(&bases[i % 2], KEY_A, &ask("p-only", &format!("{m} only {i}")), &[]).send().expect("answers");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let refused =
        request_to(&peer.url(), KEY_A, &ask("p-only", &format!("{m} only low")), &[]).send().expect("answers");
    assert_error(&refused, 429, "provider_capacity_exceeded");
    assert!(refused.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1));
    for i in 0..2 {
        let r = request_to(&bases[i % 2], KEY_B, &ask("p-only", &format!("{m} only high {i}")), &[])
            .send()
            .expect("answers");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let full = request_to(&s.url(), KEY_B, &ask("p-only", &format!("{m} only full")), &[]).send().expect("answers");
    assert_error(&full, 429, "provider_capacity_exceeded");
    assert_eq!(s.fake().calls("\"model\":\"p-only\""), 10);
    drop(peer);
}

/// Measures, one run on this machine: the latency of a no-store miss to a target that declares
/// `rpm` and `tpm` against one to a target that declares none (no tenant limits), interleaved,
/// and the Redis commands each costs. Prints them; asserts the command counts (one script run
/// before the call and one INCRBY of the target's tokens after it; none without limits).
fn cost_of_a_check(ctx: &Ctx) {
    const N: usize = 40;
    let routes = json!({
        "c-paced": [oa("c-paced", json!({"rpm": 1_000_000, "tpm": 1_000_000_000}))],
        "c-free": [oa("c-free", json!({}))],
    })
    .to_string();
    let s = ctx.own_stack(&[("ROUTES", &routes)]);
    let m = marker("pacing-cost");
    let timed = |model: &str, i: usize, what: &str| {
        let t = Instant::now();
        let r = request(&s, KEY_A, &ask(model, &format!("{m} {what} {i}")), &[("cache-control", "no-store")])
            .send()
            .expect("answers");
        assert_eq!(r.status, 200, "{}", r.text());
        t.elapsed().as_secs_f64() * 1000.0
    };
    timed("c-paced", 0, "warm");
    timed("c-free", 0, "warm");
    std::thread::sleep(Duration::from_millis(500));
    let (p_scripts, p_incr, p_all) = commands_per_request(&s, N, |i| {
        timed("c-paced", i, "count");
    });
    let (f_scripts, f_incr, f_all) = commands_per_request(&s, N, |i| {
        timed("c-free", i, "count");
    });
    let (mut paced, mut free) = (Vec::new(), Vec::new());
    for i in 0..N {
        paced.push(timed("c-paced", i, "timed"));
        free.push(timed("c-free", i, "timed"));
    }
    let ((pp50, pp99), (fp50, fp99)) = (percentiles(paced), percentiles(free));
    eprintln!(
        "pacing check cost on {}: no-store miss to a paced target p50 {pp50:.1} ms p99 {pp99:.1} ms ({p_scripts:.2} script runs, \
         {p_incr:.2} INCRBY, {p_all:.2} Redis commands in all per request); to an unpaced one p50 {fp50:.1} ms p99 {fp99:.1} ms \
         ({f_scripts:.2} script runs, {f_incr:.2} INCRBY, {f_all:.2} commands)",
        ctx.host.name()
    );
    assert_eq!((p_scripts, f_scripts), (1.0, 0.0), "one script before a call to a paced target, none otherwise");
    assert_eq!((p_incr - f_incr).round(), 1.0, "the target's tokens after the call");
}
