//! Maps Redis replies to Upstash REST JSON: simple string -> string, integer -> number,
//! bulk -> string (lossy UTF-8, or base64 with `Upstash-Encoding: base64`), nil -> null,
//! array -> array (nested).
//!
//! Pure mapping only: this module must not talk to Redis or choose HTTP status codes.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::resp::Reply;

/// How strings in replies are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lossy UTF-8 (invalid bytes become U+FFFD), Upstash's default.
    Utf8,
    /// Base64 of the raw bytes, for every string except a top-level simple-string `OK`.
    Base64,
}

impl Encoding {
    /// From the `Upstash-Encoding` header value.
    pub fn from_header(value: Option<&str>) -> Encoding {
        match value {
            Some(v) if v.trim().eq_ignore_ascii_case("base64") => Encoding::Base64,
            _ => Encoding::Utf8,
        }
    }
}

/// `{"result": ...}` or, for an error reply, `{"error": "..."}`. Error messages are never
/// base64 encoded (the official clients read them as plain text).
pub fn envelope(reply: &Reply, encoding: Encoding) -> Value {
    match reply {
        Reply::Error(message) => json!({ "error": message }),
        other => json!({ "result": result_value(other, encoding) }),
    }
}

/// The `result` value of one reply.
///
/// Upstash leaves the `OK` status unencoded; the official JS client keeps a top-level
/// `"OK"` as is but base64-decodes every string inside arrays, so only a top-level simple
/// `OK` is exempt.
pub fn result_value(reply: &Reply, encoding: Encoding) -> Value {
    match reply {
        Reply::Simple(s) if s == "OK" => Value::String(s.clone()),
        other => value_at(other, encoding),
    }
}

fn value_at(reply: &Reply, encoding: Encoding) -> Value {
    match reply {
        Reply::Simple(s) | Reply::Error(s) => string(s.as_bytes(), encoding),
        Reply::Bulk(bytes) => string(bytes, encoding),
        Reply::Integer(n) => Value::from(*n),
        Reply::Nil => Value::Null,
        Reply::Array(items) => Value::Array(items.iter().map(|i| value_at(i, encoding)).collect()),
    }
}

fn string(bytes: &[u8], encoding: Encoding) -> Value {
    match encoding {
        Encoding::Utf8 => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        Encoding::Base64 => Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_reply_type() {
        let reply = Reply::Array(vec![
            Reply::Simple("PONG".into()),
            Reply::Integer(3),
            Reply::Bulk(vec![b'h', b'i', 0xff]),
            Reply::Nil,
            Reply::Array(vec![Reply::Bulk(b"x".to_vec())]),
        ]);
        assert_eq!(result_value(&reply, Encoding::Utf8), json!(["PONG", 3, "hi\u{fffd}", null, ["x"]]));
        assert_eq!(result_value(&reply, Encoding::Base64), json!(["UE9ORw==", 3, "aGn/", null, ["eA=="]]));
    }

    #[test]
    fn ok_status_is_never_encoded_at_top_level() {
        let ok = Reply::Simple("OK".into());
        assert_eq!(envelope(&ok, Encoding::Base64), json!({"result": "OK"}));
        let bulk_ok = Reply::Bulk(b"OK".to_vec());
        assert_eq!(envelope(&bulk_ok, Encoding::Base64), json!({"result": "T0s="}));
        let nested = Reply::Array(vec![ok]);
        assert_eq!(result_value(&nested, Encoding::Base64), json!(["T0s="]));
    }

    #[test]
    fn errors_stay_plain() {
        let e = Reply::Error("ERR nope".into());
        assert_eq!(envelope(&e, Encoding::Base64), json!({"error": "ERR nope"}));
    }
}
