//! Cache entries: encoding round trip, version and garbage rejection, fresh/stale/expired.
#![cfg(not(target_arch = "wasm32"))]

use llm_edge_cache::cache::entry::{Entry, EntryError, ENTRY_FORMAT};
use llm_edge_cache::cache::verdict::{freshness, store_ttl_ms, Freshness};

const NOW: u64 = 1_767_225_600_000;

fn entry() -> Entry {
    Entry::new(NOW, 60, 600, "openai", "gpt-4o-mini-2024-07-18", br#"{"choices":[]}"#.to_vec())
}

#[test]
fn round_trip_keeps_every_field() {
    let e = entry();
    let decoded = Entry::decode(&e.encode()).expect("decodes");
    assert_eq!(decoded, e);
    assert_eq!(decoded.format, ENTRY_FORMAT);
    assert_eq!(decoded.fresh_until_ms, NOW + 60_000);
    assert_eq!(decoded.stale_until_ms, NOW + 660_000);
}

#[test]
fn body_bytes_are_kept_exactly_including_non_utf8() {
    let body: Vec<u8> = (0..=255u8).collect();
    let e = Entry::new(NOW, 1, 1, "openai", "m", body.clone());
    assert_eq!(Entry::decode(&e.encode()).expect("decodes").body, body);
}

#[test]
fn another_format_version_is_rejected() {
    let mut e = entry();
    e.format = ENTRY_FORMAT + 1;
    assert_eq!(Entry::decode(&e.encode()), Err(EntryError::UnsupportedFormat { found: ENTRY_FORMAT + 1 }));
}

#[test]
fn garbage_is_rejected_not_misread() {
    for bytes in [&b""[..], b"not msgpack at all", b"\xc1\xc1\xc1", &[0x81, 0xa6, b'f', b'o', b'r', b'm', b'a', b't']] {
        assert!(matches!(Entry::decode(bytes), Err(EntryError::Malformed(_))), "{bytes:?}");
    }
    // A valid MessagePack map of the wrong shape.
    let other = rmp_serde::to_vec_named(&serde_json::json!({"format": 1, "hello": "world"})).expect("encodes");
    assert!(matches!(Entry::decode(&other), Err(EntryError::Malformed(_))));
}

#[test]
fn inconsistent_times_are_rejected() {
    let mut e = entry();
    e.stale_until_ms = e.fresh_until_ms - 1;
    assert_eq!(Entry::decode(&e.encode()), Err(EntryError::BadTimes));
}

#[test]
fn freshness_moves_from_fresh_to_stale_to_expired() {
    let e = entry();
    assert_eq!(freshness(&e, NOW), Freshness::Fresh { ttl_s: 60 });
    assert_eq!(freshness(&e, NOW + 59_999), Freshness::Fresh { ttl_s: 0 });
    assert_eq!(freshness(&e, NOW + 60_000), Freshness::Stale { stale_for_s: 0 });
    assert_eq!(freshness(&e, NOW + 659_999), Freshness::Stale { stale_for_s: 599 });
    assert_eq!(freshness(&e, NOW + 660_000), Freshness::Expired);
    assert_eq!(e.age_s(NOW + 5_500), 5);
}

#[test]
fn store_ttl_covers_the_stale_window() {
    let e = entry();
    assert_eq!(store_ttl_ms(&e, NOW), 660_000);
    assert_eq!(store_ttl_ms(&e, NOW + 659_001), 999);
    assert_eq!(store_ttl_ms(&e, NOW + 700_000), 0);
}

/// The encoding of a fixed entry, byte for byte as the release before `Bytes` bodies wrote it:
/// entries already in the stores stay readable, and new ones stay readable by older instances.
#[test]
fn the_encoding_is_pinned() {
    let e = Entry::new(NOW, 60, 600, "openai", "gpt-4o-mini", br#"{"choices":[]}"#.to_vec());
    let hex: String = e.encode().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "87a6666f726d617401aa637265617465645f6d73cf0000019b76daa800ae66726573685f756e74696c5f6d73cf0000019b76db9260ae7374616c655f756e74696c5f6d73cf0000019b76e4ba20a870726f7669646572a66f70656e6169a56d6f64656cab6770742d346f2d6d696e69a4626f6479c40e7b2263686f69636573223a5b5d7d"
    );
}

#[test]
fn encoded_len_is_the_length_of_the_encoding() {
    for size in [0usize, 1, 31, 32, 255, 256, 65_535, 65_536, 1 << 20] {
        let e = Entry::new(NOW, 60, 600, "openai", "m", vec![b'x'; size]);
        assert_eq!(e.encoded_len(), e.encode().len(), "body of {size} bytes");
    }
}

#[test]
fn a_shared_decode_keeps_the_body_in_the_stored_buffer() {
    let stored = bytes::Bytes::from(entry().encode());
    let decoded = Entry::decode_shared(stored.clone()).expect("decodes");
    assert_eq!(decoded, entry());
    let within = stored.as_ptr_range();
    assert!(within.contains(&decoded.body.as_ptr()), "the body is a view into the stored bytes, not a copy");
}
