//! Records in an etcd that serves clients over TLS and requires a client certificate, as in
//! production: the Envoy etcd cluster of the docs (HTTP/2, ALPN `h2`, the client certificate,
//! the CA, the server's name checked) carries levee's calls; the same cluster without a client
//! certificate is refused by etcd — its TCP health check, which runs the handshake too, marks
//! the member unhealthy — and levee answers `503` without forwarding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::Duration;

use harness::certs::Certs;
use harness::client::{send, Request};
use harness::envoy::Envoy;
use harness::etcd::Etcd;
use harness::idempotency_etcd::records;
use harness::keyed::{self, settled, until_served_with};
use harness::raw_envoy::h2_cluster;
use harness::upstream::Upstream;
use serde_json::{json, Value};

/// The etcd cluster over TLS, as the docs show it; without `client_cert`, no certificate.
fn tls_cluster(etcd: &Etcd, certs: &Certs, client_cert: bool) -> Value {
    let mut cluster = h2_cluster("etcd", &[etcd.tls_port(0)], true);
    let mut common = json!({
        "alpn_protocols": ["h2"],
        "validation_context": {
            "trusted_ca": { "filename": certs.ca },
            "match_typed_subject_alt_names": [
                { "san_type": "DNS", "matcher": { "exact": "etcd.internal" } },
            ],
        },
    });
    if client_cert {
        common["tls_certificates"] = json!([{
            "certificate_chain": { "filename": certs.client_cert },
            "private_key": { "filename": certs.client_key },
        }]);
    }
    cluster["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": "etcd.internal",
            "common_tls_context": common,
        },
    });
    cluster
}

fn levee_envoy(cluster: Value, up: &Upstream) -> Envoy {
    let config = records(json!({ "on_backend_error": "deny" }));
    harness::idempotency_etcd::levee_envoy(cluster, up, &config)
}

fn keyed(key: &str) -> Request {
    keyed::keyed(key, "amount=10")
}

#[test]
fn records_live_in_an_etcd_that_requires_a_client_certificate() {
    let certs = Certs::generate();
    let args = certs.etcd_args();
    let etcd = Etcd::single_tls(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let up = Upstream::start();

    // With the client certificate: executed once, replayed byte for byte.
    let envoy = levee_envoy(tls_cluster(&etcd, &certs, true), &up);
    // Sent until the first health check passed.
    let first = until_served_with(envoy.port(), Duration::from_secs(15), |_| keyed("tls-1"));
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.header("idempotent-replayed").is_none());
    // The completion is written after the answer went out: a moment of 409 first.
    let replay = settled(envoy.port(), &keyed("tls-1"), Duration::from_secs(3));
    assert_eq!(replay.status, 200, "{}", replay.text());
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(replay.body, first.body);
    assert_eq!(up.count_for("idempotency-key", "tls-1"), 1);
    assert!(envoy.stat("levee_backend.records.calls.ok") >= 1);

    // Without one, etcd refuses the handshake: 503, nothing forwarded.
    let anonymous = levee_envoy(tls_cluster(&etcd, &certs, false), &up);
    // The TCP health check runs the TLS handshake too: the member is seen unhealthy.
    let failed = anonymous.wait_for_stat(
        "cluster.etcd.health_check.failure",
        2,
        Duration::from_secs(15),
    );
    assert!(failed >= 2, "the health check did not fail");
    assert_eq!(anonymous.stat("cluster.etcd.membership_healthy"), 0);
    assert_eq!(envoy.stat("cluster.etcd.membership_healthy"), 1);
    for n in 0..3 {
        let key = format!("anonymous-{n}");
        let r = send(anonymous.port(), &keyed(&key));
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.header("retry-after").is_some());
        assert_eq!(up.count_for("idempotency-key", &key), 0);
    }
    assert_eq!(anonymous.stat("levee_backend.records.calls.ok"), 0);
    assert!(
        etcd.logs().contains("didn't provide a certificate"),
        "etcd did not refuse a handshake"
    );
}
