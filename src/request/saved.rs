//! A copy of a request, for what levee does with it after the request callback is over:
//! send it itself (callout mode), judge the answer against it (cache rules and `Vary`), send
//! it to the secondary cluster, or queue it for later. One type for all of them, so a request
//! is copied from the host once and its header list and body are shared, not copied again,
//! by every use that holds it.

use std::rc::Rc;

use crate::header_names::AUTHORITY;

use super::plain::{PlainHead, PlainRequest};
use super::RequestAttributes;

/// A request's head and (once buffered) its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedRequest {
    /// `:method`, as received (methods are case-sensitive).
    pub method: String,
    /// `:path`, query string included.
    pub path: String,
    /// `:authority` of the client's request (a use may override it, e.g. an upstream's
    /// configured `authority`).
    pub authority: String,
    /// Regular headers (no pseudo-headers), in order, values as raw bytes.
    pub headers: Rc<[(String, Vec<u8>)]>,
    /// The whole body; empty until it is buffered (router mode never buffers it).
    pub body: Rc<Vec<u8>>,
}

impl SavedRequest {
    /// The head of `req` (method, path, authority, regular headers), without a body.
    pub fn of(req: &dyn RequestAttributes) -> Self {
        Self {
            method: req.method().to_string(),
            path: req.path_and_query().to_string(),
            authority: req
                .header(AUTHORITY)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_default(),
            headers: req
                .all_headers()
                .into_iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .collect(),
            body: Rc::default(),
        }
    }

    /// Sets header `name` (lower case) to `value`, replacing any the client sent.
    pub fn set_header(&mut self, name: &str, value: &[u8]) {
        let mut headers: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
            .cloned()
            .collect();
        headers.push((name.to_string(), value.to_vec()));
        self.headers = headers.into();
    }

    /// The headers with their values as text (invalid UTF-8 replaced).
    pub fn header_strings(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }
}

impl PlainRequest for SavedRequest {
    fn plain_head(&self) -> PlainHead<'_> {
        PlainHead {
            method: &self.method,
            path: &self.path,
            headers: &self.headers,
            source: None,
            route: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::fake::FakeRequest;

    #[test]
    fn the_copy_keeps_method_path_and_authority_and_reads_its_own_headers() {
        let req = FakeRequest::new("POST", "/a?b=1").header(":authority", "api.example");
        let mut saved = SavedRequest::of(&req);
        assert_eq!(
            (
                saved.method(),
                saved.path_and_query(),
                saved.authority.as_str()
            ),
            ("POST", "/a?b=1", "api.example")
        );
        assert!(saved.body.is_empty());
        saved.headers = vec![("x-a".into(), b"1".to_vec()), ("x-a".into(), b"2".to_vec())].into();
        assert_eq!(
            (saved.header("x-a"), saved.header_lines("x-a")),
            (Some(&b"1"[..]), 2)
        );
        assert_eq!(
            saved.header_strings()[1],
            ("x-a".to_string(), "2".to_string())
        );
    }
}
