//! Single flight inside one isolate: identical misses (the same cache key) in flight at once share
//! one provider call. The first request for a key leads: it calls the provider and publishes what
//! it gets here; the others follow: a stream follower gets the chunks already sent to the leader's
//! client and then the live ones, any other follower the leader's answer once it is whole.
//!
//! Followers look at this state on their own timers (`poll`), never woken by the leader's task:
//! on workerd, work resumed from another request's context may not do IO for its own.
//!
//! A flight ends when its leader's `Lead` is dropped: an answer published before then stays
//! readable until the leader's cache write has finished (the `Lead` lives in that write), so a
//! request arriving meanwhile is served from memory instead of calling the provider again. A
//! flight whose leader failed, or went away, is removed at once; its waiting followers call the
//! provider themselves.
//!
//! Must not: do IO, read the clock, or keep chunks nobody can read (past `limit` bytes, a stream
//! takes no new followers, and its chunks are kept only while a follower still reads them).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;

use crate::cache::entry::Entry;

/// The flights of one isolate, by cache key.
#[derive(Clone, Default)]
pub struct Flights {
    map: Rc<RefCell<HashMap<String, Rc<RefCell<State>>>>>,
}

/// What the leader's call came to, for followers that wait for it whole.
#[derive(Debug, Clone)]
pub enum Outcome {
    Pending,
    /// The leader's answer, whether the cache stores it or not.
    Answer(Entry),
    /// Every target failed (`code`: the failure's): a follower holding a stale entry answers
    /// with it at once, as the leader did or would have.
    ProvidersFailed {
        code: &'static str,
    },
    /// No answer (a client error, or the leader went away).
    Nothing,
}

struct State {
    leader_id: String,
    /// The leader's client stream, when it asked for one: whether it carries the usage chunk.
    stream: Option<bool>,
    /// The target whose stream the leader relays, once it has started.
    provider: Option<String>,
    chunks: Vec<Bytes>,
    bytes: usize,
    limit: usize,
    /// New stream followers may still start from the first chunk.
    joinable: bool,
    /// Stream followers reading the chunks.
    readers: usize,
    /// The leader's client stream has ended: every chunk it got is here.
    stream_done: bool,
    outcome: Outcome,
}

/// The first request of a key: it calls the provider.
pub struct Lead {
    flights: Flights,
    key: String,
    state: Rc<RefCell<State>>,
}

/// A later request of a key, reading the leader's flight.
pub struct Follow {
    state: Rc<RefCell<State>>,
    cursor: usize,
    reading: bool,
}

pub enum Role {
    Lead(Lead),
    Follow(Follow),
}

impl Flights {
    /// Joins the flight of `key`, or starts one led by `request_id`. `stream`: the request's
    /// client stream (whether it carries usage), `None` for a JSON answer; `limit`: the most
    /// bytes of a stream kept for followers that join late.
    pub fn join(&self, key: &str, request_id: &str, stream: Option<bool>, limit: usize) -> Role {
        let mut map = self.map.borrow_mut();
        if let Some(state) = map.get(key) {
            return Role::Follow(Follow { state: state.clone(), cursor: 0, reading: false });
        }
        let state = Rc::new(RefCell::new(State {
            leader_id: request_id.to_owned(),
            stream,
            provider: None,
            chunks: Vec::new(),
            bytes: 0,
            limit,
            joinable: true,
            readers: 0,
            stream_done: false,
            outcome: Outcome::Pending,
        }));
        map.insert(key.to_owned(), state.clone());
        Role::Lead(Lead { flights: self.clone(), key: key.to_owned(), state })
    }

    /// How many flights are open (for tests and the health view).
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&self, key: &str, state: &Rc<RefCell<State>>) {
        let mut map = self.map.borrow_mut();
        if map.get(key).is_some_and(|s| Rc::ptr_eq(s, state)) {
            map.remove(key);
        }
    }
}

impl Lead {
    /// The leader's stream has started from `target`.
    pub fn opened(&self, target: &str) {
        self.state.borrow_mut().provider = Some(target.to_owned());
    }

