//! A whole local deployment: a real redis-server, the Upstash-REST endpoint over it, the fake
//! upstream (unless a real provider is given), and the worker in workerd wired to all three.
//! Used by the end-to-end suite (one stack per scenario group) and by `devstack up`.
//! Must not: hide a part's failure to start (each is an error naming the part).

use crate::redis_server::RedisServer;
use crate::spin::{SpinError, SpinProcess};
use crate::upstash::{try_spawn_upstash, UpstashHandle};
use crate::upstream::{try_spawn_upstream, UpstreamHandle};
use crate::worker::{WorkerError, WorkerProcess};

/// Gateway keys of the local and test deployments (not secrets: loopback only).
pub const KEY_A: &str = "sk-local-tenant-a";
pub const KEY_B: &str = "sk-local-tenant-b";
pub const UPSTASH_TOKEN: &str = "local-upstash-token";
/// The admin key of the local and test deployments (`ADMIN_KEYS`).
pub const ADMIN_KEY: &str = "adm-local-operator-key";
/// The key the fake upstream expects, so tests can check it is sent and never echoed.
pub const UPSTREAM_KEY: &str = "sk-fake-upstream-key";

/// Where chat calls go on a double miss.
pub enum Upstream {
    /// The scriptable fake (tests, and local runs without a key).
    Fake,
    /// A real OpenAI-compatible provider.
    Real { base_url: String, api_key: String },
}

/// Which runtime serves the gateway (`cloudflare` or `spin` on the binaries' command lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HostKind {
    /// workerd through `wrangler dev`.
    #[default]
    Cloudflare,
    /// The Spin build in the Spin-compatible test host.
    Spin,
}

/// The running gateway, on either host.
pub enum Worker {
    Workerd(WorkerProcess),
    Spin(SpinProcess),
}

impl Worker {
    pub fn url(&self) -> String {
        match self {
            Worker::Workerd(w) => w.url(),
            Worker::Spin(s) => s.url(),
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Worker::Workerd(w) => w.port(),
            Worker::Spin(s) => s.port(),
        }
    }

    /// Everything the runtime and the gateway printed (the gateway's JSON log lines included).
    pub fn log(&self) -> String {
        match self {
            Worker::Workerd(w) => w.log(),
            Worker::Spin(s) => s.log(),
        }
    }

    /// Writes a raw value into tier 1 with the host's own operator tool.
    pub fn kv_put_local(&self, key: &str, value: &str) -> Result<(), String> {
        match self {
            Worker::Workerd(w) => w.kv_put_local(key, value),
            Worker::Spin(s) => s.kv_put_local(key, value),
        }
    }
}

pub struct StackOptions {
    pub host: HostKind,
    /// Deploy without tier 1 (no KV binding on Workers, no store granted on Spin).
    pub kv_unbound: bool,
    pub upstream: Upstream,
    /// Extra worker vars; they replace the defaults of the same name. `{upstream}` in a value
    /// becomes the fake upstream's base URL (`http://127.0.0.1:PORT`), for `ROUTES`.
    pub vars: Vec<(String, String)>,
    /// The worker's port; 0 picks a free one.
    pub port: u16,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            host: HostKind::Cloudflare,
            kv_unbound: false,
            upstream: Upstream::Fake,
            vars: Vec::new(),
            port: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("redis-server did not start: {0}")]
    Redis(#[from] crate::redis_server::RedisServerError),
    #[error("the Upstash endpoint did not start: {0}")]
    Upstash(String),
    #[error("the fake upstream did not start: {0}")]
    Upstream(String),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error(transparent)]
    Spin(#[from] SpinError),
}

pub struct Stack {
    // Field order is drop order: the worker stops before the stores it talks to.
    pub worker: Worker,
    pub upstream: Option<UpstreamHandle>,
    pub upstash: UpstashHandle,
    pub redis: RedisServer,
    /// The worker's vars, `{upstream}` resolved (what a peer starts with).
    vars: Vec<(String, String)>,
}

impl Stack {
    pub fn start(options: StackOptions) -> Result<Stack, StackError> {
        let redis = RedisServer::start()?;
        let upstash = try_spawn_upstash(redis.addr(), UPSTASH_TOKEN).map_err(|e| StackError::Upstash(e.to_string()))?;
        let (upstream, base_url, api_key) = match options.upstream {
            Upstream::Fake => {
                let fake = try_spawn_upstream().map_err(|e| StackError::Upstream(e.to_string()))?;
                let base = format!("{}/v1", fake.url());
                (Some(fake), base, UPSTREAM_KEY.to_owned())
            }
            Upstream::Real { base_url, api_key } => (None, base_url, api_key),
        };
        let fake_url = upstream.as_ref().map(UpstreamHandle::url).unwrap_or_default();
        let mut vars: Vec<(String, String)> = [
            ("GATEWAY_KEYS", format!(r#"{{"{KEY_A}":"tenant-a","{KEY_B}":"tenant-b"}}"#)),
            ("ADMIN_KEYS", format!(r#"{{"{ADMIN_KEY}":"local-operator"}}"#)),
            ("UPSTREAM_BASE_URL", base_url),
            ("OPENAI_API_KEY", api_key),
            ("UPSTASH_REDIS_REST_URL", upstash.url()),
            ("UPSTASH_REDIS_REST_TOKEN", UPSTASH_TOKEN.to_owned()),
            ("MODELS", "gpt-4o-mini,gpt-4o".to_owned()),
            ("CORS_ALLOWED_ORIGINS", "*".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in options.vars {
            vars.retain(|(existing, _)| *existing != k);
            vars.push((k, v.replace("{upstream}", &fake_url)));
        }
        let worker = start_worker(options.host, &vars, options.kv_unbound, options.port)?;
        Ok(Stack { worker, upstream, upstash, redis, vars })
    }

    /// Another gateway on `host`, with this stack's vars: the same Redis (through the same
    /// Upstash endpoint) and upstream, its own memory and tier 1. What a second isolate or
    /// instance of one deployment shares with the first is what Redis holds. Drop it before the
    /// stack.
    pub fn start_peer(&self, host: HostKind) -> Result<Worker, StackError> {
        start_worker(host, &self.vars, false, 0)
    }

    pub fn url(&self) -> String {
        self.worker.url()
    }

    /// The fake upstream; panics on a stack that talks to a real provider.
    pub fn fake(&self) -> &UpstreamHandle {
        self.upstream.as_ref().expect("this stack uses the fake upstream")
    }
}

fn start_worker(host: HostKind, vars: &[(String, String)], kv_unbound: bool, port: u16) -> Result<Worker, StackError> {
    Ok(match host {
        HostKind::Cloudflare => {
            let mut vars = vars.to_vec();
            if kv_unbound {
                vars.push(("KV_BINDING".to_owned(), "NO_SUCH_BINDING".to_owned()));
            }
            Worker::Workerd(WorkerProcess::start(&vars, port)?)
        }
        HostKind::Spin => Worker::Spin(SpinProcess::start(vars, port, !kv_unbound)?),
    })
}
