//! Single flight for one request's double miss: share a provider call already in flight for the
//! same cache key, or lead one.
//!
//! - In this isolate (`crate::coalesce`): a follower that streams in the leader's form reads along
//!   (the chunks the leader's client got so far, then the live ones); any other follower waits
//!   for the leader's answer and gets it in its own form, as a hit would.
//! - Across isolates and hosts: the leader of an isolate claims the key in Redis
//!   (`stores::redis::claim_flight`, expiring after `COALESCE_WAIT_MS`). A request that finds the
//!   key claimed elsewhere looks for the entry in tier 2, with growing pauses, until it is there,
//!   the claim is gone (the leader ended without an answer to store) or `COALESCE_WAIT_MS` has
//!   passed; then it calls the provider itself. The claim is deleted once the answer is stored.
//!
//! A follower that holds a stale entry waits for the shared call no longer than
//! `STALE_DEADLINE_MS`, as a provider call of its own would, and answers with it at once when
//! every target failed its leader (`Joined::StaleDue`).
//!
//! Fail open: a Redis error or timeout means no coalescing for this request (logged), never an
//! error for the client. A request that shares another's call says so in `x-coalesced` (the
//! leader's request id) and in `Cache-Status` (`collapsed`), and is counted.
//! Only requests that may read and write the cache take part (`no-cache`, `no-store` and
//! `only-if-cached` do not).

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http::Response;
use serde_json::json;

use super::counters::{COALESCED_ISOLATE, COALESCED_REDIS};
use super::reply::{self, Form};
use super::streams::error_event;
use super::writes::log_store_error;
use super::Exchange;
use crate::cache::entry::Entry;
use crate::cache::key::CacheKey;
use crate::cache::policy::Policy;
use crate::cache::status::{CacheReport, Served};
use crate::cache::verdict::{self, Verdict};
use crate::coalesce::{Follow, Lead, Outcome, Read, Role};
use crate::config::UpstashConfig;
use crate::error::UpstreamError;
use crate::ports::{Body, BodyError, Host};
use crate::stores::redis::Redis;

/// Pauses of a follower in this isolate between two looks at the flight.
const LOCAL_PAUSE_MIN_MS: u64 = 2;
const LOCAL_PAUSE_MAX_MS: u64 = 25;
/// Pauses of a follower of another isolate between two looks at tier 2.
const REMOTE_PAUSE_FIRST_MS: u64 = 50;
const REMOTE_PAUSE_MAX_MS: u64 = 500;

/// The lead of a flight: the isolate's and, when this request holds it, the claim in Redis.
/// Dropped (after the answer's cache write, or at once when there is none) it ends both.
pub(super) struct Leading<H: Host> {
    pub local: Lead,
    claim: Option<Claim<H>>,
}

/// A claim in Redis, deleted when dropped (in the background).
struct Claim<H: Host> {
    host: H,
    upstash: UpstashConfig,
    key: CacheKey,
    request_id: String,
}

impl<H: Host> Drop for Claim<H> {
    fn drop(&mut self) {
        let (host, upstash, key) = (self.host.clone(), self.upstash.clone(), self.key.clone());
        let request_id = std::mem::take(&mut self.request_id);
        self.host.spawn_background(Box::pin(async move {
            if let Err(e) = Redis::new(&upstash).release_flight(&host, &key).await {
                log_store_error(&host, &request_id, &e);
            }
        }));
    }
}

