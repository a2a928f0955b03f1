//! Per-tenant guard rails (`TENANTS`): configuration problems named without values, the sliding
//! window's arithmetic told the time, OpenAI's rate-limit headers, 429s with `Retry-After`,
//! `max_tokens` clamped or refused, `max_input_tokens`, the model allow-list, cache hits not
//! counted unless asked, tokens counted from the provider's usage (streams too), fail open and
//! fail closed, a refused tenant remembered without a Redis call, and EVALSHA falling back to
//! EVAL on NOSCRIPT.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use llm_edge_cache::config::Config;
use llm_edge_cache::limits::{duration, Counts, Position, WINDOW_MS};
use llm_edge_cache::ports::Clock;
use llm_edge_cache::testing::{MapVars, Scripted};
use serde_json::json;
use support::*;

fn tenants(policy: serde_json::Value) -> World {
    let w = World::with_config(config_with(&[("TENANTS", &policy.to_string())]));
    w.upstream_ok();
    w
}

fn scripts_run(w: &World) -> usize {
    w.upstash.commands_run().iter().filter(|c| *c == "EVALSHA" || *c == "EVAL").count()
}

#[test]
fn every_bad_tenants_value_is_reported_by_name_without_its_value() {
    let keys = format!(r#"{{"{KEY_A}":"tenant-a","{KEY_B}":"tenant-b"}}"#);
    let raw = json!({
        "tenant-a": {"requests_per_minute": "sk-SECRET-ONE", "tokens_per_minute": 0},
        "tenant-b": {"max_tokens_policy": "sk-SECRET-TWO", "models": "sk-SECRET-THREE"},
        "ghost": {"requests_per_minute": 5},
        "*": {"bogus_field": 1, "fail_closed": "sk-SECRET-FOUR"},
        "sk-SECRET-FIVE!": {"requests_per_minute": 5},
    })
    .to_string();
    let config = Config::from_vars(&MapVars::new(&[
        ("GATEWAY_KEYS", &keys),
        ("TENANTS", &raw),
        ("DISABLED_TARGETS", "sk-SECRET-SIX"),
    ]))
    .expect("a bad TENANTS is not fatal");
    let all = config.problems.join("\n");
    assert!(!all.contains("SECRET"), "a value was echoed: {all}");
    for expected in [
        "TENANTS: 'tenant-a' is dropped: 'requests_per_minute' must be a whole number",
        "'tokens_per_minute' must be a whole number from 1",
        "TENANTS: 'tenant-b' is dropped: 'max_tokens_policy' must be \"clamp\" or \"refuse\"",
        "'models' must be a list of model names",
        "'max_tokens_policy' needs 'max_tokens_cap'",
        "TENANTS: 'ghost' is dropped: it names no tenant of GATEWAY_KEYS",
        "TENANTS: '*' is dropped: unknown field 'bogus_field'; 'fail_closed' must be true or false",
        "TENANTS: 1 entry(ies) dropped",
        "DISABLED_TARGETS: 1 id(s) name no target of ROUTES",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    // Dropped entries give no guard rails.
    assert_eq!(config.tenant_policies.policy("tenant-a").requests_per_minute, None);
    let unreadable =
        Config::from_vars(&MapVars::new(&[("GATEWAY_KEYS", &keys), ("TENANTS", "{\"sk-SECRET\": ")])).expect("serves");
    assert!(unreadable.problems.iter().any(|p| p.starts_with("TENANTS must be a JSON object")));
    assert!(!unreadable.problems.join(" ").contains("SECRET"));
    // Limits without Redis are reported.
    let no_redis =
        Config::from_vars(&MapVars::new(&[("GATEWAY_KEYS", &keys), ("TENANTS", r#"{"*":{"requests_per_minute":3}}"#)]))
            .expect("serves");
    assert!(no_redis.problems.iter().any(|p| p.starts_with("TENANTS sets rate limits")), "{:?}", no_redis.problems);
}

#[test]
fn the_sliding_window_is_arithmetic_told_the_time() {
    let start = 1_767_225_600_000; // a window's start
    let at = Position::at(start + 15_000);
    assert_eq!((at.window, at.elapsed_ms), (start / WINDOW_MS, 15_000));
    assert_eq!(at.previous_weight_ppm(), 750_000);
    let counts = Counts { current: 2, previous: 4 };
    assert_eq!(counts.used(at), 5, "3 of the previous 4 still inside, plus 2");
    assert_eq!(counts.wait_ms(at, 10, 1), Some(0));
    // Limit 5, one more: needs previous×(W−e)/W ≤ 2 → e ≥ 30 s, 15 s from now.
    assert_eq!(counts.wait_ms(at, 5, 1), Some(15_000));
    // This window alone is full: wait into the next one until enough of it slid out.
    let full = Counts { current: 5, previous: 0 };
    assert_eq!(full.wait_ms(at, 5, 1), Some(45_000 + 12_000));
    assert_eq!(full.wait_ms(at, 5, 6), None, "more than the limit never fits");
    assert_eq!(full.reset_ms(at), 45_000 + 60_000);
    assert_eq!(Counts { current: 0, previous: 3 }.reset_ms(at), 45_000);
    assert_eq!(Counts::default().reset_ms(at), 0);
    for (ms, text) in [(0, "0s"), (20, "20ms"), (1000, "1s"), (1500, "1.5s"), (360_000, "6m0s"), (3_723_000, "1h2m3s")]
    {
        assert_eq!(duration(ms), text);
    }
}

#[test]
fn requests_carry_openai_headers_and_the_one_over_the_limit_gets_a_429_with_retry_after() {
    let w = tenants(json!({"tenant-a": {"requests_per_minute": 2}}));
    let first = w.chat(&body_with("one"), &[]);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(first.header("x-ratelimit-remaining-requests"), Some("1"));
    assert_eq!(first.header("x-ratelimit-reset-requests"), Some("2m0s"));
    assert_eq!(first.header("x-ratelimit-limit-tokens"), None, "no token limit, no token headers");
    w.host.advance(10_000);
    assert_eq!(w.chat(&body_with("two"), &[]).header("x-ratelimit-remaining-requests"), Some("0"));
    let refused = w.chat(&body_with("three"), &[]);
    refused.assert_error(429, "rate_limit_exceeded");
    assert_eq!(refused.json()["error"]["type"], "requests");
    assert_eq!(
        refused.header("retry-after"),
        Some("80"),
        "50 s to the window's end, then 30 s for half of this one to slide out"
    );
    assert_eq!(refused.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(w.upstream_calls(), 2);
    // Another tenant has its own counters; another isolate shares tenant A's.
    assert_eq!(w.chat_as(KEY_B, &body_with("b"), &[]).status, 200);
    w.another_isolate().chat(&body_with("four"), &[]).assert_error(429, "rate_limit_exceeded");
}

#[test]
fn cache_hits_cost_nothing_unless_the_policy_counts_them() {
    let w = tenants(
        json!({"tenant-a": {"requests_per_minute": 1}, "tenant-b": {"requests_per_minute": 1, "count_cache_hits": true}}),
    );
    let body = body_with("same");
    assert_eq!(w.chat(&body, &[]).status, 200);
    w.host.run_background();
    let before = scripts_run(&w);
    for _ in 0..3 {
        let hit = w.chat(&body, &[]);
        assert_eq!((hit.status, hit.header("x-cache")), (200, Some("HIT")));
    }
    assert_eq!(scripts_run(&w), before, "a hit makes no limit check");
    assert_eq!(w.chat_as(KEY_B, &body, &[]).status, 200);
    w.host.run_background();
    let hit = w.chat_as(KEY_B, &body, &[]);
    hit.assert_error(429, "rate_limit_exceeded");
}

#[test]
fn tokens_are_counted_from_the_providers_usage_and_refused_past_the_limit() {
    // ok.json reports 19 tokens; each request is estimated at its input (about 15) tokens.
    let w = tenants(json!({"tenant-a": {"tokens_per_minute": 40}}));
    let first = w.chat(&body_with("a"), &[]);
    assert_eq!(first.header("x-ratelimit-limit-tokens"), Some("40"));
    assert_eq!(first.header("x-ratelimit-remaining-tokens"), Some("40"));
    w.host.run_background();
    let key = format!("llmc1:limit:tenant-a:tokens:{}", T0 / WINDOW_MS);
    assert_eq!(w.upstash.raw(&key).as_deref(), Some("19"));
    assert_eq!(w.chat(&body_with("b"), &[]).header("x-ratelimit-remaining-tokens"), Some("21"));
    w.host.run_background();
    let refused = w.chat(&body_with("c"), &[]);
    refused.assert_error(429, "rate_limit_exceeded");
    assert_eq!(refused.json()["error"]["type"], "tokens");
    assert!(refused.header("retry-after").is_some());
}

#[test]
fn a_streams_tokens_come_from_the_assembled_answer_even_when_the_client_did_not_ask_for_usage() {
    let w = tenants(json!({"tenant-a": {"tokens_per_minute": 1000}}));
    w.upstream(|req| {
        let sent: serde_json::Value = serde_json::from_slice(req.body()).expect("json");
        assert_eq!(sent["stream_options"]["include_usage"], true, "usage is asked upstream");
        let sse = fixture("openai/stream_usage.sse");
        Scripted::Stream { status: 200, chunks: vec![Ok(Bytes::from(sse))] }
    });
    // no-store: nothing is assembled for the cache, yet the tokens are counted.
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "s"}]});
    let streamed = w.chat(&body.to_string(), &[("cache-control", "no-store")]);
    assert_eq!(streamed.status, 200);
    assert!(!String::from_utf8_lossy(&streamed.body).contains("\"usage\""), "the client is not shown usage");
    w.host.run_background();
    let key = format!("llmc1:limit:tenant-a:tokens:{}", T0 / WINDOW_MS);
    assert_eq!(w.upstash.raw(&key).as_deref(), Some("19"));
}

#[test]
fn max_tokens_over_the_cap_is_clamped_and_said_or_refused() {
    let w = tenants(json!({
        "tenant-a": {"max_tokens_cap": 100},
        "tenant-b": {"max_tokens_cap": 100, "max_tokens_policy": "refuse"},
    }));
    let asks = |n: u64| {
        json!({"model": "gpt-4o-mini", "max_tokens": n, "messages": [{"role": "user", "content": "x"}]}).to_string()
    };
    let clamped = w.chat(&asks(500), &[]);
    assert_eq!((clamped.status, clamped.header("x-max-tokens-clamped")), (200, Some("100")));
    let sent: serde_json::Value = serde_json::from_slice(w.host.sent_to(UPSTREAM)[0].body()).expect("json");
    assert_eq!(sent["max_tokens"], 100);
    let within = w.chat(&asks(50), &[]);
    assert_eq!((within.status, within.header("x-max-tokens-clamped")), (200, None));
    let refused = w.chat_as(KEY_B, &asks(500), &[]);
    refused.assert_error(400, "max_tokens_exceeded");
    assert_eq!(refused.json()["error"]["param"], "max_tokens");
    assert!(refused.json()["error"]["message"].as_str().unwrap_or("").contains("100"));
}

#[test]
fn too_many_input_tokens_are_refused_naming_the_limit() {
    let w = tenants(json!({"*": {"max_input_tokens": 50}}));
    assert_eq!(w.chat(&body_with("short"), &[]).status, 200);
    let long = w.chat(&body_with(&"word ".repeat(100)), &[]);
    long.assert_error(400, "input_tokens_exceeded");
    assert!(long.json()["error"]["message"].as_str().unwrap_or("").contains("50 input tokens"));
    assert_eq!(w.upstream_calls(), 1);
}

#[test]
fn a_model_outside_the_allow_list_is_absent_for_that_tenant() {
    let w = tenants(json!({"tenant-a": {"models": ["gpt-4o"]}}));
    let refused = w.chat(&body_with("x"), &[]);
    refused.assert_error(404, "model_not_found");
    let absent = World::with_config(config_with(&[(
        "ROUTES",
        &routes(json!([{"provider": "openai", "model": "gpt-4o", "key": "OPENAI_API_KEY", "base_url": UPSTREAM}])),
    )]));
    let missing = absent.chat(&body_with("x"), &[]);
    assert_eq!(refused.body, missing.body, "the same answer as a model the gateway does not serve");
    assert_eq!(w.chat_as(KEY_B, &body_with("x"), &[]).status, 200, "tenant B may");
}

#[test]
fn redis_down_fails_open_by_default_and_closed_when_the_tenant_says_so() {
    let w = tenants(
        json!({"tenant-a": {"requests_per_minute": 5}, "tenant-b": {"requests_per_minute": 5, "fail_closed": true}}),
    );
    w.upstash.set_down(true);
    let open = w.chat(&body_with("x"), &[]);
    assert_eq!(open.status, 200);
    assert_eq!(open.header("x-ratelimit-limit-requests"), None);
    assert!(w.host.logs().iter().any(|l| l.contains("\"limit_check_failed\"")));
    w.chat_as(KEY_B, &body_with("y"), &[]).assert_error(503, "rate_limit_unavailable");
    // A slow Redis is bounded by REDIS_TIMEOUT_MS (300 ms) as well.
    w.upstash.set_down(false);
    w.upstash.set_delay(5_000);
    let started = w.host.now_ms();
    assert_eq!(w.chat(&body_with("z"), &[("cache-control", "no-store")]).status, 200);
    assert!(w.host.now_ms() - started < 2_000, "the request waited {} ms", w.host.now_ms() - started);
    w.upstash.set_delay(0);
    let health = w.admin_get("/admin/health").json();
    assert_eq!(health["limits"]["failed_open_here"], 3, "{health}");
}

#[test]
fn a_refused_tenant_is_refused_from_memory_until_its_window_frees_up() {
    let w = tenants(json!({"tenant-a": {"requests_per_minute": 1}}));
    assert_eq!(w.chat(&body_with("one"), &[]).status, 200);
    w.chat(&body_with("two"), &[]).assert_error(429, "rate_limit_exceeded");
    let redis_calls = w.host.sent_to(UPSTASH).len();
    for i in 0..5 {
        w.host.advance(1_000);
        let again = w.chat(&body_with(&format!("again {i}")), &[("cache-control", "no-store")]);
        again.assert_error(429, "rate_limit_exceeded");
        assert!(again.header("retry-after").is_some());
    }
    assert_eq!(w.host.sent_to(UPSTASH).len(), redis_calls, "no Redis call for a tenant known to be refused");
    // Once its window has moved on far enough, it is asked again and let through.
    w.host.advance(2 * WINDOW_MS);
    assert_eq!(w.chat(&body_with("later"), &[]).status, 200);
}

#[test]
fn the_script_is_run_by_its_sha_and_loaded_with_eval_after_noscript() {
    let w = tenants(json!({"tenant-a": {"requests_per_minute": 10}}));
    for i in 0..3 {
        w.chat(&body_with(&format!("q{i}")), &[]);
    }
    let scripts: Vec<String> = w.upstash.commands_run().into_iter().filter(|c| c.starts_with("EVAL")).collect();
    assert_eq!(scripts, ["EVALSHA", "EVAL", "EVALSHA", "EVALSHA"]);
    w.upstash.flush_scripts();
    assert_eq!(w.chat(&body_with("after a restart"), &[]).header("x-ratelimit-remaining-requests"), Some("6"));
}

#[test]
fn a_single_flight_follower_is_not_charged_tokens_nor_a_request() {
    use futures_util::future::join_all;
    let w = World::with_config(config_with(&[(
        "TENANTS",
        &json!({"tenant-a": {"requests_per_minute": 10, "tokens_per_minute": 1000}}).to_string(),
    )]));
    let body = fixture("openai/ok.json");
    w.upstream(move |_| Scripted::Delay {
        ms: 500,
        then: Box::new(Scripted::Respond {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body.clone()),
        }),
    });
    let request = || {
        http::Request::post("https://gw.test/v1/chat/completions")
            .header("authorization", format!("Bearer {KEY_A}"))
            .header("content-type", "application/json")
            .body(llm_edge_cache::ports::Body::Full(Bytes::from(body_with("together"))))
            .expect("request")
    };
    let replies = w.host.block_on_with_background(join_all((0..3).map(|_| async {
        let response = llm_edge_cache::gateway::handle(&w.host, Ok(&w.config), request()).await;
        response.status().as_u16()
    })));
    assert_eq!(replies, [200, 200, 200]);
    assert_eq!(w.upstream_calls(), 1, "one provider call");
    let window = T0 / WINDOW_MS;
    assert_eq!(
        w.upstash.raw(&format!("llmc1:limit:tenant-a:tokens:{window}")).as_deref(),
        Some("19"),
        "one answer's usage"
    );
    assert_eq!(
        w.upstash.raw(&format!("llmc1:limit:tenant-a:requests:{window}")).as_deref(),
        Some("1"),
        "one call counted"
    );
}
