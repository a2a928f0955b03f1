//! What clients see on the real runtime: the bad-input matrix from `fixtures/bad_input.json`
//! (the same cases the host tests run), CORS, `/v1/models`, `/healthz`, request ids.

use devstack::stack::KEY_A;
use devstack::HttpRequest;

use crate::client::*;
use crate::runner::{Ctx, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("input::every_bad_input_gets_its_error", bad_input_matrix),
        ("input::cors_preflight_and_headers", cors),
        ("input::models_and_healthz", models_and_healthz),
        ("input::request_ids_are_kept_or_made", request_ids),
    ]
}

/// Matches MAX_BODY_BYTES of the shared stack.
const BODY_LIMIT: usize = 65536;

fn bad_input_matrix(ctx: &Ctx) {
    let s = ctx.shared;
    for case in bad_input_cases() {
        let name = case["name"].as_str().expect("name");
        let r = bad_input_request(s, &case, BODY_LIMIT).send().unwrap_or_else(|e| panic!("{name}: {e}"));
        let (status, code) = (case["status"].as_u64().expect("status") as u16, case["code"].as_str().expect("code"));
        assert_eq!(r.status, status, "{name}: {}", r.text());
        assert_error(&r, status, code);
        if let Some(param) = case["param"].as_str() {
            assert_eq!(json_of(&r)["error"]["param"], param, "{name}");
        }
        assert!(r.header("x-request-id").is_some(), "{name}");
    }
}

fn cors(ctx: &Ctx) {
    let s = ctx.shared;
    let preflight = |origin: &str| {
        HttpRequest::new("OPTIONS", &format!("{}/v1/chat/completions", s.url()))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type, x-stainless-lang")
            .send()
            .expect("preflight")
    };
    let ok = preflight("https://app.example");
    assert_eq!(ok.status, 204);
    assert_eq!(header(&ok, "access-control-allow-origin"), "https://app.example");
    assert!(header(&ok, "access-control-allow-methods").contains("POST"));
    assert_eq!(header(&ok, "access-control-allow-headers"), "authorization, content-type, x-stainless-lang");
    assert_error(&preflight("https://evil.example"), 403, "cors_origin_not_allowed");

    let m = marker("cors");
    let r = chat(s, KEY_A, &body(&m), &[("origin", "https://app.example")]);
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "access-control-allow-origin"), "https://app.example");
    let exposed = header(&r, "access-control-expose-headers");
    // Every response header the README documents is readable by the page.
    for name in [
        "cache-status",
        "x-cache",
        "x-cache-tier",
        "age",
        "x-request-id",
        "x-provider",
        "x-attempts",
        "x-fallback",
        "x-cache-stale-reason",
        "server-timing",
        "retry-after",
    ] {
        assert!(exposed.split(", ").any(|h| h == name), "{name} is not exposed: {exposed}");
    }
    let other = chat(s, KEY_A, &body(&m), &[("origin", "https://evil.example")]);
    assert_eq!(other.header("access-control-allow-origin"), None);
}

fn models_and_healthz(ctx: &Ctx) {
    let s = ctx.shared;
    let models = HttpRequest::get(&format!("{}/v1/models", s.url()))
        .header("authorization", &format!("Bearer {KEY_A}"))
        .send()
        .expect("models");
    assert_eq!(models.status, 200);
    let ids: Vec<String> = json_of(&models)["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, ["gpt-4o-mini", "gpt-4o"]);

    let health = HttpRequest::get(&format!("{}/healthz", s.url())).send().expect("healthz");
    assert_eq!(health.status, 200);
    assert_eq!(json_of(&health), serde_json::json!({"status": "ok"}), "liveness only: nothing for strangers");
}

fn request_ids(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("rid");
    let given = chat(s, KEY_A, &body(&m), &[("x-request-id", "client-trace-42")]);
    assert_eq!(header(&given, "x-request-id"), "client-trace-42");
    let made = chat_a(s, &body(&m));
    let id = header(&made, "x-request-id");
    assert!(id.starts_with("req_") && id.len() == 20, "{id}");
    let bad = chat(s, KEY_A, &body(&m), &[("x-request-id", "has spaces and; semicolons")]);
    assert!(header(&bad, "x-request-id").starts_with("req_"), "an unsafe id is replaced");
}
