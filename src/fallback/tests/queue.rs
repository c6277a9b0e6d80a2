use std::time::Duration;

use crate::config::Jitter;
use crate::fallback::delivery::*;
use crate::fallback::queue::*;
use crate::fallback::{FALLBACK_HEADER, MARK_QUEUED};
use crate::random::SplitMix64;
use crate::request::saved::SavedRequest;
use crate::retry::backoff::Backoff;
use crate::time::{NANOS_PER_MILLI, NANOS_PER_SEC};

const T0: u64 = 1_700_000_000 * NANOS_PER_SEC;
const MS: u64 = NANOS_PER_MILLI;

fn policy() -> DeliveryPolicy {
    DeliveryPolicy {
        backoff: Backoff::new(
            Jitter::None,
            Duration::from_millis(100),
            Duration::from_millis(1000),
        ),
        lease_ns: 5 * NANOS_PER_SEC,
        max_age_ns: 3600 * NANOS_PER_SEC,
    }
}

fn queue(max_items: u32, max_bytes: u64) -> RequestQueue {
    RequestQueue::new(
        QueueLimits {
            max_items,
            max_bytes,
        },
        policy(),
        "idempotency-key",
    )
}

fn post(body: &[u8], headers: &[(&str, &str)]) -> SavedRequest {
    SavedRequest {
        method: "POST".into(),
        path: "/orders?x=1".into(),
        authority: "orders.internal".into(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect(),
        body: std::rc::Rc::new(body.to_vec()),
    }
}

fn deliver(q: &mut RequestQueue, now: u64) -> DeliveryTicket {
    match q.next_due(now) {
        Some(Due::Deliver(t)) => t,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[test]
fn queue_is_bounded_by_items() {
    let mut q = queue(2, 1 << 20);
    let mut rng = SplitMix64::seeded(1);
    q.enqueue(post(b"a", &[]), &mut rng, T0).unwrap();
    q.enqueue(post(b"b", &[]), &mut rng, T0).unwrap();
    assert_eq!(
        q.enqueue(post(b"c", &[]), &mut rng, T0),
        Err(QueueFull::Items { max: 2 })
    );
    assert_eq!(q.len(), 2);
}

#[test]
fn queue_is_bounded_by_bytes_and_frees_them_on_delivery() {
    let mut rng = SplitMix64::seeded(1);
    let mut probe = queue(100, 1 << 20);
    probe.enqueue(post(&[0; 1000], &[]), &mut rng, T0).unwrap();
    let one = probe.bytes();
    // Body, request line, the key header and the key, plus the bookkeeping allowance.
    assert_eq!(
        one,
        ITEM_OVERHEAD_BYTES + 1000 + 4 + 11 + 15 + HEADER_OVERHEAD_BYTES + 15 + 22 + 22
    );
    let mut q = queue(100, 2 * one + 10);
    q.enqueue(post(&[0; 1000], &[]), &mut rng, T0).unwrap();
    q.enqueue(post(&[0; 1000], &[]), &mut rng, T0).unwrap();
    assert_eq!(q.bytes(), 2 * one);
    assert!(matches!(
        q.enqueue(post(&[0; 1000], &[]), &mut rng, T0),
        Err(QueueFull::Bytes { .. })
    ));
    // A smaller one still fits; a delivery frees room.
    q.enqueue(post(b"", &[]), &mut rng, T0)
        .expect_err("header overhead alone exceeds 10 bytes");
    let t = deliver(&mut q, T0);
    let settled = q.on_delivery_result(t, DeliveryOutcome::Delivered { status: 201 }, &mut rng, T0);
    assert_eq!(settled, Settled::Delivered { attempts: 1 });
    assert_eq!(q.bytes(), one);
    q.enqueue(post(&[0; 1000], &[]), &mut rng, T0).unwrap();
}

#[test]
fn an_item_larger_than_max_bytes_is_refused() {
    let mut q = queue(10, 100);
    let mut rng = SplitMix64::seeded(1);
    assert!(matches!(
        q.enqueue(post(&[0; 200], &[]), &mut rng, T0),
        Err(QueueFull::Bytes { used: 0, .. })
    ));
    assert!(q.is_empty());
}

#[test]
fn deliveries_carry_the_clients_key_or_a_generated_one() {
    let mut q = queue(10, 1 << 20);
    let mut rng = SplitMix64::seeded(7);
    let theirs = q
        .enqueue(post(b"{}", &[("Idempotency-Key", "abc")]), &mut rng, T0)
        .unwrap();
    let ours = q.enqueue(post(b"{}", &[]), &mut rng, T0).unwrap();
    assert_eq!(q.idempotency_key(theirs), Some("abc"));
    assert_eq!(
        q.idempotency_key(ours),
        Some(format!("levee-{ours}").as_str())
    );
    let headers = q.call_headers(ours).unwrap();
    assert_eq!(
        &headers[..3],
        &[
            (":method".to_owned(), "POST".to_owned()),
            (":path".to_owned(), "/orders?x=1".to_owned()),
            (":authority".to_owned(), "orders.internal".to_owned()),
        ]
    );
    assert!(headers.contains(&("idempotency-key".into(), format!("levee-{ours}"))));
    assert_eq!(format!("{ours}").len(), 16);
}

#[test]
fn connection_headers_are_not_queued() {
    let mut q = queue(10, 1 << 20);
    let mut rng = SplitMix64::seeded(7);
    let id = q
        .enqueue(
            post(
                b"{}",
                &[
                    (":method", "POST"),
                    ("content-length", "2"),
                    ("connection", "x-hop"),
                    ("x-hop", "1"),
                    ("transfer-encoding", "chunked"),
                    ("content-type", "application/json"),
                ],
            ),
            &mut rng,
            T0,
        )
        .unwrap();
    let names: Vec<&str> = q
        .request(id)
        .unwrap()
        .headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, ["content-type", "idempotency-key"]);
}

#[test]
fn accepted_reply_is_202_with_id_and_marker() {
    let r = accepted_reply(QueueId(0xab));
    assert_eq!(r.status, 202);
    assert!(r
        .headers
        .contains(&(FALLBACK_HEADER.into(), MARK_QUEUED.into())));
    assert!(r
        .headers
        .contains(&("content-type".into(), "application/json".into())));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"id": "00000000000000ab", "status": "queued"})
    );
}

