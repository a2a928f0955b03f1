//! Pacing below the providers' limits: a target declaring `rpm`/`tpm` is used up to
//! `PACING_SHARE_PERCENT` of them by `low` and `normal` tenants, which then go to the next target
//! with room or get a 429 `provider_capacity_exceeded` with `Retry-After`; `high` tenants may use
//! the rest and wait a bounded time for room; the provider never sees more than it declared in a
//! minute; a target's tokens are counted from the provider's usage; bad values are reported.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use llm_edge_cache::config::Config;
use llm_edge_cache::limits::WINDOW_MS;
use llm_edge_cache::ports::Clock;
use llm_edge_cache::testing::{MapVars, Scripted};
use serde_json::json;
use support::*;

fn paced(
    primary_limits: serde_json::Value,
    fallback: bool,
    extra: &[(&str, &str)],
) -> (World, Rc<RefCell<usize>>, Rc<RefCell<usize>>) {
    let mut primary = json!({"provider": "openai-compatible", "id": "primary", "base_url": PRIMARY, "model": "p-model", "key": "PRIMARY_KEY"});
    if let (Some(p), Some(limits)) = (primary.as_object_mut(), primary_limits.as_object()) {
        p.extend(limits.clone());
    }
    let mut targets = vec![primary];
    if fallback {
        targets.push(json!({"provider": "openai-compatible", "id": "secondary", "base_url": SECONDARY, "model": "s-model", "key": "SECONDARY_KEY", "priority": 1}));
    }
    let tenants = json!({"tenant-a": {"priority": "low"}, "tenant-b": {"priority": "high"}}).to_string();
    let mut vars = vec![("TENANTS", tenants.as_str())];
    vars.extend_from_slice(extra);
    let w = world(&routes(json!(targets)), &vars);
    let p = scripted(&w, PRIMARY, vec![]);
    let s = scripted(&w, SECONDARY, vec![]);
    (w, p, s)
}

fn ask_as(w: &World, key: &str, content: &str) -> Reply {
    w.chat_as(key, &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}).to_string(), &[])
}

#[test]
fn bad_pacing_values_are_reported_without_their_values() {
    let keys = format!(r#"{{"{KEY_A}":"tenant-a"}}"#);
    let routes =
        json!({"gpt-4o": [{"provider": "openai", "key": "K", "model": "gpt-4o", "rpm": 0, "tpm": 5_000_000_000u64}]})
            .to_string();
    let config = Config::from_vars(&MapVars::new(&[
        ("GATEWAY_KEYS", &keys),
        ("ROUTES", &routes),
        ("K", "sk-x"),
        ("TENANTS", r#"{"tenant-a": {"priority": "LEAK-urgent"}}"#),
        ("PACING_SHARE_PERCENT", "LEAK-150"),
        ("PACING_HIGH_WAIT_MS", "99999999"),
    ]))
    .map_or_else(|e| e.problems, |c| c.problems);
    let all = config.join("\n");
    assert!(!all.contains("LEAK"), "{all}");
    for expected in [
        "rpm must be from 1 to 1000000000",
        "tpm must be from 1 to 1000000000",
        "'priority' must be \"high\", \"normal\" or \"low\"",
        "PACING_SHARE_PERCENT must be a whole number from 1 to 100; 80 applies",
        "PACING_HIGH_WAIT_MS must be a whole number from 0 to 30000; 2000 applies",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn past_its_share_a_low_request_goes_to_the_next_target_and_high_uses_the_rest() {
    // rpm 5 at 80%: low and normal requests get 4 a minute, high ones all 5.
    let (w, primary, secondary) = paced(json!({"rpm": 5}), true, &[]);
    let providers: Vec<String> =
        (0..6).map(|i| ask_as(&w, KEY_A, &format!("low {i}")).header("x-provider").unwrap_or("").to_owned()).collect();
    assert_eq!(providers, ["primary", "primary", "primary", "primary", "secondary", "secondary"]);
    let high = ask_as(&w, KEY_B, "high 1");
    assert_eq!(high.header("x-provider"), Some("primary"), "high priority uses the last 20%");
    assert_eq!(ask_as(&w, KEY_B, "high 2").header("x-provider"), Some("secondary"), "the whole limit is used");
    assert_eq!((*primary.borrow(), *secondary.borrow()), (5, 3), "the provider never saw more than its 5 a minute");
    // A new minute (and its slide) gives room again.
    w.host.advance(2 * WINDOW_MS);
    assert_eq!(ask_as(&w, KEY_A, "later").header("x-provider"), Some("primary"));
}

#[test]
fn with_no_target_left_low_is_refused_and_high_waits_a_bounded_time_for_room() {
    // rpm 60 at 80%: 48 a minute for low, 60 for high; high waits up to 2 s.
    let (w, primary, _) = paced(json!({"rpm": 60}), false, &[]);
    for i in 0..48 {
        assert_eq!(ask_as(&w, KEY_A, &format!("low {i}")).status, 200);
    }
    let refused = ask_as(&w, KEY_A, "low refused");
    refused.assert_error(429, "provider_capacity_exceeded");
    assert!(refused.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1));
    for i in 0..12 {
        assert_eq!(ask_as(&w, KEY_B, &format!("high {i}")).status, 200);
    }
    // Full within this window: room only in about a minute, beyond the 2 s bound.
    let started = w.host.now_ms();
    ask_as(&w, KEY_B, "high refused").assert_error(429, "provider_capacity_exceeded");
    assert_eq!(w.host.now_ms(), started, "no wait beyond the bound");
    // At the next window's start the previous one still fills the slide: one request's room
    // comes in 1 s, within the bound.
    w.host.advance(WINDOW_MS - started % WINDOW_MS);
    let before = w.host.now_ms();
    let waited = ask_as(&w, KEY_B, "high waits");
    assert_eq!(waited.status, 200, "{:?}", waited.body);
    assert_eq!(w.host.now_ms() - before, 1000, "waited for room, and no longer");
    ask_as(&w, KEY_A, "low again").assert_error(429, "provider_capacity_exceeded");
    assert_eq!(*primary.borrow(), 61, "60 in the first minute, then 1 as the window slid");
}

#[test]
fn a_targets_tokens_are_counted_from_the_providers_usage() {
    let (w, _, _) = paced(json!({"tpm": 1000}), false, &[]);
    let body = fixture("openai/ok.json");
    w.host.route(PRIMARY, move |_| Scripted::Respond {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from(body.clone()),
    });
    assert_eq!(ask_as(&w, KEY_A, "tokens").status, 200);
    w.host.run_background();
    let key = format!("llmc1:limit:target@primary:tokens:{}", T0 / WINDOW_MS);
    assert_eq!(w.upstash.raw(&key).as_deref(), Some("19"));
}
