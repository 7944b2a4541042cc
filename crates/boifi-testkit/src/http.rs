//! The one tiny blocking HTTP/1.1 client of the workspace's tests and benches, for servers on
//! the loopback (boifi-server, Envoy's listeners and admin, in-test upstreams).
//!
//! [`Client`] keeps its connection alive between requests (an Envoy listener is driven by
//! thousands of requests in a test) and reconnects once when the peer closed a reused one;
//! [`request`], [`get`] and [`send_json`] are one-off exchanges on a fresh connection. Bodies
//! are framed by `Content-Length`, `Transfer-Encoding: chunked` or the end of the stream. Not a
//! general client: no TLS, no redirects.
//!
//! Why its own, beside hyper (boifi-mesh: HTTP/2 for gRPC), reqwest (boifi-server's etcd
//! client) and ureq (boifi-cli, the native module):
//! - Cost in the test profile, where `cargo test` runs it unoptimized: 20 000 keep-alive `GET`s
//!   to a loopback server took 23-67 µs each with this client and 243-284 µs with ureq 3's
//!   `Agent` (three rounds each, 2026-12-06, 2 cores at load average 12-16; optimized, both
//!   about 9 µs). The e2e tests and the native stress send tens of thousands of requests
//!   through Envoy, so ureq would add seconds to each run and blur the latencies they assert.
//! - [`Client::raw`] sends any bytes: header names and paths that are not UTF-8, which the
//!   `http` crate under hyper, reqwest and ureq refuses to build (the `bytes` e2e test).
//! - [`Response::elapsed`] runs from writing the request to reading the whole body, the span
//!   the delay tests bound.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A failed request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Connecting, writing or reading failed (timeouts included).
    #[error("http `{method} {path}` to {addr}: {source}")]
    Io {
        /// The method.
        method: String,
        /// The path and query.
        path: String,
        /// The server.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The answer is not HTTP/1.x as this client understands it.
    #[error("http `{method} {path}` to {addr}: malformed response: {reason}")]
    Malformed {
        /// The method.
        method: String,
        /// The path and query.
        path: String,
        /// The server.
        addr: SocketAddr,
        /// What is wrong.
        reason: String,
    },
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body, chunked encoding removed.
    pub body: Vec<u8>,
    /// From writing the request to reading the whole body.
    pub elapsed: Duration,
}

impl Response {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header of this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The default bound on connecting and on each read or write of a [`Client`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A keep-alive connection to one address, reconnecting when the peer closed it.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    timeout: Duration,
}

impl Client {
    /// A client of `addr`; it connects on the first request.
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            conn: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Bounds connecting and each read or write by `timeout` (a long-poll needs a timeout
    /// longer than its `wait`).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> Result<Response, HttpError> {
        self.request("GET", path, &[], &[])
    }

    /// Sends one request; retries once on a fresh connection when a reused one was closed.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        let reused = self.conn.is_some();
        match self.exchange(&bytes, method, path) {
            Err(HttpError::Io { .. }) if reused => {
                self.conn = None;
                self.exchange(&bytes, method, path)
            }
            other => other,
        }
    }

    /// Sends `request` exactly as given (a whole request: any bytes, e.g. header names and
    /// values that are not UTF-8) on a fresh connection and reads the response.
    pub fn raw(&mut self, request: &[u8]) -> Result<Response, HttpError> {
        self.conn = None;
        self.exchange(request, "raw", "request")
    }

    fn exchange(&mut self, bytes: &[u8], method: &str, path: &str) -> Result<Response, HttpError> {
        let addr = self.addr;
        let io_err = |source: io::Error| HttpError::Io {
            method: method.to_owned(),
            path: path.to_owned(),
            addr,
            source,
        };
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let stream = TcpStream::connect_timeout(&addr, self.timeout).map_err(io_err)?;
                stream.set_nodelay(true).map_err(io_err)?;
                stream
                    .set_read_timeout(Some(self.timeout))
                    .map_err(io_err)?;
                stream
                    .set_write_timeout(Some(self.timeout))
                    .map_err(io_err)?;
                self.conn.insert(BufReader::new(stream))
            }
        };
        let start = Instant::now();
        let result = conn
            .get_mut()
            .write_all(bytes)
            .map_err(io_err)
            .and_then(|()| {
                read_response(conn, method == "HEAD").map_err(|e| match e {
                    ReadError::Io(source) => io_err(source),
                    ReadError::Malformed(reason) => HttpError::Malformed {
                        method: method.to_owned(),
                        path: path.to_owned(),
                        addr,
                        reason,
                    },
                })
            });
        match result {
            Ok((response, keep_alive)) => {
                if !keep_alive {
                    self.conn = None;
                }
                Ok(Response {
                    elapsed: start.elapsed(),
                    ..response
                })
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

/// Sends one request on a fresh connection and reads the whole response. `timeout` bounds
/// connecting and each read or write (a long-poll needs a timeout longer than its `wait`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    Client::new(addr)
        .with_timeout(timeout)
        .request(method, path, headers, body.unwrap_or_default())
}

/// `GET path` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    request(addr, "GET", path, &[], None, timeout)
}

