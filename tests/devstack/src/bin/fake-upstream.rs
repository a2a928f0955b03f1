//! `fake-upstream --listen 127.0.0.1:8089`: serves the scriptable fake LLM upstream.
//! Prints one line `fake-upstream listening on http://ADDR` when ready.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;

/// Serves the scriptable fake LLM upstream.
#[derive(Parser)]
#[command(name = "fake-upstream")]
struct Args {
    /// Address to serve HTTP on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let Args { listen } = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start tokio")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("bind {listen}"))?;
        let addr = listener.local_addr().context("local address")?;
        println!("fake-upstream listening on http://{addr}");
        std::io::stdout().flush().context("flush stdout")?;
        devstack::upstream::serve(listener).await;
        Ok(())
    })
}
