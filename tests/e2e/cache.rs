//! The layered cache on the real runtime: miss then hit, tier-2 hit with tier-1 backfill,
//! request controls, tenant and namespace isolation, what the provider receives.

use std::time::Duration;

use base64::Engine as _;
use devstack::stack::{KEY_A, KEY_B, UPSTREAM_KEY};
use llm_edge_cache::cache::entry::Entry;
use serde_json::json;

use crate::client::*;
use crate::runner::{eventually, Ctx, Host, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("cache::miss_then_hit_calls_the_provider_once", miss_then_hit),
        ("cache::tier_two_hit_backfills_tier_one", tier_two_hit_backfills_tier_one),
        ("cache::tenants_never_share_entries", tenants_never_share_entries),
        ("cache::namespaces_split_entries", namespaces_split_entries),
        ("cache::no_store_neither_reads_nor_writes", no_store),
        ("cache::no_cache_refreshes_the_entry", no_cache),
        ("cache::only_if_cached_is_504_on_a_miss", only_if_cached),
        ("cache::the_provider_gets_the_gateway_key_and_the_request", provider_gets_gateway_key),
        ("cache::an_entry_over_the_hosts_kv_limit_is_served_from_redis", over_kv_limit),
        ("cache::tier_one_without_ttl_is_swept", swept),
    ]
}

fn miss_then_hit(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("hit");
    let b = body(&m);
    let miss = chat_a(s, &b);
    assert_eq!(miss.status, 200, "{}", miss.text());
    assert_eq!(header(&miss, "x-cache"), "MISS");
    assert_eq!(header(&miss, "x-cache-tier"), "origin");
    assert_eq!(header(&miss, "cache-status"), "redis; fwd=uri-miss; stored, edge-kv; fwd=uri-miss; stored");
    assert_eq!(header(&miss, "x-provider"), "openai");
    assert!(header(&miss, "server-timing").contains("origin;dur="));
    assert!(content(&miss).ends_with(&m));
    wait_cached(s, KEY_A, &b);
    let hit = chat_a(s, &b);
    assert_eq!(header(&hit, "x-cache"), "HIT");
    assert_eq!(header(&hit, "x-cache-tier"), "edge-kv");
    assert!(header(&hit, "cache-status").starts_with("edge-kv; hit; ttl="));
    assert!(header(&hit, "age").parse::<u64>().is_ok());
    assert_eq!(hit.body, miss.body, "the same bytes the provider sent");
    assert_eq!(s.fake().calls(&m), 1, "the provider was called exactly once");
}

fn tier_two_hit_backfills_tier_one(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("backfill");
    let b = body(&m);
    let seeded = format!(
        r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"seeded in redis {m}"}},"finish_reason":"stop"}}]}}"#
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    let entry = Entry::new(now - 3_000, 3_600, 600, "openai", "gpt-4o-mini", seeded.clone().into_bytes());
    let key = key_of("tenant-a", &b);
    let b64 = base64::engine::general_purpose::STANDARD.encode(entry.encode());
    assert_eq!(redis(s, json!(["SET", key.as_str(), b64, "PX", "600000"])), "OK");

    let r = chat_a(s, &b);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(header(&r, "x-cache"), "HIT");
    assert_eq!(header(&r, "x-cache-tier"), "redis");
    assert!(header(&r, "cache-status").ends_with("edge-kv; fwd=uri-miss; stored"), "{}", header(&r, "cache-status"));
    assert!(header(&r, "age").parse::<u64>().expect("age") >= 3);
    assert_eq!(r.text(), seeded);
    // The backfill runs after the response (waitUntil); tier 1 then answers on its own.
    let from_kv = eventually(Duration::from_secs(10), "tier 1 backfilled", || {
        let r = chat(s, KEY_A, &b, &[("cache-control", "only-if-cached")]);
        (r.header("x-cache-tier") == Some("edge-kv")).then_some(r)
    });
    assert_eq!(from_kv.text(), seeded);
    assert_eq!(s.fake().calls(&m), 0, "no provider call at all");
}

fn tenants_never_share_entries(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("tenants");
    let b = body(&m);
    let a = chat(s, KEY_A, &b, &[]);
    wait_cached(s, KEY_A, &b);
    let b_first = chat(s, KEY_B, &b, &[]);
    assert_eq!(header(&b_first, "x-cache"), "MISS", "tenant B must not see tenant A's entry");
    wait_cached(s, KEY_B, &b);
    assert_eq!(chat(s, KEY_A, &b, &[]).body, a.body);
    assert_eq!(chat(s, KEY_B, &b, &[]).body, b_first.body);
    assert_ne!(a.body, b_first.body, "each tenant has its own answer");
    assert_eq!(s.fake().calls(&m), 2);
}

fn namespaces_split_entries(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("ns");
    let b = body(&m);
    chat_a(s, &b);
    wait_cached(s, KEY_A, &b);
    let other = chat(s, KEY_A, &b, &[("x-cache-namespace", "experiment-2")]);
    assert_eq!(header(&other, "x-cache"), "MISS");
    assert_eq!(s.fake().calls(&m), 2);
}

