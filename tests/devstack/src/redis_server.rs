//! A real `redis-server` process for tests: free loopback port, no persistence, output to
//! a log file in its own temporary directory, ready only once it answers PING, and killed
//! when dropped (it can also be stopped and restarted mid-test on the same port).
//!
//! This module manages the process only; it must not talk RESP beyond the readiness PING
//! and must never touch a Redis it did not start.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Environment variable that overrides the redis-server binary.
pub const REDIS_SERVER_ENV: &str = "DEVSTACK_REDIS_SERVER";
const DEFAULT_BINARY: &str = "redis-server";
/// How long to wait for a fresh process to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts with a new port when the picked port was taken in the meantime.
const START_ATTEMPTS: usize = 3;

/// Why redis-server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisServerError {
    #[error(
        "`{binary}` is not installed or not on PATH (install it with `apt-get install \
         redis-server`, or set {REDIS_SERVER_ENV} to its path)"
    )]
    NotInstalled { binary: String },
    #[error("cannot spawn `{binary}`: {source}")]
    Spawn { binary: String, source: std::io::Error },
    #[error("cannot prepare a temporary directory or log file: {0}")]
    TempDir(std::io::Error),
    #[error("cannot find a free loopback port: {0}")]
    Port(std::io::Error),
    #[error("redis-server on port {port} exited before it was ready ({status}); log:\n{log}")]
    Exited { port: u16, status: String, log: String },
    #[error("redis-server on port {port} did not answer PING within {timeout:?}; log:\n{log}")]
    NotReady { port: u16, timeout: Duration, log: String },
}

/// A running (or stopped, see [`RedisServer::stop`]) redis-server owned by this value.
pub struct RedisServer {
    binary: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts redis-server (from `$DEVSTACK_REDIS_SERVER`, else `redis-server` on PATH) on
    /// a free `127.0.0.1` port and waits until it answers PING.
    pub fn start() -> Result<RedisServer, RedisServerError> {
        let binary = std::env::var(REDIS_SERVER_ENV).unwrap_or_else(|_| DEFAULT_BINARY.into());
        RedisServer::start_with(&binary)
    }

    /// Like [`RedisServer::start`], with an explicit redis-server binary.
    pub fn start_with(binary: &str) -> Result<RedisServer, RedisServerError> {
        let binary = binary.to_string();
        let dir = make_temp_dir().map_err(RedisServerError::TempDir)?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port().map_err(RedisServerError::Port)?;
            let mut server = RedisServer { binary: binary.clone(), port, dir: dir.clone(), child: None };
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                // Probably lost a race for the port: try another one.
                Err(e @ RedisServerError::Exited { .. }) => {
                    server.dir = PathBuf::new(); // keep the shared dir for the next attempt
                    last_error = Some(e);
                }
                Err(e) => {
                    server.dir = PathBuf::new();
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last_error.expect("at least one attempt was made"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Where redis-server writes its output.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// True while the process is running (not stopped and not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the process and waits for it to exit; the port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (if running) and starts again on the same port, with an empty dataset.
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        self.stop();
        self.spawn_and_wait()
    }

    fn spawn_and_wait(&mut self) -> Result<(), RedisServerError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(RedisServerError::TempDir)?;
        let log_err = log.try_clone().map_err(RedisServerError::TempDir)?;
        let port = self.port.to_string();
        let child = Command::new(&self.binary)
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    RedisServerError::NotInstalled { binary: self.binary.clone() }
                } else {
                    RedisServerError::Spawn { binary: self.binary.clone(), source }
                }
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(RedisServerError::Exited {
                        port: self.port,
                        status: status.to_string(),
                        log: read_log(&self.log_path()),
                    });
                }
            }
            if ping(self.addr()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(RedisServerError::NotReady {
                    port: self.port,
                    timeout: READY_TIMEOUT,
                    log: read_log(&self.log_path()),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// True if something on `addr` answers `PING` with `+PONG` within 500 ms.
fn ping(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let timeout = Duration::from_millis(500);
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply)?;
        Ok(&reply == b"+PONG\r\n")
    };
    attempt().unwrap_or(false)
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn make_temp_dir() -> std::io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "devstack-redis-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The last few KB of the log, for error messages.
fn read_log(path: &Path) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let start = text.len().saturating_sub(4096);
    let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    text[start..].to_string()
}
