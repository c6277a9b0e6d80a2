//! Tests for [`super`]: classification of callout and router outcomes.

use super::*;
use OutcomeClass::*;

const SEC: u64 = 1_000_000_000;
const CONNECT_BODY: &[u8] = b"upstream connect error or disconnect/reset before headers. \
    reset reason: remote connection failure, transport failure reason: delayed connect error: 111";

#[test]
fn callout_without_headers_is_a_reset() {
    assert_eq!(
        classify_callout(false, 0, 10, SEC, b""),
        AttemptOutcome::Reset
    );
}

#[test]
fn callout_504_at_the_timeout_is_a_timeout() {
    assert_eq!(
        classify_callout(true, 504, SEC, SEC, b""),
        AttemptOutcome::Timeout
    );
    assert_eq!(
        classify_callout(true, 504, SEC - 1_000, SEC, b""),
        AttemptOutcome::Timeout
    );
    let envoy_body = b"upstream request timeout";
    assert_eq!(
        classify_callout(true, 504, 10, SEC, envoy_body),
        AttemptOutcome::Timeout
    );
}

#[test]
fn callout_early_504_from_the_upstream_is_a_response() {
    let o = classify_callout(true, 504, SEC / 10, SEC, b"<html>gateway timeout</html>");
    assert_eq!(o, AttemptOutcome::response(504, SEC / 10));
}

#[test]
fn callout_503_connect_error_body_is_a_connect_failure() {
    let o = classify_callout(true, 503, 7, SEC, CONNECT_BODY);
    assert_eq!(
        o,
        AttemptOutcome::Response {
            status: 503,
            elapsed_ns: 7,
            connect_failure: true
        }
    );
    let old = b"upstream connect error or disconnect/reset before headers. reset reason: connection failure";
    assert!(classify_callout(true, 503, 7, SEC, old).never_sent());
    let nh = classify_callout(true, 503, 7, SEC, b"no healthy upstream");
    assert!(nh.never_sent());
}

#[test]
fn callout_503_remote_reset_body_is_a_reset() {
    let body =
        b"upstream connect error or disconnect/reset before headers. reset reason: remote reset";
    assert_eq!(
        classify_callout(true, 503, 7, SEC, body),
        AttemptOutcome::Reset
    );
}

#[test]
fn callout_plain_503_is_a_response() {
    let o = classify_callout(true, 503, 7, SEC, b"{\"error\":\"busy\"}");
    assert_eq!(o, AttemptOutcome::response(503, 7));
}

#[test]
fn router_flags_take_precedence_over_status() {
    use flags::*;
    assert_eq!(
        classify_router(504, UPSTREAM_REQUEST_TIMEOUT, 1),
        AttemptOutcome::Timeout
    );
    assert!(classify_router(503, UPSTREAM_CONNECTION_FAILURE, 1).never_sent());
    assert!(classify_router(503, NO_HEALTHY_UPSTREAM, 1).never_sent());
    assert!(classify_router(503, UPSTREAM_OVERFLOW, 1).never_sent());
    assert_eq!(
        classify_router(503, UPSTREAM_REMOTE_RESET, 1),
        AttemptOutcome::Reset
    );
    assert_eq!(
        classify_router(200, UPSTREAM_CONNECTION_TERMINATION, 1),
        AttemptOutcome::Reset
    );
    assert_eq!(classify_router(500, 0, 1), AttemptOutcome::response(500, 1));
}

#[test]
fn router_ignores_downstream_flags() {
    const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 1 << 14;
    const LOCAL_RESET: u64 = 1 << 3;
    let o = classify_router(0, DOWNSTREAM_CONNECTION_TERMINATION | LOCAL_RESET, 1);
    assert_eq!(o, AttemptOutcome::response(0, 1));
    assert!(![FiveXx, GatewayError, Timeout, Reset, ConnectFailure]
        .iter()
        .any(|c| matches(c, &o)));
}

#[test]
fn five_xx_matches_every_server_failure() {
    assert!(matches(&FiveXx, &AttemptOutcome::response(500, 0)));
    assert!(matches(&FiveXx, &AttemptOutcome::response(599, 0)));
    assert!(matches(&FiveXx, &AttemptOutcome::Timeout));
    assert!(matches(&FiveXx, &AttemptOutcome::Reset));
    assert!(!matches(&FiveXx, &AttemptOutcome::response(499, 0)));
    assert!(!matches(&FiveXx, &AttemptOutcome::response(600, 0)));
}

#[test]
fn gateway_error_is_502_503_504_and_transport_failures() {
    for s in [502, 503, 504] {
        assert!(matches(&GatewayError, &AttemptOutcome::response(s, 0)));
    }
    assert!(!matches(&GatewayError, &AttemptOutcome::response(500, 0)));
    assert!(matches(&GatewayError, &AttemptOutcome::Timeout));
    assert!(matches(&GatewayError, &AttemptOutcome::Reset));
}

#[test]
fn narrow_classes_match_only_their_outcome() {
    let cf = AttemptOutcome::Response {
        status: 503,
        elapsed_ns: 0,
        connect_failure: true,
    };
    assert!(matches(&ConnectFailure, &cf));
    assert!(!matches(&ConnectFailure, &AttemptOutcome::response(503, 0)));
    assert!(matches(&Timeout, &AttemptOutcome::Timeout));
    assert!(!matches(&Timeout, &AttemptOutcome::response(504, 0)));
    assert!(matches(&Reset, &AttemptOutcome::Reset));
    assert!(!matches(&Reset, &cf));
}

#[test]
fn client_errors_match_only_when_listed() {
    for s in [400, 401, 403, 404, 409, 429] {
        let o = AttemptOutcome::response(s, 0);
        assert!(![FiveXx, GatewayError, Timeout, Reset, ConnectFailure]
            .iter()
            .any(|c| matches(c, &o)));
    }
    assert!(matches(&Status(429), &AttemptOutcome::response(429, 0)));
    assert!(matches(&Status(504), &AttemptOutcome::Timeout));
    assert!(!matches(&Status(503), &AttemptOutcome::Reset));
}

#[test]
fn best_match_prefers_the_most_specific_class() {
    let all = [
        FiveXx,
        GatewayError,
        Reset,
        Timeout,
        ConnectFailure,
        Status(503),
    ];
    assert_eq!(best_match(&all, &AttemptOutcome::Reset), Some(Reset));
    assert_eq!(best_match(&all, &AttemptOutcome::Timeout), Some(Timeout));
    assert_eq!(
        best_match(&all, &AttemptOutcome::response(503, 0)),
        Some(Status(503))
    );
    assert_eq!(
        best_match(&all, &AttemptOutcome::response(500, 0)),
        Some(FiveXx)
    );
    assert_eq!(best_match(&all, &AttemptOutcome::response(404, 0)), None);
}
