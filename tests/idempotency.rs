//! Idempotency keys against a real Envoy with 4 workers (router mode): one execution per key
//! under concurrency, byte-for-byte replays, every error status, each outcome class
//! (released / unknown / stored), lock renewal, TTL expiry, tenant scoping, and a record
//! table much smaller than the keys that come by.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::Duration;

use harness::*;

fn start_with(
    idempotency: serde_json::Value,
    opts: impl FnOnce(&mut EnvoyOptions),
) -> (Upstream, Envoy) {
    start_levee(&serde_json::json!({ "idempotency": idempotency }), |o| {
        o.concurrency = 4;
        opts(o);
    })
}

fn start(idempotency: serde_json::Value) -> (Upstream, Envoy) {
    start_with(idempotency, |_| {})
}

fn keyed(key: &str, body: &str) -> Request {
    Request::post("/payments", body.as_bytes().to_vec()).header("idempotency-key", key)
}

fn executions(up: &Upstream, key: &str) -> usize {
    up.count_for("idempotency-key", key)
}

#[test]
fn concurrent_requests_with_one_key_execute_once_every_time() {
    let (up, envoy) = start(serde_json::json!({ "lock_timeout": "5s" }));
    for round in 0..6 {
        let key = format!("burst-{round}");
        let responses = burst(16, |_| {
            send(
                envoy.port(),
                &keyed(&key, "amount=10").header("x-upstream-delay-ms", "300"),
            )
        });
        assert_eq!(
            executions(&up, &key),
            1,
            "round {round}: the upstream executed the key more than once"
        );
        let first = responses
            .iter()
            .filter(|r| r.status == 200 && r.header("idempotent-replayed").is_none())
            .count();
        assert_eq!(first, 1, "round {round}");
        for r in &responses {
            assert!(
                r.status == 409 || r.status == 200,
                "round {round}: unexpected {} {}",
                r.status,
                r.text()
            );
            assert_eq!(r.header("x-idempotency-key").as_deref(), Some(key.as_str()));
        }
        let conflict = responses.iter().find(|r| r.status == 409).unwrap();
        assert!(conflict.header("retry-after").is_some());
        assert_eq!(
            conflict.header("content-type").as_deref(),
            Some("application/problem+json")
        );
    }
    assert_eq!(envoy.stat("levee_internal_errors"), 0);
}

#[test]
fn a_replay_has_the_stored_status_headers_and_body_byte_for_byte() {
    let (up, envoy) = start(serde_json::json!({}));
    let req = keyed("replay-1", "{\"amount\":42}")
        .header("x-upstream-status", "201")
        .header("x-upstream-header", "x-order=o-77,set-cookie=a=b")
        .header("x-upstream-body", "created order o-77");
    let first = send(envoy.port(), &req);
    assert_eq!(first.status, 201);
    assert!(first.header("idempotent-replayed").is_none());
    for _ in 0..3 {
        let again = send(envoy.port(), &req);
        assert_eq!(again.status, 201);
        assert_eq!(again.body, first.body);
        assert_eq!(again.header("x-order").as_deref(), Some("o-77"));
        assert_eq!(again.header("set-cookie").as_deref(), Some("a=b"));
        assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
        assert_eq!(
            again.header("x-idempotency-key").as_deref(),
            Some("replay-1")
        );
    }
    assert_eq!(executions(&up, "replay-1"), 1);
    assert_eq!(envoy.stat("levee_idempotency_replayed"), 3);
    assert_eq!(envoy.stat("levee_idempotency_stored"), 1);
}

