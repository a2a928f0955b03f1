//! Browser callers, read once at start: signed browser tokens (`BROWSER_TOKEN_SECRET` for HS256,
//! `BROWSER_TOKEN_PUBLIC_KEY` for EdDSA, `BROWSER_TOKEN_AUDIENCE`,
//! `BROWSER_TOKEN_MAX_TTL_SECONDS`) and publishable keys (`PUBLISHABLE_KEYS`: browser-only keys,
//! each for one tenant, working only from the origins it lists and within its own limits).
//!
//! Every problem is reported at once, naming the variable and the field, never a value; an entry
//! with a problem is dropped.
//! Must not: keep a publishable key itself (only its digest), or verify anything (`auth` does).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::Value;

use super::keys::{digest, find_digest, is_name};
use super::Secret;
use crate::ports::Vars;

pub const DEFAULT_AUDIENCE: &str = "llm-edge-cache";
pub const DEFAULT_MAX_TTL_SECONDS: u64 = 3600;
/// A shared secret shorter than SHA-256's output is guessable offline from one token.
const MIN_SECRET_BYTES: usize = 32;
/// The DER prefix of an Ed25519 public key in SubjectPublicKeyInfo (RFC 8410), before its 32 bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// One publishable key's grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publishable {
    /// Its name in logs and limit counters (the entry's `name`).
    pub name: String,
    pub tenant: String,
    /// Exact `Origin` values it works from.
    pub origins: Vec<String>,
    pub requests_per_minute: u64,
    pub tokens_per_minute: Option<u64>,
    pub models: Option<Vec<String>>,
}

/// How browser callers are let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserAuth {
    pub hs256_secret: Option<Secret>,
    pub ed25519_key: Option<[u8; 32]>,
    pub audience: String,
    pub max_ttl_seconds: u64,
    publishable: Vec<([u8; 32], Publishable)>,
}

impl Default for BrowserAuth {
    fn default() -> Self {
        BrowserAuth {
            hs256_secret: None,
            ed25519_key: None,
            audience: DEFAULT_AUDIENCE.to_owned(),
            max_ttl_seconds: DEFAULT_MAX_TTL_SECONDS,
            publishable: Vec::new(),
        }
    }
}

impl BrowserAuth {
    /// Whether signed tokens are accepted.
    pub fn takes_tokens(&self) -> bool {
        self.hs256_secret.is_some() || self.ed25519_key.is_some()
    }

    /// The grant of a publishable key (compared by digest in constant time).
    pub fn publishable(&self, presented: &str) -> Option<&Publishable> {
        find_digest(&self.publishable, presented)
    }

    /// Reads the variables; `is_tenant` says whether a tenant has a gateway key.
    pub fn read(vars: &impl Vars, is_tenant: impl Fn(&str) -> bool, problems: &mut Vec<String>) -> BrowserAuth {
        let mut auth = BrowserAuth::default();
        let get = |name: &str| vars.var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(secret) = get("BROWSER_TOKEN_SECRET") {
            if secret.len() >= MIN_SECRET_BYTES {
                auth.hs256_secret = Some(Secret::new(secret));
            } else {
                problems.push(format!(
                    "BROWSER_TOKEN_SECRET must be at least {MIN_SECRET_BYTES} bytes; HS256 tokens are refused"
                ));
            }
        }
        if let Some(key) = get("BROWSER_TOKEN_PUBLIC_KEY") {
            auth.ed25519_key = ed25519_key(&key);
            if auth.ed25519_key.is_none() {
                problems.push("BROWSER_TOKEN_PUBLIC_KEY must be an Ed25519 public key (PEM 'PUBLIC KEY', or the JWK's base64url 'x'); EdDSA tokens are refused".into());
            }
        }
        if let Some(audience) = get("BROWSER_TOKEN_AUDIENCE") {
            auth.audience = audience;
        }
        if let Some(ttl) = get("BROWSER_TOKEN_MAX_TTL_SECONDS") {
            match ttl.parse::<u64>().ok().filter(|n| (60..=86_400).contains(n)) {
                Some(n) => auth.max_ttl_seconds = n,
                None => problems.push(format!(
                    "BROWSER_TOKEN_MAX_TTL_SECONDS must be a whole number from 60 to 86400; {DEFAULT_MAX_TTL_SECONDS} applies"
                )),
            }
        }
        if let Some(raw) = get("PUBLISHABLE_KEYS") {
            auth.publishable = read_publishable(&raw, &is_tenant, problems);
        }
        auth
    }
}

