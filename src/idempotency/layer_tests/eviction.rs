//! A full bucket gives up its oldest *completed* record, never an in-flight one.

use super::*;
use crate::store::TableError;

#[test]
fn a_new_key_evicts_the_completed_record_written_longest_ago() {
    // 4 slots: one bucket, so every key competes for the same four ways.
    let (l, store) = layer(4, 1 << 20);
    let k = |n| key(1, n);
    let oldest = execute(&l, &store, k(1), 1, &answer(1, 100), T0);
    execute(&l, &store, k(2), 2, &answer(2, 100), T0 + SEC);
    execute(&l, &store, k(3), 3, &answer(3, 100), T0 + 2 * SEC);
    claim(&l, &store, k(4), 4, T0 + 3 * SEC); // in flight
    let c = claim(&l, &store, k(5), 5, T0 + 4 * SEC);
    assert!(c.evicted);
    assert_eq!(
        c.slot, oldest.slot,
        "key 1 was the completed record written first"
    );
    let now = T0 + 4 * SEC;
    assert_eq!(retry(&l, &store, k(2), now), Retry::Replayed(vec![2; 100]));
    assert_eq!(retry(&l, &store, k(3), now), Retry::Replayed(vec![3; 100]));
    assert_eq!(retry(&l, &store, k(4), now), Retry::InFlight);
    // The price, as documented: key 1's answer is forgotten, a retry would execute again.
    let blob_len = |tag| answer(tag, 100).encode().unwrap().blob.len() as u64;
    assert_eq!(
        held(&store),
        blob_len(2) + blob_len(3),
        "key 1's answer was freed"
    );
    assert_exact(&store);
    assert_eq!(retry(&l, &store, k(1), now), Retry::Executes);
}

#[test]
fn in_flight_records_are_never_evicted_so_a_bucket_of_them_is_full() {
    let (l, store) = layer(4, 1 << 20);
    let k = |n| key(1, n);
    let claims: Vec<Claim> = (1..=4).map(|n| claim(&l, &store, k(n), n, T0)).collect();
    assert_eq!(
        l.claim(&store, k(5), FP, 5, T0 + SEC).unwrap_err(),
        TableError::Full,
        "four in-flight records: nothing may go (on_internal_error decides)"
    );
    // Once one of them completes, it is the one that makes room.
    store_answer(&l, &store, k(2), &claims[1], 2, &answer(2, 10), T0 + SEC);
    let c = claim(&l, &store, k(5), 5, T0 + 2 * SEC);
    assert!(c.evicted);
    assert_eq!(c.slot, claims[1].slot);
    for n in [1, 3, 4] {
        assert_eq!(retry(&l, &store, k(n), T0 + 2 * SEC), Retry::InFlight);
    }
    assert_exact(&store);
}

#[test]
fn free_and_expired_ways_are_used_before_anything_is_evicted() {
    let (l, store) = layer(4, 1 << 20);
    let k = |n| key(1, n);
    for n in 1..=4 {
        execute(&l, &store, k(n), n, &answer(n as u8, 10), T0);
    }
    // ttl is 10 s: at T0 + 10 s every record is at rest, so nothing live is given up.
    let c = claim(&l, &store, k(5), 5, T0 + 10 * SEC);
    assert!(!c.evicted);
    assert_eq!(held(&store), 0, "the four expired answers were freed");
    assert_exact(&store);
}

#[test]
fn more_unique_keys_than_slots_never_fail_and_recent_ones_replay() {
    // The benchmark's failure: unique keys, records live for ttl, 64 slots.
    let (l, store) = layer(64, 1 << 20);
    let mut evicted = 0;
    for n in 1..=1000u64 {
        let now = T0 + n * SEC / 1000; // all within one ttl
        let c = execute(&l, &store, key(n, n), n, &answer(n as u8, 20), now);
        evicted += usize::from(c.evicted);
        let again = retry(&l, &store, key(n, n), now);
        assert_eq!(again, Retry::Replayed(vec![n as u8; 20]), "key {n}");
    }
    assert!(evicted >= 1000 - 64, "{evicted} evictions");
    assert!(held(&store) <= 64 * answer(0, 20).encode().unwrap().blob.len() as u64);
    assert_exact(&store);
}
