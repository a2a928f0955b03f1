//! A server process of a local deployment (`wrangler dev`, `spin-host up`): spawned in its own
//! process group with its output in a log file, told to stop (SIGTERM) when the thread that
//! started it ends, ready once `GET /healthz` answers, and stopped with its whole group when
//! dropped. Its scratch folder goes too, unless `DEVSTACK_KEEP` is set.
//! Must not: know which runtime it runs (worker.rs and spin.rs do).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::http_client::HttpRequest;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not prepare {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} exited before it was ready; its log:\n{1}")]
    Exited(String, String),
    #[error("{0} was not ready within {1:?}; its log:\n{2}")]
    NotReady(String, Duration, String),
}

pub struct ServerProcess {
    name: String,
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    stop_grace: Duration,
    keep_dir: bool,
}

impl ServerProcess {
    /// Spawns the command `make(port)` builds, its output in `dir/<log_name>`, and waits up to
    /// `ready_timeout` for `/healthz`. With `port` 0 a free port is picked, and picked again when
    /// another process took it between the pick and the bind. Linux sends the stop signal when
    /// the *thread* that called this ends: call it from a thread that outlives the process's use.
    pub fn spawn(
        name: &str,
        port: u16,
        make: impl Fn(u16) -> Command,
        dir: PathBuf,
        log_name: &str,
        ready_timeout: Duration,
    ) -> Result<ServerProcess, ProcessError> {
        let attempts = if port == 0 { 3 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let port = if port == 0 { free_port()? } else { port };
            match ServerProcess::spawn_once(name, make(port), port, dir.clone(), log_name, ready_timeout) {
                Err(ProcessError::Exited(n, log)) if attempts > 1 && address_taken(&log) => {
                    last = Some(ProcessError::Exited(n, log));
                }
                other => return other,
            }
        }
        Err(last.expect("at least one attempt ran"))
    }

    fn spawn_once(
        name: &str,
        mut cmd: Command,
        port: u16,
        dir: PathBuf,
        log_name: &str,
        ready_timeout: Duration,
    ) -> Result<ServerProcess, ProcessError> {
        let log = dir.join(log_name);
        let out = std::fs::File::create(&log).map_err(|e| ProcessError::Io(log.display().to_string(), e))?;
        let err = out.try_clone().map_err(|e| ProcessError::Io(log.display().to_string(), e))?;
        cmd.current_dir(&dir).stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        // SAFETY: prctl is async-signal-safe and touches only the child being set up.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| ProcessError::Io(name.to_owned(), e))?;
        let mut process = ServerProcess {
            name: name.to_owned(),
            child: Some(child),
            port,
            dir,
            log,
            stop_grace: Duration::from_secs(8),
            keep_dir: false,
        };
        if let Err(e) = process.wait_ready(ready_timeout) {
            // A failed start must not remove the folder a retry reuses.
            process.keep_dir = true;
            return Err(e);
        }
        Ok(process)
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), ProcessError> {
        let started = Instant::now();
        let url = format!("{}/healthz", self.url());
        while started.elapsed() < limit {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return Err(ProcessError::Exited(self.name.clone(), self.log()));
                }
            }
            let probe = HttpRequest::get(&url).timeout(Duration::from_secs(5)).send();
            if probe.is_ok_and(|r| r.status == 200 || r.status == 503) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(ProcessError::NotReady(self.name.clone(), limit, self.log()))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id() as i32;
            // SAFETY: signals the process group this struct created and owns.
            unsafe {
                libc::kill(-pgid, libc::SIGTERM);
            }
            let deadline = Instant::now() + self.stop_grace;
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
        if !self.keep_dir && std::env::var_os("DEVSTACK_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether a server's log says its port was taken (Rust's and node's wording).
fn address_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("EADDRINUSE")
}

/// A fresh scratch folder `target/devstack/<prefix>-<pid>-<n>` under `root`.
pub fn unique_dir(root: &Path, prefix: &str) -> Result<PathBuf, ProcessError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = root.join("target/devstack").join(format!("{prefix}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| ProcessError::Io(dir.display().to_string(), e))?;
    Ok(dir)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16, ProcessError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| ProcessError::Io("port".into(), e))?;
    Ok(listener.local_addr().map_err(|e| ProcessError::Io("port".into(), e))?.port())
}

/// Runs an operator command of a runtime's own tooling (a KV write) to completion; its stderr is
/// the error.
pub fn run_tool(mut cmd: Command) -> Result<(), String> {
    let output = cmd.stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::address_taken;

    #[test]
    fn a_taken_port_is_recognised_in_both_runtimes_words() {
        assert!(address_taken(
            "spin-host: error: cannot listen on 127.0.0.1:36907: Address already in use (os error 98)"
        ));
        assert!(address_taken("Error: listen EADDRINUSE: address already in use 127.0.0.1:8787"));
        assert!(!address_taken("spin-host: error: manifest: unknown key `files`"));
    }
}
