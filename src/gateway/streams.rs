//! Answers that stream, from a provider or from the cache.
//!
//! From a provider, in two phases:
//! - **Before the first content event** (`read_ahead`): the provider's first events are read and
//!   held, bounded by the first-token timeout (from the attempt's start) and the silence bound.
//!   A stall, a cut, an error event or an end before any content is an attempt's failure, and the
//!   failover goes on as for any call: the client has seen nothing.
//! - **After it** (`tee`): the held events, then each event as it arrives, go to the client while
//!   the `Relay` assembles the answer beside them. The stream's end decides (`StreamEnd`): after
//!   the provider's own terminal event, the answer is stored through the same write path as a
//!   whole answer (`writes`), spawned as background work from the stream itself (the response has
//!   long been returned). A cut, a stall past `UPSTREAM_STREAM_IDLE_TIMEOUT_MS`, an error event
//!   or unreadable data instead end the client's stream with an OpenAI-style error event (no
//!   `[DONE]`, no made-up `finish_reason`), count a failure against the target's breaker, and
//!   store nothing.
//!
//! From the cache (`replayed`): a stored completion replayed as an OpenAI stream, in batches of
//! whole events: the first event alone, so that it leaves with the response head at once, then
//! batches that grow to `REPLAY_BATCH_BYTES`.
//!
//! A request that leads a single flight (`coalesce`) hands every chunk its client gets to the
//! flight as well, for the followers that read along.
//!
//! A client that goes away drops the stream: nothing is stored and nothing counted.

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt};
use serde_json::json;

use super::meter::Meter;
use super::origin::share_health;
use super::record::Pending;
use super::writes::Writes;
use crate::api::chat::ChatRequest;
use crate::api::envelope::error_body;
use crate::cache::key::CacheKey;
use crate::cache::storable::NotReplayable;
use crate::error::{ApiError, ErrorType, UpstreamError};
use crate::ports::{with_timeout, Body, BodyError, BodyStream, Host};
use crate::providers::assemble::{Assembler, NotComplete};
use crate::providers::relay::{Relay, RelayError};
use crate::providers::replay::Replay;
use crate::providers::stream::SseTranslator;
use crate::providers::{self};
use crate::routing::breaker::BreakerConfig;
use crate::routing::table::Target;

/// About how many bytes of replayed events go out together, at most.
const REPLAY_BATCH_BYTES: usize = 16 << 10;
/// The bound of the second batch of a replay (after the first event alone); each later batch
/// doubles it, up to `REPLAY_BATCH_BYTES`, so that the events after the first follow it soon too.
const REPLAY_SECOND_BATCH_BYTES: usize = 1 << 10;

/// A provider stream that has started: what was read before its first content event (for the
/// client, in order), the rest of the provider's body, and the relay carrying it.
pub(super) struct Opened {
    held: Vec<Bytes>,
    rest: BodyStream,
    relay: Relay,
}

/// The bounds of one stream attempt before its first content event.
pub(super) struct Bounds {
    /// When the first content event must have come (ms since the epoch).
    pub first_token_at_ms: u64,
    /// The first-token bound itself, for the error.
    pub first_token_ms: u64,
    /// The longest silence between two chunks.
    pub idle_ms: u64,
}

/// The relay for a stream from `target`; `storing`: the answer is assembled, up to the largest
/// entry the cache takes (`limit`), and usage is asked for where that is safe
/// (`providers::asks_usage`) and then kept from a client that did not ask for it.
pub(super) fn relay_for(target: &Target, request: &ChatRequest, storing: bool, limit: usize, now_ms: u64) -> Relay {
    let asked = providers::asks_usage(target, request, storing);
    let client_usage = providers::client_wants_usage(request);
    let model = target.model_for(&request.model);
    let translator = SseTranslator::new(target, model, now_ms / 1000, client_usage || asked);
    Relay::new(translator, storing.then(|| Assembler::new(limit)), asked)
}

/// Reads a provider's stream up to its first content event (see the module documentation).
pub(super) async fn read_ahead<H: Host>(
    host: &H,
    body: Body,
    mut relay: Relay,
    bounds: Bounds,
) -> Result<Opened, UpstreamError> {
    let mut rest: BodyStream = match body {
        Body::Stream(s) => s,
        Body::Full(bytes) => Box::pin(stream::iter([Ok(bytes)])),
    };
    let mut held = Vec::new();
    loop {
        let left = bounds.first_token_at_ms.saturating_sub(host.now_ms());
        let (wait, stall) = if left <= bounds.idle_ms {
            (left, UpstreamError::Timeout { ms: bounds.first_token_ms })
        } else {
            (bounds.idle_ms, UpstreamError::Timeout { ms: bounds.idle_ms })
        };
        let next = with_timeout(host, wait, rest.next()).await.ok_or(stall)?;
        let ended = next.is_none();
        let out = match next {
            Some(Ok(chunk)) => relay.push(&chunk),
            Some(Err(e)) => return Err(UpstreamError::Stream(e.0)),
            None => relay.end(),
        };
        let out = out.map_err(|e| before_content(&e))?;
        if !out.is_empty() {
            held.push(out);
        }
        if relay.started() {
            return Ok(Opened { held, rest, relay });
        }
        if ended || relay.complete() {
            return Err(UpstreamError::Stream("the stream ended before its first content".into()));
        }
    }
}

