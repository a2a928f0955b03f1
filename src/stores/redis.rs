//! The one owner of Redis: every key the gateway keeps there and every command it sends. All keys
//! start with the deployment prefix (`DEPLOYMENT_PREFIX`), so two deployments can share one
//! database without sharing state:
//!
//! | key | what |
//! |---|---|
//! | `{prefix}:{digest}` | a cache entry (base64 MessagePack), expiring with its stale window |
//! | `{prefix}:count:{name}` | a counter of events (stores skipped, ...) |
//! | `{prefix}:health:{target id}:{slice}:ok`, `...:fail` | calls to a target that succeeded or failed in one slice of the breaker window, over all isolates (`INCRBY`), expiring when the slice leaves the window |
//! | `{prefix}:flight:{digest}` | the request id of the call in flight for a cache key (single flight across isolates: `SET NX PX`), deleted when its answer is stored, else expiring after `COALESCE_WAIT_MS` |
//! | `{prefix}:health:{target id}:marks` | a sorted set of the target's marks: `open_until`, `closed_at`, `cool_until` (ms since the epoch), each only ever moved later (`ZADD GT`); it expires a window after its latest mark (`PEXPIRE NX`, then `PEXPIRE GT`) |
//! | `{prefix}:limit:...`, `{prefix}:kill:{target id}` | per-tenant limit counters and per-target kill switches: see `limits` (a part of this module, with its script) |
//! | `{prefix}:spend:...` | spend per tenant and per target, per UTC day and month: see `spend` |
//! | `{prefix}:metrics:m:{minute}`, `{prefix}:metrics:total` | metrics by minute and since the start: see `metrics` (a part of this module) |
//!
//! Slices are numbered from the epoch (`routing::breaker::BreakerConfig::slice`), so all isolates
//! add to the same counters. Every health operation commutes: no isolate can erase what another
//! reported, whatever the order their reports arrive in. Health takes one round trip (a
//! pipeline) per exchange, reads and writes together. It uses Redis 7.0 commands; the commands of
//! a pipeline fail one by one, so a store without `PEXPIRE` options only loses the marks' expiry.
//!
//! Commands go out through the Upstash REST transport (`upstash.rs`), each bounded by a timeout.
//! Must not: be bypassed (no other module builds a Redis key or command), or put the token or the
//! store URL into an error.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use std::ops::RangeInclusive;

use crate::api::json_type_name;
use crate::cache::entry::Entry;
use crate::cache::fit::{self, Place};
use crate::cache::key::CacheKey;
use crate::config::UpstashConfig;
use crate::error::{StoreError, StoreErrorKind, Tier};
use crate::ports::{Clock, Http};
use crate::routing::sharing::{Added, Counts, Marks, Report, Seen};
use crate::stores::upstash::Upstash;

mod limits;
mod spend;
pub use limits::{kill_key, limit_key, BudgetCheck, LimitCheck, LimitReply, WINDOW_SCRIPT, WINDOW_SCRIPT_SHA1};
pub use spend::{spend_key, Owner, UsageRecord};
mod metrics;
pub use metrics::{minute_key, totals_key};

/// The prefix when `DEPLOYMENT_PREFIX` is unset (the key layout of earlier releases).
pub const DEFAULT_PREFIX: &str = "llmc1";

fn err(op: &'static str, kind: StoreErrorKind) -> StoreError {
    StoreError { tier: Tier::Redis, op, kind }
}

/// The Redis key of a cache entry.
pub fn entry_key(prefix: &str, key: &CacheKey) -> String {
    format!("{prefix}:{}", key.digest_hex())
}

/// The Redis key of the call in flight for a cache key.
pub fn flight_key(prefix: &str, key: &CacheKey) -> String {
    format!("{prefix}:flight:{}", key.digest_hex())
}

/// The Redis key of a counter.
pub fn counter_key(prefix: &str, name: &str) -> String {
    format!("{prefix}:count:{name}")
}

/// The Redis key of a target's count of calls that succeeded (`ok`) or failed in `slice`.
pub fn outcome_key(prefix: &str, target_id: &str, slice: u64, ok: bool) -> String {
    format!("{prefix}:health:{target_id}:{slice}:{}", if ok { "ok" } else { "fail" })
}

/// The Redis key of a target's marks.
pub fn marks_key(prefix: &str, target_id: &str) -> String {
    format!("{prefix}:health:{target_id}:marks")
}

