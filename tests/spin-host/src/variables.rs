//! Application and component variables, as Spin resolves them, and the host side of
//! `spin:variables/variables@3.0.0`.
//!
//! Values come, in this order, from `--variable name=value`, from the `SPIN_VARIABLE_<NAME>`
//! environment variable (Spin's env provider), and from the manifest `default`. Everything is
//! resolved once at start (a missing required variable is a start error, as with `spin up`).
//! The guest sees only its component's variables (`[component.<id>.variables]`), never the
//! application variables directly. This module must never print a value: some are secrets.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{Accessor, HasData};

use crate::bindings::spin::variables::variables as wit;
use crate::error::Error;
use crate::manifest::VariableDecl;

/// Prefix of Spin's environment-variable provider.
pub const ENV_PREFIX: &str = "SPIN_VARIABLE_";

/// Check a variable name the way Spin does: lowercase ASCII letters, digits and single
/// underscores, starting with a letter and ending with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), String> {
    let reason = if name.is_empty() {
        Some("must not be empty".to_string())
    } else if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')) {
        Some(format!(
            "invalid character {c:?}. Variable names may contain only lower-case letters, numbers, and underscores."
        ))
    } else if !name.as_bytes()[0].is_ascii_lowercase() {
        Some("must start with a lowercase ASCII letter".to_string())
    } else if !name.as_bytes()[name.len() - 1].is_ascii_alphanumeric() {
        Some("must end with a lowercase ASCII letter or digit".to_string())
    } else if name.contains("__") {
        Some("must not contain multiple consecutive underscores".to_string())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(format!("invalid variable name {name:?}: {reason}")),
        None => Ok(()),
    }
}

/// A string with `{{ variable }}` expressions, as in Spin manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Expr(String),
}

impl Template {
    /// Split `text` into literals and `{{ name }}` expressions.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("{{") {
                let (expr, tail) = after.split_once("}}").ok_or_else(|| format!("unmatched '{{{{' in {text:?}"))?;
                parts.push(Part::Expr(expr.trim().to_string()));
                rest = tail;
            } else {
                let end = rest.find("{{").unwrap_or(rest.len());
                parts.push(Part::Lit(rest[..end].to_string()));
                rest = &rest[end..];
            }
        }
        Ok(Self { parts })
    }

    /// The variable names this template refers to.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(name) => Some(name.as_str()),
            Part::Lit(_) => None,
        })
    }
}

/// Resolved application variables.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    values: BTreeMap<String, String>,
}

impl Resolver {
    /// Resolve every declared variable from `flags` (`--variable`), then `env` (looked up with
    /// the `SPIN_VARIABLE_` name), then its default. All problems are reported together.
    pub fn new(
        decls: &BTreeMap<String, VariableDecl>,
        flags: &[(String, String)],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let mut problems = Vec::new();
        for (name, _) in flags {
            if let Err(e) = validate_name(name) {
                problems.push(format!("--variable {e}"));
            } else if !decls.contains_key(name) {
                problems.push(format!("--variable {name}: no such variable in [variables]"));
            }
        }
        let mut values = BTreeMap::new();
        for (name, decl) in decls {
            let flag = flags.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            let value = flag.or_else(|| env(&env_name(name))).or_else(|| decl.default.clone());
            match value {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None => problems.push(format!(
                    "required variable `{name}` has no value (give --variable {name}=... or set {})",
                    env_name(name)
                )),
            }
        }
        if problems.is_empty() { Ok(Self { values }) } else { Err(Error::Variables(problems.join("; "))) }
    }

    /// Check that every expression of `template` names a declared variable.
    pub fn check(&self, template: &Template) -> Result<(), String> {
        match template.references().find(|name| !self.values.contains_key(*name)) {
            Some(name) => Err(format!("unknown variable {name:?} in template")),
            None => Ok(()),
        }
    }

    /// Expand a template (after [`Resolver::check`]).
    pub fn resolve(&self, template: &Template) -> Result<String, String> {
        self.check(template)?;
        Ok(template
            .parts
            .iter()
            .map(|part| match part {
                Part::Lit(lit) => lit.as_str(),
                Part::Expr(name) => self.values[name].as_str(),
            })
            .collect())
    }

    /// Parse and expand template text.
    pub fn resolve_str(&self, text: &str) -> Result<String, String> {
        self.resolve(&Template::parse(text)?)
    }
}

/// The environment variable Spin's env provider reads for `name`.
pub fn env_name(name: &str) -> String {
    format!("{ENV_PREFIX}{}", name.to_ascii_uppercase())
}

