//! The headers of a degraded answer: what is kept from a stored or queued message, and the
//! `x-levee-fallback` marker.
//!
//! A stored answer is replayed on another connection, and a queued request is sent on a new
//! one, so the headers that described the *first* connection go: [`crate::hop_by_hop`] drops
//! them (RFC 9110 §7.6.1 hop-by-hop fields, `proxy-connection`, `proxy-authorization`, `proxy-authenticate`, pseudo-headers, `content-length`) for
//! callouts, fallbacks and replays alike. The marker is always levee's: any
//! `x-levee-fallback` that came from elsewhere is replaced, so an upstream can neither forge
//! nor hide it.

use super::{FALLBACK_HEADER, MARK_STALE_CACHE};
use crate::hop_by_hop::end_to_end;

/// Sets `x-levee-fallback: <marker>`, replacing any value already there.
pub fn mark(headers: &mut Vec<(String, String)>, marker: &str) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(FALLBACK_HEADER));
    headers.push((FALLBACK_HEADER.to_owned(), marker.to_owned()));
}

/// The headers of a served stale copy: the stored ones minus per-connection headers and any
/// `age`, plus `age` = the stored `Age` (if any) + `resident_seconds` (the seconds since
/// levee stored it), and `x-levee-fallback: stale-cache`.
pub fn stale_headers(stored: &[(String, String)], resident_seconds: u64) -> Vec<(String, String)> {
    let upstream_age = stored
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("age"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let mut out = end_to_end(stored, &["age"]);
    let age = upstream_age.saturating_add(resident_seconds);
    out.push(("age".to_owned(), age.to_string()));
    mark(&mut out, MARK_STALE_CACHE);
    out
}
