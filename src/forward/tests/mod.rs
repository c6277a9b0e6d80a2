//! Tests for [`super`]: a [`Driver`] plays the host (store, clock, seeded random source,
//! metrics recorder) and a scripted upstream plays the cluster.

mod limits;
mod retries;

use std::time::Duration;

use super::*;
use crate::breaker::gate::breaker_key;
use crate::config::{
    BreakerConfig, Forward, Jitter, NonIdempotent, OutcomeClass, RetryConfig, UpstreamConfig,
};
use crate::metrics::{Event, Recorder, UpstreamEvent};
use crate::random::SplitMix64;
use crate::request::saved::SavedRequest;
use crate::store::{MemoryStore, SharedStore};
use crate::time::UnixNanos;

pub(super) const MS: u64 = 1_000_000;
pub(super) const SEC: u64 = 1_000_000_000;
pub(super) const T0: UnixNanos = 1_700_000_000 * SEC;

pub(super) fn retry_cfg() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        jitter: Jitter::None,
        deadline: Duration::from_secs(5),
        retry_on: vec![
            OutcomeClass::FiveXx,
            OutcomeClass::Reset,
            OutcomeClass::Timeout,
            OutcomeClass::ConnectFailure,
            OutcomeClass::Status(429),
        ],
        respect_retry_after: true,
        budget: None,
        non_idempotent: NonIdempotent::WithKey,
    }
}

pub(super) fn breaker_cfg(failure_threshold: u32) -> BreakerConfig {
    BreakerConfig {
        failure_threshold,
        failure_rate: None,
        slow_call: None,
        reset_timeout: Duration::from_secs(30),
        half_open_successes: 1,
        half_open_max_in_flight: 1,
        failure_on: vec![
            OutcomeClass::FiveXx,
            OutcomeClass::Timeout,
            OutcomeClass::Reset,
            OutcomeClass::ConnectFailure,
        ],
    }
}

pub(super) fn upstream(retry: Option<RetryConfig>) -> UpstreamConfig {
    UpstreamConfig {
        name: "payments".into(),
        forward: Forward::Callout,
        cluster: Some("payments-cluster".into()),
        authority: None,
        timeout: Duration::from_secs(2),
        max_body_bytes: 1 << 20,
        retry,
        circuit_breaker: None,
        cache: None,
        fallback: Vec::new(),
    }
}

pub(super) fn request(method: &str, extra: &[(&str, &str)]) -> SavedRequest {
    let mut headers = vec![
        ("x-request-id".to_string(), b"req-1".to_vec()),
        ("connection".to_string(), b"keep-alive".to_vec()),
        ("content-length".to_string(), b"7".to_vec()),
    ];
    headers.extend(
        extra
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())),
    );
    SavedRequest {
        method: method.into(),
        path: "/pay".into(),
        authority: "shop.example".into(),
        headers: headers.into(),
        body: std::rc::Rc::new(b"{\"a\":1}".to_vec()),
    }
}

pub(super) fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> CalloutAnswer {
    let mut h = vec![(":status".to_string(), status.to_string().into_bytes())];
    h.extend(
        headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())),
    );
    CalloutAnswer::from_parts(Some(h), body.as_bytes().to_vec())
}

/// The host's side of one or more forwards: shared store, clock, random source, metrics.
pub(super) struct Driver {
    pub store: MemoryStore,
    pub rng: SplitMix64,
    pub metrics: Recorder,
    pub now: UnixNanos,
}

impl Driver {
    /// A store with the breaker and budget keys of upstream `payments` pre-created.
    pub fn new(seed: u64) -> Self {
        let store = MemoryStore::new();
        store.set(&breaker_key("payments"), b"", None).unwrap();
        store.set(&budget_key("payments"), b"", None).unwrap();
        Self {
            store,
            rng: SplitMix64::seeded(seed),
            metrics: Recorder::default(),
            now: T0,
        }
    }

    pub fn next(&mut self, f: &mut CalloutForward) -> ForwardStep {
        f.next(&self.store, self.now, &mut self.rng, &mut self.metrics)
    }

    /// The attempt in flight answers `a` after `after_ns`.
    pub fn reply(
        &mut self,
        f: &mut CalloutForward,
        a: CalloutAnswer,
        after_ns: u64,
    ) -> ForwardStep {
        self.now += after_ns;
        f.on_response(&self.store, a, self.now, &mut self.rng, &mut self.metrics)
    }

    /// Moves the clock to a `Wait`'s end and asks for the next step.
    pub fn wait_out(&mut self, f: &mut CalloutForward, step: &ForwardStep) -> ForwardStep {
        let ForwardStep::Wait { until } = step else {
            panic!("expected a wait, got {step:?}");
        };
        self.now = *until;
        self.next(f)
    }

    pub fn count(&self, what: UpstreamEvent) -> usize {
        self.metrics.count_of(Event::Upstream { upstream: 0, what })
    }
}

pub(super) fn dispatched(step: &ForwardStep) -> &CalloutRequest {
    match step {
        ForwardStep::Dispatch(r) => r,
        other => panic!("expected a dispatch, got {other:?}"),
    }
}

