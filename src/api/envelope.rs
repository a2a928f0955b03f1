//! Renders an `ApiError` as the OpenAI error envelope `{"error":{"message","type","param","code"}}`.
//! Every client-visible error goes through here, so its shape is the same on every path.

use bytes::Bytes;
use serde_json::json;

use crate::error::ApiError;

pub fn error_body(err: &ApiError) -> Bytes {
    let mut body = json!({
        "error": {
            "message": err.message,
            "type": err.kind.as_str(),
            "param": err.param,
            "code": err.code,
        }
    });
    if !err.failures.is_empty() {
        let failures: Vec<_> =
            err.failures.iter().map(|(target, code)| json!({"target": target, "code": code})).collect();
        body["error"]["failures"] = json!(failures);
    }
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value always serializes"))
}
