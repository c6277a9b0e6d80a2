//! Every transition of the record machine.

use super::{cfg, SEC};
use crate::idempotency::record::{InFlight, Record};
use crate::idempotency::{
    at_rest_at, begin, finish, renew, renew_interval_ns, Begin, BodyRef, Completed, Fingerprint,
    Finish, NewState, Outcome,
};

const T0: u64 = 1_700_000_000 * SEC;
const A: u64 = 0xA11CE;
const B: u64 = 0xB0B;

fn fp(n: u8) -> Fingerprint {
    Fingerprint([n; 16])
}

fn body() -> BodyRef {
    BodyRef {
        slot: 4,
        generation: 8,
        len: 100,
        checksum: 0x1234,
    }
}

/// A claims the key at T0 and returns the written state.
fn claimed() -> NewState {
    match begin(&cfg(), None, fp(1), A, T0) {
        Begin::Execute {
            new_state,
            retaken: false,
        } => new_state,
        other => panic!("expected Execute, got {other:?}"),
    }
}

fn finished(outcome: Outcome, at: u64) -> NewState {
    match finish(&cfg(), Some(&claimed().bytes), A, outcome, at) {
        Finish::Write(s) => s,
        other => panic!("expected Write, got {other:?}"),
    }
}

#[test]
fn first_request_claims_the_key_for_lock_timeout() {
    let s = claimed();
    assert_eq!(
        Record::decode(&s.bytes),
        Some(Record::InFlight(InFlight {
            owner: A,
            fingerprint: fp(1),
            locked_until: T0 + 30 * SEC,
            started_at: T0,
        }))
    );
    assert_eq!(s.at_rest_at, T0 + 30 * SEC);
    assert_eq!(at_rest_at(&s.bytes), s.at_rest_at);
}

#[test]
fn empty_or_garbage_state_is_claimed_like_no_state() {
    for state in [&[][..], &[1, 2, 3][..], &[9; 42][..]] {
        assert!(matches!(
            begin(&cfg(), Some(state), fp(1), A, T0),
            Begin::Execute { retaken: false, .. }
        ));
    }
}

#[test]
fn second_request_while_in_flight_conflicts_with_retry_after() {
    let s = claimed();
    assert_eq!(
        begin(&cfg(), Some(&s.bytes), fp(1), B, T0 + SEC),
        // The hint is one renewal period, not the whole lock: the owner may finish soon.
        Begin::Conflict {
            retry_after_ns: 10 * SEC
        }
    );
    assert_eq!(
        begin(&cfg(), Some(&s.bytes), fp(1), B, T0 + 25 * SEC),
        Begin::Conflict {
            retry_after_ns: 5 * SEC
        }
    );
}

#[test]
fn different_payload_while_in_flight_is_a_mismatch() {
    let s = claimed();
    assert_eq!(
        begin(&cfg(), Some(&s.bytes), fp(2), B, T0 + SEC),
        Begin::Mismatch
    );
}

#[test]
fn fingerprint_off_ignores_payload_differences() {
    let mut c = cfg();
    c.fingerprint = false;
    let s = claimed();
    assert!(matches!(
        begin(&c, Some(&s.bytes), fp(2), B, T0 + SEC),
        Begin::Conflict { .. }
    ));
}

#[test]
fn owner_rereading_its_own_claim_executes_again() {
    // A CAS rerun after a write whose success could not be confirmed.
    let s = claimed();
    assert!(matches!(
        begin(&cfg(), Some(&s.bytes), fp(1), A, T0 + SEC),
        Begin::Execute { retaken: false, .. }
    ));
}

