//! Redis as the Upstash REST API presents it, for host tests: single commands (`POST {url}`) and
//! pipelines (`POST {url}/pipeline`: one `{"result"}` or `{"error"}` per command, not atomic),
//! over strings and sorted sets with expiry in the host's virtual time. Each command behaves as
//! Redis 7.0 documents it, errors included, for the options the gateway uses (and their
//! siblings): GET, MGET, SET (NX/XX/GET/PX/EX), DEL, EXISTS, INCR, INCRBY, PEXPIRE (NX/XX/GT/LT), PTTL,
//! ZADD (NX/XX/GT/LT/CH), ZSCORE, ZMSCORE, HINCRBY, HGETALL, PEXPIREAT, PING. Switchable off to model an outage.
//!
//! Scripts: `EVAL`, `EVALSHA` and `SCRIPT LOAD` run exactly one script, the gateway's
//! sliding-window check (`stores::redis::WINDOW_SCRIPT`, recognised by its text or its SHA-1),
//! whose semantics are modelled here in Rust; any other script is refused. As in Redis, the
//! script cache starts empty (and `flush_scripts` empties it): `EVALSHA` answers `NOSCRIPT`
//! until an `EVAL` or `SCRIPT LOAD` of the script.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use bytes::Bytes;
use serde_json::{json, Value as Json};

use super::{MemHost, Scripted};
use crate::ports::Clock;

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    ZSet(BTreeMap<String, f64>),
    Hash(BTreeMap<String, i64>),
}

#[derive(Debug, Clone)]
struct Stored {
    value: Value,
    /// When the key expires (ms since the epoch, virtual time).
    expires_at: Option<u64>,
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

#[derive(Clone, Default)]
pub struct MemUpstash {
    data: Rc<RefCell<HashMap<String, Stored>>>,
    down: Rc<Cell<bool>>,
    delay_ms: Rc<Cell<u64>>,
    /// Whether the window script is in the script cache.
    script_loaded: Rc<Cell<bool>>,
    /// Commands run so far, by name (`EVALSHA`, `EVAL`, ...).
    ran: Rc<RefCell<Vec<String>>>,
}

impl MemUpstash {
    /// Serves `url` on `host`, checking the Bearer `token`.
    pub fn serve(host: &MemHost, url: &str, token: &str) -> MemUpstash {
        let upstash = MemUpstash::default();
        let (me, clock, token) = (upstash.clone(), host.clone(), format!("Bearer {token}"));
        host.route(url, move |req| {
            // The command runs when the request arrives; its reply comes back after the delay.
            let reply = me.answer(req, clock.now_ms(), &token);
            match me.delay_ms.get() {
                0 => reply,
                ms => Scripted::Delay { ms, then: Box::new(reply) },
            }
        });
        upstash
    }

    pub fn set_down(&self, down: bool) {
        self.down.set(down);
    }

    /// Makes every reply arrive `ms` after its request (a round trip to a real Upstash).
    pub fn set_delay(&self, ms: u64) {
        self.delay_ms.set(ms);
    }

