//! The real worker driven through [`FakeHost`]: what Envoy sees for each kind of request.

mod etcd;
mod etcd_full;
mod etcd_modes;
mod etcd_renewal;
mod global_limit;
mod queue;
mod remote;

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};

use crate::pipeline::Plugin;
use crate::random::SplitMix64;
use crate::request::fake::FakeRequest;
use crate::store::cas::ensure_key;
use crate::store::MemoryStore;
use crate::time::NANOS_PER_SEC as SEC;
use crate::timer_queue::ContextId;

use super::fake_host::{Call, FakeHost};
use super::{Action, Stream, Worker, BODY_GUARD_NS};

pub(super) const T0: u64 = 1_700_000_000 * SEC;
pub(super) const ROOT: ContextId = 1;

pub(super) fn worker(doc: Value, store: &MemoryStore) -> Worker {
    let config = crate::config::parse(doc.to_string().as_bytes()).expect("valid config");
    let plugin = Plugin::new(config, [7; 16]);
    for t in plugin.tables() {
        t.ensure_created(store).expect("table");
    }
    for key in plugin.plain_keys() {
        ensure_key(store, &key, b"").expect("key");
    }
    Worker::new(Rc::new(plugin), SplitMix64::seeded(3), ROOT)
}

/// A request's headers arrive on context `id` (the body, if any, follows).
pub(super) fn open(
    w: &Worker,
    host: &mut FakeHost<'_>,
    id: ContextId,
    req: &FakeRequest,
    end_of_stream: bool,
) -> (Rc<RefCell<Stream>>, Action) {
    let stream = Rc::new(RefCell::new(Stream::new(w.next_owner_id())));
    host.current = id;
    host.requests.insert(id, (req.headers.clone(), Vec::new()));
    let action = w.on_request_headers(host, id, &stream, req, end_of_stream);
    (stream, action)
}

/// The token of the first callout the host was asked to dispatch since its calls were last
/// taken (the other calls are dropped).
pub(super) fn dispatched_token(host: &mut FakeHost<'_>) -> Option<u32> {
    host.take_calls().into_iter().find_map(|(_, c)| match c {
        Call::Dispatch { token, .. } => Some(token),
        _ => None,
    })
}

pub(super) fn replies(host: &mut FakeHost<'_>) -> Vec<(ContextId, u16, &'static str, bool)> {
    host.take_calls()
        .into_iter()
        .filter_map(|(id, c)| match c {
            Call::Reply { reply, grpc } => Some((id, reply.status, reply.details, grpc)),
            _ => None,
        })
        .collect()
}

/// Moves the clock to `to`, ticking at every deadline on the way, as Envoy's timer does.
pub(super) fn advance(w: &Worker, host: &mut FakeHost<'_>, to: u64) {
    while let Some(at) = w.next_deadline().filter(|at| *at <= to) {
        host.now = host.now.max(at);
        w.on_tick(host);
    }
    host.now = to;
}

#[test]
fn a_configuration_without_layers_reads_nothing_and_lets_everything_through() {
    let store = MemoryStore::new();
    let w = worker(json!({}), &store);
    let mut host = FakeHost::new(&store, T0);
    let (stream, action) = open(&w, &mut host, 2, &FakeRequest::new("GET", "/"), true);
    assert_eq!(action, Action::Continue);
    w.on_done(&mut host, 2, &stream);
    assert_eq!(
        host.reads, 0,
        "pass-through must not cost a single host read"
    );
    assert!(host.calls.is_empty());
}

