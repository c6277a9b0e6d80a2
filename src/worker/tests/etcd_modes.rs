//! Keyed requests with records in etcd on the paths beyond Envoy's router: callout mode (the
//! fence on every attempt, the ending written from the root after the answer went out), the
//! lock renewed while the request runs, completions retried on the root's timer, and the
//! `cluster` and `queue` fallbacks completing the record with what the client got.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};

use crate::idempotency::remote::fake_etcd::FakeEtcd;
use crate::store::MemoryStore;
use crate::time::NANOS_PER_MILLI as MS;
use crate::timer_queue::ContextId;

use super::super::fake_host::{Call, FakeHost};
use super::super::{Stream, Worker};
use super::etcd::{
    assert_replayed, etcd_rig, header, post_to, reply_of, revision, serve, ticks, writing,
};
use super::{ROOT, T0};

/// Records in etcd, and a callout-mode upstream `svc` with `retry` and `fallback`.
fn callout_doc(retry: Value, fallback: Value) -> Value {
    json!({
        "backends": { "records": { "etcd": { "cluster": "etcd", "timeout": "250ms" } } },
        "idempotency": { "backend": "records", "fingerprint": true, "lock_timeout": "3s" },
        "upstreams": { "svc": { "forward": "callout", "cluster": "c", "timeout": "500ms",
            "retry": retry, "fallback": fallback } },
        "routes": [{ "match": { "path_prefix": "/svc" }, "upstream": "svc" }],
    })
}

/// [`callout_doc`] without retries.
fn no_retry(fallback: Value) -> Value {
    callout_doc(json!({ "max_retries": 0 }), fallback)
}

/// Where the keyed POSTs go: the callout-mode upstream `svc`.
const SVC: &str = "/svc/pay";

/// Callouts sent: each one's token and the `x-levee-fence` it carries.
type Sent = Vec<(u32, Option<String>)>;

/// The callouts in `seen`: token and the `x-levee-fence` they carry.
fn dispatches(seen: &[(ContextId, Call)]) -> Sent {
    seen.iter()
        .filter_map(|(_, c)| match c {
            Call::Dispatch { token, headers, .. } => {
                Some((*token, header(headers, "x-levee-fence").map(str::to_string)))
            }
            _ => None,
        })
        .collect()
}

/// The callout `token` is answered `status` with `body` (`None`: a reset).
fn answer(
    w: &Worker,
    host: &mut FakeHost<'_>,
    token: u32,
    status: Option<u16>,
    body: &[u8],
) -> Vec<(ContextId, Call)> {
    host.callout_answer = (
        status.map(|s| {
            vec![
                (":status".into(), s.to_string().into_bytes()),
                ("content-type".into(), b"text/plain".to_vec()),
            ]
        }),
        body.to_vec(),
    );
    w.on_callout_response(host, token, usize::from(status.is_some()) * 2, body.len());
    host.take_calls()
}

/// The keyed POST on context 2, and its first attempt answered `status` with `body` (`None`:
/// a reset): the stream, the attempt's dispatch, and the host calls that followed the answer.
fn first_attempt(
    w: &Worker,
    host: &mut FakeHost<'_>,
    etcd: &mut FakeEtcd,
    status: Option<u16>,
    body: &[u8],
) -> (Rc<RefCell<Stream>>, Sent, Vec<(ContextId, Call)>) {
    let (stream, seen) = post_to(w, host, etcd, 2, SVC, b"a");
    let sent = dispatches(&seen);
    host.current = 0;
    let seen = answer(w, host, sent[0].0, status, body);
    (stream, sent, seen)
}

/// The request on context 2 ends; the root's ticks write its record in etcd.
fn end_and_write(
    w: &Worker,
    host: &mut FakeHost<'_>,
    etcd: &mut FakeEtcd,
    stream: &Rc<RefCell<Stream>>,
) {
    w.on_done(host, 2, stream);
    ticks(w, host, etcd, 4);
}

