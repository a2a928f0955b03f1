//! Hedged tier reads: tier 2 is asked when tier 1 misses or has not answered within
//! `TIER2_HEDGE_MS`, and the first fresh hit answers. Virtual time: `set_kv_delay` makes tier 1
//! slow or stall, `MemUpstash::set_delay` gives Redis a round trip, and each test asserts how
//! long the client waited.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use base64::Engine as _;
use bytes::Bytes;
use llm_edge_cache::cache::entry::Entry;
use llm_edge_cache::cache::key::CacheKey;
use llm_edge_cache::ports::Clock;
use llm_edge_cache::testing::Scripted;
use support::*;

/// A fresh entry created nine seconds ago (3591 s of freshness left), whose body says where it was put.
fn entry(body: &str) -> Entry {
    Entry::new(T0 - 9_000, 3_600, 600, "openai", "seeded", Bytes::from(format!(r#"{{"choices":[],"from":"{body}"}}"#)))
}

fn seed_kv(w: &World, key: &CacheKey, entry: &Entry) {
    w.host.kv_insert(key.as_str(), entry.encode());
}

fn seed_redis(w: &World, key: &CacheKey, entry: &Entry) {
    w.upstash.insert_raw(&redis_key(key), &base64::engine::general_purpose::STANDARD.encode(entry.encode()));
}

/// Tier 1 stalls (past `KV_TIMEOUT_MS`, 200); Redis answers in 5 ms.
fn stalling_tier_one(hedge_ms: &str) -> World {
    let w = World::with_config(config_with(&[("TIER2_HEDGE_MS", hedge_ms)]));
    w.upstream_ok();
    w.host.set_kv_delay(1_000);
    w.upstash.set_delay(5);
    w
}

/// The request, and how long (virtual ms) the client waited for its answer.
fn timed(w: &World, body: &str) -> (Reply, u64) {
    let started = w.host.now_ms();
    let reply = w.chat(body, &[]);
    (reply, w.host.now_ms() - started)
}

fn redis_commands(w: &World) -> usize {
    w.host.sent_to(UPSTASH).len()
}

#[test]
fn a_stalling_tier_one_no_longer_costs_its_timeout_on_a_tier_two_hit() {
    let body = body_with("hedge me");
    let key = key_for("tenant-a", &body);

    // Before: a hedge as long as tier 1's timeout is the old sequential lookup.
    let before = stalling_tier_one("200");
    seed_redis(&before, &key, &entry("redis"));
    let (r, waited) = timed(&before, &body);
    assert_eq!((r.header("x-cache"), r.header("x-cache-tier")), (Some("HIT"), Some("redis")));
    assert_eq!(waited, 205, "tier 1's whole timeout, then Redis");
    assert_eq!(r.header("cache-status"), Some("redis; hit; ttl=3590, edge-kv; fwd=miss; detail=timeout; stored"));

    // After: Redis is asked at the hedge delay, and its hit answers at once.
    let after = stalling_tier_one("20");
    seed_redis(&after, &key, &entry("redis"));
    let (r, waited) = timed(&after, &body);
    assert_eq!((r.header("x-cache"), r.header("x-cache-tier")), (Some("HIT"), Some("redis")));
    assert_eq!(waited, 25, "the hedge delay plus Redis, not tier 1's timeout");
    assert_eq!(r.json()["from"], "redis");
    assert_eq!(r.header("cache-status"), Some("redis; hit; ttl=3590, edge-kv; fwd=miss; detail=hedged"));
    let timing = r.header("server-timing").expect("timing");
    assert!(timing.contains("redis;dur=5") && timing.contains("total;dur=25") && !timing.contains("kv;"), "{timing}");

    // After the response tier 1's read ends (timed out: it had nothing usable), so it is backfilled.
    assert!(after.host.kv_raw(key.as_str()).is_none());
    after.host.run_background();
    let copied = Entry::decode(&after.host.kv_raw(key.as_str()).expect("backfilled")).expect("entry");
    assert_eq!(copied, entry("redis"));
    assert_eq!(after.upstream_calls(), 0);
}

#[test]
fn a_tier_one_hit_within_the_hedge_delay_sends_no_redis_command() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("fast tier one");
    let key = key_for("tenant-a", &body);
    seed_kv(&w, &key, &entry("kv"));
    seed_redis(&w, &key, &entry("redis"));
    w.host.set_kv_delay(10);
    let (r, waited) = timed(&w, &body);
    assert_eq!((r.header("x-cache"), r.header("x-cache-tier")), (Some("HIT"), Some("edge-kv")));
    assert_eq!(r.header("cache-status"), Some("edge-kv; hit; ttl=3590"));
    assert_eq!(waited, 10);
    w.host.run_background();
    assert_eq!(redis_commands(&w), 0, "no Redis command at all");
}

#[test]
fn a_tier_one_miss_before_the_hedge_delay_asks_tier_two_at_once() {
    let w = World::with_config(config_with(&[("TIER2_HEDGE_MS", "20")]));
    w.upstream_ok();
    let body = body_with("quick miss");
    let key = key_for("tenant-a", &body);
    seed_redis(&w, &key, &entry("redis"));
    w.host.set_kv_delay(3);
    w.upstash.set_delay(5);
    let (r, waited) = timed(&w, &body);
    assert_eq!(r.header("x-cache-tier"), Some("redis"));
    assert_eq!(waited, 8, "tier 1's miss, then Redis: no waiting for the hedge delay");
    assert_eq!(r.header("cache-status"), Some("redis; hit; ttl=3590, edge-kv; fwd=uri-miss; stored"));
}

#[test]
fn a_tier_one_hit_after_tier_two_started_still_answers() {
    let w = World::with_config(config_with(&[("TIER2_HEDGE_MS", "20")]));
    w.upstream_ok();
    let body = body_with("late tier one");
    let key = key_for("tenant-a", &body);
    seed_kv(&w, &key, &entry("kv"));
    w.host.set_kv_delay(50);

    // Redis slower than tier 1: tier 1's hit answers; Redis's read is dropped and not reported.
    w.upstash.set_delay(100);
    let (r, waited) = timed(&w, &body);
    assert_eq!((r.header("x-cache"), r.header("x-cache-tier")), (Some("HIT"), Some("edge-kv")));
    assert_eq!(r.json()["from"], "kv");
    assert_eq!(waited, 50);
    assert_eq!(r.header("cache-status"), Some("edge-kv; hit; ttl=3590"));
    assert_eq!(redis_commands(&w), 1, "the hedged GET went out");

    // Redis faster, with nothing: its miss is reported and tier 1's later hit still answers.
    w.upstash.set_delay(5);
    let (r, waited) = timed(&w, &body);
    assert_eq!(r.header("x-cache-tier"), Some("edge-kv"));
    assert_eq!(waited, 50);
    assert_eq!(r.header("cache-status"), Some("redis; fwd=uri-miss, edge-kv; hit; ttl=3590"));
    assert_eq!(w.upstream_calls(), 0);
}

#[test]
fn a_hedged_tier_two_hit_does_not_backfill_a_tier_one_that_had_the_entry() {
    let w = World::with_config(config_with(&[("TIER2_HEDGE_MS", "20")]));
    w.upstream_ok();
    let body = body_with("both have it");
    let key = key_for("tenant-a", &body);
    seed_kv(&w, &key, &entry("kv"));
    seed_redis(&w, &key, &entry("redis"));
    w.host.set_kv_delay(50);
    w.upstash.set_delay(5);
    let r = w.chat(&body, &[]);
    assert_eq!(r.json()["from"], "redis");
    w.host.run_background();
    let kept = Entry::decode(&w.host.kv_raw(key.as_str()).expect("entry")).expect("entry");
    assert_eq!(kept, entry("kv"), "tier 1's read found a fresh entry: nothing written");
}

#[test]
fn a_stale_entry_from_a_slow_tier_one_still_answers_when_the_provider_fails() {
    let w = World::with_config(config_with(&[("TIER2_HEDGE_MS", "20")]));
    w.upstream(|_| Scripted::json(500, &serde_json::json!({"error": {"message": "down"}})));
    let body = body_with("stale and slow");
    let key = key_for("tenant-a", &body);
    // Fresh for an hour, created two hours ago: stale, inside its stale window.
    let stale = Entry::new(T0 - 7_200_000, 3_600, 86_400, "openai", "seeded", Bytes::from_static(b"{\"old\":true}"));
    seed_kv(&w, &key, &stale);
    w.host.set_kv_delay(50);
    w.upstash.set_delay(5);
    let r = w.chat(&body, &[]);
    assert_eq!((r.status, r.header("x-cache"), r.header("x-cache-tier")), (200, Some("STALE"), Some("edge-kv")));
    assert_eq!(
        r.header("cache-status"),
        Some("redis; fwd=uri-miss, edge-kv; hit; ttl=-3600; detail=stale-if-error"),
        "Redis missed first; tier 1's stale entry was kept for the error"
    );
}

#[test]
fn the_hedge_delay_is_a_setting() {
    assert_eq!(config_with(&[]).tier2_hedge_ms, llm_edge_cache::config::DEFAULT_TIER2_HEDGE_MS);
    assert_eq!(config_with(&[("TIER2_HEDGE_MS", "0")]).tier2_hedge_ms, 0);
    let keys = format!(r#"{{"{KEY_A}":"tenant-a"}}"#);
    let vars = llm_edge_cache::testing::MapVars::new(&[("GATEWAY_KEYS", &keys), ("TIER2_HEDGE_MS", "soon")]);
    let config = llm_edge_cache::config::Config::from_vars(&vars).expect("serves");
    assert_eq!(config.problems, ["TIER2_HEDGE_MS must be a whole number from 0 to 60000"]);
    assert_eq!(config.tier2_hedge_ms, llm_edge_cache::config::DEFAULT_TIER2_HEDGE_MS);
}

/// Both tiers asked at once (`TIER2_HEDGE_MS=0`): a tier-1 hit still answers, at tier 1's pace.
#[test]
fn a_zero_hedge_asks_both_tiers_at_once() {
    let w = World::with_config(config_with(&[("TIER2_HEDGE_MS", "0")]));
    w.upstream_ok();
    let body = body_with("zero hedge");
    let key = key_for("tenant-a", &body);
    seed_kv(&w, &key, &entry("kv"));
    seed_redis(&w, &key, &entry("redis"));
    w.host.set_kv_delay(10);
    w.upstash.set_delay(30);
    let (r, waited) = timed(&w, &body);
    assert_eq!((r.header("x-cache-tier"), waited), (Some("edge-kv"), 10));
    assert_eq!(redis_commands(&w), 1);
}
