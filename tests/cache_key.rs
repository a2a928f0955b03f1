//! The cache key: pinned digests, canonical form, the deny-list, tenant and namespace separation.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use llm_edge_cache::api::chat::ChatRequest;
use llm_edge_cache::cache::key::CacheKey;
use serde_json::json;
use sha2::{Digest, Sha256};
use support::fixture;

fn key(tenant: &str, ns: &str, body: &str) -> String {
    CacheKey::chat(tenant, ns, &ChatRequest::parse(body.as_bytes()).expect("valid request")).as_str().to_owned()
}

fn key_of(v: serde_json::Value) -> String {
    key("tenant-a", "", &v.to_string())
}

/// A changed digest means every deployed entry stops matching: change these only on purpose,
/// together with `KEY_VERSION`.
#[test]
fn digests_of_fixture_requests_are_pinned() {
    let pins = [
        ("requests/simple.json", "llmc1:c09f59e54e10a36d547c39e2d63a601e658f62159e96fb2b13fd84f5e814951b"),
        ("requests/params.json", "llmc1:0d34549d1c6d75ce0a240206c9f2efe6261b4db10086e93eeef34be0f9c52928"),
        ("requests/tools.json", "llmc1:58cd2de1543ae80853bf4f5b8c8e2fe1e18a3a4c43b583c5d78bd0ab361e5d12"),
    ];
    for (file, pinned) in pins {
        assert_eq!(key("tenant-a", "", &fixture(file)), pinned, "{file}");
    }
}

/// The digest is SHA-256 over exactly this preimage: version, tenant, namespace and endpoint
/// separated by NUL, then the canonical request.
#[test]
fn digest_is_sha256_of_the_documented_preimage() {
    let preimage = b"llm-edge-cache/key/v1\0tenant-a\0\0chat.completions\0{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],\"model\":\"gpt-4o-mini\"}";
    let hex: String = Sha256::digest(preimage).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(key("tenant-a", "", &fixture("requests/simple.json")), format!("llmc1:{hex}"));
}

#[test]
fn object_key_order_and_whitespace_do_not_matter() {
    let a = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":0.5,"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"b":1,"a":2}}}}"#;
    let b = r#"{ "response_format" : { "json_schema" : { "schema" : { "a" : 2 , "b" : 1 } , "name" : "n" } , "type" : "json_schema" },
                 "temperature": 0.5, "messages": [ { "content": "x", "role": "user" } ], "model": "m" }"#;
    assert_eq!(key("t", "", a), key("t", "", b));
}

#[test]
fn equal_numbers_are_one_number() {
    let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 1});
    for t in [json!(1.0), serde_json::from_str::<serde_json::Value>("1e0").expect("json"), json!(1)] {
        let mut other = base.clone();
        other["temperature"] = t;
        assert_eq!(key_of(base.clone()), key_of(other));
    }
    let mut half = base.clone();
    half["temperature"] = serde_json::from_str("0.50").expect("json");
    let mut half2 = base.clone();
    half2["temperature"] = json!(0.5);
    assert_eq!(key_of(half), key_of(half2));
}

#[test]
fn array_order_matters() {
    let a = json!({"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]});
    let b = json!({"model": "m", "messages": [{"role": "user", "content": "b"}, {"role": "user", "content": "a"}]});
    assert_ne!(key_of(a), key_of(b));
}

#[test]
fn deny_listed_fields_do_not_change_the_key() {
    let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    let extras = [
        ("user", json!("user-123")),
        ("metadata", json!({"trace": "abc"})),
        ("stream", json!(false)),
        ("stream_options", json!({"include_usage": true})),
        ("store", json!(true)),
        ("prompt_cache_key", json!("pck")),
        ("safety_identifier", json!("sid")),
    ];
    for (name, value) in extras {
        let mut v = base.clone();
        v[name] = value;
        assert_eq!(key_of(base.clone()), key_of(v), "{name} must not change the key");
    }
}

#[test]
fn every_other_field_changes_the_key() {
    let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    let changes = [
        ("model", json!("m2")),
        ("messages", json!([{"role": "user", "content": "y"}])),
        ("temperature", json!(0.7)),
        ("max_tokens", json!(10)),
        ("seed", json!(1)),
        ("tools", json!([{"type": "function", "function": {"name": "f"}}])),
        ("n", json!(2)),
        ("a_field_unknown_to_us", json!(true)),
    ];
    for (name, value) in changes {
        let mut v = base.clone();
        v[name] = value;
        assert_ne!(key_of(base.clone()), key_of(v), "{name} must change the key");
    }
}

#[test]
fn a_null_parameter_is_the_same_as_an_absent_one() {
    let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    let mut with_null = base.clone();
    with_null["temperature"] = json!(null);
    assert_eq!(key_of(base), key_of(with_null));
}

#[test]
fn tenants_and_namespaces_never_share_keys() {
    let body = fixture("requests/simple.json");
    let a = key("tenant-a", "", &body);
    assert_ne!(a, key("tenant-b", "", &body));
    assert_ne!(a, key("tenant-a", "ns1", &body));
    assert_ne!(key("tenant-a", "ns1", &body), key("tenant-a", "ns2", &body));
    // Prefix-free: moving a character across the tenant/namespace boundary is a different key.
    assert_ne!(key("ab", "c", &body), key("a", "bc", &body));
}

#[test]
fn keys_fit_every_store() {
    let k = key("tenant-a", "a-namespace", &fixture("requests/tools.json"));
    assert_eq!(k.len(), 70);
    assert!(k.len() <= 256, "Spin's default store takes keys up to 256 bytes");
    assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':'));
}
