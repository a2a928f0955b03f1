//! Runs the official `@upstash/redis` client (node) against our Upstash REST endpoint over a
//! real redis-server, via tests/devstack/js/upstash-official-client.mjs.

use std::time::Duration;

use devstack::node::run_script;
use devstack::{spawn_upstash, RedisServer};

const NODE_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn official_js_client_gets_exactly_upstash_results() {
    let redis = RedisServer::start().expect("start redis-server");
    let upstash = spawn_upstash(redis.addr(), "devstack-test-token");
    let env = [
        ("UPSTASH_REDIS_REST_URL", upstash.url()),
        ("UPSTASH_REDIS_REST_TOKEN", upstash.token().to_owned()),
        ("DEVSTACK_KEY_PREFIX", format!("official-{}", std::process::id())),
        ("UPSTASH_DISABLE_TELEMETRY", "1".to_owned()),
    ];
    let out = run_script("upstash-official-client.mjs", "@upstash/redis", &env, &[], NODE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let (stdout, stderr) = (out.stdout, out.stderr);
    assert!(out.status.success(), "official client checks failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("all") && stdout.contains("checks passed"), "unexpected output:\n{stdout}\n{stderr}");
}
