//! Keyed requests whose records live in etcd, through the real worker: the claim's backend
//! calls answered by a scripted etcd, the fence forwarded, the replay, `409`, `422`, the
//! completion written from the root after the request ended, and `on_backend_error`.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};

use crate::backend::etcd::{LeaseGrantRequest, TxnRequest};
use crate::backend::Message;
use crate::idempotency::remote::fake_etcd::FakeEtcd;
use crate::idempotency::remote::{Call as EtcdCall, EtcdAnswer, Failure};
use crate::metrics::{BackendEvent, Event, IdempotencyEvent};
use crate::request::fake::FakeRequest;
use crate::store::MemoryStore;
use crate::time::NANOS_PER_MILLI as MS;
use crate::timer_queue::ContextId;

use super::super::fake_host::{Call, FakeHost};
use super::super::{Action, Stream, Worker};
use super::{worker, ROOT, T0};

pub(super) fn doc(policy: &str) -> Value {
    json!({
        "backends": { "records": { "etcd": { "cluster": "etcd", "timeout": "250ms" } } },
        "idempotency": { "backend": "records", "on_backend_error": policy, "fingerprint": true },
    })
}

/// Answers every gRPC call the host recorded from `etcd` (1 ms each), until none is left;
/// returns the other host calls, in order.
pub(super) fn serve(
    w: &Worker,
    host: &mut FakeHost<'_>,
    etcd: &mut FakeEtcd,
) -> Vec<(ContextId, Call)> {
    let mut seen = Vec::new();
    loop {
        let calls = host.take_calls();
        if calls.is_empty() {
            return seen;
        }
        for (id, c) in calls {
            let Call::Grpc {
                token,
                method,
                message,
                ..
            } = c
            else {
                seen.push((id, c));
                continue;
            };
            let call = if method == "Txn" {
                EtcdCall::Txn(TxnRequest::decode(&message).expect("a Txn"))
            } else {
                EtcdCall::Grant(LeaseGrantRequest::decode(&message).expect("a grant"))
            };
            let (status, bytes) = match etcd.call(&call) {
                EtcdAnswer::Txn(r) => (0, r.encode()),
                EtcdAnswer::Granted => (0, Vec::new()),
                EtcdAnswer::Failed(Failure::Exhausted) => (8, Vec::new()),
                EtcdAnswer::Failed(_) => (14, Vec::new()),
            };
            host.now += MS;
            host.grpc_answer = bytes;
            let len = host.grpc_answer.len();
            w.on_grpc_response(host, token, status, len);
        }
    }
}

/// The worker for `doc`, a host at `T0` whose cluster `etcd` takes gRPC calls, and an empty
/// etcd behind it.
pub(super) fn etcd_rig(doc: Value, store: &MemoryStore) -> (Worker, FakeHost<'_>, FakeEtcd) {
    let w = worker(doc, store);
    let mut host = FakeHost::new(store, T0);
    host.grpc_clusters.insert("etcd".into());
    (w, host, FakeEtcd::default())
}

/// A keyed POST to `/pay` with `body` on context `id`; returns its stream and what the host did.
pub(super) fn post(
    w: &Worker,
    host: &mut FakeHost<'_>,
    etcd: &mut FakeEtcd,
    id: ContextId,
    body: &[u8],
) -> (Rc<RefCell<Stream>>, Vec<(ContextId, Call)>) {
    post_to(w, host, etcd, id, "/pay", body)
}

/// A keyed POST (key `k1`) with `body` to `path` on context `id`, claimed in `etcd`: its
/// stream and the host calls that followed.
pub(super) fn post_to(
    w: &Worker,
    host: &mut FakeHost<'_>,
    etcd: &mut FakeEtcd,
    id: ContextId,
    path: &str,
    body: &[u8],
) -> (Rc<RefCell<Stream>>, Vec<(ContextId, Call)>) {
    let req = FakeRequest::new("POST", path).header("idempotency-key", "k1");
    let (stream, action) = super::open(w, host, id, &req, false);
    assert_eq!(action, Action::Pause, "held for the body");
    host.requests.get_mut(&id).expect("request").1 = body.to_vec();
    let action = w.on_request_body(host, id, &stream, body.len(), true);
    assert_eq!(action, Action::Pause, "held for the claim");
    let seen = serve(w, host, etcd);
    (stream, seen)
}

/// Ticks the root `n` times, answering what it sends to etcd.
pub(super) fn ticks(w: &Worker, host: &mut FakeHost<'_>, etcd: &mut FakeEtcd, n: usize) {
    for _ in 0..n {
        host.current = ROOT;
        w.on_tick(host);
        let _ = serve(w, host, etcd);
    }
}

