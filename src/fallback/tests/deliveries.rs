//! The queue delivery machine on its own: what it asks to send, what an answer settles, and
//! how the breaker and a refused dispatch hold a delivery back.

use std::rc::Rc;

use serde_json::{json, Value};

use crate::breaker::gate::breaker_key;
use crate::config::LeveeConfig;
use crate::fallback::deliveries::{DeliveryEnv, DeliveryStep, QueueDeliveries};
use crate::fallback::delivery::Settled;
use crate::metrics::{Event, FallbackEvent, Recorder};
use crate::random::SplitMix64;
use crate::request::saved::SavedRequest;
use crate::store::cas::ensure_key;
use crate::store::MemoryStore;
use crate::time::NANOS_PER_SEC as SEC;

const T0: u64 = 1_700_000_000 * SEC;

fn config(extra: Value) -> LeveeConfig {
    let mut up = json!({ "forward": "callout", "cluster": "c", "timeout": "500ms",
        "fallback": [{ "queue": { "max_items": 4, "max_bytes": 65536 } }] });
    if let (Some(up), Some(extra)) = (up.as_object_mut(), extra.as_object()) {
        up.extend(extra.clone());
    }
    let doc = json!({ "upstreams": { "svc": up } });
    crate::config::parse(doc.to_string().as_bytes()).unwrap()
}

fn post() -> SavedRequest {
    SavedRequest {
        method: "POST".into(),
        path: "/svc/pay".into(),
        authority: "shop.example".into(),
        headers: vec![("content-type".into(), b"application/json".to_vec())].into(),
        body: Rc::new(b"{}".to_vec()),
    }
}

struct Bench {
    config: LeveeConfig,
    store: MemoryStore,
    metrics: Recorder,
    rng: SplitMix64,
}

impl Bench {
    fn new(extra: Value) -> Self {
        Self {
            config: config(extra),
            store: MemoryStore::new(),
            metrics: Recorder::default(),
            rng: SplitMix64::seeded(3),
        }
    }

    fn env(&mut self, now: u64) -> DeliveryEnv<'_> {
        DeliveryEnv {
            upstreams: &self.config.upstreams,
            idempotency: None,
            store: &self.store,
            metrics: &mut self.metrics,
            rng: &mut self.rng,
            now,
        }
    }

    fn machine(&mut self) -> QueueDeliveries {
        let mut m = QueueDeliveries::for_upstreams(&self.config.upstreams, "idempotency-key");
        m.enqueue(0, post(), None, &mut self.rng, T0).unwrap();
        m
    }
}

fn answer(status: &str, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut h = vec![(":status".to_string(), status.as_bytes().to_vec())];
    h.extend(
        extra
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())),
    );
    h
}

#[test]
fn a_due_item_is_dispatched_with_its_key_and_a_final_answer_delivers_it() {
    let mut b = Bench::new(json!({}));
    let mut m = b.machine();
    let DeliveryStep::Dispatch(d) = m.next(&mut b.env(T0)) else {
        panic!("the queued item is due at once");
    };
    assert_eq!((d.cluster.as_str(), d.timeout_ns), ("c", SEC / 2));
    assert_eq!(
        &d.headers[..3],
        &[
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), "/svc/pay".to_string()),
            (":authority".to_string(), "shop.example".to_string()),
        ]
    );
    assert!(d
        .headers
        .iter()
        .any(|(n, v)| n == "idempotency-key" && v.starts_with("levee-")));
    assert_eq!(d.body.as_slice(), b"{}");
    m.sent(d.id, Some(7), &mut b.env(T0));
    assert!(
        matches!(m.next(&mut b.env(T0)), DeliveryStep::WaitUntil(Some(_))),
        "leased, not due"
    );
    assert_eq!(
        m.on_response(8, None, b"", &mut b.env(T0)),
        None,
        "not a delivery"
    );
    let settled = m.on_response(7, Some(&answer("201", &[])), b"", &mut b.env(T0 + 1));
    assert_eq!(settled, Some(Settled::Delivered { attempts: 1 }));
    assert_eq!(m.next(&mut b.env(T0 + 1)), DeliveryStep::WaitUntil(None));
    assert!(b.metrics.events.contains(&Event::Fallback {
        upstream: 0,
        what: FallbackEvent::Delivered
    }));
}

#[test]
fn a_503_with_retry_after_is_retried_no_earlier_than_it_asks() {
    let mut b = Bench::new(json!({}));
    let mut m = b.machine();
    let DeliveryStep::Dispatch(d) = m.next(&mut b.env(T0)) else {
        panic!("due")
    };
    m.sent(d.id, Some(1), &mut b.env(T0));
    let settled = m.on_response(
        1,
        Some(&answer("503", &[("retry-after", "30")])),
        b"",
        &mut b.env(T0),
    );
    let Some(Settled::RetryAt(at)) = settled else {
        panic!("{settled:?}")
    };
    assert!(at >= T0 + 30 * SEC, "retry at {at}");
    assert_eq!(
        m.next(&mut b.env(at - 1)),
        DeliveryStep::WaitUntil(Some(at))
    );
    assert!(matches!(m.next(&mut b.env(at)), DeliveryStep::Dispatch(_)));
}

