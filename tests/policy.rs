//! Request cache controls: Cache-Control directives and the namespace header.
#![cfg(not(target_arch = "wasm32"))]

use http::HeaderMap;
use llm_edge_cache::cache::policy::{Bypass, Policy};

fn policy(pairs: &[(&str, &str)]) -> Result<Policy, llm_edge_cache::error::ApiError> {
    let mut headers = HeaderMap::new();
    for (k, v) in pairs {
        headers.append(http::HeaderName::from_bytes(k.as_bytes()).expect("name"), v.parse().expect("value"));
    }
    Policy::from_headers(&headers)
}

#[test]
fn default_reads_and_writes() {
    let p = policy(&[]).expect("valid");
    assert!(p.read && p.write && !p.only_if_cached);
    assert_eq!((p.max_age_s, p.bypass, p.namespace.as_str()), (None, None, ""));
}

#[test]
fn no_cache_skips_reads_but_writes() {
    let p = policy(&[("cache-control", "no-cache")]).expect("valid");
    assert!(!p.read && p.write);
    assert_eq!(p.bypass, Some(Bypass::Request));
}

#[test]
fn no_store_skips_both() {
    let p = policy(&[("cache-control", "No-Store")]).expect("valid");
    assert!(!p.read && !p.write);
}

#[test]
fn max_age_and_only_if_cached() {
    let p = policy(&[("cache-control", "max-age=30, only-if-cached")]).expect("valid");
    assert_eq!(p.max_age_s, Some(30));
    assert!(p.only_if_cached && p.read);
    // Two max-age values: the stricter one wins.
    let p = policy(&[("cache-control", "max-age=30"), ("cache-control", "max-age=\"10\"")]).expect("valid");
    assert_eq!(p.max_age_s, Some(10));
}

#[test]
fn unknown_directives_are_ignored() {
    let p = policy(&[("cache-control", "private, stale-while-revalidate=5, ,")]).expect("valid");
    assert!(p.read && p.write);
}

#[test]
fn malformed_max_age_is_a_clear_400() {
    for v in ["max-age", "max-age=", "max-age=-1", "max-age=1.5", "max-age=soon"] {
        let e = policy(&[("cache-control", v)]).expect_err(v);
        assert_eq!((e.status.as_u16(), e.code), (400, "invalid_cache_control"), "{v}");
    }
}

#[test]
fn namespace_header_is_validated() {
    assert_eq!(policy(&[("x-cache-namespace", "team-1:prod.v2_x")]).expect("valid").namespace, "team-1:prod.v2_x");
    for bad in ["", "has space", "slash/no", &"x".repeat(65)] {
        let e = policy(&[("x-cache-namespace", bad)]).expect_err(bad);
        assert_eq!(e.code, "invalid_cache_namespace", "{bad:?}");
    }
}
