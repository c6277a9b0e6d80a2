//! A scriptable HTTP/1.1 upstream on `127.0.0.1`, std only (a thread per connection).
//!
//! Why: levee's behaviour is defined by what reaches the upstream (once per idempotency key,
//! never while the breaker is open, N attempts with growing gaps) and by how the upstream
//! misbehaves (5xx, stalls, resets). The upstream therefore answers as each request asks — the
//! `x-upstream-*` headers — or as a per-key script says, and keeps a log of every request
//! that reached it, with its arrival time, for the tests to assert on.
//!
//! Answer selection, first match wins:
//! 1. a script registered with [`Upstream::script`] for the request's `x-script-key` that still
//!    has replies (each request consumes one);
//! 2. the request's control headers, if it has any `x-upstream-*` header;
//! 3. the default set with [`Upstream::set_default`], if any;
//! 4. `200` with a JSON echo `{"seq", "method", "path", "body_bytes", "upstream_port"}`.

use super::wire::{self, header_bytes, Headers};
use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// One canned answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Body; `None` means the default JSON echo.
    pub body: Option<Vec<u8>>,
    /// Stall this long before answering.
    pub delay: Duration,
    /// Close the connection without answering (after `delay`).
    pub reset: bool,
    /// Send the status line and headers, then close before the body is complete.
    pub reset_after_headers: bool,
}

impl Reply {
    /// An answer with this status and the default echo body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: None,
            delay: Duration::ZERO,
            reset: false,
            reset_after_headers: false,
        }
    }

    /// `200` with the default echo body.
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// No answer: the upstream closes the connection.
    pub fn reset() -> Reply {
        Reply {
            reset: true,
            ..Reply::status(200)
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Replaces the echo body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = Some(body.into());
        self
    }

    /// Stalls before answering (or before resetting).
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Sends headers announcing the body, then closes the connection before the body.
    pub fn reset_after_headers(mut self) -> Reply {
        self.reset_after_headers = true;
        self
    }

    /// The answer the `x-upstream-*` request headers ask for, if any is present.
    fn from_request_headers(headers: &Headers) -> Option<Reply> {
        let text = |name: &str| {
            header_bytes(headers, name).map(|v| String::from_utf8_lossy(v).trim().to_string())
        };
        if !headers.iter().any(|(n, _)| n.starts_with("x-upstream-")) {
            return None;
        }
        let mut reply = Reply::ok();
        if let Some(s) = text("x-upstream-status").and_then(|s| s.parse().ok()) {
            reply.status = s;
        }
        if let Some(ms) = text("x-upstream-delay-ms").and_then(|s| s.parse().ok()) {
            reply.delay = Duration::from_millis(ms);
        }
        match text("x-upstream-reset").as_deref() {
            Some("1" | "true") => reply.reset = true,
            Some("after-headers") => reply.reset_after_headers = true,
            _ => {}
        }
        if let Some(body) = text("x-upstream-body") {
            reply.body = Some(body.into_bytes());
        }
        for (_, value) in headers.iter().filter(|(n, _)| n == "x-upstream-header") {
            for item in String::from_utf8_lossy(value).split(',') {
                if let Some((n, v)) = item.split_once('=') {
                    reply
                        .headers
                        .push((n.trim().to_string(), v.trim().to_string()));
                }
            }
        }
        Some(reply)
    }
}

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// Arrival order at this upstream, from 1.
    pub seq: u64,
    /// Request method.
    pub method: String,
    /// Request target (path and query).
    pub path: String,
    /// Headers in wire order, names lowercased, values raw.
    pub headers: Headers,
    /// The de-chunked body.
    pub body: Vec<u8>,
    /// When the complete request had been read.
    pub at: Instant,
}

