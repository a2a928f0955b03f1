//! Turns Upstash REST requests into Redis commands: JSON arrays (`POST /`), 2-D arrays
//! (`/pipeline`, `/multi-exec`) and path-style URLs (`/set/key/value?EX=60`), and refuses
//! commands that cannot be served over stateless HTTP on pooled connections.
//!
//! Pure parsing only: this module must not talk to Redis or build HTTP responses.

use serde_json::Value;

use crate::urlcodec::{percent_decode, query_pairs};

/// One Redis command: name first, then arguments, all binary safe.
pub type Command = Vec<Vec<u8>>;

/// A request that is not a valid command. The message becomes `{"error": ...}` with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

fn err(message: impl Into<String>) -> CommandError {
    CommandError(message.into())
}

/// Parses `["SET","k","v","EX",60]`.
pub fn parse_single(body: &[u8]) -> Result<Command, CommandError> {
    let value = parse_json(body)?;
    command_from_json(&value)
}

/// Parses `[["SET","k","v"],["GET","k"]]`. An empty list is an error.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Command>, CommandError> {
    let value = parse_json(body)?;
    let rows = value.as_array().ok_or_else(|| err("ERR request body must be a JSON array of commands"))?;
    if rows.is_empty() {
        return Err(err("ERR empty pipeline: at least one command is required"));
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| command_from_json(row).map_err(|e| err(format!("{} (command {})", e.0, i + 1))))
        .collect()
}

/// Builds a command from a path-style request: `/set/foo/bar` is `SET foo bar`. A non-empty
/// POST body is appended as the last argument, then query parameters other than `_token`
/// (`?EX=100` appends `EX 100`; `?NX` appends `NX`), as Upstash documents.
pub fn parse_path(path: &str, body: &[u8], query: Option<&str>) -> Result<Command, CommandError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(err("ERR empty command"));
    }
    let mut command: Command = trimmed.split('/').map(percent_decode).collect();
    if command[0].is_empty() {
        return Err(err("ERR empty command name"));
    }
    if !body.is_empty() {
        command.push(body.to_vec());
    }
    for (name, value) in query_pairs(query.unwrap_or("")) {
        if name == b"_token" {
            continue;
        }
        command.push(name);
        if !value.is_empty() {
            command.push(value);
        }
    }
    Ok(command)
}

/// Commands that need connection state, block, or would break pooled connections; Upstash
/// does not offer them over REST either (transactions go through `/multi-exec`).
pub fn refuse_unsupported(command: &Command) -> Result<(), CommandError> {
    let name = String::from_utf8_lossy(&command[0]).to_ascii_uppercase();
    let refused = matches!(
        name.as_str(),
        "MULTI"
            | "EXEC"
            | "DISCARD"
            | "WATCH"
            | "UNWATCH"
            | "SUBSCRIBE"
            | "PSUBSCRIBE"
            | "SSUBSCRIBE"
            | "UNSUBSCRIBE"
            | "PUNSUBSCRIBE"
            | "SUNSUBSCRIBE"
            | "MONITOR"
            | "SELECT"
            | "SWAPDB"
            | "AUTH"
            | "HELLO"
            | "RESET"
            | "QUIT"
            | "CLIENT"
            | "SYNC"
            | "PSYNC"
            | "REPLICAOF"
            | "SLAVEOF"
            | "SHUTDOWN"
            | "WAIT"
            | "WAITAOF"
            | "BLPOP"
            | "BRPOP"
            | "BRPOPLPUSH"
            | "BLMOVE"
            | "BLMPOP"
            | "BZPOPMIN"
            | "BZPOPMAX"
            | "BZMPOP"
    );
    let blocking_read = matches!(name.as_str(), "XREAD" | "XREADGROUP")
        && command[1..].iter().any(|arg| arg.eq_ignore_ascii_case(b"BLOCK"));
    if refused || blocking_read {
        return Err(err(format!(
            "ERR Command is not available over the REST API: '{}'",
            String::from_utf8_lossy(&command[0])
        )));
    }
    Ok(())
}

fn parse_json(body: &[u8]) -> Result<Value, CommandError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(err("ERR request body is empty, expected a JSON array"));
    }
    serde_json::from_slice(body).map_err(|e| err(format!("ERR malformed JSON body: {e}")))
}

fn command_from_json(value: &Value) -> Result<Command, CommandError> {
    let items = value.as_array().ok_or_else(|| err("ERR command must be a JSON array like [\"GET\",\"key\"]"))?;
    if items.is_empty() {
        return Err(err("ERR empty command"));
    }
    let command = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            argument(item)
                .ok_or_else(|| err(format!("ERR argument {i} must be a string, number or boolean, got {item}")))
        })
        .collect::<Result<Command, _>>()?;
    if command[0].is_empty() {
        return Err(err("ERR empty command name"));
    }
    Ok(command)
}

/// Strings as they are; numbers and booleans as their JSON text (`60`, `1.5`, `true`).
fn argument(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Number(n) => Some(n.to_string().into_bytes()),
        Value::Bool(b) => Some(b.to_string().into_bytes()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(command: &Command) -> Vec<String> {
        command.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect()
    }

    #[test]
    fn json_arguments_become_strings() {
        let c = parse_single(br#"["SET","k","v","EX",60,"X",1.5,true]"#).unwrap();
        assert_eq!(strs(&c), ["SET", "k", "v", "EX", "60", "X", "1.5", "true"]);
        assert!(parse_single(b"[]").is_err());
        assert!(parse_single(b"{}").is_err());
        assert!(parse_single(b"[\"GET\", null]").is_err());
        assert!(parse_single(b"[\"GET\"").is_err());
        assert!(parse_single(b"").is_err());
    }

    #[test]
    fn batches_are_two_dimensional() {
        let b = parse_batch(br#"[["SET","a",1],["GET","a"]]"#).unwrap();
        assert_eq!(b.len(), 2);
        assert!(parse_batch(b"[]").is_err());
        assert!(parse_batch(br#"["GET","a"]"#).is_err());
    }

    #[test]
    fn path_style_commands() {
        let c = parse_path("/set/my%20key/a%2Fb", b"", Some("_token=x")).unwrap();
        assert_eq!(strs(&c), ["set", "my key", "a/b"]);
        let c = parse_path("/set/foo", b"{\"a\":1}", Some("EX=100&NX")).unwrap();
        assert_eq!(strs(&c), ["set", "foo", "{\"a\":1}", "EX", "100", "NX"]);
        assert!(parse_path("/", b"", None).is_err());
    }

    #[test]
    fn stateful_commands_are_refused() {
        let multi = parse_single(br#"["multi"]"#).unwrap();
        assert!(refuse_unsupported(&multi).is_err());
        let xread = parse_single(br#"["XREAD","block","0","STREAMS","s","$"]"#).unwrap();
        assert!(refuse_unsupported(&xread).is_err());
        let get = parse_single(br#"["GET","k"]"#).unwrap();
        assert!(refuse_unsupported(&get).is_ok());
    }
}
