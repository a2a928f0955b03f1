//! The `spin-host up` command: prints its ready line, takes `--variable` and `SPIN_VARIABLE_*`,
//! and stops cleanly on SIGTERM; a missing required variable is an error exit.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Scratch, Upstream, get, guest_wasm, standard_manifest, write_manifest};

/// Kills the child if a test fails before it stopped by itself.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(start.elapsed() < limit, "spin-host did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn up_serves_until_sigterm() {
    let upstream = Upstream::start();
    let dir = Scratch::new("cli");
    let manifest = write_manifest(dir.path(), &standard_manifest(guest_wasm()));
    let child = Command::new(env!("CARGO_BIN_EXE_spin-host"))
        .args(["up", "--from"])
        .arg(&manifest)
        .args(["--listen", "127.0.0.1:0", "--kv-dir"])
        .arg(dir.path().join("kv"))
        .args(["--variable", &format!("upstream_port={}", upstream.port)])
        .env("SPIN_VARIABLE_GREETING", "from-env")
        .env("SPIN_VARIABLE_API_TOKEN", "env-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn spin-host");
    let mut child = Running(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("ready line");
    let url = line.trim().strip_prefix("spin-host listening on ").expect("ready line format").to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");

    let r = get(&format!("{url}/var/message"));
    assert_eq!((r.status, r.text().as_str()), (200, "from-env, world"), "SPIN_VARIABLE_GREETING is used");
    assert_eq!(get(&format!("{url}/var/token")).text(), "env-token");

    let pid = i32::try_from(child.0.id()).expect("pid fits");
    // SAFETY: sending a signal to our own child process, whose pid we hold.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_exit(&mut child.0, Duration::from_secs(15));
    assert!(status.success(), "spin-host exited with {status}");
}

#[test]
fn up_fails_on_a_missing_required_variable() {
    let dir = Scratch::new("cli-missing");
    let manifest = write_manifest(dir.path(), &standard_manifest(guest_wasm()));
    let out = Command::new(env!("CARGO_BIN_EXE_spin-host"))
        .args(["up", "--from"])
        .arg(&manifest)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("SPIN_VARIABLE_UPSTREAM_PORT")
        .output()
        .expect("run spin-host");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("upstream_port"), "{stderr}");
    assert!(out.stdout.is_empty(), "no ready line on failure");
    let usage = Command::new(env!("CARGO_BIN_EXE_spin-host")).arg("down").output().expect("run spin-host");
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn up_takes_spins_instance_reuse_flags_and_tcp_nodelay() {
    let upstream = Upstream::start();
    let dir = Scratch::new("cli-reuse");
    let manifest = write_manifest(dir.path(), &standard_manifest(guest_wasm()));
    let child = Command::new(env!("CARGO_BIN_EXE_spin-host"))
        .args(["up", "--from"])
        .arg(&manifest)
        .args(["--listen", "127.0.0.1:0", "--variable", &format!("upstream_port={}", upstream.port)])
        .args(["--max-instance-reuse-count", "2", "--max-instance-concurrent-reuse-count=1"])
        .args(["--idle-instance-timeout", "30s", "--tcp-nodelay"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn spin-host");
    let mut child = Running(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
    let url = line.trim().strip_prefix("spin-host listening on ").expect("ready line format").to_string();
    let counters: Vec<String> = (0..3).map(|_| get(&format!("{url}/instance")).text()).collect();
    assert_eq!(counters, ["1", "2", "1"], "two requests per instance");

    let refused = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_spin-host"))
            .args(["up", "--from"])
            .arg(&manifest)
            .args(args)
            .output()
            .expect("run spin-host");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stderr) = refused(&["--max-instance-reuse-count", "8..8"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--max-instance-reuse-count") && stderr.contains("empty"), "{stderr}");
    let (code, stderr) = refused(&["--idle-instance-timeout", "1m"]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stderr) = refused(&["--tcp-nodelay=yes"]);
    assert_eq!(code, Some(2), "{stderr}");
}
