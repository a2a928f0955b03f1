//! Reads the subset of the Spin manifest v2 (`spin.toml`) that spin-host implements.
//!
//! Everything the host does not implement is refused with [`Error::Unsupported`] (or, for keys Spin
//! itself does not know, with the TOML parser's "unknown field" error); nothing is silently
//! ignored except pure metadata (`description`, `version`, `authors`, `build`). This module only
//! parses and checks shape; it must not resolve variables, read Wasm files or touch the network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

/// A parsed, shape-checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The directory of the manifest: `source` paths are relative to it.
    pub dir: PathBuf,
    /// `[application] name`.
    pub name: String,
    /// `[variables]`, by name.
    pub variables: BTreeMap<String, VariableDecl>,
    /// `[[trigger.http]]` entries that have a route, in manifest order.
    pub routes: Vec<HttpRoute>,
    /// `[component.<id>]`, by id.
    pub components: BTreeMap<String, ComponentDecl>,
}

/// One application variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableDecl {
    /// The default value, if any.
    pub default: Option<String>,
    /// Whether a value must be supplied at start.
    pub required: bool,
    /// Whether the value is sensitive (never printed).
    pub secret: bool,
}

/// One `[[trigger.http]]` with a (non-private) route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// The route as written, e.g. `/...` or `/v1/...`.
    pub route: String,
    /// The component id it maps to.
    pub component: String,
}

/// One `[component.<id>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentDecl {
    /// The component id.
    pub id: String,
    /// The Wasm file, resolved against the manifest directory.
    pub source: PathBuf,
    /// `allowed_outbound_hosts`, unresolved (may hold `{{ variable }}` templates).
    pub allowed_outbound_hosts: Vec<String>,
    /// `key_value_stores` labels.
    pub key_value_stores: Vec<String>,
    /// `[component.<id>.variables]`: name to template over application variables.
    pub variables: BTreeMap<String, String>,
    /// `environment`: WASI environment variables of the guest.
    pub environment: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    trigger: BTreeMap<String, toml::Value>,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "metadata fields are accepted and ignored, like `spin up` does")]
struct RawApplication {
    name: String,
    version: Option<String>,
    description: Option<String>,
    authors: Option<Vec<String>>,
    trigger: Option<toml::Table>,
    targets: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "`description` is accepted and ignored")]
struct RawVariable {
    description: Option<String>,
    #[serde(default)]
    required: bool,
    default: Option<String>,
    #[serde(default)]
    secret: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "`id` is accepted and ignored")]
struct RawHttpTrigger {
    id: Option<String>,
    route: toml::Value,
    component: toml::Value,
    executor: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "metadata fields are accepted and ignored")]
struct RawComponent {
    description: Option<String>,
    source: toml::Value,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    build: Option<toml::Value>,
    // Valid in Spin, not implemented here: refused by `unsupported_component_keys`.
    files: Option<toml::Value>,
    exclude_files: Option<toml::Value>,
    allowed_http_hosts: Option<toml::Value>,
    sqlite_databases: Option<toml::Value>,
    ai_models: Option<toml::Value>,
    dependencies: Option<toml::Value>,
    dependencies_inherit_configuration: Option<toml::Value>,
    tool: Option<toml::Value>,
}

impl Manifest {
    /// Read and check the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::ReadManifest { path: path.to_owned(), source })?;
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        Self::parse(&text, &dir).map_err(|e| match e {
            Error::ParseManifest { message, .. } => Error::ParseManifest { path: path.to_owned(), message },
            other => other,
        })
    }

    /// Parse manifest text; `dir` is the directory `source` paths are relative to.
    pub fn parse(text: &str, dir: &Path) -> Result<Self, Error> {
        let raw: RawManifest = toml::from_str(text)
            .map_err(|e| Error::ParseManifest { path: PathBuf::from("<text>"), message: e.to_string() })?;
        if raw.spin_manifest_version.as_integer() != Some(2) {
            return Err(Error::Unsupported(format!(
                "spin_manifest_version = {}: only version 2 is supported",
                raw.spin_manifest_version
            )));
        }
        check_application(&raw.application)?;

        let mut variables = BTreeMap::new();
        for (name, var) in raw.variables {
            crate::variables::validate_name(&name).map_err(Error::Variables)?;
            match (var.required, &var.default) {
                (true, Some(_)) => {
                    return Err(Error::Invalid(format!(
                        "variable `{name}` cannot be both `required = true` and have a `default`"
                    )));
                }
                (false, None) => {
                    return Err(Error::Invalid(format!(
                        "variable `{name}` needs either `required = true` or a `default`"
                    )));
                }
                _ => {}
            }
            variables.insert(name, VariableDecl { default: var.default, required: var.required, secret: var.secret });
        }

        let mut components = BTreeMap::new();
        for (id, component) in raw.component {
            validate_component_id(&id)?;
            let decl = component_decl(&id, component, dir)?;
            components.insert(id, decl);
        }

        let routes = http_routes(raw.trigger, &components)?;
        Ok(Self { dir: dir.to_owned(), name: raw.application.name, variables, routes, components })
    }
}

