//! The headers of a degraded answer: what is kept from a stored or queued message, and the
//! `x-levee-fallback` marker.
//!
//! A stored answer is replayed on another connection, and a queued request is sent on a new
//! one, so the headers that described the *first* connection go: hop-by-hop headers (RFC 9110
//! §7.6.1: `connection` and the names it lists, `keep-alive`, `te`, `trailer`,
//! `transfer-encoding`, `upgrade`, `proxy-*`), pseudo-headers, and `content-length` (Envoy
//! sets it from the body it sends). The marker is always levee's: any `x-levee-fallback` that
//! came from elsewhere is replaced, so an upstream can neither forge nor hide it.

use super::{FALLBACK_HEADER, MARK_STALE_CACHE};

/// `headers` without per-connection ones (see the module docs) and without the `extra`
/// lower-case names.
pub fn without_connection_headers(
    headers: &[(String, String)],
    extra: &[&str],
) -> Vec<(String, String)> {
    let listed: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    headers
        .iter()
        .filter(|(n, _)| {
            let lower = n.to_ascii_lowercase();
            !(is_per_connection(&lower)
                || listed.contains(&lower)
                || extra.contains(&lower.as_str()))
        })
        .cloned()
        .collect()
}

fn is_per_connection(lower: &str) -> bool {
    matches!(
        lower,
        "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    ) || lower.starts_with("proxy-")
        || lower.starts_with(':')
}

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
    let mut out = without_connection_headers(stored, &["age"]);
    let age = upstream_age.saturating_add(resident_seconds);
    out.push(("age".to_owned(), age.to_string()));
    mark(&mut out, MARK_STALE_CACHE);
    out
}
