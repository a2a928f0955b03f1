//! Outbound HTTP: the `allowed_outbound_hosts` allow-list, parsed and matched as Spin does, and the
//! `wasi:http` hook that enforces it before anything touches the network.
//!
//! A request to a host that is not allowed fails with `wasi:http`'s `HTTP-request-denied` error
//! code (what Spin answers), never a trap or a panic. Service chaining (`*.spin.internal`),
//! `self` requests and `{ a, b }` lists are refused at start as unsupported. Allowed requests go
//! out through wasmtime-wasi-http's own client (`default_send_request`, TLS via rustls).

use std::net::IpAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// A parsed `allowed_outbound_hosts` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    entries: Vec<AllowedHost>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    ports: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`, stored as `.example.com`: any subdomain, not the domain itself.
    Subdomain(String),
    Exact(String),
    Network(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    /// A port, or a half-open range `a..b` (as Spin reads it).
    Range(u16, u16),
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

impl AllowedHosts {
    /// Parse already-resolved entries (templates expanded). Errors name the entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        if let [only] = entries
            && only.as_ref() == "insecure:allow-all"
        {
            return Err("'insecure:allow-all' is not allowed - use '*://*:*' to allow all outbound traffic".into());
        }
        let entries = entries.iter().map(|e| AllowedHost::parse(e.as_ref())).collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether a request to this URI may go out.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else { return false };
        let scheme = scheme.to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = uri.port_u16().or_else(|| well_known_port(&scheme));
        self.entries.iter().any(|e| e.allows(&scheme, &host, port))
    }
}

impl AllowedHost {
    fn parse(entry: &str) -> Result<Self, String> {
        let url = entry.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(match url {
                "*" | ":" | "" | "?" => format!(
                    "{url:?} is not an allowed outbound host format: use <scheme>://<host>[:<port>], \
                     with '*' wildcards allowed for each ('*://*:*' allows everything)"
                ),
                _ => format!("{url:?} does not contain a scheme (e.g. 'http://' or '*://')"),
            });
        };
        let (host, rest) = rest.rsplit_once(':').unwrap_or((rest, ""));
        let port = match rest.split_once('/') {
            Some((_, path)) if !path.is_empty() => return Err(format!("{url:?} has a path but is not allowed to")),
            Some((port, _)) => port,
            None => rest,
        };
        let scheme = match scheme {
            "*" => None,
            s if s.starts_with('{') => return Err(format!("{url:?}: scheme lists are not supported")),
            s if !s.chars().all(|c| c.is_ascii_alphabetic()) => {
                return Err(format!("{url:?}: scheme {s:?} contains a non-alphabetic character"));
            }
            s => Some(s.to_ascii_lowercase()),
        };
        let ports = match port {
            "" => {
                let scheme = scheme.as_deref().unwrap_or("*");
                let p = well_known_port(scheme).ok_or_else(|| {
                    format!("{url:?}: no port was given and the scheme {scheme:?} has no known default port")
                })?;
                PortPattern::Range(p, p + 1)
            }
            "*" => PortPattern::Any,
            p if p.starts_with('{') => return Err(format!("{url:?}: port lists are not supported")),
            p => match p.split_once("..") {
                Some((a, b)) => PortPattern::Range(parse_port(url, a)?, parse_port(url, b)?),
                None => {
                    let p = parse_port(url, p)?;
                    PortPattern::Range(p, p.saturating_add(1))
                }
            },
        };
        Ok(Self { scheme, host: parse_host(url, host)?, ports })
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Subdomain(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Exact(h) => h == host,
            HostPattern::Network(net, len) => host.parse::<IpAddr>().is_ok_and(|ip| in_network(ip, *net, *len)),
        };
        let port_ok = match self.ports {
            PortPattern::Any => true,
            PortPattern::Range(start, end) => port.is_some_and(|p| (start..end).contains(&p)),
        };
        scheme_ok && host_ok && port_ok
    }
}

fn parse_port(url: &str, text: &str) -> Result<u16, String> {
    text.parse().map_err(|_| format!("{url:?}: port {text:?} is not a number"))
}

