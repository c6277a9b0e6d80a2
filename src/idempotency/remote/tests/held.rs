//! The worker's table of held keys ([`Completions`]) against a fake etcd: a completion asked
//! for during a renewal waits for it, a parked (queued) key is renewed by [`Completions::due`],
//! and an abandoned one is forgotten.

use super::super::completions::{Completions, Ended, Todo};
use super::*;

/// Answers every call `todo` asks for until the table says something else.
fn run(w: &mut World, table: &mut Completions, now: u64, mut todo: Todo) -> Todo {
    while let Todo::Send { id, call } = todo {
        let answer = w.etcd.call(&call);
        let mut env = RemoteEnv {
            cfg: &w.cfg,
            leases: &mut w.leases,
            now,
        };
        todo = table.on_answer(&mut env, id, answer);
    }
    todo
}

/// A key claimed at `T0` and handed to `table`.
fn held(w: &mut World, table: &mut Completions) -> u64 {
    let mut key = request(1, 1);
    assert!(matches!(
        w.claim(&mut key, T0),
        Step::Claimed(Claimed::Execute { .. })
    ));
    table.hold(key)
}

fn stored() -> (Outcome, Option<StoredResponse>) {
    let answer = StoredResponse {
        status: 200,
        headers: vec![],
        body: b"ok".to_vec(),
    };
    let outcome = Outcome::Stored {
        status: 200,
        body: None,
    };
    (outcome, Some(answer))
}

#[test]
fn a_completion_asked_for_during_a_renewal_is_sent_once_the_renewal_is_answered() {
    let (mut w, mut table) = (World::new(), Completions::default());
    let id = held(&mut w, &mut table);
    let now = T0 + SEC;
    let mut env = RemoteEnv {
        cfg: &w.cfg,
        leases: &mut w.leases,
        now,
    };
    let Todo::Send { call: renewal, .. } = table.renew(&mut env, id) else {
        panic!("the renewal is sent");
    };
    let (outcome, answer) = stored();
    assert_eq!(table.complete(&mut env, id, outcome, answer), Todo::Wait);
    // The renewal's answer arrives: only then does the queued completion go out.
    let answer = w.etcd.call(&renewal);
    let todo = table.on_answer(&mut env, id, answer);
    assert!(matches!(todo, Todo::Send { .. }), "{todo:?}");
    assert_eq!(
        run(&mut w, &mut table, now, todo),
        Todo::Ended(Ended::Written)
    );
    assert!(table.is_empty());
}

#[test]
fn a_parked_key_is_renewed_when_due_and_an_abandoned_one_is_forgotten() {
    let (mut w, mut table) = (World::new(), Completions::default());
    let id = held(&mut w, &mut table);
    let revision = |w: &World| w.etcd.kvs.values().next().map_or(0, |kv| kv.mod_revision);
    let claimed = revision(&w);
    table.park(id, T0 + SEC);
    assert_eq!(table.next_retry(), Some(T0 + SEC));
    let now = T0 + SEC;
    let mut env = RemoteEnv {
        cfg: &w.cfg,
        leases: &mut w.leases,
        now,
    };
    let todos = table.due(&mut env);
    assert_eq!(todos.len(), 1);
    for todo in todos {
        assert_eq!(run(&mut w, &mut table, now, todo), Todo::Wait);
    }
    assert!(revision(&w) > claimed, "renewed");
    assert!(
        table.next_retry().is_some_and(|at| at > now),
        "renewed again later"
    );
    table.abandon(id);
    assert!(table.is_empty());
    assert_eq!(table.next_retry(), None);
}
