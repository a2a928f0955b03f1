//! `POST /v1/embeddings` without a network: the request's checks and cache key, each provider's
//! translation, and the gateway's way (miss, background write, exact hit; encodings as entries of
//! their own; a malformed answer; a route with no provider that has embeddings).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use llm_edge_cache::api::embeddings::{EmbeddingsRequest, Encoding, Input};
use llm_edge_cache::cache::key::{CacheKey, KeyScope};
use llm_edge_cache::ports::Body;
use llm_edge_cache::providers::embeddings::{build_request, parse_success, to_base64};
use llm_edge_cache::routing::table::ProviderKind;
use llm_edge_cache::testing::Scripted;
use serde_json::{json, Value};
use support::{target, wire, Reply, World, KEY_A};

fn parse(v: Value) -> Result<EmbeddingsRequest, llm_edge_cache::error::ApiError> {
    match v {
        Value::Object(map) => EmbeddingsRequest::from_object(map),
        _ => unreachable!("tests pass objects"),
    }
}

fn key(tenant: &str, v: Value) -> CacheKey {
    let scope = KeyScope { generation: "", tenant, namespace: "" };
    CacheKey::embeddings_in(&scope, &parse(v).expect("valid"))
}

#[test]
fn reads_every_input_shape() {
    let r = parse(json!({"model": "m", "input": "one"})).unwrap();
    assert_eq!((r.inputs, r.encoding, r.encoding_sent), (Input::Texts(vec!["one".into()]), Encoding::Float, false));
    assert_eq!(parse(json!({"model": "m", "input": [1, 2]})).unwrap().inputs, Input::Tokens(vec![vec![1, 2]]));
    let r =
        parse(json!({"model": "m", "input": [[1], [2, 3]], "encoding_format": "base64", "dimensions": 256})).unwrap();
    assert_eq!((r.inputs.len(), r.encoding, r.dimensions), (2, Encoding::Base64, Some(256)));
}

#[test]
fn refuses_what_openai_refuses_naming_the_field() {
    let cases = [
        (json!({"input": "x"}), "missing_required_parameter", "model"),
        (json!({"model": "m"}), "missing_required_parameter", "input"),
        (json!({"model": "m", "input": ""}), "invalid_value", "input"),
        (json!({"model": "m", "input": []}), "invalid_value", "input"),
        (json!({"model": "m", "input": ["a", ""]}), "invalid_value", "input[1]"),
        (json!({"model": "m", "input": ["a", 1]}), "invalid_type", "input[1]"),
        (json!({"model": "m", "input": [[1], []]}), "invalid_value", "input[1]"),
        (json!({"model": "m", "input": [1, -2]}), "invalid_type", "input[1]"),
        (json!({"model": "m", "input": {"a": 1}}), "invalid_type", "input"),
        (json!({"model": "m", "input": "x", "encoding_format": "hex"}), "invalid_value", "encoding_format"),
        (json!({"model": "m", "input": "x", "dimensions": 0}), "invalid_value", "dimensions"),
        (json!({"model": "m", "input": "x", "dimensions": "8"}), "invalid_type", "dimensions"),
        (json!({"model": "m", "input": "x", "user": 5}), "invalid_type", "user"),
    ];
    for (body, code, param) in cases {
        let e = parse(body.clone()).expect_err("refused");
        assert_eq!((e.code, e.param.as_deref()), (code, Some(param)), "{body}");
    }
    let many: Vec<String> = (0..2049).map(|i| i.to_string()).collect();
    assert_eq!(parse(json!({"model": "m", "input": many})).unwrap_err().code, "invalid_value");
}

#[test]
fn the_key_covers_what_changes_the_vectors_and_nothing_else() {
    let base = key("a", json!({"model": "m", "input": ["x"]}));
    assert_eq!(base, key("a", json!({"model": "m", "input": ["x"], "user": "u1"})), "user is not keyed");
    assert_eq!(
        base,
        key("a", json!({"model": "m", "input": ["x"], "encoding_format": "float"})),
        "float is the default"
    );
    for other in [
        json!({"model": "m", "input": ["x"], "encoding_format": "base64"}),
        json!({"model": "m", "input": ["x"], "dimensions": 64}),
        json!({"model": "m", "input": "x"}),
        json!({"model": "m2", "input": ["x"]}),
        json!({"model": "m", "input": ["x"], "unknown": 1}),
    ] {
        assert_ne!(base, key("a", other.clone()), "{other}");
    }
    assert_ne!(base, key("b", json!({"model": "m", "input": ["x"]})), "tenants never share");
    let chat =
        llm_edge_cache::api::chat::ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#)
            .unwrap();
    assert_ne!(base, CacheKey::chat("a", "", &chat));
    // Pinned, so that a change of the encoding is always deliberate.
    assert_eq!(base.as_str(), PINNED);
}

const PINNED: &str = "llmc1:72930ed7d715a39eb8e29ffdb1118bd1b844ab7e6b284e743be3bf506612ce0a";

