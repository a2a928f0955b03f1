//! A minimal RESP2 codec: commands go out as arrays of bulk strings, replies come back as
//! [`Reply`] values (`+`, `-`, `:`, `$`, `*`, including nil and nested arrays).
//!
//! This module only encodes and decodes bytes. It must not open connections, pool them, or
//! decide what a reply means for an HTTP client (that is `redis_pool` and `upstash`).

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Largest bulk string we accept from Redis (Redis's own proto-max-bulk-len is 512 MB).
const MAX_BULK_LEN: i64 = 512 * 1024 * 1024;
/// Deepest nesting of arrays we accept, so a hostile peer cannot blow the stack.
const MAX_DEPTH: usize = 64;
/// Longest `+`, `-` or `:` line we accept.
const MAX_LINE_LEN: usize = 64 * 1024 * 1024;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo` (binary safe)
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`
    Nil,
    /// `*N` followed by N replies
    Array(Vec<Reply>),
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("connection closed by redis")]
    Closed,
    #[error("i/o error talking to redis: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error from redis: {0}")]
    Protocol(String),
}

/// Encodes one command as a RESP2 array of bulk strings, appending to `out`.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads exactly one reply (recursively for arrays).
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, RespError> {
    read_at_depth(reader, 0).await
}

async fn read_at_depth<R: AsyncBufRead + Unpin>(reader: &mut R, depth: usize) -> Result<Reply, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError::Protocol("arrays nested too deeply".into()));
    }
    let line = read_line(reader).await?;
    let (kind, rest) = line.split_first().ok_or_else(|| RespError::Protocol("empty reply line".into()))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Simple(text())),
        b'-' => Ok(Reply::Error(text())),
        b':' => parse_int(rest).map(Reply::Integer),
        b'$' => {
            let len = parse_int(rest)?;
            if len < 0 {
                return Ok(Reply::Nil);
            }
            if len > MAX_BULK_LEN {
                return Err(RespError::Protocol(format!("bulk string too long: {len}")));
            }
            let len = usize::try_from(len).expect("bounded by MAX_BULK_LEN");
            let mut data = vec![0u8; len + 2];
            reader.read_exact(&mut data).await.map_err(eof_is_closed)?;
            if &data[len..] != b"\r\n" {
                return Err(RespError::Protocol("bulk string not followed by CRLF".into()));
            }
            data.truncate(len);
            Ok(Reply::Bulk(data))
        }
        b'*' => {
            let len = parse_int(rest)?;
            if len < 0 {
                return Ok(Reply::Nil);
            }
            let len = usize::try_from(len).map_err(|_| RespError::Protocol(format!("bad array length {len}")))?;
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                items.push(Box::pin(read_at_depth(reader, depth + 1)).await?);
            }
            Ok(Reply::Array(items))
        }
        other => Err(RespError::Protocol(format!("unknown reply type byte 0x{other:02x}"))),
    }
}

/// Reads one CRLF-terminated line, without the CRLF.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, RespError> {
    let mut line = Vec::new();
    let mut limited = reader.take(MAX_LINE_LEN as u64);
    let n = limited.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(RespError::Closed);
    }
    if !line.ends_with(b"\r\n") {
        return Err(if line.len() >= MAX_LINE_LEN {
            RespError::Protocol("reply line too long".into())
        } else {
            RespError::Closed
        });
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_int(bytes: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| RespError::Protocol(format!("bad integer {:?}", String::from_utf8_lossy(bytes))))
}

fn eof_is_closed(err: std::io::Error) -> RespError {
    if err.kind() == std::io::ErrorKind::UnexpectedEof {
        RespError::Closed
    } else {
        RespError::Io(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Reply, RespError> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut reader = bytes;
        rt.block_on(read_reply(&mut reader))
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        let mut out = Vec::new();
        encode_command(&["SET", "k", ""], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn parses_every_reply_type() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Simple("OK".into()));
        assert_eq!(parse(b"-ERR bad\r\n").unwrap(), Reply::Error("ERR bad".into()));
        assert_eq!(parse(b":-7\r\n").unwrap(), Reply::Integer(-7));
        assert_eq!(parse(b"$4\r\na\r\nb\r\n").unwrap(), Reply::Bulk(b"a\r\nb".to_vec()));
        assert_eq!(parse(b"$0\r\n\r\n").unwrap(), Reply::Bulk(Vec::new()));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(parse(b"*0\r\n").unwrap(), Reply::Array(vec![]));
    }

    #[test]
    fn parses_nested_arrays_with_nil_and_errors() {
        let reply = parse(b"*3\r\n:1\r\n*2\r\n$1\r\nx\r\n$-1\r\n-ERR in array\r\n").unwrap();
        assert_eq!(
            reply,
            Reply::Array(vec![
                Reply::Integer(1),
                Reply::Array(vec![Reply::Bulk(b"x".to_vec()), Reply::Nil]),
                Reply::Error("ERR in array".into()),
            ])
        );
    }

    #[test]
    fn truncated_input_is_closed_not_garbage() {
        assert!(matches!(parse(b""), Err(RespError::Closed)));
        assert!(matches!(parse(b"$5\r\nab"), Err(RespError::Closed)));
        assert!(matches!(parse(b"*2\r\n:1\r\n"), Err(RespError::Closed)));
        assert!(matches!(parse(b"+OK"), Err(RespError::Closed)));
        assert!(matches!(parse(b"?\r\n"), Err(RespError::Protocol(_))));
        assert!(matches!(parse(b":x\r\n"), Err(RespError::Protocol(_))));
    }
}
