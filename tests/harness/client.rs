//! A raw HTTP/1.1 client over `std::net::TcpStream`.
//!
//! Why not an HTTP crate: levee's tests must send what a well-behaved client never would —
//! header values that are not UTF-8, bodies announced but never finished, clients that hang
//! up while levee holds their request — and must see every response header byte for byte.
//! Every request uses a fresh connection with `Connection: close` unless the test sets its own
//! `connection` header, so one test's requests never share Envoy state through a socket.

use super::wire::{self, header_bytes, Headers};
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// Longest a request may take before the client gives up (so a hung Envoy fails a test
/// instead of hanging the suite).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A request to send; build it with [`Request::get`] / [`Request::post`] and chain setters.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Request target, e.g. `/api/x?y=1`.
    pub path: String,
    /// Headers in the order they are sent; values may be any bytes.
    pub headers: Headers,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Send the body with `Transfer-Encoding: chunked` instead of `Content-Length`.
    pub chunked: bool,
    /// Give up reading the answer after this long.
    pub timeout: Duration,
}

impl Request {
    /// A request with any method.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    /// `POST path` with `body`.
    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Request {
        Request::new("POST", path).body(body)
    }

    /// Adds a header; the value is sent as-is, so it may be non-UTF-8.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sends the body chunked.
    pub fn chunked(mut self) -> Request {
        self.chunked = true;
        self
    }

    /// Changes how long to wait for the answer.
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = timeout;
        self
    }

    /// The exact bytes [`send`] writes. Defaults are added for `host`, `connection` and the
    /// body length unless the request sets them itself.
    pub fn to_bytes(&self) -> Vec<u8> {
        let has = |name: &str| header_bytes(&self.headers, name).is_some();
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.path).into_bytes();
        let mut push = |name: &str, value: &[u8]| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        if !has("host") {
            push("host", b"localhost");
        }
        if !has("connection") {
            push("connection", b"close");
        }
        let body_allowed = !matches!(self.method.as_str(), "GET" | "HEAD") || !self.body.is_empty();
        if self.chunked && !has("transfer-encoding") {
            push("transfer-encoding", b"chunked");
        } else if !self.chunked && body_allowed && !has("content-length") {
            push("content-length", self.body.len().to_string().as_bytes());
        }
        for (name, value) in &self.headers {
            push(name, value);
        }
        out.extend_from_slice(b"\r\n");
        if self.chunked {
            out.extend_from_slice(&wire::chunk(&self.body));
        } else {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers in wire order, names lowercased, values raw.
    pub headers: Headers,
    /// The de-chunked body.
    pub body: Vec<u8>,
    /// From connecting to the last body byte.
    pub elapsed: Duration,
}

impl Response {
    /// First value of header `name` (case-insensitive) as lossy UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        header_bytes(&self.headers, name).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The body as lossy UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// Sends `req` to `127.0.0.1:port` and reads the answer; panics on I/O errors and timeouts.
pub fn send(port: u16, req: &Request) -> Response {
    try_send(port, req)
        .unwrap_or_else(|e| panic!("{} {} on port {port}: {e}", req.method, req.path))
}

/// Like [`send`], returning I/O errors (connection refused, reset, timeout) instead.
pub fn try_send(port: u16, req: &Request) -> io::Result<Response> {
    exchange(port, &req.to_bytes(), &req.method, req.timeout)
}

/// Writes raw bytes (anything, even malformed HTTP) and reads one answer.
pub fn send_raw(port: u16, bytes: &[u8]) -> io::Result<Response> {
    exchange(port, bytes, "GET", DEFAULT_TIMEOUT)
}

/// Sends `req`, waits at most `after` for the answer, then closes the socket. `Some` if the
/// whole answer came in time, `None` if the client hung up first.
pub fn send_and_disconnect_after(port: u16, req: &Request, after: Duration) -> Option<Response> {
    send_raw_and_disconnect_after(port, &req.to_bytes(), &req.method, after)
}

/// Like [`send_and_disconnect_after`] with raw bytes, e.g. a truncated body
/// (`&req.to_bytes()[..n]`) to hang up mid-request.
pub fn send_raw_and_disconnect_after(
    port: u16,
    bytes: &[u8],
    method: &str,
    after: Duration,
) -> Option<Response> {
    exchange(port, bytes, method, after).ok()
}

/// Runs `f(0..n)` on `n` threads released together by a barrier, for requests that must
/// really race; results come back in index order.
pub fn burst<T, F>(n: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize) -> T + Sync,
{
    let barrier = Barrier::new(n);
    thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

fn exchange(port: u16, bytes: &[u8], method: &str, timeout: Duration) -> io::Result<Response> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    // A peer that answers early and closes may make this fail; still try to read its answer.
    let write_result = stream.write_all(bytes);
    let read_result = read_response(&stream, method, started);
    let _ = stream.shutdown(Shutdown::Both);
    match (read_result, write_result) {
        (Ok(r), _) => Ok(r),
        (Err(e), Ok(())) => Err(e),
        (Err(_), Err(e)) => Err(e),
    }
}

fn read_response(stream: &TcpStream, method: &str, started: Instant) -> io::Result<Response> {
    let mut reader = BufReader::new(stream);
    loop {
        let head = wire::read_head(&mut reader)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before any answer",
            )
        })?;
        let status: u16 = head
            .start_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, head.start_line.clone()))?;
        if (100..200).contains(&status) {
            continue; // 100 Continue and friends precede the real answer
        }
        let framing = wire::response_framing(&head, method, status);
        let body = wire::read_body(&mut reader, framing)?;
        return Ok(Response {
            status,
            headers: head.headers,
            body,
            elapsed: started.elapsed(),
        });
    }
}

/// A keep-alive connection for floods of requests (a fresh connection per request would run
/// the machine out of ephemeral ports long before a million requests).
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `127.0.0.1:port`; panics if it cannot.
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(DEFAULT_TIMEOUT))
            .expect("timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// Sends `req` with `connection: keep-alive` and reads its answer.
    pub fn send(&mut self, req: &Request) -> Response {
        let req = req.clone().header("connection", "keep-alive");
        let started = Instant::now();
        self.reader
            .get_mut()
            .write_all(&req.to_bytes())
            .expect("write");
        let head = wire::read_head(&mut self.reader)
            .expect("read")
            .expect("an answer");
        let status: u16 = head
            .start_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let framing = wire::response_framing(&head, &req.method, status);
        let body = wire::read_body(&mut self.reader, framing).expect("body");
        Response {
            status,
            headers: head.headers,
            body,
            elapsed: started.elapsed(),
        }
    }
}
