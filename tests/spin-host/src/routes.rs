//! HTTP route matching as Spin's router does it (base `/` only).
//!
//! Routes are exact (`/health`) or trailing wildcards (`/v1/...`, also written `/v1/*`). An exact
//! match beats any wildcard; among wildcards the longest prefix wins; a later `[[trigger.http]]`
//! with the same route replaces an earlier one (Spin warns, so do we). Named segments (`:id`) are
//! refused as unsupported. This module only matches paths: no I/O, no headers.

use crate::error::Error;
use crate::manifest::HttpRoute;

/// The routing table of an application.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

#[derive(Debug, Clone)]
struct Route {
    /// As written in the manifest.
    raw: String,
    /// With the base (always `/` here) applied: one trailing `/` removed, `/` itself becomes ``.
    based: String,
    /// `Some(prefix)` for a trailing wildcard, `None` for an exact route.
    wildcard_prefix: Option<String>,
    component: String,
}

/// The route that matched a path, with what Spin passes in its `spin-*` request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// The component id.
    pub component: String,
    /// `spin-matched-route`: the route with the base applied (e.g. `/...`).
    pub matched_route: String,
    /// `spin-raw-component-route`: the route as written.
    pub raw_route: String,
    /// `spin-component-route`: the route as written, without a trailing `/...`.
    pub component_route: String,
    /// `spin-path-info`: the part of the path matched by the wildcard (`` for exact routes).
    pub path_info: String,
}

/// Apply base `/`: make absolute and strip one trailing slash (Spin's `sanitize_with_base`).
fn based(raw: &str) -> String {
    let absolute = if raw.starts_with('/') { raw.to_string() } else { format!("/{raw}") };
    absolute.strip_suffix('/').map(str::to_string).unwrap_or(absolute)
}

impl Router {
    /// Build the table from the manifest's routes (in manifest order).
    pub fn build(routes: &[HttpRoute]) -> Result<Self, Error> {
        let mut table: Vec<Route> = Vec::new();
        for HttpRoute { route, component } in routes {
            let based = based(route);
            let wildcard_prefix = based
                .strip_suffix("/...")
                .or_else(|| based.strip_suffix("/*"))
                .or(if based == "..." || based == "*" { Some("") } else { None })
                .map(str::to_string);
            let plain = wildcard_prefix.as_deref().unwrap_or(&based);
            if plain.split('/').any(|seg| seg.starts_with(':') || seg.contains('*') || seg == "...") {
                return Err(Error::Unsupported(format!(
                    "route {route:?} of component `{component}`: only exact routes and a trailing `/...` are supported"
                )));
            }
            let entry = Route { raw: route.clone(), based, wildcard_prefix, component: component.clone() };
            if let Some(existing) = table.iter_mut().find(|r| r.raw == entry.raw) {
                eprintln!(
                    "spin-host: warning: route {:?} of component `{}` is replaced by component `{}`",
                    entry.raw, existing.component, entry.component
                );
                *existing = entry;
            } else {
                table.push(entry);
            }
        }
        Ok(Self { routes: table })
    }

    /// The best route for a request path (no query), or `None` (Spin answers 404).
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let exact_path = if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
        let exact_path = if exact_path == "/" { "" } else { exact_path };
        let exact = self.routes.iter().find(|r| r.wildcard_prefix.is_none() && r.based == exact_path);
        let best = exact.or_else(|| {
            self.routes
                .iter()
                .filter_map(|r| {
                    let prefix = r.wildcard_prefix.as_deref()?;
                    let rest = path.strip_prefix(prefix)?;
                    (rest.is_empty() || rest.starts_with('/')).then_some((prefix.len(), r))
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, r)| r)
        })?;
        let path_info = match &best.wildcard_prefix {
            Some(prefix) => path[prefix.len()..].to_string(),
            None => String::new(),
        };
        Some(RouteMatch {
            component: best.component.clone(),
            matched_route: if best.based.is_empty() { "/".to_string() } else { best.based.clone() },
            raw_route: best.raw.clone(),
            component_route: best.raw.strip_suffix("/...").unwrap_or(&best.raw).to_string(),
            path_info,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        let routes: Vec<_> =
            routes.iter().map(|(r, c)| HttpRoute { route: r.to_string(), component: c.to_string() }).collect();
        Router::build(&routes).expect("valid routes")
    }

    fn component(r: &Router, path: &str) -> Option<String> {
        r.route(path).map(|m| m.component)
    }

    #[test]
    fn exact_beats_wildcard_and_longest_prefix_wins() {
        let r = router(&[("/...", "all"), ("/one", "one"), ("/one/...", "one-w"), ("/one/two/...", "two-w")]);
        assert_eq!(component(&r, "/one").as_deref(), Some("one"));
        assert_eq!(component(&r, "/one/x").as_deref(), Some("one-w"));
        assert_eq!(component(&r, "/one/two/three").as_deref(), Some("two-w"));
        assert_eq!(component(&r, "/onetwo").as_deref(), Some("all"));
        assert_eq!(component(&r, "/").as_deref(), Some("all"));
    }

    #[test]
    fn path_info_follows_spin() {
        let r = router(&[("/foo/...", "foo")]);
        let info = |p: &str| r.route(p).expect("matches").path_info;
        assert_eq!(info("/foo"), "");
        assert_eq!(info("/foo/"), "/");
        assert_eq!(info("/foo/bar"), "/bar");
        assert_eq!(info("/foo/bar/"), "/bar/");
        assert!(r.route("/foobar").is_none());
        let m = r.route("/foo/bar").expect("matches");
        assert_eq!(
            (m.matched_route.as_str(), m.component_route.as_str(), m.raw_route.as_str()),
            ("/foo/...", "/foo", "/foo/...")
        );
        let all = router(&[("/...", "all")]);
        assert_eq!(all.route("/").expect("root").path_info, "/");
        assert_eq!(all.route("/a/b").expect("any").path_info, "/a/b");
    }

    #[test]
    fn exact_routes_and_duplicates() {
        let r = router(&[("/", "root"), ("/health", "first"), ("/health", "second")]);
        assert_eq!(component(&r, "/").as_deref(), Some("root"));
        assert_eq!(component(&r, "/health").as_deref(), Some("second"));
        assert_eq!(component(&r, "/health/").as_deref(), Some("second"));
        assert_eq!(component(&r, "/health/x"), None);
        let routes = [HttpRoute { route: "/users/:id".into(), component: "c".into() }];
        assert!(Router::build(&routes).is_err());
    }
}
