//! What the fuzzers found, as plain deterministic tests: each one pins a behaviour the flow
//! fuzzer's simulator also checks on every random run.

use serde_json::json;

use super::flow::{plugin, T0};
use crate::metrics::Recorder;
use crate::pipeline::flow::{Await, RequestFlow, Step};
use crate::pipeline::step::UpstreamAnswer;
use crate::pipeline::Env;
use crate::random::SplitMix64;
use crate::request::fake::FakeRequest;
use crate::store::MemoryStore;
use crate::timer_queue::TimerPurpose;

/// Found by the flow fuzzer: a shaped request that needs its body (idempotency fingerprint,
/// callout mode) and whose body arrived during the delay must not wait for it again after
/// its release (Envoy sends no second callback).
#[test]
fn a_body_that_arrives_while_the_shaper_holds_the_request_is_not_lost() {
    let doc = json!({
        "rate_limits": [{ "name": "shaper", "algorithm": "leaky_bucket", "limit": 2, "window": "1s", "burst": 1, "max_delay": "900ms" }],
        "idempotency": {},
    });
    let store = MemoryStore::new();
    let plugin = plugin(&doc, &store).expect("config");
    let mut rng = SplitMix64::seeded(1);
    let mut metrics = Recorder::default();
    let now = T0;
    let post = |key: &str| FakeRequest::new("POST", "/pay").header("idempotency-key", key);
    // The first request takes the bucket's only token.
    let mut first = RequestFlow::new(1);
    let step = first.on_request_headers(
        &mut Env::new(&plugin, &store, now, &mut rng, &mut metrics),
        &post("a"),
        false,
    );
    assert_eq!(step, Step::Await(Await::Body));
    let step = first.on_request_body(
        &mut Env::new(&plugin, &store, now, &mut rng, &mut metrics),
        b"amount=1",
        true,
    );
    assert_eq!(step, Step::Continue);
    // The second is shaped; its body arrives (all of it) while it waits.
    let mut second = RequestFlow::new(2);
    let step = second.on_request_headers(
        &mut Env::new(&plugin, &store, now, &mut rng, &mut metrics),
        &post("b"),
        false,
    );
    let Step::Await(Await::Timer {
        wake_at,
        purpose: TimerPurpose::Release,
    }) = step
    else {
        panic!("expected the shaper to hold it, got {step:?}");
    };
    if second.wants_body() {
        let step = second.on_request_body(
            &mut Env::new(&plugin, &store, now, &mut rng, &mut metrics),
            b"amount=2",
            true,
        );
        assert!(second.holds_request(), "{step:?}");
    } // else Envoy buffers the body and never calls again
    let step = second.on_timer(
        &mut Env::new(&plugin, &store, wake_at, &mut rng, &mut metrics),
        TimerPurpose::Release,
    );
    assert_eq!(
        step,
        Some(Step::Continue),
        "released, the request must go on, not wait for a body it already sent"
    );
}

/// Found by the flow fuzzer: a gRPC request cannot go by
/// callout, so it goes through the router even though its upstream says `callout`; when the
/// upstream's answer fails, the chain must run as router mode does after response headers
/// (stale cache or static only) — never pause the response for a secondary callout.
#[test]
fn the_fallback_chain_of_a_grpc_request_to_a_callout_upstream_never_pauses_its_response() {
    let doc = json!({
        "upstreams": { "svc": { "forward": "callout", "cluster": "c", "fallback": [{ "cluster": "c2" }] } },
        "routes": [{ "match": { "path_prefix": "/" }, "upstream": "svc" }],
    });
    let store = MemoryStore::new();
    let plugin = plugin(&doc, &store).expect("config");
    let mut rng = SplitMix64::seeded(1);
    let mut metrics = Recorder::default();
    let grpc = FakeRequest::new("POST", "/pkg.Svc/Call").header("content-type", "application/grpc");
    let mut flow = RequestFlow::new(1);
    let step = flow.on_request_headers(
        &mut Env::new(&plugin, &store, T0, &mut rng, &mut metrics),
        &grpc,
        true,
    );
    assert_eq!(step, Step::Continue, "gRPC goes through the router");
    let answer = UpstreamAnswer {
        status: 503,
        flags: 0,
        headers: Vec::new(),
        end_of_stream: true,
    };
    let (_, replaced) = flow.on_response_headers(
        &mut Env::new(&plugin, &store, T0, &mut rng, &mut metrics),
        answer,
    );
    assert!(
        !matches!(replaced, Some(Step::Await(_))),
        "the response would be paused for a fallback that cannot replace it: {replaced:?}"
    );
    // What the host does if it is paused: a failed secondary ends the chain with Continue,
    // which resumes the request, not the response.
    if let Some(Step::Await(Await::Callout(_))) = replaced {
        let step =
            flow.on_dispatch_failed(&mut Env::new(&plugin, &store, T0, &mut rng, &mut metrics));
        assert_ne!(
            step,
            Some(Step::Continue),
            "the paused response would never resume"
        );
    }
}

