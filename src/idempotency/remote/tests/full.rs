//! etcd's database full (its `NOSPACE` alarm: every write refused, reads served): a claim
//! refused for lack of space reads the record once and decides from it without writing.

use super::*;
use crate::idempotency::remote::lease::LeaseCache;

/// A world whose key holds a completed record (owner 1, fingerprint 9), then fills up.
fn full_with_a_stored_key() -> World {
    let mut w = World::new();
    let mut a = request(1, 9);
    w.claim(&mut a, T0);
    assert!(matches!(
        w.complete(&mut a, T0 + SEC, stored(), Some(answer())),
        Step::Finished
    ));
    w.etcd.full = true;
    w
}

#[test]
fn a_stored_answer_still_replays_byte_for_byte_at_the_cost_of_one_read() {
    let mut w = full_with_a_stored_key();
    let txns = w.etcd.txns;
    let Step::Claimed(Claimed::Replay(r)) = w.claim(&mut request(2, 9), T0 + 2 * SEC) else {
        panic!("replay expected")
    };
    assert_eq!((r.status, r.body.as_slice()), (201, &b"{\"id\":7}"[..]));
    assert!(r
        .headers
        .contains(&("idempotent-replayed".into(), "true".into())));
    // One claim refused, one read served, nothing written.
    assert_eq!((w.etcd.refused_full, w.etcd.txns - txns), (1, 1));
    assert_eq!(w.etcd.kvs.len(), 1);
}

#[test]
fn another_body_on_a_stored_key_is_422_and_a_fresh_key_is_left_to_the_policy() {
    let mut w = full_with_a_stored_key();
    assert_eq!(status(&w.claim(&mut request(2, 8), T0 + 2 * SEC)), 422);
    let mut fresh = RemoteKey::new(
        b"levee/idem/00/other".to_vec(),
        "other".into(),
        3,
        Fingerprint([9; 16]),
    );
    assert!(matches!(
        w.claim(&mut fresh, T0 + 2 * SEC),
        Step::BackendFailed
    ));
    assert_eq!(w.etcd.refused_full, 2, "one refused claim each, no retry");
    assert!(!fresh.owns());
}

#[test]
fn a_key_in_flight_is_busy_and_an_expired_record_is_not_taken_over() {
    let mut w = World::new();
    let mut a = request(1, 9);
    assert!(matches!(
        w.claim(&mut a, T0),
        Step::Claimed(Claimed::Execute { .. })
    ));
    w.etcd.full = true;
    assert_eq!(status(&w.claim(&mut request(2, 9), T0 + SEC)), 409);
    // Past the lock and the ttl the key would be retaken: that needs a write.
    let before = w.etcd.kvs[KEY].clone();
    assert!(matches!(
        w.claim(&mut request(3, 9), T0 + 200 * SEC),
        Step::BackendFailed
    ));
    assert_eq!(w.etcd.kvs[KEY], before, "nothing written");
}

#[test]
fn a_lease_grant_refused_for_lack_of_space_reads_the_record_too() {
    let mut w = full_with_a_stored_key();
    // A worker that has no lease for this minute yet asks for one first.
    w.leases = LeaseCache::default();
    let grants = w.etcd.grants;
    assert_eq!(status(&w.claim(&mut request(2, 9), T0 + 2 * SEC)), 201);
    assert_eq!((w.etcd.grants, w.etcd.refused_full), (grants, 1));
}

#[test]
fn an_unreachable_etcd_is_not_read_and_a_failed_read_is_a_backend_failure() {
    let mut w = full_with_a_stored_key();
    w.etcd.down = true;
    let txns = w.etcd.txns;
    assert!(matches!(
        w.claim(&mut request(2, 9), T0 + 2 * SEC),
        Step::BackendFailed
    ));
    assert_eq!((w.etcd.txns, w.etcd.refused_full), (txns, 0));
    // Full, and the read's answer is lost: no second read, the policy decides.
    w.etcd.down = false;
    w.etcd.lose_answers = 1;
    assert!(matches!(
        w.claim(&mut request(3, 9), T0 + 2 * SEC),
        Step::BackendFailed
    ));
    assert_eq!((w.etcd.refused_full, w.etcd.txns - txns), (1, 1));
}
