//! Async connections to a real Redis and a small pool of them, with bounded connect and
//! command timeouts, so a stopped or hung Redis is an error quickly and never a hang.
//!
//! This module only moves commands and replies. It must not interpret replies for HTTP
//! (that is `upstash`), and it must never reuse a connection that failed mid-command.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::resp::{encode_command, read_reply, Reply, RespError};

/// Default time to wait for a TCP connection to Redis.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time one request (all its commands, including connecting) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 16;

/// Why Redis could not answer.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot connect to redis at {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("timed out connecting to redis at {addr} after {timeout:?}")]
    ConnectTimeout { addr: SocketAddr, timeout: Duration },
    #[error("redis at {addr} did not answer within {timeout:?}")]
    CommandTimeout { addr: SocketAddr, timeout: Duration },
    #[error("lost connection to redis at {addr}: {source}")]
    Lost { addr: SocketAddr, source: RespError },
}

/// One RESP2 connection. Dropped (never pooled again) after any error.
pub struct RedisConn {
    stream: BufReader<TcpStream>,
}

impl RedisConn {
    /// Connects, giving up after `timeout`.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<RedisConn, PoolError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| PoolError::ConnectTimeout { addr, timeout })?
            .map_err(|source| PoolError::Connect { addr, source })?;
        // Nagle would add delay to small pipelined writes; failing to disable it is harmless.
        let _ = stream.set_nodelay(true);
        Ok(RedisConn { stream: BufReader::new(stream) })
    }

    /// Sends all `commands` in one write, then reads exactly one reply per command.
    /// Error replies (`-ERR`) are values here, not failures.
    pub async fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>, RespError> {
        let mut replies = Vec::with_capacity(commands.len());
        self.pipeline_into(commands, &mut replies).await?;
        Ok(replies)
    }

    /// Like [`RedisConn::pipeline`], but leaves the replies read so far in `replies` on error,
    /// so the caller can tell whether Redis already ran anything.
    async fn pipeline_into(&mut self, commands: &[Vec<Vec<u8>>], replies: &mut Vec<Reply>) -> Result<(), RespError> {
        let mut out = Vec::new();
        for command in commands {
            encode_command(command, &mut out);
        }
        self.stream.get_mut().write_all(&out).await?;
        for _ in commands {
            replies.push(read_reply(&mut self.stream).await?);
        }
        Ok(())
    }
}

/// A pool of idle connections to one Redis address.
pub struct RedisPool {
    addr: SocketAddr,
    connect_timeout: Duration,
    command_timeout: Duration,
    idle: Mutex<Vec<RedisConn>>,
}

impl RedisPool {
    /// A pool with the default timeouts ([`CONNECT_TIMEOUT`], [`COMMAND_TIMEOUT`]).
    pub fn new(addr: SocketAddr) -> RedisPool {
        RedisPool::with_timeouts(addr, CONNECT_TIMEOUT, COMMAND_TIMEOUT)
    }

    pub fn with_timeouts(addr: SocketAddr, connect_timeout: Duration, command_timeout: Duration) -> RedisPool {
        RedisPool { addr, connect_timeout, command_timeout, idle: Mutex::new(Vec::new()) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs `commands` as one pipeline on one connection, bounded by the command timeout.
    ///
    /// A pooled connection may have died while idle (Redis restarted); if it fails before
    /// returning any reply, the commands are retried once on a fresh connection. A fresh
    /// connection is never retried, so a command is not run twice by a live Redis.
    pub async fn run(&self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>, PoolError> {
        let attempt = async {
            if let Some(mut conn) = self.take_idle() {
                let mut replies = Vec::with_capacity(commands.len());
                match conn.pipeline_into(commands, &mut replies).await {
                    Ok(()) => {
                        self.put_idle(conn);
                        return Ok(replies);
                    }
                    // Died while idle: nothing ran, so a fresh connection may run it.
                    Err(RespError::Closed | RespError::Io(_)) if replies.is_empty() => {}
                    Err(source) => return Err(PoolError::Lost { addr: self.addr, source }),
                }
            }
            let mut conn = RedisConn::connect(self.addr, self.connect_timeout).await?;
            let replies =
                conn.pipeline(commands).await.map_err(|source| PoolError::Lost { addr: self.addr, source })?;
            self.put_idle(conn);
            Ok(replies)
        };
        tokio::time::timeout(self.command_timeout, attempt)
            .await
            .map_err(|_| PoolError::CommandTimeout { addr: self.addr, timeout: self.command_timeout })?
    }

    fn take_idle(&self) -> Option<RedisConn> {
        self.idle.lock().expect("pool mutex poisoned").pop()
    }

    fn put_idle(&self, conn: RedisConn) {
        let mut idle = self.idle.lock().expect("pool mutex poisoned");
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}
