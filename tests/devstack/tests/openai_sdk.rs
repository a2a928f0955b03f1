//! Runs the official OpenAI SDK (npm `openai`, node 22) against the gateway in workerd, via
//! tests/devstack/js/openai-sdk-check.mjs: cache MISS then HIT through `withResponse()`, model
//! list, streaming, and the SDK's typed errors for bad input, a wrong key and a failing upstream.

use std::time::Duration;

use devstack::node::run_script;
use devstack::stack::{Stack, StackOptions, KEY_A, UPSTREAM_KEY};
use serde_json::json;

const NODE_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn official_openai_sdk_sees_an_openai_compatible_gateway() {
    let stack = Stack::start(StackOptions::default()).expect("start the local stack");
    let run_id = format!("sdk-{}", std::process::id());
    let marker_500 = format!("{run_id}-upstream-500");
    stack.fake().add_rule(&marker_500, json!([{ "kind": "status", "status": 500 }]), true);

    let env = [
        ("GATEWAY_URL", stack.url()),
        ("GATEWAY_KEY", KEY_A.to_owned()),
        ("SDK_RUN_ID", run_id.clone()),
        ("UPSTREAM_500_MARKER", marker_500.clone()),
    ];
    // The SDK must take its settings from the script alone.
    let unset = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_LOG"];
    let out = run_script("openai-sdk-check.mjs", "openai", &env, &unset, NODE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\nworker log:\n{}", stack.worker.log()));
    let (stdout, stderr) = (out.stdout, out.stderr);
    assert!(
        out.status.success(),
        "OpenAI SDK checks failed ({}):\n{stdout}\n{stderr}\nworker log:\n{}",
        out.status,
        stack.worker.log()
    );
    assert!(stdout.contains("checks passed"), "unexpected output:\n{stdout}\n{stderr}");
    print!("{stdout}");

    // The cached question reached the provider exactly once (the MISS); the HITs and the
    // only-if-cached polls never did.
    assert_eq!(stack.fake().calls(&format!("{run_id}-cache")), 1, "provider calls for the cached question");
    assert_eq!(stack.fake().calls(&format!("{run_id}-stream")), 1, "provider calls for the stream");
    // A rejected key never reaches the provider.
    assert_eq!(stack.fake().calls(&format!("{run_id}-auth")), 0, "provider calls with a wrong gateway key");
    assert!(stack.fake().calls(&marker_500) >= 1, "the failing upstream was called");
    // Neither the upstream key nor the gateway key appears in the worker's own (JSON) log lines;
    // wrangler's banner listing the configured vars is not the worker's output.
    let log = stack.worker.log();
    let worker_lines: Vec<&str> = log.lines().filter(|l| l.trim_start().starts_with('{')).collect();
    assert!(!worker_lines.is_empty(), "the worker logged nothing (the upstream failure should be logged):\n{log}");
    for line in worker_lines {
        assert!(!line.contains(UPSTREAM_KEY) && !line.contains(KEY_A), "a key leaked into the worker log: {line}");
    }
}
