//! An in-memory [`crate::request::RequestAttributes`] for tests (here and in other modules): build a request
//! with a few chained calls instead of a host.

use std::cell::RefCell;

use super::plain::{PlainHead, PlainRequest};
use super::RequestAttributes;

/// A request made of plain fields. Header names are stored lower-case.
#[derive(Debug, Clone, Default)]
pub struct FakeRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub source: Option<String>,
    pub route: Option<String>,
    pub metadata: Vec<(String, Vec<String>, Vec<u8>)>,
}

impl FakeRequest {
    pub fn new(method: &str, path: &str) -> Self {
        FakeRequest {
            method: method.into(),
            path: path.into(),
            ..Default::default()
        }
    }
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }
    pub fn source(mut self, address: &str) -> Self {
        self.source = Some(address.into());
        self
    }
    pub fn route(mut self, name: &str) -> Self {
        self.route = Some(name.into());
        self
    }
    pub fn metadata(mut self, filter: &str, path: &[&str], value: impl AsRef<[u8]>) -> Self {
        let path = path.iter().map(|s| (*s).to_owned()).collect();
        self.metadata
            .push((filter.into(), path, value.as_ref().to_vec()));
        self
    }
}

impl PlainRequest for FakeRequest {
    fn plain_head(&self) -> PlainHead<'_> {
        PlainHead {
            method: &self.method,
            path: &self.path,
            headers: &self.headers,
            source: self.source.as_deref(),
            route: self.route.as_deref(),
        }
    }
    fn plain_metadata(&self, filter: &str, path: &[String]) -> Option<Vec<u8>> {
        self.metadata
            .iter()
            .find(|(f, p, _)| f == filter && p == path)
            .map(|(_, _, v)| v.clone())
    }
}

/// A request that records which attributes were asked for (`:method`, `:path`, header
/// names, `source.address`, `route_name`): in Envoy each is a host call, most of them
/// returning data, so tests can pin what a configuration reads.
pub struct Recording {
    pub inner: FakeRequest,
    pub asked: RefCell<Vec<String>>,
}

impl Recording {
    pub fn new(inner: FakeRequest) -> Self {
        Self {
            inner,
            asked: RefCell::new(Vec::new()),
        }
    }

    fn ask(&self, what: &str) {
        self.asked.borrow_mut().push(what.to_owned());
    }

    /// Whether `what` was asked for.
    pub fn asked_for(&self, what: &str) -> bool {
        self.asked.borrow().iter().any(|a| a == what)
    }
}

impl RequestAttributes for Recording {
    fn method(&self) -> &str {
        self.ask(":method");
        RequestAttributes::method(&self.inner)
    }
    fn path_and_query(&self) -> &str {
        self.ask(":path");
        RequestAttributes::path_and_query(&self.inner)
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.ask(name);
        RequestAttributes::header(&self.inner, name)
    }
    fn header_lines(&self, name: &str) -> usize {
        RequestAttributes::header_lines(&self.inner, name)
    }
    fn source_address(&self) -> Option<&[u8]> {
        self.ask("source.address");
        RequestAttributes::source_address(&self.inner)
    }
    fn route_name(&self) -> Option<&str> {
        self.ask("route_name");
        RequestAttributes::route_name(&self.inner)
    }
    fn metadata(&self, filter: &str, path: &[String]) -> Option<Vec<u8>> {
        RequestAttributes::metadata(&self.inner, filter, path)
    }
}
