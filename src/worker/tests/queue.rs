//! The `queue` fallback through the real worker: deliveries go out from the root context,
//! honour the upstream's `Retry-After`, and a delivered answer completes the idempotency key.

use serde_json::json;

use crate::metrics::{Event, FallbackEvent};
use crate::request::fake::FakeRequest;
use crate::store::MemoryStore;
use crate::time::NANOS_PER_SEC as SEC;
use crate::timer_queue::ContextId;

use super::super::fake_host::{Call, FakeHost};
use super::{advance, callout_upstream, dispatched_token, open, replies, worker, ROOT, T0};

/// Ticks until the root sends a delivery (at most `wakes` wake-ups): its context and token.
fn next_delivery(
    w: &crate::worker::Worker,
    host: &mut FakeHost<'_>,
    wakes: usize,
) -> Option<(ContextId, u32, u64)> {
    for _ in 0..wakes {
        let at = w.next_deadline()?;
        advance(w, host, at);
        let sent = host.take_calls().into_iter().find_map(|(id, c)| match c {
            Call::Dispatch { token, .. } => Some((id, token)),
            _ => None,
        });
        if let Some((id, token)) = sent {
            return Some((id, token, host.now));
        }
    }
    None
}

/// A keyed POST whose callout fails with 503 is queued (202) on context 2.
fn queue_one(w: &crate::worker::Worker, host: &mut FakeHost<'_>, post: &FakeRequest) {
    let (stream, _) = open(w, host, 2, post, true);
    let token = dispatched_token(host).expect("the first attempt");
    host.callout_answer = (Some(vec![(":status".into(), b"503".to_vec())]), Vec::new());
    w.on_callout_response(host, token, 1, 0);
    assert_eq!(
        replies(host),
        vec![(2, 202, "levee_fallback_queued", false)]
    );
    w.on_done(host, 2, &stream);
}

#[test]
fn a_queued_request_is_delivered_from_the_root_and_completes_its_key() {
    let store = MemoryStore::new();
    let mut doc = callout_upstream(json!([{ "queue": { "max_items": 4, "max_bytes": 65536 } }]));
    doc["idempotency"] = json!({});
    let w = worker(doc, &store);
    let mut host = FakeHost::new(&store, T0);
    let post = FakeRequest::new("POST", "/svc/pay").header("idempotency-key", "k1");
    queue_one(&w, &mut host, &post);
    let mut delivery = None;
    for _ in 0..100 {
        let at = w.next_deadline().expect("the queue wakes the root");
        advance(&w, &mut host, at);
        delivery = host.take_calls().into_iter().find_map(|(id, c)| match c {
            Call::Dispatch { token, .. } => Some((id, token)),
            _ => None,
        });
        if delivery.is_some() {
            break;
        }
    }
    let (from, token) = delivery.expect("delivered within 100 wake-ups");
    assert_eq!(from, ROOT, "deliveries are sent from the root context");
    host.callout_answer = (
        Some(vec![(":status".into(), b"200".to_vec())]),
        b"ok".to_vec(),
    );
    w.on_callout_response(&mut host, token, 1, 2);
    assert_eq!(
        host.metrics.count_of(Event::Fallback {
            upstream: 0,
            what: FallbackEvent::Delivered
        }),
        1
    );
    let (_, _) = open(&w, &mut host, 4, &post, true);
    let answered = replies(&mut host);
    assert_eq!(answered, vec![(4, 200, "levee_idempotent_replay", false)]);
}

#[test]
fn a_delivery_answered_503_with_retry_after_waits_that_long_before_the_next() {
    let store = MemoryStore::new();
    let doc = callout_upstream(json!([{ "queue": { "max_items": 4, "max_bytes": 65536 } }]));
    let w = worker(doc, &store);
    let mut host = FakeHost::new(&store, T0);
    queue_one(&w, &mut host, &FakeRequest::new("POST", "/svc/pay"));
    let (_, token, sent_at) = next_delivery(&w, &mut host, 100).expect("a first delivery");
    host.callout_answer = (
        Some(vec![
            (":status".into(), b"503".to_vec()),
            ("retry-after".into(), b"5".to_vec()),
        ]),
        Vec::new(),
    );
    w.on_callout_response(&mut host, token, 2, 0);
    let (from, _, again_at) = next_delivery(&w, &mut host, 1000).expect("a second delivery");
    assert_eq!(from, ROOT);
    assert!(
        again_at >= sent_at + 5 * SEC,
        "retried {} ms after a Retry-After of 5 s",
        (again_at - sent_at) / 1_000_000
    );
}
