//! [`RequestAttributes`] over the host's request headers and properties, fetched lazily:
//! a config that never keys on the source address never pays for that property read.
//!
//! Why headers are read one by one when few are needed: every host call that returns data
//! makes Envoy call back into the VM to allocate the answer, and that round trip is most of
//! its cost (measured in `make bench` profiles: ≈ 3.5 µs per value, ≈ 7 µs for the whole
//! map of a small request). A configuration that reads at most [`SINGLE_READS`] distinct
//! headers on the common path ([`crate::pipeline::Plugin::few_header_reads`]) reads them one
//! at a time; any further header, or a layer that needs all of them, fetches the map once.

use std::cell::OnceCell;

use crate::header_block::HeaderBlock;
use crate::header_names::{METHOD, PATH};
use crate::request::RequestAttributes;

type Bytes = Vec<u8>;

/// The reads request attributes are made of, each one host call.
pub trait RequestReads {
    /// One request header.
    fn header(&self, name: &str) -> Option<Bytes>;
    /// Every request header, pseudo-headers included, as the host serialized them.
    fn headers(&self) -> HeaderBlock;
    /// A property such as `source.address`, by its path as the ABI takes it: the parts joined
    /// by NUL bytes (`b"source\0address"`, see [`crate::abi_wire::encode_path`]).
    fn property(&self, path: &[u8]) -> Option<Bytes>;
}

/// Distinct headers read one by one before the whole map is fetched instead.
const SINGLE_READS: usize = 2;

/// A request's attributes, each read from the host on first use.
pub struct LazyAttributes<R> {
    reads: R,
    /// Read headers one at a time (until [`SINGLE_READS`] are used up).
    singles_first: bool,
    singles: [OnceCell<(String, Option<Bytes>)>; SINGLE_READS],
    map: OnceCell<HeaderBlock>,
    source: OnceCell<Option<Bytes>>,
    route: OnceCell<Option<String>>,
}

impl<R: RequestReads> LazyAttributes<R> {
    /// `singles_first`: the configuration reads few headers (see
    /// [`crate::pipeline::Plugin::few_header_reads`]).
    pub fn new(reads: R, singles_first: bool) -> Self {
        Self {
            reads,
            singles_first,
            singles: Default::default(),
            map: OnceCell::new(),
            source: OnceCell::new(),
            route: OnceCell::new(),
        }
    }

    fn property_string(&self, path: &[u8]) -> Option<String> {
        self.reads
            .property(path)
            .and_then(|b| String::from_utf8(b).ok())
    }

    fn map(&self) -> &HeaderBlock {
        self.map.get_or_init(|| self.reads.headers())
    }

    fn pseudo(&self, name: &str) -> &str {
        self.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("")
    }

    /// The header from a single read, if it was (or now may be) read that way.
    fn single(&self, name: &str) -> Option<Option<&[u8]>> {
        if !self.singles_first || self.map.get().is_some() {
            return None;
        }
        for cell in &self.singles {
            match cell.get() {
                Some((n, value)) if n == name => return Some(value.as_deref()),
                Some(_) => continue,
                None => {
                    let value = self.reads.header(name);
                    let (_, value) = cell.get_or_init(|| (name.to_owned(), value));
                    return Some(value.as_deref());
                }
            }
        }
        None
    }
}

impl<R: RequestReads> RequestAttributes for LazyAttributes<R> {
    fn method(&self) -> &str {
        self.pseudo(METHOD)
    }

    fn path_and_query(&self) -> &str {
        self.pseudo(PATH)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        if let Some(value) = self.single(name) {
            return value;
        }
        self.map().get(name)
    }

    fn header_lines(&self, name: &str) -> usize {
        // Envoy's single-header read returns only the first line: count in the whole map.
        self.map().lines(name)
    }

    fn source_address(&self) -> Option<&[u8]> {
        self.source
            .get_or_init(|| self.reads.property(b"source\0address"))
            .as_deref()
    }

    fn route_name(&self) -> Option<&str> {
        self.route
            .get_or_init(|| self.property_string(b"xds\0route_name"))
            .as_deref()
    }

    fn all_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.map().to_pairs()
    }

    fn metadata(&self, filter: &str, path: &[String]) -> Option<Vec<u8>> {
        let mut full = vec!["metadata", "filter_metadata", filter];
        full.extend(path.iter().map(String::as_str));
        self.reads.property(&crate::abi_wire::encode_path(&full))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Request reads that count themselves.
    #[derive(Default)]
    struct Counted {
        headers: Vec<(String, Bytes)>,
        log: RefCell<Vec<String>>,
    }

    impl RequestReads for &Counted {
        fn header(&self, name: &str) -> Option<Bytes> {
            self.log.borrow_mut().push(format!("header {name}"));
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
        fn headers(&self) -> HeaderBlock {
            self.log.borrow_mut().push("map".into());
            HeaderBlock::from_pairs(&self.headers)
        }
        fn property(&self, path: &[u8]) -> Option<Bytes> {
            let path = String::from_utf8_lossy(path).replace('\0', ".");
            self.log.borrow_mut().push(path);
            Some(b"10.0.0.1:80".to_vec())
        }
    }

    fn request() -> Counted {
        let pairs = [
            (":method", "GET"),
            (":path", "/a"),
            ("x-user", "al"),
            ("x-b", "b"),
        ];
        Counted {
            headers: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            ..Counted::default()
        }
    }

    #[test]
    fn few_headers_are_read_one_by_one_then_the_map_once_and_each_read_once() {
        let host = request();
        let attrs = LazyAttributes::new(&host, true);
        assert_eq!(attrs.method(), "GET");
        assert_eq!(attrs.method(), "GET");
        assert_eq!(attrs.header("x-user"), Some(&b"al"[..]));
        assert_eq!(attrs.header("x-b"), Some(&b"b"[..]));
        assert_eq!(attrs.path_and_query(), "/a");
        assert_eq!(attrs.source_address(), Some(&b"10.0.0.1:80"[..]));
        assert_eq!(attrs.source_address(), Some(&b"10.0.0.1:80"[..]));
        assert_eq!(
            *host.log.borrow(),
            ["header :method", "header x-user", "map", "source.address"]
        );
    }

    #[test]
    fn without_few_header_reads_the_map_is_read_once_and_nothing_else() {
        let host = request();
        let attrs = LazyAttributes::new(&host, false);
        assert_eq!(attrs.header("x-user"), Some(&b"al"[..]));
        assert_eq!(attrs.header("missing"), None);
        assert_eq!(attrs.all_headers().len(), 4);
        assert_eq!(*host.log.borrow(), ["map"]);
    }
}
