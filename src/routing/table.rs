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
//! A broken target is dropped from its route and reported; a model whose every target is broken
//! stays known as unusable, so its requests are refused by name instead of going elsewhere.
//! Must not: put any value into a problem message (a key pasted where its variable's name
//! belongs would leak): problems name the model, the target's position and the field.

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
    /// Bound on the wait for a stream's first content event, from the attempt's start; `None`:
    /// `UPSTREAM_FIRST_TOKEN_TIMEOUT_MS`.
    pub first_token_timeout_ms: Option<u64>,
    /// Anthropic requires `max_tokens`; this is sent when the client gives none.
    pub default_max_tokens: u64,
    /// The provider's per-minute limits, kept below by pacing (`routing::pacing`).
    pub limits: ProviderLimits,
}

/// A provider's own per-minute limits, as a target declares them (`rpm`, `tpm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProviderLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl ProviderLimits {
    pub fn is_set(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }
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
    /// Models (or `*`) configured with targets none of which is usable.
    unusable: std::collections::BTreeSet<String>,
}

/// Why a model has no targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// The table does not route the model (nor has a `*` route).
    Unknown,
    /// The model's route is configured, but none of its targets is usable.
    Unusable,
}

impl RouteTable {
    /// The targets for a model, or `None` when the table routes it nowhere.
    pub fn targets(&self, model: &str) -> Option<&[Target]> {
        self.route(model).ok()
    }

    /// The targets for a model, or why there are none.
    pub fn route(&self, model: &str) -> Result<&[Target], NoRoute> {
        if let Some(targets) = self.routes.get(model) {
            return Ok(targets);
        }
        if self.unusable.contains(model) {
            return Err(NoRoute::Unusable);
        }
        match self.routes.get("*") {
            Some(targets) => Ok(targets),
            None if self.unusable.contains("*") => Err(NoRoute::Unusable),
            None => Err(NoRoute::Unknown),
        }
    }

    /// Whether at least one model has a usable target.
    pub fn serves_anything(&self) -> bool {
        !self.routes.is_empty()
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
        RouteTable { routes: BTreeMap::from([("*".to_owned(), vec![target])]), unusable: Default::default() }
    }

    /// Parses `raw` (the `ROUTES` variable), resolving key names through `vars`; every problem
    /// is pushed to `problems`.
    pub fn parse(raw: &str, vars: &impl Vars, defaults: &TargetDefaults, problems: &mut Vec<String>) -> RouteTable {
        // Each target is read on its own, so one bad target does not take its route down. serde's
        // messages can quote values, so only positions and field names are reported.
        let parsed: BTreeMap<String, Vec<serde_json::Value>> = match serde_json::from_str(raw) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!(
                    "ROUTES must be a JSON object mapping each model name to a list of targets (unreadable at line {}, column {})",
                    e.line(),
                    e.column()
                ));
                return RouteTable::default();
            }
        };
        let mut routes = BTreeMap::new();
        let mut unusable = std::collections::BTreeSet::new();
        let mut ids: BTreeMap<String, RawTarget> = BTreeMap::new();
        for (model, raw_targets) in parsed {
            if raw_targets.is_empty() {
                problems.push(format!("ROUTES: '{}' has no targets", shown(&model)));
            }
            let mut targets = Vec::new();
            let configured = raw_targets.len();
            for (i, value) in raw_targets.into_iter().enumerate() {
                let at = format!("ROUTES: '{}' target {}", shown(&model), i + 1);
                let raw = match RawTarget::read(value) {
                    Ok(raw) => raw,
                    Err(what) => {
                        problems.push(format!("{at} is dropped: {what}"));
                        continue;
                    }
                };
                if let Some(target) = raw.resolve(&at, vars, defaults, problems) {
                    // One id names one target: the same id with other settings would share a breaker.
                    match ids.get(&target.id) {
                        Some(other) if *other != raw => problems.push(format!(
                            "{at} is dropped: id '{}' is used by a target with other settings",
                            target.id
                        )),
                        _ => {
                            ids.insert(target.id.clone(), raw.clone());
                            targets.push(target);
                        }
                    }
                }
            }
            if !targets.is_empty() {
                routes.insert(model, targets);
            } else if configured > 0 {
                problems.push(format!("ROUTES: '{}' has no usable target: its requests are refused", shown(&model)));
                unusable.insert(model);
            }
        }
        if routes.is_empty() && unusable.is_empty() && problems.is_empty() {
            problems.push("ROUTES must route at least one model".into());
        }
        RouteTable { routes, unusable }
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
    first_token_timeout_ms: Option<u64>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    rpm: Option<u64>,
    #[serde(default)]
    tpm: Option<u64>,
}

