//! The `upstash-rest` and `fake-upstream` binaries: they print their ready line with the
//! bound address and serve on it. Each child is killed when the test ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use devstack::{HttpRequest, RedisServer};
use serde_json::json;

/// Kills the child on drop, so a failing assertion never leaks a process.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary args...` and returns it with the URL from its ready line.
fn start(binary: &str, args: &[&str], ready_prefix: &str) -> (Running, String) {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(10)).expect("ready line within 10 s");
    let url =
        line.trim().strip_prefix(ready_prefix).unwrap_or_else(|| panic!("unexpected ready line {line:?}")).to_string();
    (running, url)
}

#[test]
fn upstash_rest_binary_serves_the_rest_api() {
    let redis = RedisServer::start().expect("start redis-server");
    let redis_addr = redis.addr().to_string();
    let (_child, url) = start(
        env!("CARGO_BIN_EXE_upstash-rest"),
        &["--listen", "127.0.0.1:0", "--redis", &redis_addr, "--token", "bin-token"],
        "upstash-rest listening on ",
    );
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let set = HttpRequest::post(&url)
        .header("authorization", "Bearer bin-token")
        .json(&json!(["SET", "from-binary", "yes"]))
        .send()
        .unwrap();
    assert_eq!(set.json().unwrap(), json!({"result": "OK"}));
    let get = HttpRequest::get(&format!("{url}/get/from-binary?_token=bin-token")).send().unwrap();
    assert_eq!(get.json().unwrap(), json!({"result": "yes"}));
}

#[test]
fn upstash_rest_binary_rejects_bad_arguments() {
    let output = Command::new(env!("CARGO_BIN_EXE_upstash-rest"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("run upstash-rest");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("required") && stderr.contains("--token"), "{stderr}");
}

#[test]
fn fake_upstream_binary_serves_chat_completions() {
    let (_child, url) =
        start(env!("CARGO_BIN_EXE_fake-upstream"), &["--listen", "127.0.0.1:0"], "fake-upstream listening on ");
    let response = HttpRequest::post(&format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi bin"}]}))
        .send()
        .unwrap();
    assert_eq!(response.status, 200);
    let content = response.json().unwrap()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(content.ends_with(": hi bin"), "{content}");
    let calls = HttpRequest::get(&format!("{url}/__control/calls?match=hi%20bin")).send().unwrap();
    assert_eq!(calls.json().unwrap()["count"], 1);
}
