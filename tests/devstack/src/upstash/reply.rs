//! Maps Redis replies to Upstash REST JSON: status -> string, integer -> number, bulk ->
//! string (lossy UTF-8, or base64 with `Upstash-Encoding: base64`), nil -> null, array -> array
//! (nested), error -> `{"error": "ERR ..."}` at the top level.
//!
//! Replies are the `redis` crate's values; the connection speaks RESP2, so its RESP3-only
//! kinds (maps, sets, doubles ...) never arrive.
//!
//! Pure mapping only: this module must not talk to Redis or choose HTTP status codes.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::redis_client::{ServerError, Value as Reply};

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
        Reply::ServerError(error) => json!({ "error": error_message(error) }),
        other => json!({ "result": result_value(other, encoding) }),
    }
}

/// The error line exactly as Redis sent it (`ERR wrong number of arguments ...`): the library
/// splits it into a code and the rest at the first space.
pub fn error_message(error: &ServerError) -> String {
    match error.details() {
        Some(details) => format!("{} {details}", error.code()),
        None => error.code().to_owned(),
    }
}

/// The `result` value of one reply.
///
/// Upstash leaves the `OK` status unencoded; the official JS client keeps a top-level
/// `"OK"` as is but base64-decodes every string inside arrays, so only a top-level simple
/// `OK` is exempt.
pub fn result_value(reply: &Reply, encoding: Encoding) -> Value {
    match reply {
        Reply::Okay => Value::String("OK".to_owned()),
        other => value_at(other, encoding),
    }
}

fn value_at(reply: &Reply, encoding: Encoding) -> Value {
    match reply {
        Reply::Okay => string(b"OK", encoding),
        Reply::SimpleString(s) => string(s.as_bytes(), encoding),
        Reply::ServerError(e) => string(error_message(e).as_bytes(), encoding),
        Reply::BulkString(bytes) => string(bytes, encoding),
        Reply::Int(n) => Value::from(*n),
        Reply::Nil => Value::Null,
        Reply::Array(items) => Value::Array(items.iter().map(|i| value_at(i, encoding)).collect()),
        // Maps, sets, doubles, booleans, pushes ...: RESP3 only, never sent on this connection.
        _ => Value::Null,
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

    fn error(line: &str) -> Reply {
        // The library's own parser, so the test sees what a live Redis gives.
        redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn maps_every_reply_type() {
        let reply = Reply::Array(vec![
            Reply::SimpleString("PONG".into()),
            Reply::Int(3),
            Reply::BulkString(vec![b'h', b'i', 0xff]),
            Reply::Nil,
            Reply::Array(vec![Reply::BulkString(b"x".to_vec())]),
        ]);
        assert_eq!(result_value(&reply, Encoding::Utf8), json!(["PONG", 3, "hi\u{fffd}", null, ["x"]]));
        assert_eq!(result_value(&reply, Encoding::Base64), json!(["UE9ORw==", 3, "aGn/", null, ["eA=="]]));
    }

    #[test]
    fn ok_status_is_never_encoded_at_top_level() {
        let ok = redis::parse_redis_value(b"+OK\r\n").unwrap();
        assert_eq!(envelope(&ok, Encoding::Base64), json!({"result": "OK"}));
        let bulk_ok = Reply::BulkString(b"OK".to_vec());
        assert_eq!(envelope(&bulk_ok, Encoding::Base64), json!({"result": "T0s="}));
        let nested = Reply::Array(vec![ok]);
        assert_eq!(result_value(&nested, Encoding::Base64), json!(["T0s="]));
    }

    #[test]
    fn errors_stay_plain_and_whole() {
        assert_eq!(envelope(&error("ERR nope"), Encoding::Base64), json!({"error": "ERR nope"}));
        let arity = error("ERR wrong number of arguments for 'get' command");
        assert_eq!(
            envelope(&arity, Encoding::Utf8),
            json!({"error": "ERR wrong number of arguments for 'get' command"})
        );
        assert_eq!(
            envelope(&error("WRONGTYPE Operation  against"), Encoding::Utf8),
            json!({"error": "WRONGTYPE Operation  against"})
        );
        assert_eq!(envelope(&error("NOSCRIPT"), Encoding::Utf8), json!({"error": "NOSCRIPT"}));
    }
}