#[test]
fn an_allowed_request_costs_one_clock_read_and_a_limited_one_is_answered_429() {
    let store = MemoryStore::new();
    let doc = json!({ "rate_limits": [{ "name": "rl", "limit": 1, "window": "1s", "key": [] }] });
    let w = worker(doc, &store);
    let mut host = FakeHost::new(&store, T0);
    let grpc = FakeRequest::new("GET", "/").header("content-type", "application/grpc");
    let (first, action) = open(&w, &mut host, 2, &grpc, true);
    assert_eq!(action, Action::Continue);
    assert_eq!(
        host.reads, 1,
        "the clock only: the request's attributes are the adapter's"
    );
    w.on_done(&mut host, 2, &first);
    assert_eq!(
        host.reads, 1,
        "an ended request with nothing held reads nothing more"
    );
    let (_, action) = open(&w, &mut host, 3, &grpc, true);
    assert_eq!(action, Action::Pause);
    assert_eq!(
        replies(&mut host),
        vec![(3, 429, "levee_rate_limited", true)]
    );
    assert_eq!(
        host.reads, 2,
        "gRPC-ness comes from the headers at hand, not a new read"
    );
}

#[test]
fn an_answer_levee_does_not_observe_reads_no_clock() {
    let store = MemoryStore::new();
    let doc = json!({ "rate_limits": [{ "name": "rl", "limit": 5, "window": "1s", "key": [] }] });
    let w = worker(doc, &store);
    let mut host = FakeHost::new(&store, T0);
    let (stream, _) = open(&w, &mut host, 2, &FakeRequest::new("GET", "/"), true);
    let reads = host.reads;
    w.on_response_headers(&mut host, 2, &stream, true);
    assert_eq!(host.reads, reads, "no clock, no status");
    let written: Vec<_> = host
        .take_calls()
        .into_iter()
        .filter_map(|(_, c)| match c {
            Call::SetResponseHeader(name, _) | Call::AddResponseHeader(name, _) => Some(name),
            _ => None,
        })
        .collect();
    assert!(
        written.contains(&"x-ratelimit-remaining".to_string()),
        "{written:?}"
    );
}

#[test]
fn a_shaped_request_is_held_then_resumed_by_the_tick_and_the_tick_stops() {
    let store = MemoryStore::new();
    let doc = json!({ "rate_limits": [{ "name": "shaper", "algorithm": "leaky_bucket",
        "limit": 2, "window": "1s", "burst": 1, "max_delay": "900ms", "key": [] }] });
    let w = worker(doc, &store);
    let mut host = FakeHost::new(&store, T0);
    let get = FakeRequest::new("GET", "/");
    let (_, first) = open(&w, &mut host, 2, &get, true);
    assert_eq!(first, Action::Continue);
    let (second, action) = open(&w, &mut host, 3, &get, true);
    assert_eq!(action, Action::Pause);
    assert!(w.holds(3) && w.has_timer(3));
    assert_eq!(host.held, 1, "the held-requests gauge counts it");
    let period = host.tick_ms.expect("a tick is asked for");
    assert!((1..=900).contains(&period), "tick in {period} ms");
    host.current = ROOT;
    advance(&w, &mut host, T0 + SEC);
    assert_eq!(host.take_calls(), vec![(3, Call::Resume)]);
    assert_eq!(
        (host.held, host.tick_ms),
        (0, None),
        "released: no gauge, no tick"
    );
    w.on_done(&mut host, 3, &second);
    assert!(!w.has_timer(3));
}

#[test]
fn a_body_that_never_comes_is_answered_500_and_logged_once_per_worker() {
    let store = MemoryStore::new();
    let doc = json!({ "idempotency": { "fingerprint": true } });
    let w = worker(doc, &store);
    let mut host = FakeHost::new(&store, T0);
    let mut streams = Vec::new();
    for (id, key) in [(2, "a"), (3, "b")] {
        let post = FakeRequest::new("POST", "/pay").header("idempotency-key", key);
        let (stream, action) = open(&w, &mut host, id, &post, false);
        streams.push(stream); // the host keeps its contexts until they end
        assert_eq!(action, Action::Pause);
        assert!(
            w.has_timer(id),
            "the body guard waits for the first body callback"
        );
    }
    advance(&w, &mut host, T0 + BODY_GUARD_NS);
    let calls = host.take_calls();
    let logs = calls
        .iter()
        .filter(|(_, c)| matches!(c, Call::Log(_)))
        .count();
    assert_eq!(logs, 1, "{calls:?}");
    let answered: Vec<_> = calls
        .iter()
        .filter_map(|(id, c)| match c {
            Call::Reply { reply, .. } => Some((*id, reply.status, reply.details)),
            _ => None,
        })
        .collect();
    assert_eq!(
        answered,
        vec![
            (2, 500, "levee_body_not_delivered"),
            (3, 500, "levee_body_not_delivered")
        ]
    );
}

