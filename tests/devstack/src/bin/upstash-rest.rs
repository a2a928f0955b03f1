//! `upstash-rest --listen 127.0.0.1:8079 --redis 127.0.0.1:6379 --token TOKEN`: serves the
//! Upstash REST API over a Redis that is already running. Prints one line
//! `upstash-rest listening on http://ADDR` when ready. It does not start Redis.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;

/// Serves the Upstash REST API over a redis-server that is already running.
#[derive(Parser)]
#[command(name = "upstash-rest")]
struct Args {
    /// Address to serve HTTP on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:8079")]
    listen: SocketAddr,
    /// Address of a running redis-server
    #[arg(long, default_value = "127.0.0.1:6379")]
    redis: SocketAddr,
    /// Bearer token clients must send
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    token: String,
}

fn main() -> anyhow::Result<()> {
    let Args { listen, redis, token } = Args::parse();
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