fn parse_host(url: &str, host: &str) -> Result<HostPattern, String> {
    let host = host.trim();
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if host == "self" || host == "self.alt" {
        return Err(format!("{url:?}: self-requests (relative URLs) are not supported by spin-host"));
    }
    if host.starts_with('{') {
        return Err(format!("{url:?}: host lists are not supported"));
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let (addr, prefix) = bare.split_once('/').map_or((bare, None), |(a, p)| (a, Some(p)));
    if let Ok(ip) = addr.parse::<IpAddr>() {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| format!("{url:?}: bad prefix /{p}"))?,
        };
        return Ok(HostPattern::Network(ip, len));
    }
    if matches!(host.split('/').nth(1), Some(path) if !path.is_empty()) {
        return Err(format!("{url:?}: hosts must not contain paths"));
    }
    let host = host.trim_end_matches('/').to_ascii_lowercase();
    if host == "spin.internal" || host.ends_with(".spin.internal") {
        return Err(format!("{url:?}: service chaining is not supported by spin-host"));
    }
    if let Some(domain) = host.strip_prefix("*.") {
        if domain.contains('*') {
            return Err(format!("{url:?}: wildcards are allowed only as prefixes"));
        }
        return Ok(HostPattern::Subdomain(format!(".{domain}")));
    }
    if host.contains('*') {
        return Err(format!("{url:?}: wildcards are allowed only as subdomains"));
    }
    Ok(HostPattern::Exact(host))
}

fn in_network(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
        let (full, rest) = (usize::from(len / 8), len % 8);
        a[..full] == b[..full] && (rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0)
    }
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => prefix_eq(&a.octets(), &b.octets(), len),
        (IpAddr::V6(a), IpAddr::V6(b)) => prefix_eq(&a.octets(), &b.octets(), len),
        _ => false,
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

/// `wasi:http` hooks of one instance: the allow-list check in front of the default client.
pub struct OutboundHooks {
    allowed: Arc<AllowedHosts>,
    component: Arc<str>,
}

impl OutboundHooks {
    /// Hooks for `component`, allowed to reach `allowed`.
    pub fn new(component: Arc<str>, allowed: Arc<AllowedHosts>) -> Self {
        Self { allowed, component }
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        if !self.allowed.allows(request.uri()) {
            eprintln!(
                "spin-host: component `{}` denied outbound request to {} (not in allowed_outbound_hosts)",
                self.component,
                redact(request.uri())
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(io);
            Ok((response.map(BodyExt::boxed_unsync), io))
        })
    }
}

/// Scheme and authority only: paths and queries may carry tokens.
fn redact(uri: &http::Uri) -> String {
    format!("{}://{}", uri.scheme_str().unwrap_or("?"), uri.authority().map_or("?", |a| a.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entries: &[&str], url: &str) -> bool {
        AllowedHosts::parse(entries).expect("valid entries").allows(&url.parse().expect("valid uri"))
    }

    #[test]
    fn matches_like_spin() {
        assert!(allows(&["https://example.com"], "https://example.com/x"));
        assert!(allows(&["https://example.com"], "https://EXAMPLE.com:443/x"));
        assert!(!allows(&["https://example.com"], "http://example.com/x"), "scheme");
        assert!(!allows(&["https://example.com"], "https://example.com:8443/x"), "default port only");
        assert!(!allows(&["https://example.com"], "https://sub.example.com/x"));
        assert!(allows(&["https://*.example.com"], "https://a.b.example.com/"));
        assert!(!allows(&["https://*.example.com"], "https://example.com/"));
        assert!(allows(&["http://127.0.0.1:*"], "http://127.0.0.1:40123/x"));
        assert!(!allows(&["http://127.0.0.1:*"], "http://127.0.0.2:40123/x"));
        assert!(allows(&["http://127.0.0.0/8:*"], "http://127.9.9.9:1/x"));
        assert!(allows(&["*://*:*"], "http://anything:1/x"));
        assert!(allows(&["http://localhost:3000..3002"], "http://localhost:3001/"));
        assert!(!allows(&["http://localhost:3000..3002"], "http://localhost:3002/"), "ranges are half-open");
        assert!(allows(&["http://[::1]:8080"], "http://[::1]:8080/"));
        assert!(!allows(&[], "https://example.com/"), "nothing is allowed by default");
    }

    #[test]
    fn refuses_bad_entries() {
        for bad in [
            "*",
            "example.com",
            "insecure:allow-all",
            "https://example.com/path",
            "https://ex*ample.com",
            "https://*.ex*.com",
            "ht-tp://example.com",
            "*://example.com",
            "http://example.com:http",
            "http://self",
            "http://backend.spin.internal",
            "{http,https}://example.com",
        ] {
            assert!(AllowedHosts::parse(&[bad]).is_err(), "{bad} must be refused");
        }
    }
}
