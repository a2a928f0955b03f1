//! Configuration, read once from named variables (Workers vars/secrets, Spin variables), with every
//! problem reported together. Secrets are a type that redacts itself in Debug and Display.
//!
//! Degrade instead of dying: a broken part is dropped and reported (a target from its route, tier 2
//! without its token, the admin surface without valid keys) and the rest serves. Only when nothing
//! can be served (no usable gateway key, no model with a usable target) is the configuration an
//! error. Must not: read the environment itself (values come through the `Vars` port), or put any
//! value into a problem: problems name variables and fields only.

pub mod browser;
mod keys;
pub mod metrics;
pub mod pacing;
pub mod tenants;

use std::fmt;

pub use browser::BrowserAuth;
pub use keys::KeyRing;
pub use tenants::{Budget, MaxTokensPolicy, OverBudget, TenantPolicy, Tenants};

use crate::ports::Vars;
use crate::prices::Prices;
use crate::routing::backoff::RetryPolicy;
use crate::routing::breaker::BreakerConfig;
use crate::routing::table::{ProviderKind, RouteTable, Target, TargetDefaults};

/// A value that must never reach a log line or a response.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which origins a browser page may call the gateway from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    Disabled,
    Any,
    Origins(Vec<String>),
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    pub fn allow(&self, origin: &str) -> Option<String> {
        match self {
            Cors::Disabled => None,
            Cors::Any => Some("*".to_owned()),
            Cors::Origins(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)).then(|| origin.to_owned()),
        }
    }
}

/// How provider calls are bounded (per target settings in `ROUTES` override the first two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Bound on one non-streaming attempt, and on the wait for a stream's first byte.
    pub timeout_ms: u64,
    /// Bound on the whole request across every attempt and target.
    pub deadline_ms: u64,
    /// Bound on the silence between two chunks of a stream.
    pub stream_idle_timeout_ms: u64,
    /// Bound on the wait for a stream's first content event, from the attempt's start (per target
    /// `first_token_timeout_ms` in `ROUTES` overrides it); until then a stream may fail over.
    pub first_token_timeout_ms: u64,
    /// Answers larger than this are not accepted (and so never stored).
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstashConfig {
    pub url: String,
    pub token: Secret,
    pub timeout_ms: u64,
    /// The deployment prefix every Redis key starts with (`stores::redis`).
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Gateway key -> tenant.
    tenants: KeyRing,
    /// Admin key -> admin id (`ADMIN_KEYS`); empty: the admin surface is off.
    admins: KeyRing,
    /// What was wrong but could be worked around (reported by `/admin/health` and in the logs).
    pub problems: Vec<String>,
    pub upstream: UpstreamConfig,
    /// Which targets answer which model.
    pub routes: RouteTable,
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    /// Tier 2; `None` when not configured (the gateway then runs on tier 1 alone).
    pub upstash: Option<UpstashConfig>,
    pub fresh_ttl_s: u64,
    pub stale_ttl_s: u64,
    pub kv_timeout_ms: u64,
    /// How long tier 1 has to answer before tier 2 is asked too (`TIER2_HEDGE_MS`).
    pub tier2_hedge_ms: u64,
    /// With a stale entry in hand, how long the providers have to start answering before the
    /// stale entry answers instead (`STALE_DEADLINE_MS`; bounds the failover like its deadline).
    pub stale_deadline_ms: u64,
    /// Single flight (`COALESCE_WAIT_MS`): how long a request whose call another isolate leads
    /// waits for that answer in tier 2 before calling the provider itself; also how long a claim
    /// lasts. 0 turns coalescing off.
    pub coalesce_wait_ms: u64,
    pub max_body_bytes: usize,
    pub max_entry_bytes: usize,
    pub cors: Cors,
    /// Model names listed by `GET /v1/models` (`MODELS`, else the routed models).
    pub models: Vec<String>,
    /// Part of every cache key (`CACHE_GENERATION`): a new value retires every entry at once.
    pub generation: String,
    /// Whether an answer cut short by `max_tokens` (`finish_reason: length`) may be stored.
    pub store_truncated: bool,
    /// Each tenant's guard rails (`TENANTS`).
    pub tenant_policies: Tenants,
    /// Signed browser tokens and publishable keys (`config::browser`).
    pub browser: BrowserAuth,
    /// Pacing below the providers' declared limits (`PACING_*`).
    pub pacing: crate::routing::pacing::Pacing,
    /// Target ids taken out of rotation at deploy time (`DISABLED_TARGETS`).
    pub disabled_targets: Vec<String>,
    /// What tokens cost per model (`PRICES` over the built-in table).
    pub prices: Prices,
    pub metrics: metrics::MetricsConfig,
}

