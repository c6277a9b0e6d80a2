//! When stored answers are freed, and that a free never takes a live record's answer.

use std::cell::RefCell;

use super::*;
use crate::store::{Cas, ReadError, Versioned, WriteError};

fn blob_len(resp: &StoredResponse) -> u64 {
    resp.encode().unwrap().blob.len() as u64
}

#[test]
fn a_renewal_that_drops_expired_records_frees_their_answers() {
    let (l, store) = layer(4, 1 << 20);
    let k = |n| key(1, n);
    execute(&l, &store, k(1), 1, &answer(1, 100), T0); // at rest from T0 + 10 s
    claim(&l, &store, k(2), 2, T0 + 9 * SEC);
    assert!(
        l.renew(&store, k(2), 2, T0 + 11 * SEC),
        "the renewal drops key 1"
    );
    assert_eq!(held(&store), 0);
    assert_exact(&store);
    assert_eq!(retry(&l, &store, k(2), T0 + 11 * SEC), Retry::InFlight);
}

#[test]
fn a_full_counter_sweeps_expired_answers_from_buckets_nobody_writes() {
    let resp = answer(1, 200);
    // 64 slots (16 buckets); room for exactly three answers.
    let (l, store) = layer(64, 3 * blob_len(&resp));
    for b in 0..3 {
        execute(&l, &store, key_in(&l, b, 1), 1, &resp, T0);
    }
    assert_eq!(counted(&store), 3 * blob_len(&resp));
    // After ttl, a key in an untouched bucket still gets its answer stored.
    let late = key_in(&l, 9, 2);
    execute(&l, &store, late, 2, &answer(2, 200), T0 + 11 * SEC);
    let again = retry(&l, &store, late, T0 + 11 * SEC);
    assert_eq!(again, Retry::Replayed(vec![2; 200]));
    assert_eq!(held(&store), blob_len(&resp));
    assert_exact(&store);
}

#[test]
fn a_counter_full_of_live_answers_keeps_the_status_only() {
    let resp = answer(1, 200);
    let (l, store) = layer(64, 3 * blob_len(&resp));
    for b in 0..4 {
        execute(&l, &store, key_in(&l, b, 1), 1, &resp, T0 + u64::from(b));
    }
    let fourth = retry(&l, &store, key_in(&l, 3, 1), T0 + 5);
    assert_eq!(
        fourth,
        Retry::Gone,
        "409 completed: never a second execution"
    );
    assert_eq!(counted(&store), 3 * blob_len(&resp));
    assert_exact(&store);
}

#[test]
fn an_answer_stored_after_the_lock_ran_out_is_given_back() {
    let (l, store) = layer(4, 1 << 20);
    let k = key(1, 1);
    let c = claim(&l, &store, k, 1, T0);
    // lock_timeout is 3 s and the owner never renewed: the key is no longer its.
    store_answer(&l, &store, k, &c, 1, &answer(1, 100), T0 + 4 * SEC);
    assert_eq!(held(&store), 0);
    assert_exact(&store);
    assert_eq!(retry(&l, &store, k, T0 + 4 * SEC), Retry::Executes);
}

#[test]
fn a_late_answer_of_a_retaken_key_never_displaces_the_new_owners() {
    let (l, store) = layer(4, 1 << 20);
    let k = key(1, 1);
    let first = claim(&l, &store, k, 1, T0);
    let second = claim(&l, &store, k, 2, T0 + 4 * SEC); // retaken after lock_timeout
    assert_eq!(first.slot, second.slot);
    store_answer(&l, &store, k, &first, 1, &answer(1, 100), T0 + 5 * SEC);
    assert_exact(&store);
    store_answer(&l, &store, k, &second, 2, &answer(2, 80), T0 + 6 * SEC);
    let again = retry(&l, &store, k, T0 + 6 * SEC);
    assert_eq!(again, Retry::Replayed(vec![2; 80]));
    assert_eq!(held(&store), blob_len(&answer(2, 80)));
    assert_exact(&store);
}

/// A store on which another worker's steps run once, right after our first `get` of `key`.
struct Interleaved<'a> {
    inner: &'a MemoryStore,
    key: String,
    other_worker: RefCell<Option<Box<dyn FnOnce() + 'a>>>,
}

