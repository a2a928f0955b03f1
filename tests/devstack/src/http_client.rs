//! A tiny blocking HTTP/1.1 client (std `TcpStream`, `http://` only) for tests and the
//! control helpers: one request per connection, Content-Length or chunked bodies, and an
//! explicit error when a body ends early, so truncated streams are observable.
//!
//! Test tooling only: no TLS, no redirects, no connection reuse. It must not be used to
//! talk to anything but loopback test servers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Default time limit for connecting and for each read.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("unsupported or malformed URL {0:?} (only http://host:port/path is supported)")]
    Url(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The connection ended before the body was complete. `partial` holds the response
    /// received so far (status, headers and the body bytes that did arrive).
    #[error("response body ended early after {} bytes", partial.body.len())]
    Incomplete { partial: HttpResponse },
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names are lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, HttpClientError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpClientError::Malformed(format!("body is not JSON ({e}): {}", self.text())))
    }
}

/// A request being built.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
}

impl HttpRequest {
    pub fn new(method: &str, url: &str) -> HttpRequest {
        HttpRequest {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn get(url: &str) -> HttpRequest {
        HttpRequest::new("GET", url)
    }

    pub fn post(url: &str) -> HttpRequest {
        HttpRequest::new("POST", url)
    }

    pub fn header(mut self, name: &str, value: &str) -> HttpRequest {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpRequest {
        self.body = Some(body.into());
        self
    }

    /// JSON body with `content-type: application/json`.
    pub fn json(self, value: &serde_json::Value) -> HttpRequest {
        self.header("content-type", "application/json").body(value.to_string())
    }

    /// Limit for connecting and for each single read (not for the whole response).
    pub fn timeout(mut self, timeout: Duration) -> HttpRequest {
        self.timeout = timeout;
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(&self) -> Result<HttpResponse, HttpClientError> {
        self.send_streaming(|_| {})
    }

    /// Like [`HttpRequest::send`], calling `on_data` with each piece of body as it arrives
    /// (chunk boundaries are the server's for chunked bodies).
    pub fn send_streaming(&self, mut on_data: impl FnMut(&[u8])) -> Result<HttpResponse, HttpClientError> {
        let (host_port, path) = split_url(&self.url)?;
        let addr = host_port.to_socket_addrs()?.next().ok_or_else(|| HttpClientError::Url(self.url.clone()))?;
        let mut stream = TcpStream::connect_timeout(&addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let _ = stream.set_nodelay(true);

        let mut head = format!("{} {path} HTTP/1.1\r\nhost: {host_port}\r\n", self.method);
        head.push_str("connection: close\r\n");
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = &self.body {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        if let Some(body) = &self.body {
            request.extend_from_slice(body);
        }
        // A server may answer and close before reading everything (e.g. a rejected large
        // body): still try to read its response.
        let write_result = stream.write_all(&request);

        let mut reader = BufReader::new(stream);
        let response = read_response(&mut reader, &self.method, &mut on_data);
        match (response, write_result) {
            (Err(HttpClientError::Io(_)), Err(write_err)) => Err(write_err.into()),
            (response, _) => response,
        }
    }
}

fn split_url(url: &str) -> Result<(String, String), HttpClientError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| HttpClientError::Url(url.to_string()))?;
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => match rest.find('?') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        },
    };
    if host_port.is_empty() {
        return Err(HttpClientError::Url(url.to_string()));
    }
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    Ok((host_port.to_string(), path))
}

fn read_response<R: BufRead>(
    reader: &mut R,
    method: &str,
    on_data: &mut dyn FnMut(&[u8]),
) -> Result<HttpResponse, HttpClientError> {
    let status_line =
        read_line(reader)?.ok_or_else(|| HttpClientError::Malformed("connection closed before status".into()))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| HttpClientError::Malformed(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line =
            read_line(reader)?.ok_or_else(|| HttpClientError::Malformed("connection closed in headers".into()))?;
        if line.is_empty() {
            break;
        }
        let (name, value) =
            line.split_once(':').ok_or_else(|| HttpClientError::Malformed(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut response = HttpResponse { status, headers, body: Vec::new() };
    if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 || status < 200 {
        return Ok(response);
    }
    let chunked = response.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = response.header("content-length").and_then(|v| v.parse::<usize>().ok());
    let complete = if chunked {
        read_chunked(reader, &mut response.body, on_data)
    } else if let Some(length) = length {
        read_exactly(reader, length, &mut response.body, on_data)
    } else {
        read_to_close(reader, &mut response.body, on_data).map(|()| true)
    };
    match complete {
        Ok(true) => Ok(response),
        Ok(false) => Err(HttpClientError::Incomplete { partial: response }),
        Err(e) if is_cut(&e) => Err(HttpClientError::Incomplete { partial: response }),
        Err(e) => Err(e.into()),
    }
}

/// Connection reset or closed mid-body: the server aborted the response.
fn is_cut(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe)
}

fn read_line<R: BufRead>(reader: &mut R) -> Result<Option<String>, HttpClientError> {
    let mut line = Vec::new();
    let n = reader.take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        return Err(HttpClientError::Malformed("line too long or cut".into()));
    }
    let text = String::from_utf8_lossy(&line);
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// Returns false if the connection closed before `length` bytes arrived.
fn read_exactly<R: Read>(
    reader: &mut R,
    mut length: usize,
    body: &mut Vec<u8>,
    on_data: &mut dyn FnMut(&[u8]),
) -> std::io::Result<bool> {
    let mut buf = [0u8; 16 * 1024];
    while length > 0 {
        let want = length.min(buf.len());
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(false);
        }
        body.extend_from_slice(&buf[..n]);
        on_data(&buf[..n]);
        length -= n;
    }
    Ok(true)
}

fn read_to_close<R: Read>(reader: &mut R, body: &mut Vec<u8>, on_data: &mut dyn FnMut(&[u8])) -> std::io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&buf[..n]);
        on_data(&buf[..n]);
    }
}

