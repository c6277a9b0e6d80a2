//! [`RequestAttributes`] over Envoy's request headers and properties, fetched lazily:
//! a config that never keys on the source address never pays for that property read.
//!
//! Why headers are read one by one when few are needed: every host call that returns data
//! makes Envoy call back into the VM to allocate the answer, and that round trip is most of
//! its cost (measured in `make bench` profiles: ≈ 3.5 µs per value, ≈ 7 µs for the whole
//! map of a small request). A configuration that reads at most [`SINGLE_READS`] distinct
//! headers on the common path ([`crate::pipeline::Plugin::few_header_reads`]) reads them one
//! at a time; any further header, or a layer that needs all of them, fetches the map once.

use std::cell::OnceCell;

use proxy_wasm::types::{Bytes, MapType};

use crate::request::RequestAttributes;

use super::abi;

/// Distinct headers read one by one before the whole map is fetched instead.
const SINGLE_READS: usize = 2;

#[derive(Default)]
pub(crate) struct HostAttributes {
    /// Read headers one at a time (until [`SINGLE_READS`] are used up).
    singles_first: bool,
    singles: [OnceCell<(String, Option<Bytes>)>; SINGLE_READS],
    map: OnceCell<Vec<(String, Bytes)>>,
    source: OnceCell<Option<String>>,
    route: OnceCell<Option<String>>,
}

fn property_string(path: Vec<&str>) -> Option<String> {
    abi::get_property(path)
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

impl HostAttributes {
    pub(crate) fn new(singles_first: bool) -> Self {
        Self {
            singles_first,
            ..Self::default()
        }
    }

    fn map(&self) -> &[(String, Bytes)] {
        self.map
            .get_or_init(|| abi::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default())
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
                    let value = abi::get_map_value_bytes(MapType::HttpRequestHeaders, name)
                        .ok()
                        .flatten();
                    let (_, value) = cell.get_or_init(|| (name.to_owned(), value));
                    return Some(value.as_deref());
                }
            }
        }
        None
    }
}

impl RequestAttributes for HostAttributes {
    fn method(&self) -> &str {
        self.pseudo(":method")
    }

    fn path_and_query(&self) -> &str {
        self.pseudo(":path")
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        if let Some(value) = self.single(name) {
            return value;
        }
        self.map()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    fn header_lines(&self, name: &str) -> usize {
        // Envoy's single-header read returns only the first line: count in the whole map.
        self.map().iter().filter(|(k, _)| k == name).count()
    }

    fn source_address(&self) -> Option<&str> {
        self.source
            .get_or_init(|| property_string(vec!["source", "address"]))
            .as_deref()
    }

    fn route_name(&self) -> Option<&str> {
        self.route
            .get_or_init(|| property_string(vec!["xds", "route_name"]))
            .as_deref()
    }

    fn all_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.map().to_vec()
    }

    fn metadata(&self, filter: &str, path: &[String]) -> Option<Vec<u8>> {
        let mut full = vec!["metadata", "filter_metadata", filter];
        full.extend(path.iter().map(String::as_str));
        abi::get_property(full).ok().flatten()
    }
}
