//! Tier 1 on a store without TTL (Spin) is swept: entries past their stale window, and
//! unreadable ones, are deleted by a sweep that one write in 32 runs from a random point, so an
//! entry that is never read again does not stay forever and the store stays within about twice
//! its live entries. Stores with TTL (Workers KV) are never swept.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use llm_edge_cache::cache::entry::Entry;
use llm_edge_cache::ports::KvLimits;
use llm_edge_cache::stores::kv;
use llm_edge_cache::testing::MemHost;
use support::*;

const SPIN_LIKE: KvLimits = KvLimits { max_key_bytes: 256, max_value_bytes: 1 << 20, min_ttl_seconds: None };
const DAY_MS: u64 = 86_400_000;

fn entry_key(i: u64) -> String {
    format!("llmc1:{:064x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn put(host: &MemHost, key: &str, created_ms: u64) {
    let entry = Entry::new(created_ms, 7 * 86_400, 30 * 86_400, "openai", "m", b"{}".to_vec());
    host.kv_insert(key, entry.encode().to_vec());
}

#[test]
fn a_sweep_deletes_what_is_past_its_stale_window_and_unreadable_only() {
    let host = MemHost::new(T0);
    host.set_kv_limits(SPIN_LIKE);
    let (old, fresh, stale, garbage) = (entry_key(1), entry_key(2), entry_key(3), entry_key(4));
    put(&host, &old, T0 - 40 * DAY_MS);
    put(&host, &fresh, T0 - DAY_MS);
    put(&host, &stale, T0 - 10 * DAY_MS);
    host.kv_insert(&garbage, b"not an entry".to_vec());
    host.kv_insert("llmc1:healthz", b"probe".to_vec());
    let swept = host.block_on(kv::sweep(&host, "", 1_000));
    assert_eq!(swept, kv::Swept { examined: 4, deleted: 2 });
    let mut left = host.kv_keys();
    left.sort();
    let mut expected = vec![fresh, stale, "llmc1:healthz".to_owned()];
    expected.sort();
    assert_eq!(left, expected, "the stale entry still serves on provider errors; other keys are not ours");
}

#[test]
fn a_sweep_examines_a_bounded_run_from_its_start_and_wraps() {
    let host = MemHost::new(T0);
    host.set_kv_limits(SPIN_LIKE);
    let mut keys: Vec<String> = (0..200).map(entry_key).collect();
    keys.sort();
    for k in &keys {
        put(&host, k, T0 - 40 * DAY_MS);
    }
    // From just before the last 10 keys: those 10, then the first 54.
    let start = keys[189].clone();
    let swept = host.block_on(kv::sweep(&host, &start, 1_000));
    assert_eq!(swept, kv::Swept { examined: kv::SWEEP_EXAMINES, deleted: kv::SWEEP_EXAMINES });
    let left = host.kv_keys();
    assert!(left.contains(&keys[189]) && left.contains(&keys[54]), "the run ends where it should");
    assert!(
        !left.contains(&keys[190])
            && !left.contains(&keys[199])
            && !left.contains(&keys[0])
            && !left.contains(&keys[53])
    );
}

#[test]
fn writes_keep_a_store_without_ttl_bounded() {
    let w = World::new();
    w.host.set_kv_limits(SPIN_LIKE);
    w.upstream_ok();
    for i in 0..200 {
        put(&w.host, &entry_key(1_000 + i), T0 - 40 * DAY_MS);
    }
    for i in 0..400 {
        assert_eq!(w.chat(&body_with(&format!("new question {i}")), &[]).status, 200);
        w.host.run_background();
    }
    let expired_left = (0..200).filter(|i| w.host.kv_raw(&entry_key(1_000 + i)).is_some()).count();
    assert!(expired_left < 40, "{expired_left} of 200 expired entries are still stored");
    assert!(w.host.logs().iter().any(|l| l.contains("\"event\":\"kv_sweep\"")));
    // Every entry written by those requests is still there: live entries are never swept.
    assert_eq!(w.host.kv_keys().len(), 400 + expired_left);
}

#[test]
fn a_store_with_ttl_is_never_swept() {
    let w = World::new();
    w.upstream_ok();
    for i in 0..50 {
        put(&w.host, &entry_key(5_000 + i), T0 - 40 * DAY_MS);
    }
    for i in 0..100 {
        w.chat(&body_with(&format!("q {i}")), &[]);
        w.host.run_background();
    }
    assert_eq!((0..50).filter(|i| w.host.kv_raw(&entry_key(5_000 + i)).is_some()).count(), 50);
}
