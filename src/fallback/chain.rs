//! Choosing the fallback: which entries of an upstream's chain may run for this failure.
//!
//! The chain is tried in order; the caller takes the entries [`choose`] yields one by one and
//! moves to the next when one cannot answer (cache miss, secondary failed, queue full). Two
//! filters decide what is yielded:
//!
//! - the entry's `methods` (exact, like every method match in levee; empty = every method);
//! - The fallback matrix. With the breaker open the request has not gone anywhere yet, so every
//!   kind may run, in both modes. Once response headers went out to the client nothing can be
//!   replaced: only breaker bookkeeping remains. In between — a failure seen before response
//!   headers (5xx, reset, timeout, connect failure) — callout mode still holds the whole
//!   request and may do anything, but router mode has let Envoy's router stream the request
//!   body upstream without keeping it. It can still answer from the cache or the
//!   configuration (`stale_cache`, `static`); `cluster` and `queue` need the request again, so
//!   router mode offers them only for requests without a body.
//!
//! | situation | callout mode | router mode |
//! |---|---|---|
//! | breaker open | every fallback | every fallback |
//! | failure before response headers | every fallback | `stale_cache`, `static`; `cluster`, `queue` only without a request body |
//! | failure after response headers | none | none |
//!
//! In router mode the replacement happens in `on_http_response_headers`: levee answers with
//! `send_http_response` and pauses the upstream's response (probed on Envoy 1.40).
//!
//! This file also builds the static answer and names each kind for metrics and the
//! `x-levee-fallback` marker.

use crate::config::{FallbackEntry, FallbackKind, Forward};
use crate::header_names::CONTENT_LENGTH;
use crate::idempotency::response::StoredResponse;

use super::headers::mark;
use super::{MARK_QUEUED, MARK_SECONDARY, MARK_STALE_CACHE, MARK_STATIC};

/// What happened, as far as the choice of fallback is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    /// The breaker refused the call: the request was not forwarded.
    pub breaker_open: bool,
    pub mode: Forward,
    /// The request had a body (router mode cannot send it again).
    pub request_has_body: bool,
    /// Response headers already went to the client: nothing can be replaced.
    pub headers_sent: bool,
}

impl Situation {
    /// The breaker refused the call.
    pub fn breaker_open(mode: Forward) -> Self {
        Self {
            breaker_open: true,
            mode,
            request_has_body: false,
            headers_sent: false,
        }
    }

    /// The final attempt failed before any response header went out.
    pub fn failed(mode: Forward, request_has_body: bool) -> Self {
        Self {
            breaker_open: false,
            mode,
            request_has_body,
            headers_sent: false,
        }
    }
}

/// The entries that may run, in chain order (see the module docs).
pub fn choose<'a>(
    entries: &'a [FallbackEntry],
    method: &'a str,
    situation: Situation,
) -> impl Iterator<Item = &'a FallbackEntry> + 'a {
    entries
        .iter()
        .filter(move |e| applies_to(e, method) && allowed(&e.kind, situation))
}

/// The entry's `methods` admit `method` (exact; empty = every method).
pub fn applies_to(entry: &FallbackEntry, method: &str) -> bool {
    entry.methods.is_empty() || entry.methods.iter().any(|m| m == method)
}

/// The fallback matrix for one kind.
pub fn allowed(kind: &FallbackKind, s: Situation) -> bool {
    if s.headers_sent {
        return false;
    }
    if s.breaker_open || s.mode == Forward::Callout {
        return true;
    }
    match kind {
        FallbackKind::StaleCache { .. } | FallbackKind::Static { .. } => true,
        FallbackKind::Cluster { .. } | FallbackKind::Queue { .. } => !s.request_has_body,
    }
}

/// The kind's label in metrics and logs: `stale_cache`, `cluster`, `queue`, `static`
/// (the config's own words).
pub fn kind_name(kind: &FallbackKind) -> &'static str {
    match kind {
        FallbackKind::StaleCache { .. } => "stale_cache",
        FallbackKind::Cluster { .. } => "cluster",
        FallbackKind::Queue { .. } => "queue",
        FallbackKind::Static { .. } => "static",
    }
}

/// The kind's `x-levee-fallback` value: `stale-cache`, `secondary`, `queued`, `static`.
pub fn marker(kind: &FallbackKind) -> &'static str {
    match kind {
        FallbackKind::StaleCache { .. } => MARK_STALE_CACHE,
        FallbackKind::Cluster { .. } => MARK_SECONDARY,
        FallbackKind::Queue { .. } => MARK_QUEUED,
        FallbackKind::Static { .. } => MARK_STATIC,
    }
}

/// The configured static answer with `x-levee-fallback: static`; `None` for other kinds.
/// A configured `content-length` is dropped (Envoy sets it from the body).
pub fn static_reply(kind: &FallbackKind) -> Option<StoredResponse> {
    let FallbackKind::Static {
        status,
        headers,
        body,
    } = kind
    else {
        return None;
    };
    let mut headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(CONTENT_LENGTH))
        .cloned()
        .collect();
    mark(&mut headers, MARK_STATIC);
    Some(StoredResponse {
        status: *status,
        headers,
        body: body.clone(),
    })
}
