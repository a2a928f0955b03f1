//! The admin surface: every `/admin/...` path behind `ADMIN_KEYS` (never a gateway key), the
//! purge of one entry from both tiers with its audit line, `CACHE_GENERATION` retiring every
//! entry at once, and `DEPLOYMENT_PREFIX` in front of every Redis key.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use llm_edge_cache::cache::key::{CacheKey, KeyScope};
use llm_edge_cache::ports::Body;
use serde_json::{json, Value};
use support::*;

fn purge_body(tenant: &str, content: &str, namespace: Option<&str>) -> String {
    let mut v: Value = serde_json::from_str(&body_with(content)).expect("json");
    v["tenant"] = json!(tenant);
    if let Some(ns) = namespace {
        v["namespace"] = json!(ns);
    }
    v.to_string()
}

#[test]
fn admin_paths_need_an_admin_key() {
    let w = World::new();
    let get = |auth: Option<&str>| {
        let mut req = http::Request::get("https://gw.test/admin/health");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        w.send(req.body(Body::empty()).expect("request"))
    };
    get(None).assert_error(401, "missing_api_key");
    get(Some(&format!("Bearer {KEY_A}"))).assert_error(401, "invalid_admin_key");
    get(Some("Bearer adm-test-operator-kez")).assert_error(401, "invalid_admin_key");
    assert_eq!(get(Some(&format!("Bearer {ADMIN_KEY}"))).status, 200);
    w.admin_post("/admin/cache/purge", KEY_A, &purge_body("tenant-a", "x", None))
        .assert_error(401, "invalid_admin_key");
    w.admin_get("/admin/nothing-here").assert_error(404, "not_found");
    w.admin_post("/admin/health", ADMIN_KEY, "{}").assert_error(405, "method_not_allowed");

    let off = World::with_config(config_with(&[("ADMIN_KEYS", "")]));
    off.admin_get("/admin/health").assert_error(403, "admin_disabled");
}

#[test]
fn an_admin_key_is_not_a_gateway_key_and_cannot_be_one() {
    let w = World::new();
    w.upstream_ok();
    w.chat_as(ADMIN_KEY, &body_with("x"), &[]).assert_error(401, "invalid_api_key");
    let same = format!(r#"{{"{KEY_A}":"ops"}}"#);
    let keys = format!(r#"{{"{KEY_A}":"tenant-a"}}"#);
    let config = llm_edge_cache::config::Config::from_vars(&llm_edge_cache::testing::MapVars::new(&[
        ("GATEWAY_KEYS", &keys),
        ("ADMIN_KEYS", &same),
    ]))
    .expect("serves");
    assert!(!config.admin_enabled(), "an admin key that is also a gateway key turns the admin surface off");
    assert!(config.problems.iter().any(|p| p.contains("ADMIN_KEYS")), "{:?}", config.problems);
    let short = llm_edge_cache::config::Config::from_vars(&llm_edge_cache::testing::MapVars::new(&[
        ("GATEWAY_KEYS", &keys),
        ("ADMIN_KEYS", r#"{"short-admin":"ops"}"#),
    ]))
    .expect("serves");
    assert!(!short.admin_enabled(), "admin keys are at least 16 characters");
}

#[test]
fn purge_deletes_the_entry_from_both_tiers_and_writes_an_audit_line() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("purge me");
    let other = body_with("keep me");
    for b in [&body, &other] {
        w.chat(b, &[]);
        w.chat(b, &[("x-cache-namespace", "ns1")]);
    }
    w.host.run_background();
    let key = key_for("tenant-a", &body);
    assert!(w.host.kv_raw(key.as_str()).is_some() && w.upstash.raw(&redis_key(&key)).is_some());

    let r = w.admin_post("/admin/cache/purge", ADMIN_KEY, &purge_body("tenant-a", "purge me", None));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json(), json!({"purged": key.digest_hex(), "tiers": {"edge_kv": "deleted", "redis": "deleted"}}));
    assert!(w.host.kv_raw(key.as_str()).is_none() && w.upstash.raw(&redis_key(&key)).is_none());
    let miss = w.chat(&body, &[("cache-control", "only-if-cached")]);
    miss.assert_error(504, "cache_miss");
    for (b, ns) in [(&other, None), (&body, Some("ns1")), (&other, Some("ns1"))] {
        let headers: Vec<(&str, &str)> =
            ns.map(|n| ("x-cache-namespace", n)).into_iter().chain([("cache-control", "only-if-cached")]).collect();
        assert_eq!(w.chat(b, &headers).header("x-cache"), Some("HIT"), "other entries stay");
    }
    let audit: Vec<Value> = w
        .host
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["event"] == "admin_audit")
        .collect();
    assert_eq!(audit.len(), 1, "one audit line per change: {audit:?}");
    assert_eq!(audit[0]["admin"], "ops");
    assert_eq!(audit[0]["action"], "cache_purge");
    assert_eq!(audit[0]["tenant"], "tenant-a");
    assert_eq!(audit[0]["at_ms"], T0);
    assert!(!audit[0].to_string().contains(ADMIN_KEY));

    let again = w.admin_post("/admin/cache/purge", ADMIN_KEY, &purge_body("tenant-a", "purge me", None));
    assert_eq!(again.json()["tiers"]["redis"], "absent");
    let ns = w.admin_post("/admin/cache/purge", ADMIN_KEY, &purge_body("tenant-a", "purge me", Some("ns1")));
    assert_eq!(ns.json()["tiers"]["redis"], "deleted", "a namespace names its own entry");
}

