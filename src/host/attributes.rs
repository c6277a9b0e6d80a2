//! [`RequestAttributes`] over Envoy's request headers and properties, fetched lazily:
//! a config that never keys on the source address never pays for that property read.

use std::cell::OnceCell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Bytes, MapType};

use crate::request::RequestAttributes;

#[derive(Default)]
pub(crate) struct HostAttributes {
    headers: OnceCell<Vec<(String, Bytes)>>,
    source: OnceCell<Option<String>>,
    route: OnceCell<Option<String>>,
}

fn property_string(path: Vec<&str>) -> Option<String> {
    hostcalls::get_property(path)
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

impl HostAttributes {
    fn headers(&self) -> &[(String, Bytes)] {
        self.headers.get_or_init(|| {
            hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
        })
    }

    fn pseudo(&self, name: &str) -> &str {
        self.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("")
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
        self.headers()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
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
        self.headers().to_vec()
    }

    fn metadata(&self, filter: &str, path: &[String]) -> Option<Vec<u8>> {
        let mut full = vec!["metadata", "filter_metadata", filter];
        full.extend(path.iter().map(String::as_str));
        hostcalls::get_property(full).ok().flatten()
    }
}