    /// Bytes the leader's client stream got, in order.
    pub fn chunk(&self, bytes: &Bytes) {
        let mut s = self.state.borrow_mut();
        s.bytes = s.bytes.saturating_add(bytes.len());
        if s.bytes > s.limit {
            s.joinable = false;
        }
        if s.joinable || s.readers > 0 {
            s.chunks.push(bytes.clone());
        } else {
            s.chunks = Vec::new();
        }
    }

    /// The leader's client stream has ended (cleanly or with its error event).
    pub fn stream_done(&self) {
        self.state.borrow_mut().stream_done = true;
    }

    /// The answer followers may reuse. `Nothing` removes the flight at once.
    pub fn publish(&self, outcome: Outcome) {
        let nothing = matches!(outcome, Outcome::Nothing | Outcome::ProvidersFailed { .. });
        self.state.borrow_mut().outcome = outcome;
        if nothing {
            self.flights.remove(&self.key, &self.state);
        }
    }

    pub fn request_id(&self) -> String {
        self.state.borrow().leader_id.clone()
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        {
            let mut s = self.state.borrow_mut();
            if matches!(s.outcome, Outcome::Pending) {
                s.outcome = Outcome::Nothing;
            }
        }
        self.flights.remove(&self.key, &self.state);
    }
}

/// What a stream follower finds when it looks.
#[derive(Debug)]
pub enum Read {
    /// New chunks, in order.
    Chunks(Vec<Bytes>),
    /// Nothing new yet.
    Pending,
    /// The leader's stream ended and every chunk has been read.
    Done,
    /// The leader went away before its stream ended: the follower's stream is incomplete.
    Broken,
}

impl Follow {
    pub fn leader_id(&self) -> String {
        self.state.borrow().leader_id.clone()
    }

    pub fn provider(&self) -> Option<String> {
        self.state.borrow().provider.clone()
    }

    /// The outcome as it stands.
    pub fn outcome(&self) -> Outcome {
        self.state.borrow().outcome.clone()
    }

    /// Starts reading the leader's chunks from the first, when the leader streams in the same
    /// form (`include_usage`) and the stream is still joinable and unfinished; else the follower
    /// waits for the outcome.
    pub fn read_along(&mut self, include_usage: bool) -> bool {
        let mut s = self.state.borrow_mut();
        let fits =
            s.stream == Some(include_usage) && s.joinable && !s.stream_done && matches!(s.outcome, Outcome::Pending);
        if fits && !self.reading {
            s.readers += 1;
            self.reading = true;
        }
        self.reading
    }

    /// The chunks not read yet, or where the stream stands.
    pub fn read(&mut self) -> Read {
        let s = self.state.borrow();
        if self.cursor < s.chunks.len() {
            let new = s.chunks[self.cursor..].to_vec();
            self.cursor = s.chunks.len();
            return Read::Chunks(new);
        }
        if s.stream_done {
            Read::Done
        } else if matches!(s.outcome, Outcome::Nothing | Outcome::ProvidersFailed { .. }) {
            Read::Broken
        } else {
            Read::Pending
        }
    }

