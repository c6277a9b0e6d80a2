//! Which attempts are retried, after how long, and what the client finally gets.

use super::*;
use crate::config::Jitter;
use crate::outcome::AttemptOutcome;
use crate::retry::{Backoff, GiveUp};

const CONNECT_FAILURE_BODY: &str = "upstream connect error or disconnect/reset before headers. \
                                    reset reason: connection failure";

fn retrying(cfg: RetryConfig) -> UpstreamConfig {
    upstream(Some(cfg))
}

#[test]
fn fails_twice_then_succeeds_on_attempt_3_after_the_seeded_backoff_delays() {
    let cfg = RetryConfig {
        jitter: Jitter::Full,
        ..retry_cfg()
    };
    // The same seed drawn by a bare backoff: the delays the forward must wait.
    let mut expect_rng = SplitMix64::seeded(42);
    let mut expect = Backoff::from_config(&cfg);
    let d0 = expect.next_delay_ns(&mut expect_rng);
    let d1 = expect.next_delay_ns(&mut expect_rng);
    assert!(
        d0 <= 100 * MS && d1 <= 200 * MS,
        "full jitter stays under the ceiling"
    );

    let mut d = Driver::new(42);
    let mut f = CalloutForward::new(0, &retrying(cfg), request("GET", &[]), false, d.now);
    dispatched(&d.next(&mut f));
    let wait = d.reply(&mut f, answer(503, &[], "down"), 20 * MS);
    assert_eq!(
        wait,
        ForwardStep::Wait {
            until: T0 + 20 * MS + d0
        }
    );

    // A timer that fires early changes nothing.
    d.now += d0 - 1;
    assert_eq!(d.next(&mut f), wait);
    let step = d.wait_out(&mut f, &wait);
    assert_eq!(dispatched(&step).timeout_ns, 2 * SEC);
    let sent_2 = d.now;

    let wait = d.reply(&mut f, CalloutAnswer::Reset, 5 * MS);
    assert_eq!(
        wait,
        ForwardStep::Wait {
            until: sent_2 + 5 * MS + d1
        }
    );
    dispatched(&d.wait_out(&mut f, &wait));

    let out = responded(d.reply(&mut f, answer(200, &[], "ok"), 7 * MS));
    assert_eq!((out.status, out.attempts), (200, 3));
    assert_eq!(header(&out.headers, "x-levee-attempts"), Some(&b"3"[..]));
    assert_eq!(d.count(UpstreamEvent::Attempts), 3);
    assert_eq!(d.count(UpstreamEvent::Retries), 2);
    assert_eq!(d.count(UpstreamEvent::RetriesExhausted), 0);
    assert_eq!(d.metrics.attempts_per_request, [(0, 3)]);
}

#[test]
fn not_found_is_never_retried() {
    for status in [400, 401, 404, 409] {
        let mut d = Driver::new(1);
        let mut f =
            CalloutForward::new(0, &retrying(retry_cfg()), request("GET", &[]), false, d.now);
        d.next(&mut f);
        let out = responded(d.reply(&mut f, answer(status, &[], "no"), MS));
        assert_eq!((out.status, out.attempts), (status, 1));
        assert_eq!(d.count(UpstreamEvent::Retries), 0);
    }
}

#[test]
fn post_without_key_is_not_retried_and_fails_with_the_upstream_answer() {
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(
        0,
        &retrying(retry_cfg()),
        request("POST", &[]),
        false,
        d.now,
    );
    d.next(&mut f);
    let info = failed(d.reply(&mut f, answer(503, &[], "busy"), MS));
    assert_eq!(info.gave_up, Some(GiveUp::NonIdempotent));
    assert_eq!(info.attempts, 1);
    assert_eq!(info.status(), 503);
    assert_eq!(info.last_answer.unwrap().body, b"busy");
    assert_eq!(d.count(UpstreamEvent::Retries), 0);
    assert_eq!(d.count(UpstreamEvent::RetriesExhausted), 0);
}

#[test]
fn post_with_key_is_retried_and_carries_the_key_unchanged_on_every_attempt() {
    let mut d = Driver::new(1);
    let req = request("POST", &[("Idempotency-Key", "order-77")]);
    let mut f = CalloutForward::new(0, &retrying(retry_cfg()), req, true, d.now);
    let first = d.next(&mut f);
    let wait = d.reply(&mut f, answer(502, &[], ""), MS);
    let second = d.wait_out(&mut f, &wait);
    for step in [&first, &second] {
        let r = dispatched(step);
        assert_eq!(
            header(&r.headers, "Idempotency-Key"),
            Some(&b"order-77"[..])
        );
        assert_eq!(header(&r.headers, ":method"), Some(&b"POST"[..]));
        assert_eq!(*r.body, b"{\"a\":1}");
    }
    assert_eq!(first, second, "every attempt is the same request");
}

#[test]
fn non_idempotent_never_and_always_override_the_key() {
    for (mode, has_key, retried) in [
        (NonIdempotent::Never, true, false),
        (NonIdempotent::Always, false, true),
    ] {
        let cfg = RetryConfig {
            non_idempotent: mode,
            ..retry_cfg()
        };
        let mut d = Driver::new(1);
        let mut f = CalloutForward::new(0, &retrying(cfg), request("PATCH", &[]), has_key, d.now);
        d.next(&mut f);
        let step = d.reply(&mut f, answer(500, &[], ""), MS);
        assert_eq!(
            matches!(step, ForwardStep::Wait { .. }),
            retried,
            "{mode:?}"
        );
    }
}

#[test]
fn retry_after_seconds_replaces_the_backoff_delay() {
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &retrying(retry_cfg()), request("GET", &[]), false, d.now);
    d.next(&mut f);
    let step = d.reply(&mut f, answer(503, &[("Retry-After", "2")], ""), 10 * MS);
    assert_eq!(
        step,
        ForwardStep::Wait {
            until: T0 + 10 * MS + 2 * SEC
        }
    );
}