/// An entry as stored: base64 of its encoding; garbage is an error.
fn decode_entry(op: &'static str, b64: &str) -> Result<Entry, StoreError> {
    let bytes = B64
        .decode(b64.as_bytes())
        .map_err(|e| err(op, StoreErrorKind::Garbage(format!("value is not base64: {e}"))))?;
    Entry::decode_shared(bytes::Bytes::from(bytes)).map_err(|e| err(op, StoreErrorKind::Garbage(e.to_string())))
}

/// The members of a marks set, in the order `ZMSCORE` asks for them.
const MARKS: [&str; 3] = ["open_until", "closed_at", "cool_until"];

/// What one health exchange brought back.
#[derive(Debug)]
pub struct HealthExchange {
    /// Per report, per slice it reported: the totals after the additions.
    pub added: Vec<Vec<Added>>,
    /// Per target read, in order; `None` when none was asked for or the read failed.
    pub seen: Option<Vec<Seen>>,
}

/// Redis as the gateway uses it.
pub struct Redis<'a> {
    rest: Upstash<'a>,
    config: &'a UpstashConfig,
}

impl<'a> Redis<'a> {
    pub fn new(config: &'a UpstashConfig) -> Redis<'a> {
        Redis { rest: Upstash::new(config), config }
    }

    fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// Reads and decodes the entry under `key`; garbage is an error (a miss for the caller).
    pub async fn get_entry<H: Http + Clock>(
        &self,
        host: &H,
        key: &CacheKey,
        max_entry_bytes: usize,
    ) -> Result<Option<Entry>, StoreError> {
        let limit = fit::redis_reply_limit(max_entry_bytes);
        let redis_key = entry_key(self.prefix(), key);
        let result = self.rest.command(host, "get", &["GET", &redis_key], limit, self.config.timeout_ms).await?;
        match result {
            Value::Null => Ok(None),
            Value::String(b64) => decode_entry("get", &b64).map(Some),
            other => Err(err("get", StoreErrorKind::Protocol(format!("GET returned {}", json_type_name(&other))))),
        }
    }

    /// Stores an encoded entry for `ttl_ms` (Redis expires it; expiry on read is still checked).
    /// The base64 of the entry is written straight into the request body: its one copy here.
    pub async fn put_entry<H: Http + Clock>(
        &self,
        host: &H,
        key: &CacheKey,
        encoded: &[u8],
        ttl_ms: u64,
        timeout_ms: u64,
    ) -> Result<(), StoreError> {
        let redis_key = entry_key(self.prefix(), key);
        if let Err(e) = fit::fits(encoded.len(), Place::Redis { key_bytes: redis_key.len() }) {
            return Err(err("put", StoreErrorKind::TooLarge { size: e.size, limit: e.limit }));
        }
        // ["SET",<key>,"<base64>","PX","<ttl>"]: base64 needs no JSON escaping.
        let key_json =
            serde_json::to_string(&redis_key).map_err(|e| err("put", StoreErrorKind::Protocol(e.to_string())))?;
        let mut body = String::with_capacity(fit::base64_len(encoded.len()) + key_json.len() + 64);
        body.push_str("[\"SET\",");
        body.push_str(&key_json);
        body.push_str(",\"");
        B64.encode_string(encoded, &mut body);
        body.push_str("\",\"PX\",\"");
        body.push_str(&ttl_ms.max(1).to_string());
        body.push_str("\"]");
        let result = self.rest.send(host, "put", bytes::Bytes::from(body), 1024, timeout_ms).await?;
        match result {
            Value::String(s) if s == "OK" => Ok(()),
            other => Err(err("put", StoreErrorKind::Protocol(format!("SET returned {}", json_type_name(&other))))),
        }
    }

    /// Deletes the entry under `key`; true when there was one.
    pub async fn delete_entry<H: Http + Clock>(&self, host: &H, key: &CacheKey) -> Result<bool, StoreError> {
        let redis_key = entry_key(self.prefix(), key);
        match self.rest.command(host, "delete", &["DEL", &redis_key], 1024, self.config.timeout_ms).await? {
            Value::Number(n) => Ok(n.as_u64().unwrap_or(0) > 0),
            other => Err(err("delete", StoreErrorKind::Protocol(format!("DEL returned {}", json_type_name(&other))))),
        }
    }

    /// Claims the call for `key` for `request_id`, for `ttl_ms`, unless another request holds it
    /// (`SET NX PX GET`, one command): `None` when this request leads, else the leader's id.
    pub async fn claim_flight<H: Http + Clock>(
        &self,
        host: &H,
        key: &CacheKey,
        request_id: &str,
        ttl_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let flight = flight_key(self.prefix(), key);
        let ttl = ttl_ms.max(1).to_string();
        let args = ["SET", flight.as_str(), request_id, "NX", "PX", ttl.as_str(), "GET"];
        match self.rest.command(host, "claim", &args, 1024, self.config.timeout_ms).await? {
            Value::Null => Ok(None),
            Value::String(leader) => Ok(Some(leader)),
            other => Err(err("claim", StoreErrorKind::Protocol(format!("SET returned {}", json_type_name(&other))))),
        }
    }

    /// One look at a flight led elsewhere: the entry under `key` if it is there yet, and whether
    /// the flight is still claimed (one round trip).
    pub async fn look_at_flight<H: Http + Clock>(
        &self,
        host: &H,
        key: &CacheKey,
        max_entry_bytes: usize,
    ) -> Result<(Option<Entry>, bool), StoreError> {
        let commands = [
            vec!["GET".to_owned(), entry_key(self.prefix(), key)],
            vec!["EXISTS".to_owned(), flight_key(self.prefix(), key)],
        ];
        let limit = fit::redis_reply_limit(max_entry_bytes);
        let replies = self.rest.pipeline(host, "flight", &commands, limit, self.config.timeout_ms).await?;
        let entry = match &replies[0] {
            Ok(Value::Null) => None,
            Ok(Value::String(b64)) => Some(decode_entry("flight", b64)?),
            Ok(other) => {
                let why = format!("GET returned {}", json_type_name(other));
                return Err(err("flight", StoreErrorKind::Protocol(why)));
            }
            Err(e) => return Err(err("flight", StoreErrorKind::Protocol(e.clone()))),
        };
        let claimed = matches!(&replies[1], Ok(Value::Number(n)) if n.as_u64() == Some(1));
        Ok((entry, claimed))
    }

    /// Ends the flight of `key` (its answer is stored, or there is none). A plain `DEL`: should
    /// the claim have expired and another request have claimed the key since, that request's
    /// followers stop waiting and call the provider themselves; no answer is ever wrong for it.
    pub async fn release_flight<H: Http + Clock>(&self, host: &H, key: &CacheKey) -> Result<(), StoreError> {
        let flight = flight_key(self.prefix(), key);
        self.rest.command(host, "release", &["DEL", &flight], 1024, self.config.timeout_ms).await.map(|_| ())
    }

    /// `PING`, for the detailed health view.
    pub async fn ping<H: Http + Clock>(&self, host: &H) -> Result<(), StoreError> {
        match self.rest.command(host, "ping", &["PING"], 1024, self.config.timeout_ms).await? {
            Value::String(s) if s == "PONG" => Ok(()),
            other => Err(err("ping", StoreErrorKind::Protocol(format!("PING returned {}", json_type_name(&other))))),
        }
    }

    /// Adds one to a counter.
    pub async fn count<H: Http + Clock>(&self, host: &H, name: &str, timeout_ms: u64) -> Result<(), StoreError> {
        let key = counter_key(self.prefix(), name);
        self.rest.command(host, "count", &["INCR", &key], 1024, timeout_ms).await.map(|_| ())
    }

    /// The values of these counters, in order (0 for a counter never bumped).
    pub async fn counters<H: Http + Clock>(&self, host: &H, names: &[&str]) -> Result<Vec<u64>, StoreError> {
        let keys: Vec<String> = names.iter().map(|n| counter_key(self.prefix(), n)).collect();
        let values = self.mget(host, "count_get", &keys, 4096).await?;
        Ok(values.iter().map(|v| v.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)).collect())
    }

