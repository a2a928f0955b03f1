//! What one request allows the cache to do, from its `Cache-Control` directives and the namespace
//! header. A client controls only its own requests; tenant scoping is not a client choice. What
//! `max-age` then means for an entry is `cache::verdict`'s to decide. Streaming and non-streaming
//! requests follow the same controls: one entry serves both.

use http::HeaderMap;

use crate::error::ApiError;

/// The header that puts a request's entries in a namespace of the tenant's own.
pub const NAMESPACE_HEADER: &str = "x-cache-namespace";
const NAMESPACE_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Entries may answer this request (false for `no-cache` and `no-store`).
    pub read: bool,
    /// The answer may be stored (false for `no-store`).
    pub write: bool,
    /// Only entries at most this old (seconds) may answer (`max-age=N`).
    pub max_age_s: Option<u64>,
    /// Answer from the cache or fail with 504, never call a provider (`only-if-cached`).
    pub only_if_cached: bool,
    /// Why reads are skipped, for `Cache-Status`.
    pub bypass: Option<Bypass>,
    pub namespace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// The client asked (`no-cache`, `no-store`).
    Request,
}

impl Policy {
    /// Reads the request's controls. Unknown directives are ignored, as HTTP caches do; a
    /// malformed value of a known one is a 400, so a typo does not silently change behaviour.
    pub fn from_headers(headers: &HeaderMap) -> Result<Policy, ApiError> {
        let mut policy = Policy {
            read: true,
            write: true,
            max_age_s: None,
            only_if_cached: false,
            bypass: None,
            namespace: String::new(),
        };
        for value in headers.get_all(http::header::CACHE_CONTROL) {
            let value = value.to_str().map_err(|_| invalid_cache_control("it is not visible ASCII"))?;
            for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive, None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-cache" => {
                        policy.read = false;
                        policy.bypass = Some(Bypass::Request);
                    }
                    "no-store" => {
                        policy.read = false;
                        policy.write = false;
                        policy.bypass = Some(Bypass::Request);
                    }
                    "only-if-cached" => policy.only_if_cached = true,
                    "max-age" => {
                        let arg = arg.ok_or_else(|| invalid_cache_control("max-age needs a value"))?;
                        let secs = arg
                            .parse::<u64>()
                            .map_err(|_| invalid_cache_control("max-age must be a whole number of seconds"))?;
                        policy.max_age_s = Some(policy.max_age_s.map_or(secs, |m| m.min(secs)));
                    }
                    _ => {}
                }
            }
        }
        if let Some(ns) = headers.get(NAMESPACE_HEADER) {
            let ns = ns.to_str().unwrap_or("\u{0}");
            if !valid_namespace(ns) {
                return Err(ApiError::bad_request(
                    "invalid_cache_namespace",
                    format!(
                        "The {NAMESPACE_HEADER} header must be 1 to {NAMESPACE_MAX} characters of letters, digits, '.', '_', ':' or '-'."
                    ),
                ));
            }
            policy.namespace = ns.to_owned();
        }
        Ok(policy)
    }
}

fn invalid_cache_control(why: &str) -> ApiError {
    ApiError::bad_request("invalid_cache_control", format!("The Cache-Control header is invalid: {why}."))
}

/// Whether `ns` may name a namespace: 1 to 64 letters, digits, '.', '_', ':' or '-'.
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty() && ns.len() <= NAMESPACE_MAX && ns.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}
