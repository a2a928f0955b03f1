//! The layered lookup end to end on the in-memory host: tiers, backfill, fail-open, stale-if-error,
//! request controls, tenant isolation and the provider error mapping (streams: streams_gateway.rs).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use llm_edge_cache::cache::entry::Entry;
use llm_edge_cache::ports::Body;
use llm_edge_cache::testing::Scripted;
use support::*;

#[test]
fn miss_then_hit_calls_the_provider_once() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("hello");
    let first = w.chat(&body, &[]);
    assert_eq!(first.status, 200);
    assert_eq!(first.body, Bytes::from(fixture("openai/ok.json")), "the provider's body, byte for byte");
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(first.header("x-cache-tier"), Some("origin"));
    assert_eq!(first.header("cache-status"), Some("redis; fwd=uri-miss; stored, edge-kv; fwd=uri-miss; stored"));
    assert_eq!(first.header("x-provider"), Some("openai"));
    assert!(first.header("x-request-id").is_some_and(|id| id.starts_with("req_")));
    assert!(first.header("server-timing").is_some_and(|t| t.contains("origin;dur=") && t.contains("total;dur=")));
    // The answer went out before the writes: nothing is stored yet.
    let key = key_for("tenant-a", &body);
    assert!(w.host.kv_raw(key.as_str()).is_none() && no_entries(&w));
    w.host.run_background();
    assert!(w.host.kv_raw(key.as_str()).is_some() && w.upstash.raw(&redis_key(&key)).is_some());

    w.host.advance(5_000);
    let second = w.chat(&body, &[]);
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.header("x-cache-tier"), Some("edge-kv"));
    assert_eq!(second.header("age"), Some("5"));
    assert_eq!(second.header("cache-status"), Some("edge-kv; hit; ttl=604795"));
    assert_eq!(w.upstream_calls(), 1);
}

#[test]
fn the_provider_gets_the_request_with_the_gateway_key_not_the_clients() {
    let w = World::new();
    w.upstream_ok();
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"user":"u1","x_custom":{"k":1}}"#;
    assert_eq!(w.chat(body, &[]).status, 200);
    let sent = &w.host.sent_to(UPSTREAM)[0];
    assert_eq!(sent.uri().to_string(), format!("{UPSTREAM}/chat/completions"));
    assert_eq!(sent.headers()["authorization"], "Bearer sk-upstream-secret");
    let forwarded: serde_json::Value = serde_json::from_slice(sent.body()).expect("json");
    let original: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(forwarded, original, "every field forwarded unchanged");
}