/// What single flight made of a request.
pub(super) enum Joined<H: Host> {
    /// Another request's call answered it.
    Served(Response<Body>),
    /// It calls the provider itself, leading the flight if it holds one.
    Call(Option<Rc<Leading<H>>>),
    /// It holds a stale entry, and the stale deadline passed while it waited or every target
    /// failed the leader: the stale entry answers (the reason for `x-cache-stale-reason`).
    StaleDue(&'static str),
}

/// How a wait for another request's call ended without an answer.
enum NoAnswer {
    /// The leader ended without one, or the wait bound passed: call the provider.
    Call,
    /// The stale deadline passed, or every target failed the leader (the reason).
    StaleDue(&'static str),
}

impl<H: Host> Exchange<'_, H> {
    /// Joins the call in flight for `key`, or leads one (see the module documentation).
    pub(super) async fn join_flight(
        &mut self,
        key: &CacheKey,
        policy: &Policy,
        form: Form,
        report: &CacheReport,
        stale_in_hand: bool,
    ) -> Joined<H> {
        if self.config.coalesce_wait_ms == 0 || !policy.read || !policy.write || policy.only_if_cached {
            return Joined::Call(None);
        }
        let stale_due = stale_in_hand.then(|| self.host.now_ms().saturating_add(self.config.stale_deadline_ms));
        let stream = match form {
            Form::Json => None,
            Form::Stream { include_usage } => Some(include_usage),
        };
        let flights = self.host.flights();
        let local = match flights.join(key.digest_hex(), self.request_id, stream, self.config.max_entry_bytes) {
            Role::Lead(lead) => lead,
            Role::Follow(follow) => {
                return match self.follow_local(follow, form, report, stale_due).await {
                    Ok(response) => Joined::Served(response),
                    Err(NoAnswer::Call) => Joined::Call(None),
                    Err(NoAnswer::StaleDue(why)) => Joined::StaleDue(why),
                }
            }
        };
        let mut leading = Leading { local, claim: None };
        let Some(upstash) = self.config.upstash.as_ref() else {
            return Joined::Call(Some(Rc::new(leading)));
        };
        let wait_ms = self.config.coalesce_wait_ms;
        match Redis::new(upstash).claim_flight(self.host, key, self.request_id, wait_ms).await {
            Ok(None) => {
                leading.claim = Some(Claim {
                    host: self.host.clone(),
                    upstash: upstash.clone(),
                    key: key.clone(),
                    request_id: self.request_id.to_owned(),
                });
            }
            Ok(Some(leader)) => match self.follow_remote(key, policy, upstash, stale_due).await {
                Ok(entry) => {
                    // This isolate's followers get it too.
                    leading.local.publish(Outcome::Answer(entry.clone()));
                    if let Some(response) = self.shared(entry, report, form, &leader, COALESCED_REDIS) {
                        return Joined::Served(response);
                    }
                }
                // This isolate's followers, if any, then call for themselves.
                Err(NoAnswer::StaleDue(why)) => return Joined::StaleDue(why),
                Err(NoAnswer::Call) => {}
            },
            Err(e) => log_store_error(self.host, self.request_id, &e),
        }
        Joined::Call(Some(Rc::new(leading)))
    }

    /// Follows a flight of this isolate, until its answer, its end without one, or `stale_due`.
    async fn follow_local(
        &mut self,
        mut follow: Follow,
        form: Form,
        report: &CacheReport,
        stale_due: Option<u64>,
    ) -> Result<Response<Body>, NoAnswer> {
        let leader = follow.leader_id();
        let mut pause = LOCAL_PAUSE_MIN_MS;
        if let Form::Stream { include_usage } = form {
            if follow.read_along(include_usage) {
                loop {
                    match follow.read() {
                        Read::Chunks(first) => return Ok(self.read_along(follow, first, report, &leader)),
                        Read::Done | Read::Broken => break,
                        Read::Pending if !matches!(follow.outcome(), Outcome::Pending) => break,
                        Read::Pending => {}
                    }
                    self.pause(&mut pause, stale_due).await?;
                }
            }
        }
        loop {
            match follow.outcome() {
                Outcome::Answer(entry) => {
                    return self.shared(entry, report, form, &leader, COALESCED_ISOLATE).ok_or(NoAnswer::Call)
                }
                Outcome::ProvidersFailed { code } if stale_due.is_some() => return Err(NoAnswer::StaleDue(code)),
                Outcome::ProvidersFailed { .. } | Outcome::Nothing => return Err(NoAnswer::Call),
                Outcome::Pending => {}
            }
            self.pause(&mut pause, stale_due).await?;
        }
    }

    /// One pause of a follower of this isolate, never past `stale_due`.
    async fn pause(&self, pause: &mut u64, stale_due: Option<u64>) -> Result<(), NoAnswer> {
        let now = self.host.now_ms();
        let left = stale_due.map_or(u64::MAX, |due| due.saturating_sub(now));
        if left == 0 {
            return Err(NoAnswer::StaleDue("upstream_timeout"));
        }
        self.host.sleep_ms((*pause).min(left)).await;
        *pause = (*pause * 2).min(LOCAL_PAUSE_MAX_MS);
        Ok(())
    }