    /// The string under `key`, if it holds one.
    pub fn raw(&self, key: &str) -> Option<String> {
        match self.data.borrow().get(key).map(|s| &s.value) {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn insert_raw(&self, key: &str, value: &str) {
        self.data.borrow_mut().insert(key.to_owned(), Stored { value: Value::Str(value.to_owned()), expires_at: None });
    }

    /// The score of `member` in the sorted set under `key`.
    pub fn zscore(&self, key: &str, member: &str) -> Option<f64> {
        match self.data.borrow().get(key).map(|s| &s.value) {
            Some(Value::ZSet(set)) => set.get(member).copied(),
            _ => None,
        }
    }

    /// When `key` expires (ms since the epoch), if it exists and has an expiry.
    pub fn expires_at(&self, key: &str) -> Option<u64> {
        self.data.borrow().get(key).and_then(|s| s.expires_at)
    }

    pub fn len(&self) -> usize {
        self.data.borrow().len()
    }

    /// Every key, sorted (expired keys included until the next command removes them).
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.data.borrow().keys().cloned().collect();
        keys.sort();
        keys
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the script cache (what a Redis restart or `SCRIPT FLUSH` does).
    pub fn flush_scripts(&self) {
        self.script_loaded.set(false);
    }

    /// The names of the commands run so far, in order (pipelines' commands included).
    pub fn commands_run(&self) -> Vec<String> {
        self.ran.borrow().clone()
    }

    /// Runs one command, scripts included (see the module documentation).
    fn run(&self, data: &mut HashMap<String, Stored>, args: &[String], now_ms: u64) -> Result<Json, String> {
        use crate::stores::redis::{WINDOW_SCRIPT, WINDOW_SCRIPT_SHA1};
        let name = args.first().map(|n| n.to_ascii_uppercase()).unwrap_or_default();
        self.ran.borrow_mut().push(name.clone());
        match (name.as_str(), args.get(1).map(String::as_str)) {
            ("EVALSHA", Some(sha)) if sha.eq_ignore_ascii_case(WINDOW_SCRIPT_SHA1) && self.script_loaded.get() => {
                window_script(data, &args[2..], now_ms)
            }
            ("EVALSHA", Some(_)) => Err("NOSCRIPT No matching script. Please use EVAL.".into()),
            ("EVAL", Some(script)) if script == WINDOW_SCRIPT => {
                self.script_loaded.set(true);
                window_script(data, &args[2..], now_ms)
            }
            ("EVAL", Some(_)) => Err("ERR MemUpstash runs only the gateway's window script".into()),
            ("SCRIPT", Some(sub))
                if sub.eq_ignore_ascii_case("LOAD") && args.get(2).map(String::as_str) == Some(WINDOW_SCRIPT) =>
            {
                self.script_loaded.set(true);
                Ok(json!(WINDOW_SCRIPT_SHA1))
            }
            ("SCRIPT", _) => Err("ERR MemUpstash loads only the gateway's window script".into()),
            _ => run(data, args, now_ms),
        }
    }

    fn answer(&self, req: &http::Request<Bytes>, now_ms: u64, token: &str) -> Scripted {
        if self.down.get() {
            return Scripted::Fail("connection refused".into());
        }
        if req.headers().get("authorization").and_then(|v| v.to_str().ok()) != Some(token) {
            return Scripted::json(401, &json!({"error": "Unauthorized"}));
        }
        let mut data = self.data.borrow_mut();
        data.retain(|_, s| s.expires_at.is_none_or(|at| at > now_ms));
        if req.uri().path().trim_end_matches('/').ends_with("/pipeline") {
            let Ok(commands) = serde_json::from_slice::<Vec<Vec<String>>>(req.body()) else {
                return Scripted::json(400, &json!({"error": "ERR failed to parse pipeline request"}));
            };
            let replies: Vec<Json> = commands
                .iter()
                .map(|args| match self.run(&mut data, args, now_ms) {
                    Ok(result) => json!({ "result": result }),
                    Err(error) => json!({ "error": error }),
                })
                .collect();
            return Scripted::json(200, &Json::Array(replies));
        }
        let Ok(args) = serde_json::from_slice::<Vec<String>>(req.body()) else {
            return Scripted::json(400, &json!({"error": "ERR failed to parse command"}));
        };
        match self.run(&mut data, &args, now_ms) {
            Ok(result) => Scripted::json(200, &json!({ "result": result })),
            Err(error) => Scripted::json(400, &json!({ "error": error })),
        }
    }
}

/// Runs one command; the error is Redis's message.
fn run(data: &mut HashMap<String, Stored>, args: &[String], now_ms: u64) -> Result<Json, String> {
    let Some((name, rest)) = args.split_first() else { return Err("ERR empty command".into()) };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let wrong_args = || format!("ERR wrong number of arguments for '{}' command", name.to_ascii_lowercase());
    match (name.to_ascii_uppercase().as_str(), rest.as_slice()) {
        ("PING", []) => Ok(json!("PONG")),
        ("GET", [key]) => string(data, key).map(|s| json!(s)),
        ("MGET", keys) if !keys.is_empty() => Ok(json!(keys
            .iter()
            .map(|k| match data.get(*k).map(|s| &s.value) {
                Some(Value::Str(s)) => Some(s.clone()),
                _ => None,
            })
            .collect::<Vec<_>>())),
        ("EXISTS", keys) if !keys.is_empty() => Ok(json!(keys.iter().filter(|k| data.contains_key(**k)).count())),
        ("DEL", keys) if !keys.is_empty() => Ok(json!(keys.iter().filter(|k| data.remove(**k).is_some()).count())),
        ("INCR", [key]) => incr_by(data, key, 1),
        ("INCRBY", [key, by]) => incr_by(data, key, by.parse().map_err(|_| NOT_INTEGER.to_owned())?),
        ("SET", [key, value, options @ ..]) => set(data, key, value, options, now_ms),
        ("PEXPIRE", [key, ms, option @ ..]) if option.len() <= 1 => {
            let ms: i64 = ms.parse().map_err(|_| NOT_INTEGER.to_owned())?;
            pexpire(data, key, ms, option.first().copied(), now_ms)
        }
        ("PTTL", [key]) => Ok(json!(match data.get(*key) {
            None => -2,
            Some(Stored { expires_at: None, .. }) => -1,
            Some(Stored { expires_at: Some(at), .. }) => at.saturating_sub(now_ms) as i64,
        })),
        ("ZADD", [key, rest @ ..]) => zadd(data, key, rest),
        ("HINCRBY", [key, field, by]) => {
            let by: i64 = by.parse().map_err(|_| NOT_INTEGER.to_owned())?;
            let stored = data
                .entry((*key).to_owned())
                .or_insert(Stored { value: Value::Hash(BTreeMap::new()), expires_at: None });
            let Value::Hash(hash) = &mut stored.value else { return Err(WRONGTYPE.into()) };
            let n = hash.entry((*field).to_owned()).or_default();
            *n = n.checked_add(by).ok_or_else(|| NOT_INTEGER.to_owned())?;
            Ok(json!(*n))
        }
        ("HGETALL", [key]) => match data.get(*key).map(|s| &s.value) {
            None => Ok(json!([])),
            Some(Value::Hash(hash)) => {
                Ok(json!(hash.iter().flat_map(|(f, n)| [f.clone(), n.to_string()]).collect::<Vec<_>>()))
            }
            Some(_) => Err(WRONGTYPE.into()),
        },
        ("PEXPIREAT", [key, at]) => {
            let at: u64 = at.parse().map_err(|_| NOT_INTEGER.to_owned())?;
            Ok(json!(match data.get_mut(*key) {
                None => 0,
                Some(_) if at <= now_ms => i32::from(data.remove(*key).is_some()),
                Some(stored) => {
                    stored.expires_at = Some(at);
                    1
                }
            }))
        }
        ("ZSCORE", [key, member]) => {
            Ok(zset(data, key)?.and_then(|set| set.get(*member)).map_or(json!(null), |s| json!(score(*s))))
        }
        ("ZMSCORE", [key, members @ ..]) if !members.is_empty() => {
            let set = zset(data, key)?;
            Ok(json!(members.iter().map(|m| set.and_then(|s| s.get(*m)).map(|s| score(*s))).collect::<Vec<_>>()))
        }
        (
            "PING" | "GET" | "MGET" | "EXISTS" | "DEL" | "INCR" | "INCRBY" | "SET" | "PEXPIRE" | "PTTL" | "ZADD"
            | "ZSCORE" | "ZMSCORE" | "HINCRBY" | "HGETALL" | "PEXPIREAT",
            _,
        ) => Err(wrong_args()),
        _ => Err(format!("ERR unknown command '{name}'")),
    }
}

/// `SET key value [NX | XX] [GET] [EX s | PX ms]`, options in any order.
fn set(
    data: &mut HashMap<String, Stored>,
    key: &str,
    value: &str,
    options: &[&str],
    now_ms: u64,
) -> Result<Json, String> {
    let (mut nx, mut xx, mut get, mut expires_at) = (false, false, false, None);
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        match option.to_ascii_uppercase().as_str() {
            "NX" if !xx => nx = true,
            "XX" if !nx => xx = true,
            "GET" => get = true,
            unit @ ("PX" | "EX") if expires_at.is_none() => {
                let n: u64 = rest.next().ok_or(SYNTAX)?.parse().map_err(|_| NOT_INTEGER.to_owned())?;
                let ms = if unit == "EX" { n.saturating_mul(1000) } else { n };
                if ms == 0 {
                    return Err("ERR invalid expire time in 'set' command".into());
                }
                expires_at = Some(now_ms + ms);
            }
            _ => return Err(SYNTAX.into()),
        }
    }
    // Only GET reads the old value (and refuses another type); a plain SET replaces any.
    let old = if get { string(data, key)?.cloned() } else { None };
    let reply = |old: Option<String>, done: bool| match (get, done) {
        (true, _) => json!(old),
        (false, true) => json!("OK"),
        (false, false) => json!(null),
    };
    if (nx && data.contains_key(key)) || (xx && !data.contains_key(key)) {
        return Ok(reply(old, false));
    }
    data.insert(key.to_owned(), Stored { value: Value::Str(value.to_owned()), expires_at });
    Ok(reply(old, true))
}

fn string<'a>(data: &'a HashMap<String, Stored>, key: &str) -> Result<Option<&'a String>, String> {
    match data.get(key).map(|s| &s.value) {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(_) => Err(WRONGTYPE.into()),
    }
}