#[test]
fn tier_two_hit_backfills_tier_one() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("from redis");
    let key = key_for("tenant-a", &body);
    let entry = Entry::new(T0 - 10_000, 3_600, 60, "openai", "seeded", br#"{"choices":[],"seeded":true}"#.to_vec());
    use base64::Engine as _;
    w.upstash.insert_raw(key.as_str(), &base64::engine::general_purpose::STANDARD.encode(entry.encode()));

    let r = w.chat(&body, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cache"), Some("HIT"));
    assert_eq!(r.header("x-cache-tier"), Some("redis"));
    assert_eq!(r.header("age"), Some("10"));
    assert_eq!(r.header("cache-status"), Some("redis; hit; ttl=3590, edge-kv; fwd=uri-miss; stored"));
    assert_eq!(r.body, Bytes::from_static(br#"{"choices":[],"seeded":true}"#));
    assert!(w.host.kv_raw(key.as_str()).is_none(), "backfill happens after the response");
    w.host.run_background();
    let copied = Entry::decode(&w.host.kv_raw(key.as_str()).expect("backfilled")).expect("entry");
    assert_eq!(copied, entry, "the same entry, times included");
    assert_eq!(w.host.kv_ttl(key.as_str()), Some(3_650), "store TTL = remaining life incl. stale window");

    let again = w.chat(&body, &[]);
    assert_eq!(again.header("x-cache-tier"), Some("edge-kv"));
    assert_eq!(w.upstream_calls(), 0);
}

#[test]
fn a_failing_tier_one_is_a_miss_not_an_error() {
    let w = World::new();
    w.upstream_ok();
    w.host.set_kv_failing(true);
    let r = w.chat(&body_with("kv down"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cache"), Some("MISS"));
    assert!(r.header("cache-status").is_some_and(|s| s.contains("edge-kv; fwd=miss; detail=unavailable")));
    let logs = w.host.logs();
    assert!(
        logs.iter().any(|l| l.contains("\"event\":\"store_error\"") && l.contains("\"tier\":\"edge-kv\"")),
        "{logs:?}"
    );
}

#[test]
fn a_slow_tier_one_costs_at_most_its_timeout() {
    let w = World::new();
    w.upstream_ok();
    w.host.set_kv_delay(30_000);
    let r = w.chat(&body_with("kv slow"), &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("cache-status").is_some_and(|s| s.contains("edge-kv; fwd=miss; detail=timeout")));
    let timing = r.header("server-timing").expect("timing");
    assert!(timing.contains("kv;dur=200"), "{timing}");
}

#[test]
fn garbage_entries_in_either_tier_are_misses() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("garbage");
    let key = key_for("tenant-a", &body);
    w.host.kv_insert(key.as_str(), b"\x00\x01garbage".to_vec());
    w.upstash.insert_raw(key.as_str(), "!!not base64!!");
    let r = w.chat(&body, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cache"), Some("MISS"));
    assert_eq!(
        r.header("cache-status"),
        Some("redis; fwd=miss; detail=garbage; stored, edge-kv; fwd=miss; detail=garbage; stored")
    );
    w.host.run_background();
    assert!(Entry::decode(&w.host.kv_raw(key.as_str()).expect("rewritten")).is_ok(), "garbage replaced");
}

#[test]
fn redis_down_is_a_miss_and_the_answer_still_comes() {
    let w = World::new();
    w.upstream_ok();
    w.upstash.set_down(true);
    let r = w.chat(&body_with("redis down"), &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("cache-status").is_some_and(|s| s.starts_with("redis; fwd=miss; detail=unavailable")));
    w.host.run_background();
    assert!(w.host.logs().iter().any(|l| l.contains("\"tier\":\"redis\"") && l.contains("\"op\":\"put\"")));
}

#[test]
fn stale_entry_answers_when_the_provider_fails() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("stale please");
    assert_eq!(w.chat(&body, &[]).status, 200);
    w.host.run_background();
    // Past freshness (7 days), inside the stale window (30 days more).
    w.host.advance(8 * 86_400_000);
    w.upstream(|_| Scripted::json(500, &serde_json::from_str(&fixture("openai/error_500.json")).expect("json")));
    let r = w.chat(&body, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cache"), Some("STALE"));
    assert_eq!(r.header("x-cache-tier"), Some("edge-kv"));
    assert_eq!(r.header("x-cache-stale-reason"), Some("upstream_server_error"));
    assert_eq!(r.body, Bytes::from(fixture("openai/ok.json")));
    assert!(r.header("cache-status").is_some_and(|s| s.contains("edge-kv; hit; ttl=-86400; detail=stale-if-error")));
    assert_eq!(w.upstream_calls(), 2);

    // A client that set max-age accepts nothing that old, even on error.
    let strict = w.chat(&body, &[("cache-control", "max-age=60")]);
    strict.assert_error(502, "upstream_server_error");

    // Past the stale window nothing is served.
    w.host.advance(40 * 86_400_000);
    w.chat(&body, &[]).assert_error(502, "upstream_server_error");
}

#[test]
fn a_fresh_entry_is_refreshed_while_stale_serves_only_on_error() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("refresh");
    w.chat(&body, &[]);
    w.host.run_background();
    w.host.advance(8 * 86_400_000);
    let r = w.chat(&body, &[]);
    assert_eq!(r.header("x-cache"), Some("MISS"), "stale entries do not answer while the provider can");
    assert_eq!(w.upstream_calls(), 2);
}

#[test]
fn no_store_neither_reads_nor_writes() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("no-store");
    w.chat(&body, &[]);
    w.host.run_background();
    let keys_before = w.host.kv_keys().len();
    let r = w.chat(&body, &[("cache-control", "no-store")]);
    assert_eq!(r.header("x-cache"), Some("BYPASS"));
    assert_eq!(r.header("cache-status"), Some("redis; fwd=request, edge-kv; fwd=request"));
    assert_eq!(w.upstream_calls(), 2);
    let other = w.chat(&body_with("never stored"), &[("cache-control", "no-store")]);
    assert_eq!(other.status, 200);
    w.host.run_background();
    assert_eq!(w.host.kv_keys().len(), keys_before, "nothing written");
    assert!(w.upstash.raw(&redis_key(&key_for("tenant-a", &body_with("never stored")))).is_none());
}

#[test]
fn no_cache_skips_reads_and_refreshes_the_entry() {
    let w = World::new();
    let calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let c = calls.clone();
    w.upstream(move |_| {
        c.set(c.get() + 1);
        Scripted::json(200, &serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], "call": c.get()}))
    });
    let body = body_with("no-cache");
    w.chat(&body, &[]);
    w.host.run_background();
    let r = w.chat(&body, &[("cache-control", "no-cache")]);
    assert_eq!(r.header("x-cache"), Some("BYPASS"));
    assert_eq!(r.header("cache-status"), Some("redis; fwd=request; stored, edge-kv; fwd=request; stored"));
    assert_eq!(r.json()["call"], 2);
    w.host.run_background();
    let hit = w.chat(&body, &[]);
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(hit.json()["call"], 2, "the refreshed answer replaced the old one");
}

