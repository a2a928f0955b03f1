//! `fake-upstream --listen 127.0.0.1:8089`: serves the scriptable fake LLM upstream.
//! Prints one line `fake-upstream listening on http://ADDR` when ready.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;

const USAGE: &str = "usage: fake-upstream --listen 127.0.0.1:8089\n\
  --listen  address to serve HTTP on (default 127.0.0.1:8089; port 0 picks a free one)";

fn main() -> anyhow::Result<()> {
    let flags = devstack::cli::parse_flags(std::env::args().skip(1), &["listen"], USAGE)?;
    let listen: SocketAddr = flags
        .get("listen")
        .map_or("127.0.0.1:8089", String::as_str)
        .parse()
        .context("--listen must be an address like 127.0.0.1:8089")?;
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