/// An Ed25519 public key from PEM (SubjectPublicKeyInfo) or from base64url / base64 of its 32 bytes.
fn ed25519_key(text: &str) -> Option<[u8; 32]> {
    let bytes = if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
        let der = STANDARD.decode(body).ok()?;
        der.strip_prefix(&ED25519_SPKI_PREFIX[..])?.to_vec()
    } else {
        URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).or_else(|_| STANDARD.decode(text)).ok()?
    };
    bytes.try_into().ok()
}

/// `PUBLISHABLE_KEYS`: `{"<key>": {"name", "tenant", "origins": [...], "requests_per_minute",
/// "tokens_per_minute"?, "models"?}}`.
fn read_publishable(
    raw: &str,
    is_tenant: &impl Fn(&str) -> bool,
    problems: &mut Vec<String>,
) -> Vec<([u8; 32], Publishable)> {
    let Ok(Value::Object(entries)) = serde_json::from_str::<Value>(raw) else {
        problems.push(
            "PUBLISHABLE_KEYS must be a JSON object mapping each key to {name, tenant, origins, requests_per_minute}"
                .into(),
        );
        return Vec::new();
    };
    let mut keys = Vec::new();
    for (n, (key, entry)) in entries.into_iter().enumerate() {
        let name = entry.get("name").and_then(Value::as_str).filter(|s| is_name(s)).map(str::to_owned);
        let at = match &name {
            Some(name) => format!("PUBLISHABLE_KEYS: '{name}'"),
            None => format!("PUBLISHABLE_KEYS: entry {}", n + 1),
        };
        let mut wrong = Vec::new();
        if key.len() < 16 {
            wrong.push("its key must be at least 16 characters".to_owned());
        }
        if name.is_none() {
            wrong.push("'name' must be 1 to 64 letters, digits, '.', '_' or '-'".to_owned());
        }
        let tenant = entry.get("tenant").and_then(Value::as_str).filter(|t| is_tenant(t));
        if tenant.is_none() {
            wrong.push("'tenant' must name a tenant of GATEWAY_KEYS".to_owned());
        }
        let origins: Option<Vec<String>> = entry.get("origins").and_then(Value::as_array).and_then(|a| {
            a.iter()
                .map(|o| o.as_str().filter(|o| o.starts_with("http") && o.len() <= 256).map(str::to_owned))
                .collect()
        });
        if origins.as_ref().is_none_or(Vec::is_empty) {
            wrong.push("'origins' must list the exact origins (like \"https://app.example\") it works from".to_owned());
        }
        let limit = |field: &str| entry.get(field).map(|v| v.as_u64().filter(|n| (1..=1_000_000_000).contains(n)));
        let rpm = limit("requests_per_minute").flatten();
        if rpm.is_none() {
            wrong.push("'requests_per_minute' is required, a whole number from 1".to_owned());
        }
        let tpm = limit("tokens_per_minute");
        if tpm == Some(None) {
            wrong.push("'tokens_per_minute' must be a whole number from 1".to_owned());
        }
        let models = entry.get("models").map(|m| {
            m.as_array().and_then(|a| a.iter().map(|m| m.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
        });
        if models == Some(None) {
            wrong.push("'models' must be a list of model names".to_owned());
        }
        let known = ["name", "tenant", "origins", "requests_per_minute", "tokens_per_minute", "models"];
        if entry.as_object().is_some_and(|o| o.keys().any(|k| !known.contains(&k.as_str()))) {
            wrong.push("it has an unknown field".to_owned());
        }
        match (wrong.is_empty(), name, tenant, origins, rpm) {
            (true, Some(name), Some(tenant), Some(origins), Some(rpm)) => keys.push((
                digest(&key),
                Publishable {
                    name,
                    tenant: tenant.to_owned(),
                    origins,
                    requests_per_minute: rpm,
                    tokens_per_minute: tpm.flatten(),
                    models: models.flatten(),
                },
            )),
            _ => problems.push(format!("{at} is dropped: {}", wrong.join("; "))),
        }
    }
    keys
}
