//! Who a request comes from, from its `Authorization: Bearer` value:
//! - a **gateway key** (`GATEWAY_KEYS`): its tenant, with the tenant's guard rails;
//! - a **publishable key** (`PUBLISHABLE_KEYS`): browser-only; it works only when the request's
//!   `Origin` is one of the key's, and only within the key's own limits (kept as an end user of
//!   its tenant: `{tenant}.pk.{name}`), on top of the tenant's;
//! - a **signed browser token** (`jwt`): a tenant's end user, within the token's limits
//!   (`{tenant}.u.{digest of sub}`), on top of the tenant's.
//!
//! Pure: told the time. Must not: put a key, a token or a claim value into an error or a log.

pub mod jwt;

use http::StatusCode;
use sha2::{Digest, Sha256};

use crate::config::{Config, TenantPolicy};
use crate::error::{ApiError, ErrorType};

/// A request's caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller<'a> {
    pub tenant: &'a str,
    /// A browser caller's own limits, kept on top of the tenant's.
    pub end_user: Option<EndUser>,
}

/// An end user (of a token) or a publishable key: its limit counters' name and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUser {
    /// The name its counters are kept under (a tenant-like name: safe in Redis keys and logs).
    pub subject: String,
    pub policy: TenantPolicy,
}

/// The caller `bearer` (the key or token of `Authorization: Bearer`) stands for, at `now_ms`;
/// `origin` is the request's `Origin` header.
pub fn identify<'a>(
    config: &'a Config,
    bearer: &str,
    origin: Option<&str>,
    now_ms: u64,
) -> Result<Caller<'a>, ApiError> {
    if let Some(tenant) = config.tenant_for_key(bearer) {
        return Ok(Caller { tenant, end_user: None });
    }
    let browser = &config.browser;
    if let Some(grant) = browser.publishable(bearer) {
        if !origin.is_some_and(|o| grant.origins.iter().any(|allowed| allowed == o)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorType::Permission,
                "origin_not_allowed",
                "This publishable key works only from the web origins it was issued for.",
            ));
        }
        let tenant = config.tenant_named(&grant.tenant).ok_or_else(invalid_key)?;
        let policy = TenantPolicy {
            requests_per_minute: Some(grant.requests_per_minute),
            tokens_per_minute: grant.tokens_per_minute,
            models: grant.models.clone(),
            fail_closed: config.tenant_policies.policy(tenant).fail_closed,
            ..TenantPolicy::default()
        };
        return Ok(Caller {
            tenant,
            end_user: Some(EndUser { subject: format!("{tenant}.pk.{}", grant.name), policy }),
        });
    }
    if browser.takes_tokens() && jwt::looks_like_jwt(bearer) {
        let refused =
            |why: String| ApiError::new(StatusCode::UNAUTHORIZED, ErrorType::Authentication, "invalid_token", why);
        let claims = jwt::verify(browser, bearer, now_ms)
            .map_err(|e| refused(format!("The browser token was refused: {e}.")))?;
        let tenant = config
            .tenant_named(&claims.tenant)
            .ok_or_else(|| refused("The browser token was refused: its tenant has no gateway key.".into()))?;
        let digest = Sha256::digest(claims.subject.as_bytes());
        let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let policy = TenantPolicy {
            requests_per_minute: claims.requests_per_minute,
            tokens_per_minute: claims.tokens_per_minute,
            models: claims.models,
            fail_closed: config.tenant_policies.policy(tenant).fail_closed,
            ..TenantPolicy::default()
        };
        return Ok(Caller { tenant, end_user: Some(EndUser { subject: format!("{tenant}.u.{short}"), policy }) });
    }
    Err(invalid_key())
}

fn invalid_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorType::Authentication,
        "invalid_api_key",
        "The gateway key is not valid.",
    )
}
