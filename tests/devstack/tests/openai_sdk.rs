//! Runs the official OpenAI SDK (npm `openai`, node 22) against the gateway in workerd, via
//! tests/devstack/js/openai-sdk-check.mjs: cache MISS then HIT through `withResponse()`, model
//! list, streaming, and the SDK's typed errors for bad input, a wrong key and a failing upstream.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use devstack::stack::{Stack, StackOptions, KEY_A, UPSTREAM_KEY};
use serde_json::json;

const NODE_TIMEOUT: Duration = Duration::from_secs(90);

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn official_openai_sdk_sees_an_openai_compatible_gateway() {
    let root = repo_root();
    let node = root.join("node_modules/node/bin/node");
    let sdk = root.join("node_modules/openai/package.json");
    assert!(
        node.exists() && sdk.exists(),
        "node 22 or the `openai` package is missing under {}: run `npm ci` at the repo root",
        root.join("node_modules").display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js/openai-sdk-check.mjs");

    let stack = Stack::start(StackOptions::default()).expect("start the local stack");
    let run_id = format!("sdk-{}", std::process::id());
    let marker_500 = format!("{run_id}-upstream-500");
    stack.fake().add_rule(&marker_500, json!([{ "kind": "status", "status": 500 }]), true);

    let mut child = Command::new(&node)
        .arg(&script)
        .current_dir(&root)
        .env("GATEWAY_URL", stack.url())
        .env("GATEWAY_KEY", KEY_A)
        .env("SDK_RUN_ID", &run_id)
        .env("UPSTREAM_500_MARKER", &marker_500)
        // The SDK must take its settings from the script alone.
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_ORG_ID")
        .env_remove("OPENAI_PROJECT_ID")
        .env_remove("OPENAI_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    // Drain the pipes while waiting, so a chatty failure cannot block node on a full pipe.
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + NODE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the OpenAI SDK script did not finish within {NODE_TIMEOUT:?}\nworker log:\n{}", stack.worker.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        status.success(),
        "OpenAI SDK checks failed ({status}):\n{stdout}\n{stderr}\nworker log:\n{}",
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
