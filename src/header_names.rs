//! HTTP header names that more than one layer reads or writes, spelled once. Lower-case, as
//! Envoy's header maps hold them (HTTP/2 and HTTP/3 require it; Envoy lower-cases HTTP/1).
//! Names that belong to one layer live with it: the idempotency key's default header in
//! [`crate::config::defaults`], its echo in [`crate::idempotency::replay`], levee's own
//! `x-levee-*` answers next to the layer that sets them.

/// The request method pseudo-header.
pub const METHOD: &str = ":method";
/// The request path (with query) pseudo-header.
pub const PATH: &str = ":path";
/// The request authority (host) pseudo-header.
pub const AUTHORITY: &str = ":authority";
/// The response status pseudo-header.
pub const STATUS: &str = ":status";
pub const CONTENT_TYPE: &str = "content-type";
pub const CONTENT_LENGTH: &str = "content-length";
/// When to try again: seconds or an HTTP-date.
pub const RETRY_AFTER: &str = "retry-after";
pub const UPGRADE: &str = "upgrade";
/// The client chain that proxies append to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// When the upstream's (or levee's) rate-limit window resets, in Unix seconds.
pub const X_RATELIMIT_RESET: &str = "x-ratelimit-reset";
