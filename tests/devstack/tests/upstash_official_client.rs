//! Runs the official `@upstash/redis` client (node) against our Upstash REST endpoint over a
//! real redis-server, via tests/devstack/js/upstash-official-client.mjs.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use devstack::{spawn_upstash, RedisServer};

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
fn official_js_client_gets_exactly_upstash_results() {
    let root = repo_root();
    let node = root.join("node_modules/node/bin/node");
    let client = root.join("node_modules/@upstash/redis/package.json");
    assert!(
        node.exists() && client.exists(),
        "node 22 or @upstash/redis is missing under {}: run `npm ci` at the repo root",
        root.join("node_modules").display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js/upstash-official-client.mjs");

    let redis = RedisServer::start().expect("start redis-server");
    let upstash = spawn_upstash(redis.addr(), "devstack-test-token");

    let mut child = Command::new(&node)
        .arg(&script)
        .current_dir(&root)
        .env("UPSTASH_REDIS_REST_URL", upstash.url())
        .env("UPSTASH_REDIS_REST_TOKEN", upstash.token())
        .env("DEVSTACK_KEY_PREFIX", format!("official-{}", std::process::id()))
        .env("UPSTASH_DISABLE_TELEMETRY", "1")
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
            panic!("the official client script did not finish within {NODE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(status.success(), "official client checks failed ({status}):\n{stdout}\n{stderr}");
    assert!(stdout.contains("all") && stdout.contains("checks passed"), "unexpected output:\n{stdout}\n{stderr}");
}
