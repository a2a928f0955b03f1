//! The cache verdict as a pure function: every freshness, max-age and stale-if-error rule, from
//! a table of cases; and the one size check (`cache::fit`) against each place's limit.
#![cfg(not(target_arch = "wasm32"))]

use http::HeaderMap;
use llm_edge_cache::cache::entry::Entry;
use llm_edge_cache::cache::fit::{self, Place, TooLarge};
use llm_edge_cache::cache::policy::Policy;
use llm_edge_cache::cache::status::Lookup;
use llm_edge_cache::cache::verdict::{needs_backfill, prefer_stale, served_stale};
use llm_edge_cache::cache::{decide, Verdict};
use llm_edge_cache::ports::KvLimits;

const NOW: u64 = 1_767_225_600_000;

/// An entry `age_s` old, fresh for 60 s after creation, then stale for 600 s.
fn aged(age_s: u64) -> Entry {
    Entry::new(NOW - age_s * 1000, 60, 600, "openai", "m", b"{}".to_vec())
}

fn policy(cache_control: Option<&str>) -> Policy {
    let mut headers = HeaderMap::new();
    if let Some(v) = cache_control {
        headers.insert(http::header::CACHE_CONTROL, v.parse().expect("value"));
    }
    Policy::from_headers(&headers).expect("valid")
}

#[test]
fn the_verdict_table() {
    use Verdict::*;
    // (entry age in seconds or none, Cache-Control, verdict, what Cache-Status says)
    let cases: &[(Option<u64>, Option<&str>, Verdict, Lookup)] = &[
        (None, None, Miss, Lookup::Miss),
        (None, Some("max-age=5"), Miss, Lookup::Miss),
        (Some(0), None, Hit { ttl_s: 60 }, Lookup::Hit { ttl_s: 60 }),
        (Some(59), None, Hit { ttl_s: 1 }, Lookup::Hit { ttl_s: 1 }),
        // Fresh and within the client's max-age (the bound itself included).
        (Some(30), Some("max-age=30"), Hit { ttl_s: 30 }, Lookup::Hit { ttl_s: 30 }),
        // Fresh but older than the client's max-age: refused.
        (Some(31), Some("max-age=30"), Refused, Lookup::Stale),
        (Some(1), Some("max-age=0"), Refused, Lookup::Stale),
        // Past freshness, inside the stale window: kept for stale-if-error...
        (Some(60), None, StaleIfError, Lookup::Stale),
        (Some(659), None, StaleIfError, Lookup::Stale),
        // ...unless the client set max-age, even one the entry's age is within.
        (Some(60), Some("max-age=30"), Refused, Lookup::Stale),
        (Some(60), Some("max-age=3600"), Refused, Lookup::Stale),
        // Past the stale window: as good as absent.
        (Some(660), None, Expired, Lookup::Miss),
        (Some(10_000), Some("max-age=5"), Expired, Lookup::Miss),
    ];
    for (age, cc, verdict, lookup) in cases {
        let entry = age.map(aged);
        let got = decide(entry.as_ref(), &policy(*cc), NOW);
        assert_eq!(got, *verdict, "age {age:?}, cache-control {cc:?}");
        assert_eq!(got.lookup(), *lookup, "age {age:?}, cache-control {cc:?}");
    }
}

#[test]
fn no_cache_and_only_if_cached_do_not_change_the_verdict() {
    // no-cache skips the lookup altogether (the gateway never asks); only-if-cached changes what
    // happens on a miss, not what an entry may do.
    for cc in ["only-if-cached", "no-cache"] {
        assert_eq!(decide(Some(&aged(0)), &policy(Some(cc)), NOW), Verdict::Hit { ttl_s: 60 }, "{cc}");
    }
}

#[test]
fn the_newer_stale_entry_is_kept() {
    let (older, newer) = (aged(300), aged(100));
    assert!(prefer_stale(None, &older));
    assert!(prefer_stale(Some(&older), &newer));
    assert!(!prefer_stale(Some(&newer), &older));
    assert!(!prefer_stale(Some(&newer), &newer.clone()), "a tie keeps the first (tier 1's)");
}

#[test]
fn a_stale_answer_says_how_far_past_freshness_it_is() {
    assert_eq!(served_stale(&aged(60), NOW), Lookup::ServedStale { past_s: 0 });
    assert_eq!(served_stale(&aged(160), NOW), Lookup::ServedStale { past_s: 100 });
}

#[test]
fn tier_one_is_backfilled_unless_it_holds_a_fresh_entry() {
    assert!(needs_backfill(None, NOW));
    assert!(!needs_backfill(Some(&aged(0)), NOW));
    assert!(needs_backfill(Some(&aged(60)), NOW), "stale");
    assert!(needs_backfill(Some(&aged(10_000)), NOW), "expired");
}

#[test]
fn one_size_check_for_every_place() {
    let cap = Place::Cache { max_entry_bytes: 4096 };
    assert_eq!(fit::fits(4096, cap), Ok(()));
    assert_eq!(fit::fits(4097, cap), Err(TooLarge { size: 4097, limit: 4096 }));

    let spin = Place::EdgeKv(KvLimits { max_key_bytes: 256, max_value_bytes: 1 << 20, min_ttl_seconds: None });
    assert_eq!(fit::fits(1 << 20, spin), Ok(()));
    assert_eq!(fit::fits((1 << 20) + 1, spin), Err(TooLarge { size: (1 << 20) + 1, limit: 1 << 20 }));

    // Redis: base64 of the entry, its key and the SET command within Upstash's 10 MiB request.
    let redis = Place::Redis { key_bytes: 70 };
    let max = redis.max_encoded();
    assert!(fit::base64_len(max) + 70 + 64 <= llm_edge_cache::stores::upstash::MAX_REQUEST_BYTES);
    assert!(fit::base64_len(max + 1) + 70 + 64 > llm_edge_cache::stores::upstash::MAX_REQUEST_BYTES);
    assert_eq!(fit::fits(max, redis), Ok(()));
    assert!(fit::fits(max + 1, redis).is_err());
}

#[test]
fn the_size_checked_is_the_encoded_size() {
    // An answer just under MAX_ENTRY_BYTES whose entry (times, provider, model) is just over it.
    let entry = Entry::new(NOW, 60, 600, "openai", "gpt-4o-mini", vec![b'x'; 4096 - 8]);
    assert!(entry.body.len() < 4096 && entry.encoded_len() > 4096);
    assert!(fit::fits(entry.encoded_len(), Place::Cache { max_entry_bytes: 4096 }).is_err());
}

#[test]
fn base64_lengths() {
    for (n, len) in [(0, 0), (1, 4), (2, 4), (3, 4), (4, 8), (6, 8), (7, 12)] {
        assert_eq!(fit::base64_len(n), len, "{n}");
    }
}