#[test]
fn callout_mode_claims_in_etcd_fences_every_attempt_and_completes_after_the_answer() {
    let store = MemoryStore::new();
    let retry = json!({ "max_retries": 2, "base_delay": "10ms", "max_delay": "10ms",
        "retry_on": ["5xx"], "non_idempotent": "with_key" });
    let (w, mut host, mut etcd) = etcd_rig(callout_doc(retry, json!([])), &store);

    let (stream, seen) = post_to(&w, &mut host, &mut etcd, 2, SVC, b"amount=10");
    let sent = dispatches(&seen);
    assert_eq!(sent.len(), 1, "the first attempt after the claim: {seen:?}");
    let fence: i64 = sent[0]
        .1
        .as_deref()
        .expect("fenced")
        .parse()
        .expect("a revision");
    assert!(fence > 0);

    // The first attempt fails with a 503: the retry carries the same fence.
    host.current = 0;
    let _ = answer(&w, &mut host, sent[0].0, Some(503), b"busy");
    let to = host.now + 50 * MS;
    super::advance(&w, &mut host, to);
    let retried = dispatches(&host.take_calls());
    assert_eq!(retried.len(), 1, "the retry");
    assert_eq!(retried[0].1, Some(fence.to_string()));

    // Same key meanwhile: 409, nothing sent.
    let (_, seen) = post_to(&w, &mut host, &mut etcd, 3, SVC, b"amount=10");
    assert_eq!(reply_of(&seen).map(|r| r.0), Some(409));
    assert!(dispatches(&seen).is_empty());

    // The retry's answer goes to the client at once; the record is written from the root.
    host.current = 0;
    let seen = answer(&w, &mut host, retried[0].0, Some(201), b"paid");
    assert_eq!(reply_of(&seen).map(|r| r.0), Some(201));
    assert!(
        !seen.iter().any(|(_, c)| matches!(c, Call::Grpc { .. })),
        "nothing waits for etcd before the answer: {seen:?}"
    );
    end_and_write(&w, &mut host, &mut etcd, &stream);
    assert_eq!(writing(&w), Some(0));

    // Later (on any Envoy): the stored answer, byte for byte, and nothing sent.
    host.now += 1_000 * MS;
    let (_, seen) = post_to(&w, &mut host, &mut etcd, 4, SVC, b"amount=10");
    assert_replayed(&seen, 201, b"paid");
    assert!(dispatches(&seen).is_empty());
}

#[test]
fn callout_mode_releases_the_key_when_every_attempt_failed_before_acting() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(no_retry(json!([])), &store);
    let (stream, _, seen) = first_attempt(&w, &mut host, &mut etcd, Some(503), b"busy");
    assert_eq!(reply_of(&seen).map(|r| r.0), Some(503));
    end_and_write(&w, &mut host, &mut etcd, &stream);
    // Released: the next request with the key executes.
    let (_, seen) = post_to(&w, &mut host, &mut etcd, 3, SVC, b"a");
    assert!(reply_of(&seen).is_none(), "{seen:?}");
    assert_eq!(dispatches(&seen).len(), 1, "executed again");
}

#[test]
fn callout_mode_leaves_the_key_unknown_after_a_reset_so_a_retry_gets_409() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(no_retry(json!([])), &store);
    let (stream, _, seen) = first_attempt(&w, &mut host, &mut etcd, None, b"");
    assert!(reply_of(&seen).is_some_and(|r| r.0 >= 500), "{seen:?}");
    end_and_write(&w, &mut host, &mut etcd, &stream);
    let (_, seen) = post_to(&w, &mut host, &mut etcd, 3, SVC, b"a");
    assert_eq!(reply_of(&seen).map(|r| r.0), Some(409), "{seen:?}");
    assert!(dispatches(&seen).is_empty(), "not executed twice");
}