    /// Adds `reports` to the shared health of targets, then reads the shared health of `read`
    /// over `slices` (the window), in one round trip.
    pub async fn exchange_health<H: Http + Clock>(
        &self,
        host: &H,
        reports: &[Report],
        read: &[String],
        slices: RangeInclusive<u64>,
        timeout_ms: u64,
    ) -> Result<HealthExchange, StoreError> {
        let prefix = self.prefix();
        let mut commands: Vec<Vec<String>> = Vec::new();
        let mut command = |args: Vec<String>| {
            commands.push(args);
            commands.len() - 1
        };
        // Where each addition's reply is: per report, per slice, (ok, fail).
        let mut additions: Vec<Vec<(Option<usize>, Option<usize>)>> = Vec::new();
        for report in reports {
            let mut at = Vec::new();
            for slice in &report.slices {
                let mut add = |ok: bool, n: u64| {
                    (n > 0).then(|| {
                        let key = outcome_key(prefix, &report.target, slice.slice, ok);
                        let i = command(vec!["INCRBY".into(), key.clone(), n.to_string()]);
                        command(vec!["PEXPIRE".into(), key, slice.ttl_ms.max(1).to_string()]);
                        i
                    })
                };
                at.push((add(true, slice.counts.ok), add(false, slice.counts.fail)));
            }
            additions.push(at);
            let marks = report.marks;
            if !marks.is_empty() {
                let key = marks_key(prefix, &report.target);
                let mut zadd = vec!["ZADD".to_owned(), key.clone(), "GT".to_owned()];
                for (name, ms) in MARKS.iter().zip([marks.open_until_ms, marks.closed_at_ms, marks.cool_until_ms]) {
                    if ms > 0 {
                        zadd.extend([ms.to_string(), (*name).to_owned()]);
                    }
                }
                command(zadd);
                // A new set has no expiry (GT takes that as forever), so NX gives it one first.
                let ttl = report.marks_ttl_ms.max(1).to_string();
                command(vec!["PEXPIRE".into(), key.clone(), ttl.clone(), "NX".into()]);
                command(vec!["PEXPIRE".into(), key, ttl, "GT".into()]);
            }
        }
        let read_at = (!read.is_empty()).then(|| {
            let mut mget = vec!["MGET".to_owned()];
            for id in read {
                for slice in slices.clone() {
                    mget.extend([outcome_key(prefix, id, slice, true), outcome_key(prefix, id, slice, false)]);
                }
            }
            let at = command(mget);
            for id in read {
                let mut zmscore = vec!["ZMSCORE".to_owned(), marks_key(prefix, id)];
                zmscore.extend(MARKS.iter().map(|m| (*m).to_owned()));
                command(zmscore);
            }
            at
        });
        if commands.is_empty() {
            return Ok(HealthExchange { added: Vec::new(), seen: None });
        }
        let replies = self.rest.pipeline(host, "health", &commands, 256 << 10, timeout_ms).await?;
        let total = |i: Option<usize>| i.and_then(|i| replies[i].as_ref().ok()).and_then(Value::as_u64);
        let added = additions
            .iter()
            .map(|at| at.iter().map(|(ok, fail)| Added { ok: total(*ok), fail: total(*fail) }).collect())
            .collect();
        let seen = read_at.and_then(|at| seen(&replies[at..], read.len(), slices));
        Ok(HealthExchange { added, seen })
    }

