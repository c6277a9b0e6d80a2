use std::time::Duration;

use crate::config::{FallbackEntry, FallbackKind, Forward};
use crate::fallback::chain::*;
use crate::fallback::headers::mark;

fn entry(kind: FallbackKind, methods: &[&str]) -> FallbackEntry {
    FallbackEntry {
        kind,
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
    }
}

fn stale() -> FallbackKind {
    FallbackKind::StaleCache {
        max_stale: Duration::from_secs(3600),
    }
}
fn cluster() -> FallbackKind {
    FallbackKind::Cluster {
        cluster: "replica".into(),
    }
}
fn queue() -> FallbackKind {
    FallbackKind::Queue {
        max_items: 10,
        max_bytes: 1000,
    }
}
fn fixed() -> FallbackKind {
    FallbackKind::Static {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("content-length".into(), "99".into()),
            ("X-Levee-Fallback".into(), "spoof".into()),
        ],
        body: b"{\"items\":[]}".to_vec(),
    }
}

fn all() -> Vec<FallbackEntry> {
    vec![
        entry(stale(), &[]),
        entry(cluster(), &[]),
        entry(queue(), &[]),
        entry(fixed(), &[]),
    ]
}

fn kinds(entries: &[FallbackEntry], method: &str, s: Situation) -> Vec<&'static str> {
    choose(entries, method, s)
        .map(|e| kind_name(&e.kind))
        .collect()
}

#[test]
fn chain_matrix_for_both_modes() {
    let every = vec!["stale_cache", "cluster", "queue", "static"];
    let local = vec!["stale_cache", "static"];
    let none: Vec<&str> = vec![];
    let sent = |mode| Situation {
        headers_sent: true,
        ..Situation::failed(mode, false)
    };
    let cases = [
        (
            "callout, breaker open",
            Situation::breaker_open(Forward::Callout),
            &every,
        ),
        (
            "router, breaker open",
            Situation::breaker_open(Forward::Router),
            &every,
        ),
        (
            "router, breaker open, body",
            Situation {
                request_has_body: true,
                ..Situation::breaker_open(Forward::Router)
            },
            &every,
        ),
        (
            "callout, failed, no body",
            Situation::failed(Forward::Callout, false),
            &every,
        ),
        (
            "callout, failed, body",
            Situation::failed(Forward::Callout, true),
            &every,
        ),
        (
            "router, failed, no body",
            Situation::failed(Forward::Router, false),
            &every,
        ),
        (
            "router, failed, body",
            Situation::failed(Forward::Router, true),
            &local,
        ),
        ("callout, headers sent", sent(Forward::Callout), &none),
        ("router, headers sent", sent(Forward::Router), &none),
    ];
    for (name, situation, want) in cases {
        assert_eq!(&kinds(&all(), "GET", situation), want, "{name}");
    }
}

#[test]
fn methods_filter_entries_exactly() {
    let entries = vec![
        entry(stale(), &["GET", "HEAD"]),
        entry(queue(), &["POST"]),
        entry(fixed(), &[]),
    ];
    let s = Situation::breaker_open(Forward::Callout);
    assert_eq!(kinds(&entries, "GET", s), ["stale_cache", "static"]);
    assert_eq!(kinds(&entries, "POST", s), ["queue", "static"]);
    assert_eq!(kinds(&entries, "get", s), ["static"]);
    assert_eq!(kinds(&entries, "DELETE", s), ["static"]);
}

#[test]
fn chain_keeps_config_order() {
    let entries = vec![
        entry(fixed(), &["PUT"]),
        entry(cluster(), &[]),
        entry(stale(), &[]),
    ];
    let s = Situation::failed(Forward::Callout, false);
    assert_eq!(
        kinds(&entries, "PUT", s),
        ["static", "cluster", "stale_cache"]
    );
}

#[test]
fn static_reply_carries_config_and_marker_only() {
    let r = static_reply(&fixed()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"{\"items\":[]}");
    assert_eq!(
        r.headers,
        vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-levee-fallback".into(), "static".into()),
        ]
    );
    assert_eq!(static_reply(&stale()), None);
}

#[test]
fn markers_and_metric_names_per_kind() {
    assert_eq!(
        [stale(), cluster(), queue(), fixed()].map(|k| (kind_name(&k), marker(&k))),
        [
            ("stale_cache", "stale-cache"),
            ("cluster", "secondary"),
            ("queue", "queued"),
            ("static", "static"),
        ]
    );
    let mut h = vec![
        ("x-levee-fallback".to_owned(), "static".to_owned()),
        ("a".into(), "1".into()),
    ];
    mark(&mut h, "secondary");
    assert_eq!(
        h,
        vec![
            ("a".to_owned(), "1".to_owned()),
            ("x-levee-fallback".into(), "secondary".into())
        ]
    );
}