/// An attempt's failure for a relay error before the first content event.
fn before_content(e: &RelayError) -> UpstreamError {
    match e {
        RelayError::Unreadable(why) => UpstreamError::Malformed(why.clone()),
        RelayError::ErrorEvent => UpstreamError::Stream(e.to_string()),
        RelayError::Cut => UpstreamError::Stream("the stream ended before its first content".into()),
    }
}

/// What a stream's end does: store the answer, or count the failure and say so to the client.
pub(super) struct StreamEnd<H: Host> {
    pub writes: Writes<H>,
    /// Where to store the answer; `None`: not stored (`no-store`).
    pub key: Option<CacheKey>,
    pub target: String,
    pub breaker: BreakerConfig,
    /// Counts the answer's tokens toward its tenant's limit (usage from the assembled answer).
    pub meter: Option<Meter<H>>,
    /// The request's record, finished when the stream ends (or is dropped).
    pub record: Option<Pending<H>>,
}

impl<H: Host> StreamEnd<H> {
    /// The provider's terminal event was relayed: store what was assembled, if it is worth it.
    fn clean(mut self, relay: &mut Relay) {
        if let Some(lead) = self.writes.flight() {
            lead.stream_done();
        }
        // The usage is the relay's (assembled from the provider's events), never the client's
        // bytes: a client that did not ask for usage was not shown it.
        let wanted = self.key.is_some() || self.meter.is_some() || self.record.is_some();
        let answer = if wanted { relay.answer() } else { None };
        if let Some(record) = self.record.take() {
            record.end("complete", answer.as_ref().and_then(|a| a.as_ref().ok()).map(|a| &a.body));
        }
        if let (Some(meter), Some(Ok(answer))) = (self.meter, &answer) {
            meter.record(&answer.body, &self.target);
        }
        let Some(key) = self.key else { return };
        match answer {
            None => {}
            Some(Ok(answer)) => {
                self.writes.keep(key, &answer, &self.target);
            }
            Some(Err(NotComplete::TooLarge { limit })) => self.writes.too_large(None, limit),
            Some(Err(other)) => {
                let reason = match other {
                    NotComplete::Malformed(_) | NotComplete::ErrorEvent => NotReplayable::NotACompletion,
                    _ => NotReplayable::Unfinished,
                };
                self.writes.skipped(reason, &self.target);
            }
        }
    }

    /// The stream failed after its first byte: counted against the target's breaker (as the
    /// failover would count it), logged, shared; returns the client's error event.
    fn failed(mut self, error: UpstreamError) -> Bytes {
        if let Some(record) = self.record.take() {
            record.end(error.code(), None);
        }
        let host = self.writes.host();
        let now = host.now_ms();
        let opened = host.health().record(&self.target, now, false, &self.breaker);
        let fields = json!({"target": self.target, "code": error.code(), "detail": error.to_string()});
        self.writes.log("warn", "stream_failed", fields);
        if opened {
            self.writes.log("warn", "breaker_opened", json!({"target": self.target}));
        }
        share_health(host, self.writes.upstash(), self.breaker, std::slice::from_ref(&self.target));
        let event = error_event(&error);
        if let Some(lead) = self.writes.flight() {
            lead.chunk(&event);
            lead.stream_done();
        }
        event
    }
}

/// The client's stream of a provider stream that has started (see the module documentation).
pub(super) fn tee<H: Host>(opened: Opened, end: StreamEnd<H>, idle_ms: u64) -> BodyStream {
    let Opened { held, rest, relay } = opened;
    let host = end.writes.host().clone();
    if let Some(lead) = end.writes.flight() {
        lead.opened(&end.target);
    }
    let state = Tee { held: held.into_iter(), rest, relay, end: Some(end), host, idle_ms };
    Box::pin(stream::unfold(state, |mut tee| async move {
        let item = tee.next().await?;
        Some((Ok(item), tee))
    }))
}

struct Tee<H: Host> {
    held: std::vec::IntoIter<Bytes>,
    rest: BodyStream,
    relay: Relay,
    /// Taken when the stream ends.
    end: Option<StreamEnd<H>>,
    host: H,
    idle_ms: u64,
}

