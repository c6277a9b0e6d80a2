//! etcd as the test harness runs it proves itself: one member and a three-member cluster take
//! levee's Txns (create if absent, fenced writes and deletes, reads, lease grants) through an
//! Envoy HTTP/2 cluster — the path of levee's `dispatch_grpc_call` — and the cluster keeps every
//! acknowledged claim through the loss of its leader. Messages are built and read with levee's
//! own codec.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::etcd::Etcd;
use harness::grpc_web;
use harness::raw_envoy::*;
use levee::backend::etcd::*;
use levee::backend::Message;
use serde_json::json;
use std::time::{Duration, Instant};

/// A gRPC-Web front on Envoy to the etcd members (HTTP/2 cluster, TCP health checks).
fn etcd_envoy(etcd: &Etcd) -> RawEnvoy {
    let mut front = route("/", "etcd", "2s");
    front["route"]["retry_policy"] =
        json!({ "retry_on": "connect-failure,reset,unavailable", "num_retries": 2 });
    let bootstrap = json!({
        "static_resources": {
            "listeners": [http_listener("grpc", vec![grpc_web_filter()], vec![front])],
            "clusters": [h2_cluster("etcd", &etcd.client_ports(), true)],
        },
    });
    RawEnvoy::start(bootstrap, &["grpc"])
}

fn txn(envoy: &RawEnvoy, t: &TxnRequest) -> Result<TxnResponse, grpc_web::GrpcError> {
    let bytes = grpc_web::call(
        envoy.port(0),
        KV_SERVICE,
        TXN_METHOD,
        &t.encode(),
        Duration::from_secs(3),
    )?;
    Ok(TxnResponse::decode(&bytes).unwrap())
}

fn claim(key: &[u8], value: &[u8]) -> TxnRequest {
    create_if_absent(key, value, 0)
}

fn get(envoy: &RawEnvoy, key: &[u8]) -> Option<KeyValue> {
    first_kv(&txn(envoy, &read(key)).unwrap())
}

#[test]
fn a_single_etcd_member_takes_claims_fenced_writes_and_lease_grants_through_envoy() {
    let etcd = Etcd::single();
    let envoy = etcd_envoy(&etcd);
    let key = b"levee/k";

    let TxnOutcome::Applied { revision: fence } =
        outcome(&txn(&envoy, &claim(key, b"owner-1")).unwrap())
    else {
        panic!("the first claim must create the key")
    };
    let again = outcome(&txn(&envoy, &claim(key, b"owner-2")).unwrap());
    let TxnOutcome::Conflict {
        current: Some(existing),
    } = again
    else {
        panic!("{again:?}")
    };
    assert_eq!(
        (
            existing.value.as_slice(),
            existing.create_revision,
            existing.mod_revision
        ),
        (&b"owner-1"[..], fence, fence)
    );

    let done = outcome(&txn(&envoy, &put_if_revision(key, fence, b"done", 0)).unwrap());
    let TxnOutcome::Applied { revision: after } = done else {
        panic!("{done:?}")
    };
    assert!(after > fence);
    let stale = outcome(&txn(&envoy, &put_if_revision(key, fence, b"stale", 0)).unwrap());
    assert!(
        matches!(&stale, TxnOutcome::Conflict { current: Some(kv) } if kv.value == b"done" && kv.mod_revision == after),
        "a stale fence is refused and the winner returned: {stale:?}"
    );
    assert!(matches!(
        outcome(&txn(&envoy, &delete_if_revision(key, fence)).unwrap()),
        TxnOutcome::Conflict { .. }
    ));
    assert!(matches!(
        outcome(&txn(&envoy, &delete_if_revision(key, after)).unwrap()),
        TxnOutcome::Applied { .. }
    ));
    assert_eq!(get(&envoy, key), None);

    let grant = LeaseGrantRequest { ttl: 60, id: 0 };
    let bytes = grpc_web::call(
        envoy.port(0),
        LEASE_SERVICE,
        LEASE_GRANT_METHOD,
        &grant.encode(),
        Duration::from_secs(3),
    )
    .unwrap();
    let lease = LeaseGrantResponse::decode(&bytes).unwrap();
    assert!(lease.id != 0 && lease.ttl == 60, "{lease:?}");
    assert!(
        txn(&envoy, &create_if_absent(b"levee/leased", b"x", lease.id))
            .unwrap()
            .succeeded
    );
    assert_eq!(get(&envoy, b"levee/leased").unwrap().lease, lease.id);
}