/// Returns false if the connection closed before the terminating zero-size chunk.
fn read_chunked<R: BufRead>(
    reader: &mut R,
    body: &mut Vec<u8>,
    on_data: &mut dyn FnMut(&[u8]),
) -> std::io::Result<bool> {
    loop {
        let mut size_line = String::new();
        if reader.read_line(&mut size_line)? == 0 || !size_line.ends_with('\n') {
            return Ok(false);
        }
        let size_text = size_line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad chunk size line {size_line:?}"))
        })?;
        if size == 0 {
            // Trailers until an empty line; a missing final CRLF still counts as complete.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(true);
                }
            }
        }
        if !read_exactly(reader, size, body, on_data)? {
            return Ok(false);
        }
        let mut crlf = [0u8; 2];
        if let Err(e) = reader.read_exact(&mut crlf) {
            return if e.kind() == std::io::ErrorKind::UnexpectedEof { Ok(false) } else { Err(e) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let (h, p) = split_url("http://127.0.0.1:80/a/b?c=d").unwrap();
        assert_eq!((h.as_str(), p.as_str()), ("127.0.0.1:80", "/a/b?c=d"));
        let (h, p) = split_url("http://127.0.0.1:80").unwrap();
        assert_eq!((h.as_str(), p.as_str()), ("127.0.0.1:80", "/"));
        let (_, p) = split_url("http://127.0.0.1:80?x=1").unwrap();
        assert_eq!(p, "/?x=1");
        assert!(split_url("https://x").is_err());
    }

    #[test]
    fn reads_chunked_and_detects_truncation() {
        let full = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let r = read_response(&mut &full[..], "GET", &mut |_| {}).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
        match read_response(&mut &cut[..], "GET", &mut |_| {}) {
            Err(HttpClientError::Incomplete { partial }) => assert_eq!(partial.body, b"abc"),
            other => panic!("expected Incomplete, got {other:?}"),
        }
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab";
        assert!(matches!(read_response(&mut &short[..], "GET", &mut |_| {}), Err(HttpClientError::Incomplete { .. })));
    }
}
