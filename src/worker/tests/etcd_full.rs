//! etcd's database full (its `NOSPACE` alarm: every write refused with `RESOURCE_EXHAUSTED`,
//! reads served), through the real worker: a stored key still replays byte for byte, another
//! body on it is `422`, a key in flight is `409`, each at the cost of one read after the
//! refused claim; a key that needs a new record is left to `on_backend_error` as when etcd is
//! down, and so is a request whose read fails too. Never more than one read per request.

use crate::idempotency::remote::fake_etcd::FakeEtcd;
use crate::metrics::{BackendEvent, Event, IdempotencyEvent};
use crate::store::MemoryStore;
use crate::time::NANOS_PER_MILLI as MS;

use super::super::fake_host::FakeHost;
use super::super::Worker;
use super::etcd::{
    assert_backend_refusal, assert_forwarded_unprotected, assert_replayed, backend_decisions, doc,
    etcd_rig, forwarded, header, post, reply_of, upstream_answers,
};

/// (claims refused for lack of space, Txns etcd served) since `since`.
fn calls_since(etcd: &FakeEtcd, since: (u32, u32)) -> (u32, u32) {
    (etcd.refused_full - since.0, etcd.txns - since.1)
}

fn mark(etcd: &FakeEtcd) -> (u32, u32) {
    (etcd.refused_full, etcd.txns)
}

/// A worker whose etcd holds key `k1` answered `201 paid` for body `amount=10`, then fills up.
fn full_with_a_stored_key(store: &MemoryStore) -> (Worker, FakeHost<'_>, FakeEtcd) {
    let (w, mut host, mut etcd) = etcd_rig(doc("deny"), store);
    let (first, _) = post(&w, &mut host, &mut etcd, 2, b"amount=10");
    upstream_answers(&w, &mut host, &mut etcd, 2, &first, 201, b"paid");
    assert_eq!(etcd.kvs.len(), 1, "the record is stored");
    etcd.full = true;
    host.now += 1_000 * MS;
    (w, host, etcd)
}

#[test]
fn a_stored_key_replays_byte_for_byte_from_one_read_while_etcd_is_full() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = full_with_a_stored_key(&store);
    for id in 3..6 {
        let before = mark(&etcd);
        let (_, seen) = post(&w, &mut host, &mut etcd, id, b"amount=10");
        assert_replayed(&seen, 201, b"paid");
        let (_, headers, _) = reply_of(&seen).expect("replayed");
        assert_eq!(header(&headers, "content-type"), Some("text/plain"));
        assert!(!forwarded(&seen, id), "a replay is not forwarded");
        assert_eq!(
            calls_since(&etcd, before),
            (1, 1),
            "one refused claim, one read"
        );
    }
    let replayed = host
        .metrics
        .count_of(Event::Idempotency(IdempotencyEvent::Replayed));
    assert_eq!(replayed, 3);
    assert_eq!(
        backend_decisions(&host, BackendEvent::DecisionDeny),
        0,
        "no backend decision taken"
    );
}

#[test]
fn another_body_on_a_stored_key_is_422_while_etcd_is_full() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = full_with_a_stored_key(&store);
    let before = mark(&etcd);
    let (_, seen) = post(&w, &mut host, &mut etcd, 3, b"amount=99");
    assert_eq!(reply_of(&seen).map(|r| r.0), Some(422));
    assert!(!forwarded(&seen, 3));
    assert_eq!(calls_since(&etcd, before), (1, 1));
    let mismatch = host
        .metrics
        .count_of(Event::Idempotency(IdempotencyEvent::Mismatch));
    assert_eq!(mismatch, 1);
}

#[test]
fn a_key_in_flight_is_409_with_retry_after_while_etcd_is_full() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(doc("deny"), &store);
    let (_first, seen) = post(&w, &mut host, &mut etcd, 2, b"amount=10");
    assert!(forwarded(&seen, 2));
    etcd.full = true;
    let before = mark(&etcd);
    let (_, seen) = post(&w, &mut host, &mut etcd, 3, b"amount=10");
    let (status, headers, _) = reply_of(&seen).expect("answered");
    assert_eq!(status, 409);
    assert!(header(&headers, "retry-after").is_some(), "{headers:?}");
    assert!(!forwarded(&seen, 3));
    assert_eq!(calls_since(&etcd, before), (1, 1));
}

#[test]
fn a_fresh_key_is_denied_with_503_and_nothing_written_while_etcd_is_full() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(doc("deny"), &store);
    etcd.full = true;
    let (_, seen) = post(&w, &mut host, &mut etcd, 2, b"a");
    assert_backend_refusal(&seen);
    assert!(!forwarded(&seen, 2), "not forwarded");
    assert!(etcd.kvs.is_empty(), "nothing written");
    // The refused claim (or lease grant) and one read of the absent key: no loop.
    assert_eq!(calls_since(&etcd, (0, 0)), (1, 1));
    assert_eq!(backend_decisions(&host, BackendEvent::DecisionDeny), 1);
}

#[test]
fn a_fresh_key_under_allow_is_forwarded_without_a_record_while_etcd_is_full() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(doc("allow"), &store);
    etcd.full = true;
    let (stream, seen) = post(&w, &mut host, &mut etcd, 2, b"a");
    assert_forwarded_unprotected(&seen, 2);
    assert_eq!(backend_decisions(&host, BackendEvent::DecisionAllow), 1);
    upstream_answers(&w, &mut host, &mut etcd, 2, &stream, 200, b"ok");
    assert!(etcd.kvs.is_empty(), "no record for an unprotected request");
    assert_eq!(calls_since(&etcd, (0, 0)), (1, 1));
}

#[test]
fn a_read_that_fails_too_leaves_a_stored_key_to_the_policy_without_a_second_read() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = full_with_a_stored_key(&store);
    // The read is served but its answer is lost on the way back.
    etcd.lose_answers = 1;
    let before = mark(&etcd);
    let (_, seen) = post(&w, &mut host, &mut etcd, 3, b"amount=10");
    assert_backend_refusal(&seen);
    assert!(!forwarded(&seen, 3));
    assert_eq!(calls_since(&etcd, before), (1, 1), "one read, not retried");
    // The next retry reads again and replays.
    let (_, seen) = post(&w, &mut host, &mut etcd, 4, b"amount=10");
    assert_replayed(&seen, 201, b"paid");
}