#[test]
fn purge_refuses_what_names_no_entry() {
    let w = World::new();
    let post = |b: &str| w.admin_post("/admin/cache/purge", ADMIN_KEY, b);
    post(&body_with("no tenant")).assert_error(400, "missing_required_parameter");
    post(&purge_body("tenant-z", "x", None)).assert_error(400, "invalid_value");
    post(&purge_body("tenant-a", "x", Some("bad namespace!"))).assert_error(400, "invalid_cache_namespace");
    post(r#"{"tenant":"tenant-a","model":"m"}"#).assert_error(400, "missing_required_parameter");
    post("not json").assert_error(400, "invalid_json");
}

#[test]
fn a_new_cache_generation_retires_every_entry() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("generations");
    w.chat(&body, &[]);
    w.host.run_background();
    assert_eq!(w.chat(&body, &[]).header("x-cache"), Some("HIT"));

    // The same stores, a new generation: nothing old answers, and the new entries are separate.
    let next = World {
        host: w.host.clone(),
        config: config_with(&[("CACHE_GENERATION", "2026-12-01")]),
        upstash: w.upstash.clone(),
    };
    let r = next.chat(&body, &[]);
    assert_eq!(r.header("x-cache"), Some("MISS"));
    next.host.run_background();
    assert_eq!(next.chat(&body, &[]).header("x-cache"), Some("HIT"));
    assert_eq!(w.upstream_calls(), 2);

    let plain =
        CacheKey::chat("tenant-a", "", &llm_edge_cache::api::chat::ChatRequest::parse(body.as_bytes()).expect("valid"));
    let scope = KeyScope { generation: "2026-12-01", tenant: "tenant-a", namespace: "" };
    let generational =
        CacheKey::chat_in(&scope, &llm_edge_cache::api::chat::ChatRequest::parse(body.as_bytes()).expect("valid"));
    assert_ne!(plain, generational);
    assert!(next.host.kv_raw(generational.as_str()).is_some());
}

#[test]
fn every_redis_key_starts_with_the_deployment_prefix() {
    use llm_edge_cache::testing::Scripted;
    let w = World::with_config(config_with(&[
        ("DEPLOYMENT_PREFIX", "team-blue"),
        ("MAX_ENTRY_BYTES", "2048"),
        (
            "ROUTES",
            &json!({"*": [{"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY}]}).to_string(),
        ),
    ]));
    let n = std::cell::Cell::new(0);
    w.host.route(PRIMARY, move |_| {
        n.set(n.get() + 1);
        match n.get() {
            1 => ok("primary"),
            2 => Scripted::json(
                200,
                &json!({"choices": [{"message": {"content": "x".repeat(4096)}, "finish_reason": "stop"}]}),
            ),
            _ => Scripted::json(429, &json!({"error": {"message": "slow down"}})),
        }
    });
    w.chat(&body_with("entry"), &[]);
    w.chat(&body_with("too large: counted"), &[]);
    w.chat(&body_with("rate limited: health shared"), &[]);
    w.host.run_background();
    let keys = w.upstash.keys();
    assert!(keys.len() >= 3, "an entry, a counter and health marks: {keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("team-blue:")), "{keys:?}");
    let key = key_for("tenant-a", &body_with("entry"));
    assert!(keys.contains(&format!("team-blue:{}", key.digest_hex())), "{keys:?}");
    assert!(keys.contains(&"team-blue:count:entry_too_large".to_owned()), "{keys:?}");
    assert!(keys.contains(&"team-blue:health:primary:marks".to_owned()), "{keys:?}");
}