#[test]
fn openai_targets_get_the_request_as_sent_with_the_targets_model() {
    let t = target(ProviderKind::OpenAi, "text-embedding-3-large");
    let r = parse(json!({"model": "emb", "input": ["a"], "dimensions": 8, "user": "u"})).unwrap();
    let req = build_request(&t, &r).unwrap();
    assert_eq!(req.uri(), "https://api.openai.com/v1/embeddings");
    assert_eq!(wire(&req), json!({"model": "text-embedding-3-large", "input": ["a"], "dimensions": 8, "user": "u"}));
    let body = json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}], "model": "text-embedding-3-large-v9"});
    let answer = parse_success(&t, Bytes::from(body.to_string()), &r).unwrap();
    assert_eq!(answer.model, "text-embedding-3-large-v9");
    let short = json!({"object": "list", "data": [], "model": "x"});
    assert!(parse_success(&t, Bytes::from(short.to_string()), &r).is_err(), "one embedding per input");
}

#[test]
fn gemini_gets_a_batch_and_answers_in_openais_shape_and_encoding() {
    let t = target(ProviderKind::Gemini, "text-embedding-004");
    let r = parse(json!({"model": "emb", "input": ["a", "b"], "dimensions": 2, "encoding_format": "base64"})).unwrap();
    let req = build_request(&t, &r).unwrap();
    assert!(req.uri().to_string().ends_with("/models/text-embedding-004:batchEmbedContents"), "{}", req.uri());
    assert_eq!(req.headers()["x-goog-api-key"], "k-123");
    let one = |text: &str| json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": text}]}, "outputDimensionality": 2});
    assert_eq!(wire(&req), json!({"requests": [one("a"), one("b")]}));
    let reply = json!({"embeddings": [{"values": [0.25, -1.0]}, {"values": [1.0, 0.0]}]});
    let answer = parse_success(&t, Bytes::from(reply.to_string()), &r).unwrap();
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"], to_base64(&[0.25, -1.0]));
    assert_eq!(to_base64(&[1.0]), "AACAPw==", "little-endian f32, as OpenAI writes it");
    let tokens = parse(json!({"model": "emb", "input": [1, 2]})).unwrap();
    assert_eq!(build_request(&t, &tokens).unwrap_err().field, "input");
    let anthropic = target(ProviderKind::Anthropic, "claude");
    assert!(build_request(&anthropic, &r).is_err(), "Anthropic has no embeddings");
}

fn embed(w: &World, body: Value) -> Reply {
    let req = http::Request::post("https://gw.test/v1/embeddings")
        .header("authorization", format!("Bearer {KEY_A}"))
        .header("content-type", "application/json")
        .body(Body::Full(Bytes::from(body.to_string())))
        .expect("valid request");
    w.send(req)
}

fn vectors_reply() -> Scripted {
    Scripted::json(
        200,
        &json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}], "model": "emb-1", "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
    )
}

#[test]
fn a_miss_is_stored_in_both_tiers_then_hits_without_a_call() {
    let w = World::new();
    w.upstream(|_| vectors_reply());
    let body = json!({"model": "gpt-4o-mini", "input": "hello"});
    let miss = embed(&w, body.clone());
    assert_eq!((miss.status, miss.header("x-cache")), (200, Some("MISS")));
    assert_eq!(miss.header("cache-status"), Some("redis; fwd=uri-miss; stored, edge-kv; fwd=uri-miss; stored"));
    w.host.run_background();
    let hit = embed(&w, body.clone());
    assert_eq!((hit.header("x-cache"), hit.header("x-cache-tier")), (Some("HIT"), Some("edge-kv")));
    assert_eq!(hit.body, miss.body);
    let other_encoding = embed(&w, json!({"model": "gpt-4o-mini", "input": "hello", "encoding_format": "base64"}));
    assert_eq!(other_encoding.header("x-cache"), Some("MISS"));
    assert_eq!(w.upstream_calls(), 2);
    let sent = w.host.sent_to(support::UPSTREAM);
    assert!(sent[0].uri().to_string().ends_with("/v1/embeddings"));
}

#[test]
fn a_malformed_answer_is_a_502_and_not_stored() {
    let w = World::new();
    w.upstream(|_| Scripted::json(200, &json!({"object": "list", "data": "nope"})));
    let r = embed(&w, json!({"model": "gpt-4o-mini", "input": "hello"}));
    r.assert_error(502, "upstream_malformed_response");
    w.host.run_background();
    assert!(support::no_entries(&w));
}

#[test]
fn a_route_without_embeddings_is_a_400_naming_the_field() {
    let routes = support::routes(
        json!([{"provider": "anthropic", "model": "claude-x", "key": "ANTHROPIC_KEY", "base_url": support::ANTHROPIC}]),
    );
    let w = support::world(&routes, &[]);
    let r = embed(&w, json!({"model": "gpt-4o", "input": "hello"}));
    r.assert_error(400, "unsupported_parameter");
    assert_eq!(w.upstream_calls(), 0);
}
