//! Typed errors of the core. Each says where it came from (client, store, upstream, gateway) and
//! whether a retry may help; `ApiError` is the only thing a client ever sees, rendered by
//! `api::envelope` as `{"error":{"message","type","code"}}`.
//!
//! Must not: carry an upstream body, a key, a token or a URL with credentials into a message.

use http::StatusCode;

/// The OpenAI error `type` field; clients branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RateLimit,
    /// A 429 of a per-minute request limit (OpenAI's `type` for it).
    Requests,
    /// A 429 of a per-minute token limit.
    Tokens,
    /// A 429 of a spend budget (OpenAI's `type` for a used-up quota).
    InsufficientQuota,
    Api,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request_error",
            ErrorType::Authentication => "authentication_error",
            ErrorType::Permission => "permission_error",
            ErrorType::NotFound => "not_found_error",
            ErrorType::RateLimit => "rate_limit_error",
            ErrorType::Requests => "requests",
            ErrorType::Tokens => "tokens",
            ErrorType::InsufficientQuota => "insufficient_quota",
            ErrorType::Api => "api_error",
        }
    }
}

/// An error answer for the client: status, OpenAI type, stable snake_case code, readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, as OpenAI reports it.
    pub param: Option<String>,
    /// Seconds a client should wait before retrying (429, 503).
    pub retry_after_s: Option<u64>,
    /// When no provider answered: each target tried or skipped, with its failure code, in order.
    pub failures: Vec<(String, &'static str)>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: ErrorType, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, code, message: message.into(), param: None, retry_after_s: None, failures: Vec::new() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorType::InvalidRequest, code, message)
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after_s = seconds;
        self
    }
}

/// Which cache tier a store error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    EdgeKv,
    Redis,
}

impl Tier {
    /// The name used in `Cache-Status`, `x-cache-tier` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::EdgeKv => "edge-kv",
            Tier::Redis => "redis",
        }
    }
}

/// A cache tier failed. Never shown to the client: a store error is a miss (fail open).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} {op}: {kind}", tier.as_str())]
pub struct StoreError {
    pub tier: Tier,
    pub op: &'static str,
    pub kind: StoreErrorKind,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreErrorKind {
    #[error("timed out")]
    Timeout,
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("unreadable entry: {0}")]
    Garbage(String),
    #[error("value of {size} bytes is over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}

impl StoreErrorKind {
    /// A short stable word for logs and the `detail` of `Cache-Status`.
    pub fn word(&self) -> &'static str {
        match self {
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Unavailable(_) => "unavailable",
            StoreErrorKind::Protocol(_) => "protocol",
            StoreErrorKind::Garbage(_) => "garbage",
            StoreErrorKind::TooLarge { .. } => "too-large",
        }
    }

    /// Whether trying the same call again may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, StoreErrorKind::Timeout | StoreErrorKind::Unavailable(_))
    }
}

/// How far one failed provider call reaches: what the failover may try next. The failover
/// (`routing::failover`) refines it with what only it knows (whether the target translated the
/// request, whether another target remains).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The target may answer a second attempt: the same target again, after a backoff.
    RetrySame,
    /// The target will not answer this request soon: the next target, at once.
    NextTarget,
    /// The request itself is at fault: no other attempt.
    Stop,
}

/// A provider call failed. `scope` says whether another attempt, or another target, may help;
/// a client's bad request never does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("timed out after {ms} ms")]
    Timeout { ms: u64 },
    #[error("rate limited (429)")]
    RateLimited { retry_after_ms: Option<u64> },
    #[error("rejected the gateway's credentials ({status})")]
    Auth { status: u16 },
    #[error("server error ({status})")]
    Server { status: u16, retry_after_ms: Option<u64> },
    /// The provider refused the client's request as invalid: returned to the client as-is.
    #[error("rejected the request ({status}): {message}")]
    ClientRequest { status: u16, kind: String, message: String, param: Option<String> },
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("response larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("stream broke off: {0}")]
    Stream(String),
    #[error("no provider is configured for this request")]
    NotConfigured,
}