fn zset<'a>(data: &'a HashMap<String, Stored>, key: &str) -> Result<Option<&'a BTreeMap<String, f64>>, String> {
    match data.get(key).map(|s| &s.value) {
        None => Ok(None),
        Some(Value::ZSet(set)) => Ok(Some(set)),
        Some(_) => Err(WRONGTYPE.into()),
    }
}

/// A score as Redis writes it in a reply: a whole number without a fraction.
fn score(s: f64) -> String {
    if s.fract() == 0.0 && s.abs() < 1e17 {
        format!("{}", s as i64)
    } else {
        format!("{s}")
    }
}

/// `INCR`/`INCRBY`: keeps the key's expiry, as Redis does.
fn incr_by(data: &mut HashMap<String, Stored>, key: &str, by: i64) -> Result<Json, String> {
    let stored = data.entry(key.to_owned()).or_insert(Stored { value: Value::Str("0".into()), expires_at: None });
    let Value::Str(s) = &mut stored.value else { return Err(WRONGTYPE.into()) };
    let n = s.parse::<i64>().ok().and_then(|n| n.checked_add(by)).ok_or_else(|| NOT_INTEGER.to_owned())?;
    *s = n.to_string();
    Ok(json!(n))
}

/// `PEXPIRE key ms [NX|XX|GT|LT]`: 1 when the expiry was set. A key without an expiry counts as
/// expiring never for GT and LT; a time that is not in the future deletes the key.
fn pexpire(
    data: &mut HashMap<String, Stored>,
    key: &str,
    ms: i64,
    option: Option<&str>,
    now_ms: u64,
) -> Result<Json, String> {
    let option = option.map(str::to_ascii_uppercase);
    if option.as_deref().is_some_and(|o| !matches!(o, "NX" | "XX" | "GT" | "LT")) {
        return Err(format!("ERR Unsupported option {}", option.unwrap_or_default()));
    }
    let Some(stored) = data.get_mut(key) else { return Ok(json!(0)) };
    let at = if ms <= 0 { now_ms } else { now_ms.saturating_add(ms as u64) };
    let allowed = match (option.as_deref(), stored.expires_at) {
        (None, _) => true,
        (Some("NX"), current) => current.is_none(),
        (Some("XX"), current) => current.is_some(),
        (Some("GT"), current) => current.is_some_and(|c| at > c),
        (Some(_), current) => current.is_none_or(|c| at < c),
    };
    if !allowed {
        return Ok(json!(0));
    }
    if at <= now_ms {
        data.remove(key);
    } else {
        stored.expires_at = Some(at);
    }
    Ok(json!(1))
}

