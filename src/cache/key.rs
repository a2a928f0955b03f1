//! The cache key: SHA-256 over a versioned, tenant-scoped, canonical encoding of the request.
//!
//! Canonical means: object keys sorted, numbers normalized (`1`, `1.0` and `1e0` are one number),
//! no whitespace. Fields that cannot change the answer are left out by name (a short deny-list);
//! every other field, unknown ones included, is part of the key, so two requests share an entry
//! only when a provider would see the same request. Pieces are joined with NUL bytes, which none
//! of them can contain, so the encoding is prefix-free. Changing anything here changes every key:
//! bump `KEY_VERSION` and update the pinned digests in `tests/cache_key.rs`.

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::chat::ChatRequest;
use crate::api::embeddings::EmbeddingsRequest;

/// Part of every key: old entries simply stop matching when the encoding changes.
pub const KEY_VERSION: &str = "llm-edge-cache/key/v1";

/// A hex SHA-256 digest with a short version prefix: 70 bytes, within every store's key limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

/// What scopes a key besides the request: the operator's cache generation (`CACHE_GENERATION`;
/// empty: none), the tenant, and the client's namespace.
#[derive(Debug, Clone, Copy)]
pub struct KeyScope<'a> {
    pub generation: &'a str,
    pub tenant: &'a str,
    pub namespace: &'a str,
}

impl CacheKey {
    /// The key of a chat completions request for `tenant` in `namespace`, without a generation.
    pub fn chat(tenant: &str, namespace: &str, request: &ChatRequest) -> CacheKey {
        CacheKey::chat_in(&KeyScope { generation: "", tenant, namespace }, request)
    }

    /// The key of a chat completions request in `scope`. A generation is one more part of the
    /// hashed prefix, written as `generation=<g>`: a tenant name cannot contain `=`, so no scope
    /// with a generation encodes like one without. No generation leaves the keys of earlier
    /// releases unchanged.
    pub fn chat_in(scope: &KeyScope<'_>, request: &ChatRequest) -> CacheKey {
        // Destructured by name so that a new field is a compile error here until it is decided.
        let ChatRequest {
            model,
            messages,
            params,
            // Delivery and bookkeeping only: the same answer either way.
            stream: _,
            stream_options: _,
            user: _,
            metadata: _,
            store: _,
            prompt_cache_key: _,
            safety_identifier: _,
        } = request;
        // A fixed order (messages, model, then parameters by name) is as canonical as a sorted one.
        // A parameter sent as `null` means "the default", the same as leaving it out.
        let mut canon = Vec::with_capacity(256);
        canon.extend_from_slice(b"{\"messages\":");
        canonical_array(messages, &mut canon);
        canon.extend_from_slice(b",\"model\":");
        canonical_string(model, &mut canon);
        canonical_params(params, &mut canon);
        CacheKey::scoped(scope, b"chat.completions", &canon)
    }

    /// The key of an embeddings request in `scope`: its model, input (as sent), encoding,
    /// dimensions and every other field except `user`, under an endpoint name of its own, so it
    /// never meets a chat key.
    pub fn embeddings_in(scope: &KeyScope<'_>, request: &EmbeddingsRequest) -> CacheKey {
        let EmbeddingsRequest { model, input, inputs: _, encoding, encoding_sent: _, dimensions, user: _, params } =
            request;
        let mut canon = Vec::with_capacity(128);
        canon.extend_from_slice(b"{\"dimensions\":");
        match dimensions {
            Some(d) => canonical(&Value::from(*d), &mut canon),
            None => canon.extend_from_slice(b"null"),
        }
        canon.extend_from_slice(b",\"encoding_format\":");
        canonical_string(encoding.as_str(), &mut canon);
        canon.extend_from_slice(b",\"input\":");
        canonical(input, &mut canon);
        canon.extend_from_slice(b",\"model\":");
        canonical_string(model, &mut canon);
        canonical_params(params, &mut canon);
        CacheKey::scoped(scope, b"embeddings", &canon)
    }

    /// SHA-256 over the version, the scope, the endpoint and the canonical request.
    fn scoped(scope: &KeyScope<'_>, endpoint: &[u8], canon: &[u8]) -> CacheKey {
        let mut hasher = Sha256::new();
        hasher.update(KEY_VERSION.as_bytes());
        hasher.update([0u8]);
        if !scope.generation.is_empty() {
            hasher.update(b"generation=");
            hasher.update(scope.generation.as_bytes());
            hasher.update([0u8]);
        }
        for part in [scope.tenant.as_bytes(), scope.namespace.as_bytes(), endpoint] {
            hasher.update(part);
            hasher.update([0u8]);
        }
        hasher.update(canon);
        CacheKey::from_digest(&hasher.finalize())
    }

    fn from_digest(digest: &[u8]) -> CacheKey {
        let mut s = String::with_capacity(6 + digest.len() * 2);
        s.push_str("llmc1:");
        for b in digest {
            write!(s, "{b:02x}").expect("writing to a String cannot fail");
        }
        CacheKey(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a store key is the key of a cache entry (and not, say, a health probe's).
    pub fn is_entry_key(key: &str) -> bool {
        key.split_once(':').is_some_and(|(version, hex)| {
            version == "llmc1" && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
        })
    }

    /// The digest alone, in hex (what follows the version prefix).
    pub fn digest_hex(&self) -> &str {
        self.0.split_once(':').map_or(self.0.as_str(), |(_, hex)| hex)
    }
}

/// Writes `,"name":value` for each parameter not sent as `null` (which means "the default", the
/// same as leaving it out), in name order, then closes the object.
fn canonical_params(params: &std::collections::BTreeMap<String, Value>, out: &mut Vec<u8>) {
    for (name, value) in params.iter().filter(|(_, v)| !v.is_null()) {
        out.push(b',');
        canonical_string(name, out);
        out.push(b':');
        canonical(value, out);
    }
    out.push(b'}');
}

/// Writes the canonical encoding of `value`: object keys sorted, numbers normalized, no whitespace.
pub fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => canonical_number(n, out),
        Value::String(s) => canonical_string(s, out),
        Value::Array(items) => canonical_array(items, out),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_string(k, out);
                out.push(b':');
                canonical(v, out);
            }
            out.push(b'}');
        }
    }
}

fn canonical_array(items: &[Value], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        canonical(v, out);
    }
    out.push(b']');
}

fn canonical_string(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing a string to a Vec cannot fail");
}

/// Integers print as integers; a float with no fraction that is exactly an integer prints as that
/// integer (`1.0` == `1`); other floats print in serde_json's shortest round-trip form.
fn canonical_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    if let Some(i) = n.as_i64() {
        write!(VecWriter(out), "{i}").expect("writing to a Vec cannot fail");
    } else if let Some(u) = n.as_u64() {
        write!(VecWriter(out), "{u}").expect("writing to a Vec cannot fail");
    } else if let Some(f) = n.as_f64() {
        // 2^53: beyond it not every integer is a float, so the integer form would invent digits.
        if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
            write!(VecWriter(out), "{}", f as i64).expect("writing to a Vec cannot fail");
        } else {
            serde_json::to_writer(&mut *out, &f).expect("a finite float always serializes");
        }
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
