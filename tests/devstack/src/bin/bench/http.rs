//! The benchmark's HTTP client: one HTTP/1.1 keep-alive connection to a loopback port, written
//! by hand so that a timed request is exactly one write and one read on an open socket (devstack's
//! `HttpRequest` opens a connection per request, which would put a TCP handshake in every sample).
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

    /// Sends `probe` and reads the whole answer; returns the wall time in milliseconds. A reused
    /// connection the server closed in the meantime is reopened once, and only the attempt that
    /// succeeded is timed.
    pub fn timed(&mut self, probe: &Probe) -> anyhow::Result<(f64, Response)> {
        let reused = self.conn.is_some();
        let start = Instant::now();
        match self.exchange(probe) {
            Ok(response) => Ok((start.elapsed().as_secs_f64() * 1000.0, response)),
            Err(e) if reused => {
                self.conn = None;
                self.reconnects += 1;
                let start = Instant::now();
                let response = self.exchange(probe).with_context(|| format!("after a reconnect (first error: {e})"))?;
                Ok((start.elapsed().as_secs_f64() * 1000.0, response))
            }
            Err(e) => Err(e),
        }
    }

    fn exchange(&mut self, probe: &Probe) -> anyhow::Result<Response> {
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
        conn.get_mut().write_all(&bytes)?;
        let response = read_response(conn)?;
        let close = response.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if close {
            self.conn = None;
        }
        Ok(response)
    }
}

fn read_response(conn: &mut BufReader<TcpStream>) -> anyhow::Result<Response> {
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
    let chunked = response.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let size_line = read_line(conn)?;
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
        conn.read_exact(&mut response.body)?;
    } else if status != 204 && status != 304 {
        bail!("a response without content-length or chunked encoding cannot be kept alive");
    }
    Ok(response)
}

fn read_line(conn: &mut BufReader<TcpStream>) -> anyhow::Result<String> {
    let mut line = Vec::new();
    let n = conn.take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 || !line.ends_with(b"\n") {
        bail!("connection closed");
    }
    Ok(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned())
}