impl<H: Host> Tee<H> {
    /// The client's next bytes, shared with the followers of the flight this stream leads.
    async fn next(&mut self) -> Option<Bytes> {
        let out = self.relayed().await?;
        if let Some(lead) = self.end.as_ref().and_then(|end| end.writes.flight()) {
            lead.chunk(&out);
        }
        Some(out)
    }

    /// The client's next bytes; `None` once the stream has ended (its end handled once).
    async fn relayed(&mut self) -> Option<Bytes> {
        if let Some(held) = self.held.next() {
            return Some(held);
        }
        loop {
            if self.relay.complete() {
                // The client has taken the last event: the stream is whole.
                self.end.take()?.clean(&mut self.relay);
                return None;
            }
            self.end.as_ref()?;
            let idle_ms = self.idle_ms;
            let next = with_timeout(&self.host, idle_ms, self.rest.next()).await;
            let out = match next {
                None => Err(UpstreamError::Timeout { ms: idle_ms }),
                Some(Some(Ok(chunk))) => self.relay.push(&chunk).map_err(|e| after_content(&e)),
                Some(Some(Err(e))) => Err(UpstreamError::Stream(e.0)),
                Some(None) => self.relay.end().map_err(|e| after_content(&e)),
            };
            match out {
                Ok(out) if out.is_empty() => continue,
                Ok(out) => return Some(out),
                Err(error) => return Some(self.end.take()?.failed(error)),
            }
        }
    }
}

fn after_content(e: &RelayError) -> UpstreamError {
    match e {
        RelayError::Unreadable(why) => UpstreamError::Malformed(why.clone()),
        RelayError::ErrorEvent | RelayError::Cut => UpstreamError::Stream(e.to_string()),
    }
}

/// The OpenAI-style error event that ends a stream which failed after its first byte:
/// `data: {"error":{"message","type","param","code"}}`, never the provider's own words.
pub fn error_event(error: &UpstreamError) -> Bytes {
    let message = match error {
        UpstreamError::Timeout { ms } => format!("The provider sent nothing for {ms} ms; the answer is incomplete."),
        UpstreamError::Malformed(_) => "The provider's stream became unreadable; the answer is incomplete.".into(),
        _ => "The provider's stream broke off; the answer is incomplete.".into(),
    };
    let error = ApiError::new(http::StatusCode::BAD_GATEWAY, ErrorType::Api, error.code(), message);
    let mut event = BytesMut::from(&b"data: "[..]);
    event.extend_from_slice(&error_body(&error));
    event.extend_from_slice(b"\n\n");
    event.freeze()
}

/// A stored completion's replay, a batch of whole events at a time: the first event alone, then
/// batches whose bound doubles from `REPLAY_SECOND_BATCH_BYTES` to `REPLAY_BATCH_BYTES` (a
/// bigger event goes alone).
pub(super) fn replayed(replay: Replay) -> BodyStream {
    let mut replay = replay.peekable();
    let mut bound = 0;
    Box::pin(stream::iter(std::iter::from_fn(move || {
        let mut batch = BytesMut::new();
        while let Some(frame) = replay.next_if(|f| batch.is_empty() || batch.len() + f.len() <= bound) {
            batch.extend_from_slice(&frame);
        }
        bound = (bound * 2).clamp(REPLAY_SECOND_BATCH_BYTES, REPLAY_BATCH_BYTES);
        (!batch.is_empty()).then(|| Ok::<Bytes, BodyError>(batch.freeze()))
    })))
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;
    use serde_json::json;

    use super::*;
    use crate::providers::replay::replay;

    #[test]
    fn a_replay_sends_its_first_event_alone_then_growing_batches_of_whole_events() {
        let text = "word ".repeat(20_000);
        let completion = json!({"id": "c", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]});
        let body = completion.to_string();
        let frames: Vec<Bytes> = replay(body.as_bytes(), false).unwrap().collect();
        let batches: Vec<Bytes> =
            replayed(replay(body.as_bytes(), false).unwrap()).map(Result::unwrap).collect().now_or_never().unwrap();
        assert_eq!(batches[0], frames[0], "the first event goes alone");
        assert_eq!(batches.concat(), frames.concat());
        assert!(batches[1].len() <= REPLAY_SECOND_BATCH_BYTES);
        assert!(batches.iter().all(|b| b.len() <= REPLAY_BATCH_BYTES && b.ends_with(b"\n\n")));
        assert!(batches[batches.len() / 2].len() > REPLAY_BATCH_BYTES / 2, "batches grow to the bound");
        // Every batch is whole events.
        let mut at = 0;
        for batch in &batches {
            let mut len = 0;
            while len < batch.len() {
                len += frames[at].len();
                at += 1;
            }
            assert_eq!(len, batch.len());
        }
    }
}