/// The fields a target may have, for problems (never a value).
const FIELDS: &str = "provider, model, id, base_url, key, weight, priority, timeout_ms, first_byte_timeout_ms, first_token_timeout_ms, max_tokens, rpm, tpm";

impl RawTarget {
    /// One target from its JSON, or what is wrong with it in words that quote no value.
    fn read(value: serde_json::Value) -> Result<RawTarget, String> {
        let Some(object) = value.as_object() else {
            return Err("a target must be a JSON object".into());
        };
        if let Some(unknown) = object.keys().find(|k| !FIELDS.split(", ").any(|f| f == k.as_str())) {
            // A field name is the operator's own word, but it may be anything: show it only when
            // it looks like a field name.
            let named = if unknown.len() <= 32 && unknown.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                format!("'{unknown}'")
            } else {
                "a field".to_owned()
            };
            return Err(format!("{named} is not a target field (fields: {FIELDS})"));
        }
        serde_json::from_value(value).map_err(|_| {
            "a field has the wrong type (provider, model, id, base_url and key are strings; the others whole numbers)"
                .to_owned()
        })
    }

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
            problems.push(format!("{at}: provider must be one of openai, anthropic, gemini, openai-compatible"));
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
            // Only a name shaped like a variable is ever repeated; anything else may be the key
            // itself, pasted where its variable's name belongs.
            Some(name) if !is_variable_name(name) => {
                problems.push(format!(
                    "{at}: key must be the name of the secret that holds the provider key (capital letters, digits and '_'), never the key itself"
                ));
                None
            }
            Some(name) => match vars.var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                Some(value) if crate::config::is_header_safe(&value) => Some(Secret::new(value)),
                Some(_) => {
                    problems.push(format!("{at}: the value of its key variable {name} is not usable in an HTTP header (visible ASCII only)"));
                    None
                }
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
        // The model goes into Gemini's URL path; any model goes into logs and headers.
        if self.model.as_deref().is_some_and(|m| !is_model_name(m)) {
            problems.push(format!("{at}: model must be 1 to 200 letters, digits or '.', '_', '-', ':', '/', '@'"));
        }
        let weight = self.weight.unwrap_or(1);
        if weight == 0 || weight > 1000 {
            problems.push(format!("{at}: weight must be from 1 to 1000"));
        }
        let bounds = [
            ("timeout_ms", self.timeout_ms),
            ("first_byte_timeout_ms", self.first_byte_timeout_ms),
            ("first_token_timeout_ms", self.first_token_timeout_ms),
        ];
        for (name, value) in bounds {
            if value.is_some_and(|v| v == 0 || v > 600_000) {
                problems.push(format!("{at}: {name} must be from 1 to 600000"));
            }
        }
        for (name, value) in [("rpm", self.rpm), ("tpm", self.tpm)] {
            if value.is_some_and(|v| v == 0 || v > 1_000_000_000) {
                problems.push(format!("{at}: {name} must be from 1 to 1000000000"));
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
        let kind = kind.filter(|_| problems.len() == before)?;
        Some(Target {
            id,
            kind,
            model: self.model.clone(),
            base_url,
            api_key,
            weight,
            priority: self.priority.unwrap_or(0),
            timeout_ms: self.timeout_ms,
            first_byte_timeout_ms: self.first_byte_timeout_ms,
            first_token_timeout_ms: self.first_token_timeout_ms,
            default_max_tokens: self.max_tokens.unwrap_or(defaults.default_max_tokens),
            limits: ProviderLimits { rpm: self.rpm, tpm: self.tpm },
        })
    }
}

/// What an environment variable's name looks like here: capital letters, digits and '_'.
fn is_variable_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A provider model name that is safe in a URL path, a header and a log line.
fn is_model_name(model: &str) -> bool {
    (1..=200).contains(&model.len()) && model.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:/@".contains(&b))
}

/// A model name as problems show it: the operator's route name, cut short and stripped of
/// anything unusual.
fn shown(model: &str) -> String {
    model.chars().take(64).filter(|c| c.is_ascii_alphanumeric() || "._-:/@*".contains(*c)).collect()
}
