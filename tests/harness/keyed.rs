//! Keyed requests and what the upstream saw of them, for the idempotency tests: the keyed POST,
//! waiting until a key's completion is written (`settled`) or until a backend is reachable
//! (`until_served`), the fences a key carried, and the executions after a given moment.

use std::thread;
use std::time::{Duration, Instant};

use super::client::{send, Request, Response};
use super::envoy::Envoy;
use super::upstream::{ReceivedRequest, Upstream};

/// A POST to `/pay` with `body` under `idempotency-key: key`, 5 s client timeout.
pub fn keyed(key: &str, body: &str) -> Request {
    Request::post("/pay", body.to_string())
        .header("idempotency-key", key)
        .timeout(Duration::from_secs(5))
}

/// Sends `req` while it is answered `409` (a completion still being written), up to `within`.
pub fn settled(port: u16, req: &Request, within: Duration) -> Response {
    let start = Instant::now();
    loop {
        let r = send(port, req);
        if r.status != 409 || start.elapsed() > within {
            return r;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `next(n)` for n = 1, 2, … until one is answered `200` (the backend's first health
/// check has passed) or `within` passed; returns the last answer.
pub fn until_served_with(
    port: u16,
    within: Duration,
    mut next: impl FnMut(usize) -> Request,
) -> Response {
    let start = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let r = send(port, &next(n));
        if r.status == 200 || start.elapsed() > within {
            return r;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// [`until_served_with`] keyed POSTs under fresh keys `<tag>-<n>`.
pub fn until_served(envoy: &Envoy, tag: &str, within: Duration) -> Response {
    until_served_with(envoy.port(), within, |n| keyed(&format!("{tag}-{n}"), "x"))
}

/// The `x-levee-fence` of every request the upstream saw with key `key`, in arrival order.
pub fn fences(up: &Upstream, key: &str) -> Vec<Option<String>> {
    up.requests()
        .into_iter()
        .filter(|r| r.header("idempotency-key").as_deref() == Some(key))
        .map(|r| r.header("x-levee-fence"))
        .collect()
}

/// The fence the upstream saw on the `n`-th request with key `key`.
pub fn fence_of(up: &Upstream, key: &str, n: usize) -> i64 {
    fences(up, key)
        .into_iter()
        .nth(n)
        .flatten()
        .expect("the fence is forwarded")
        .parse()
        .expect("a revision")
}

/// The requests with key `key` the upstream received at or after `since`.
pub fn keyed_since(up: &Upstream, key: &str, since: Instant) -> Vec<ReceivedRequest> {
    up.requests()
        .into_iter()
        .filter(|r| r.at >= since && r.header("idempotency-key").as_deref() == Some(key))
        .collect()
}

/// Asserts that each of `envoys` serves a keyed POST (tags `<tag><i>-<n>`) within `within`.
pub fn assert_all_served(envoys: &[&Envoy], tag: &str, within: Duration) {
    for (i, e) in envoys.iter().enumerate() {
        let r = until_served(e, &format!("{tag}{i}"), within);
        assert_eq!(r.status, 200, "envoy {i} never served: {}", r.text());
    }
}