fn check_application(app: &RawApplication) -> Result<(), Error> {
    if app.targets.is_some() {
        return Err(Error::Unsupported("[application] targets".into()));
    }
    let Some(triggers) = &app.trigger else { return Ok(()) };
    for (kind, settings) in triggers {
        if kind != "http" {
            return Err(Error::Unsupported(format!("[application.trigger.{kind}]")));
        }
        let Some(settings) = settings.as_table() else {
            return Err(Error::Invalid("[application.trigger.http] must be a table".into()));
        };
        for (key, value) in settings {
            match (key.as_str(), value.as_str()) {
                ("base", Some("/")) => {}
                ("base", _) => {
                    return Err(Error::Unsupported(format!("[application.trigger.http] base = {value}: only \"/\"")));
                }
                _ => return Err(Error::Unsupported(format!("[application.trigger.http] {key}"))),
            }
        }
    }
    Ok(())
}

/// Spin component ids are kebab-case words: lowercase letters and digits, `-` between words.
fn validate_component_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id
            .split('-')
            .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && id.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "component id `{id}`: must be kebab-case (lowercase letters and digits, words joined by '-')"
        )))
    }
}

fn component_decl(id: &str, raw: RawComponent, dir: &Path) -> Result<ComponentDecl, Error> {
    let unsupported = [
        ("files", raw.files.is_some()),
        ("exclude_files", raw.exclude_files.is_some()),
        ("allowed_http_hosts", raw.allowed_http_hosts.is_some()),
        ("sqlite_databases", raw.sqlite_databases.is_some()),
        ("ai_models", raw.ai_models.is_some()),
        ("dependencies", raw.dependencies.is_some()),
        ("dependencies_inherit_configuration", raw.dependencies_inherit_configuration.is_some()),
        ("tool", raw.tool.is_some()),
    ];
    if let Some((key, _)) = unsupported.iter().find(|(_, present)| *present) {
        return Err(Error::Unsupported(format!("[component.{id}] {key}")));
    }
    let source = match raw.source {
        toml::Value::String(path) => dir.join(path),
        other => {
            return Err(Error::Unsupported(format!(
                "[component.{id}] source = {other}: only a local .wasm path is supported"
            )));
        }
    };
    for name in raw.variables.keys() {
        crate::variables::validate_name(name)
            .map_err(|e| Error::Variables(format!("[component.{id}.variables] {e}")))?;
    }
    Ok(ComponentDecl {
        id: id.to_owned(),
        source,
        allowed_outbound_hosts: raw.allowed_outbound_hosts,
        key_value_stores: raw.key_value_stores,
        variables: raw.variables,
        environment: raw.environment,
    })
}

