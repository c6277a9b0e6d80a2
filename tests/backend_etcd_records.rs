//! levee's etcd record machine against real etcd, through Envoy HTTP/2 clusters: the
//! transactions it sends and the decisions it reads from etcd's answers hold up with a real
//! store. Two Envoy fronts stand for two replicas of a mesh; many threads race one key across
//! both, a stale owner is fenced, leases are shared by every replica, and a three-member
//! cluster loses its leader in a storm of distinct keys without a second execution or a lost
//! record. (The calls go through gRPC-Web fronts here; inside Envoy levee makes the same calls
//! with `dispatch_grpc_call` over the same kind of cluster.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::etcd::Etcd;
use harness::grpc_web;
use harness::raw_envoy::*;
use levee::backend::etcd::*;
use levee::backend::Message;
use levee::config::IdempotencyConfig;
use levee::idempotency::machine::Outcome;
use levee::idempotency::remote::{
    failure_of, grant_answer, record_key, Call, EtcdAnswer, LeaseCache, RemoteEnv, RemoteKey, Step,
};
use levee::idempotency::request::Claimed;
use levee::idempotency::response::StoredResponse;
use levee::idempotency::Fingerprint;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SEC: u64 = 1_000_000_000;

fn front(etcd: &Etcd) -> RawEnvoy {
    let bootstrap = json!({
        "static_resources": {
            "listeners": [http_listener("grpc", vec![grpc_web_filter()], vec![route("/", "etcd", "2s")])],
            "clusters": [h2_cluster("etcd", &etcd.client_ports(), true)],
        },
    });
    RawEnvoy::start(bootstrap, &["grpc"])
}

fn cfg() -> IdempotencyConfig {
    let parsed = levee::config::parse(br#"{"idempotency": {"ttl": "1h", "lock_timeout": "30s"}}"#)
        .expect("config");
    parsed.idempotency.expect("idempotency")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Makes the calls `step` asks for through `port` until the machine decides something.
fn drive(
    port: u16,
    key: &mut RemoteKey,
    cfg: &IdempotencyConfig,
    leases: &mut LeaseCache,
    at: u64,
    mut step: Step,
) -> Step {
    while let Step::Send(call) = &step {
        let answer = match call {
            Call::Txn(t) => match grpc_web::call(
                port,
                KV_SERVICE,
                TXN_METHOD,
                &t.encode(),
                Duration::from_secs(2),
            ) {
                Ok(bytes) => EtcdAnswer::Txn(TxnResponse::decode(&bytes).unwrap()),
                Err(e) => EtcdAnswer::Failed(failure_of(e.code.max(0) as u32, e.code != -1)),
            },
            Call::Grant(g) => match grpc_web::call(
                port,
                LEASE_SERVICE,
                LEASE_GRANT_METHOD,
                &g.encode(),
                Duration::from_secs(2),
            ) {
                Ok(_) => EtcdAnswer::Granted,
                Err(e) => grant_answer(e.code.max(0) as u32, e.code != -1),
            },
        };
        let mut env = RemoteEnv {
            cfg,
            leases,
            now: at,
        };
        step = key.on_answer(&mut env, answer);
    }
    step
}

struct Replica {
    port: u16,
    leases: LeaseCache,
}

impl Replica {
    fn claim(&mut self, cfg: &IdempotencyConfig, key: &mut RemoteKey, at: u64) -> Step {
        let step = key.claim(&mut RemoteEnv {
            cfg,
            leases: &mut self.leases,
            now: at,
        });
        drive(self.port, key, cfg, &mut self.leases, at, step)
    }

    fn complete(
        &mut self,
        cfg: &IdempotencyConfig,
        key: &mut RemoteKey,
        at: u64,
        answer: StoredResponse,
    ) -> Step {
        let outcome = Outcome::Stored {
            status: answer.status,
            body: None,
        };
        let step = key.complete(
            &mut RemoteEnv {
                cfg,
                leases: &mut self.leases,
                now: at,
            },
            outcome,
            Some(answer),
        );
        drive(self.port, key, cfg, &mut self.leases, at, step)
    }
}

fn keyed(client_key: &str, owner: u64, fp: u8) -> RemoteKey {
    let etcd_key = record_key("levee/", client_key.as_bytes(), client_key.as_bytes());
    RemoteKey::new(etcd_key, client_key.into(), owner, Fingerprint([fp; 16]))
}

fn answer(n: u64) -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!("{{\"order\":{n}}}").into_bytes(),
    }
}

fn replayed_body(step: &Step) -> Option<Vec<u8>> {
    match step {
        Step::Claimed(Claimed::Replay(r)) => Some(r.body.clone()),
        _ => None,
    }
}

