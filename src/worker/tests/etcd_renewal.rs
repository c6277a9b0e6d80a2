//! A key held in etcd while its request runs (router mode through the real worker): the lock
//! renewed from the request's timer so a slow request keeps its key, a renewal refused by the
//! fence (another owner took the key) counted and its completion refused, and a completion
//! that cannot be written sent again on the root's timer until the lock would expire.

use serde_json::{json, Value};

use crate::idempotency::record::Record;
use crate::idempotency::remote::fake_etcd::FakeEtcd;
use crate::idempotency::remote::record::StoredRecord;
use crate::metrics::{BackendEvent, Event};
use crate::store::MemoryStore;
use crate::time::NANOS_PER_MILLI as MS;

use super::super::fake_host::{Call, FakeHost};
use super::super::Worker;
use super::etcd::{
    assert_answered, doc, etcd_rig, post, reply_of, revision, serve, upstream_answers, writing,
};
use super::{ROOT, T0};

/// Records in etcd with a 3 s lock (renewed every second).
fn held() -> Value {
    let mut d = doc("deny");
    d["idempotency"]["lock_timeout"] = json!("3s");
    d
}

/// Moves the clock to `to`, firing timers and answering from `etcd` what the root sends.
fn run_until(w: &Worker, host: &mut FakeHost<'_>, etcd: &mut FakeEtcd, to: u64) {
    while let Some(at) = w.next_deadline().filter(|at| *at <= to) {
        host.now = host.now.max(at);
        host.current = ROOT;
        w.on_tick(host);
        let _ = serve(w, host, etcd);
    }
    host.now = to;
}

fn count(host: &FakeHost<'_>, what: BackendEvent) -> usize {
    host.metrics.count_of(Event::Backend { backend: 0, what })
}

#[test]
fn a_slow_request_keeps_its_key_past_lock_timeout_by_renewing_it() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(held(), &store);
    let (first, seen) = post(&w, &mut host, &mut etcd, 2, b"a");
    assert!(seen.iter().any(|(id, c)| *id == 2 && *c == Call::Resume));
    assert!(w.has_timer(2), "the renewal timer");
    let claimed = revision(&etcd);

    // 5 s later (the lock was 3 s), the record was renewed, and the key is still busy.
    run_until(&w, &mut host, &mut etcd, T0 + 5_000 * MS);
    assert!(revision(&etcd) > claimed, "renewed in etcd");
    let (_, seen) = post(&w, &mut host, &mut etcd, 3, b"a");
    assert_eq!(reply_of(&seen).map(|r| r.0), Some(409), "{seen:?}");

    upstream_answers(&w, &mut host, &mut etcd, 2, &first, 200, b"done");
    assert_eq!(writing(&w), Some(0));
    assert!(!w.has_timer(2), "no renewal after the end");
    let (_, seen) = post(&w, &mut host, &mut etcd, 4, b"a");
    assert_answered(&seen, 200, b"done");
    assert_eq!(count(&host, BackendEvent::RenewalFenced), 0);
}

#[test]
fn a_renewal_refused_by_the_fence_is_counted_and_the_late_completion_is_refused() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(held(), &store);
    let (first, _) = post(&w, &mut host, &mut etcd, 2, b"a");

    // The key is taken by another owner (say, after this Envoy was paused past the lock).
    etcd.kvs.clear();
    let (second, seen) = post(&w, &mut host, &mut etcd, 3, b"a");
    assert!(seen.iter().any(|(id, c)| *id == 3 && *c == Call::Resume));
    let theirs = etcd.kvs.clone();

    // The first request's renewal is refused by the fence: counted, renewals stop.
    run_until(&w, &mut host, &mut etcd, T0 + 1_500 * MS);
    assert_eq!(count(&host, BackendEvent::RenewalFenced), 1);
    // Its completion is refused too: the new owner's record is untouched.
    upstream_answers(&w, &mut host, &mut etcd, 2, &first, 200, b"late");
    assert_eq!(count(&host, BackendEvent::CompletionFenced), 1);
    let key = theirs.keys().next().expect("their record");
    let record = etcd
        .kvs
        .get(key)
        .and_then(|kv| StoredRecord::decode(&kv.value));
    assert!(
        matches!(record.map(|r| r.record), Some(Record::InFlight(_))),
        "still the second request's lock"
    );
    assert_eq!(count(&host, BackendEvent::RenewalFenced), 1, "counted once");

    upstream_answers(&w, &mut host, &mut etcd, 3, &second, 201, b"theirs");
    let (_, seen) = post(&w, &mut host, &mut etcd, 4, b"a");
    assert_answered(&seen, 201, b"theirs");
}

#[test]
fn a_completion_etcd_refuses_is_retried_on_the_root_timer_with_a_growing_pause() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(held(), &store);
    let (first, _) = post(&w, &mut host, &mut etcd, 2, b"a");
    etcd.down = true;
    upstream_answers(&w, &mut host, &mut etcd, 2, &first, 200, b"done");
    assert_eq!(count(&host, BackendEvent::CompletionRetried), 1);
    let first_retry = w.next_deadline().expect("the root wakes to retry");
    run_until(&w, &mut host, &mut etcd, first_retry);
    let second_retry = w.next_deadline().expect("and again");
    assert!(second_retry - first_retry >= 200 * MS, "the pause doubles");
    assert!(count(&host, BackendEvent::CompletionRetried) >= 2);

    // etcd back (the backend's breaker lets a probe through after its pause): written.
    etcd.down = false;
    run_until(&w, &mut host, &mut etcd, T0 + 2_800 * MS);
    assert_eq!(writing(&w), Some(0));
    let (_, seen) = post(&w, &mut host, &mut etcd, 3, b"a");
    assert_answered(&seen, 200, b"done");
    assert_eq!(count(&host, BackendEvent::CompletionUnknown), 0);
}

#[test]
fn a_completion_not_written_before_the_lock_expires_leaves_the_key_unknown() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(held(), &store);
    let (first, _) = post(&w, &mut host, &mut etcd, 2, b"a");
    etcd.down = true;
    upstream_answers(&w, &mut host, &mut etcd, 2, &first, 200, b"done");
    run_until(&w, &mut host, &mut etcd, T0 + 4_000 * MS);
    assert_eq!(count(&host, BackendEvent::CompletionUnknown), 1);
    assert_eq!(writing(&w), Some(0));
    assert_eq!(w.next_deadline(), None, "nothing left to wake for");
    // The record is left in flight: once its lock expired, the key is retaken.
    etcd.down = false;
    host.now += 10_000 * MS;
    let (_, seen) = post(&w, &mut host, &mut etcd, 3, b"a");
    assert!(reply_of(&seen).is_none(), "{seen:?}");
}
