//! `devstack up`: runs the function locally on its embedded defaults: workerd (wrangler dev)
//! with local KV, a real redis-server behind the Upstash-compatible REST endpoint, and the fake
//! upstream, or real OpenAI when OPENAI_API_KEY is set. Prints the URL and examples; Ctrl-C stops
//! everything. The worker must already be built (`npm start` builds it).

use clap::Parser;
use devstack::stack::{HostKind, Stack, StackOptions, Upstream, ADMIN_KEY, KEY_A};

#[derive(Parser)]
#[command(name = "devstack", about = "Runs llm-edge-cache locally on its dev stack")]
enum Command {
    /// Runs the gateway with redis-server, the Upstash REST endpoint and the fake upstream
    /// (or real OpenAI when OPENAI_API_KEY is set) until Ctrl-C
    Up {
        /// Port the gateway listens on
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Which runtime serves the gateway
        #[arg(long, value_enum, default_value_t = HostKind::Cloudflare)]
        host: HostKind,
    },
}

fn main() -> anyhow::Result<()> {
    let Command::Up { port, host } = Command::parse();
    let upstream = match std::env::var("OPENAI_API_KEY") {
        Ok(key) if !key.trim().is_empty() => Upstream::Real {
            base_url: std::env::var("UPSTREAM_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".into()),
            api_key: key,
        },
        _ => Upstream::Fake,
    };
    let real = matches!(upstream, Upstream::Real { .. });
    let runtime = if host == HostKind::Spin { "the Spin host" } else { "workerd" };
    let upstream_name = if real { "(real OpenAI)" } else { "the fake upstream" };
    eprintln!("starting redis-server, the Upstash REST endpoint, {upstream_name} and {runtime}...");
    let stack = Stack::start(StackOptions { host, upstream, port, ..StackOptions::default() })?;
    let url = stack.url();
    println!(
        r#"
llm-edge-cache is running at {url}
  host: {runtime}   tier 1: its local KV   tier 2: redis-server via Upstash REST at {upstash}
  upstream: {upstream}
  gateway key: {KEY_A}   admin key: {ADMIN_KEY}

Try it (run twice: the second answer says x-cache: HIT):
  curl -si {url}/v1/chat/completions \
    -H 'authorization: Bearer {KEY_A}' -H 'content-type: application/json' \
    -d '{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"Say hello"}}]}}'

With the OpenAI SDK (Python):
  from openai import OpenAI
  client = OpenAI(base_url="{url}/v1", api_key="{KEY_A}")
  r = client.chat.completions.with_raw_response.create(
      model="gpt-4o-mini", messages=[{{"role": "user", "content": "Say hello"}}])
  print(r.headers.get("x-cache"), r.parse().choices[0].message.content)

Health: curl -s {url}/healthz
Details (admin): curl -s {url}/admin/health -H 'authorization: Bearer {ADMIN_KEY}'
Stop: Ctrl-C
"#,
        upstash = stack.upstash.url(),
        upstream = if real {
            "OpenAI (OPENAI_API_KEY)".to_owned()
        } else {
            format!("fake OpenAI-compatible upstream at {}/v1", stack.fake().url())
        },
    );
    let signals = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    signals.block_on(tokio::signal::ctrl_c())?;
    eprintln!("stopping...");
    drop(stack);
    Ok(())
}