#[test]
fn only_if_cached_is_504_on_a_miss_and_a_hit_otherwise() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("oic");
    let miss = w.chat(&body, &[("cache-control", "only-if-cached")]);
    miss.assert_error(504, "cache_miss");
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    assert_eq!(w.upstream_calls(), 0);
    w.chat(&body, &[]);
    w.host.run_background();
    let hit = w.chat(&body, &[("cache-control", "only-if-cached")]);
    assert_eq!((hit.status, hit.header("x-cache")), (200, Some("HIT")));
}

#[test]
fn max_age_refuses_older_entries() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("max-age");
    w.chat(&body, &[]);
    w.host.run_background();
    w.host.advance(120_000);
    let r = w.chat(&body, &[("cache-control", "max-age=60")]);
    assert_eq!(r.header("x-cache"), Some("MISS"));
    assert!(r.header("cache-status").is_some_and(|s| s.contains("edge-kv; fwd=stale")));
    assert_eq!(w.upstream_calls(), 2);
    w.host.run_background();
    let ok = w.chat(&body, &[("cache-control", "max-age=60")]);
    assert_eq!(ok.header("x-cache"), Some("HIT"));
}

#[test]
fn tenants_never_share_entries_and_namespaces_split_them() {
    let w = World::new();
    w.upstream_ok();
    let body = body_with("shared body");
    w.chat_as(KEY_A, &body, &[]);
    w.host.run_background();
    assert_eq!(w.chat_as(KEY_B, &body, &[]).header("x-cache"), Some("MISS"));
    w.host.run_background();
    assert_eq!(w.chat_as(KEY_A, &body, &[("x-cache-namespace", "exp-1")]).header("x-cache"), Some("MISS"));
    w.host.run_background();
    assert_eq!(w.chat_as(KEY_A, &body, &[]).header("x-cache"), Some("HIT"));
    assert_eq!(w.chat_as(KEY_B, &body, &[]).header("x-cache"), Some("HIT"));
    assert_eq!(w.upstream_calls(), 3);
}

#[test]
fn only_complete_successful_answers_are_stored() {
    let cases: Vec<(Scripted, u16, &str)> = vec![
        (Scripted::json(500, &serde_json::json!({"error": {"message": "boom"}})), 502, "upstream_server_error"),
        (
            Scripted::Respond { status: 200, headers: vec![], body: Bytes::from(fixture("openai/malformed.json")) },
            502,
            "upstream_malformed_response",
        ),
        (
            Scripted::Stream { status: 200, chunks: vec![Ok(Bytes::from("{\"choices\":")), Err("reset".into())] },
            502,
            "upstream_stream_error",
        ),
    ];
    for (i, (scripted, status, code)) in cases.into_iter().enumerate() {
        let w = World::new();
        let cell = std::cell::RefCell::new(Some(scripted));
        w.upstream(move |_| cell.borrow_mut().take().expect("one call"));
        w.chat(&body_with(&format!("bad {i}")), &[]).assert_error(status, code);
        w.host.run_background();
        assert!(w.host.kv_keys().is_empty() && no_entries(&w), "case {i}: nothing stored");
    }
}

