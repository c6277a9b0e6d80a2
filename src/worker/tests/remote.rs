//! Backend calls through the worker: sent to the backend's cluster, answered back to the
//! request that made them, measured, counted, and cut short by the backend's breaker.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::json;

use crate::metrics::{BackendEvent, Event};
use crate::pipeline::flow::{Await, RemoteCall, Step};
use crate::store::MemoryStore;
use crate::time::NANOS_PER_MILLI as MS;

use super::super::fake_host::{Call, FakeHost};
use super::super::{Action, Moment, Stream, Worker};
use super::{worker, ROOT, T0};

fn backends() -> serde_json::Value {
    json!({ "backends": {
        "limits": { "rls": { "cluster": "ratelimit", "domain": "levee" } },
        "records": { "etcd": { "cluster": "etcd", "timeout": "250ms" } } } })
}

fn txn() -> RemoteCall {
    RemoteCall {
        backend: 1,
        service: "etcdserverpb.KV",
        method: "Txn",
        message: b"claim".to_vec(),
        timeout_ms: 250,
    }
}

/// Request `id` awaits `call`, as its flow would ask.
fn call(w: &Worker, host: &mut FakeHost<'_>, id: u32, call: RemoteCall) -> Rc<RefCell<Stream>> {
    let stream = Rc::new(RefCell::new(Stream::new(u64::from(id))));
    host.current = id;
    let step = Step::Await(Await::Remote(call));
    let action = w.apply(host, id, &stream, step, host.now, Moment::InCallback);
    assert_eq!(action, Action::Pause);
    stream
}

fn sent_tokens(host: &mut FakeHost<'_>) -> Vec<u32> {
    host.take_calls()
        .into_iter()
        .filter_map(|(_, c)| match c {
            Call::Grpc { token, .. } => Some(token),
            _ => None,
        })
        .collect()
}

fn count(host: &FakeHost<'_>, backend: usize, what: BackendEvent) -> usize {
    host.metrics.count_of(Event::Backend { backend, what })
}

#[test]
fn a_call_goes_to_its_backends_cluster_and_its_answer_returns_to_the_request_that_made_it() {
    let store = MemoryStore::new();
    let w = worker(backends(), &store);
    let mut host = FakeHost::new(&store, T0);
    host.grpc_clusters.insert("etcd".into());
    let _stream = call(&w, &mut host, 2, txn());
    let calls = host.take_calls();
    let Some((
        2,
        Call::Grpc {
            token,
            cluster,
            service,
            method,
            message,
            timeout_ms,
        },
    )) = calls.into_iter().next()
    else {
        panic!("no gRPC call sent from the request's context");
    };
    assert_eq!(
        (
            cluster.as_str(),
            service.as_str(),
            method.as_str(),
            message.as_slice(),
            timeout_ms
        ),
        ("etcd", "etcdserverpb.KV", "Txn", &b"claim"[..], 250)
    );
    assert!(w.awaits_remote(2));
    assert_eq!(host.held, 1, "the request is held while its call is out");

    // The answer is delivered on another context (the root's, for a call sent from a tick).
    host.current = ROOT;
    host.now = T0 + 3 * MS;
    host.grpc_answer = b"record".to_vec();
    let reads = host.reads;
    w.on_grpc_response(&mut host, token, 0, 6);
    assert_eq!(host.current, 2, "the owner is made the effective context");
    assert!(!w.awaits_remote(2));
    assert_eq!(count(&host, 1, BackendEvent::CallOk), 1);
    assert_eq!(host.metrics.backend_latencies, vec![(1, 3)]);
    assert_eq!(host.reads - reads, 2, "the clock and the answer's message");
}

#[test]
fn a_dispatch_envoy_refuses_is_answered_at_once_and_counted_as_an_error() {
    let store = MemoryStore::new();
    let w = worker(backends(), &store);
    let mut host = FakeHost::new(&store, T0);
    let _stream = call(&w, &mut host, 2, txn());
    assert_eq!(host.take_calls(), vec![(2, Call::GrpcRefused)]);
    assert!(!w.awaits_remote(2), "nothing to wait for");
    assert_eq!(count(&host, 1, BackendEvent::CallError), 1);
}

