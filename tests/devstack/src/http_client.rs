//! A small blocking HTTP/1.1 client for tests and the control helpers, over hyper's HTTP/1
//! client connection on a current-thread tokio runtime per request: one request per connection
//! (`connection: close`), and an explicit error when a body ends early, so truncated streams are
//! observable.
//!
//! Test tooling only: `http://` to loopback addresses only (anything else is refused before
//! connecting), no TLS, no redirects, no proxies (nothing reads proxy settings from the
//! environment). Blocking: must not be called from async code.
//!
//! hyper-util's pooled client is not used: a pool is what this client must not have, and it
//! could not keep the one behaviour hyper needs help with here: a server that answers (a 413, a
//! 400) and closes before it has read a large body makes the rest of the upload fail, and the
//! answer, already received, must still be read (see `WriteErrorsEndTheUpload`).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Default time limit for connecting and receiving the response head, and for each piece of
/// the body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("unsupported or malformed URL {0:?} (only http://host:port/path on loopback is supported)")]
    Url(String),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
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

    /// Limit for connecting and receiving the response head, and for each piece of the body
    /// (not for the whole response).
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
        let (addr, request) = self.build()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        runtime.block_on(exchange(addr, request, self.timeout, &mut on_data))
    }

    /// The loopback address to connect to, and the request in origin form with the URL's `host`.
    fn build(&self) -> Result<(SocketAddr, Request<Full<Bytes>>), HttpClientError> {
        let bad_url = || HttpClientError::Url(self.url.clone());
        let uri: Uri = self.url.parse().map_err(|_| bad_url())?;
        let authority = uri.authority().filter(|_| uri.scheme_str() == Some("http")).ok_or_else(bad_url)?;
        let port = authority.port_u16().unwrap_or(80);
        let addr: SocketAddr = (authority.host().trim_matches(['[', ']']), port)
            .to_socket_addrs()?
            .next()
            .filter(|addr| addr.ip().is_loopback())
            .ok_or_else(bad_url)?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };

        let method = Method::from_bytes(self.method.as_bytes()).map_err(|_| invalid(&self.method))?;
        let mut builder = Request::builder().method(method).uri(path);
        let headers = builder.headers_mut().expect("a fresh builder has no error");
        headers.insert(HOST, HeaderValue::from_str(authority.as_str()).map_err(|_| bad_url())?);
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid(name))?;
            headers.append(name, HeaderValue::from_str(value).map_err(|_| invalid(value))?);
        }
        let body = Full::new(Bytes::from(self.body.clone().unwrap_or_default()));
        Ok((addr, builder.body(body).map_err(|e| invalid(&e.to_string()))?))
    }
}

fn invalid(what: &str) -> HttpClientError {
    HttpClientError::Io(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid request part {what:?}")))
}

fn timed_out(what: &str, limit: Duration) -> HttpClientError {
    HttpClientError::Io(io::Error::new(io::ErrorKind::TimedOut, format!("{what} took over {limit:?}")))
}

async fn exchange(
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
    timeout: Duration,
    on_data: &mut dyn FnMut(&[u8]),
) -> Result<HttpResponse, HttpClientError> {
    let head = async {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let io = TokioIo::new(WriteErrorsEndTheUpload { stream, failed: false });
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(request_error)?;
        // Runs the connection while this request is under way; `connection: close` ends it.
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(request_error)
    };
    let response = tokio::time::timeout(timeout, head).await.map_err(|_| timed_out("the response head", timeout))??;

    let (head, mut body) = response.into_parts();
    let headers = head
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).trim().to_owned()))
        .collect();
    let mut response = HttpResponse { status: head.status.as_u16(), headers, body: Vec::new() };
    loop {
        let frame = tokio::time::timeout(timeout, body.frame()).await.map_err(|_| timed_out("a body read", timeout))?;
        match frame {
            None => return Ok(response),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    response.body.extend_from_slice(data);
                    on_data(data);
                }
            }
            // Cut, reset, or a broken chunked encoding: what arrived is all there is.
            Some(Err(_)) => return Err(HttpClientError::Incomplete { partial: response }),
        }
    }
}

/// The socket for hyper, except that once a write fails (the server closed or reset the
/// connection, typically after answering early without reading the whole body) the rest of the
/// request is dropped instead of failing it, so hyper goes on to read the answer the server sent.
/// A server that sent nothing still fails the request: the read then finds the reset or the end.
struct WriteErrorsEndTheUpload {
    stream: TcpStream,
    failed: bool,
}

