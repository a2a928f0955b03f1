//! Signed browser tokens: a compact JWT (RFC 7519) checked against the configured key of the one
//! algorithm its header names (HS256 with `BROWSER_TOKEN_SECRET`, EdDSA/Ed25519 with
//! `BROWSER_TOKEN_PUBLIC_KEY`): `none`, any other algorithm, and an algorithm without its key
//! are refused, so a token cannot pick a key meant for another algorithm (algorithm confusion).
//! Then `exp` (required, at most `BROWSER_TOKEN_MAX_TTL_SECONDS` ahead), `nbf`, `aud` (required,
//! `BROWSER_TOKEN_AUDIENCE`), `tenant` and `sub` (required), with 30 s of leeway for clocks.
//!
//! Pure: told the time. Must not: read a clock, or put the token or a claim value into an error.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::config::BrowserAuth;

/// Allowed clock difference between the token's minter and the gateway.
const LEEWAY_S: u64 = 30;
/// The largest per-minute limit a token may carry.
const MAX_LIMIT: u64 = 1_000_000_000;

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub tenant: String,
    /// The end user (`sub`).
    pub subject: String,
    pub expires_s: u64,
    /// Per-end-user limits (`rpm`, `tpm`) and models (`models`), on top of the tenant's.
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub models: Option<Vec<String>>,
}

/// Why a token was refused (said to the client without any of the token's content).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a compact JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted (HS256 or EdDSA, as configured)")]
    Algorithm,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYet,
    #[error("the token is for another audience (aud)")]
    Audience,
    #[error("the token lives longer than this gateway allows (exp too far ahead)")]
    TooLong,
    #[error("the token lacks a required claim (tenant, sub, exp, aud) or has a bad one")]
    Claim,
}

/// Whether `bearer` looks like a compact JWT (three base64url parts, a JSON header).
pub fn looks_like_jwt(bearer: &str) -> bool {
    bearer.starts_with("eyJ") && bearer.split('.').count() == 3
}

/// Verifies `token` at `now_ms` with the keys of `auth`.
pub fn verify(auth: &BrowserAuth, token: &str, now_ms: u64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(head), Some(body), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let json = |part: &str| -> Result<Value, TokenError> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed)?;
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
    };
    let header = json(head)?;
    let signature = URL_SAFE_NO_PAD.decode(sig).map_err(|_| TokenError::Malformed)?;
    let signed = &token[..head.len() + 1 + body.len()];
    match (header.get("alg").and_then(Value::as_str), &auth.hs256_secret, &auth.ed25519_key) {
        (Some("HS256"), Some(secret), _) => {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).map_err(|_| TokenError::Signature)?;
            mac.update(signed.as_bytes());
            mac.verify_slice(&signature).map_err(|_| TokenError::Signature)?;
        }
        (Some("EdDSA"), _, Some(key)) => {
            let key = VerifyingKey::from_bytes(key).map_err(|_| TokenError::Signature)?;
            let signature = Signature::from_slice(&signature).map_err(|_| TokenError::Signature)?;
            key.verify_strict(signed.as_bytes(), &signature).map_err(|_| TokenError::Signature)?;
        }
        _ => return Err(TokenError::Algorithm),
    }
    claims(auth, &json(body)?, now_ms / 1000)
}

/// Checks the times and audience, and reads the grant.
fn claims(auth: &BrowserAuth, c: &Value, now_s: u64) -> Result<Claims, TokenError> {
    let number = |name: &str| c.get(name).map(|v| v.as_u64().ok_or(TokenError::Claim)).transpose();
    let exp = number("exp")?.ok_or(TokenError::Claim)?;
    if exp + LEEWAY_S <= now_s {
        return Err(TokenError::Expired);
    }
    if exp > now_s + auth.max_ttl_seconds + LEEWAY_S {
        return Err(TokenError::TooLong);
    }
    if let Some(iat) = number("iat")? {
        if exp.saturating_sub(iat) > auth.max_ttl_seconds {
            return Err(TokenError::TooLong);
        }
    }
    if number("nbf")?.is_some_and(|nbf| nbf > now_s + LEEWAY_S) {
        return Err(TokenError::NotYet);
    }
    let audience_ok = match c.get("aud") {
        Some(Value::String(aud)) => *aud == auth.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(auth.audience.as_str())),
        _ => false,
    };
    if !audience_ok {
        return Err(TokenError::Audience);
    }
    let text = |name: &str| c.get(name).and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 256);
    let (Some(tenant), Some(subject)) = (text("tenant"), text("sub")) else { return Err(TokenError::Claim) };
    let limit = |name: &str| -> Result<Option<u64>, TokenError> {
        match number(name)? {
            Some(n) if !(1..=MAX_LIMIT).contains(&n) => Err(TokenError::Claim),
            other => Ok(other),
        }
    };
    let models = match c.get("models") {
        None => None,
        Some(v) => Some(
            v.as_array()
                .and_then(|a| a.iter().map(|m| m.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
                .ok_or(TokenError::Claim)?,
        ),
    };
    Ok(Claims {
        tenant: tenant.to_owned(),
        subject: subject.to_owned(),
        expires_s: exp,
        requests_per_minute: limit("rpm")?,
        tokens_per_minute: limit("tpm")?,
        models,
    })
}
