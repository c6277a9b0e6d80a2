//! `max_stored_bytes` accounting over a ring of ttl/16 buckets.

use super::{cfg, SEC};
use crate::idempotency::{refund, reserve, used, Reserve};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000 * SEC;
// cfg(): ttl 160 s → buckets of 10 s; max_stored_bytes 10_000.

fn granted(r: Reserve) -> Vec<u8> {
    match r {
        Reserve::Granted { new_state } => new_state,
        Reserve::Full { used } => panic!("full at {used}"),
    }
}

#[test]
fn reservations_add_up_to_the_limit_and_no_further() {
    let c = cfg();
    let s = granted(reserve(&c, &[], 6_000, T0));
    let s = granted(reserve(&c, &s, 4_000, T0 + SEC));
    assert_eq!(used(&c, &s, T0 + SEC), 10_000);
    assert_eq!(
        reserve(&c, &s, 1, T0 + 2 * SEC),
        Reserve::Full { used: 10_000 }
    );
}

#[test]
fn state_has_a_fixed_size() {
    let s = granted(reserve(&cfg(), &[], 1, T0));
    assert_eq!(s.len(), crate::idempotency::budget::ENCODED_LEN);
    assert_eq!(s.len(), 160);
}

#[test]
fn bytes_are_counted_for_at_least_ttl() {
    let c = cfg();
    let at = T0 + 9 * SEC; // late in its bucket
    let s = granted(reserve(&c, &[], 500, at));
    assert_eq!(used(&c, &s, at + 160 * SEC - 1), 500);
}

#[test]
fn bytes_drop_out_at_most_one_bucket_after_expiry() {
    let c = cfg();
    let at = T0 - (T0 % (10 * SEC)); // start of a bucket
    let s = granted(reserve(&c, &[], 500, at));
    assert_eq!(used(&c, &s, at + 169 * SEC), 500);
    assert_eq!(used(&c, &s, at + 170 * SEC), 0);
}

#[test]
fn expired_bytes_make_room_for_new_ones() {
    let c = cfg();
    let s = granted(reserve(&c, &[], 10_000, T0));
    assert!(matches!(
        reserve(&c, &s, 1, T0 + 100 * SEC),
        Reserve::Full { .. }
    ));
    let s = granted(reserve(&c, &s, 10_000, T0 + 171 * SEC));
    assert_eq!(used(&c, &s, T0 + 171 * SEC), 10_000);
}

#[test]
fn a_long_idle_gap_empties_the_ring() {
    let c = cfg();
    let s = granted(reserve(&c, &[], 700, T0));
    assert_eq!(used(&c, &s, T0 + 365 * 24 * 3600 * SEC), 0);
}

#[test]
fn refund_gives_back_reserved_bytes() {
    let c = cfg();
    let s = granted(reserve(&c, &[], 700, T0));
    let s = granted(reserve(&c, &s, 300, T0 + 50 * SEC));
    let s = refund(&c, &s, 700, T0, T0 + 60 * SEC);
    assert_eq!(used(&c, &s, T0 + 60 * SEC), 300);
    // Over-refunding saturates at zero for that bucket.
    let s = refund(&c, &s, 10_000, T0 + 50 * SEC, T0 + 60 * SEC);
    assert_eq!(used(&c, &s, T0 + 60 * SEC), 0);
}

#[test]
fn refund_of_bytes_already_out_of_the_ring_changes_nothing() {
    let c = cfg();
    let s = granted(reserve(&c, &[], 700, T0 + 200 * SEC));
    let s2 = refund(&c, &s, 700, T0, T0 + 200 * SEC);
    assert_eq!(used(&c, &s2, T0 + 200 * SEC), 700);
}

#[test]
fn clock_stepping_back_counts_into_the_newest_bucket() {
    let c = cfg();
    let s = granted(reserve(&c, &[], 100, T0 + 100 * SEC));
    let s = granted(reserve(&c, &s, 50, T0));
    assert_eq!(used(&c, &s, T0 + 100 * SEC), 150);
}

#[test]
fn a_ttl_change_keeps_the_total_for_a_full_new_ttl() {
    let c = cfg();
    let s = granted(reserve(&c, &[], 800, T0));
    let mut c2 = cfg();
    c2.ttl = std::time::Duration::from_secs(16);
    assert_eq!(used(&c2, &s, T0 + 50 * SEC), 800);
    let s = granted(reserve(&c2, &s, 1, T0 + 50 * SEC));
    assert_eq!(used(&c2, &s, T0 + 50 * SEC + 18 * SEC), 0);
}

proptest! {
    #[test]
    fn budget_never_panics_on_arbitrary_state(
        state in proptest::collection::vec(any::<u8>(), 0..200),
        size in any::<u64>(),
        now in any::<u64>(),
        stored_at in any::<u64>(),
    ) {
        let c = cfg();
        let _ = used(&c, &state, now);
        let _ = reserve(&c, &state, size, now);
        let _ = refund(&c, &state, size, stored_at, now);
    }

    #[test]
    fn live_bytes_never_exceed_the_limit_and_are_never_undercounted(
        ops in proptest::collection::vec((1u64..3_000, 0u64..30), 1..60),
    ) {
        let c = cfg();
        let ttl = 160 * SEC;
        let mut s = Vec::new();
        let mut now = T0;
        let mut live: Vec<(u64, u64)> = Vec::new(); // (stored_at, size)
        for (size, dt) in ops {
            now += dt * SEC;
            if let Reserve::Granted { new_state } = reserve(&c, &s, size, now) {
                s = new_state;
                live.push((now, size));
            }
            let truly_live: u64 = live.iter().filter(|(t, _)| now < t + ttl).map(|(_, n)| n).sum();
            let counted = used(&c, &s, now);
            prop_assert!(counted <= c.max_stored_bytes);
            prop_assert!(counted >= truly_live);
        }
    }
}
