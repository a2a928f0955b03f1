//! Stream plumbing for answers that stream: a bound on the provider's silence, and translation of
//! another provider's stream into OpenAI chunks. A stream that breaks ends with an error, never
//! with a made-up end.

use futures_util::stream::{self, StreamExt};

use crate::ports::{with_timeout, BodyError, BodyStream, Host};
use crate::providers::stream::SseTranslator;

/// Ends a stream with an error when the provider stays silent for longer than `idle_ms`, so a
/// stalled provider cannot hold a client forever.
pub(super) fn idle_bounded<H: Host>(inner: BodyStream, host: H, idle_ms: u64) -> BodyStream {
    Box::pin(stream::unfold(Some((inner, host)), move |state| async move {
        let (mut inner, host) = state?;
        match with_timeout(&host, idle_ms, inner.next()).await {
            None => Some((Err(BodyError(format!("no data from the provider for {idle_ms} ms"))), None)),
            Some(None) => None,
            Some(Some(Ok(chunk))) => Some((Ok(chunk), Some((inner, host)))),
            Some(Some(Err(e))) => Some((Err(e), None)),
        }
    }))
}

/// Maps a provider's stream through `translator`; a translation error or an unfinished provider
/// stream ends the client's stream with an error, never with a made-up end.
pub(super) fn translated(inner: BodyStream, translator: SseTranslator) -> BodyStream {
    Box::pin(stream::unfold(Some((inner, translator)), |state| async move {
        let (mut inner, mut translator) = state?;
        loop {
            match inner.next().await {
                Some(Ok(chunk)) => match translator.push(&chunk) {
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Some((Ok(bytes::Bytes::from(out)), Some((inner, translator)))),
                    Err(e) => return Some((Err(BodyError(e.to_string())), None)),
                },
                Some(Err(e)) => return Some((Err(e), None)),
                None => {
                    return match translator.finish() {
                        Ok(out) => Some((Ok(bytes::Bytes::from(out)), None)),
                        Err(e) => Some((Err(BodyError(e.to_string())), None)),
                    }
                }
            }
        }
    }))
}
