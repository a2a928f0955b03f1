//! The answer's bytes are not copied on their way to the client: the body a client gets is the
//! buffer the provider's answer arrived in, and the entry made from it shares that buffer too.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use llm_edge_cache::cache::entry::Entry;
use llm_edge_cache::testing::Scripted;
use support::*;

#[test]
fn the_client_is_served_from_the_providers_buffer() {
    let w = World::new();
    let answer = Bytes::from(fixture("openai/ok.json"));
    let sent = answer.clone();
    w.upstream(move |_| Scripted::Respond {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: sent.clone(),
    });
    let body = body_with("no copies");
    let r = w.chat(&body, &[]);
    assert_eq!(r.header("cache-status"), Some("redis; fwd=uri-miss; stored, edge-kv; fwd=uri-miss; stored"));
    assert_eq!(r.body.as_ptr(), answer.as_ptr(), "the same buffer, not a copy");

    // Both tiers got the one encoding.
    w.host.run_background();
    let key = key_for("tenant-a", &body);
    let in_kv = w.host.kv_raw(key.as_str()).expect("tier 1");
    use base64::Engine as _;
    let in_redis = base64::engine::general_purpose::STANDARD
        .decode(w.upstash.raw(&redis_key(&key)).expect("tier 2"))
        .expect("base64");
    assert_eq!(in_kv, in_redis);
    assert_eq!(Entry::decode(&in_kv).expect("entry").body, answer);
}

#[test]
fn an_entry_shares_the_answers_bytes() {
    let answer = Bytes::from(fixture("openai/ok.json"));
    let entry = Entry::new(T0, 60, 60, "openai", "m", answer.clone());
    assert_eq!(entry.body.as_ptr(), answer.as_ptr());
}
