//! The route table: each model name a client may send maps to an ordered list of targets. Read
//! from one JSON variable (`ROUTES`) and validated at start with every problem reported at once.
//!
//! ```json
//! {"gpt-4o": [
//!    {"provider": "openai", "model": "gpt-4o", "key": "OPENAI_API_KEY", "weight": 5},
//!    {"provider": "anthropic", "model": "claude-sonnet-4-5", "key": "ANTHROPIC_API_KEY", "weight": 3},
//!    {"provider": "gemini", "model": "gemini-2.5-pro", "key": "GEMINI_API_KEY", "weight": 2},
//!    {"provider": "openai-compatible", "base_url": "http://127.0.0.1:11434/v1", "model": "llama3.1", "priority": 1}
//!  ],
//!  "*": [{"provider": "openai", "model": "gpt-4o-mini", "key": "OPENAI_API_KEY"}]}
//! ```
//! Targets of the lowest `priority` share load by `weight`; higher priorities are fallbacks.
//! `"*"` routes every model not listed. Without `ROUTES`, every model goes to one OpenAI-compatible
//! target built from `UPSTREAM_BASE_URL` and `OPENAI_API_KEY`, with the client's model.
//! Must not: put a key's value into a problem message.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::Secret;
use crate::ports::Vars;

/// The wire format a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    Gemini,
    OpenAiCompatible,
}

impl ProviderKind {
    fn parse(name: &str) -> Option<ProviderKind> {
        match name {
            "openai" => Some(ProviderKind::OpenAi),
            "anthropic" => Some(ProviderKind::Anthropic),
            "gemini" => Some(ProviderKind::Gemini),
            "openai-compatible" => Some(ProviderKind::OpenAiCompatible),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::OpenAiCompatible => "openai-compatible",
        }
    }

    fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com/v1"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
            ProviderKind::OpenAiCompatible => None,
        }
    }
}

/// One place a request can be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Unique within the table: names the target in headers, logs, breakers and error lists.
    pub id: String,
    pub kind: ProviderKind,
    /// The provider's model name; `None` sends the client's model unchanged.
    pub model: Option<String>,
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub weight: u32,
    pub priority: u32,
    /// Bound on one attempt, answer included; `None`: the gateway default.
    pub timeout_ms: Option<u64>,
    /// Bound on the wait for the response headers of one attempt.
    pub first_byte_timeout_ms: Option<u64>,
    /// Anthropic requires `max_tokens`; this is sent when the client gives none.
    pub default_max_tokens: u64,
}

impl Target {
    /// The model to ask the provider for.
    pub fn model_for<'a>(&'a self, requested: &'a str) -> &'a str {
        self.model.as_deref().unwrap_or(requested)
    }
}

/// The parsed table; `None` in `Config` means the single default target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteTable {
    routes: BTreeMap<String, Vec<Target>>,
}

impl RouteTable {
    /// The targets for a model, or `None` when the table routes it nowhere.
    pub fn targets(&self, model: &str) -> Option<&[Target]> {
        self.routes.get(model).or_else(|| self.routes.get("*")).map(Vec::as_slice)
    }

    /// Model names clients may send (the wildcard excluded).
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str).filter(|m| *m != "*")
    }

    /// Every target once, for health reporting.
    pub fn all_targets(&self) -> Vec<&Target> {
        let mut seen = std::collections::BTreeSet::new();
        self.routes.values().flatten().filter(|t| seen.insert(t.id.clone())).collect()
    }

    /// A table of one route: every model to `target`.
    pub fn single(target: Target) -> RouteTable {
        RouteTable { routes: BTreeMap::from([("*".to_owned(), vec![target])]) }
    }

    /// Parses `raw` (the `ROUTES` variable), resolving key names through `vars`; every problem
    /// is pushed to `problems`.
    pub fn parse(raw: &str, vars: &impl Vars, defaults: &TargetDefaults, problems: &mut Vec<String>) -> RouteTable {
        let parsed: BTreeMap<String, Vec<RawTarget>> = match serde_json::from_str(raw) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("ROUTES is not valid: {e}"));
                return RouteTable::default();
            }
        };
        let mut routes = BTreeMap::new();
        let mut ids: BTreeMap<String, RawTarget> = BTreeMap::new();
        for (model, raw_targets) in parsed {
            if raw_targets.is_empty() {
                problems.push(format!("ROUTES: model '{model}' has no targets"));
            }
            let mut targets = Vec::new();
            for (i, raw) in raw_targets.into_iter().enumerate() {
                let at = format!("ROUTES: '{model}' target {}", i + 1);
                if let Some(target) = raw.resolve(&at, vars, defaults, problems) {
                    // One id names one target: the same id with other settings would share a breaker.
                    match ids.get(&target.id) {
                        Some(other) if *other != raw => {
                            problems.push(format!("{at}: id '{}' is used by a target with other settings", target.id))
                        }
                        _ => {
                            ids.insert(target.id.clone(), raw.clone());
                        }
                    }
                    targets.push(target);
                }
            }
            if !targets.is_empty() {
                routes.insert(model, targets);
            }
        }
        if routes.is_empty() && problems.is_empty() {
            problems.push("ROUTES must route at least one model".into());
        }
        RouteTable { routes }
    }
}

