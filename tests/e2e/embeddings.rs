//! `POST /v1/embeddings` on the real runtimes: the official OpenAI SDK gets a miss, then an exact
//! hit (its default base64, explicit float and explicit base64), against an OpenAI-compatible
//! target and a Gemini one (`batchEmbedContents`, translated, base64 written by the gateway);
//! failover from a failing target to Gemini; `user` left out of the key; bad input refused with
//! OpenAI's 400s before any provider is called.

use std::time::Duration;

use devstack::node::run_script;
use devstack::stack::{Stack, KEY_A};
use devstack::HttpRequest;
use devstack::HttpResponse;
use serde_json::{json, Value};

use crate::client::*;
use crate::runner::{eventually, Ctx, Scenario};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("embeddings::the_openai_sdk_gets_a_miss_then_an_exact_hit", openai_sdk),
        ("embeddings::a_failing_target_falls_back_to_gemini_and_user_is_not_keyed", failover_to_gemini),
        ("embeddings::bad_input_is_refused_before_any_provider", bad_input),
    ]
}

/// The routed stack's embedding routes (merged into `routing::routes`).
pub fn routes() -> Value {
    let gemini = |id: &str| json!({"provider": "gemini", "id": id, "base_url": "{upstream}/v1beta", "model": id, "key": "GEMINI_KEY"});
    let primary = json!({"provider": "openai-compatible", "id": "e2-primary", "base_url": "{upstream}/v1", "model": "e2-primary"});
    let mut fallback = gemini("e2-gemini");
    fallback["priority"] = json!(1);
    json!({"e-gemini": [gemini("e1-gemini")], "e-failover": [primary, fallback]})
}

pub fn embed(s: &Stack, body: &Value, headers: &[(&str, &str)]) -> HttpResponse {
    let mut req = HttpRequest::post(&format!("{}/v1/embeddings", s.url()))
        .header("authorization", &format!("Bearer {KEY_A}"))
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .timeout(Duration::from_secs(20));
    for (name, value) in headers {
        req = req.header(name, value);
    }
    req.send().unwrap_or_else(|e| panic!("embeddings request failed: {e}"))
}

fn openai_sdk(ctx: &Ctx) {
    for (stack, model) in [(ctx.shared, "text-embedding-3-small"), (ctx.routed, "e-gemini")] {
        let run = marker("sdk-embed");
        let env = [
            ("GATEWAY_URL", stack.url()),
            ("GATEWAY_KEY", KEY_A.to_owned()),
            ("MODELS", json!([model]).to_string()),
            ("RUN_ID", run.clone()),
        ];
        let unset = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_LOG"];
        let out = run_script("openai-embeddings-check.mjs", "openai", &env, &unset, Duration::from_secs(90))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.status.success(), "the SDK's checks failed:\n{}\n{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("embeddings checks passed"), "{}\n{}", out.stdout, out.stderr);
        // Two entries (base64 and float), so two provider calls; every HIT called nobody.
        assert_eq!(stack.fake().calls(&run), 2, "{model}: one provider call per entry");
    }
}

fn failover_to_gemini(ctx: &Ctx) {
    let s = ctx.routed;
    s.fake().add_rule("\"model\":\"e2-primary\"", json!([{"kind": "status", "status": 500}]), true);
    let m = marker("embed-failover");
    let body = json!({"model": "e-failover", "input": [m.clone(), format!("{m} again")], "user": "alice"});
    let r = embed(s, &body, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((header(&r, "x-provider"), header(&r, "x-fallback")), ("e2-gemini", "true"));
    assert_eq!(header(&r, "x-cache"), "MISS");
    let v = json_of(&r);
    assert_eq!((v["object"].as_str(), v["model"].as_str()), (Some("list"), Some("e2-gemini")), "{v}");
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    assert!(data
        .iter()
        .enumerate()
        .all(|(i, d)| d["index"] == i && d["embedding"].as_array().is_some_and(|e| !e.is_empty())));
    let calls = s.fake().calls_detail(&m);
    let gemini: Vec<&Value> =
        calls.iter().filter(|c| c["path"].as_str().is_some_and(|p| p.ends_with(":batchEmbedContents"))).collect();
    assert_eq!(gemini.len(), 1, "one batch for both inputs: {calls:?}");
    assert_eq!(gemini[0]["auth_header"], "x-goog-api-key");
    // Another user, the same question: the same entry.
    let other_user = json!({"model": "e-failover", "input": [m.clone(), format!("{m} again")], "user": "bob"});
    let hit = eventually(Duration::from_secs(10), "the entry to be cached", || {
        let r = embed(s, &other_user, &[]);
        (r.header("x-cache") == Some("HIT")).then_some(r)
    });
    assert_eq!(json_of(&hit)["data"], v["data"]);
    assert_eq!(s.fake().calls(&m), calls.len(), "the hit called no provider");
}

fn bad_input(ctx: &Ctx) {
    let s = ctx.shared;
    let m = marker("embed-bad");
    let cases = [
        (json!({"model": "text-embedding-3-small"}), "missing_required_parameter", "input"),
        (json!({"model": "text-embedding-3-small", "input": ""}), "invalid_value", "input"),
        (json!({"model": "text-embedding-3-small", "input": [m.clone(), 7]}), "invalid_type", "input[1]"),
        (
            json!({"model": "text-embedding-3-small", "input": m.clone(), "encoding_format": "hex"}),
            "invalid_value",
            "encoding_format",
        ),
        (
            json!({"model": "text-embedding-3-small", "input": m.clone(), "dimensions": 0}),
            "invalid_value",
            "dimensions",
        ),
        (json!({"input": m.clone()}), "missing_required_parameter", "model"),
    ];
    for (body, code, param) in cases {
        let r = embed(s, &body, &[]);
        assert_error(&r, 400, code);
        assert_eq!(json_of(&r)["error"]["param"], param, "{body}");
    }
    assert_eq!(s.fake().calls(&m), 0, "no provider saw a bad request");
}
