//! The built worker running in real workerd through `wrangler dev`, for tests and local runs.
//!
//! Each instance gets its own folder with a generated `wrangler.toml` (pointing at the one build
//! in `build/worker/shim.mjs`, without a build step, so instances never rebuild concurrently),
//! its own KV state (`--persist-to`), its own config folder (nothing under `~/.config`) and a
//! log file holding the worker's console lines. Wrangler runs in its own process group and gets
//! SIGTERM if the process that started it dies, so a crashed test leaves no workerd behind.
//! Linux sends that signal when the *thread* that started the process ends, so start a worker on
//! a thread that lives at least as long as the worker is used.
//! Must not: build the worker (the test and start scripts do, once) or talk to anything but
//! loopback.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::http_client::HttpRequest;

/// How long wrangler may take to answer its first request (a cold start takes ~3 s here).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the worker is not built ({0} is missing): run `worker-build --release` (npm test does)")]
    NotBuilt(PathBuf),
    #[error("node_modules is missing ({0}): run `npm ci` at the repository root (npm test does)")]
    NoNodeModules(PathBuf),
    #[error("could not prepare {0}: {1}")]
    Io(String, std::io::Error),
    #[error("wrangler dev exited before it was ready; its log:\n{0}")]
    Exited(String),
    #[error("wrangler dev was not ready within {0:?}; its log:\n{1}")]
    NotReady(Duration, String),
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root exists")
}

/// The environment every wrangler call gets: node 22 first on PATH, no telemetry, no lookups of
/// Cloudflare's servers, configuration written under `config_home`.
pub fn wrangler_command(root: &Path, config_home: &Path) -> Command {
    let node_bin = root.join("node_modules/node/bin");
    let path = format!("{}:{}", node_bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new(root.join("node_modules/.bin/wrangler"));
    cmd.env("PATH", path)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("XDG_CONFIG_HOME", config_home)
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0");
    cmd
}

/// One `wrangler dev` process serving the built worker.
pub struct WorkerProcess {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    root: PathBuf,
}

impl WorkerProcess {
    /// Starts the worker with these `[vars]` on `port` (0: a free one) and waits until it answers.
    pub fn start(vars: &[(String, String)], port: u16) -> Result<WorkerProcess, WorkerError> {
        let root = repo_root();
        let shim = root.join("build/worker/shim.mjs");
        if !shim.exists() {
            return Err(WorkerError::NotBuilt(shim));
        }
        if !root.join("node_modules/.bin/wrangler").exists() {
            return Err(WorkerError::NoNodeModules(root.join("node_modules")));
        }
        let dir = unique_dir(&root)?;
        let config = dir.join("wrangler.toml");
        // Secrets go to .dev.vars, as `wrangler secret put` would for a deployment: wrangler then
        // shows them as hidden instead of printing their values in its start-up banner.
        // Single-quoted .dev.vars values are taken literally; a value with a quote or a newline
        // stays in [vars].
        let literal = |v: &str| !v.contains('\'') && !v.contains('\n');
        let (secrets, plain): (Vec<_>, Vec<_>) = vars.iter().cloned().partition(|(k, v)| is_secret(k) && literal(v));
        std::fs::write(&config, wrangler_toml(&shim, &plain))
            .map_err(|e| WorkerError::Io(config.display().to_string(), e))?;
        let dev_vars: String = secrets.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
        std::fs::write(dir.join(".dev.vars"), dev_vars).map_err(|e| WorkerError::Io(".dev.vars".into(), e))?;
        let port = if port == 0 { free_port()? } else { port };
        let log = std::fs::File::create(dir.join("wrangler.log")).map_err(|e| WorkerError::Io("log".into(), e))?;
        let log_err = log.try_clone().map_err(|e| WorkerError::Io("log".into(), e))?;
        let mut cmd = wrangler_command(&root, &dir.join("xdg"));
        cmd.arg("dev")
            .arg("--config")
            .arg(&config)
            .args(["--ip", "127.0.0.1", "--port", &port.to_string(), "--inspector-port", &free_port()?.to_string()])
            .arg("--persist-to")
            .arg(dir.join("state"))
            .args(["--show-interactive-dev-session=false"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches only the child being set up.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| WorkerError::Io("wrangler dev".into(), e))?;
        let mut worker = WorkerProcess { child: Some(child), port, dir, root };
        worker.wait_ready()?;
        Ok(worker)
    }

    fn wait_ready(&mut self) -> Result<(), WorkerError> {
        let started = Instant::now();
        let url = format!("{}/healthz", self.url());
        while started.elapsed() < READY_TIMEOUT {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return Err(WorkerError::Exited(self.log()));
                }
            }
            let probe = HttpRequest::get(&url).timeout(Duration::from_secs(2)).send();
            if probe.is_ok_and(|r| r.status == 200 || r.status == 503) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(WorkerError::NotReady(READY_TIMEOUT, self.log()))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything wrangler and the worker printed so far (the worker's JSON log lines included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("wrangler.log")).unwrap_or_default()
    }

    /// Writes a raw value into this worker's local KV namespace with wrangler's own CLI, as an
    /// operator would: the worker reads it on its next lookup.
    pub fn kv_put_local(&self, key: &str, value: &str) -> Result<(), String> {
        let output = wrangler_command(&self.root, &self.dir.join("xdg"))
            .args(["kv", "key", "put", "--binding", "CACHE", "--local", "--persist-to"])
            .arg(self.dir.join("state"))
            .arg("--config")
            .arg(self.dir.join("wrangler.toml"))
            .args([key, value])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id() as i32;
            // SAFETY: signals the process group this struct created and owns.
            unsafe {
                libc::kill(-pgid, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above; whatever is left of the group is killed outright.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = child.wait();
        }
        if std::env::var_os("DEVSTACK_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Keys, tokens and the gateway key map are secrets.
fn is_secret(name: &str) -> bool {
    name == "GATEWAY_KEYS" || name.ends_with("_KEY") || name.ends_with("_TOKEN")
}

fn wrangler_toml(shim: &Path, vars: &[(String, String)]) -> String {
    let mut toml = String::new();
    let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
    writeln!(toml, "name = \"llm-edge-cache-dev\"").expect("String write");
    writeln!(toml, "main = {}", q(&shim.display().to_string())).expect("String write");
    writeln!(toml, "compatibility_date = \"2026-08-01\"\nsend_metrics = false\n").expect("String write");
    writeln!(toml, "[[kv_namespaces]]\nbinding = \"CACHE\"\nid = \"local-cache\"\n\n[vars]").expect("String write");
    for (k, v) in vars {
        // JSON string syntax is valid TOML basic-string syntax for what serde_json emits.
        writeln!(toml, "{k} = {}", q(v)).expect("String write");
    }
    toml
}

fn unique_dir(root: &Path) -> Result<PathBuf, WorkerError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = root.join("target/devstack").join(format!("worker-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| WorkerError::Io(dir.display().to_string(), e))?;
    Ok(dir)
}

fn free_port() -> Result<u16, WorkerError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| WorkerError::Io("port".into(), e))?;
    Ok(listener.local_addr().map_err(|e| WorkerError::Io("port".into(), e))?.port())
}
