//! What levee reads from a request, behind a trait so matching and key extraction are pure.
//!
//! The host adapter implements [`RequestAttributes`] over Envoy's header map and properties
//! (fetched lazily: a config that never keys on metadata never pays for a property read);
//! tests implement it over a plain struct.

pub mod client_ip;
#[cfg(test)]
pub mod fake;
pub mod keys;
pub mod matcher;
pub mod plain;
pub mod saved;

/// Read access to one request's attributes.
pub trait RequestAttributes {
    /// `:method`, upper-case as sent.
    fn method(&self) -> &str;
    /// `:path` including any query string, as Envoy normalised it.
    fn path_and_query(&self) -> &str;
    /// First value of a header; `name` is lower-case. Raw bytes: values need not be UTF-8.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// How many field lines carry header `name` (lower-case). [`Self::header`] sees only the
    /// first, as Envoy's single-header read does; a field that must be one value (the
    /// idempotency key) asks this too. It may cost the host a whole-map read: ask only when
    /// the header is present and the answer matters.
    fn header_lines(&self, name: &str) -> usize;
    /// Envoy's `source.address` (`ip:port` or `[v6]:port`), if known, as the host's raw bytes
    /// (read as text only when it is not the usual `a.b.c.d:port`).
    fn source_address(&self) -> Option<&[u8]>;
    /// Envoy's `xds.route_name`, if the request matched a named route.
    fn route_name(&self) -> Option<&str>;
    /// `metadata.filter_metadata.<filter>.<path…>` rendered as bytes (strings as-is,
    /// numbers and booleans in their JSON text), if present.
    fn metadata(&self, filter: &str, path: &[String]) -> Option<Vec<u8>>;

    /// Every request header in order (pseudo-headers included), for callout forwarding.
    fn all_headers(&self) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }
}