#[test]
fn a_refused_dispatch_is_retried_later() {
    let mut b = Bench::new(json!({}));
    let mut m = b.machine();
    let DeliveryStep::Dispatch(d) = m.next(&mut b.env(T0)) else {
        panic!("due")
    };
    m.sent(d.id, None, &mut b.env(T0));
    let DeliveryStep::WaitUntil(Some(at)) = m.next(&mut b.env(T0)) else {
        panic!("the item waits for its backoff");
    };
    assert!(at > T0);
    let DeliveryStep::Dispatch(again) = m.next(&mut b.env(at)) else {
        panic!("due again")
    };
    assert_ne!(again.id, d.id, "a new attempt");
}

#[test]
fn an_open_breaker_holds_deliveries_back_until_it_lets_a_probe_through() {
    let breaker = json!({ "circuit_breaker": { "failure_threshold": 1, "reset_timeout": "10s" } });
    let mut b = Bench::new(breaker);
    ensure_key(&b.store, &breaker_key("svc"), b"").unwrap();
    let mut m = b.machine();
    let DeliveryStep::Dispatch(d) = m.next(&mut b.env(T0)) else {
        panic!("due")
    };
    m.sent(d.id, Some(1), &mut b.env(T0));
    // A reset opens the breaker (threshold 1) and schedules a retry after the backoff.
    let settled = m.on_response(1, None, b"", &mut b.env(T0));
    assert!(matches!(settled, Some(Settled::RetryAt(_))), "{settled:?}");
    let DeliveryStep::WaitUntil(Some(retry)) = m.next(&mut b.env(T0)) else {
        panic!("waits")
    };
    assert!(
        retry < T0 + 10 * SEC,
        "the backoff is shorter than the reset timeout"
    );
    // Due while the breaker is open: not sent, moved to when the breaker lets a probe by.
    let DeliveryStep::WaitUntil(Some(later)) = m.next(&mut b.env(retry)) else {
        panic!("the open breaker must hold the delivery back");
    };
    assert!(
        later >= T0 + 10 * SEC,
        "held until the reset timeout: {later}"
    );
    assert!(matches!(
        m.next(&mut b.env(T0 + 10 * SEC)),
        DeliveryStep::Dispatch(_)
    ));
}

#[test]
fn a_key_held_in_etcd_is_handed_back_completed_by_the_delivery_or_abandoned_when_given_up() {
    use crate::fallback::deliveries::{QueuedKey, RemoteEnding};
    use crate::fallback::delivery::DEFAULT_MAX_AGE;
    let mut b = Bench::new(json!({}));
    let mut m = QueueDeliveries::for_upstreams(&b.config.upstreams, "idempotency-key");
    m.enqueue(0, post(), Some(QueuedKey::Remote(7)), &mut b.rng, T0)
        .unwrap();
    assert_eq!(
        m.next_wake(),
        Some(T0),
        "only the delivery wakes the worker: no shared-data renewals"
    );
    let DeliveryStep::Dispatch(d) = m.next(&mut b.env(T0)) else {
        panic!("due at once");
    };
    m.sent(d.id, Some(1), &mut b.env(T0));
    let headers = answer("201", &[("content-type", "text/plain")]);
    m.on_response(1, Some(&headers), b"done", &mut b.env(T0 + 1));
    let endings = m.take_remote_endings();
    let [RemoteEnding::Complete { id: 7, answer }] = endings.as_slice() else {
        panic!("the delivered answer completes key 7: {endings:?}");
    };
    assert_eq!((answer.status, answer.body.as_slice()), (201, &b"done"[..]));
    assert_eq!(
        answer.headers,
        vec![("content-type".to_string(), "text/plain".to_string())]
    );
    assert!(m.take_remote_endings().is_empty(), "taken once");

    // An item never delivered is given up after its maximum age: its key is abandoned.
    let mut m = QueueDeliveries::for_upstreams(&b.config.upstreams, "idempotency-key");
    m.enqueue(0, post(), Some(QueuedKey::Remote(8)), &mut b.rng, T0)
        .unwrap();
    let late = T0 + u64::try_from(DEFAULT_MAX_AGE.as_nanos()).unwrap() + SEC;
    while let DeliveryStep::Dispatch(d) = m.next(&mut b.env(late)) {
        m.sent(d.id, None, &mut b.env(late));
    }
    assert_eq!(m.take_remote_endings(), vec![RemoteEnding::Abandon(8)]);
}
