//! Runs the official `@upstash/vector` client (node) against our Upstash-Vector-compatible
//! endpoint, via tests/devstack/js/upstash-vector-official-client.mjs: every command the semantic
//! tier needs, with Upstash's scores, envelopes and errors, and the `-data` commands embedding with
//! the real model.

use std::time::Duration;

use devstack::node::run_script;
use devstack::vector::spawn_vector;

#[test]
fn official_js_client_gets_upstash_vector_results() {
    let vector = spawn_vector("devstack-vector-token");
    let env = [
        ("UPSTASH_VECTOR_REST_URL", vector.url()),
        ("UPSTASH_VECTOR_REST_TOKEN", vector.token().to_owned()),
        ("UPSTASH_DISABLE_TELEMETRY", "1".to_owned()),
    ];
    let out = run_script("upstash-vector-official-client.mjs", "@upstash/vector", &env, &[], Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "official client checks failed ({}):\n{}\n{}", out.status, out.stdout, out.stderr);
    assert!(out.stdout.contains("checks passed"), "unexpected output:\n{}\n{}", out.stdout, out.stderr);
}
