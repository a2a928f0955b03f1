//! Configuration never leaks and never takes everything down: a provider key pasted where its
//! variable's name belongs is never repeated (responses, the detailed health view, log lines),
//! serde's texts never quote a value, a broken target is dropped and the rest serves, a tier-2
//! configuration without its token turns tier 2 off, and only a configuration that can serve
//! nothing refuses requests, naming variables only.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use llm_edge_cache::config::Config;
use llm_edge_cache::testing::{MapVars, Scripted};
use serde_json::json;
use support::*;

const PASTED: &str = "sk-proj-PASTEDkey0123456789abcdef";
const GEMINI_LIKE: &str = "AIzaSyPastedGeminiKey0123456789abcdefg";

/// The shared test configuration with these variables over it, problems allowed.
fn loaded(extra: &[(&str, &str)]) -> Result<Config, llm_edge_cache::config::ConfigError> {
    let keys = format!(r#"{{"{KEY_A}":"tenant-a","{KEY_B}":"tenant-b"}}"#);
    let admins = format!(r#"{{"{ADMIN_KEY}":"ops"}}"#);
    let mut vars: Vec<(&str, &str)> = vec![
        ("GATEWAY_KEYS", &keys),
        ("ADMIN_KEYS", &admins),
        ("UPSTASH_REDIS_REST_URL", UPSTASH),
        ("UPSTASH_REDIS_REST_TOKEN", UPSTASH_TOKEN),
        ("RETRIES_PER_TARGET", "0"),
        ("PRIMARY_KEY", "sk-primary"),
    ];
    vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    vars.extend_from_slice(extra);
    Config::from_vars(&MapVars::new(&vars))
}

fn routes_with_pasted_key() -> String {
    json!({
        "gpt-4o": [
            {"provider": "openai-compatible", "id": "broken", "base_url": SECONDARY, "model": "m", "key": PASTED},
            {"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY, "model": "p", "key": "PRIMARY_KEY", "priority": 1}
        ],
        "gemini-only": [{"provider": "gemini", "model": "gemini-2.5-pro", "key": GEMINI_LIKE}]
    })
    .to_string()
}

fn assert_no_secret(text: &str) {
    for secret in [PASTED, GEMINI_LIKE, "sk-primary", UPSTASH_TOKEN, KEY_A, ADMIN_KEY] {
        assert!(!text.contains(secret), "{secret} leaked in: {text}");
    }
}

#[test]
fn a_pasted_key_is_reported_without_its_value_and_the_rest_serves() {
    let routes = routes_with_pasted_key();
    let config = loaded(&[("ROUTES", &routes)]).expect("the gateway can still serve");
    let all = config.problems.join("\n");
    assert!(all.contains("'gpt-4o' target 1") && all.contains("never the key itself"), "{all}");
    assert!(all.contains("'gemini-only' has no usable target"), "{all}");
    assert_no_secret(&all);
    assert_no_secret(&format!("{config:?}"));

    let w = World::with_config(config);
    w.host.route(PRIMARY, |_| ok("primary"));
    let ask = |model: &str| {
        w.chat(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string(), &[])
    };
    let served = ask("gpt-4o");
    assert_eq!(served.status, 200, "{:?}", served.body);
    assert_eq!(served.header("x-provider"), Some("primary"), "the broken target was dropped");

    let refused = ask("gemini-only");
    refused.assert_error(500, "gateway_misconfigured");
    let text = String::from_utf8_lossy(&refused.body).to_string();
    assert!(text.contains("ROUTES"), "names the variable: {text}");
    assert_no_secret(&text);

    let health = w.admin_get("/admin/health");
    assert_eq!(health.status, 200);
    let text = String::from_utf8_lossy(&health.body).to_string();
    assert!(text.contains("never the key itself"), "problems are in the detailed view: {text}");
    assert_no_secret(&text);
    let public = w.send(
        http::Request::get("https://gw.test/healthz").body(llm_edge_cache::ports::Body::empty()).expect("request"),
    );
    assert_eq!(public.json(), json!({"status": "ok"}));
    for line in w.host.logs() {
        assert_no_secret(&line);
    }
}

#[test]
fn the_logged_problems_name_variables_only() {
    let routes = routes_with_pasted_key();
    let config = loaded(&[("ROUTES", &routes)]).expect("serves");
    let host = llm_edge_cache::testing::MemHost::new(T0);
    llm_edge_cache::gateway::report_config(&host, Ok(&config));
    let logs = host.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].contains("config_problems") && logs[0].contains("ROUTES"), "{logs:?}");
    assert_no_secret(&logs[0]);
}

#[test]
fn serde_texts_never_quote_a_value() {
    for routes in [
        format!(r#"{{"m": [{{"provider": "openai", "weight": "{PASTED}"}}]}}"#),
        format!(r#"{{"m": [{{"provider": "openai", "{PASTED}": 1}}]}}"#),
        format!(r#"{{"m": "{PASTED}"}}"#),
        format!(r#"{{"m": [{{"provider": "{PASTED}"}}]}}"#),
        format!(r#"{{"m": [ {PASTED} ]}}"#),
    ] {
        let problems = match loaded(&[("ROUTES", &routes)]) {
            Ok(c) => c.problems,
            Err(e) => e.problems,
        };
        assert!(!problems.is_empty(), "{routes}: a problem is reported");
        assert_no_secret(&problems.join("\n"));
    }
    let err = loaded(&[("GATEWAY_KEYS", &format!(r#"{{"{PASTED}": 5}}"#))]).expect_err("no gateway key");
    assert_no_secret(&err.to_string());
}

#[test]
fn a_key_that_cannot_go_in_a_header_is_a_problem_not_a_panic() {
    let routes =
        json!({"*": [{"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY, "key": "PRIMARY_KEY"}]})
            .to_string();
    let err = loaded(&[("ROUTES", &routes), ("PRIMARY_KEY", "sk-with\u{7}bell")]).expect_err("no usable target");
    assert!(err.to_string().contains("PRIMARY_KEY is not usable in an HTTP header"), "{err}");
    let err = loaded(&[("ROUTES", ""), ("OPENAI_API_KEY", "sk-a b")]).expect_err("no usable target");
    assert!(err.to_string().contains("OPENAI_API_KEY"), "{err}");
    let config = loaded(&[("UPSTASH_REDIS_REST_TOKEN", "tok\nen")]).expect("tier 2 off, still serving");
    assert!(config.upstash.is_none());
    assert!(config.problems.iter().any(|p| p.contains("UPSTASH_REDIS_REST_TOKEN")), "{:?}", config.problems);
}

#[test]
fn tier_two_without_its_token_is_off_and_the_gateway_serves() {
    let config = loaded(&[("UPSTASH_REDIS_REST_TOKEN", ""), ("UPSTREAM_BASE_URL", UPSTREAM)]).expect("serves");
    assert!(config.upstash.is_none());
    assert!(config.problems.iter().any(|p| p.contains("tier 2 is off")), "{:?}", config.problems);
    let w = World::with_config(config);
    w.upstream_ok();
    let r = w.chat(&body_with("tier one only"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-status"), Some("edge-kv; fwd=uri-miss; stored"));
}

#[test]
fn a_bad_number_is_reported_and_its_default_used() {
    let config = loaded(&[("KV_TIMEOUT_MS", "soon"), ("UPSTREAM_BASE_URL", UPSTREAM)]).expect("serves");
    assert_eq!(config.kv_timeout_ms, 200);
    assert_eq!(config.problems, ["KV_TIMEOUT_MS must be a whole number from 1 to 60000"]);
}

#[test]
fn prices_are_read_over_the_built_in_table_and_a_bad_entry_is_a_problem() {
    let prices = r#"{"gpt-4o-mini": {"input": 1, "output": 2}, "typo": {"input": "sk-proj-x", "output": 1}}"#;
    let config = loaded(&[("PRICES", prices), ("UPSTREAM_BASE_URL", UPSTREAM)]).expect("serves");
    let usage = llm_edge_cache::prices::Usage { input: 1_000_000, cached_input: 0, output: 1_000_000 };
    assert_eq!(config.prices.cost_nanos("gpt-4o-mini", &usage), Some(3_000_000_000));
    assert!(config.prices.price("gpt-4o").is_some());
    assert!(config.prices.price("typo").is_none());
    assert_eq!(config.problems, ["PRICES: 'typo'.input must be a number from 0 to 10000"]);
    assert_no_secret(&config.problems.join(" "));
}

#[test]
fn only_a_configuration_that_serves_nothing_is_refused() {
    let err = loaded(&[("GATEWAY_KEYS", r#"{"short":"a"}"#)]).expect_err("no usable gateway key");
    assert!(err.problems[0].starts_with("GATEWAY_KEYS"), "{err}");
    let routes = json!({"m": [{"provider": "anthropic", "model": "c"}]}).to_string();
    let err = loaded(&[("ROUTES", &routes)]).expect_err("nothing routable");
    assert!(err.to_string().contains("no model has a usable target"), "{err}");
    let err = loaded(&[("UPSTREAM_BASE_URL", "ftp://nowhere")]).expect_err("no silent fallback to another URL");
    assert!(err.to_string().contains("UPSTREAM_BASE_URL"), "{err}");
    // Some good keys among bad ones: the good ones serve.
    let keys = format!(r#"{{"{KEY_A}":"tenant-a","short":"b","sk-long-enough":"bad name!"}}"#);
    let config = loaded(&[("GATEWAY_KEYS", &keys), ("UPSTREAM_BASE_URL", UPSTREAM)]).expect("serves");
    assert_eq!(config.tenant_for_key(KEY_A), Some("tenant-a"));
    assert_eq!(config.tenant_for_key("short"), None);
    assert_eq!(config.problems.len(), 2, "{:?}", config.problems);
}

#[test]
fn request_building_never_panics_on_a_model_name() {
    // A Gemini model goes into the URL path: one that cannot is refused when read.
    let routes = json!({"m": [{"provider": "gemini", "model": "bad model/../x y", "key": "PRIMARY_KEY"}],
                        "ok": [{"provider": "openai-compatible", "base_url": PRIMARY, "key": "PRIMARY_KEY"}]})
    .to_string();
    let config = loaded(&[("ROUTES", &routes)]).expect("serves the other model");
    assert!(config.problems.iter().any(|p| p.contains("model must be")), "{:?}", config.problems);
    let w = World::with_config(config);
    w.host.route(PRIMARY, |_| {
        Scripted::json(200, &json!({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]}))
    });
    let r = w.chat(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string(), &[]);
    r.assert_error(500, "gateway_misconfigured");
}