impl ReceivedRequest {
    /// First value of header `name` as (lossy) text.
    pub fn header(&self, name: &str) -> Option<String> {
        header_bytes(&self.headers, name).map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

#[derive(Default)]
struct Shared {
    port: u16,
    seq: AtomicU64,
    stopping: AtomicBool,
    log: Mutex<Vec<ReceivedRequest>>,
    arrived: Condvar,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    default: Mutex<Option<Reply>>,
    connections: Mutex<Vec<TcpStream>>,
}

/// The test upstream. Dropping it stops accepting and closes open connections.
pub struct Upstream {
    shared: Arc<Shared>,
}

impl Upstream {
    /// Binds `127.0.0.1:0` and serves until dropped.
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test upstream");
        let port = listener.local_addr().expect("upstream address").port();
        let shared = Arc::new(Shared {
            port,
            ..Shared::default()
        });
        let accept_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name(format!("upstream-{port}"))
            .spawn(move || accept_loop(&listener, &accept_shared))
            .expect("spawn upstream accept thread");
        Upstream { shared }
    }

    /// The port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// Requests carrying `x-script-key: key` get these replies, one each, in order; once they
    /// are used up such requests are answered as if there were no script.
    pub fn script(&self, key: &str, replies: Vec<Reply>) {
        lock(&self.shared.scripts).insert(key.to_string(), replies.into());
    }

    /// Replies still unused in the script for `key`.
    pub fn script_remaining(&self, key: &str) -> usize {
        lock(&self.shared.scripts).get(key).map_or(0, VecDeque::len)
    }

    /// The answer for requests with neither a script nor `x-upstream-*` headers
    /// (`None` restores the JSON echo).
    pub fn set_default(&self, reply: Option<Reply>) {
        *lock(&self.shared.default) = reply;
    }

    /// How many complete requests reached the upstream (resets and stalls included).
    pub fn count(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// How many requests carried header `name` with exactly `value`.
    pub fn count_for(&self, name: &str, value: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| header_bytes(&r.headers, name) == Some(value.as_bytes()))
            .count()
    }

    /// A copy of the request log, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.shared.log).clone()
    }

    /// Waits until at least `n` requests arrived; returns whether they did within `timeout`.
    pub fn wait_for_count(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut log = lock(&self.shared.log);
        while log.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            log = match self.shared.arrived.wait_timeout(log, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag; an error just means it is gone already.
        let _ = TcpStream::connect(("127.0.0.1", self.shared.port));
        for conn in lock(&self.shared.connections).drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.connections).push(clone);
        }
        let shared = Arc::clone(shared);
        let _ = thread::Builder::new()
            .name(format!("upstream-{}-conn", shared.port))
            .spawn(move || serve_connection(stream, &shared));
    }
}

/// Serves requests on one keep-alive connection until the peer closes it or a reply resets it.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let Ok(Some(head)) = wire::read_head(&mut reader) else {
            return;
        };
        let Ok(body) = wire::read_body(&mut reader, wire::request_framing(&head)) else {
            return;
        };
        let mut parts = head.start_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let close = head.has_token("connection", "close");
        let request = ReceivedRequest {
            seq: shared.seq.fetch_add(1, Ordering::SeqCst) + 1,
            method,
            path,
            headers: head.headers,
            body,
            at: Instant::now(),
        };
        let reply = choose_reply(shared, &request);
        lock(&shared.log).push(request.clone());
        shared.arrived.notify_all();

        thread::sleep(reply.delay);
        if reply.reset {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        let bytes = encode_reply(&reply, &request, shared.port);
        if writer.write_all(&bytes).is_err() || reply.reset_after_headers || close {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn choose_reply(shared: &Shared, request: &ReceivedRequest) -> Reply {
    if let Some(key) = request.header("x-script-key") {
        if let Some(reply) = lock(&shared.scripts)
            .get_mut(&key)
            .and_then(VecDeque::pop_front)
        {
            return reply;
        }
    }
    Reply::from_request_headers(&request.headers)
        .or_else(|| lock(&shared.default).clone())
        .unwrap_or_else(Reply::ok)
}

fn encode_reply(reply: &Reply, request: &ReceivedRequest, port: u16) -> Vec<u8> {
    let body = reply.body.clone().unwrap_or_else(|| {
        serde_json::json!({
            "seq": request.seq,
            "method": request.method,
            "path": request.path,
            "body_bytes": request.body.len(),
            "upstream_port": port,
        })
        .to_string()
        .into_bytes()
    });
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        reply.status,
        wire::reason(reply.status)
    );
    let has = |name: &str| {
        reply
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !has("content-type") {
        let json = reply.body.is_none();
        out.push_str(if json {
            "content-type: application/json\r\n"
        } else {
            "content-type: text/plain\r\n"
        });
    }
    out.push_str(&format!("x-upstream-seq: {}\r\n", request.seq));
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    let bodiless = reply.status < 200 || reply.status == 204 || reply.status == 304;
    if !bodiless {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    let head_only = bodiless || request.method == "HEAD" || reply.reset_after_headers;
    if !head_only {
        bytes.extend_from_slice(&body);
    } else if reply.reset_after_headers && !body.is_empty() {
        // Some of the body, never all of it: the peer sees a truncated answer.
        bytes.extend_from_slice(&body[..body.len() / 2]);
    }
    bytes
}

/// Locks, ignoring poisoning: a panicking test thread must not hide the upstream's log.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
