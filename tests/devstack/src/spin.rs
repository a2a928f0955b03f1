//! The Spin build running in the Spin-compatible test host (`tests/spin-host`), for tests and
//! local runs: the counterpart of `worker.rs` for workerd.
//!
//! Each instance gets its own folder with a generated `spin.toml` that declares every worker var
//! as a Spin variable (lowercased, with the value as its default) and points at the one built
//! component, its own key-value directory, and a log file holding the component's stderr (its
//! JSON log lines). Like wrangler, the host runs in its own process group and gets SIGTERM when
//! the thread that started it ends. Must not: build the component or the host (the scripts do).

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::http_client::HttpRequest;
use crate::worker::repo_root;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SpinError {
    #[error("{0} is missing: run `npm test` (or build it: {1})")]
    NotBuilt(PathBuf, &'static str),
    #[error("could not prepare {0}: {1}")]
    Io(String, std::io::Error),
    #[error("spin-host exited before it was ready; its log:\n{0}")]
    Exited(String),
    #[error("spin-host was not ready within {0:?}; its log:\n{1}")]
    NotReady(Duration, String),
}

pub struct SpinProcess {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    host: PathBuf,
}

impl SpinProcess {
    /// Starts the component with these vars on `port` (0: a free one); `kv` false grants it no
    /// key-value store (tier 1 then fails, as a misconfigured deployment would).
    pub fn start(vars: &[(String, String)], port: u16, kv: bool) -> Result<SpinProcess, SpinError> {
        let root = repo_root();
        let component = root.join("target/wasm32-wasip2/spin/llm_edge_cache.wasm");
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
        let dir = unique_dir(&root)?;
        let manifest = dir.join("spin.toml");
        std::fs::write(&manifest, spin_toml(&component, vars, kv))
            .map_err(|e| SpinError::Io(manifest.display().to_string(), e))?;
        let port = if port == 0 { free_port()? } else { port };
        let log = std::fs::File::create(dir.join("spin.log")).map_err(|e| SpinError::Io("log".into(), e))?;
        let log_err = log.try_clone().map_err(|e| SpinError::Io("log".into(), e))?;
        let mut cmd = Command::new(&host);
        cmd.arg("up")
            .arg("--from")
            .arg(&manifest)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--kv-dir")
            .arg(dir.join("kv"))
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
        let child = cmd.spawn().map_err(|e| SpinError::Io("spin-host".into(), e))?;
        let mut spin = SpinProcess { child: Some(child), port, dir, host };
        spin.wait_ready()?;
        Ok(spin)
    }

    fn wait_ready(&mut self) -> Result<(), SpinError> {
        let started = Instant::now();
        let url = format!("{}/healthz", self.url());
        while started.elapsed() < READY_TIMEOUT {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return Err(SpinError::Exited(self.log()));
                }
            }
            let probe = HttpRequest::get(&url).timeout(Duration::from_secs(5)).send();
            if probe.is_ok_and(|r| r.status == 200 || r.status == 503) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(SpinError::NotReady(READY_TIMEOUT, self.log()))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("spin.log")).unwrap_or_default()
    }

    /// Writes a raw value into this instance's `default` store, as an operator would.
    pub fn kv_put_local(&self, key: &str, value: &str) -> Result<(), String> {
        let output = Command::new(&self.host)
            .arg("kv-set")
            .arg("--kv-dir")
            .arg(self.dir.join("kv"))
            .args([key, value])
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

impl Drop for SpinProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id() as i32;
            // SAFETY: signals the process group this struct created and owns.
            unsafe {
                libc::kill(-pgid, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(8);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above.
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

fn unique_dir(root: &Path) -> Result<PathBuf, SpinError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = root.join("target/devstack").join(format!("spin-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| SpinError::Io(dir.display().to_string(), e))?;
    Ok(dir)
}

fn free_port() -> Result<u16, SpinError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| SpinError::Io("port".into(), e))?;
    Ok(listener.local_addr().map_err(|e| SpinError::Io("port".into(), e))?.port())
}
