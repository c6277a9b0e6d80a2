//! [`RequestAttributes`] for a request held as plain fields (a saved copy, a test request, a
//! benchmark's request): the lookups over a header list are written once here.

use super::RequestAttributes;

/// A borrowed view of a request held as plain fields.
#[derive(Debug, Clone, Copy)]
pub struct PlainHead<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`, query string included.
    pub path: &'a str,
    /// Headers in order, lower-case names, values as raw bytes.
    pub headers: &'a [(String, Vec<u8>)],
    /// `source.address`, if known.
    pub source: Option<&'a str>,
    /// `xds.route_name`, if known.
    pub route: Option<&'a str>,
}

/// A request kept as plain fields: it shows its head and gets [`RequestAttributes`] for free.
pub trait PlainRequest {
    /// The fields the attributes are read from.
    fn plain_head(&self) -> PlainHead<'_>;

    /// Filter metadata at `filter` and `path`; none unless the type keeps some.
    fn plain_metadata(&self, _filter: &str, _path: &[String]) -> Option<Vec<u8>> {
        None
    }
}

impl<T: PlainRequest> RequestAttributes for T {
    fn method(&self) -> &str {
        self.plain_head().method
    }
    fn path_and_query(&self) -> &str {
        self.plain_head().path
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.plain_head()
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
    fn header_lines(&self, name: &str) -> usize {
        self.plain_head()
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .count()
    }
    fn source_address(&self) -> Option<&[u8]> {
        self.plain_head().source.map(str::as_bytes)
    }
    fn route_name(&self) -> Option<&str> {
        self.plain_head().route
    }
    fn metadata(&self, filter: &str, path: &[String]) -> Option<Vec<u8>> {
        self.plain_metadata(filter, path)
    }
}
