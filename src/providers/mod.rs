//! Providers translate between the client's OpenAI request and one provider's wire format, and
//! classify the provider's answer. They only translate: building a request and reading a response
//! are pure functions, and only the gateway sends.

pub mod openai;

use http::HeaderMap;

/// Reads a provider's advice on when to retry: `retry-after-ms` (OpenAI) or `retry-after` in
/// seconds. An HTTP-date form is ignored (no clock here to compare it with).
pub fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(ms.ceil() as u64);
        }
    }
    header("retry-after").and_then(|v| v.parse::<u64>().ok()).map(|s| s.saturating_mul(1000))
}
