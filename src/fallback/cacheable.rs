//! Which answers the stale cache may keep, and under which key.
//!
//! The stale cache is a **fallback store, not an HTTP cache**: fresh answers always come from
//! the upstream, and a kept copy is only ever served when the upstream cannot answer. So the
//! freshness rules of RFC 9111 (`max-age`, `no-cache`, `must-revalidate`, `Expires`) do not
//! decide anything here — the operator who configured `stale_cache` chose to serve stale
//! copies during an outage, bounded by `cache.ttl` and `max_stale`. What *does* decide is
//! privacy: **one user's answer must never reach another.** The rules, each a [`NotStored`]
//! reason:
//!
//! - only `GET` and `HEAD` ([`NotStored::Method`]);
//! - only statuses `200`, `203` and `204` ([`STORED_STATUSES`], [`NotStored::Status`]): the
//!   successful answers that are complete representations. `206` is a fragment (serving it
//!   as the whole would be wrong), `201`/`202`/`205` describe an action, not a resource, and
//!   `3xx` are not stored either: a redirect is the upstream's *current* routing decision,
//!   and a stale one can point at what moved on (or loop); `304` only makes sense to the
//!   client that sent the condition;
//! - never when the request carried `Authorization` or `Cookie`, unless the response says
//!   `Cache-Control: public` or `s-maxage` (the upstream's explicit "shareable"), as in
//!   RFC 9111 §3.5 ([`NotStored::Credentials`]);
//! - never `Cache-Control: no-store` or `private` — `private="field"` included, which is the
//!   simple, safe reading — nor an answer with `Set-Cookie` (a session handed to one client),
//!   nor `Vary: *` (varies on things a cache cannot see);
//! - only bodies of at most `cache.max_body_bytes`, and header blocks of at most
//!   [`MAX_STORED_HEADER_BYTES`] (so that one stored answer has a known size bound, see
//!   [`super::cache`]).
//!
//! Directive names are case-insensitive; several `Cache-Control` / `Vary` fields are read as
//! one list; quoted strings (`private="a, b"`) are skipped over when splitting.
//!
//! # Vary
//! An answer with `Vary: Accept-Language` is only right for requests with the same
//! `Accept-Language`. The entry records a keyed digest of the request's values of the named
//! headers ([`VaryValues`]); a lookup recomputes it from the current request (the names come
//! from the stored answer's own `Vary`) and only matches when it is equal. A header the
//! request lacks is recorded as absent, which differs from present-but-empty; the first value
//! of a repeated header is used. One variant is kept per key — the latest stored — which is
//! enough for a fallback.
//!
//! # The key
//! [`cache_key`]: the configured `cache.key` parts (e.g. the user), then the method and the
//! path with its query string, length-prefixed, so no two requests share bytes by accident.

use std::fmt;

use crate::config::{ClientIpConfig, KeyPart};
use crate::request::keys::extract_key;
use crate::request::RequestAttributes;
use crate::store::KeyHasher;

/// The statuses a stale copy is kept for.
pub const STORED_STATUSES: [u16; 3] = [200, 203, 204];
/// The most bytes an answer's headers may take in the stored encoding (name + value + 6 per
/// header). Response headers of cacheable API answers are typically well under 1 KiB.
pub const MAX_STORED_HEADER_BYTES: usize = 4096;
/// Hash domain of vary digests (kept apart from every slot table's domain).
const VARY_DOMAIN: &[u8] = b"cache-vary";

/// Why an answer is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// Not a GET or HEAD.
    Method,
    /// Not one of [`STORED_STATUSES`].
    Status(u16),
    /// The request carried `Authorization` or `Cookie` and the answer is not marked shareable.
    Credentials,
    NoStore,
    Private,
    SetCookie,
    VaryStar,
    BodyTooLarge {
        len: u64,
        max: u64,
    },
    HeadersTooLarge {
        len: usize,
        max: usize,
    },
}

impl fmt::Display for NotStored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Method => f.write_str("only GET and HEAD answers are kept"),
            Self::Status(s) => write!(f, "status {s} is not kept (only 200, 203, 204)"),
            Self::Credentials => f.write_str(
                "request had Authorization or Cookie and the answer is not public / s-maxage",
            ),
            Self::NoStore => f.write_str("answer says Cache-Control: no-store"),
            Self::Private => f.write_str("answer says Cache-Control: private"),
            Self::SetCookie => f.write_str("answer sets a cookie"),
            Self::VaryStar => f.write_str("answer says Vary: *"),
            Self::BodyTooLarge { len, max } => {
                write!(
                    f,
                    "body of {len} bytes is over cache.max_body_bytes ({max})"
                )
            }
            Self::HeadersTooLarge { len, max } => {
                write!(
                    f,
                    "headers of {len} bytes are over the {max}-byte allowance"
                )
            }
        }
    }
}

impl std::error::Error for NotStored {}