    async fn mget<H: Http + Clock>(
        &self,
        host: &H,
        op: &'static str,
        keys: &[String],
        reply_limit: usize,
    ) -> Result<Vec<Option<String>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["MGET"];
        args.extend(keys.iter().map(String::as_str));
        match self.rest.command(host, op, &args, reply_limit, self.config.timeout_ms).await? {
            Value::Array(values) if values.len() == keys.len() => {
                Ok(values.into_iter().map(|v| v.as_str().map(str::to_owned)).collect())
            }
            other => Err(err(op, StoreErrorKind::Protocol(format!("MGET returned {}", json_type_name(&other))))),
        }
    }
}

/// The shared health of `targets` targets from the replies to `MGET` and one `ZMSCORE` each;
/// `None` when any of them failed or is not what was asked for.
fn seen(replies: &[Result<Value, String>], targets: usize, slices: RangeInclusive<u64>) -> Option<Vec<Seen>> {
    let Some((Ok(Value::Array(counts)), marks)) = replies.split_first() else { return None };
    let per_target = slices.clone().count() * 2;
    if counts.len() != targets * per_target || marks.len() != targets {
        return None;
    }
    let number = |v: &Value| match v {
        Value::String(s) => s.parse::<f64>().ok(),
        other => other.as_f64(),
    };
    // A count or a time: a non-negative whole number (scores come back as strings).
    let whole = |v: &Value| number(v).filter(|n| n.is_finite() && *n >= 0.0).map_or(0, |n| n as u64);
    counts
        .chunks(per_target)
        .zip(marks)
        .map(|(counts, marks)| {
            let Ok(Value::Array(marks)) = marks else { return None };
            let [open_until, closed_at, cool_until] = marks.as_slice() else { return None };
            Some(Seen {
                slices: slices
                    .clone()
                    .zip(counts.chunks(2))
                    .map(|(s, c)| (s, Counts { ok: whole(&c[0]), fail: whole(&c[1]) }))
                    .collect(),
                marks: Marks {
                    open_until_ms: whole(open_until),
                    closed_at_ms: whole(closed_at),
                    cool_until_ms: whole(cool_until),
                },
            })
        })
        .collect()
}