#[test]
fn a_three_member_etcd_cluster_keeps_every_claim_through_a_leader_kill() {
    let mut etcd = Etcd::cluster(3);
    let envoy = etcd_envoy(&etcd);
    for i in 0..20 {
        assert!(
            txn(&envoy, &claim(format!("levee/before/{i}").as_bytes(), b"v"))
                .unwrap()
                .succeeded
        );
    }

    let old_leader = etcd.wait_for_leader(Duration::from_secs(5));
    let killed_at = Instant::now();
    etcd.kill(old_leader);
    let new_leader = etcd.wait_for_leader(Duration::from_secs(10));
    assert_ne!(new_leader, old_leader);
    let elected_in = killed_at.elapsed();

    // Claims go on through Envoy (the dead member is skipped by the health check or retried).
    let mut written = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while written < 20 {
        assert!(
            Instant::now() < deadline,
            "claims did not resume within 10 s of the leader's loss"
        );
        if let Ok(r) = txn(
            &envoy,
            &claim(format!("levee/after/{written}").as_bytes(), b"v"),
        ) {
            assert!(r.succeeded);
            written += 1;
        }
    }
    for i in 0..20 {
        assert!(
            get(&envoy, format!("levee/before/{i}").as_bytes()).is_some(),
            "claim {i} was lost"
        );
    }

    etcd.restart(old_leader);
    etcd.wait_for_leader(Duration::from_secs(10));
    assert!(
        etcd.status(old_leader).is_some(),
        "the restarted member rejoined"
    );
    eprintln!("leader re-elected {elected_in:?} after the kill");
}

/// What the record store will see from etcd when it refuses: the gRPC status and message
/// (the host hands both to the callback), distinct per cause.
#[test]
fn etcds_refusals_reach_a_grpc_caller_as_distinct_statuses() {
    let etcd = Etcd::cluster_with(1, &["--quota-backend-bytes=2097152"]);
    let envoy = etcd_envoy(&etcd);
    let put = |key: &str, len: usize| {
        txn(
            &envoy,
            &create_if_absent(key.as_bytes(), &vec![b'x'; len], 0),
        )
    };

    // Above etcd's request limit (--max-request-bytes, 1.5 MiB by default): etcd refuses it...
    let over_limit = put("levee/big", 1_700_000).unwrap_err();
    assert_eq!(over_limit.code, 3, "{over_limit:?}");
    assert!(
        over_limit.message.contains("request is too large"),
        "{over_limit:?}"
    );
    // ...and above its gRPC receive limit (the request limit + 512 KiB) gRPC does.
    let over_grpc = put("levee/huge", 2 << 20).unwrap_err();
    assert_eq!(over_grpc.code, 8, "{over_grpc:?}");
    assert!(
        over_grpc.message.contains("larger than max"),
        "{over_grpc:?}"
    );

    // The backend quota exhausted: etcd raises its NOSPACE alarm and refuses writes, not reads.
    let mut written = Vec::new();
    let refused = loop {
        assert!(written.len() < 200, "2 MiB quota never exhausted");
        let key = format!("levee/fill/{}", written.len());
        match put(&key, 100_000) {
            Ok(r) => {
                assert!(r.succeeded);
                written.push(key);
            }
            Err(e) => break e,
        }
    };
    assert_eq!(refused.code, 8, "{refused:?}");
    assert!(
        refused.message.contains("database space exceeded"),
        "{refused:?}"
    );
    assert_eq!(
        get(&envoy, written[0].as_bytes()).unwrap().value.len(),
        100_000
    );
}
