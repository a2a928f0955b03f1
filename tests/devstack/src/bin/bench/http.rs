//! The benchmark's HTTP client: one HTTP/1.1 keep-alive connection to a loopback port, written
//! by hand so that a timed request is exactly one write and one read on an open socket (devstack's
//! `HttpRequest` opens a connection per request, which would put a TCP handshake in every sample).
//! It stays hand-written although devstack's other HTTP client is hyper's: on the same loopback
//! requests (`client_overhead` below, a 50 us round trip), hyper's bare HTTP/1 connection, the
//! least any hyper-based client does, adds 8 to 9 us at p50 and hyper-util's pooled client 12 to
//! 16 us, a constant the bench would add to every sample it times. Each exchange is timed from
//! the request's write to the first byte of the status line (time to first byte), to the first
//! byte of the body, and to the last byte (`Timed`).
//!
//! Must not: follow redirects, decode anything but `content-length` and chunked bodies, or talk
//! to anything but 127.0.0.1.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use devstack::stack::KEY_A;

use crate::probe::Probe;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The times of one exchange, in milliseconds from the moment the request was written.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    /// Until the answer's last byte was read.
    pub wall_ms: f64,
    /// Until the first byte of the status line arrived (time to first byte).
    pub ttfb_ms: f64,
    /// Until the first byte of the body was readable (for a chunked body, its first chunk's
    /// size line); the end for an empty body.
    pub first_data_ms: f64,
}

/// A response read off a keep-alive connection.
pub struct Response {
    pub status: u16,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 keep-alive connection to 127.0.0.1:port, reopened when the server closes it.
pub struct KeepAlive {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
    pub reconnects: u64,
}

impl KeepAlive {
    pub fn new(port: u16) -> KeepAlive {
        KeepAlive { port, conn: None, reconnects: 0 }
    }

    /// Sends `probe` and reads the whole answer, timing it (see [`Timed`]). A reused connection
    /// the server closed in the meantime is reopened once, and only the attempt that succeeded
    /// is timed.
    pub fn timed(&mut self, probe: &Probe) -> anyhow::Result<(Timed, Response)> {
        let reused = self.conn.is_some();
        match self.exchange(probe) {
            Ok(answer) => Ok(answer),
            Err(e) if reused => {
                self.conn = None;
                self.reconnects += 1;
                self.exchange(probe).with_context(|| format!("after a reconnect (first error: {e})"))
            }
            Err(e) => Err(e),
        }
    }

    fn exchange(&mut self, probe: &Probe) -> anyhow::Result<(Timed, Response)> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))?;
            self.conn = Some(BufReader::with_capacity(64 * 1024, stream));
        }
        let conn = self.conn.as_mut().expect("connected above");
        let mut request = format!("{} {} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n", probe.method, probe.path, self.port);
        if probe.method == "POST" {
            write!(
                request,
                "authorization: Bearer {KEY_A}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                probe.body.len()
            )?;
        }
        for (name, value) in &probe.headers {
            write!(request, "{name}: {value}\r\n")?;
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(&probe.body);
        let start = Instant::now();
        conn.get_mut().write_all(&bytes)?;
        let (marks, response) = read_response(conn)?;
        let close = response.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if close {
            self.conn = None;
        }
        let ms = |at: Instant| at.duration_since(start).as_secs_f64() * 1000.0;
        let timed =
            Timed { wall_ms: ms(marks.end), ttfb_ms: ms(marks.first_byte), first_data_ms: ms(marks.first_data) };
        Ok((timed, response))
    }
}

/// When the parts of one answer arrived.
struct Marks {
    first_byte: Instant,
    first_data: Instant,
    end: Instant,
}

fn read_response(conn: &mut BufReader<TcpStream>) -> anyhow::Result<(Marks, Response)> {
    // Blocks until the first bytes of the answer are here (or were already buffered, which a
    // keep-alive exchange never leaves: every answer is read to its end).
    if conn.fill_buf()?.is_empty() {
        bail!("connection closed");
    }
    let first_byte = Instant::now();
    let status_line = read_line(conn)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(conn)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| anyhow!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = Response { status, headers, body: Vec::new() };
    let mut first_data = None;
    let chunked = response.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let size_line = read_line(conn)?;
            first_data.get_or_insert_with(Instant::now);
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| anyhow!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                while !read_line(conn)?.is_empty() {}
                break;
            }
            let at = response.body.len();
            response.body.resize(at + size, 0);
            conn.read_exact(&mut response.body[at..])?;
            let mut crlf = [0u8; 2];
            conn.read_exact(&mut crlf)?;
        }
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().map_err(|_| anyhow!("bad content-length {length:?}"))?;
        response.body.resize(length, 0);
        if length > 0 {
            conn.fill_buf()?;
            first_data = Some(Instant::now());
        }
        conn.read_exact(&mut response.body)?;
    } else if status != 204 && status != 304 {
        bail!("a response without content-length or chunked encoding cannot be kept alive");
    }
    let end = Instant::now();
    Ok((Marks { first_byte, first_data: first_data.unwrap_or(end), end }, response))
}

