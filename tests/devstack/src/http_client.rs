//! A small blocking HTTP/1.1 client for tests and the control helpers, over hyper-util's legacy
//! client on a current-thread tokio runtime per request: one request per connection
//! (`connection: close`, nothing pooled), and an explicit error when a body ends early, so
//! truncated streams are observable.
//!
//! Test tooling only: `http://` to loopback addresses only (anything else is refused before
//! connecting), no TLS, no redirects, no proxies (hyper-util's client reads no proxy settings
//! from the environment). Blocking: must not be called from async code.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Default time limit for connecting and receiving the response head, and for each piece of
/// the body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("unsupported or malformed URL {0:?} (only http://host:port/path on loopback is supported)")]
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
        let request = self.build()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        runtime.block_on(exchange(request, self.timeout, &mut on_data))
    }

    /// The request for hyper, addressed to the resolved loopback IP with the URL's own `host`.
    fn build(&self) -> Result<Request<Full<Bytes>>, HttpClientError> {
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
        let target: Uri = format!("http://{addr}{path}").parse().map_err(|_| bad_url())?;

        let method = Method::from_bytes(self.method.as_bytes()).map_err(|_| invalid(&self.method))?;
        let mut builder = Request::builder().method(method).uri(target);
        let headers = builder.headers_mut().expect("a fresh builder has no error");
        headers.insert(HOST, HeaderValue::from_str(authority.as_str()).map_err(|_| bad_url())?);
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid(name))?;
            headers.append(name, HeaderValue::from_str(value).map_err(|_| invalid(value))?);
        }
        let body = Full::new(Bytes::from(self.body.clone().unwrap_or_default()));
        builder.body(body).map_err(|e| invalid(&e.to_string()))
    }
}

fn invalid(what: &str) -> HttpClientError {
    HttpClientError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("invalid request part {what:?}")))
}

fn timed_out(what: &str, limit: Duration) -> HttpClientError {
    HttpClientError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} took over {limit:?}")))
}

async fn exchange(
    request: Request<Full<Bytes>>,
    timeout: Duration,
    on_data: &mut dyn FnMut(&[u8]),
) -> Result<HttpResponse, HttpClientError> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    connector.set_nodelay(true);
    // Nothing is kept for a next request, and nothing is ever sent twice.
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).retry_canceled_requests(false).build(connector);
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .map_err(|_| timed_out("the response head", timeout))?
        .map_err(request_error)?;

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

/// No response head: an I/O error (refused, reset, ...) keeps its kind; anything else (the
/// server closed or answered garbage before a status line) is a malformed response.
fn request_error(e: hyper_util::client::legacy::Error) -> HttpClientError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return HttpClientError::Io(std::io::Error::new(io.kind(), format!("{e}: {io}")));
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
        let r = HttpRequest::get(url).build()?;
        Ok((r.headers()[HOST].to_str().unwrap().to_owned(), r.uri().to_string()))
    }

    #[test]
    fn addresses_the_resolved_loopback_ip_with_the_urls_host() {
        let (host, uri) = target("http://127.0.0.1:80/a/b?c=d").unwrap();
        assert_eq!((host.as_str(), uri.as_str()), ("127.0.0.1:80", "http://127.0.0.1:80/a/b?c=d"));
        let (_, uri) = target("http://127.0.0.1:8080").unwrap();
        assert_eq!(uri, "http://127.0.0.1:8080/");
        let (_, uri) = target("http://127.0.0.1:80?x=1").unwrap();
        assert_eq!(uri, "http://127.0.0.1:80/?x=1");
        let (host, uri) = target("http://localhost:9/").unwrap();
        assert_eq!(host, "localhost:9");
        assert!(uri == "http://127.0.0.1:9/" || uri == "http://[::1]:9/", "{uri}");
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
}