#[test]
fn delivery_retry_schedule_follows_the_backoff() {
    let mut q = queue(10, 1 << 20);
    let mut rng = SplitMix64::seeded(1);
    let id = q.enqueue(post(b"x", &[]), &mut rng, T0).unwrap();
    assert_eq!(q.next_wake(), Some(T0));
    let mut now = T0;
    let mut waits = Vec::new();
    for attempt in 1..=5 {
        let t = deliver(&mut q, now);
        assert_eq!(t, DeliveryTicket { id, attempt });
        assert_eq!(q.next_due(now), None, "leased, not handed out twice");
        let failed = DeliveryOutcome::from_status(Some(503), None);
        let Settled::RetryAt(at) = q.on_delivery_result(t, failed, &mut rng, now) else {
            panic!("not rescheduled")
        };
        assert_eq!(q.next_due(at - 1), None);
        waits.push((at - now) / MS);
        now = at;
    }
    assert_eq!(waits, [100, 200, 400, 800, 1000]);
    let t = deliver(&mut q, now);
    assert_eq!(
        q.on_delivery_result(
            t,
            DeliveryOutcome::from_status(Some(200), None),
            &mut rng,
            now
        ),
        Settled::Delivered { attempts: 6 }
    );
    assert!(q.is_empty());
    assert_eq!(q.next_wake(), None);
}

#[test]
fn retry_after_stretches_the_wait_and_not_sent_costs_no_attempt() {
    let mut q = queue(10, 1 << 20);
    let mut rng = SplitMix64::seeded(1);
    q.enqueue(post(b"x", &[]), &mut rng, T0).unwrap();
    let t = deliver(&mut q, T0);
    let r = DeliveryOutcome::from_status(Some(429), Some(3 * NANOS_PER_SEC));
    assert_eq!(
        q.on_delivery_result(t, r, &mut rng, T0),
        Settled::RetryAt(T0 + 3 * NANOS_PER_SEC)
    );
    let now = T0 + 3 * NANOS_PER_SEC;
    let t = deliver(&mut q, now);
    assert_eq!(t.attempt, 2);
    let breaker = DeliveryOutcome::NotSent { retry_at: now + 7 };
    assert_eq!(
        q.on_delivery_result(t, breaker, &mut rng, now),
        Settled::RetryAt(now + 7)
    );
    assert_eq!(deliver(&mut q, now + 7).attempt, 2, "not counted");
}

#[test]
fn a_lost_answer_is_delivered_again_after_the_lease() {
    let mut q = queue(10, 1 << 20);
    let mut rng = SplitMix64::seeded(1);
    q.enqueue(post(b"x", &[]), &mut rng, T0).unwrap();
    let first = deliver(&mut q, T0);
    assert_eq!(q.next_due(T0 + 5 * NANOS_PER_SEC - 1), None);
    let second = deliver(&mut q, T0 + 5 * NANOS_PER_SEC);
    assert_eq!(second.attempt, 2);
    // The first attempt's late failure is stale; its late success completes the item.
    let failed = DeliveryOutcome::Failed {
        retry_after_ns: None,
    };
    assert_eq!(
        q.on_delivery_result(first, failed, &mut rng, T0),
        Settled::Stale
    );
    let ok = DeliveryOutcome::Delivered { status: 200 };
    assert_eq!(
        q.on_delivery_result(first, ok, &mut rng, T0),
        Settled::Delivered { attempts: 2 }
    );
    assert_eq!(
        q.on_delivery_result(second, ok, &mut rng, T0),
        Settled::Stale
    );
    assert!(q.is_empty());
}

#[test]
fn an_item_is_given_up_after_max_age() {
    let mut q = queue(10, 1 << 20);
    let mut rng = SplitMix64::seeded(1);
    let id = q.enqueue(post(b"x", &[]), &mut rng, T0).unwrap();
    let t = deliver(&mut q, T0);
    let failed = DeliveryOutcome::Failed {
        retry_after_ns: Some(3600 * NANOS_PER_SEC),
    };
    assert_eq!(
        q.on_delivery_result(t, failed, &mut rng, T0),
        Settled::GaveUp { attempts: 1 }
    );
    assert!(q.is_empty() && q.bytes() == 0);
    // And an item that waits past max_age without a result is given up when due.
    let id2 = q.enqueue(post(b"x", &[]), &mut rng, T0).unwrap();
    assert_ne!(id, id2);
    let later = T0 + 3600 * NANOS_PER_SEC;
    assert_eq!(
        q.next_due(later),
        Some(Due::GiveUp {
            id: id2,
            attempts: 0
        })
    );
    assert!(q.is_empty());
}

#[test]
fn final_answers_are_delivered_and_retryable_ones_are_not() {
    for (status, delivered) in [
        (Some(200), true),
        (Some(201), true),
        (Some(400), true),
        (Some(409), true),
        (Some(408), false),
        (Some(425), false),
        (Some(429), false),
        (Some(500), false),
        (Some(503), false),
        (None, false),
    ] {
        let o = DeliveryOutcome::from_status(status, None);
        assert_eq!(
            matches!(o, DeliveryOutcome::Delivered { .. }),
            delivered,
            "{status:?}"
        );
    }
}
