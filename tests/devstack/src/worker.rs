//! The built worker running in real workerd through `wrangler dev`, for tests and local runs.
//!
//! Each instance gets its own folder with a generated `wrangler.toml` (pointing at the one build
//! in `build/worker/shim.mjs`, without a build step, so instances never rebuild concurrently),
//! its own KV state (`--persist-to`), its own config folder (nothing under `~/.config`) and a
//! log file holding the worker's console lines. Process handling (process group, stop signal when
//! the starting thread ends, readiness, teardown) is `process::ServerProcess`'s.
//! `DEVSTACK_WORKER_BUILD` names a copy of `build/` to serve instead (the bench runs a copy taken
//! at its start, so that a rebuild meanwhile cannot reload or crash its `wrangler dev`).
//! Must not: build the worker (the test and start scripts do, once) or talk to anything but
//! loopback.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{free_port, run_tool, unique_dir, ProcessError, ServerProcess};

/// Serves this copy of `build/` instead of the built one.
pub const BUILD_VAR: &str = "DEVSTACK_WORKER_BUILD";

/// How long wrangler may take to answer its first request (a cold start takes ~3 s here).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the worker is not built ({0} is missing): run `npm test` (or tests/devstack/scripts/build-worker.sh)")]
    NotBuilt(PathBuf),
    #[error("node_modules is missing ({0}): run `npm install` at the repository root (npm test does)")]
    NoNodeModules(PathBuf),
    #[error(transparent)]
    Process(#[from] ProcessError),
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
    server: ServerProcess,
    root: PathBuf,
}

impl WorkerProcess {
    /// Starts the worker with these `[vars]` on `port` (0: a free one) and waits until it answers.
    pub fn start(vars: &[(String, String)], port: u16) -> Result<WorkerProcess, WorkerError> {
        let root = repo_root();
        let build = std::env::var_os(BUILD_VAR).map_or_else(|| root.join("build"), PathBuf::from);
        let shim = build.join("worker/shim.mjs");
        if !shim.exists() {
            return Err(WorkerError::NotBuilt(shim));
        }
        if !root.join("node_modules/.bin/wrangler").exists() {
            return Err(WorkerError::NoNodeModules(root.join("node_modules")));
        }
        let dir = unique_dir(&root, "worker")?;
        let config = dir.join("wrangler.toml");
        let io = |what: &Path, e| WorkerError::Process(ProcessError::Io(what.display().to_string(), e));
        // Secrets go to .dev.vars, as `wrangler secret put` would for a deployment: wrangler then
        // shows them as hidden instead of printing their values in its start-up banner.
        // Single-quoted .dev.vars values are taken literally; a value with a quote or a newline
        // stays in [vars].
        let literal = |v: &str| !v.contains('\'') && !v.contains('\n');
        let (secrets, plain): (Vec<_>, Vec<_>) = vars.iter().cloned().partition(|(k, v)| is_secret(k) && literal(v));
        std::fs::write(&config, wrangler_toml(&shim, &plain)).map_err(|e| io(&config, e))?;
        let dev_vars: String = secrets.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
        std::fs::write(dir.join(".dev.vars"), dev_vars).map_err(|e| io(&dir.join(".dev.vars"), e))?;
        let inspector = free_port()?;
        let make = |port: u16| {
            let mut cmd = wrangler_command(&root, &dir.join("xdg"));
            cmd.arg("dev")
                .arg("--config")
                .arg(&config)
                .args(["--ip", "127.0.0.1", "--port", &port.to_string(), "--inspector-port", &inspector.to_string()])
                .arg("--persist-to")
                .arg(dir.join("state"))
                .args(["--show-interactive-dev-session=false"]);
            cmd
        };
        let server = ServerProcess::spawn("wrangler dev", port, make, dir.clone(), "wrangler.log", READY_TIMEOUT)?;
        Ok(WorkerProcess { server, root })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Everything wrangler and the worker printed so far (the worker's JSON log lines included).
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Writes a raw value into this worker's local KV namespace with wrangler's own CLI, as an
    /// operator would: the worker reads it on its next lookup.
    pub fn kv_put_local(&self, key: &str, value: &str) -> Result<(), String> {
        let dir = self.server.dir();
        let mut cmd = wrangler_command(&self.root, &dir.join("xdg"));
        cmd.args(["kv", "key", "put", "--binding", "CACHE", "--local", "--persist-to"])
            .arg(dir.join("state"))
            .arg("--config")
            .arg(dir.join("wrangler.toml"))
            .args([key, value])
            .current_dir(dir);
        run_tool(cmd)
    }
}

/// Keys, tokens, shared secrets and the key maps (gateway, admin, publishable) are secrets.
fn is_secret(name: &str) -> bool {
    name.ends_with("_KEYS") || name.ends_with("_KEY") || name.ends_with("_TOKEN") || name.ends_with("_SECRET")
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