#[test]
fn expired_lock_is_retaken_by_the_next_request() {
    let s = claimed();
    let at = T0 + 30 * SEC;
    match begin(&cfg(), Some(&s.bytes), fp(1), B, at) {
        Begin::Execute {
            new_state,
            retaken: true,
        } => {
            let Some(Record::InFlight(r)) = Record::decode(&new_state.bytes) else {
                panic!("not in flight")
            };
            assert_eq!(
                (r.owner, r.locked_until, r.started_at),
                (B, at + 30 * SEC, at)
            );
        }
        other => panic!("expected a retake, got {other:?}"),
    }
}

#[test]
fn lock_is_held_until_the_last_nanosecond() {
    let s = claimed();
    assert!(matches!(
        begin(&cfg(), Some(&s.bytes), fp(1), B, T0 + 30 * SEC - 1),
        Begin::Conflict { retry_after_ns: 1 }
    ));
}

#[test]
fn renew_extends_the_lock_for_the_owner() {
    let s = claimed();
    let at = T0 + 10 * SEC;
    let renewed = renew(&cfg(), &s.bytes, A, at).expect("owner renews");
    assert_eq!(renewed.at_rest_at, at + 30 * SEC);
    // A slow but alive first request is not retaken at its original lock_timeout.
    assert!(matches!(
        begin(&cfg(), Some(&renewed.bytes), fp(1), B, T0 + 35 * SEC),
        Begin::Conflict { .. }
    ));
}

#[test]
fn renew_never_shortens_the_lock() {
    let s = claimed();
    let renewed = renew(&cfg(), &s.bytes, A, T0 - 5 * SEC).expect("owner renews");
    assert_eq!(renewed.at_rest_at, T0 + 30 * SEC);
}

#[test]
fn renew_by_a_non_owner_or_after_finish_is_refused() {
    let s = claimed();
    assert_eq!(renew(&cfg(), &s.bytes, B, T0 + SEC), None);
    assert_eq!(renew(&cfg(), &[], A, T0 + SEC), None);
    let done = finished(
        Outcome::Stored {
            status: 200,
            body: Some(body()),
        },
        T0 + SEC,
    );
    assert_eq!(renew(&cfg(), &done.bytes, A, T0 + 2 * SEC), None);
}

#[test]
fn renew_interval_is_a_third_of_lock_timeout() {
    assert_eq!(renew_interval_ns(&cfg()), 10 * SEC);
}

#[test]
fn stored_answer_is_replayed_until_ttl() {
    let at = T0 + 2 * SEC;
    let s = finished(
        Outcome::Stored {
            status: 201,
            body: Some(body()),
        },
        at,
    );
    assert_eq!(s.at_rest_at, at + 160 * SEC);
    let want = Completed {
        fingerprint: fp(1),
        status: 201,
        stored_at: at,
        expires_at: at + 160 * SEC,
        body: Some(body()),
    };
    assert_eq!(
        begin(&cfg(), Some(&s.bytes), fp(1), B, at + SEC),
        Begin::Replay { record: want }
    );
    assert!(matches!(
        begin(&cfg(), Some(&s.bytes), fp(1), B, at + 160 * SEC),
        Begin::Execute { retaken: false, .. }
    ));
}

#[test]
fn stored_answer_with_another_payload_is_a_mismatch() {
    let s = finished(
        Outcome::Stored {
            status: 201,
            body: Some(body()),
        },
        T0 + SEC,
    );
    assert_eq!(
        begin(&cfg(), Some(&s.bytes), fp(2), B, T0 + 2 * SEC),
        Begin::Mismatch
    );
}

#[test]
fn answer_without_body_is_still_replayed_as_a_record() {
    // The replay step turns a missing body into 409 "completed"; never a second execution.
    let s = finished(
        Outcome::Stored {
            status: 500,
            body: None,
        },
        T0 + SEC,
    );
    assert!(matches!(
        begin(&cfg(), Some(&s.bytes), fp(1), B, T0 + 2 * SEC),
        Begin::Replay {
            record: Completed {
                status: 500,
                body: None,
                ..
            }
        }
    ));
}