/// Found by the flow fuzzer: with the breaker open, a keyed request answered by the `cluster`
/// fallback *is* executed, on the secondary, so its key stays claimed and the secondary's
/// answer is recorded: a retry with the same key replays it instead of executing again.
#[test]
fn a_keyed_request_the_secondary_cluster_executes_keeps_its_key() {
    let mut executed_twice = Vec::new();
    for forward in ["router", "callout"] {
        let doc = json!({
            "idempotency": {},
            "upstreams": { "svc": { "forward": forward, "cluster": "c",
                "circuit_breaker": { "failure_threshold": 1, "reset_timeout": "30s" },
                "fallback": [{ "cluster": "c2" }] } },
            "routes": [{ "match": { "path_prefix": "/" }, "upstream": "svc" }],
        });
        let store = MemoryStore::new();
        let plugin = plugin(&doc, &store).expect("config");
        let mut rng = SplitMix64::seeded(1);
        let mut metrics = Recorder::default();
        // One failure opens the breaker.
        let mut opener = RequestFlow::new(1);
        let get = FakeRequest::new("GET", "/x");
        match opener.on_request_headers(
            &mut Env::new(&plugin, &store, T0, &mut rng, &mut metrics),
            &get,
            true,
        ) {
            Step::Continue => {
                let answer = UpstreamAnswer {
                    status: 503,
                    flags: 0,
                    headers: Vec::new(),
                    end_of_stream: true,
                };
                let _ = opener.on_response_headers(
                    &mut Env::new(&plugin, &store, T0, &mut rng, &mut metrics),
                    answer,
                );
            }
            Step::Await(Await::Callout(_)) => {
                let headers = vec![(":status".to_string(), b"503".to_vec())];
                let _ = opener.on_callout_response(
                    &mut Env::new(&plugin, &store, T0, &mut rng, &mut metrics),
                    Some(headers),
                    Vec::new(),
                );
            }
            other => panic!("{forward}: {other:?}"),
        }
        opener.on_done(&mut Env::new(&plugin, &store, T0, &mut rng, &mut metrics));
        // A keyed POST (no body) goes to the secondary while the breaker is open...
        let post = FakeRequest::new("POST", "/pay").header("idempotency-key", "k");
        let mut first = RequestFlow::new(2);
        let step = first.on_request_headers(
            &mut Env::new(&plugin, &store, T0 + 1, &mut rng, &mut metrics),
            &post,
            true,
        );
        assert!(
            matches!(&step, Step::Await(Await::Callout(r)) if r.cluster == "c2"),
            "{forward}: {step:?}"
        );
        // ...and its retry, while the secondary call is still out, must not execute too.
        let mut retry = RequestFlow::new(3);
        let step = retry.on_request_headers(
            &mut Env::new(&plugin, &store, T0 + 2, &mut rng, &mut metrics),
            &post,
            true,
        );
        if !matches!(&step, Step::Reply(r) if r.status == 409) {
            executed_twice.push(format!("{forward}, while the secondary works: {step:?}"));
        }
        retry.on_done(&mut Env::new(
            &plugin,
            &store,
            T0 + 2,
            &mut rng,
            &mut metrics,
        ));
        // The secondary answers 201: that is the key's answer; a later retry is a replay.
        let created = vec![(":status".to_string(), b"201".to_vec())];
        let step = first.on_callout_response(
            &mut Env::new(&plugin, &store, T0 + 3, &mut rng, &mut metrics),
            Some(created),
            b"made".to_vec(),
        );
        assert!(
            matches!(&step, Some(Step::Reply(r)) if r.status == 201),
            "{forward}: {step:?}"
        );
        first.on_done(&mut Env::new(
            &plugin,
            &store,
            T0 + 3,
            &mut rng,
            &mut metrics,
        ));
        let mut later = RequestFlow::new(4);
        let step = later.on_request_headers(
            &mut Env::new(&plugin, &store, T0 + 4, &mut rng, &mut metrics),
            &post,
            true,
        );
        if !matches!(&step, Step::Reply(r) if r.status == 201 || r.status == 409) {
            executed_twice.push(format!("{forward}, after the secondary answered: {step:?}"));
        }
    }
    assert!(
        executed_twice.is_empty(),
        "the retry executes a second time: {executed_twice:#?}"
    );
}