fn no_store(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("nostore");
    let b = body(&m);
    for _ in 0..2 {
        let r = chat(s, KEY_A, &b, &[("cache-control", "no-store")]);
        assert_eq!(r.status, 200);
        assert_eq!(header(&r, "x-cache"), "BYPASS");
        assert_eq!(header(&r, "cache-status"), "redis; fwd=request, edge-kv; fwd=request");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_error(&chat(s, KEY_A, &b, &[("cache-control", "only-if-cached")]), 504, "cache_miss");
    assert_eq!(redis(s, json!(["EXISTS", key_of("tenant-a", &b).as_str()])), 0, "nothing written to Redis");
    assert_eq!(s.fake().calls(&m), 2);
}

fn no_cache(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("nocache");
    let b = body(&m);
    let first = chat_a(s, &b);
    wait_cached(s, KEY_A, &b);
    let fresh = chat(s, KEY_A, &b, &[("cache-control", "no-cache")]);
    assert_eq!(header(&fresh, "x-cache"), "BYPASS");
    assert_eq!(header(&fresh, "cache-status"), "redis; fwd=request; stored, edge-kv; fwd=request; stored");
    assert_ne!(content(&fresh), content(&first), "a new answer from the provider");
    let newer = content(&fresh);
    eventually(Duration::from_secs(10), "the refreshed answer to replace the old one", || {
        let r = chat(s, KEY_A, &b, &[("cache-control", "only-if-cached")]);
        (r.status == 200 && content(&r) == newer).then_some(())
    });
    assert_eq!(s.fake().calls(&m), 2);
}

fn only_if_cached(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("oic");
    let r = chat(s, KEY_A, &body(&m), &[("cache-control", "only-if-cached")]);
    assert_error(&r, 504, "cache_miss");
    assert_eq!(header(&r, "x-cache"), "MISS");
    assert_eq!(s.fake().calls(&m), 0);
}

fn provider_gets_gateway_key(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("fwd");
    let b = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": m}], "temperature": 0.25, "x_vendor": {"k": [1, 2]}, "user": "end-user-7"});
    assert_eq!(chat_a(s, &b.to_string()).status, 200);
    let calls = s.fake().calls_detail(&m);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0]["authorization"],
        format!("Bearer {UPSTREAM_KEY}"),
        "the gateway's provider key, never the client's"
    );
    let sent: serde_json::Value = serde_json::from_str(calls[0]["body"].as_str().expect("body")).expect("json");
    assert_eq!(sent, b, "every field forwarded unchanged");
}

/// 1.2 MB fits Workers KV (25 MiB values) but not Spin's default store (1 MiB): on Spin the entry
/// skips tier 1, is counted, and tier 2 serves it; nothing fails on either host.
fn over_kv_limit(ctx: &Ctx) {
    // A 1.6 MB base64 value through the REST endpoint can take longer than the default 300 ms
    // on a loaded machine, which would turn the tier-2 hit into a miss: sizes are the point here.
    let s = ctx.own_stack(&[("REDIS_TIMEOUT_MS", "5000")]);
    let m = marker("big");
    let big = json!({"id": "chatcmpl-big", "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "z".repeat(1_200_000)}, "finish_reason": "stop"}]});
    s.fake().add_rule(&m, json!([{"kind": "status", "status": 200, "body": big.to_string()}]), true);
    let b = body(&m);
    let first = chat_a(&s, &b);
    assert_eq!(first.status, 200);
    assert_eq!(first.body.len(), big.to_string().len());
    let hit = wait_cached(&s, KEY_A, &b);
    assert_eq!(hit.body, first.body);
    let expected_tier = match ctx.host {
        Host::Cloudflare => "edge-kv",
        Host::Spin => "redis",
    };
    let settled = eventually(Duration::from_secs(10), "the entry to settle in its tier", || {
        let r = chat_a(&s, &b);
        (header(&r, "x-cache-tier") == expected_tier).then_some(r)
    });
    assert_eq!(header(&settled, "x-cache"), "HIT");
    let health = admin_health(&s);
    let skipped = health["not_stored"]["edge_kv_too_large"].as_u64().expect("a count");
    match ctx.host {
        Host::Cloudflare => assert_eq!(skipped, 0, "{health}"),
        Host::Spin => assert!(skipped >= 1, "counted on Spin: {health}"),
    }
    assert_eq!(s.fake().calls(&m), 1);
}

/// Spin's store has no TTL: writes sweep it now and then, deleting what can never answer again
/// (here an unreadable entry). Workers KV expires entries itself and is never swept.
fn swept(ctx: &Ctx) {
    let s = ctx.own_stack(&[]);
    let b = body(&marker("sweep-target"));
    let key = key_of("tenant-a", &b);
    s.worker.kv_put_local(key.as_str(), "this is not an entry").expect("kv put");
    let tier_one = |s: &devstack::stack::Stack| {
        let r = chat(s, KEY_A, &b, &[("cache-control", "only-if-cached")]);
        header(&r, "cache-status").split(", ").find(|m| m.starts_with("edge-kv")).map(str::to_owned).expect("edge-kv")
    };
    assert_eq!(tier_one(&s), "edge-kv; fwd=miss; detail=garbage");
    // One write in 32 sweeps, and a sweep examines 64 entries: the whole of this store, kept
    // small by rewriting four entries (`no-cache` skips the read and stores the fresh answer).
    // After 300 writes the chance that none swept is below 1 in 10,000. (With 300 different
    // entries a sweep covered only part of the store, and the test failed about once in 100.)
    let m = marker("sweep-writes");
    for i in 0..300 {
        let r = chat(&s, KEY_A, &body(&format!("{m}-{}", i % 4)), &[("cache-control", "no-cache")]);
        assert_eq!(r.status, 200);
    }
    match ctx.host {
        Host::Spin => eventually(Duration::from_secs(10), "the unreadable entry to be swept", || {
            (tier_one(&s) == "edge-kv; fwd=uri-miss").then_some(())
        }),
        Host::Cloudflare => assert_eq!(tier_one(&s), "edge-kv; fwd=miss; detail=garbage", "never swept"),
    }
}
