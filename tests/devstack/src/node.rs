//! Runs a check script of `js/` with the pinned node 22 (`node_modules/node`), for tests that
//! drive the gateway or the Upstash endpoint with an official JavaScript client. Bounded in time;
//! output is drained while it runs so a chatty failure cannot block on a full pipe.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::worker::repo_root;

pub struct ScriptOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `js/<script>` with `env` set and `unset` removed. `package` is the npm package the
/// script needs: a missing one is reported as such, not as a script failure.
pub fn run_script(
    script: &str,
    package: &str,
    env: &[(&str, String)],
    unset: &[&str],
    timeout: Duration,
) -> Result<ScriptOutput, String> {
    let root = repo_root();
    let node = root.join("node_modules/node/bin/node");
    let installed = root.join("node_modules").join(package).join("package.json");
    if !node.exists() || !installed.exists() {
        return Err(format!(
            "node 22 or {package} is missing under {}: run `npm install` at the repository root (npm test does)",
            root.join("node_modules").display()
        ));
    }
    let mut cmd = Command::new(&node);
    cmd.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js").join(script)).current_dir(&root);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn node: {e}"))?;
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("poll node: {e}"))? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{script} did not finish within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().expect("the stdout reader does not panic");
    let stderr = stderr.join().expect("the stderr reader does not panic");
    Ok(ScriptOutput { status, stdout, stderr })
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}