/// Do answers that expired keep `max_stored_bytes` occupied? Waves of keyed requests, each
/// wave's answers well within the budget (8 × ~1 KB of 16 KB), each wave after the last
/// one's `ttl`: every answer of the current wave should be kept and replayed. Found: only
/// 111 of 240 were. A dead answer's blob (and its bytes in the stored-bytes counter) was
/// freed only when a new record claimed *that same slot*; records that expired, or that a
/// bucket write dropped, left their blobs counted, and replays silently degraded to "409
/// completed, answer not kept" once dead answers filled the cap. Fixed: a bucket write frees
/// the answers of the records it drops (184 of 240 with that alone: expired records in
/// buckets nobody writes stay), and a store that finds the counter full first sweeps a few
/// buckets for expired answers (`idempotency::answers`).
#[test]
fn expired_answers_do_not_keep_the_stored_bytes_budget_full() {
    let doc = json!({ "limits": { "max_tracked_keys": 64 },
        "idempotency": { "ttl": "1s", "max_body_bytes": 1024, "max_stored_bytes": 16384 } });
    let store = MemoryStore::new();
    let plugin = plugin(&doc, &store).expect("config");
    let mut rng = SplitMix64::seeded(3);
    let mut metrics = Recorder::default();
    let mut now = T0;
    let (mut kept, mut total) = (0, 0);
    for wave in 0..30 {
        for k in 0..8 {
            let key = format!("w{wave}-k{k}");
            let post = FakeRequest::new("POST", "/pay").header("idempotency-key", &key);
            let mut flow = RequestFlow::new(crate::random::RandomSource::next_u64(&mut rng));
            let step = flow.on_request_headers(
                &mut Env::new(&plugin, &store, now, &mut rng, &mut metrics),
                &post,
                true,
            );
            assert_eq!(step, Step::Continue, "{key}");
            let answer = UpstreamAnswer {
                status: 200,
                flags: 0,
                headers: vec![("content-type".into(), "text/plain".into())],
                end_of_stream: false,
            };
            let _ = flow.on_response_headers(
                &mut Env::new(&plugin, &store, now, &mut rng, &mut metrics),
                answer,
            );
            flow.on_response_body(
                &mut Env::new(&plugin, &store, now, &mut rng, &mut metrics),
                &[b'a'; 1000],
                true,
            );
            flow.on_done(&mut Env::new(&plugin, &store, now, &mut rng, &mut metrics));
            // The client retries at once: a replay if the answer was kept.
            let mut retry = RequestFlow::new(crate::random::RandomSource::next_u64(&mut rng));
            let step = retry.on_request_headers(
                &mut Env::new(&plugin, &store, now, &mut rng, &mut metrics),
                &post,
                true,
            );
            total += 1;
            if matches!(&step, Step::Reply(r) if r.details == "levee_idempotent_replay") {
                kept += 1;
            }
            retry.on_done(&mut Env::new(&plugin, &store, now, &mut rng, &mut metrics));
        }
        now += 2 * crate::time::NANOS_PER_SEC;
    }
    assert_eq!(
        kept, total,
        "{kept} of {total} answers kept although each wave's live answers fit the budget"
    );
}