pub(super) fn failed(step: ForwardStep) -> FailureInfo {
    match step {
        ForwardStep::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

pub(super) fn responded(step: ForwardStep) -> FinalAnswer {
    match step {
        ForwardStep::Respond(a) => a,
        other => panic!("expected a response, got {other:?}"),
    }
}

pub(super) fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

#[test]
fn callout_carries_pseudo_headers_end_to_end_headers_body_and_the_upstream_timeout() {
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &upstream(None), request("GET", &[]), false, d.now);
    let step = d.next(&mut f);
    let r = dispatched(&step);
    assert_eq!(r.cluster, "payments-cluster");
    assert_eq!(
        r.timeout_ns,
        2 * SEC,
        "no retry config: the upstream timeout"
    );
    assert_eq!(r.timeout_ms(), 2_000);
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [":method", ":path", ":authority", "x-request-id"]);
    assert_eq!(header(&r.headers, ":authority"), Some(&b"shop.example"[..]));
    assert_eq!(*r.body, b"{\"a\":1}");
}

#[test]
fn upstream_authority_replaces_the_requests() {
    let mut d = Driver::new(1);
    let mut u = upstream(None);
    u.authority = Some("payments.internal".into());
    let mut f = CalloutForward::new(0, &u, request("GET", &[]), false, d.now);
    let step = d.next(&mut f);
    assert_eq!(
        header(&dispatched(&step).headers, ":authority"),
        Some(&b"payments.internal"[..])
    );
}

#[test]
fn success_is_answered_with_hop_by_hop_headers_removed_and_the_attempt_count() {
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &upstream(None), request("GET", &[]), false, d.now);
    d.next(&mut f);
    let a = answer(
        201,
        &[
            ("content-type", "text/plain"),
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("x-trace", "t"),
        ],
        "made",
    );
    let out = responded(d.reply(&mut f, a, 30 * MS));
    assert_eq!(out.status, 201);
    assert_eq!(out.body, b"made");
    assert_eq!(out.attempts, 1);
    let names: Vec<&str> = out.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["content-type", "x-trace", "x-levee-attempts"]);
    assert_eq!(header(&out.headers, "x-levee-attempts"), Some(&b"1"[..]));
    assert_eq!(d.metrics.attempts_per_request, [(0, 1)]);
}

#[test]
fn without_retry_config_a_5xx_is_one_attempt_and_fails_with_the_answer() {
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &upstream(None), request("GET", &[]), false, d.now);
    d.next(&mut f);
    let info = failed(d.reply(&mut f, answer(500, &[], "boom"), MS));
    assert_eq!(info.attempts, 1);
    assert_eq!(info.gave_up, None);
    assert!(!info.breaker_open);
    assert_eq!(info.status(), 500);
    let last = info.last_answer.unwrap();
    assert_eq!((last.status, last.body.as_slice()), (500, &b"boom"[..]));
    assert_eq!(d.count(UpstreamEvent::Attempts), 1);
    assert_eq!(d.count(UpstreamEvent::Retries), 0);
}

#[test]
fn a_reset_without_retries_fails_as_502_with_no_answer() {
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &upstream(None), request("GET", &[]), false, d.now);
    d.next(&mut f);
    let info = failed(d.reply(&mut f, CalloutAnswer::from_parts(None, Vec::new()), MS));
    assert_eq!(
        info.last_outcome,
        Some(crate::outcome::AttemptOutcome::Reset)
    );
    assert_eq!(info.last_answer, None);
    assert_eq!(
        (info.status(), info.details()),
        (502, "levee_upstream_reset")
    );
}

#[test]
fn out_of_order_calls_are_ignored_and_cancel_ends_the_forward() {
    let mut d = Driver::new(1);
    let mut f = CalloutForward::new(0, &upstream(None), request("GET", &[]), false, d.now);
    let early = d.reply(&mut f, answer(200, &[], ""), 0);
    assert_eq!(early, ForwardStep::Ignored, "no attempt in flight yet");
    d.next(&mut f);
    assert_eq!(
        d.next(&mut f),
        ForwardStep::Ignored,
        "an attempt is in flight"
    );
    assert!(f.is_active());
    f.cancel();
    assert!(!f.is_active());
    assert_eq!(
        d.reply(&mut f, answer(200, &[], ""), MS),
        ForwardStep::Ignored
    );
    assert_eq!(d.next(&mut f), ForwardStep::Ignored);
    assert_eq!(d.count(UpstreamEvent::Attempts), 1);
}

#[test]
fn a_missing_or_invalid_status_is_a_reset() {
    let no_status = vec![("content-type".to_string(), b"x".to_vec())];
    assert_eq!(
        CalloutAnswer::from_parts(Some(no_status), Vec::new()),
        CalloutAnswer::Reset
    );
    let bad = vec![(":status".to_string(), b"2x0".to_vec())];
    assert_eq!(
        CalloutAnswer::from_parts(Some(bad), Vec::new()),
        CalloutAnswer::Reset
    );
    assert_eq!(
        CalloutAnswer::from_parts(Some(Vec::new()), Vec::new()),
        CalloutAnswer::Reset
    );
}

#[test]
fn timeout_ms_rounds_up_and_is_never_zero() {
    let r = |ns| CalloutRequest {
        cluster: String::new(),
        headers: Vec::new().into(),
        body: Vec::new().into(),
        timeout_ns: ns,
    };
    assert_eq!(r(1).timeout_ms(), 1);
    assert_eq!(r(1_500_000).timeout_ms(), 2);
    assert_eq!(r(0).timeout_ms(), 1);
}

#[test]
fn budget_key_is_stable_and_versioned() {
    assert_eq!(budget_key("payments"), "levee:v1:budget:payments");
}