/// `method path` with a JSON body, on a fresh connection.
pub fn send_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: &str,
    timeout: Duration,
) -> Result<Response, HttpError> {
    request(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        Some(json.as_bytes()),
        timeout,
    )
}

/// Why a response could not be read.
#[derive(Debug)]
enum ReadError {
    Io(io::Error),
    Malformed(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

fn malformed<T>(reason: impl Into<String>) -> Result<T, ReadError> {
    Err(ReadError::Malformed(reason.into()))
}

/// One line, without its line end (`\r\n` or `\n`); the end of the stream is an I/O error
/// (on a reused connection it means the peer closed it: [`Client::request`] reconnects).
fn read_line<R: BufRead>(r: &mut R, what: &str) -> Result<String, ReadError> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line)? == 0 {
        return Err(ReadError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("connection closed before the {what}"),
        )));
    }
    let text =
        String::from_utf8(line).or_else(|_| malformed(format!("the {what} is not utf-8")))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads one response; returns it and whether the connection may be reused.
fn read_response<R: BufRead>(r: &mut R, head: bool) -> Result<(Response, bool), ReadError> {
    let status_line = read_line(r, "status line")?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
        return malformed(format!("status line `{status_line}`"));
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, "end of headers")?;
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut keep_alive = !header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let mut body = Vec::new();
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
        // No body by definition.
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = read_chunked(r)?;
    } else if let Some(len) = header("content-length") {
        let Ok(len) = len.parse::<usize>() else {
            return malformed(format!("content-length `{len}`"));
        };
        body = vec![0; len];
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
        keep_alive = false;
    }
    let response = Response {
        status,
        headers,
        body,
        elapsed: Duration::ZERO,
    };
    Ok((response, keep_alive))
}

/// A chunked body up to and including its trailers.
fn read_chunked<R: BufRead>(r: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r, "chunk size line")?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return malformed(format!("chunk size `{size_text}`"));
        };
        if size == 0 {
            // Trailers until the empty line.
            while !read_line(r, "end of trailers")?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(body.get_mut(start..).unwrap_or_default())?;
        if !read_line(r, "chunk's line end")?.is_empty() {
            return malformed("chunk longer than its size");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<(Response, bool), ReadError> {
        read_response(&mut io::Cursor::new(raw), false)
    }

    #[test]
    fn parses_a_chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let (response, keep_alive) = parse(raw).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "abcde");
        assert_eq!(response.header("x-a"), Some("b"));
        assert!(keep_alive);
    }

    #[test]
    fn parses_a_sized_response_and_leaves_the_next_one() {
        let raw =
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 304 Not Modified\r\n\r\n";
        let mut cursor = io::Cursor::new(&raw[..]);
        let (first, _) = read_response(&mut cursor, false).unwrap();
        assert_eq!(first.text(), "ok");
        let (second, _) = read_response(&mut cursor, false).unwrap();
        assert_eq!(second.status, 304);
        assert!(second.body.is_empty());
    }

    #[test]
    fn a_body_to_the_end_of_the_stream_ends_the_connection() {
        let (response, keep_alive) = parse(b"HTTP/1.0 200 OK\r\n\r\nall of it").unwrap();
        assert_eq!(response.text(), "all of it");
        assert!(!keep_alive);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"hello").is_err());
        assert!(parse(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").is_err());
    }

    #[test]
    fn keeps_the_connection_between_requests() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            // One connection serves both requests.
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            for n in 0..2 {
                while !read_line(&mut reader, "request").unwrap().is_empty() {}
                write!(writer, "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n{n}").unwrap();
            }
        });
        let mut client = Client::new(addr);
        assert_eq!(client.get("/a").unwrap().text(), "0");
        assert_eq!(client.get("/b").unwrap().text(), "1");
        server.join().unwrap();
    }
}
