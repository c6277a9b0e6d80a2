//! Idempotency outcome classification.

use super::cfg;
use crate::idempotency::{classify, OutcomeKind, UpstreamResult};

fn response(status: u16) -> UpstreamResult {
    UpstreamResult::Response {
        status,
        body_bytes: 10,
    }
}

#[test]
fn classification_table() {
    use OutcomeKind::*;
    let table = [
        (UpstreamResult::RejectedBeforeForwarding, Released),
        (UpstreamResult::ConnectFailure, Released),
        (UpstreamResult::ClientGoneBeforeForwarding, Released),
        (UpstreamResult::ClientGoneAfterForwarding, Unknown),
        (UpstreamResult::Timeout, Unknown),
        (UpstreamResult::Reset, Unknown),
        (response(408), Released),
        (response(425), Released),
        (response(429), Released),
        (response(503), Released),
        (response(502), Unknown),
        (response(504), Unknown),
        (response(200), Stored),
        (response(201), Stored),
        (response(204), Stored),
        (response(302), Stored),
        (response(400), Stored),
        (response(404), Stored),
        (response(409), Stored),
        (response(422), Stored),
        (response(500), Stored),
        (response(501), Stored),
        (
            UpstreamResult::Response {
                status: 200,
                body_bytes: 1000,
            },
            Stored,
        ),
        (
            UpstreamResult::Response {
                status: 200,
                body_bytes: 1001,
            },
            TooLarge,
        ),
        (
            UpstreamResult::Response {
                status: 500,
                body_bytes: 5000,
            },
            TooLarge,
        ),
        (
            UpstreamResult::Response {
                status: 503,
                body_bytes: 5000,
            },
            Released,
        ),
        (
            UpstreamResult::Response {
                status: 504,
                body_bytes: 5000,
            },
            Unknown,
        ),
    ];
    for (result, want) in table {
        assert_eq!(classify(&cfg(), result), want, "{result:?}");
    }
}

#[test]
fn release_on_is_the_operators_list() {
    let mut c = cfg();
    c.release_on = vec![502];
    assert_eq!(classify(&c, response(502)), OutcomeKind::Released);
    assert_eq!(classify(&c, response(503)), OutcomeKind::Stored);
    c.release_on.clear();
    assert_eq!(classify(&c, response(429)), OutcomeKind::Stored);
}

#[test]
fn outcome_names_match_the_metrics() {
    assert_eq!(OutcomeKind::TooLarge.as_str(), "too_large");
    assert_eq!(OutcomeKind::Released.as_str(), "released");
}
