//! Fail open on the real runtime: Redis stopped mid-test, tier 1 unbound, garbage in both
//! tiers, and stale entries answering when the provider fails.

use std::time::Duration;

use devstack::stack::KEY_A;
use serde_json::json;

use crate::client::*;
use crate::runner::{eventually, Ctx, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("failopen::redis_stopped_mid_test_still_answers", redis_stopped),
        ("failopen::tier_one_unbound_still_answers_and_redis_serves", kv_unbound),
        ("failopen::garbage_entries_are_misses", garbage_entries),
        ("failopen::stale_entry_answers_when_the_provider_fails", stale_on_failure),
    ]
}

fn redis_stopped(ctx: &Ctx) {
    let mut s = ctx.own_stack(&[]);
    let before = marker("redis-stop-before");
    let b_before = body(&before);
    chat_a(&s, &b_before);
    wait_cached(&s, KEY_A, &b_before);

    s.redis.stop();
    let m = marker("redis-stop");
    let b = body(&m);
    let started = std::time::Instant::now();
    let r = chat_a(&s, &b);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(header(&r, "x-cache"), "MISS");
    let status = header(&r, "cache-status");
    assert!(status.starts_with("redis; fwd=miss; detail="), "{status}");
    assert!(started.elapsed() < Duration::from_secs(3), "a dead Redis must not hold the request");
    // Tier 1 still answers what it has.
    assert_eq!(header(&chat_a(&s, &b_before), "x-cache-tier"), "edge-kv");
    let h = admin_health(&s);
    assert_eq!((h["status"].as_str(), h["tiers"]["redis"]["state"].as_str()), (Some("degraded"), Some("down")));
    eventually(Duration::from_secs(10), "the failed Redis write to be logged", || {
        s.worker.log().contains("\"event\":\"store_error\"").then_some(())
    });

    s.redis.restart().expect("redis restarts");
    let after = marker("redis-back");
    chat_a(&s, &body(&after));
    eventually(Duration::from_secs(10), "Redis to hold the new entry", || {
        (redis(&s, json!(["EXISTS", key_of("tenant-a", &body(&after)).as_str()])) == 1).then_some(())
    });
}

fn kv_unbound(ctx: &Ctx) {
    let s = ctx.stack_without_kv();
    let m = marker("kv-unbound");
    let b = body(&m);
    let r = chat_a(&s, &b);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        header(&r, "cache-status").contains("edge-kv; fwd=miss; detail=unavailable"),
        "{}",
        header(&r, "cache-status")
    );
    let hit = wait_cached(&s, KEY_A, &b);
    assert_eq!(header(&hit, "x-cache-tier"), "redis", "tier 2 carries on alone");
    assert_eq!(hit.body, r.body);
    assert_eq!(s.fake().calls(&m), 1);
    // The runtime's output reaches the harness a moment after the response.
    eventually(Duration::from_secs(5), "the tier-1 failure to be logged", || {
        s.worker.log().contains("\"tier\":\"edge-kv\"").then_some(())
    });
}

fn garbage_entries(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("garbage");
    let b = body(&m);
    let key = key_of("tenant-a", &b);
    s.worker.kv_put_local(key.as_str(), "this is not an entry").expect("wrangler kv key put");
    assert_eq!(redis(s, json!(["SET", key.as_str(), "bm90IGFuIGVudHJ5"])), "OK");
    let r = chat_a(s, &b);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(header(&r, "x-cache"), "MISS");
    assert_eq!(
        header(&r, "cache-status"),
        "redis; fwd=miss; detail=garbage; stored, edge-kv; fwd=miss; detail=garbage; stored"
    );
    let hit = wait_cached(s, KEY_A, &b);
    assert_eq!(hit.body, r.body, "the garbage was replaced by the real answer");
    assert_eq!(s.fake().calls(&m), 1);
}

fn stale_on_failure(ctx: &Ctx) {
    let s = ctx.own_stack(&[("CACHE_FRESH_TTL_SECONDS", "1")]);
    let m = marker("stale");
    let b = body(&m);
    let original = chat_a(&s, &b);
    wait_cached(&s, KEY_A, &b);
    std::thread::sleep(Duration::from_millis(1_300));
    s.fake().add_rule(&m, json!([{"kind": "status", "status": 500}]), true);
    let r = chat_a(&s, &b);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(header(&r, "x-cache"), "STALE");
    assert_eq!(header(&r, "x-cache-stale-reason"), "upstream_server_error");
    assert!(header(&r, "cache-status").contains("hit; ttl=-"), "{}", header(&r, "cache-status"));
    assert_eq!(r.body, original.body);
    assert_eq!(s.fake().calls(&m), 2, "the provider was tried first");
    // Without a stale entry the failure is the client's answer.
    let none = marker("stale-none");
    s.fake().add_rule(&none, json!([{"kind": "status", "status": 500}]), true);
    assert_error(&chat_a(&s, &body(&none)), 502, "upstream_server_error");
    // A client that sets max-age accepts nothing that old, even on error.
    assert_error(&chat(&s, KEY_A, &b, &[("cache-control", "max-age=0")]), 502, "upstream_server_error");
}