    /// Waits for the answer of a flight led in another isolate to appear in tier 2, until
    /// `COALESCE_WAIT_MS` or `stale_due`.
    async fn follow_remote(
        &self,
        key: &CacheKey,
        policy: &Policy,
        upstash: &UpstashConfig,
        stale_due: Option<u64>,
    ) -> Result<Entry, NoAnswer> {
        let redis = Redis::new(upstash);
        let gave_up = self.host.now_ms().saturating_add(self.config.coalesce_wait_ms);
        let until = gave_up.min(stale_due.unwrap_or(u64::MAX));
        let mut pause = REMOTE_PAUSE_FIRST_MS;
        loop {
            let left = until.saturating_sub(self.host.now_ms());
            if left == 0 && stale_due == Some(until) {
                return Err(NoAnswer::StaleDue("upstream_timeout"));
            }
            if left == 0 {
                self.log("info", "coalesce_gave_up", json!({"waited_ms": self.config.coalesce_wait_ms}));
                return Err(NoAnswer::Call);
            }
            self.host.sleep_ms(pause.min(left)).await;
            pause = (pause * 3 / 2).min(REMOTE_PAUSE_MAX_MS);
            match redis.look_at_flight(self.host, key, self.config.max_entry_bytes).await {
                Ok((Some(entry), _)) => {
                    return match verdict::decide(Some(&entry), policy, self.host.now_ms()) {
                        Verdict::Hit { .. } => Ok(entry),
                        _ => Err(NoAnswer::Call),
                    }
                }
                Ok((None, true)) => {}
                Ok((None, false)) => return Err(NoAnswer::Call),
                Err(e) => {
                    log_store_error(self.host, self.request_id, &e);
                    return Err(NoAnswer::Call);
                }
            }
        }
    }

    /// The shared answer in this client's form; logged and counted.
    fn shared(
        &self,
        entry: Entry,
        report: &CacheReport,
        form: Form,
        leader: &str,
        via: &'static str,
    ) -> Option<Response<Body>> {
        self.record.served_entry(&entry);
        let response = reply::coalesced(entry, report, self.host.now_ms(), form, leader).ok()?;
        self.coalesced(leader, via);
        Some(response)
    }

    fn coalesced(&self, leader: &str, via: &'static str) {
        self.log("info", "coalesced", json!({"leader": leader, "via": via}));
        self.writes().count(via);
    }

    /// A stream follower's answer: what the leader's client got so far, then the live chunks.
    fn read_along(&self, follow: Follow, first: Vec<Bytes>, report: &CacheReport, leader: &str) -> Response<Body> {
        let provider = follow.provider();
        let state = Along { follow, first: Some(first), host: self.host.clone(), ended: false };
        let body = stream::unfold(state, |mut along| async move {
            let bytes = along.next().await?;
            Some((Ok::<Bytes, BodyError>(bytes), along))
        });
        let mut report = report.clone();
        report.served = Served::Origin;
        report.collapsed = true;
        let mut response = reply::event_stream(Box::pin(body));
        reply::cache_headers(response.headers_mut(), &report);
        reply::set_coalesced(response.headers_mut(), leader);
        if let Some(provider) = provider {
            reply::set(response.headers_mut(), "x-provider", &provider);
        }
        self.coalesced(leader, COALESCED_ISOLATE);
        response
    }
}

/// A stream follower reading along.
struct Along<H: Host> {
    follow: Follow,
    first: Option<Vec<Bytes>>,
    host: H,
    ended: bool,
}

impl<H: Host> Along<H> {
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(join(first));
        }
        if self.ended {
            return None;
        }
        let mut pause = LOCAL_PAUSE_MIN_MS;
        loop {
            match self.follow.read() {
                Read::Chunks(chunks) => return Some(join(chunks)),
                Read::Done => return None,
                Read::Broken => {
                    // The leader's client went away mid-stream: this stream is incomplete.
                    self.ended = true;
                    return Some(error_event(&UpstreamError::Stream("the shared stream ended early".into())));
                }
                Read::Pending => {}
            }
            self.host.sleep_ms(pause).await;
            pause = (pause * 2).min(LOCAL_PAUSE_MAX_MS);
        }
    }
}

fn join(chunks: Vec<Bytes>) -> Bytes {
    match <[Bytes; 1]>::try_from(chunks) {
        Ok([one]) => one,
        Err(chunks) => {
            let mut all = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for c in &chunks {
                all.extend_from_slice(c);
            }
            all.freeze()
        }
    }
}