/// The configuration could serve nothing: every problem found, each naming the variable (never
/// its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

pub const DEFAULT_UPSTREAM: &str = "https://api.openai.com/v1";

/// Tier 1's usual slowest answers (about its p95 for a hit): a hit within this costs no Redis
/// command, and a slower tier 1 costs a tier-2 hit only this much (README, Cache behaviour).
pub const DEFAULT_TIER2_HEDGE_MS: u64 = 25;

/// The wait for a stream's first content event (README, Routing and failover): as long as a
/// stream may stay silent between chunks (`UPSTREAM_STREAM_IDLE_TIMEOUT_MS`'s default), which is
/// room for most reasoning before the first token; a provider that has sent nothing worth
/// showing by then is given up while the client has seen nothing.
pub const DEFAULT_FIRST_TOKEN_TIMEOUT_MS: u64 = 60_000;

/// How long a stale entry waits for the providers (README, Cache behaviour).
pub const DEFAULT_STALE_DEADLINE_MS: u64 = 10_000;
pub const DEFAULT_COALESCE_WAIT_MS: u64 = 20_000;

/// Every variable `Config::from_vars` reads, besides the key secrets `ROUTES` names (see
/// `Config::variables_for`). Hosts whose variables must be fetched ahead (Spin) fetch these;
/// a test checks that nothing else is read.
pub const VARIABLES: &[&str] = &[
    "GATEWAY_KEYS",
    "ROUTES",
    "OPENAI_API_KEY",
    "UPSTREAM_BASE_URL",
    "UPSTREAM_TIMEOUT_MS",
    "UPSTREAM_DEADLINE_MS",
    "UPSTREAM_STREAM_IDLE_TIMEOUT_MS",
    "UPSTREAM_FIRST_TOKEN_TIMEOUT_MS",
    "STALE_DEADLINE_MS",
    "MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_TOKENS",
    "RETRIES_PER_TARGET",
    "RETRY_BASE_MS",
    "RETRY_MAX_MS",
    "RETRY_AFTER_CAP_MS",
    "COOLDOWN_DEFAULT_MS",
    "BREAKER_ERROR_PERCENT",
    "BREAKER_WINDOW_SECONDS",
    "BREAKER_MIN_REQUESTS",
    "BREAKER_OPEN_SECONDS",
    "UPSTASH_REDIS_REST_URL",
    "UPSTASH_REDIS_REST_TOKEN",
    "REDIS_TIMEOUT_MS",
    "CACHE_FRESH_TTL_SECONDS",
    "CACHE_STALE_TTL_SECONDS",
    "KV_TIMEOUT_MS",
    "TIER2_HEDGE_MS",
    "COALESCE_WAIT_MS",
    "MAX_BODY_BYTES",
    "MAX_ENTRY_BYTES",
    "CORS_ALLOWED_ORIGINS",
    "MODELS",
    "ADMIN_KEYS",
    "CACHE_GENERATION",
    "DEPLOYMENT_PREFIX",
    "CACHE_TRUNCATED_ANSWERS",
    "TENANTS",
    "DISABLED_TARGETS",
    "PRICES",
    "BROWSER_TOKEN_SECRET",
    "BROWSER_TOKEN_PUBLIC_KEY",
    "BROWSER_TOKEN_AUDIENCE",
    "BROWSER_TOKEN_MAX_TTL_SECONDS",
    "PUBLISHABLE_KEYS",
    "PACING_SHARE_PERCENT",
    "PACING_HIGH_WAIT_MS",
    "METRICS_RETENTION_SECONDS",
    "METRICS_FLUSH_MS",
];