#[test]
fn once_a_body_callback_came_no_guard_is_set_and_only_new_bytes_are_read() {
    let store = MemoryStore::new();
    let doc = json!({ "idempotency": { "fingerprint": true } });
    let w = worker(doc, &store);
    let mut host = FakeHost::new(&store, T0);
    let post = FakeRequest::new("POST", "/pay").header("idempotency-key", "k1");
    let (stream, _) = open(&w, &mut host, 2, &post, false);
    host.requests.get_mut(&2).expect("request").1 = b"amount=".to_vec();
    assert_eq!(
        w.on_request_body(&mut host, 2, &stream, 7, false),
        Action::Pause
    );
    host.requests.get_mut(&2).expect("request").1 = b"amount=10".to_vec();
    assert_eq!(
        w.on_request_body(&mut host, 2, &stream, 9, true),
        Action::Continue
    );
    assert_eq!(
        stream.borrow().flow.body_seen(),
        9,
        "every byte seen exactly once"
    );
    let post = FakeRequest::new("POST", "/pay").header("idempotency-key", "k2");
    let (_, action) = open(&w, &mut host, 3, &post, false);
    assert_eq!(action, Action::Pause);
    assert!(
        !w.has_timer(3),
        "body callbacks work on this worker: no guard"
    );
}

pub(super) fn callout_upstream(fallback: Value) -> Value {
    json!({
        "upstreams": { "svc": { "forward": "callout", "cluster": "c", "timeout": "500ms",
            "fallback": fallback } },
        "routes": [{ "match": { "path_prefix": "/svc" }, "upstream": "svc" }],
    })
}

#[test]
fn a_callout_is_sent_and_its_answer_becomes_the_reply() {
    let store = MemoryStore::new();
    let w = worker(callout_upstream(json!([])), &store);
    let mut host = FakeHost::new(&store, T0);
    let (stream, action) = open(&w, &mut host, 2, &FakeRequest::new("GET", "/svc/a"), true);
    assert_eq!(action, Action::Pause);
    let calls = host.take_calls();
    let [(
        2,
        Call::Dispatch {
            token,
            cluster,
            timeout_ms,
            ..
        },
    )] = calls.as_slice()
    else {
        panic!("expected one dispatch on the request's context, got {calls:?}");
    };
    assert_eq!((cluster.as_str(), *timeout_ms), ("c", 500));
    assert!(w.awaits_callout(2) && w.holds(2));
    host.callout_answer = (
        Some(vec![(":status".into(), b"201".to_vec())]),
        b"made".to_vec(),
    );
    host.current = 0;
    w.on_callout_response(&mut host, *token, 1, 4);
    assert_eq!(replies(&mut host), vec![(2, 201, "levee_callout", false)]);
    assert!(!w.awaits_callout(2) && !w.holds(2));
    w.on_done(&mut host, 2, &stream);
    assert_eq!(host.held, 0);
}

#[test]
fn a_refused_dispatch_is_an_upstream_failure_and_a_gone_request_is_forgotten() {
    let store = MemoryStore::new();
    let w = worker(callout_upstream(json!([])), &store);
    let mut host = FakeHost::new(&store, T0);
    host.refuse_dispatch = true;
    let (_, action) = open(&w, &mut host, 2, &FakeRequest::new("GET", "/svc/a"), true);
    assert_eq!(action, Action::Pause);
    let answered = replies(&mut host);
    assert!(
        matches!(answered.as_slice(), [(2, 502..=504, _, false)]),
        "{answered:?}"
    );
    host.refuse_dispatch = false;
    let (_stream, _) = open(&w, &mut host, 3, &FakeRequest::new("GET", "/svc/a"), true);
    let token = dispatched_token(&mut host).expect("dispatched");
    host.gone.insert(3);
    host.callout_answer = (Some(vec![(":status".into(), b"200".to_vec())]), Vec::new());
    w.on_callout_response(&mut host, token, 1, 0);
    assert!(
        replies(&mut host).is_empty(),
        "no reply to a request the host forgot"
    );
    assert!(!w.holds(3) && host.held == 0);
}