#[test]
fn replicas_racing_on_one_key_execute_it_once_and_replay_it_everywhere() {
    let etcd = Etcd::single();
    let fronts = [front(&etcd), front(&etcd)];
    let cfg = Arc::new(cfg());
    let executions = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let t0 = now();
    let threads: Vec<_> = (0..16u64)
        .map(|i| {
            let (cfg, executions, refused) = (cfg.clone(), executions.clone(), refused.clone());
            let port = fronts[(i % 2) as usize].port(0);
            thread::spawn(move || {
                let mut replica = Replica {
                    port,
                    leases: LeaseCache::default(),
                };
                let mut key = keyed("pay-1", i + 1, 7);
                match replica.claim(&cfg, &mut key, t0) {
                    Step::Claimed(Claimed::Execute { .. }) => {
                        executions.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(50));
                        let done = replica.complete(&cfg, &mut key, t0 + SEC / 10, answer(i));
                        assert!(matches!(done, Step::Finished), "{done:?}");
                        Some(i)
                    }
                    Step::Claimed(Claimed::Refuse(r)) => {
                        assert!(r.status == 409, "{}", r.status);
                        refused.fetch_add(1, Ordering::SeqCst);
                        None
                    }
                    Step::Claimed(Claimed::Replay(_)) => None,
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let winner: Vec<u64> = threads
        .into_iter()
        .filter_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(executions.load(Ordering::SeqCst), 1);
    assert_eq!(winner.len(), 1);
    let expected = answer(winner[0]).body;
    for (i, f) in fronts.iter().enumerate() {
        let mut replica = Replica {
            port: f.port(0),
            leases: LeaseCache::default(),
        };
        let later = replica.claim(&cfg, &mut keyed("pay-1", 100 + i as u64, 7), t0 + SEC);
        assert_eq!(replayed_body(&later).as_ref(), Some(&expected), "{later:?}");
        let other_payload = replica.claim(&cfg, &mut keyed("pay-1", 200 + i as u64, 8), t0 + SEC);
        assert!(matches!(other_payload, Step::Claimed(Claimed::Refuse(ref r)) if r.status == 422));
    }
    eprintln!(
        "refused while in flight: {}",
        refused.load(Ordering::SeqCst)
    );
}

#[test]
fn a_retaken_lock_fences_the_old_owner_and_leases_are_shared_by_replicas() {
    let etcd = Etcd::single();
    let (a_front, b_front) = (front(&etcd), front(&etcd));
    let cfg = cfg();
    let mut a = Replica {
        port: a_front.port(0),
        leases: LeaseCache::default(),
    };
    let mut b = Replica {
        port: b_front.port(0),
        leases: LeaseCache::default(),
    };
    let t0 = now();
    let mut old = keyed("order-9", 1, 1);
    assert!(matches!(
        a.claim(&cfg, &mut old, t0),
        Step::Claimed(Claimed::Execute { .. })
    ));
    let first_fence = old.fence().unwrap();
    let mut new = keyed("order-9", 2, 1);
    assert!(matches!(
        b.claim(&cfg, &mut new, t0 + SEC),
        Step::Claimed(Claimed::Refuse(_))
    ));
    // Past lock_timeout (times inside the record decide) the other replica retakes the key.
    let mut new = keyed("order-9", 3, 1);
    assert!(matches!(
        b.claim(&cfg, &mut new, t0 + 31 * SEC),
        Step::Claimed(Claimed::Execute { .. })
    ));
    assert!(new.fence().unwrap() > first_fence);
    let late = a.complete(&cfg, &mut old, t0 + 32 * SEC, answer(1));
    assert!(matches!(late, Step::Fenced), "{late:?}");
    assert!(matches!(
        b.complete(&cfg, &mut new, t0 + 32 * SEC, answer(3)),
        Step::Finished
    ));
    let replay = a.claim(&cfg, &mut keyed("order-9", 4, 1), t0 + 33 * SEC);
    assert_eq!(replayed_body(&replay), Some(answer(3).body));
    // Both replicas attached their records to the same per-bucket lease, granted once.
    let kv = first_kv(
        &TxnResponse::decode(
            &grpc_web::call(
                a.port,
                KV_SERVICE,
                TXN_METHOD,
                &read(&record_key("levee/", b"order-9", b"order-9")).encode(),
                Duration::from_secs(2),
            )
            .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(kv.lease >> 48 == 0x4C56, "lease {:x}", kv.lease);
    assert!(!a.leases.is_empty() && !b.leases.is_empty());
}

#[test]
fn a_leader_killed_in_a_storm_of_distinct_keys_loses_no_record_and_runs_no_key_twice() {
    let mut etcd = Etcd::cluster(3);
    let fronts = [front(&etcd), front(&etcd)];
    let cfg = Arc::new(cfg());
    let executions: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let completed: Arc<Mutex<Vec<u64>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_secs(6);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (cfg, executions, completed) = (cfg.clone(), executions.clone(), completed.clone());
            let port = fronts[(t % 2) as usize].port(0);
            thread::spawn(move || {
                let mut replica = Replica {
                    port,
                    leases: LeaseCache::default(),
                };
                let mut n = 0u64;
                while Instant::now() < stop_at {
                    let id = t * 1_000_000 + n;
                    // A client retries its key until it gets an answer (other replica each time).
                    for attempt in 0..20u64 {
                        let mut key = keyed(&format!("k{id}"), id * 100 + attempt + 1, 1);
                        match replica.claim(&cfg, &mut key, now()) {
                            Step::Claimed(Claimed::Execute { .. }) => {
                                *executions.lock().unwrap().entry(id).or_default() += 1;
                                let mut done = replica.complete(&cfg, &mut key, now(), answer(id));
                                while let Step::RetryAt(_) = done {
                                    thread::sleep(Duration::from_millis(100));
                                    let step = key.retry(&mut RemoteEnv {
                                        cfg: &cfg,
                                        leases: &mut replica.leases,
                                        now: now(),
                                    });
                                    done = drive(
                                        port,
                                        &mut key,
                                        &cfg,
                                        &mut replica.leases,
                                        now(),
                                        step,
                                    );
                                }
                                if matches!(done, Step::Finished) {
                                    completed.lock().unwrap().push(id);
                                }
                                break;
                            }
                            Step::Claimed(Claimed::Replay(_)) => break,
                            _ => thread::sleep(Duration::from_millis(100)),
                        }
                    }
                    n += 1;
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(2));
    let leader = etcd.wait_for_leader(Duration::from_secs(5));
    etcd.kill(leader);
    etcd.wait_for_leader(Duration::from_secs(10));
    for t in threads {
        t.join().unwrap();
    }
    let executions = executions.lock().unwrap();
    let twice: Vec<_> = executions.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "keys executed twice: {twice:?}");
    let completed = completed.lock().unwrap();
    assert!(
        completed.len() > 20,
        "only {} keys completed",
        completed.len()
    );
    let mut replica = Replica {
        port: fronts[1].port(0),
        leases: LeaseCache::default(),
    };
    for &id in completed.iter() {
        let later = replica.claim(&cfg, &mut keyed(&format!("k{id}"), u64::MAX - id, 1), now());
        assert_eq!(
            replayed_body(&later),
            Some(answer(id).body),
            "record {id} lost: {later:?}"
        );
    }
    eprintln!(
        "{} keys executed once, {} completed records all replayed",
        executions.len(),
        completed.len()
    );
}

/// What a keyed request adds in round trips to etcd through Envoy, measured: a claim (one Txn),
/// its completion (one Txn), a replay (one Txn). The default call timeout is 250 ms; the p99
/// must stay far below it on a loaded test machine.
#[test]
fn claim_complete_and_replay_each_cost_one_round_trip_well_under_the_timeout() {
    let etcd = Etcd::single();
    let envoy = front(&etcd);
    let cfg = cfg();
    let mut replica = Replica {
        port: envoy.port(0),
        leases: LeaseCache::default(),
    };
    let t0 = now();
    let (mut claims, mut completes, mut replays) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..150u64 {
        let mut key = keyed(&format!("lat-{i}"), i + 1, 1);
        let started = Instant::now();
        let step = replica.claim(&cfg, &mut key, t0);
        claims.push(started.elapsed());
        assert!(matches!(step, Step::Claimed(Claimed::Execute { .. })));
        let started = Instant::now();
        assert!(matches!(
            replica.complete(&cfg, &mut key, t0, answer(i)),
            Step::Finished
        ));
        completes.push(started.elapsed());
        let started = Instant::now();
        let replay = replica.claim(&cfg, &mut keyed(&format!("lat-{i}"), 1_000 + i, 1), t0);
        replays.push(started.elapsed());
        assert_eq!(replayed_body(&replay), Some(answer(i).body));
    }
    let pct = |v: &mut Vec<Duration>, p: usize| {
        v.sort();
        v[(v.len() * p / 100).min(v.len() - 1)]
    };
    let (c50, c99) = (pct(&mut claims, 50), pct(&mut claims, 99));
    let (w50, w99) = (pct(&mut completes, 50), pct(&mut completes, 99));
    let (r50, r99) = (pct(&mut replays, 50), pct(&mut replays, 99));
    eprintln!(
        "through Envoy to one etcd member: claim p50 {c50:?} p99 {c99:?}; \
         completion p50 {w50:?} p99 {w99:?}; replay p50 {r50:?} p99 {r99:?}"
    );
    assert!(c99 < Duration::from_millis(250) && r99 < Duration::from_millis(250));
}
