//! A copy of a request's head, for decisions made after the request callback is over
//! (cache rules and `Vary` when the answer arrives, the secondary cluster and the queue when
//! the upstream failed).

use crate::request::RequestAttributes;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedRequest {
    pub method: String,
    pub path: String,
    pub authority: String,
    /// Regular headers (no pseudo-headers), in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub has_body: bool,
}

impl SavedRequest {
    pub fn of(req: &dyn RequestAttributes, has_body: bool) -> Self {
        Self {
            method: req.method().to_string(),
            path: req.path_and_query().to_string(),
            authority: req
                .header(":authority")
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_default(),
            headers: req
                .all_headers()
                .into_iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .collect(),
            has_body,
        }
    }

    pub fn header_strings(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }
}

impl RequestAttributes for SavedRequest {
    fn method(&self) -> &str {
        &self.method
    }
    fn path_and_query(&self) -> &str {
        &self.path
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
    fn header_lines(&self, name: &str) -> usize {
        self.headers.iter().filter(|(k, _)| k == name).count()
    }
    fn source_address(&self) -> Option<&str> {
        None
    }
    fn route_name(&self) -> Option<&str> {
        None
    }
    fn metadata(&self, _filter: &str, _path: &[String]) -> Option<Vec<u8>> {
        None
    }
}