#[test]
fn the_same_key_with_another_payload_is_422() {
    let (up, envoy) = start(serde_json::json!({}));
    assert_eq!(send(envoy.port(), &keyed("k-422", "amount=10")).status, 200);
    let other = send(envoy.port(), &keyed("k-422", "amount=9999"));
    assert_eq!(other.status, 422);
    assert_eq!(
        other.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(executions(&up, "k-422"), 1);
}

#[test]
fn bad_keys_missing_keys_and_big_bodies_get_4xx() {
    let (up, envoy) = start(
        serde_json::json!({ "required": true, "max_key_length": 16, "max_body_bytes": 1024 }),
    );
    let post = |key: Option<&[u8]>, body: Vec<u8>| {
        let mut r = Request::post("/payments", body);
        if let Some(k) = key {
            r = r.header("idempotency-key", k);
        }
        send(envoy.port(), &r)
    };
    let missing = post(None, b"x".to_vec());
    assert_eq!(missing.status, 400, "required and missing");
    assert_eq!(
        missing.json()["detail"],
        "this request needs the idempotency-key header"
    );
    assert_eq!(post(Some(b""), b"x".to_vec()).status, 400, "empty");
    assert_eq!(
        post(Some(b"0123456789abcdefX"), b"x".to_vec()).status,
        400,
        "too long"
    );
    assert_eq!(
        post(Some(b"bad\x01key"), b"x".to_vec()).status,
        400,
        "control character"
    );
    assert_eq!(
        post(Some(b"caf\xc3\xa9"), b"x".to_vec()).status,
        400,
        "not visible ASCII"
    );
    assert_eq!(
        post(Some(b"\"quoted key\""), b"x".to_vec()).status,
        200,
        "a structured-field string is accepted"
    );
    let big = post(Some(b"big"), vec![b'a'; 4096]);
    assert_eq!(big.status, 413);
    assert_eq!(up.count(), 1);
    // GET is not covered by the layer: no key needed.
    assert_eq!(send(envoy.port(), &Request::get("/payments")).status, 200);
}

#[test]
fn a_release_on_status_frees_the_key_and_a_500_is_stored_and_replayed() {
    let (up, envoy) = start(serde_json::json!({}));
    let r503 = send(
        envoy.port(),
        &keyed("k-503", "a").header("x-upstream-status", "503"),
    );
    assert_eq!(r503.status, 503);
    let retry = send(envoy.port(), &keyed("k-503", "a"));
    assert_eq!(
        retry.status, 200,
        "503 released the key: the retry executes"
    );
    assert_eq!(executions(&up, "k-503"), 2);
    assert_eq!(envoy.stat("levee_idempotency_released"), 1);

    let r500 = send(
        envoy.port(),
        &keyed("k-500", "a").header("x-upstream-status", "500"),
    );
    assert_eq!(r500.status, 500);
    let replay = send(envoy.port(), &keyed("k-500", "a"));
    assert_eq!(replay.status, 500);
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(executions(&up, "k-500"), 1);
}

#[test]
fn a_timeout_stays_locked_until_lock_timeout_then_may_be_retaken() {
    let (up, envoy) = start_with(serde_json::json!({ "lock_timeout": "2s" }), |o| {
        o.route_timeout = Duration::from_millis(400);
    });
    let timed_out = send(
        envoy.port(),
        &keyed("k-timeout", "a").header("x-upstream-delay-ms", "1000"),
    );
    assert_eq!(timed_out.status, 504);
    let locked = send(envoy.port(), &keyed("k-timeout", "a"));
    assert_eq!(
        locked.status, 409,
        "the upstream may have acted: the key stays locked"
    );
    assert_eq!(envoy.stat("levee_idempotency_unknown"), 1);
    std::thread::sleep(Duration::from_millis(2_300));
    let retaken = send(envoy.port(), &keyed("k-timeout", "a"));
    assert_eq!(
        retaken.status, 200,
        "after lock_timeout the key may be retaken"
    );
    assert_eq!(executions(&up, "k-timeout"), 2);
}

#[test]
fn a_slow_but_alive_first_request_keeps_its_lock_past_lock_timeout() {
    let (up, envoy) = start(serde_json::json!({ "lock_timeout": "900ms" }));
    std::thread::scope(|s| {
        let first = s.spawn(|| {
            send(
                envoy.port(),
                &keyed("k-slow", "a").header("x-upstream-delay-ms", "2500"),
            )
        });
        std::thread::sleep(Duration::from_millis(1_600));
        let second = send(envoy.port(), &keyed("k-slow", "a"));
        assert_eq!(
            second.status, 409,
            "the owner renews its lock while its request lives"
        );
        assert_eq!(first.join().unwrap().status, 200);
    });
    let third = send(envoy.port(), &keyed("k-slow", "a"));
    assert_eq!(third.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(executions(&up, "k-slow"), 1);
}

#[test]
fn on_concurrent_wait_holds_the_second_request_and_answers_with_the_replay() {
    let (up, envoy) = start(serde_json::json!({ "on_concurrent": "wait" }));
    std::thread::scope(|s| {
        let first = s.spawn(|| {
            send(
                envoy.port(),
                &keyed("k-wait", "a").header("x-upstream-delay-ms", "600"),
            )
        });
        std::thread::sleep(Duration::from_millis(150));
        let second = send(envoy.port(), &keyed("k-wait", "a"));
        assert_eq!(second.status, 200);
        assert_eq!(
            second.header("idempotent-replayed").as_deref(),
            Some("true")
        );
        assert_eq!(first.join().unwrap().body, second.body);
    });
    assert_eq!(executions(&up, "k-wait"), 1);
}

#[test]
fn records_expire_after_ttl() {
    let (up, envoy) = start(serde_json::json!({ "ttl": "1s" }));
    assert_eq!(send(envoy.port(), &keyed("k-ttl", "a")).status, 200);
    assert_eq!(
        send(envoy.port(), &keyed("k-ttl", "a"))
            .header("idempotent-replayed")
            .as_deref(),
        Some("true")
    );
    std::thread::sleep(Duration::from_millis(1_300));
    let fresh = send(envoy.port(), &keyed("k-ttl", "a"));
    assert!(fresh.header("idempotent-replayed").is_none());
    assert_eq!(executions(&up, "k-ttl"), 2);
}

#[test]
fn tenants_using_the_same_key_never_collide() {
    let (up, envoy) = start(serde_json::json!({ "scope": ["header:x-tenant"] }));
    let a = send(
        envoy.port(),
        &keyed("shared-key", "a").header("x-tenant", "acme"),
    );
    let b = send(
        envoy.port(),
        &keyed("shared-key", "a").header("x-tenant", "globex"),
    );
    assert!(a.header("idempotent-replayed").is_none());
    assert!(b.header("idempotent-replayed").is_none());
    assert_eq!(executions(&up, "shared-key"), 2);
    let a2 = send(
        envoy.port(),
        &keyed("shared-key", "a").header("x-tenant", "acme"),
    );
    assert_eq!(a2.header("idempotent-replayed").as_deref(), Some("true"));
}

#[test]
fn an_answer_too_large_to_store_passes_through_and_later_requests_get_409() {
    let (up, envoy) = start(serde_json::json!({ "max_body_bytes": 1024 }));
    let big = "x".repeat(3000);
    let first = send(
        envoy.port(),
        &keyed("k-big", "a").header("x-upstream-body", &big),
    );
    assert_eq!(first.status, 200);
    assert_eq!(first.body.len(), 3000);
    let again = send(envoy.port(), &keyed("k-big", "a"));
    assert_eq!(again.status, 409);
    assert!(again.text().contains("200"), "{}", again.text());
    assert_eq!(executions(&up, "k-big"), 1, "never a second execution");
    assert_eq!(envoy.stat("levee_idempotency_too_large"), 1);
}

#[test]
fn without_allow_on_headers_stop_iteration_a_held_request_gets_500_instead_of_hanging() {
    let (up, envoy) = start_with(serde_json::json!({}), |o| {
        o.allow_on_headers_stop_iteration = false
    });
    let r = send(envoy.port(), &keyed("k-flag", "a body levee must read"));
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("allow_on_headers_stop_iteration"),
        "{}",
        r.text()
    );
    assert!(r.elapsed < Duration::from_secs(10));
    assert_eq!(up.count(), 0);
    assert_eq!(envoy.stat("levee_body_not_delivered"), 1);
    // Requests without a body never wait for one.
    assert_eq!(send(envoy.port(), &Request::get("/x")).status, 200);
}

#[test]
fn max_stored_bytes_bounds_the_stored_answers() {
    let (up, envoy) =
        start(serde_json::json!({ "max_stored_bytes": 4096, "max_body_bytes": 4096 }));
    let body = "y".repeat(3000);
    let post = |key: &str| keyed(key, "a").header("x-upstream-body", &body);
    assert_eq!(send(envoy.port(), &post("fits")).status, 200);
    assert_eq!(send(envoy.port(), &post("no-room")).status, 200);
    let replay = send(envoy.port(), &post("fits"));
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(replay.body.len(), 3000);
    let no_room = send(envoy.port(), &post("no-room"));
    assert_eq!(
        no_room.status,
        409,
        "remembered by status only: {}",
        no_room.text()
    );
    assert_eq!(executions(&up, "no-room"), 1, "never a second execution");
    let bound = envoy.stat("levee_memory_bound_bytes");
    assert!(
        (4096..64 << 20).contains(&bound),
        "bound {bound} counts max_stored_bytes, not every slot at max_body_bytes"
    );
}

#[test]
fn many_more_unique_keys_than_max_tracked_keys_all_execute_and_recent_ones_replay() {
    // 64 slots = 16 buckets of 4; records stay live for 24 h, so unique keys fill every
    // bucket with completed records almost at once. Three clients at a time: at most three
    // records are in flight, so no bucket is ever four in-flight records (that stays `503`).
    let (up, envoy) = start_with(serde_json::json!({}), |o| {
        o.plugin_config = serde_json::json!({
            "limits": { "max_tracked_keys": 64 },
            "idempotency": {}
        })
        .to_string();
    });
    let (clients, per_client) = (3, 150);
    let failures: Vec<String> = burst(clients, |c| {
        let mut failures = Vec::new();
        for n in 0..per_client {
            let key = format!("unique-{c}-{n}");
            let first = send(envoy.port(), &keyed(&key, "amount=1"));
            if first.status != 200 || first.header("idempotent-replayed").is_some() {
                failures.push(format!("{key}: {} {}", first.status, first.text()));
            }
            let retry = send(envoy.port(), &keyed(&key, "amount=1"));
            if retry.header("idempotent-replayed").as_deref() != Some("true") {
                failures.push(format!("{key} retry: {} {}", retry.status, retry.text()));
            }
        }
        failures
    })
    .into_iter()
    .flatten()
    .collect();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    let keys = (clients * per_client) as u64;
    assert_eq!(up.count() as u64, keys, "each key executed once");
    assert_eq!(envoy.stat("levee_internal_errors"), 0, "no 503");
    assert!(envoy.stat("levee_idempotency_evicted") >= keys - 64);
    // A recent key is still replayed...
    let recent = send(envoy.port(), &keyed("unique-0-149", "amount=1"));
    assert_eq!(
        recent.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    // ...and the documented price: the oldest completed records were evicted, so a retry of
    // the very first key executes again.
    let oldest = send(envoy.port(), &keyed("unique-0-0", "amount=1"));
    assert_eq!(oldest.status, 200);
    assert!(oldest.header("idempotent-replayed").is_none());
    assert_eq!(executions(&up, "unique-0-0"), 2);
}