fn read_line(conn: &mut BufReader<TcpStream>) -> anyhow::Result<String> {
    let mut line = Vec::new();
    let n = conn.take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 || !line.ends_with(b"\n") {
        bail!("connection closed");
    }
    Ok(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full};
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    use super::*;
    use crate::probe::chat_body;
    use crate::stats::{Samples, Series};

    /// Why this client is written by hand: the same request to the same loopback server, round
    /// by round (the order rotating every round), from this client and from two library clients
    /// at their fastest here, each on one current-thread runtime over one kept-alive connection:
    /// hyper's bare HTTP/1 connection (the least any hyper-based client does, devstack's
    /// `HttpRequest` included) and hyper-util's pooled client (what reqwest builds on). Prints
    /// the three series and each library's difference to this client.
    ///
    /// `cargo test -p devstack --release --bin bench -- --ignored --nocapture client_overhead`
    #[test]
    #[ignore = "a measurement, not a check: run it by name"]
    fn client_overhead() {
        const ROUNDS: usize = 5000;
        const WARMUP: usize = 500;
        let upstream = devstack::spawn_upstream();
        let port = upstream.addr().port();
        let probe = Probe::routed("gpt-4o-mini", "unused", "1", false);
        let body = Bytes::from(chat_body("gpt-4o-mini", "benchmark: routed request, never cached"));
        assert_eq!(body, probe.body, "every client sends the same request");
        let request = |uri: &str| {
            http::Request::post(uri)
                .header("host", format!("127.0.0.1:{port}"))
                .header("authorization", format!("Bearer {KEY_A}"))
                .header("content-type", "application/json")
                .header("cache-control", "no-store")
                .body(Full::new(body.clone()))
                .unwrap()
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

        let mut hand = KeepAlive::new(port);
        let mut bare = runtime.block_on(async {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            sender
        });
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let pooled: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        let url = format!("http://127.0.0.1:{port}{}", probe.path);

        let mut samples = vec![Samples::default(); 3];
        for round in 0..WARMUP + ROUNDS {
            for slot in 0..3 {
                let which = (slot + round) % 3;
                let start = Instant::now();
                let (status, length) = match which {
                    0 => hand.timed(&probe).map(|(_, r)| (r.status, r.body.len())).unwrap(),
                    1 => runtime.block_on(async {
                        bare.ready().await.unwrap();
                        let response = bare.send_request(request(probe.path)).await.unwrap();
                        (response.status().as_u16(), response.into_body().collect().await.unwrap().to_bytes().len())
                    }),
                    _ => runtime.block_on(async {
                        let response = pooled.request(request(&url)).await.unwrap();
                        (response.status().as_u16(), response.into_body().collect().await.unwrap().to_bytes().len())
                    }),
                };
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                assert!(status == 200 && length > 100, "client {which}: {status}, {length} bytes");
                if round >= WARMUP {
                    samples[which].wall_ms.push(ms);
                }
            }
        }
        let names = ["hand-written keep-alive client", "hyper HTTP/1 connection", "hyper-util pooled client"];
        let series: Vec<Series> =
            names.iter().zip(&samples).map(|(name, s)| Series::new("loopback", name, s)).collect();
        println!("{ROUNDS} rounds after {WARMUP} warm-up, POST /v1/chat/completions to the fake upstream (ms)");
        println!("| client | n | p50 | p90 | p99 | mean |\n|---|---:|---:|---:|---:|---:|");
        for s in &series {
            println!("| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |", s.name, s.n, s.p50, s.p90, s.p99, s.mean);
        }
        for s in &series[1..] {
            let h = &series[0];
            println!(
                "{} - hand-written: {:+.3} at p50, {:+.3} at p90, {:+.3} at p99, {:+.3} mean",
                s.name,
                s.p50 - h.p50,
                s.p90 - h.p90,
                s.p99 - h.p99,
                s.mean - h.mean
            );
        }
        assert_eq!(hand.reconnects, 0);
    }
}