/// Resolve a component's `[component.<id>.variables]` templates.
pub fn component_values(
    component: &str,
    templates: &BTreeMap<String, String>,
    resolver: &Resolver,
) -> Result<BTreeMap<String, String>, Error> {
    templates
        .iter()
        .map(|(name, text)| {
            let value = resolver
                .resolve_str(text)
                .map_err(|e| Error::Variables(format!("[component.{component}.variables] {name}: {e}")))?;
            Ok((name.clone(), value))
        })
        .collect()
}

/// Per-instance state behind `spin:variables`: the component's resolved variables.
#[derive(Debug, Clone, Default)]
pub struct VariablesState {
    /// Component variable name to value.
    pub values: Arc<BTreeMap<String, String>>,
}

/// `HasData` marker for the `spin:variables` bindings.
pub struct SpinVariables;

impl HasData for SpinVariables {
    type Data<'a> = &'a mut VariablesState;
}

/// What `get` answers for `name`, with Spin's error variants.
pub fn lookup(values: &BTreeMap<String, String>, name: &str) -> Result<String, wit::Error> {
    validate_name(name).map_err(wit::Error::InvalidName)?;
    values.get(name).cloned().ok_or_else(|| wit::Error::Undefined(format!("no variable for {name:?}")))
}

impl<T> wit::HostWithStore<T> for SpinVariables {
    async fn get(accessor: &Accessor<T, Self>, name: String) -> wasmtime::Result<Result<String, wit::Error>> {
        let values = accessor.with(|mut access| Arc::clone(&access.get().values));
        Ok(lookup(&values, &name))
    }
}

impl wit::Host for &mut VariablesState {}

#[cfg(test)]
mod tests {
    use super::*;

    fn decls() -> BTreeMap<String, VariableDecl> {
        let mut d = BTreeMap::new();
        d.insert("greeting".into(), VariableDecl { default: Some("hello".into()), required: false, secret: false });
        d.insert("api_token".into(), VariableDecl { default: None, required: true, secret: true });
        d
    }

    #[test]
    fn names_follow_spin_rules() {
        for good in ["a", "abc", "a1b2c3", "a_1", "a_1_b_3"] {
            validate_name(good).expect(good);
        }
        for bad in ["", "aX", "1bc", "_x", "x.y", "x_", "a__b", "x-y"] {
            validate_name(bad).expect_err(bad);
        }
    }

    #[test]
    fn flags_beat_env_beat_default() {
        let env =
            |k: &str| (k == "SPIN_VARIABLE_API_TOKEN" || k == "SPIN_VARIABLE_GREETING").then(|| format!("env:{k}"));
        let r = Resolver::new(&decls(), &[], env).expect("env gives the required one");
        assert_eq!(r.resolve_str("{{greeting}}").expect("known"), "env:SPIN_VARIABLE_GREETING");
        let flags = vec![("greeting".to_string(), "flag".to_string())];
        let r = Resolver::new(&decls(), &flags, env).expect("ok");
        assert_eq!(
            r.resolve_str("x-{{ greeting }}-{{api_token}}").expect("known"),
            "x-flag-env:SPIN_VARIABLE_API_TOKEN"
        );
    }

    #[test]
    fn problems_are_reported() {
        let e = Resolver::new(&decls(), &[], |_| None).expect_err("required missing").to_string();
        assert!(e.contains("api_token") && e.contains("SPIN_VARIABLE_API_TOKEN"), "{e}");
        let flags = vec![("nope".to_string(), "1".to_string()), ("Bad".to_string(), "1".to_string())];
        let e = Resolver::new(&decls(), &flags, |_| Some("v".into())).expect_err("bad flags").to_string();
        assert!(e.contains("no such variable") && e.contains("invalid character"), "{e}");
        let r = Resolver::new(&decls(), &[], |_| Some("v".into())).expect("ok");
        assert!(r.resolve_str("{{ missing }}").is_err());
        assert!(Template::parse("{{ open").is_err());
    }

    #[test]
    fn lookup_uses_spin_error_variants() {
        let values: BTreeMap<_, _> = [("known".to_string(), "v".to_string())].into();
        assert_eq!(lookup(&values, "known").expect("defined"), "v");
        assert!(matches!(lookup(&values, "Bad"), Err(wit::Error::InvalidName(_))));
        assert!(matches!(lookup(&values, "unknown"), Err(wit::Error::Undefined(_))));
    }
}