impl Config {
    pub fn from_vars(vars: &impl Vars) -> Result<Config, ConfigError> {
        let mut r = Reader { vars, problems: Vec::new() };
        let tenants = match r.string("GATEWAY_KEYS") {
            Some(raw) => KeyRing::parse(&raw, "GATEWAY_KEYS", 8, "a tenant name", &mut r.problems),
            None => KeyRing::default(),
        };
        let mut fatal = Vec::new();
        if tenants.is_empty() {
            fatal.push("GATEWAY_KEYS must map at least one gateway key (8 characters or more) to a tenant name");
        }
        let admins = match r.string("ADMIN_KEYS") {
            Some(raw) => KeyRing::parse(&raw, "ADMIN_KEYS", 16, "an admin name", &mut r.problems),
            None => KeyRing::default(),
        };
        let admins = if admins.shares_a_key_with(&tenants) {
            r.problem("ADMIN_KEYS must not reuse a gateway key: the admin surface is off until they differ");
            KeyRing::default()
        } else {
            admins
        };
        let defaults = TargetDefaults { default_max_tokens: r.number("DEFAULT_MAX_TOKENS", 4096, 1, 1_000_000) };
        let routes = match r.string("ROUTES") {
            Some(raw) => RouteTable::parse(&raw, vars, &defaults, &mut r.problems),
            None => r.default_route(&defaults),
        };
        if !routes.serves_anything() {
            fatal.push("no model has a usable target (see ROUTES, or UPSTREAM_BASE_URL and OPENAI_API_KEY)");
        }
        let retry = RetryPolicy {
            retries: r.number("RETRIES_PER_TARGET", 1, 0, 5) as u32,
            base_ms: r.number("RETRY_BASE_MS", 250, 1, 60_000),
            max_ms: r.number("RETRY_MAX_MS", 4_000, 1, 60_000),
            retry_after_cap_ms: r.number("RETRY_AFTER_CAP_MS", 5_000, 0, 600_000),
            default_cooldown_ms: r.number("COOLDOWN_DEFAULT_MS", 10_000, 0, 3_600_000),
        };
        let breaker = BreakerConfig {
            error_rate: r.number("BREAKER_ERROR_PERCENT", 5, 1, 100) as f64 / 100.0,
            window_ms: r.number("BREAKER_WINDOW_SECONDS", 60, 1, 3_600) * 1000,
            min_requests: r.number("BREAKER_MIN_REQUESTS", 20, 1, 100_000) as u32,
            open_ms: r.number("BREAKER_OPEN_SECONDS", 30, 1, 3_600) * 1000,
        };
        let upstream = UpstreamConfig {
            timeout_ms: r.number("UPSTREAM_TIMEOUT_MS", 120_000, 1, 600_000),
            deadline_ms: r.number("UPSTREAM_DEADLINE_MS", 180_000, 1, 900_000),
            stream_idle_timeout_ms: r.number("UPSTREAM_STREAM_IDLE_TIMEOUT_MS", 60_000, 1, 600_000),
            first_token_timeout_ms: r.number(
                "UPSTREAM_FIRST_TOKEN_TIMEOUT_MS",
                DEFAULT_FIRST_TOKEN_TIMEOUT_MS,
                1,
                600_000,
            ),
            max_response_bytes: r.number("MAX_RESPONSE_BYTES", 8 << 20, 1024, 64 << 20) as usize,
        };
        let upstash = r.upstash();
        let listed = r.list("MODELS");
        let models = if listed.is_empty() { routes.models().map(str::to_owned).collect() } else { listed };
        let served = |m: &str| models.iter().any(|x| x == m) && routes.route(m).is_ok();
        let tenant_policies = match r.string("TENANTS") {
            Some(raw) => Tenants::parse(&raw, |name| tenants.has_name(name), served, &mut r.problems),
            None => Tenants::default(),
        };
        if tenant_policies.any_rate_limits() && upstash.is_none() {
            r.problem("TENANTS sets rate limits or budgets, which are kept in Redis: without a usable UPSTASH_REDIS_REST_URL and token they are not checked (fail_closed tenants are refused)");
        }
        let disabled_targets = r.list("DISABLED_TARGETS");
        let unknown = disabled_targets.iter().filter(|id| !routes.all_targets().iter().any(|t| &t.id == *id)).count();
        if unknown > 0 {
            r.problem(format!("DISABLED_TARGETS: {unknown} id(s) name no target of ROUTES"));
        }
        let prices = match r.string("PRICES") {
            Some(raw) => Prices::parse(&raw, &mut r.problems),
            None => Prices::default(),
        };
        let browser = BrowserAuth::read(vars, |name| tenants.has_name(name), &mut r.problems);
        let config = Config {
            tenants,
            admins,
            problems: Vec::new(),
            upstream,
            routes,
            retry,
            breaker,
            upstash,
            fresh_ttl_s: r.number("CACHE_FRESH_TTL_SECONDS", 7 * 86_400, 1, 365 * 86_400),
            stale_ttl_s: r.number("CACHE_STALE_TTL_SECONDS", 30 * 86_400, 0, 365 * 86_400),
            kv_timeout_ms: r.number("KV_TIMEOUT_MS", 200, 1, 60_000),
            tier2_hedge_ms: r.number("TIER2_HEDGE_MS", DEFAULT_TIER2_HEDGE_MS, 0, 60_000),
            stale_deadline_ms: r.number("STALE_DEADLINE_MS", DEFAULT_STALE_DEADLINE_MS, 1, 900_000),
            coalesce_wait_ms: r.number("COALESCE_WAIT_MS", DEFAULT_COALESCE_WAIT_MS, 0, 600_000),
            max_body_bytes: r.number("MAX_BODY_BYTES", 4 << 20, 1024, 64 << 20) as usize,
            max_entry_bytes: r.number("MAX_ENTRY_BYTES", 4 << 20, 1024, 24 << 20) as usize,
            cors: r.cors("CORS_ALLOWED_ORIGINS"),
            models,
            generation: r.generation("CACHE_GENERATION"),
            store_truncated: r.boolean("CACHE_TRUNCATED_ANSWERS", false),
            tenant_policies,
            browser,
            pacing: pacing::read(vars, &mut r.problems),
            disabled_targets,
            prices,
            metrics: metrics::MetricsConfig::read(&mut r),
        };
        if fatal.is_empty() {
            Ok(Config { problems: r.problems, ..config })
        } else {
            let mut problems: Vec<String> = fatal.into_iter().map(str::to_owned).collect();
            problems.extend(r.problems);
            Err(ConfigError { problems })
        }
    }