#[test]
fn provider_errors_map_to_the_right_client_answer() {
    let f = |name: &str| serde_json::from_str::<serde_json::Value>(&fixture(name)).expect("json");
    let cases: Vec<(Scripted, u16, &str)> = vec![
        (Scripted::json(400, &f("openai/error_400.json")), 400, "upstream_rejected_request"),
        (Scripted::json(404, &f("openai/error_404_model.json")), 404, "upstream_rejected_request"),
        (Scripted::json(401, &f("openai/error_401.json")), 502, "upstream_auth_failed"),
        (Scripted::json(403, &serde_json::json!({"error": {"message": "no"}})), 502, "upstream_auth_failed"),
        (Scripted::json(500, &f("openai/error_500.json")), 502, "upstream_server_error"),
        (Scripted::json(529, &serde_json::json!({"error": {"message": "overloaded"}})), 502, "upstream_server_error"),
        (
            Scripted::Respond { status: 404, headers: vec![], body: Bytes::from("Not Found") },
            502,
            "upstream_server_error",
        ),
        (Scripted::Fail("connection refused".into()), 502, "upstream_unreachable"),
        (
            Scripted::Delay { ms: 200_000, then: Box::new(Scripted::json(200, &f("openai/ok.json"))) },
            504,
            "upstream_timeout",
        ),
    ];
    for (scripted, status, code) in cases {
        let w = World::new();
        let cell = std::cell::RefCell::new(Some(scripted));
        w.upstream(move |_| cell.borrow_mut().take().expect("one call"));
        let r = w.chat(&body_with("errors"), &[]);
        r.assert_error(status, code);
        let text = String::from_utf8_lossy(&r.body);
        assert!(
            !text.contains("sk-proj") && !text.contains("sk-upstream-secret") && !text.contains("upstream.test"),
            "{text}"
        );
    }
    // The client's own bad request keeps the provider's message and param.
    let w = World::new();
    w.upstream(move |_| Scripted::json(400, &f("openai/error_400.json")));
    let r = w.chat(&body_with("bad temp"), &[]);
    assert_eq!(r.json()["error"]["param"], "temperature");
    assert!(r.json()["error"]["message"].as_str().expect("message").contains("must be between 0 and 2"));
}

#[test]
fn rate_limits_say_when_to_retry() {
    let w = World::new();
    w.upstream(|_| Scripted::Respond {
        status: 429,
        headers: vec![("retry-after-ms".into(), "1500".into()), ("content-type".into(), "application/json".into())],
        body: Bytes::from(fixture("openai/error_429.json")),
    });
    let r = w.chat(&body_with("429"), &[]);
    r.assert_error(503, "upstream_rate_limited");
    assert_eq!(r.header("retry-after"), Some("2"));
}