#[test]
fn too_large_answer_is_remembered_as_completed_with_its_status() {
    let s = finished(Outcome::TooLarge { status: 200 }, T0 + SEC);
    assert_eq!(s.at_rest_at, T0 + SEC + 160 * SEC);
    assert_eq!(
        begin(&cfg(), Some(&s.bytes), fp(1), B, T0 + 2 * SEC),
        Begin::CompletedTooLarge { status: 200 }
    );
    assert_eq!(
        begin(&cfg(), Some(&s.bytes), fp(2), B, T0 + 2 * SEC),
        Begin::Mismatch
    );
    assert!(matches!(
        begin(&cfg(), Some(&s.bytes), fp(1), B, T0 + 161 * SEC),
        Begin::Execute { .. }
    ));
}

#[test]
fn released_key_executes_again_at_once() {
    let s = finished(Outcome::Released, T0 + SEC);
    assert_eq!(s, NewState::empty());
    assert!(matches!(
        begin(&cfg(), Some(&s.bytes), fp(1), B, T0 + SEC),
        Begin::Execute { retaken: false, .. }
    ));
}

#[test]
fn unknown_outcome_leaves_the_lock_to_expire() {
    let s = claimed();
    assert_eq!(
        finish(&cfg(), Some(&s.bytes), A, Outcome::Unknown, T0 + SEC),
        Finish::Unchanged
    );
    assert!(matches!(
        begin(&cfg(), Some(&s.bytes), fp(1), B, T0 + 29 * SEC),
        Begin::Conflict { .. }
    ));
    assert!(matches!(
        begin(&cfg(), Some(&s.bytes), fp(1), B, T0 + 30 * SEC),
        Begin::Execute { retaken: true, .. }
    ));
}

#[test]
fn finish_from_a_non_owner_is_ignored() {
    let s = claimed();
    let retaken = match begin(&cfg(), Some(&s.bytes), fp(1), B, T0 + 31 * SEC) {
        Begin::Execute { new_state, .. } => new_state,
        other => panic!("{other:?}"),
    };
    for outcome in [
        Outcome::Released,
        Outcome::Unknown,
        Outcome::Stored {
            status: 200,
            body: Some(body()),
        },
        Outcome::TooLarge { status: 200 },
    ] {
        assert_eq!(
            finish(&cfg(), Some(&retaken.bytes), A, outcome, T0 + 32 * SEC),
            Finish::NotOwner
        );
    }
    assert_eq!(
        finish(&cfg(), None, A, Outcome::Released, T0),
        Finish::NotOwner
    );
}

#[test]
fn finish_on_a_completed_record_is_ignored() {
    let done = finished(
        Outcome::Stored {
            status: 200,
            body: None,
        },
        T0 + SEC,
    );
    assert_eq!(
        finish(
            &cfg(),
            Some(&done.bytes),
            A,
            Outcome::Released,
            T0 + 2 * SEC
        ),
        Finish::NotOwner
    );
}

#[test]
fn owner_whose_lock_lapsed_but_was_not_retaken_may_still_finish() {
    let s = claimed();
    assert!(matches!(
        finish(
            &cfg(),
            Some(&s.bytes),
            A,
            Outcome::Stored {
                status: 200,
                body: None
            },
            T0 + 40 * SEC
        ),
        Finish::Write(_)
    ));
}

#[test]
fn times_near_the_end_of_time_saturate() {
    let s = match begin(&cfg(), None, fp(1), A, u64::MAX - 1) {
        Begin::Execute { new_state, .. } => new_state,
        other => panic!("{other:?}"),
    };
    assert_eq!(s.at_rest_at, u64::MAX);
}

#[test]
fn owner_reclaiming_its_own_lapsed_lock_is_not_a_retake() {
    let s = claimed();
    assert!(matches!(
        begin(&cfg(), Some(&s.bytes), fp(1), A, T0 + 31 * SEC),
        Begin::Execute { retaken: false, .. }
    ));
}
