//! `upstash-rest --listen 127.0.0.1:8079 --redis 127.0.0.1:6379 --token TOKEN`: serves the
//! Upstash REST API over a Redis that is already running. Prints one line
//! `upstash-rest listening on http://ADDR` when ready. It does not start Redis.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;

const USAGE: &str = "usage: upstash-rest --listen 127.0.0.1:8079 --redis 127.0.0.1:6379 --token TOKEN\n\
  --listen  address to serve HTTP on (default 127.0.0.1:8079; port 0 picks a free one)\n\
  --redis   address of a running redis-server (default 127.0.0.1:6379)\n\
  --token   bearer token clients must send (required)";

fn main() -> anyhow::Result<()> {
    let flags = devstack::cli::parse_flags(std::env::args().skip(1), &["listen", "redis", "token"], USAGE)?;
    let listen: SocketAddr = flags
        .get("listen")
        .map_or("127.0.0.1:8079", String::as_str)
        .parse()
        .context("--listen must be an address like 127.0.0.1:8079")?;
    let redis: SocketAddr = flags
        .get("redis")
        .map_or("127.0.0.1:6379", String::as_str)
        .parse()
        .context("--redis must be an address like 127.0.0.1:6379")?;
    let token =
        flags.get("token").filter(|t| !t.is_empty()).with_context(|| format!("--token is required\n{USAGE}"))?.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start tokio")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("bind {listen}"))?;
        let addr = listener.local_addr().context("local address")?;
        println!("upstash-rest listening on http://{addr}");
        std::io::stdout().flush().context("flush stdout")?;
        devstack::upstash::serve(listener, redis, token).await;
        Ok(())
    })
}
