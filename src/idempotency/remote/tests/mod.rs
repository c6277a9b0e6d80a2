//! The remote record machine against a fake etcd: the shared-data store's decisions, fencing,
//! lost answers, outages; races in [`race`]; the worker's table of held keys in [`held`].

mod full;
mod held;
mod race;

use super::claim::{RemoteEnv, RemoteKey, Step};
use super::fake_etcd::FakeEtcd;
use super::lease::LeaseCache;
use crate::config::IdempotencyConfig;
use crate::idempotency::machine::Outcome;
use crate::idempotency::request::Claimed;
use crate::idempotency::response::StoredResponse;
use crate::idempotency::tests::{cfg, SEC};
use crate::idempotency::Fingerprint;

const KEY: &[u8] = b"levee/idem/00/k";
const T0: u64 = 1_800_000_000 * SEC;

fn request(owner: u64, fp: u8) -> RemoteKey {
    RemoteKey::new(KEY.to_vec(), "k".into(), owner, Fingerprint([fp; 16]))
}

/// Makes every call `step` asks for until the machine answers something else.
fn drive(
    etcd: &mut FakeEtcd,
    key: &mut RemoteKey,
    cfg: &IdempotencyConfig,
    leases: &mut LeaseCache,
    now: u64,
    mut step: Step,
) -> Step {
    while let Step::Send(call) = &step {
        let answer = etcd.call(call);
        let mut env = RemoteEnv { cfg, leases, now };
        step = key.on_answer(&mut env, answer);
    }
    step
}

struct World {
    etcd: FakeEtcd,
    cfg: IdempotencyConfig,
    leases: LeaseCache,
}

impl World {
    fn new() -> Self {
        Self {
            etcd: FakeEtcd::default(),
            cfg: cfg(),
            leases: LeaseCache::default(),
        }
    }

    fn claim(&mut self, key: &mut RemoteKey, now: u64) -> Step {
        let mut env = RemoteEnv {
            cfg: &self.cfg,
            leases: &mut self.leases,
            now,
        };
        let step = key.claim(&mut env);
        drive(&mut self.etcd, key, &self.cfg, &mut self.leases, now, step)
    }

    fn complete(
        &mut self,
        key: &mut RemoteKey,
        now: u64,
        outcome: Outcome,
        answer: Option<StoredResponse>,
    ) -> Step {
        let mut env = RemoteEnv {
            cfg: &self.cfg,
            leases: &mut self.leases,
            now,
        };
        let step = key.complete(&mut env, outcome, answer);
        drive(&mut self.etcd, key, &self.cfg, &mut self.leases, now, step)
    }

    fn renew(&mut self, key: &mut RemoteKey, now: u64) -> Step {
        let mut env = RemoteEnv {
            cfg: &self.cfg,
            leases: &mut self.leases,
            now,
        };
        let step = key.renew(&mut env);
        drive(&mut self.etcd, key, &self.cfg, &mut self.leases, now, step)
    }

    fn retry(&mut self, key: &mut RemoteKey, now: u64) -> Step {
        let mut env = RemoteEnv {
            cfg: &self.cfg,
            leases: &mut self.leases,
            now,
        };
        let step = key.retry(&mut env);
        drive(&mut self.etcd, key, &self.cfg, &mut self.leases, now, step)
    }
}

fn answer() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-order".into(), "7".into()),
        ],
        body: b"{\"id\":7}".to_vec(),
    }
}

fn stored() -> Outcome {
    Outcome::Stored {
        status: 201,
        body: None,
    }
}

fn status(step: &Step) -> u16 {
    match step {
        Step::Claimed(Claimed::Replay(r) | Claimed::Refuse(r)) => r.status,
        Step::Claimed(Claimed::Execute { .. }) => 0,
        other => panic!("a decided claim expected, got {other:?}"),
    }
}