impl SharedStore for Interleaved<'_> {
    fn get(&self, key: &str) -> Result<Option<Versioned>, ReadError> {
        let read = self.inner.get(key);
        if key == self.key {
            let steps = self.other_worker.borrow_mut().take();
            if let Some(steps) = steps {
                steps();
            }
        }
        read
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), WriteError> {
        self.inner.set(key, value, cas)
    }
}

/// A worker about to free key 1's expired answer is overtaken, after reading `read_key`, by
/// one that retakes key 1 into the same slot and stores a byte-identical answer.
fn overtaken_free(read_key: impl Fn(&IdempotencyLayer, u32) -> String) {
    let (l, store) = layer(4, 1 << 20);
    let k = key(1, 1);
    let resp = answer(1, 100);
    let slot = execute(&l, &store, k, 1, &resp, T0).slot;
    let now = T0 + 10 * SEC;
    let slow = Interleaved {
        inner: &store,
        key: read_key(&l, slot),
        other_worker: RefCell::new(Some(Box::new(|| {
            execute(&l, &store, k, 2, &resp, now);
        }))),
    };
    assert_eq!(l.free_dead_answer(&slow, slot, None, now), 0);
    assert_eq!(retry(&l, &store, k, now), Retry::Replayed(vec![1; 100]));
    assert_exact(&store);
}

#[test]
fn a_free_overtaken_after_reading_the_blob_spares_the_new_records_identical_answer() {
    overtaken_free(|_, slot| IdempotencyLayer::body_key(slot));
}

#[test]
fn a_free_overtaken_after_checking_the_slot_fails_its_cas_and_spares_the_new_answer() {
    overtaken_free(|l, slot| l.table.key_of(slot / 4));
}

#[test]
fn a_late_free_spares_the_identical_answer_of_the_record_now_in_the_slot() {
    // The checksum cannot tell two identical answers apart; the slot's live record can.
    let (l, store) = layer(4, 1 << 20);
    let k = key(1, 1);
    let resp = answer(1, 100);
    let slot = execute(&l, &store, k, 1, &resp, T0).slot;
    execute(&l, &store, k, 2, &resp, T0 + 10 * SEC); // retaken after ttl, same slot
    assert_eq!(l.free_dead_answer(&store, slot, None, T0 + 10 * SEC), 0);
    assert_eq!(
        retry(&l, &store, k, T0 + 10 * SEC),
        Retry::Replayed(vec![1; 100])
    );
    assert_exact(&store);
}

#[test]
fn a_store_overtaken_between_read_and_write_gives_back_its_reservation_and_retries() {
    let (l, store) = layer(4, 1 << 20);
    let k = key(1, 1);
    let c = claim(&l, &store, k, 1, T0);
    let slow = Interleaved {
        inner: &store,
        key: IdempotencyLayer::body_key(c.slot),
        other_worker: RefCell::new(Some(Box::new(|| {
            // Whoever else writes the slot's blob meanwhile (a late writer of the slot).
            l.store_answer(&store, c.slot, &answer(9, 300), T0);
        }))),
    };
    store_answer(&l, &slow, k, &c, 1, &answer(1, 100), T0);
    assert_eq!(retry(&l, &store, k, T0), Retry::Replayed(vec![1; 100]));
    assert_eq!(held(&store), blob_len(&answer(1, 100)));
    assert_exact(&store);
}

#[test]
fn injected_conflicts_on_every_key_leave_the_counter_exact() {
    let (l, store) = layer(4, 1 << 20);
    let k = |n| key(1, n);
    for n in 1..=3 {
        execute(&l, &store, k(n), n, &answer(n as u8, 50), T0);
    }
    // Each of the next writes loses its first CAS: bucket, blob and counter alike.
    for n in 4..=9 {
        store.fail_next_cas(1);
        let c = claim(&l, &store, k(n), n, T0 + n * SEC);
        store.fail_next_cas(1);
        store_answer(&l, &store, k(n), &c, n, &answer(n as u8, 50), T0 + n * SEC);
        assert_exact(&store);
    }
    assert!(store.stats().injected_conflicts >= 12);
}