/// How many completions the worker's etcd lease cache is still writing.
pub(super) fn writing(w: &Worker) -> Option<usize> {
    w.plugin.etcd_records.as_ref().map(|r| r.writing())
}

/// The one record's mod revision (0: none).
pub(super) fn revision(etcd: &FakeEtcd) -> i64 {
    etcd.kvs.values().next().map_or(0, |kv| kv.mod_revision)
}

/// The upstream answers `status` with `body`; the stream ends; the root's ticks write the
/// record.
pub(super) fn upstream_answers(
    w: &Worker,
    host: &mut FakeHost<'_>,
    etcd: &mut FakeEtcd,
    id: ContextId,
    stream: &Rc<RefCell<Stream>>,
    status: u16,
    body: &[u8],
) {
    host.current = id;
    host.response.headers = vec![
        (":status".into(), status.to_string().into_bytes()),
        ("content-type".into(), b"text/plain".to_vec()),
    ];
    w.on_response_headers(host, id, stream, false);
    host.response.chunk = body.to_vec();
    w.on_response_body(host, stream, body.len(), true);
    w.on_done(host, id, stream);
    // Each call of the completion goes out at the root's next tick (a lease grant, the Txn).
    ticks(w, host, etcd, 4);
}

/// A reply's status, headers and body.
pub(super) type Replied = (u16, Vec<(String, String)>, Vec<u8>);

pub(super) fn reply_of(seen: &[(ContextId, Call)]) -> Option<Replied> {
    seen.iter().find_map(|(_, c)| match c {
        Call::Reply { reply, .. } => {
            Some((reply.status, reply.headers.clone(), reply.body.clone()))
        }
        _ => None,
    })
}

pub(super) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether request `id` was let through to the upstream.
pub(super) fn forwarded(seen: &[(ContextId, Call)], id: ContextId) -> bool {
    seen.iter().any(|(i, c)| *i == id && *c == Call::Resume)
}

/// Asserts that `seen` holds levee's answer for an unreachable record store: `503`
/// problem+json with `Retry-After: 1`; returns it.
pub(super) fn assert_backend_refusal(seen: &[(ContextId, Call)]) -> Replied {
    let (status, headers, body) = reply_of(seen).expect("answered");
    assert_eq!(status, 503);
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/problem+json")
    );
    (status, headers, body)
}

/// Asserts that request `id` went upstream without protection: no reply, resumed, no fence.
pub(super) fn assert_forwarded_unprotected(seen: &[(ContextId, Call)], id: ContextId) {
    assert!(reply_of(seen).is_none(), "{seen:?}");
    assert!(forwarded(seen, id));
    assert!(!seen
        .iter()
        .any(|(_, c)| matches!(c, Call::SetRequestHeader(..))));
}

/// How many times the first backend's `on_backend_error` decided `what`.
pub(super) fn backend_decisions(host: &FakeHost<'_>, what: BackendEvent) -> usize {
    host.metrics.count_of(Event::Backend { backend: 0, what })
}

/// Asserts that `seen` holds a reply with `status` and `body`.
pub(super) fn assert_answered(seen: &[(ContextId, Call)], status: u16, body: &[u8]) {
    let (got, _, got_body) = reply_of(seen).expect("replayed");
    assert_eq!((got, got_body.as_slice()), (status, body));
}

/// Asserts that `seen` holds a replay: `status` and `body`, marked `idempotent-replayed`.
pub(super) fn assert_replayed(seen: &[(ContextId, Call)], status: u16, body: &[u8]) {
    assert_answered(seen, status, body);
    let (_, headers, _) = reply_of(seen).expect("replayed");
    assert_eq!(header(&headers, "idempotent-replayed"), Some("true"));
}