#[test]
fn first_executes_concurrent_gets_409_then_every_retry_replays_byte_for_byte() {
    let mut w = World::new();
    let mut a = request(1, 9);
    assert!(matches!(
        w.claim(&mut a, T0),
        Step::Claimed(Claimed::Execute { .. })
    ));
    assert_eq!(a.fence(), Some(w.etcd.revision));
    let mut b = request(2, 9);
    assert_eq!(status(&w.claim(&mut b, T0 + SEC)), 409);
    assert!(matches!(
        w.complete(&mut a, T0 + 2 * SEC, stored(), Some(answer())),
        Step::Finished
    ));
    let mut c = request(3, 9);
    let Step::Claimed(Claimed::Replay(r)) = w.claim(&mut c, T0 + 3 * SEC) else {
        panic!("replay expected")
    };
    assert_eq!((r.status, r.body.as_slice()), (201, &b"{\"id\":7}"[..]));
    assert!(r.headers.contains(&("x-order".into(), "7".into())));
    assert!(r
        .headers
        .contains(&("idempotent-replayed".into(), "true".into())));
    assert_eq!(status(&w.claim(&mut request(4, 8), T0 + 3 * SEC)), 422);
    // Past ttl the key executes again.
    assert!(matches!(
        w.claim(&mut request(5, 8), T0 + 200 * SEC),
        Step::Claimed(Claimed::Execute { .. })
    ));
}

#[test]
fn an_answer_too_large_for_etcd_is_remembered_by_status() {
    let mut w = World::new();
    let mut a = request(1, 1);
    w.claim(&mut a, T0);
    let big = StoredResponse {
        status: 200,
        headers: vec![],
        body: vec![0; 2 * 1024 * 1024],
    };
    w.complete(
        &mut a,
        T0,
        Outcome::Stored {
            status: 200,
            body: None,
        },
        Some(big),
    );
    assert!(w.etcd.kvs[KEY].value.len() < 100);
    assert_eq!(status(&w.claim(&mut request(2, 1), T0 + SEC)), 409);
}

#[test]
fn a_claim_whose_answer_was_lost_is_resent_and_recognised_by_its_nonce() {
    let mut w = World::new();
    w.etcd.lose_answers = 1;
    let mut a = request(1, 1);
    assert!(matches!(
        w.claim(&mut a, T0),
        Step::Claimed(Claimed::Execute { .. })
    ));
    assert_eq!(a.fence(), Some(w.etcd.kvs[KEY].mod_revision));
    // Lost twice: the policy decides.
    w.etcd.lose_answers = 2;
    assert!(matches!(
        w.claim(&mut request(2, 2), T0 + 200 * SEC),
        Step::BackendFailed
    ));
}

#[test]
fn a_stale_owner_is_fenced_after_its_lock_is_retaken() {
    let mut w = World::new();
    let mut a = request(1, 1);
    w.claim(&mut a, T0);
    let first = a.fence().expect("held");
    let mut b = request(2, 1);
    assert!(matches!(
        w.claim(&mut b, T0 + 31 * SEC),
        Step::Claimed(Claimed::Execute { .. })
    ));
    assert!(b.fence().expect("held") > first);
    // The old owner's completion never overwrites its successor's record.
    assert!(matches!(
        w.complete(&mut a, T0 + 32 * SEC, stored(), None),
        Step::Fenced
    ));
    assert!(matches!(
        w.renew(&mut b, T0 + 33 * SEC),
        Step::Renewed { .. }
    ));
    assert!(matches!(
        w.complete(&mut b, T0 + 33 * SEC, stored(), Some(answer())),
        Step::Finished
    ));
    assert_eq!(status(&w.claim(&mut request(3, 1), T0 + 34 * SEC)), 201);
}

#[test]
fn renewals_keep_the_lock_and_move_the_revision_not_the_fence() {
    let mut w = World::new();
    let mut a = request(1, 1);
    w.claim(&mut a, T0);
    let fence = a.fence();
    assert!(matches!(
        w.renew(&mut a, T0 + 10 * SEC),
        Step::Renewed { .. }
    ));
    assert!(matches!(
        w.renew(&mut a, T0 + 20 * SEC),
        Step::Renewed { .. }
    ));
    assert_eq!(a.fence(), fence);
    // 35 s after the claim, still locked (renewed at 20 s for 30 s).
    assert_eq!(status(&w.claim(&mut request(2, 1), T0 + 35 * SEC)), 409);
    assert!(matches!(
        w.complete(&mut a, T0 + 36 * SEC, stored(), Some(answer())),
        Step::Finished
    ));
}