#[test]
fn a_quiet_breaker_costs_no_shared_data_read_until_a_failure_unsettles_it() {
    let store = MemoryStore::new();
    let doc = json!({
        "upstreams": { "backend": { "forward": "router",
            "circuit_breaker": { "failure_threshold": 2 } } },
        "routes": [{ "match": { "path_prefix": "/" }, "upstream": "backend" }],
    });
    let w = worker(doc, &store);
    let mut host = FakeHost::new(&store, T0);
    let get = FakeRequest::new("GET", "/");
    let request = |host: &mut FakeHost<'_>, id: ContextId, status: &str| {
        let gets = store.stats().gets;
        let (stream, action) = open(&w, host, id, &get, true);
        assert_eq!(action, Action::Continue, "request {id}");
        host.response.headers = vec![(":status".into(), status.as_bytes().to_vec())];
        w.on_response_headers(host, id, &stream, true);
        w.on_done(host, id, &stream);
        store.stats().gets - gets
    };
    assert_eq!(
        request(&mut host, 2, "200"),
        0,
        "settled: the gauge answers"
    );
    assert_eq!(host.metrics.unsettled.get(&0).copied().unwrap_or(0), 0);
    assert_eq!(request(&mut host, 3, "503"), 1, "a failure is recorded");
    assert_eq!(host.metrics.unsettled.get(&0), Some(&1));
    assert_eq!(
        request(&mut host, 4, "200"),
        2,
        "unsettled: read to admit and record"
    );
    assert_eq!(
        host.metrics.unsettled.get(&0),
        Some(&0),
        "the success settled it"
    );
    request(&mut host, 5, "503");
    request(&mut host, 6, "503");
    let (_, action) = open(&w, &mut host, 7, &get, true);
    assert_eq!(action, Action::Pause, "open: refused");
    assert_eq!(
        replies(&mut host),
        vec![(7, 503, "levee_circuit_open", false)]
    );
}

#[test]
fn a_get_without_a_key_under_the_typical_config_never_reads_the_method() {
    // Per-IP limit, a breaker on a router-mode upstream, idempotency on POST: in Envoy the
    // method would be one more host call that returns data, and nothing here needs it.
    let store = MemoryStore::new();
    let doc = json!({
        "rate_limits": [{ "name": "per-ip", "key": ["source_ip"], "limit": 100, "window": "1s" }],
        "idempotency": { "methods": ["POST"] },
        "upstreams": { "backend": { "forward": "router", "circuit_breaker": {} } },
        "routes": [{ "match": { "path_prefix": "/" }, "upstream": "backend" }]
    });
    let w = worker(doc, &store);
    let mut host = FakeHost::new(&store, T0);
    let get = crate::request::fake::Recording::new(FakeRequest::get("/").source("10.0.0.1:5000"));
    let stream = Rc::new(RefCell::new(Stream::new(w.next_owner_id())));
    host.current = 2;
    host.requests.insert(2, (Vec::new(), Vec::new()));
    assert_eq!(
        w.on_request_headers(&mut host, 2, &stream, &get, true),
        Action::Continue
    );
    assert!(get.asked_for("source.address") && get.asked_for("idempotency-key"));
    assert!(!get.asked_for(":method"), "{:?}", get.asked.borrow());
    // A keyed POST still needs it, and is keyed.
    let post = crate::request::fake::Recording::new(
        FakeRequest::new("POST", "/")
            .source("10.0.0.1:5000")
            .header("idempotency-key", "k"),
    );
    let stream = Rc::new(RefCell::new(Stream::new(w.next_owner_id())));
    host.current = 3;
    host.requests.insert(3, (Vec::new(), Vec::new()));
    let _ = w.on_request_headers(&mut host, 3, &stream, &post, true);
    assert!(post.asked_for(":method"));
}