#[test]
fn a_key_executes_once_with_its_fence_and_is_replayed_from_etcd_byte_for_byte() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(doc("deny"), &store);

    let (first, seen) = post(&w, &mut host, &mut etcd, 2, b"amount=10");
    let fence = seen.iter().find_map(|(id, c)| match c {
        Call::SetRequestHeader(n, v) if *id == 2 && n == "x-levee-fence" => Some(v.clone()),
        _ => None,
    });
    let fence: i64 = fence
        .expect("the fence is forwarded")
        .parse()
        .expect("a revision");
    assert!(fence > 0);
    let resumed = seen.iter().position(|(_, c)| *c == Call::Resume);
    let set = seen
        .iter()
        .position(|(_, c)| matches!(c, Call::SetRequestHeader(..)));
    assert!(
        set < resumed && resumed.is_some(),
        "fence set, then resumed: {seen:?}"
    );
    assert_eq!(etcd.kvs.len(), 1, "one record claimed");

    // Same key while the first is in flight: 409, nothing forwarded.
    let (_, seen) = post(&w, &mut host, &mut etcd, 3, b"amount=10");
    let (status, _, _) = reply_of(&seen).expect("answered");
    assert_eq!(status, 409);
    assert!(!seen.iter().any(|(_, c)| *c == Call::Resume));

    upstream_answers(&w, &mut host, &mut etcd, 2, &first, 201, b"paid");
    assert_eq!(writing(&w), Some(0));

    // Another request later (another Envoy would read the same etcd): the replay.
    host.now += 1_000 * MS;
    let (_, seen) = post(&w, &mut host, &mut etcd, 4, b"amount=10");
    let (status, headers, body) = reply_of(&seen).expect("replayed");
    assert_eq!((status, body.as_slice()), (201, &b"paid"[..]));
    assert_eq!(header(&headers, "idempotent-replayed"), Some("true"));
    assert_eq!(header(&headers, "content-type"), Some("text/plain"));

    // The same key with another body: 422.
    let (_, seen) = post(&w, &mut host, &mut etcd, 5, b"amount=99");
    assert_eq!(reply_of(&seen).map(|r| r.0), Some(422));

    // Counted as the shared-data store counts them.
    let counted = |e| host.metrics.count_of(Event::Idempotency(e));
    assert_eq!(
        [
            counted(IdempotencyEvent::Conflict),
            counted(IdempotencyEvent::Stored),
            counted(IdempotencyEvent::Replayed),
            counted(IdempotencyEvent::Mismatch),
        ],
        [1, 1, 1, 1]
    );
}

#[test]
fn a_server_error_releases_the_key_for_the_next_attempt() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(doc("deny"), &store);
    let (first, _) = post(&w, &mut host, &mut etcd, 2, b"a");
    upstream_answers(&w, &mut host, &mut etcd, 2, &first, 503, b"busy");
    let (_, seen) = post(&w, &mut host, &mut etcd, 3, b"a");
    assert!(reply_of(&seen).is_none(), "executed again: {seen:?}");
    assert!(forwarded(&seen, 3));
}

#[test]
fn etcd_down_denies_with_a_503_and_retry_after_and_forwards_nothing() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(doc("deny"), &store);
    etcd.down = true;
    let (_, seen) = post(&w, &mut host, &mut etcd, 2, b"a");
    let (_, _, body) = assert_backend_refusal(&seen);
    assert!(!body.is_empty());
    assert!(
        !seen.iter().any(|(_, c)| *c == Call::Resume),
        "not forwarded"
    );
    assert_eq!(backend_decisions(&host, BackendEvent::DecisionDeny), 1);

    // etcd back: normal service (the breaker, if it opened, probes again after its pause).
    etcd.down = false;
    host.now += 10_000 * MS;
    let (_, seen) = post(&w, &mut host, &mut etcd, 3, b"a");
    assert!(reply_of(&seen).is_none(), "{seen:?}");
    assert!(forwarded(&seen, 3));
}

#[test]
fn etcd_down_with_allow_forwards_without_a_record_and_counts_it() {
    let store = MemoryStore::new();
    let (w, mut host, mut etcd) = etcd_rig(doc("allow"), &store);
    etcd.down = true;
    let (stream, seen) = post(&w, &mut host, &mut etcd, 2, b"a");
    assert_forwarded_unprotected(&seen, 2);
    assert_eq!(backend_decisions(&host, BackendEvent::DecisionAllow), 1);
    etcd.down = false;
    upstream_answers(&w, &mut host, &mut etcd, 2, &stream, 200, b"ok");
    assert!(etcd.kvs.is_empty(), "no record for an unprotected request");
}

#[test]
fn with_on_concurrent_wait_a_second_request_waits_then_gets_the_replay_from_etcd() {
    let store = MemoryStore::new();
    let mut d = doc("deny");
    d["idempotency"]["on_concurrent"] = json!("wait");
    let (w, mut host, mut etcd) = etcd_rig(d, &store);
    let (first, _) = post(&w, &mut host, &mut etcd, 2, b"a");
    let (_waiting, seen) = post(&w, &mut host, &mut etcd, 3, b"a");
    assert!(reply_of(&seen).is_none(), "waiting, not refused: {seen:?}");
    assert!(w.holds(3) && w.has_timer(3));
    upstream_answers(&w, &mut host, &mut etcd, 2, &first, 200, b"done");
    // The waiting request looks again at its next poll and gets the replay.
    host.current = ROOT;
    let to = host.now + 100 * MS;
    super::advance(&w, &mut host, to);
    let seen = serve(&w, &mut host, &mut etcd);
    assert!(reply_of(&seen).is_some(), "{seen:?}");
    assert_replayed(&seen, 200, b"done");
}