    /// The names of the key secrets a `ROUTES` value refers to (an unreadable value names none;
    /// `from_vars` reports it).
    pub fn variables_for(routes: &str) -> Vec<String> {
        let Ok(serde_json::Value::Object(models)) = serde_json::from_str::<serde_json::Value>(routes) else {
            return Vec::new();
        };
        let mut names: Vec<String> = models
            .values()
            .filter_map(serde_json::Value::as_array)
            .flatten()
            .filter_map(|t| t.get("key").and_then(serde_json::Value::as_str).map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The tenant a gateway key belongs to.
    pub fn tenant_for_key(&self, key: &str) -> Option<&str> {
        self.tenants.find(key)
    }

    /// The admin an admin key belongs to; `None` also when the admin surface is off.
    pub fn admin_for_key(&self, key: &str) -> Option<&str> {
        self.admins.find(key)
    }

    /// Whether some gateway key belongs to `tenant`.
    pub fn tenant_exists(&self, tenant: &str) -> bool {
        self.tenants.has_name(tenant)
    }

    /// The tenant named `name`, as kept here, if some gateway key belongs to it.
    pub fn tenant_named(&self, name: &str) -> Option<&str> {
        self.tenants.name(name)
    }

    /// Whether `ADMIN_KEYS` holds at least one usable key.
    pub fn admin_enabled(&self) -> bool {
        !self.admins.is_empty()
    }
}

struct Reader<'a, V: Vars> {
    vars: &'a V,
    problems: Vec<String>,
}

impl<V: Vars> Reader<'_, V> {
    fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }

    fn string(&mut self, name: &str) -> Option<String> {
        self.vars.var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn number(&mut self, name: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(raw) = self.string(name) else { return default };
        match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.problem(format!("{name} must be a whole number from {min} to {max}"));
                default
            }
        }
    }

    fn url(&mut self, name: &str) -> Option<String> {
        let raw = self.string(name)?;
        let scheme_ok = raw.starts_with("https://") || raw.starts_with("http://");
        if !scheme_ok || raw.parse::<http::Uri>().is_err() {
            self.problem(format!("{name} must be an http:// or https:// URL"));
            return None;
        }
        Some(raw)
    }

    fn list(&mut self, name: &str) -> Vec<String> {
        self.string(name)
            .map(|raw| raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    fn cors(&mut self, name: &str) -> Cors {
        let origins = self.list(name);
        if origins.is_empty() {
            Cors::Disabled
        } else if origins.iter().any(|o| o == "*") {
            Cors::Any
        } else {
            Cors::Origins(origins)
        }
    }

    fn boolean(&mut self, name: &str, default: bool) -> bool {
        match self.string(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if v == "true" || v == "1" => true,
            Some(v) if v == "false" || v == "0" => false,
            Some(_) => {
                self.problem(format!("{name} must be true or false"));
                default
            }
        }
    }

    /// `CACHE_GENERATION`: empty by default. A value that is not a short name still retires
    /// every entry (it is replaced by one no valid value can equal) and is reported.
    fn generation(&mut self, name: &str) -> String {
        match self.string(name) {
            None => String::new(),
            Some(v) if keys::is_name(&v) => v,
            Some(_) => {
                self.problem(format!(
                    "{name} must be 1 to 64 letters, digits, '.', '_' or '-'; a placeholder generation is used"
                ));
                "!unreadable".to_owned()
            }
        }
    }

    /// Tier 2, or `None` when it is not configured or cannot be used (reported: the gateway
    /// then serves from tier 1 and the providers).
    fn upstash(&mut self) -> Option<UpstashConfig> {
        let url = self.url("UPSTASH_REDIS_REST_URL");
        let token = self.string("UPSTASH_REDIS_REST_TOKEN");
        let timeout_ms = self.number("REDIS_TIMEOUT_MS", 300, 1, 60_000);
        let prefix = match self.string("DEPLOYMENT_PREFIX") {
            None => Some(crate::stores::redis::DEFAULT_PREFIX.to_owned()),
            Some(p) if keys::is_name(&p) => Some(p),
            Some(_) => {
                self.problem("DEPLOYMENT_PREFIX must be 1 to 64 letters, digits, '.', '_' or '-'; tier 2 is off");
                None
            }
        };
        let url_set = self.string("UPSTASH_REDIS_REST_URL").is_some();
        match (url, token) {
            (Some(url), Some(token)) => {
                if !is_header_safe(&token) {
                    self.problem("UPSTASH_REDIS_REST_TOKEN must be visible ASCII characters only; tier 2 is off");
                    return None;
                }
                Some(UpstashConfig {
                    url: url.trim_end_matches('/').to_owned(),
                    token: Secret(token),
                    timeout_ms,
                    prefix: prefix?,
                })
            }
            (None, None) => None,
            (Some(_), None) => {
                self.problem("UPSTASH_REDIS_REST_TOKEN is required when UPSTASH_REDIS_REST_URL is set; tier 2 is off");
                None
            }
            (None, Some(_)) if url_set => {
                // The URL itself was reported as unusable.
                self.problem("tier 2 is off until UPSTASH_REDIS_REST_URL is usable");
                None
            }
            (None, Some(_)) => {
                self.problem("UPSTASH_REDIS_REST_URL is required when UPSTASH_REDIS_REST_TOKEN is set; tier 2 is off");
                None
            }
        }
    }

    /// Without `ROUTES`: every model to `UPSTREAM_BASE_URL` with `OPENAI_API_KEY`. An unusable URL
    /// or key leaves the table empty (reported), never a silent fallback to another URL.
    fn default_route(&mut self, defaults: &TargetDefaults) -> RouteTable {
        let set = self.string("UPSTREAM_BASE_URL").is_some();
        let base_url = match self.url("UPSTREAM_BASE_URL") {
            Some(url) => url,
            None if set => return RouteTable::default(),
            None => DEFAULT_UPSTREAM.to_owned(),
        };
        let api_key = self.string("OPENAI_API_KEY");
        if api_key.as_deref().is_some_and(|k| !is_header_safe(k)) {
            self.problem("OPENAI_API_KEY must be visible ASCII characters only");
            return RouteTable::default();
        }
        RouteTable::single(Target {
            id: "openai".into(),
            kind: ProviderKind::OpenAi,
            model: None,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.map(Secret),
            weight: 1,
            priority: 0,
            timeout_ms: None,
            first_byte_timeout_ms: None,
            first_token_timeout_ms: None,
            default_max_tokens: defaults.default_max_tokens,
            limits: Default::default(),
        })
    }
}

/// Whether a secret can be sent in an HTTP header as it is: visible ASCII, no spaces.
pub fn is_header_safe(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
}