/// Ten calls answered with gRPC `status`, twice the breaker's failure threshold: every one is
/// sent (none refused by an open breaker) and counted as `counted_as`, none as an error.
fn ten_answers_never_open_the_breaker(status: u32, counted_as: BackendEvent) {
    let store = MemoryStore::new();
    let w = worker(backends(), &store);
    let mut host = FakeHost::new(&store, T0);
    host.grpc_clusters.insert("etcd".into());
    for i in 0..10u32 {
        let _s = call(&w, &mut host, 2 + i, txn());
        let tokens = sent_tokens(&mut host);
        assert_eq!(
            tokens.len(),
            1,
            "call {i} was sent, not refused by a breaker"
        );
        host.now += MS;
        w.on_grpc_response(&mut host, tokens[0], status, 0);
    }
    assert_eq!(count(&host, 1, counted_as), 10);
    assert_eq!(count(&host, 1, BackendEvent::CallError), 0);
    assert_eq!(count(&host, 1, BackendEvent::CallRejectedOpen), 0);
}

#[test]
fn a_refusal_by_the_backend_itself_is_counted_apart_and_never_opens_its_breaker() {
    // "lease already exists" (FAILED_PRECONDITION).
    ten_answers_never_open_the_breaker(9, BackendEvent::CallRefused);
}

#[test]
fn a_full_etcd_is_counted_as_exhausted_and_never_opens_the_breaker() {
    // "database space exceeded" (RESOURCE_EXHAUSTED): etcd answers at once and still serves
    // reads, so every call goes out.
    ten_answers_never_open_the_breaker(8, BackendEvent::CallExhausted);
}

#[test]
fn a_failure_after_the_timeout_counts_as_a_timeout_and_one_before_as_an_error() {
    let store = MemoryStore::new();
    let w = worker(backends(), &store);
    let mut host = FakeHost::new(&store, T0);
    host.grpc_clusters.insert("etcd".into());
    let _a = call(&w, &mut host, 2, txn());
    let _b = call(&w, &mut host, 3, txn());
    let tokens = sent_tokens(&mut host);
    host.now = T0 + MS;
    w.on_grpc_response(&mut host, tokens[0], 14, 0);
    host.now = T0 + 250 * MS;
    w.on_grpc_response(&mut host, tokens[1], 14, 0);
    assert_eq!(count(&host, 1, BackendEvent::CallError), 1);
    assert_eq!(count(&host, 1, BackendEvent::CallTimeout), 1);
    assert_eq!(count(&host, 1, BackendEvent::CallOk), 0);
}

#[test]
fn five_failed_calls_open_the_backends_breaker_and_later_calls_are_answered_without_dispatch() {
    let store = MemoryStore::new();
    let w = worker(backends(), &store);
    let mut host = FakeHost::new(&store, T0);
    host.grpc_clusters.insert("etcd".into());
    for id in 2..7 {
        let _s = call(&w, &mut host, id, txn());
        let token = sent_tokens(&mut host)[0];
        w.on_grpc_response(&mut host, token, 14, 0);
    }
    assert_eq!(host.metrics.backend_states, vec![(1, 1)], "opened");
    let _s = call(&w, &mut host, 7, txn());
    assert!(
        sent_tokens(&mut host).is_empty(),
        "an open breaker sends nothing"
    );
    assert!(!w.awaits_remote(7));
    assert_eq!(count(&host, 1, BackendEvent::CallRejectedOpen), 1);

    // The other backend has its own breaker.
    host.grpc_clusters.insert("ratelimit".into());
    let rls = RemoteCall {
        backend: 0,
        ..txn()
    };
    let _s = call(&w, &mut host, 8, rls);
    assert_eq!(sent_tokens(&mut host).len(), 1);

    // After the reset timeout one probe goes out; its success closes the breaker.
    host.now = T0 + 5_001 * MS;
    let _s = call(&w, &mut host, 9, txn());
    let probe = sent_tokens(&mut host);
    assert_eq!(probe.len(), 1);
    w.on_grpc_response(&mut host, probe[0], 0, 0);
    assert_eq!(host.metrics.backend_states, vec![(1, 1), (1, 2), (1, 0)]);
}