/// Everything that can be decided from the request and the response headers, before the body
/// is buffered. Header names are compared case-insensitively.
pub fn check_headers(
    req: &dyn RequestAttributes,
    status: u16,
    headers: &[(String, String)],
) -> Result<(), NotStored> {
    if !matches!(req.method(), "GET" | "HEAD") {
        return Err(NotStored::Method);
    }
    if !STORED_STATUSES.contains(&status) {
        return Err(NotStored::Status(status));
    }
    let cc = CacheControl::read(headers);
    if cc.no_store {
        return Err(NotStored::NoStore);
    }
    if cc.private {
        return Err(NotStored::Private);
    }
    if headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
    {
        return Err(NotStored::SetCookie);
    }
    vary_names(headers)?;
    let credentials = req.header("authorization").is_some() || req.header("cookie").is_some();
    if credentials && !(cc.public || cc.s_maxage) {
        return Err(NotStored::Credentials);
    }
    let len = header_bytes(headers);
    if len > MAX_STORED_HEADER_BYTES {
        return Err(NotStored::HeadersTooLarge {
            len,
            max: MAX_STORED_HEADER_BYTES,
        });
    }
    Ok(())
}

/// The body rule: at most `max_body_bytes`.
pub fn check_body(len: u64, max_body_bytes: u64) -> Result<(), NotStored> {
    if len > max_body_bytes {
        return Err(NotStored::BodyTooLarge {
            len,
            max: max_body_bytes,
        });
    }
    Ok(())
}

/// Every rule at once: [`check_headers`] then [`check_body`].
pub fn check(
    req: &dyn RequestAttributes,
    status: u16,
    headers: &[(String, String)],
    body_len: u64,
    max_body_bytes: u64,
) -> Result<(), NotStored> {
    check_headers(req, status, headers)?;
    check_body(body_len, max_body_bytes)
}

/// Bytes the headers take in the stored-response encoding.
pub fn header_bytes(headers: &[(String, String)]) -> usize {
    use crate::idempotency::response::PER_HEADER_OVERHEAD;
    headers
        .iter()
        .map(|(n, v)| PER_HEADER_OVERHEAD + n.len() + v.len())
        .sum()
}

/// The `Cache-Control` directives that matter to a fallback store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub public: bool,
    pub s_maxage: bool,
    pub no_store: bool,
    pub private: bool,
}

impl CacheControl {
    /// Reads every `Cache-Control` field of `headers`.
    pub fn read(headers: &[(String, String)]) -> Self {
        let mut cc = Self::default();
        let fields = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cache-control"));
        for (_, value) in fields {
            for item in split_list(value) {
                let name = item.split('=').next().unwrap_or("").trim();
                let flag = match name.to_ascii_lowercase().as_str() {
                    "public" => &mut cc.public,
                    "s-maxage" => &mut cc.s_maxage,
                    "no-store" => &mut cc.no_store,
                    "private" => &mut cc.private,
                    _ => continue,
                };
                *flag = true;
            }
        }
        cc
    }
}

/// The lower-case header names an answer varies on, sorted and without duplicates;
/// `Err(VaryStar)` for `Vary: *`.
pub fn vary_names(headers: &[(String, String)]) -> Result<Vec<String>, NotStored> {
    let mut names = Vec::new();
    let fields = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("vary"));
    for (_, value) in fields {
        for item in split_list(value) {
            let item = item.trim();
            if item == "*" {
                return Err(NotStored::VaryStar);
            }
            if !item.is_empty() {
                names.push(item.to_ascii_lowercase());
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The request's values of the headers an answer varies on (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VaryValues {
    /// Lower-case names, sorted, each with the request's first value (`None`: absent).
    pub pairs: Vec<(String, Option<Vec<u8>>)>,
}

impl VaryValues {
    /// The values of `names` as `value_of` reports them.
    pub fn capture<'a>(names: &[String], value_of: impl Fn(&str) -> Option<&'a [u8]>) -> Self {
        Self {
            pairs: names
                .iter()
                .map(|n| (n.clone(), value_of(n).map(<[u8]>::to_vec)))
                .collect(),
        }
    }

    /// The request's values of the headers `response_headers` name in `Vary`.
    pub fn from_request(
        response_headers: &[(String, String)],
        req: &dyn RequestAttributes,
    ) -> Result<Self, NotStored> {
        let names = vary_names(response_headers)?;
        Ok(Self::capture(&names, |n| req.header(n)))
    }

    /// A keyed 64-bit digest of names and values (what an index entry records).
    pub fn digest(&self, hasher: &KeyHasher) -> u64 {
        let mut bytes = Vec::new();
        for (name, value) in &self.pairs {
            put(&mut bytes, Some(name.as_bytes()));
            put(&mut bytes, value.as_deref());
        }
        hasher.hash(VARY_DOMAIN, &bytes).fingerprint
    }
}

/// Writes the cache key of `req` into `out`: the `parts` (`cache.key`), then the method and
/// the path with its query, each length-prefixed.
pub fn cache_key(
    req: &dyn RequestAttributes,
    parts: &[KeyPart],
    client_ip: &ClientIpConfig,
    out: &mut Vec<u8>,
) {
    extract_key(parts, client_ip, req, out);
    put(out, Some(req.method().as_bytes()));
    put(out, Some(req.path_and_query().as_bytes()));
}

/// `0x00` for absent, else `0x01`, a 4-byte big-endian length and the bytes.
fn put(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
}

/// Splits a comma-separated field value, not splitting inside quoted strings.
fn split_list(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items
}