fn http_routes(
    triggers: BTreeMap<String, toml::Value>,
    components: &BTreeMap<String, ComponentDecl>,
) -> Result<Vec<HttpRoute>, Error> {
    let mut routes = Vec::new();
    for (kind, value) in triggers {
        if kind != "http" {
            return Err(Error::Unsupported(format!("[[trigger.{kind}]]: only HTTP triggers are supported")));
        }
        let list: Vec<RawHttpTrigger> = value
            .try_into()
            .map_err(|e: toml::de::Error| Error::Invalid(format!("[[trigger.http]]: {}", e.message())))?;
        for trigger in list {
            if let Some(executor) = &trigger.executor {
                return Err(Error::Unsupported(format!("[[trigger.http]] executor = {executor}")));
            }
            let component = match trigger.component {
                toml::Value::String(id) => id,
                other => {
                    return Err(Error::Unsupported(format!(
                        "[[trigger.http]] component = {other}: only a component id is supported"
                    )));
                }
            };
            if !components.contains_key(&component) {
                return Err(Error::Invalid(format!("[[trigger.http]] refers to unknown component `{component}`")));
            }
            match trigger.route {
                toml::Value::String(route) => routes.push(HttpRoute { route, component }),
                toml::Value::Table(t) if t.len() == 1 && t.get("private").and_then(|v| v.as_bool()) == Some(true) => {
                    // A private endpoint is reachable only by service chaining, which is not
                    // implemented: it simply gets no route.
                }
                other => {
                    return Err(Error::Invalid(format!(
                        "[[trigger.http]] route = {other}: must be a string pattern or {{ private = true }}"
                    )));
                }
            }
        }
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        spin_manifest_version = 2
        [application]
        name = "app"
        description = "ignored"
        [application.trigger.http]
        base = "/"
        [variables]
        greeting = { default = "hello" }
        token = { required = true, secret = true }
        [[trigger.http]]
        route = "/..."
        component = "web"
        [[trigger.http]]
        route = { private = true }
        component = "web"
        [component.web]
        source = "target/app.wasm"
        allowed_outbound_hosts = ["https://{{ greeting }}.example.com"]
        key_value_stores = ["default"]
        [component.web.variables]
        message = "{{ greeting }}, world"
        [component.web.build]
        command = "cargo build"
    "#;

    #[test]
    fn parses_the_supported_subset() {
        let m = Manifest::parse(GOOD, Path::new("/apps/x")).expect("valid manifest");
        assert_eq!(m.name, "app");
        assert_eq!(m.routes, vec![HttpRoute { route: "/...".into(), component: "web".into() }]);
        let web = &m.components["web"];
        assert_eq!(web.source, PathBuf::from("/apps/x/target/app.wasm"));
        assert_eq!(web.key_value_stores, vec!["default".to_string()]);
        assert_eq!(web.variables["message"], "{{ greeting }}, world");
        assert!(m.variables["token"].required && m.variables["token"].secret);
        assert_eq!(m.variables["greeting"].default.as_deref(), Some("hello"));
    }

    fn err(text: &str) -> String {
        Manifest::parse(text, Path::new(".")).expect_err("must be refused").to_string()
    }

    #[test]
    fn refuses_what_it_does_not_implement() {
        let base = "spin_manifest_version = 2\n[application]\nname = \"a\"\n";
        assert!(err("spin_manifest_version = \"1\"\n[application]\nname=\"a\"").contains("only version 2"));
        assert!(err(&format!("{base}[[trigger.redis]]\ncomponent = \"c\"\n")).contains("only HTTP"));
        let comp = "[component.c]\nsource = \"c.wasm\"\n";
        assert!(err(&format!("{base}{comp}files = [\"a\"]\n")).contains("[component.c] files"));
        assert!(err(&format!("{base}{comp}unknown_key = 1\n")).contains("unknown field"));
        assert!(
            err(&format!("{base}[component.c]\nsource = {{ url = \"u\", digest = \"d\" }}\n"))
                .contains("only a local .wasm path")
        );
        assert!(
            err(&format!("{base}{comp}[[trigger.http]]\nroute = \"/\"\ncomponent = \"other\"\n"))
                .contains("unknown component")
        );
        assert!(err(&format!("{base}[variables]\nx = {{ required = true, default = \"d\" }}\n")).contains("both"));
        assert!(err(&format!("{base}[variables]\nx = {{ secret = true }}\n")).contains("either"));
        assert!(err(&format!("{base}[variables]\nBad = {{ default = \"d\" }}\n")).contains("invalid character"));
        assert!(err(&format!("{base}[component.Bad]\nsource = \"c.wasm\"\n")).contains("kebab-case"));
        assert!(err(&format!("{base}[application.trigger.http]\nbase = \"/api\"\n")).contains("only \"/\""));
    }
}