#[test]
fn the_secondary_clusters_answer_completes_the_record_in_etcd_and_is_fenced_too() {
    let store = MemoryStore::new();
    let fallback = json!([{ "cluster": "sec" }]);
    let (w, mut host, mut etcd) = etcd_rig(no_retry(fallback), &store);
    let (stream, sent, seen) = first_attempt(&w, &mut host, &mut etcd, Some(503), b"busy");
    let fence = sent[0].1.clone().expect("fenced");
    let secondary: Vec<_> = seen
        .iter()
        .filter_map(|(_, c)| match c {
            Call::Dispatch {
                token,
                cluster,
                headers,
                ..
            } => Some((
                *token,
                cluster.clone(),
                header(headers, "x-levee-fence").map(str::to_string),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(secondary.len(), 1, "{seen:?}");
    assert_eq!(secondary[0].1, "sec");
    assert_eq!(
        secondary[0].2.as_deref(),
        Some(fence.as_str()),
        "the secondary sees the fence"
    );
    let seen = answer(&w, &mut host, secondary[0].0, Some(200), b"from-secondary");
    assert_eq!(reply_of(&seen).map(|r| r.0), Some(200));
    end_and_write(&w, &mut host, &mut etcd, &stream);
    assert_eq!(writing(&w), Some(0));
    let (_, seen) = post_to(&w, &mut host, &mut etcd, 3, SVC, b"a");
    assert_replayed(&seen, 200, b"from-secondary");
}

/// Fires the worker's timers up to `to`, answering etcd; returns the callouts the root sent
/// (queue deliveries).
fn run_root(w: &Worker, host: &mut FakeHost<'_>, etcd: &mut FakeEtcd, to: u64) -> Vec<u32> {
    let mut sent = Vec::new();
    while let Some(at) = w.next_deadline().filter(|at| *at <= to) {
        host.now = host.now.max(at);
        host.current = ROOT;
        w.on_tick(host);
        let seen = serve(w, host, etcd);
        sent.extend(dispatches(&seen).into_iter().map(|(token, _)| token));
        if !sent.is_empty() {
            return sent;
        }
    }
    host.now = to;
    sent
}

#[test]
fn a_queued_request_keeps_its_etcd_lock_and_its_delivery_completes_the_record() {
    let store = MemoryStore::new();
    let fallback = json!([{ "queue": { "max_items": 4, "max_bytes": 65536 } }]);
    let (w, mut host, mut etcd) = etcd_rig(no_retry(fallback), &store);
    let (stream, _, seen) = first_attempt(&w, &mut host, &mut etcd, Some(503), b"busy");
    assert_eq!(reply_of(&seen).map(|r| r.0), Some(202), "queued");
    w.on_done(&mut host, 2, &stream);
    let claimed = revision(&etcd);

    // Deliveries fail for 5 s (the lock is 3 s): the worker renews the queued key's lock.
    let end = T0 + 5_000 * MS;
    while host.now < end {
        let tokens = run_root(&w, &mut host, &mut etcd, end);
        for token in tokens {
            host.current = ROOT;
            let _ = answer(&w, &mut host, token, Some(503), b"still busy");
        }
    }
    assert!(revision(&etcd) > claimed, "renewed while queued");
    let (_, seen) = post_to(&w, &mut host, &mut etcd, 3, SVC, b"a");
    assert_eq!(reply_of(&seen).map(|r| r.0), Some(409), "{seen:?}");

    // The next delivery succeeds: its answer completes the record in etcd.
    let mut delivered = false;
    for _ in 0..50 {
        let to = w.next_deadline().unwrap_or(host.now);
        let tokens = run_root(&w, &mut host, &mut etcd, to);
        if let Some(token) = tokens.first() {
            host.current = ROOT;
            let _ = answer(&w, &mut host, *token, Some(201), b"delivered");
            delivered = true;
            break;
        }
    }
    assert!(delivered, "a delivery went out");
    ticks(&w, &mut host, &mut etcd, 4);
    assert_eq!(writing(&w), Some(0));
    let (_, seen) = post_to(&w, &mut host, &mut etcd, 4, SVC, b"a");
    assert_replayed(&seen, 201, b"delivered");
}

#[test]
fn callout_mode_renews_the_lock_while_an_attempt_is_outstanding() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(no_retry(json!([])), &store);
    let (stream, seen) = post_to(&w, &mut host, &mut etcd, 2, SVC, b"a");
    let sent = dispatches(&seen);
    let claimed = revision(&etcd);
    // The attempt takes 5 s; the lock is 3 s.
    let _ = run_root(&w, &mut host, &mut etcd, T0 + 5_000 * MS);
    assert!(revision(&etcd) > claimed);
    let (_, seen) = post_to(&w, &mut host, &mut etcd, 3, SVC, b"a");
    assert_eq!(reply_of(&seen).map(|r| r.0), Some(409), "{seen:?}");
    host.current = 0;
    let seen = answer(&w, &mut host, sent[0].0, Some(200), b"slow");
    assert_eq!(reply_of(&seen).map(|r| r.0), Some(200));
    end_and_write(&w, &mut host, &mut etcd, &stream);
    assert!(!w.has_timer(2));
    let (_, seen) = post_to(&w, &mut host, &mut etcd, 4, SVC, b"a");
    assert_eq!(
        reply_of(&seen).map(|r| (r.0, r.2)),
        Some((200, b"slow".to_vec()))
    );
}
