//! The server-sent events parser: the same events however the bytes are split, the field rules of
//! the WHATWG specification, bounded buffers, and work linear in the stream's length.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use llm_edge_cache::providers::sse::{SseError, SseEvent, SseParser};
use support::fixture;

const LIMIT: usize = 1 << 20;

fn parse_in(pieces: &[&[u8]]) -> Vec<SseEvent> {
    let mut parser = SseParser::new(LIMIT);
    let mut events = Vec::new();
    for piece in pieces {
        events.extend(parser.push(piece).expect("readable"));
    }
    events
}

fn parse(bytes: &[u8]) -> Vec<SseEvent> {
    parse_in(&[bytes])
}

fn ev(event: Option<&str>, data: &str) -> SseEvent {
    SseEvent { event: event.map(str::to_owned), data: data.to_owned(), id: None }
}

/// A small deterministic generator (no randomness in the core's tests either).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n
    }
}

fn random_split<'a>(bytes: &'a [u8], rng: &mut Lcg, max: usize) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = (1 + rng.below(max)).min(bytes.len() - at);
        pieces.push(&bytes[at..at + n]);
        at += n;
    }
    pieces
}

#[test]
fn every_split_of_a_fixture_gives_the_same_events() {
    let lf = fixture("anthropic/stream_tool_use.sse");
    let crlf = fixture("gemini/stream_ok.sse");
    let cr = lf.replace('\n', "\r");
    let mixed = fixture("openai/stream_ok.sse").replacen("\n\n", "\r\n\r\n", 3).replacen("\n\n", "\r\r", 2);
    for (name, text) in [("lf", &lf), ("crlf", &crlf), ("cr", &cr), ("mixed", &mixed)] {
        let bytes = text.as_bytes();
        let whole = parse(bytes);
        assert!(whole.len() >= 3, "{name}: {} events", whole.len());
        assert!(whole.iter().all(|e| e.data.starts_with('{') || e.data == "[DONE]"), "{name}");
        let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_in(&one_by_one), whole, "{name}: one byte at a time");
        let mut rng = Lcg(name.len() as u64);
        for max in [2, 3, 7, 64, 500] {
            for _ in 0..20 {
                assert_eq!(parse_in(&random_split(bytes, &mut rng, max)), whole, "{name}: random pieces up to {max}");
            }
        }
        // Every cut point once: a CR at the end of one piece and its LF at the start of the next.
        for cut in 0..bytes.len() {
            assert_eq!(parse_in(&[&bytes[..cut], &bytes[cut..]]), whole, "{name}: cut at {cut}");
        }
    }
    let names: Vec<Option<String>> = parse(lf.as_bytes()).into_iter().map(|e| e.event).collect();
    assert_eq!(names[0].as_deref(), Some("message_start"));
    assert_eq!(names.last().and_then(|n| n.as_deref()), Some("message_stop"));
}

#[test]
fn multi_line_data_is_joined_with_line_feeds() {
    assert_eq!(parse(b"data: first\ndata:second\ndata:  third\n\n"), vec![ev(None, "first\nsecond\n third")]);
    assert_eq!(parse(b"data\ndata\n\n"), vec![ev(None, "\n")], "a bare `data` is an empty line of data");
    assert_eq!(parse(b"data: {\"a\":\r\ndata: 1}\r\n\r\n"), vec![ev(None, "{\"a\":\n1}")]);
    assert_eq!(parse_in(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]), vec![ev(None, "a\nb")]);
    assert_eq!(parse(b"data:\n\n"), vec![ev(None, "")], "one empty data line is an event with empty data");
}

#[test]
fn comments_event_names_ids_and_unknown_fields() {
    let stream = b"\xEF\xBB\xBF: a comment first\nevent: ping\ndata: {}\n\n:keep-alive\n\nevent: only a name\n\n\
                   retry: 3000\nid: 7\nfoo: bar\ndata: x\n\nevent:tight\ndata:y\n\n";
    assert_eq!(
        parse(stream),
        vec![
            ev(Some("ping"), "{}"),
            SseEvent { event: None, data: "x".into(), id: Some("7".into()) },
            ev(Some("tight"), "y"),
        ],
        "a comment-only or data-less event dispatches nothing; its name does not leak into the next"
    );
    assert_eq!(parse(b"data: one\n\ndata: two\n\n"), vec![ev(None, "one"), ev(None, "two")]);
    assert_eq!(parse(b"data: \xff\xfe\n\n"), vec![ev(None, "\u{fffd}\u{fffd}")], "invalid UTF-8 is replaced");
}

#[test]
fn an_event_the_stream_ends_in_is_not_dispatched() {
    let mut parser = SseParser::new(LIMIT);
    assert_eq!(parser.push(b"data: done\n\ndata: half").expect("readable"), vec![ev(None, "done")]);
    assert!(parser.has_partial_event());
    assert_eq!(parser.push(b"\n").expect("readable"), vec![], "a line end alone does not dispatch");
    assert!(parser.has_partial_event());
    assert_eq!(parser.push(b"\n").expect("readable"), vec![ev(None, "half")]);
    assert!(!parser.has_partial_event());
}

#[test]
fn a_line_over_the_bound_is_an_error_never_a_bigger_buffer() {
    let mut parser = SseParser::new(16);
    assert_eq!(parser.push(b"data: 0123456789").expect("16 bytes fit"), vec![]);
    assert_eq!(parser.push(b"A"), Err(SseError::LineTooLong { limit: 16 }));
    assert_eq!(parser.push(b"\n\n"), Err(SseError::LineTooLong { limit: 16 }), "the error is sticky");

    // Fed one byte at a time, the bound holds just the same.
    let mut parser = SseParser::new(100);
    let long = format!("data: {}\n\n", "x".repeat(1000));
    let first_error = long.as_bytes().chunks(1).map(|b| parser.push(b)).position(|r| r.is_err());
    assert_eq!(first_error, Some(100));

    // Many short data lines cannot add up past the bound either.
    let mut parser = SseParser::new(64);
    let many = "data: 0123456789\n".repeat(10);
    assert_eq!(parser.push(many.as_bytes()), Err(SseError::EventTooLarge { limit: 64 }));
}

/// 10 MB of events in 3-byte pieces (3.5 million pushes), plus one 2 MB line fed a byte at a time:
/// every byte is looked at once. A parser that searched its whole buffer on each push would look
/// at the long line's bytes about 2 * 10^12 times.
#[test]
fn work_is_linear_in_the_stream_whatever_the_pieces() {
    let event = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok\"}}]}\r\n\r\n";
    let count = 10_000_000 / event.len() + 1;
    let stream = event.repeat(count);
    let mut parser = SseParser::new(1024);
    let mut seen = 0usize;
    for piece in stream.chunks(3) {
        parser.push_with(piece, |e| seen += usize::from(e.data.len() == event.len() - 10)).expect("readable");
    }
    assert_eq!(seen, count);
    assert_eq!(parser.bytes_scanned(), stream.len() as u64);

    let long = format!("data: {}\n\n", "y".repeat(2 << 20));
    let mut parser = SseParser::new(4 << 20);
    let mut got = Vec::new();
    for byte in long.as_bytes().chunks(1) {
        got.extend(parser.push(byte).expect("readable"));
    }
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data.len(), 2 << 20);
    assert_eq!(parser.bytes_scanned(), long.len() as u64);
}