/// Settings a target inherits when it does not set its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetDefaults {
    pub default_max_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    provider: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    /// The name of the variable (secret) that holds the key, never the key itself.
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    first_byte_timeout_ms: Option<u64>,
    #[serde(default)]
    max_tokens: Option<u64>,
}

impl RawTarget {
    fn resolve(
        &self,
        at: &str,
        vars: &impl Vars,
        defaults: &TargetDefaults,
        problems: &mut Vec<String>,
    ) -> Option<Target> {
        let before = problems.len();
        let kind = ProviderKind::parse(&self.provider);
        if kind.is_none() {
            problems.push(format!(
                "{at}: provider '{}' is not one of openai, anthropic, gemini, openai-compatible",
                self.provider
            ));
        }
        let base_url = match (&self.base_url, kind.and_then(ProviderKind::default_base_url)) {
            (Some(url), _) => {
                let ok =
                    (url.starts_with("https://") || url.starts_with("http://")) && url.parse::<http::Uri>().is_ok();
                if !ok {
                    problems.push(format!("{at}: base_url must be an http:// or https:// URL"));
                }
                url.trim_end_matches('/').to_owned()
            }
            (None, Some(default)) => default.to_owned(),
            (None, None) => {
                if kind.is_some() {
                    problems.push(format!("{at}: an openai-compatible target needs a base_url"));
                }
                String::new()
            }
        };
        let api_key = match &self.key {
            None => None,
            Some(name) => match vars.var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                Some(value) => Some(Secret::new(value)),
                None => {
                    problems.push(format!("{at}: its key variable {name} is not set"));
                    None
                }
            },
        };
        if self.key.is_none() && matches!(kind, Some(ProviderKind::Anthropic | ProviderKind::Gemini)) {
            problems.push(format!("{at}: {} needs a key (the name of the secret holding it)", self.provider));
        }
        if kind.is_some_and(|k| k != ProviderKind::OpenAiCompatible && k != ProviderKind::OpenAi)
            && self.model.is_none()
        {
            problems.push(format!("{at}: a {} target needs a model", self.provider));
        }
        let weight = self.weight.unwrap_or(1);
        if weight == 0 || weight > 1000 {
            problems.push(format!("{at}: weight must be from 1 to 1000"));
        }
        for (name, value) in [("timeout_ms", self.timeout_ms), ("first_byte_timeout_ms", self.first_byte_timeout_ms)] {
            if value.is_some_and(|v| v == 0 || v > 600_000) {
                problems.push(format!("{at}: {name} must be from 1 to 600000"));
            }
        }
        let id = self.id.clone().unwrap_or_else(|| match &self.model {
            Some(model) => format!("{}:{model}", self.provider),
            None => self.provider.clone(),
        });
        let id_ok =
            !id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_graphic() && b != b',' && b != b';');
        if !id_ok {
            problems.push(format!("{at}: id must be 1 to 100 visible characters without ',' or ';'"));
        }
        if problems.len() > before {
            return None;
        }
        Some(Target {
            id,
            kind: kind.expect("checked above"),
            model: self.model.clone(),
            base_url,
            api_key,
            weight,
            priority: self.priority.unwrap_or(0),
            timeout_ms: self.timeout_ms,
            first_byte_timeout_ms: self.first_byte_timeout_ms,
            default_max_tokens: self.max_tokens.unwrap_or(defaults.default_max_tokens),
        })
    }
}
