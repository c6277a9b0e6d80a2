//! How many distinct request headers the common path of a configuration reads.
//!
//! Why it matters: in Envoy, a host call that returns data costs most of its time in the
//! call back into the VM that allocates the answer, whatever its size. Reading one or two
//! headers one by one is then cheaper than fetching the whole header map, and three or more
//! are not. The host adapter asks [`few_header_reads`] once per configuration to choose.
//!
//! The count covers what every request may read before levee decides: match blocks (of rate
//! limits, routes, the idempotency layer), rate-limit keys, the idempotency header and scope.
//! Layers that copy every header (callout forwarding, fallbacks that keep the request, the
//! stale cache) make the answer "many". Rarer reads (a keyed request's fingerprint, a
//! local reply's `content-type`) are not counted: reading them is correct either way.

use std::collections::BTreeSet;

use crate::config::{Forward, KeyPart, LeveeConfig, RequestMatch};
use crate::header_names::{METHOD, PATH, X_FORWARDED_FOR};

/// Distinct headers the common path may read, at most, for reading them one by one.
pub const FEW: usize = 2;

/// True when the configuration's common path reads at most [`FEW`] distinct headers and no
/// layer needs all of them.
pub fn few_header_reads(config: &LeveeConfig) -> bool {
    let needs_all = config
        .upstreams
        .iter()
        .any(|u| u.forward == Forward::Callout || u.cache.is_some() || !u.fallback.is_empty());
    if needs_all {
        return false;
    }
    let mut names = BTreeSet::new();
    for limit in &config.rate_limits {
        match_names(&limit.matcher, &mut names);
        key_names(&limit.key, &mut names);
    }
    for route in &config.routes {
        match_names(&route.matcher, &mut names);
    }
    if let Some(idem) = &config.idempotency {
        names.insert(METHOD.to_owned());
        names.insert(idem.header.clone());
        match_names(&idem.matcher, &mut names);
        key_names(&idem.scope, &mut names);
    }
    names.len() <= FEW
}

fn match_names(m: &RequestMatch, names: &mut BTreeSet<String>) {
    if !m.methods.is_empty() {
        names.insert(METHOD.to_owned());
    }
    if m.path_prefix.as_deref().is_some_and(|p| p != "/") {
        names.insert(PATH.to_owned());
    }
    names.extend(m.headers.iter().map(|(name, _)| name.clone()));
}

fn key_names(parts: &[KeyPart], names: &mut BTreeSet<String>) {
    for part in parts {
        match part {
            KeyPart::Method => {
                names.insert(METHOD.to_owned());
            }
            KeyPart::Path | KeyPart::Query(_) => {
                names.insert(PATH.to_owned());
            }
            KeyPart::Header(name) => {
                names.insert(name.clone());
            }
            KeyPart::ClientIp => {
                names.insert(X_FORWARDED_FOR.to_owned());
            }
            KeyPart::SourceIp | KeyPart::RouteName | KeyPart::Metadata { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn few(json: &str) -> bool {
        few_header_reads(&crate::config::parse(json.as_bytes()).unwrap())
    }

    #[test]
    fn per_ip_limit_reads_no_header() {
        assert!(few(
            r#"{"rate_limits":[{"name":"a","key":["source_ip"],"limit":1,"window":"1s"}]}"#
        ));
    }

    #[test]
    fn typical_config_reads_method_and_key_header() {
        assert!(few(
            r#"{"rate_limits":[{"name":"a","key":["source_ip"],"limit":1,"window":"1s"}],
                "idempotency":{"methods":["POST"]},
                "upstreams":{"b":{"forward":"router","circuit_breaker":{}}},
                "routes":[{"match":{"path_prefix":"/"},"upstream":"b"}]}"#
        ));
    }

    #[test]
    fn three_distinct_headers_are_many() {
        assert!(!few(r#"{"rate_limits":[
                {"name":"a","key":["header:x-user"],"limit":1,"window":"1s"},
                {"name":"b","key":["method","path"],"limit":1,"window":"1s"}]}"#));
    }

    #[test]
    fn a_path_prefix_other_than_root_reads_the_path() {
        assert!(!few(
            r#"{"rate_limits":[{"name":"a","match":{"path_prefix":"/api","methods":["GET"]},
                "key":["header:x-user"],"limit":1,"window":"1s"}]}"#
        ));
        assert!(few(
            r#"{"rate_limits":[{"name":"a","match":{"path_prefix":"/","methods":["GET"]},
                "key":["header:x-user"],"limit":1,"window":"1s"}]}"#
        ));
    }

    #[test]
    fn callout_forwarding_needs_every_header() {
        assert!(!few(
            r#"{"upstreams":{"b":{"forward":"callout","cluster":"c"}},
                "routes":[{"match":{},"upstream":"b"}]}"#
        ));
    }
}