#[test]
fn a_released_key_executes_again_at_once() {
    let mut w = World::new();
    let mut a = request(1, 1);
    w.claim(&mut a, T0);
    assert!(matches!(
        w.complete(&mut a, T0, Outcome::Released, None),
        Step::Finished
    ));
    assert!(w.etcd.kvs.is_empty());
    assert!(matches!(
        w.claim(&mut request(2, 1), T0 + 1),
        Step::Claimed(Claimed::Execute { .. })
    ));
}

#[test]
fn an_unknown_outcome_leaves_the_lock_to_expire() {
    let mut w = World::new();
    let mut a = request(1, 1);
    w.claim(&mut a, T0);
    let txns = w.etcd.txns;
    assert!(matches!(
        w.complete(&mut a, T0, Outcome::Unknown, None),
        Step::Finished
    ));
    assert_eq!(w.etcd.txns, txns);
    assert_eq!(status(&w.claim(&mut request(2, 1), T0 + 29 * SEC)), 409);
    assert_eq!(status(&w.claim(&mut request(3, 1), T0 + 30 * SEC)), 0);
}

#[test]
fn a_completion_is_retried_until_the_lock_would_expire() {
    let mut w = World::new();
    let mut a = request(1, 1);
    w.claim(&mut a, T0);
    w.etcd.down = true;
    assert!(matches!(
        w.claim(&mut request(2, 1), T0),
        Step::BackendFailed
    ));
    let Step::RetryAt(at) = w.complete(&mut a, T0 + SEC, stored(), Some(answer())) else {
        panic!("retry expected")
    };
    assert!(matches!(w.retry(&mut a, at), Step::RetryAt(_)));
    w.etcd.down = false;
    assert!(matches!(w.retry(&mut a, at + SEC), Step::Finished));
    assert_eq!(status(&w.claim(&mut request(3, 1), T0 + 5 * SEC)), 201);

    let mut b = request(4, 2);
    w.claim(&mut b, T0 + 200 * SEC);
    w.etcd.down = true;
    let Step::RetryAt(_) = w.complete(&mut b, T0 + 201 * SEC, stored(), Some(answer())) else {
        panic!("retry expected")
    };
    assert!(matches!(w.retry(&mut b, T0 + 230 * SEC), Step::GaveUp));
}

#[test]
fn a_completion_asked_for_during_a_renewal_runs_after_it() {
    let mut w = World::new();
    let mut a = request(1, 1);
    w.claim(&mut a, T0);
    let mut env = RemoteEnv {
        cfg: &w.cfg,
        leases: &mut w.leases,
        now: T0 + 10 * SEC,
    };
    let Step::Send(renewal) = a.renew(&mut env) else {
        panic!("a renewal call")
    };
    assert!(matches!(
        a.complete(&mut env, stored(), Some(answer())),
        Step::Idle
    ));
    let answer = w.etcd.call(&renewal);
    let step = a.on_answer(&mut env, answer);
    let step = drive(
        &mut w.etcd,
        &mut a,
        &w.cfg,
        &mut w.leases,
        T0 + 10 * SEC,
        step,
    );
    assert!(matches!(step, Step::Finished), "{step:?}");
    assert_eq!(status(&w.claim(&mut request(2, 1), T0 + 11 * SEC)), 201);
}

#[test]
fn leases_are_granted_once_per_bucket_and_records_attached_to_them() {
    let mut w = World::new();
    for i in 0..20 {
        let mut k = KEY.to_vec();
        k.push(b'0' + i as u8);
        let mut r = RemoteKey::new(k, "k".into(), i + 1, Fingerprint([1; 16]));
        w.claim(&mut r, T0 + i * SEC / 10);
    }
    assert!(w.etcd.grants <= 2, "{} grants", w.etcd.grants);
    assert!(w
        .etcd
        .kvs
        .values()
        .all(|kv| w.etcd.leases.contains(&kv.lease)));
}

#[test]
fn a_failure_before_sending_is_not_resent() {
    let mut w = World::new();
    w.etcd.down = true;
    let mut a = request(1, 1);
    assert!(matches!(w.claim(&mut a, T0), Step::BackendFailed));
    assert_eq!(w.etcd.txns, 0);
}