#[test]
fn a_request_that_goes_away_forgets_its_call_and_its_late_answer_is_ignored() {
    let store = MemoryStore::new();
    let w = worker(backends(), &store);
    let mut host = FakeHost::new(&store, T0);
    host.grpc_clusters.insert("etcd".into());
    let stream = call(&w, &mut host, 2, txn());
    let token = sent_tokens(&mut host)[0];
    w.on_done(&mut host, 2, &stream);
    assert!(!w.awaits_remote(2));
    assert_eq!(host.held, 0);
    host.current = ROOT;
    let reads = host.reads;
    w.on_grpc_response(&mut host, token, 0, 6);
    assert_eq!(
        host.current, ROOT,
        "no context is touched for a forgotten call"
    );
    assert_eq!(host.reads, reads, "nothing is read for it");
    assert_eq!(count(&host, 1, BackendEvent::CallOk), 0);
}

#[test]
fn grpc_and_callout_tokens_are_apart() {
    let store = MemoryStore::new();
    let w = worker(backends(), &store);
    let mut host = FakeHost::new(&store, T0);
    host.grpc_clusters.insert("etcd".into());
    let _s = call(&w, &mut host, 2, txn());
    let token = sent_tokens(&mut host)[0];
    // An HTTP callout answer with the same number belongs to no gRPC call.
    w.on_callout_response(&mut host, token, 0, 0);
    assert!(w.awaits_remote(2));
}

/// A background call's handler: counts a refill for backend `tag` when granted, a local
/// decision when not.
fn refilled(
    env: &mut crate::pipeline::Env<'_>,
    tag: u64,
    answer: crate::pipeline::flow::RemoteAnswer,
) {
    let what = if answer.is_ok() && answer.message == b"granted" {
        BackendEvent::ReserveRefill
    } else {
        BackendEvent::DecisionLocal
    };
    env.metrics.count(Event::Backend {
        backend: tag as usize,
        what,
    });
}

fn in_background(w: &Worker, host: &mut FakeHost<'_>) {
    let now = host.now;
    w.with_env(host, now, |env| {
        env.call_in_background(crate::pipeline::flow::BackgroundCall {
            call: txn(),
            tag: 1,
            on_answer: refilled,
        })
    });
}

#[test]
fn a_background_call_goes_out_from_the_root_at_the_next_tick_and_its_answer_to_its_handler() {
    let store = MemoryStore::new();
    let w = worker(backends(), &store);
    let mut host = FakeHost::new(&store, T0);
    host.grpc_clusters.insert("etcd".into());
    host.current = 2;
    in_background(&w, &mut host);
    assert!(
        host.take_calls().is_empty(),
        "nothing is sent from the request's callback"
    );
    assert_eq!(w.next_deadline(), Some(T0), "the root wakes at once");
    assert!(host.tick_ms.is_some());
    super::advance(&w, &mut host, T0 + MS);
    let calls = host.take_calls();
    assert!(
        matches!(calls.as_slice(), [(ROOT, Call::Grpc { .. })]),
        "sent from the root context: {calls:?}"
    );
    let Call::Grpc { token, .. } = calls[0].1 else {
        unreachable!()
    };
    host.grpc_answer = b"granted".to_vec();
    host.now = T0 + 2 * MS;
    w.on_grpc_response(&mut host, token, 0, 7);
    assert_eq!(count(&host, 1, BackendEvent::ReserveRefill), 1);
    assert_eq!(count(&host, 1, BackendEvent::CallOk), 1);
    assert_eq!(
        host.metrics.backend_latencies,
        vec![(1, 2)],
        "sent at the tick, at T0"
    );
    assert_eq!(w.next_deadline(), None, "nothing left to wake for");
}

#[test]
fn a_background_call_envoy_refuses_is_answered_to_its_handler_at_the_tick() {
    let store = MemoryStore::new();
    let w = worker(backends(), &store);
    let mut host = FakeHost::new(&store, T0);
    in_background(&w, &mut host);
    super::advance(&w, &mut host, T0 + MS);
    assert_eq!(host.take_calls(), vec![(ROOT, Call::GrpcRefused)]);
    assert_eq!(count(&host, 1, BackendEvent::DecisionLocal), 1);
    assert_eq!(count(&host, 1, BackendEvent::CallError), 1);
}