/// `ZADD key [NX|XX] [GT|LT] [CH] score member ...`: how many members were added (or changed,
/// with CH). GT and LT only update existing members; new ones are always added (unless XX).
fn zadd(data: &mut HashMap<String, Stored>, key: &str, args: &[&str]) -> Result<Json, String> {
    let (mut nx, mut xx, mut gt, mut lt, mut ch) = (false, false, false, false, false);
    let mut at = 0;
    while let Some(flag) = args.get(at).map(|a| a.to_ascii_uppercase()) {
        match flag.as_str() {
            "NX" => nx = true,
            "XX" => xx = true,
            "GT" => gt = true,
            "LT" => lt = true,
            "CH" => ch = true,
            _ => break,
        }
        at += 1;
    }
    let pairs = &args[at..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(SYNTAX.into());
    }
    if nx && xx {
        return Err("ERR XX and NX options at the same time are not compatible".into());
    }
    if [nx, gt, lt].iter().filter(|set| **set).count() > 1 {
        return Err("ERR GT, LT, and/or NX options at the same time are not compatible".into());
    }
    let mut scored = Vec::new();
    for pair in pairs.chunks(2) {
        let s: f64 = pair[0].parse().ok().filter(|s: &f64| !s.is_nan()).ok_or("ERR value is not a valid float")?;
        scored.push((s, pair[1]));
    }
    let stored = data.entry(key.to_owned()).or_insert(Stored { value: Value::ZSet(BTreeMap::new()), expires_at: None });
    let Value::ZSet(set) = &mut stored.value else { return Err(WRONGTYPE.into()) };
    let mut counted = 0;
    for (s, member) in scored {
        match set.get(member).copied() {
            None if !xx => {
                set.insert(member.to_owned(), s);
                counted += 1;
            }
            Some(current) if !nx && current != s && (!gt || s > current) && (!lt || s < current) => {
                set.insert(member.to_owned(), s);
                if ch {
                    counted += 1;
                }
            }
            _ => {}
        }
    }
    if set.is_empty() {
        data.remove(key);
    }
    Ok(json!(counted))
}