#[test]
fn cors_headers_for_allowed_origins_only() {
    let w = World::new();
    w.upstream_ok();
    let allowed = w.chat(&body_with("cors"), &[("origin", "https://app.example")]);
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://app.example"));
    assert!(allowed.header("access-control-expose-headers").is_some_and(|h| h.contains("x-cache")));
    let other = w.chat(&body_with("cors"), &[("origin", "https://evil.example")]);
    assert_eq!(other.header("access-control-allow-origin"), None);

    let preflight = |origin: &str| {
        w.send(
            http::Request::builder()
                .method("OPTIONS")
                .uri("https://gw.test/v1/chat/completions")
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "authorization, content-type, x-stainless-os")
                .body(Body::empty())
                .expect("request"),
        )
    };
    let ok = preflight("https://app.example");
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(ok.header("access-control-allow-headers"), Some("authorization, content-type, x-stainless-os"));
    assert!(ok.header("access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    preflight("https://evil.example").assert_error(403, "cors_origin_not_allowed");
}

#[test]
fn models_and_healthz() {
    let w = World::new();
    let models = w.send(
        http::Request::get("https://gw.test/v1/models")
            .header("authorization", format!("Bearer {KEY_A}"))
            .body(Body::empty())
            .expect("request"),
    );
    assert_eq!(models.status, 200);
    let ids: Vec<String> = models.json()["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, ["gpt-4o-mini", "gpt-4o"]);

    // Public liveness: no store calls, no names, nothing else.
    let calls_before = w.host.sent_to(UPSTASH).len();
    let health = w.send(http::Request::get("https://gw.test/healthz").body(Body::empty()).expect("request"));
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
    assert_eq!(w.host.sent_to(UPSTASH).len(), calls_before, "liveness makes no store call");

    // The detailed view is behind an admin key.
    let v = w.admin_get("/admin/health").json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["tiers"]["edge_kv"]["state"], "ok");
    assert_eq!(v["tiers"]["redis"]["state"], "ok");
    assert_eq!(v["targets"][0]["id"], "openai");
    let text = v.to_string();
    for secret in [UPSTASH_TOKEN, "sk-upstream-secret", KEY_A, ADMIN_KEY, "upstash.test", "upstream.test"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    w.upstash.set_down(true);
    w.host.set_kv_failing(true);
    let degraded = w.admin_get("/admin/health").json();
    assert_eq!(degraded["status"], "degraded");
    assert_eq!(degraded["tiers"]["redis"]["state"], "down");
    assert_eq!(degraded["tiers"]["edge_kv"]["state"], "down");
    let still_alive = w.send(http::Request::get("https://gw.test/healthz").body(Body::empty()).expect("request"));
    assert_eq!((still_alive.status, still_alive.json()["status"].clone()), (200, "ok".into()));
}

#[test]
fn oversize_answers_are_served_but_not_stored() {
    let w = World::with_config(config_with(&[("MAX_ENTRY_BYTES", "2048")]));
    let big = serde_json::json!({"choices": [{"message": {"content": "x".repeat(4096)}, "finish_reason": "stop"}]});
    w.upstream(move |_| Scripted::json(200, &big));
    let r = w.chat(&body_with("big"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-status"), Some("redis; fwd=uri-miss, edge-kv; fwd=uri-miss"));
    w.host.run_background();
    assert!(w.host.kv_keys().is_empty());
    assert!(w.upstash.raw(&redis_key(&key_for("tenant-a", &body_with("big")))).is_none());
    assert!(w.host.logs().iter().any(|l| l.contains("entry_too_large")));
    let health = w.admin_get("/admin/health").json();
    assert_eq!(health["not_stored"]["entry_too_large"], 1, "counted, not failed: {health}");
}

/// Spin's default store takes values up to 1 MiB: a larger entry skips tier 1 (counted) and
/// still goes to tier 2, which then serves it.
#[test]
fn an_entry_over_the_kv_limit_skips_tier_one_and_is_counted() {
    use llm_edge_cache::ports::KvLimits;
    let w = World::new();
    w.host.set_kv_limits(KvLimits { max_key_bytes: 256, max_value_bytes: 1 << 20, min_ttl_seconds: None });
    let big =
        serde_json::json!({"choices": [{"message": {"content": "y".repeat(1_200_000)}, "finish_reason": "stop"}]});
    w.upstream(move |_| Scripted::json(200, &big));
    let body = body_with("over the kv limit");
    assert_eq!(w.chat(&body, &[]).status, 200);
    w.host.run_background();
    let key = key_for("tenant-a", &body);
    assert!(w.host.kv_raw(key.as_str()).is_none(), "not written to tier 1");
    assert!(w.upstash.raw(&redis_key(&key)).is_some(), "written to tier 2");
    assert!(w.host.logs().iter().any(|l| l.contains("\"kind\":\"too-large\"") && l.contains("edge-kv")));
    let hit = w.chat(&body, &[]);
    assert_eq!((hit.header("x-cache"), hit.header("x-cache-tier")), (Some("HIT"), Some("redis")));
    w.host.run_background();
    let health = w.admin_get("/admin/health").json();
    assert_eq!(
        health["not_stored"]["edge_kv_too_large"], 1,
        "counted once; hits do not retry a write that cannot fit: {health}"
    );
    assert_eq!(
        hit.header("cache-status"),
        Some("redis; hit; ttl=604800, edge-kv; fwd=uri-miss"),
        "no backfill promised"
    );
    assert_eq!(health["not_stored"]["entry_too_large"], 0);
}

#[test]
fn a_broken_configuration_names_the_problems_without_values() {
    use llm_edge_cache::config::Config;
    use llm_edge_cache::testing::{MapVars, MemHost};
    let err = Config::from_vars(&MapVars::new(&[
        ("GATEWAY_KEYS", "not json sk-secret-value"),
        ("KV_TIMEOUT_MS", "-5"),
        ("UPSTASH_REDIS_REST_URL", "ftp://x"),
    ]))
    .expect_err("invalid");
    let text = err.to_string();
    for name in ["GATEWAY_KEYS", "KV_TIMEOUT_MS", "UPSTASH_REDIS_REST_URL"] {
        assert!(text.contains(name), "{name} is named: {text}");
    }
    assert!(!text.contains("sk-secret-value") && !text.contains("ftp://") && !text.contains("-5"), "{text}");
    let host = MemHost::new(T0);
    let req = http::Request::post("https://gw.test/v1/chat/completions").body(Body::empty()).expect("request");
    let response = host.block_on(llm_edge_cache::gateway::handle(&host, Err(&err), req));
    assert_eq!(response.status(), 500);
    let health = http::Request::get("https://gw.test/healthz").body(Body::empty()).expect("request");
    let health = host.block_on(llm_edge_cache::gateway::handle(&host, Err(&err), health));
    assert_eq!(health.status(), 503);
    let body = host.block_on(health.into_body().collect(1 << 20)).expect("body");
    assert_eq!(&body[..], br#"{"status":"misconfigured"}"#, "liveness says nothing more to strangers");
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let config = config_with(&[]);
    let debug = format!("{config:?}");
    for secret in [KEY_A, KEY_B, "sk-upstream-secret", UPSTASH_TOKEN] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn an_expired_entry_on_a_store_without_ttl_is_deleted() {
    use llm_edge_cache::ports::KvLimits;
    let w = World::new();
    w.host.set_kv_limits(KvLimits { max_key_bytes: 256, max_value_bytes: 1 << 20, min_ttl_seconds: None });
    w.upstream_ok();
    let body = body_with("spin-like");
    let key = key_for("tenant-a", &body);
    w.chat(&body, &[]);
    w.host.run_background();
    assert_eq!(w.host.kv_ttl(key.as_str()), None, "no TTL sent to a store that has none");
    w.host.advance(40 * 86_400_000);
    w.upstash.set_down(true);
    w.upstream(|_| Scripted::Fail("down".into()));
    w.chat(&body, &[]).assert_error(502, "upstream_unreachable");
    w.host.run_background();
    assert!(w.host.kv_raw(key.as_str()).is_none(), "expired entry deleted");
}

/// Hosts that fetch variables ahead (Spin) fetch `VARIABLES` plus the keys `ROUTES` names:
/// reading any other name would silently see nothing there.
#[test]
fn configuration_reads_only_the_declared_variables() {
    use llm_edge_cache::config::{Config, VARIABLES};
    use std::cell::RefCell;
    struct Recording(RefCell<Vec<String>>, llm_edge_cache::testing::MapVars);
    impl llm_edge_cache::ports::Vars for Recording {
        fn var(&self, name: &str) -> Option<String> {
            self.0.borrow_mut().push(name.to_owned());
            self.1.var(name)
        }
    }
    let routes = r#"{"m": [{"provider": "anthropic", "model": "c", "key": "ANTHROPIC_API_KEY"}, {"provider": "gemini", "model": "g", "key": "GEMINI_API_KEY"}]}"#;
    let vars = Recording(
        RefCell::new(Vec::new()),
        llm_edge_cache::testing::MapVars::new(&[
            ("GATEWAY_KEYS", r#"{"sk-test-tenant-a":"a"}"#),
            ("ROUTES", routes),
            ("ANTHROPIC_API_KEY", "k1"),
            ("GEMINI_API_KEY", "k2"),
        ]),
    );
    Config::from_vars(&vars).expect("valid");
    let keys = Config::variables_for(routes);
    assert_eq!(keys, ["ANTHROPIC_API_KEY", "GEMINI_API_KEY"]);
    for name in vars.0.borrow().iter() {
        assert!(VARIABLES.contains(&name.as_str()) || keys.contains(name), "{name} is read but not declared");
    }
    // Without ROUTES the single target's variables are read instead.
    let single = Recording(
        RefCell::new(Vec::new()),
        llm_edge_cache::testing::MapVars::new(&[("GATEWAY_KEYS", r#"{"sk-test-tenant-a":"a"}"#)]),
    );
    Config::from_vars(&single).expect("valid");
    let read: Vec<String> = vars.0.borrow().iter().chain(single.0.borrow().iter()).cloned().collect();
    for name in VARIABLES {
        assert!(read.iter().any(|n| n == name), "{name} is declared but never read");
    }
}
