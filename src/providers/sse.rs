//! A server-sent events parser (the WHATWG HTML "event stream" interpretation), fed with byte
//! chunks in whatever pieces the network delivers and returning the events they complete.
//!
//! What it keeps from the specification: lines end with `\r\n`, `\n` or `\r` (a `\r\n` split
//! across two chunks is one line end); a leading byte order mark is dropped; lines starting with
//! `:` are comments; `field: value` loses one space after the colon; `data` lines of one event are
//! joined with `\n`; a blank line dispatches the event, and an event without any `data` line is
//! not dispatched; an event the stream ends in the middle of is discarded. `retry` is ignored (no
//! reconnection here).
//!
//! Must not: grow without bound or scan a byte twice. Every byte is looked at once, so the work is
//! linear in the stream's length however it is split; the pending line and the pending event's
//! data are bounded, and going over the bound is an error, never a larger buffer.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when one was given (the specification's default is `message`).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The `id:` field of this event, when it had one.
    pub id: Option<String>,
}

/// Why a stream cannot be read further. Once returned, every later `push` returns it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("a server-sent events line is longer than {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("a server-sent event's data is longer than {limit} bytes")]
    EventTooLarge { limit: usize },
}

/// The parser's state between chunks.
#[derive(Debug)]
pub struct SseParser {
    limit: usize,
    /// The bytes of the line not yet ended.
    line: Vec<u8>,
    /// The last byte seen was a `\r`: a `\n` right after it ends nothing.
    after_cr: bool,
    /// No line has ended yet (the first one may start with a byte order mark).
    first_line: bool,
    event: Option<String>,
    data: String,
    id: Option<String>,
    scanned: u64,
    failed: Option<SseError>,
}

impl SseParser {
    /// A parser whose pending line and pending event data may each hold up to `limit` bytes.
    pub fn new(limit: usize) -> SseParser {
        SseParser {
            limit,
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            event: None,
            data: String::new(),
            id: None,
            scanned: 0,
            failed: None,
        }
    }

    /// Reads `chunk` and returns the events it completes, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        self.push_with(chunk, |e| events.push(e))?;
        Ok(events)
    }

    /// Reads `chunk`, handing each completed event to `on_event` as soon as it is complete.
    pub fn push_with(&mut self, chunk: &[u8], mut on_event: impl FnMut(SseEvent)) -> Result<(), SseError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.scan(chunk, &mut on_event);
        if let Err(e) = result {
            self.failed = Some(e);
            self.line = Vec::new();
            self.data = String::new();
        }
        result
    }

    fn scan(&mut self, chunk: &[u8], on_event: &mut impl FnMut(SseEvent)) -> Result<(), SseError> {
        let mut rest = chunk;
        if self.after_cr {
            if let Some((&b'\n', tail)) = rest.split_first() {
                self.scanned += 1;
                rest = tail;
            }
            self.after_cr = false;
        }
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.scanned += rest.len() as u64;
                    self.append(rest)?;
                    return Ok(());
                }
                Some(end) => {
                    self.scanned += end as u64 + 1;
                    self.append(&rest[..end])?;
                    let cr = rest[end] == b'\r';
                    rest = &rest[end + 1..];
                    if cr {
                        match rest.first() {
                            Some(b'\n') => {
                                self.scanned += 1;
                                rest = &rest[1..];
                            }
                            Some(_) => {}
                            None => self.after_cr = true,
                        }
                    }
                    self.end_line(on_event)?;
                }
            }
        }
        Ok(())
    }

    /// Bytes looked at so far: exactly the bytes pushed, however they were split (a measure of the
    /// work done, for tests that the parser is linear).
    pub fn bytes_scanned(&self) -> u64 {
        self.scanned
    }

    /// Whether part of an event has been read but not dispatched: at the end of the stream, that
    /// part is discarded (the stream ended in the middle of an event).
    pub fn has_partial_event(&self) -> bool {
        !self.line.is_empty() || !self.data.is_empty() || self.event.is_some() || self.id.is_some()
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.limit {
            return Err(SseError::LineTooLong { limit: self.limit });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, on_event: &mut impl FnMut(SseEvent)) -> Result<(), SseError> {
        let line = std::mem::take(&mut self.line);
        let mut bytes = line.as_slice();
        if std::mem::replace(&mut self.first_line, false) {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        if bytes.is_empty() {
            self.dispatch(on_event);
        } else if bytes[0] != b':' {
            let (field, value) = match bytes.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let value = &bytes[colon + 1..];
                    (&bytes[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (bytes, &b""[..]),
            };
            match field {
                b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
                b"data" => {
                    if self.data.len() + value.len() + 1 > self.limit {
                        return Err(SseError::EventTooLarge { limit: self.limit });
                    }
                    self.data.push_str(&String::from_utf8_lossy(value));
                    self.data.push('\n');
                }
                b"id" if !value.contains(&0) => self.id = Some(String::from_utf8_lossy(value).into_owned()),
                _ => {}
            }
        }
        // Keep the line's allocation for the next one.
        self.line = line;
        self.line.clear();
        Ok(())
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent)) {
        let event = self.event.take();
        let id = self.id.take();
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        on_event(SseEvent { event, data, id });
    }
}