/// `window.lua`, modelled: `numkeys` then four keys (requests now and before, tokens now and
/// before) and, with budgets, two more (spend today, this month), then the request limit, token
/// limit, token estimate, previous window's weight (ppm), counter expiry (ms), whether the token
/// limit refuses too, and the spend at which today's and this month's budgets refuse.
fn window_script(data: &mut HashMap<String, Stored>, args: &[String], now_ms: u64) -> Result<Json, String> {
    let (keys, rest) = match args.first().map(String::as_str) {
        Some("4") if args.len() == 13 => args[1..].split_at(4),
        Some("6") if args.len() == 15 => args[1..].split_at(6),
        _ => return Err("ERR the window script takes 4 or 6 keys and 8 arguments".into()),
    };
    let [rl, tl, cost, w, ttl, gate, dl, ml] = rest else {
        return Err("ERR wrong number of arguments for the window script".into());
    };
    let count = |data: &HashMap<String, Stored>, key: &str| -> Result<u64, String> {
        string(data, key)?.map_or(Ok(0), |s| s.parse::<u64>().map_err(|_| NOT_INTEGER.to_owned()))
    };
    let number = |s: &str| s.parse::<u64>().map_err(|_| NOT_INTEGER.to_owned());
    let (mut rc, rp, tc, tp) =
        (count(data, &keys[0])?, count(data, &keys[1])?, count(data, &keys[2])?, count(data, &keys[3])?);
    let (sd, sm) = match keys.get(4..6) {
        Some([day, month]) => (count(data, day)?, count(data, month)?),
        _ => (0, 0),
    };
    let (rl, tl, cost, w, dl, ml) = (number(rl)?, number(tl)?, number(cost)?, number(w)?, number(dl)?, number(ml)?);
    let mut ok = 1;
    if rl > 0 && rp * w / 1_000_000 + rc + 1 > rl {
        ok = 0;
    }
    if gate == "1" && tl > 0 && tp * w / 1_000_000 + tc + cost > tl {
        ok = 0;
    }
    if (dl > 0 && sd >= dl) || (ml > 0 && sm >= ml) {
        ok = 0;
    }
    if ok == 1 && rl > 0 {
        rc = incr_by(data, &keys[0], 1)?.as_u64().unwrap_or(0);
        pexpire(data, &keys[0], number(ttl)? as i64, None, now_ms)?;
    }
    Ok(json!([ok, rc, rp, tc, tp, sd, sm]))
}