    /// Whether anything has been read.
    pub fn started(&self) -> bool {
        self.cursor > 0
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        if self.reading {
            let mut s = self.state.borrow_mut();
            s.readers = s.readers.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry::new(0, 60, 60, "t", "m", Bytes::from_static(b"{}"))
    }

    fn lead(role: Role) -> Lead {
        match role {
            Role::Lead(l) => l,
            Role::Follow(_) => panic!("expected to lead"),
        }
    }

    fn follow(role: Role) -> Follow {
        match role {
            Role::Follow(f) => f,
            Role::Lead(_) => panic!("expected to follow"),
        }
    }

    #[test]
    fn the_first_leads_and_the_rest_follow_until_the_leader_is_gone() {
        let flights = Flights::default();
        let leader = lead(flights.join("k", "r1", None, 100));
        let follower = follow(flights.join("k", "r2", None, 100));
        assert_eq!(follower.leader_id(), "r1");
        assert!(matches!(follower.outcome(), Outcome::Pending));
        // Another key is another flight.
        let _other = lead(flights.join("other", "r3", None, 100));
        leader.publish(Outcome::Answer(entry()));
        assert!(matches!(follower.outcome(), Outcome::Answer(_)));
        // Until the leader's write is done, late arrivals still find the answer.
        assert!(matches!(follow(flights.join("k", "r4", None, 100)).outcome(), Outcome::Answer(_)));
        drop(leader);
        assert!(matches!(flights.join("k", "r5", None, 100), Role::Lead(_)));
    }

    #[test]
    fn a_failed_or_abandoned_flight_is_gone_at_once() {
        let flights = Flights::default();
        let leader = lead(flights.join("k", "r1", None, 100));
        let follower = follow(flights.join("k", "r2", None, 100));
        leader.publish(Outcome::Nothing);
        assert!(matches!(follower.outcome(), Outcome::Nothing));
        let next = lead(flights.join("k", "r3", None, 100));
        // The old leader's drop does not remove the new flight.
        drop(leader);
        assert!(matches!(flights.join("k", "r4", None, 100), Role::Follow(_)));
        drop(next);
        let abandoned = lead(flights.join("k", "r5", None, 100));
        let waiting = follow(flights.join("k", "r6", None, 100));
        drop(abandoned);
        assert!(matches!(waiting.outcome(), Outcome::Nothing));
        assert!(flights.is_empty());
    }

    #[test]
    fn stream_followers_get_what_was_sent_then_the_live_chunks() {
        let flights = Flights::default();
        let leader = lead(flights.join("k", "r1", Some(false), 100));
        leader.chunk(&Bytes::from_static(b"a"));
        let mut early = follow(flights.join("k", "r2", Some(false), 100));
        assert!(early.read_along(false));
        // Another form waits for the whole answer.
        assert!(!follow(flights.join("k", "r3", Some(true), 100)).read_along(true));
        assert!(matches!(early.read(), Read::Chunks(c) if c == vec![Bytes::from_static(b"a")]));
        assert!(matches!(early.read(), Read::Pending));
        leader.chunk(&Bytes::from_static(b"b"));
        leader.stream_done();
        leader.publish(Outcome::Answer(entry()));
        assert!(matches!(early.read(), Read::Chunks(c) if c == vec![Bytes::from_static(b"b")]));
        assert!(matches!(early.read(), Read::Done));
        // A stream that ended takes no new readers: they replay the answer.
        assert!(!follow(flights.join("k", "r4", Some(false), 100)).read_along(false));
    }

    #[test]
    fn a_stream_past_its_limit_takes_no_new_readers_and_keeps_chunks_only_for_its_readers() {
        let flights = Flights::default();
        let leader = lead(flights.join("k", "r1", Some(false), 4));
        let mut reader = follow(flights.join("k", "r2", Some(false), 4));
        assert!(reader.read_along(false));
        leader.chunk(&Bytes::from_static(b"abc"));
        leader.chunk(&Bytes::from_static(b"de"));
        assert!(!follow(flights.join("k", "r3", Some(false), 4)).read_along(false));
        assert!(matches!(reader.read(), Read::Chunks(c) if c.len() == 2));
        drop(reader);
        leader.chunk(&Bytes::from_static(b"fg"));
        assert!(leader.state.borrow().chunks.is_empty());
    }

    #[test]
    fn a_reader_of_a_leader_that_went_away_mid_stream_is_told_so() {
        let flights = Flights::default();
        let leader = lead(flights.join("k", "r1", Some(false), 100));
        let mut reader = follow(flights.join("k", "r2", Some(false), 100));
        assert!(reader.read_along(false));
        leader.chunk(&Bytes::from_static(b"a"));
        drop(leader);
        assert!(matches!(reader.read(), Read::Chunks(_)));
        assert!(reader.started());
        assert!(matches!(reader.read(), Read::Broken));
    }
}