impl UpstreamError {
    /// What may help after this failure. A provider's advice to wait longer than
    /// `retry_after_cap_ms` is not waited for: a 429 or 5xx saying so moves to the next target.
    /// A stall (`Timeout`) is worth a second attempt only where no other target remains; the
    /// failover decides that.
    pub fn scope(&self, retry_after_cap_ms: u64) -> Scope {
        let short = |ms: &Option<u64>| ms.is_some_and(|ms| ms <= retry_after_cap_ms);
        match self {
            UpstreamError::Connect(_) | UpstreamError::Timeout { .. } | UpstreamError::Stream(_) => Scope::RetrySame,
            UpstreamError::Server { retry_after_ms: None, .. } => Scope::RetrySame,
            UpstreamError::Server { retry_after_ms, .. } if short(retry_after_ms) => Scope::RetrySame,
            UpstreamError::RateLimited { retry_after_ms } if short(retry_after_ms) => Scope::RetrySame,
            // Our key, the provider's answer or its patience failed: another attempt gets the same.
            UpstreamError::Server { .. }
            | UpstreamError::RateLimited { .. }
            | UpstreamError::Auth { .. }
            | UpstreamError::Malformed(_)
            | UpstreamError::TooLarge { .. }
            | UpstreamError::NotConfigured => Scope::NextTarget,
            UpstreamError::ClientRequest { .. } => Scope::Stop,
        }
    }

    /// A stable code naming the failure, safe to show a client.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "upstream_unreachable",
            UpstreamError::Timeout { .. } => "upstream_timeout",
            UpstreamError::RateLimited { .. } => "upstream_rate_limited",
            UpstreamError::Auth { .. } => "upstream_auth_failed",
            UpstreamError::Server { .. } => "upstream_server_error",
            UpstreamError::ClientRequest { .. } => "upstream_rejected_request",
            UpstreamError::Malformed(_) => "upstream_malformed_response",
            UpstreamError::TooLarge { .. } => "upstream_response_too_large",
            UpstreamError::Stream(_) => "upstream_stream_error",
            UpstreamError::NotConfigured => "upstream_not_configured",
        }
    }

    /// What the client sees when no cached answer can stand in. The provider's own message is
    /// passed on only for the client's own bad request; everything else is named by code alone.
    pub fn to_api_error(&self) -> ApiError {
        let code = self.code();
        match self {
            UpstreamError::ClientRequest { status, kind, message, param } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST);
                let kind = if status == StatusCode::NOT_FOUND || kind == "not_found_error" {
                    ErrorType::NotFound
                } else {
                    ErrorType::InvalidRequest
                };
                let mut e = ApiError::new(status, kind, code, format!("The provider rejected the request: {message}"));
                e.param = param.clone();
                e
            }
            UpstreamError::Timeout { ms } => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorType::Api,
                code,
                format!("The provider did not answer within {ms} ms."),
            ),
            UpstreamError::RateLimited { retry_after_ms } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::Api,
                code,
                "The provider is rate limiting the gateway; try again later.",
            )
            .with_retry_after(retry_after_ms.map(|ms| ms.div_ceil(1000))),
            UpstreamError::NotConfigured => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::Api,
                code,
                "No provider is configured for this gateway.",
            ),
            other => ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorType::Api,
                code,
                format!("The provider failed: {}.", other.public_reason()),
            ),
        }
    }

    /// A reason without any provider text: safe for a client.
    fn public_reason(&self) -> String {
        match self {
            UpstreamError::Connect(_) => "could not connect".into(),
            UpstreamError::Auth { status } => format!("it rejected the gateway's own credentials ({status})"),
            UpstreamError::Server { status, .. } => format!("server error {status}"),
            UpstreamError::Malformed(_) => "its answer was not a valid chat completion".into(),
            UpstreamError::TooLarge { limit } => format!("its answer was larger than {limit} bytes"),
            UpstreamError::Stream(_) => "its stream broke off".into(),
            other => other.code().into(),
        }
    }
}

/// A request feature a provider cannot express. Never dropped silently: the target is skipped,
/// and when no target can serve the request the client gets a 400 naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{field}' is not supported by {provider}: {reason}")]
pub struct Unsupported {
    pub provider: &'static str,
    pub field: String,
    pub reason: String,
}

impl Unsupported {
    pub fn new(provider: &'static str, field: impl Into<String>, reason: impl Into<String>) -> Unsupported {
        Unsupported { provider, field: field.into(), reason: reason.into() }
    }
}
