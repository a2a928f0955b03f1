//! The Spin build running in the Spin-compatible test host (`tests/spin-host`), for tests and
//! local runs: the counterpart of `worker.rs` for workerd.
//!
//! Each instance gets its own folder with a generated `spin.toml` that declares every worker var
//! as a Spin variable (lowercased, with the value as its default) and points at the one built
//! component, its own key-value directory, and a log file holding the component's stderr (its
//! JSON log lines). Process handling is `process::ServerProcess`'s. Must not: build the component
//! or the host (the scripts do).
//!
//! For measurements that compare builds or host settings (the bench), two variables change what
//! runs: `DEVSTACK_SPIN_COMPONENT` (a component other than the built one) and
//! `DEVSTACK_SPIN_HOST_ARGS` (extra `spin-host up` arguments, split on spaces, e.g.
//! `--tcp-nodelay`). Tests never set them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{run_tool, unique_dir, ProcessError, ServerProcess};
use crate::worker::repo_root;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Runs this component instead of the built one.
pub const COMPONENT_VAR: &str = "DEVSTACK_SPIN_COMPONENT";
/// Extra arguments of `spin-host up`.
pub const HOST_ARGS_VAR: &str = "DEVSTACK_SPIN_HOST_ARGS";

#[derive(Debug, thiserror::Error)]
pub enum SpinError {
    #[error("{0} is missing: run `npm test` (or build it: {1})")]
    NotBuilt(PathBuf, &'static str),
    #[error(transparent)]
    Process(#[from] ProcessError),
}

pub struct SpinProcess {
    server: ServerProcess,
    host: PathBuf,
}

impl SpinProcess {
    /// Starts the component with these vars on `port` (0: a free one); `kv` false grants it no
    /// key-value store (tier 1 then fails, as a misconfigured deployment would).
    pub fn start(vars: &[(String, String)], port: u16, kv: bool) -> Result<SpinProcess, SpinError> {
        let root = repo_root();
        let component = std::env::var_os(COMPONENT_VAR)
            .map_or_else(|| root.join("target/wasm32-wasip2/spin/llm_edge_cache.wasm"), PathBuf::from);
        if !component.exists() {
            return Err(SpinError::NotBuilt(
                component,
                "cargo build -p llm-edge-cache --target wasm32-wasip2 --profile spin",
            ));
        }
        let host = root.join("target/release/spin-host");
        if !host.exists() {
            return Err(SpinError::NotBuilt(host, "cargo build -p spin-host --release"));
        }
        let dir = unique_dir(&root, "spin")?;
        let manifest = dir.join("spin.toml");
        std::fs::write(&manifest, spin_toml(&component, vars, kv))
            .map_err(|e| ProcessError::Io(manifest.display().to_string(), e))?;
        let make = |port: u16| {
            let mut cmd = Command::new(&host);
            cmd.arg("up")
                .arg("--from")
                .arg(&manifest)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .arg("--kv-dir")
                .arg(dir.join("kv"))
                .args(std::env::var(HOST_ARGS_VAR).unwrap_or_default().split_whitespace());
            cmd
        };
        let server = ServerProcess::spawn("spin-host", port, make, dir.clone(), "spin.log", READY_TIMEOUT)?;
        Ok(SpinProcess { server, host })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Writes a raw value into this instance's `default` store, as an operator would.
    pub fn kv_put_local(&self, key: &str, value: &str) -> Result<(), String> {
        let mut cmd = Command::new(&self.host);
        cmd.arg("kv-set").arg("--kv-dir").arg(self.server.dir().join("kv")).args([key, value]);
        run_tool(cmd)
    }
}

/// A manifest like the committed `spin.toml`, with every var declared and granted, loopback as
/// the only outbound destination, and the store granted only when `kv`.
fn spin_toml(component: &Path, vars: &[(String, String)], kv: bool) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let mut t = String::new();
    t.push_str("spin_manifest_version = 2\n\n[application]\nname = \"llm-edge-cache-dev\"\n\n[variables]\n");
    for (k, v) in vars {
        writeln!(t, "{} = {{ default = {} }}", k.to_ascii_lowercase(), q(v)).expect("String write");
    }
    t.push_str("\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"gateway\"\n\n[component.gateway]\n");
    writeln!(t, "source = {}", q(&component.display().to_string())).expect("String write");
    writeln!(t, "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]").expect("String write");
    writeln!(t, "key_value_stores = [{}]\n\n[component.gateway.variables]", if kv { "\"default\"" } else { "" })
        .expect("String write");
    for (k, _) in vars {
        let low = k.to_ascii_lowercase();
        writeln!(t, "{low} = \"{{{{ {low} }}}}\"").expect("String write");
    }
    t
}
