//! Percent-encoding and query-string helpers (RFC 3986), binary safe.
//!
//! Pure functions only; this module must not do routing or any IO.

/// Decodes `%XX` escapes. Invalid escapes are kept literally. `+` is kept as `+`
/// (path semantics); use [`query_pairs`] for form-style `+` as space.
pub fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Encodes every byte outside RFC 3986's unreserved set.
pub fn percent_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits a query string into decoded `(name, value)` pairs, in order. A pair without
/// `=` has an empty value. `+` decodes to a space, as in HTML forms.
pub fn query_pairs(query: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(&name.replace('+', " ")), percent_decode(&value.replace('+', " ")))
        })
        .collect()
}

/// The first value of query parameter `name`, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query_pairs(query?)
        .into_iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_encodes() {
        assert_eq!(percent_decode("a%20b%2Fc%zz%"), b"a b/c%zz%".to_vec());
        assert_eq!(percent_decode("%ff%00"), vec![0xff, 0x00]);
        assert_eq!(percent_encode(b"a b/~\xff"), "a%20b%2F~%FF");
        assert_eq!(percent_decode(&percent_encode(b"x\r\n\0y")), b"x\r\n\0y".to_vec());
    }

    #[test]
    fn parses_queries() {
        let pairs = query_pairs("EX=100&NX&_token=t%3D1&q=a+b");
        assert_eq!(
            pairs,
            vec![
                (b"EX".to_vec(), b"100".to_vec()),
                (b"NX".to_vec(), Vec::new()),
                (b"_token".to_vec(), b"t=1".to_vec()),
                (b"q".to_vec(), b"a b".to_vec()),
            ]
        );
        assert_eq!(query_param(Some("a=1&b=2"), "b").as_deref(), Some("2"));
        assert_eq!(query_param(None, "b"), None);
    }
}