impl AsyncRead for WriteErrorsEndTheUpload {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteErrorsEndTheUpload {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.failed {
            return Poll::Ready(Ok(data.len()));
        }
        match Pin::new(&mut self.stream).poll_write(cx, data) {
            Poll::Ready(Err(e)) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                self.failed = true;
                Poll::Ready(Ok(data.len()))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// No response head: an I/O error (reset, ...) keeps its kind; anything else (the server
/// closed or answered garbage before a status line) is a malformed response.
fn request_error(e: hyper::Error) -> HttpClientError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return HttpClientError::Io(io::Error::new(io.kind(), format!("{e}: {io}")));
        }
        source = err.source();
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(err) = source {
        message.push_str(&format!(": {err}"));
        source = err.source();
    }
    HttpClientError::Malformed(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<(String, String), HttpClientError> {
        let (addr, r) = HttpRequest::get(url).build()?;
        Ok((r.headers()[HOST].to_str().unwrap().to_owned(), format!("{addr}{}", r.uri())))
    }

    #[test]
    fn addresses_the_resolved_loopback_ip_with_the_urls_host() {
        let (host, uri) = target("http://127.0.0.1:80/a/b?c=d").unwrap();
        assert_eq!((host.as_str(), uri.as_str()), ("127.0.0.1:80", "127.0.0.1:80/a/b?c=d"));
        let (_, uri) = target("http://127.0.0.1:8080").unwrap();
        assert_eq!(uri, "127.0.0.1:8080/");
        let (_, uri) = target("http://127.0.0.1:80?x=1").unwrap();
        assert_eq!(uri, "127.0.0.1:80/?x=1");
        let (host, uri) = target("http://localhost:9/").unwrap();
        assert_eq!(host, "localhost:9");
        assert!(uri == "127.0.0.1:9/" || uri == "[::1]:9/", "{uri}");
        assert!(target("https://127.0.0.1/").is_err());
        assert!(target("http://192.0.2.1:80/").is_err(), "not loopback");
        assert!(target("nonsense").is_err());
    }

    /// Serves `raw` once on a loopback port, then closes; returns the URL.
    fn raw_server(raw: &'static [u8]) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(raw);
        });
        url
    }

    #[test]
    fn reads_chunked_and_detects_truncation() {
        let full = raw_server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        let r = HttpRequest::get(&full).send().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
        let cut = raw_server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n3\r\nabc\r\n");
        match HttpRequest::get(&cut).send() {
            Err(HttpClientError::Incomplete { partial }) => {
                assert_eq!((partial.status, partial.body.as_slice()), (200, &b"abc"[..]));
                assert_eq!(partial.header("x-a"), Some("b"));
            }
            other => panic!("expected Incomplete, got {other:?}"),
        }
        let short = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab");
        match HttpRequest::get(&short).send() {
            Err(HttpClientError::Incomplete { partial }) => assert_eq!(partial.body, b"ab"),
            other => panic!("expected Incomplete, got {other:?}"),
        }
        let to_close = raw_server(b"HTTP/1.1 200 OK\r\n\r\nuntil close");
        assert_eq!(HttpRequest::get(&to_close).send().unwrap().body, b"until close");
        let nothing = raw_server(b"");
        assert!(matches!(HttpRequest::get(&nothing).send(), Err(HttpClientError::Malformed(_))));
    }

    #[test]
    fn an_answer_sent_before_a_large_body_was_read_is_still_read() {
        use std::io::{BufRead, Write};
        for linger in [Duration::ZERO, Duration::from_millis(200)] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}/", listener.local_addr().unwrap());
            let server = std::thread::spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = std::io::BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let mut stream = reader.into_inner();
                stream
                    .write_all(b"HTTP/1.1 413 Too Large\r\ncontent-length: 5\r\nconnection: close\r\n\r\nlarge")
                    .unwrap();
                std::thread::sleep(linger);
            });
            let result = HttpRequest::post(&url).body(vec![b'x'; 16 << 20]).timeout(Duration::from_secs(5)).send();
            server.join().unwrap();
            match result {
                Ok(r) => assert_eq!((r.status, r.body.as_slice()), (413, &b"large"[..]), "linger {linger:?}"),
                Err(e) => panic!("linger {linger:?}: {e:?}"),
            }
        }
    }
}