#[test]
fn rate_limit_reset_on_429_is_honoured() {
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &retrying(retry_cfg()), request("GET", &[]), false, d.now);
    d.next(&mut f);
    let step = d.reply(
        &mut f,
        answer(429, &[("x-ratelimit-reset", "1")], ""),
        10 * MS,
    );
    assert_eq!(
        step,
        ForwardStep::Wait {
            until: T0 + 10 * MS + SEC
        }
    );
}

#[test]
fn retry_after_zero_dispatches_at_once() {
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &retrying(retry_cfg()), request("GET", &[]), false, d.now);
    d.next(&mut f);
    let step = d.reply(&mut f, answer(503, &[("retry-after", "0")], ""), MS);
    dispatched(&step);
    assert_eq!(f.attempts(), 2);
}

#[test]
fn retry_after_beyond_the_deadline_stops_and_serves_the_503() {
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &retrying(retry_cfg()), request("GET", &[]), false, d.now);
    d.next(&mut f);
    let info = failed(d.reply(&mut f, answer(503, &[("retry-after", "60")], "later"), MS));
    assert_eq!(info.gave_up, Some(GiveUp::RetryAfterBeyondDeadline));
    assert_eq!(info.status(), 503);
    assert_eq!(d.count(UpstreamEvent::RetriesExhausted), 1);
}

#[test]
fn a_429_after_the_last_retry_is_answered_not_failed() {
    let cfg = RetryConfig {
        max_retries: 1,
        respect_retry_after: false,
        ..retry_cfg()
    };
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &retrying(cfg), request("GET", &[]), false, d.now);
    d.next(&mut f);
    let wait = d.reply(&mut f, answer(429, &[], ""), MS);
    d.wait_out(&mut f, &wait);
    let out = responded(d.reply(&mut f, answer(429, &[("retry-after", "5")], "slow"), MS));
    assert_eq!((out.status, out.attempts), (429, 2));
    assert_eq!(header(&out.headers, "retry-after"), Some(&b"5"[..]));
    assert_eq!(d.count(UpstreamEvent::RetriesExhausted), 1);
}

#[test]
fn a_5xx_after_the_last_retry_fails_with_that_answer_for_the_fallbacks() {
    let cfg = RetryConfig {
        max_retries: 2,
        ..retry_cfg()
    };
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &retrying(cfg), request("GET", &[]), false, d.now);
    d.next(&mut f);
    for _ in 0..2 {
        let wait = d.reply(&mut f, answer(500, &[], ""), MS);
        d.wait_out(&mut f, &wait);
    }
    let info = failed(d.reply(&mut f, answer(500, &[("x-a", "1")], "third"), MS));
    assert_eq!((info.attempts, info.gave_up), (3, Some(GiveUp::MaxRetries)));
    let last = info.last_answer.unwrap();
    assert_eq!((last.status, last.attempts), (500, 3));
    assert_eq!(header(&last.headers, "x-levee-attempts"), Some(&b"3"[..]));
    assert_eq!(d.count(UpstreamEvent::RetriesExhausted), 1);
    assert_eq!(d.metrics.attempts_per_request, [(0, 3)]);
}

#[test]
fn a_5xx_not_in_retry_on_fails_at_once() {
    let cfg = RetryConfig {
        retry_on: vec![OutcomeClass::Reset],
        ..retry_cfg()
    };
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &retrying(cfg), request("GET", &[]), false, d.now);
    d.next(&mut f);
    let info = failed(d.reply(&mut f, answer(500, &[], ""), MS));
    assert_eq!(info.gave_up, Some(GiveUp::NotRetryable));
}

#[test]
fn envoys_504_at_the_timeout_is_a_timeout_and_its_503_connect_error_a_connect_failure() {
    let cfg = RetryConfig {
        retry_on: vec![OutcomeClass::Timeout, OutcomeClass::ConnectFailure],
        max_retries: 2,
        ..retry_cfg()
    };
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &retrying(cfg), request("GET", &[]), false, d.now);
    d.next(&mut f);
    // A plain 504 whose elapsed time reaches the 2 s attempt timeout.
    let wait = d.reply(&mut f, answer(504, &[], ""), 2 * SEC);
    assert!(matches!(wait, ForwardStep::Wait { .. }), "{wait:?}");
    d.wait_out(&mut f, &wait);
    let wait = d.reply(&mut f, answer(503, &[], CONNECT_FAILURE_BODY), MS);
    assert!(matches!(wait, ForwardStep::Wait { .. }), "{wait:?}");
    d.wait_out(&mut f, &wait);
    let info = failed(d.reply(&mut f, answer(503, &[], CONNECT_FAILURE_BODY), MS));
    assert!(matches!(
        info.last_outcome,
        Some(AttemptOutcome::Response {
            connect_failure: true,
            ..
        })
    ));
    assert_eq!(info.details(), "levee_upstream_connect_failure");
    assert_eq!(info.status(), 503);
}

#[test]
fn a_fast_504_is_an_ordinary_answer_not_a_timeout() {
    let cfg = RetryConfig {
        retry_on: vec![OutcomeClass::Timeout],
        ..retry_cfg()
    };
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &retrying(cfg), request("GET", &[]), false, d.now);
    d.next(&mut f);
    let info = failed(d.reply(&mut f, answer(504, &[], "gateway said no"), 50 * MS));
    assert_eq!(info.gave_up, Some(GiveUp::NotRetryable));
    assert_eq!(
        info.last_outcome,
        Some(AttemptOutcome::response(504, 50 * MS))
    );
}
