//! etcd's quota reached by a flood of distinct idempotency keys: etcd started with a small
//! `--quota-backend-bytes` fills up, raises its NOSPACE alarm and refuses every write with
//! "database space exceeded". Through the real levee.wasm in a real Envoy (two workers), keyed
//! requests that need a new record then get a clear `503` problem+json with `Retry-After` under
//! `on_backend_error: deny` — never an execution without a record — while a stored key still
//! replays byte for byte (and `422`s on another body) from a read, on the Envoy that stored it
//! and on a second one that never saw it; the refusal is counted as
//! `levee_backend_calls{levee_result="exhausted"}`, the series the shipped alert rule
//! `LeveeBackendFull` watches. Compaction does not free live records; once an operator raises
//! the quota and disarms the alarm, the same Envoy serves keyed requests again. On the way it
//! measures what one keyed request costs in etcd, for the sizing the docs give.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
mod ops_files;

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use harness::client::{send, try_send, Request, Response};
use harness::envoy::Envoy;
use harness::envoy_config::EnvoyOptions;
use harness::etcd::Etcd;
use harness::idempotency_etcd::{etcd_cluster, etcd_options, records};
use harness::keyed::{self, until_served_with};
use harness::upstream::Upstream;
use serde_json::json;

/// etcd's quota in this test: a few thousand keyed requests with 1 KiB answers.
const QUOTA: u64 = 4 << 20;
/// The upstream's answer body size.
const ANSWER_BYTES: usize = 1000;

fn keyed(key: &str) -> Request {
    keyed_answered(key, ANSWER_BYTES)
}

/// A keyed POST whose answer body has `answer_bytes` bytes.
fn keyed_answered(key: &str, answer_bytes: usize) -> Request {
    keyed::keyed(key, key).header("x-upstream-body", "a".repeat(answer_bytes))
}

/// What keyed requests with `answer_bytes`-byte answers cost in etcd: sends 200 under keys
/// `<tag>-<n>` and returns (etcd key bytes, completed record bytes, database bytes per request).
fn cost_in_etcd(envoy: &Envoy, etcd: &Etcd, tag: &str, answer_bytes: usize) -> (usize, usize, u64) {
    const SAMPLE: usize = 200;
    let before = etcd.db_size(0).expect("db size");
    for n in 0..SAMPLE {
        let r = send(
            envoy.port(),
            &keyed_answered(&format!("{tag}-{n}"), answer_bytes),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    thread::sleep(Duration::from_millis(500));
    let after = etcd.db_size(0).expect("db size");
    let records = etcd.sizes_under(0, "levee/");
    let (key, value) = records
        .iter()
        .find(|(k, _)| k.ends_with(&format!("/{tag}-0")))
        .expect("the record of a sampled key");
    let per_request = (after - before) / SAMPLE as u64;
    eprintln!(
        "keyed requests with {answer_bytes}-byte answers: etcd key {} bytes ({key}), completed \
         record {value} bytes; database +{per_request} bytes per request over {SAMPLE} requests",
        key.len(),
    );
    (key.len(), *value, per_request)
}

/// The value of an unlabelled series in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

/// Sends keyed POSTs with fresh keys until one is served, within `within`.
fn until_served(envoy: &Envoy, tag: &str, within: Duration) -> Response {
    until_served_with(envoy.port(), within, |n| keyed(&format!("{tag}-{n}")))
}

fn assert_refused_without_forwarding(up: &Upstream, key: &str, r: &Response) {
    assert_eq!(r.status, 503, "{key}: {}", r.text());
    assert_eq!(r.header("retry-after").as_deref(), Some("1"), "{key}");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json"),
        "{key}"
    );
    assert_eq!(
        up.count_for("idempotency-key", key),
        0,
        "{key} was forwarded"
    );
}

/// The backend tags of envoy/envoy.yaml, so that /stats/prometheus shows the series the
/// alert rules of envoy/prometheus/levee-backend-alerts.yaml query.
fn stats_tags() -> Vec<(String, String)> {
    vec![
        (
            "levee_backend".into(),
            r"^wasmcustom\.levee_backend\.(([^.]+)\.)[\w.]+$".into(),
        ),
        (
            "levee_result".into(),
            r"^wasmcustom\.levee_backend\.[^.]+\.(?:calls|decisions)(\.(\w+))$".into(),
        ),
    ]
}

#[test]
fn a_full_etcd_refuses_keyed_requests_with_503_counts_it_and_serves_again_once_freed() {
    let mut etcd = Etcd::single_with_quota(QUOTA);
    let up = Upstream::start();
    let config = records(json!({ "lock_timeout": "5s", "on_backend_error": "deny" }));
    let envoy = Envoy::start(EnvoyOptions {
        stats_tags: stats_tags(),
        ..etcd_options(etcd_cluster(&etcd), &up, &config)
    });
    // A second Envoy of the mesh on the same etcd: it never stored anything itself.
    let other = Envoy::start(etcd_options(etcd_cluster(&etcd), &up, &config));
    let r = until_served(&envoy, "warm", Duration::from_secs(15));
    assert_eq!(r.status, 200, "never served: {}", r.text());

    // What a keyed request costs in etcd (the sizing the docs give), with small and 1 KiB
    // answers.
    let (_, small_record, small_db) = cost_in_etcd(&envoy, &etcd, "small", 100);
    let (key_len, record, db) = cost_in_etcd(&envoy, &etcd, "size", ANSWER_BYTES);
    assert!(key_len <= "levee/".len() + 70, "{key_len}");
    assert!(
        record > ANSWER_BYTES && record < ANSWER_BYTES + 300,
        "{record}"
    );
    assert!(small_record < record && small_db < db, "{small_db} {db}");
    let stored = send(envoy.port(), &keyed("size-0"));
    assert_eq!(
        stored.header("idempotent-replayed").as_deref(),
        Some("true")
    );

    // A flood of distinct keys until etcd refuses.
    let mut fates: HashMap<String, u16> = HashMap::new();
    let start = Instant::now();
    let first_refused = loop {
        let key = format!("flood-{}", fates.len());
        let r = send(envoy.port(), &keyed(&key));
        fates.insert(key.clone(), r.status);
        if r.status != 200 {
            break (key, r);
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "etcd took {} keys without refusing; db size {:?}",
            fates.len(),
            etcd.db_size(0)
        );
    };
    let (key, r) = &first_refused;
    assert_refused_without_forwarding(&up, key, r);
    assert_eq!(etcd.alarms(0), vec!["NOSPACE".to_string()]);
    eprintln!(
        "etcd refused after {} flood keys ({:?}); db size {:?} of a {QUOTA}-byte quota",
        fates.len() - 1,
        start.elapsed(),
        etcd.db_size(0)
    );

    // Every keyed request that needs a new record is now refused, none forwarded; a key stored
    // before the space ran out still replays byte for byte on either Envoy (etcd serves reads
    // while it refuses writes), is not executed again, and another body on it is 422.
    for n in 0..10 {
        for (name, port) in [("first", envoy.port()), ("second", other.port())] {
            let key = format!("after-{name}-{n}");
            assert_refused_without_forwarding(&up, &key, &send(port, &keyed(&key)));
            let r = send(port, &keyed("size-0"));
            assert_eq!(
                (r.status, r.header("idempotent-replayed").as_deref()),
                (stored.status, Some("true")),
                "a stored key under NOSPACE on the {name} Envoy: {}",
                r.text()
            );
            assert_eq!(
                r.body, stored.body,
                "replayed byte for byte under NOSPACE on the {name} Envoy"
            );
        }
    }
    let other_body = keyed::keyed("size-0", "another body").header("x-upstream-body", "b");
    for (name, port) in [("first", envoy.port()), ("second", other.port())] {
        let r = send(port, &other_body);
        assert_eq!(
            r.status,
            422,
            "another body on a stored key under NOSPACE on the {name} Envoy: {}",
            r.text()
        );
    }
    assert_eq!(up.count_for("idempotency-key", "size-0"), 1);
    for (key, status) in &fates {
        let expected = usize::from(*status == 200);
        assert_eq!(
            up.count_for("idempotency-key", key),
            expected,
            "{key}: {status}"
        );
    }

    // Counted as the backend being full, and as deny decisions.
    let exhausted = envoy.stat("levee_backend.records.calls.exhausted");
    let denied = envoy.stat("levee_backend.records.decisions.deny");
    eprintln!(
        "levee_backend_calls{{levee_result=\"exhausted\"}} {exhausted}, decisions deny {denied}"
    );
    assert!(exhausted >= 1);
    assert!(denied >= 11, "{denied}");
    // The second Envoy denied only its ten fresh keys: its replays and its 422 were answered
    // from the read, not by the backend policy.
    assert_eq!(other.stat("levee_backend.records.decisions.deny"), 10);
    assert_eq!(other.stat("levee_idempotency_replayed"), 10);
    assert_eq!(other.stat("levee_idempotency_mismatch"), 1);
    // The series the backend alert rules query: LeveeBackendFull's, and the etcd quota's.
    let prom = envoy.admin("/stats/prometheus").expect("prometheus stats");
    let full = r#"levee_backend_calls{levee_backend="records",levee_result="exhausted"}"#;
    assert_eq!(sample(&prom, full), Some(exhausted as f64), "{prom}");
    // Every levee_backend_* series the shipped dashboard and alert rules query (histograms
    // reach /stats/prometheus at Envoy's stats flush, every 5 s).
    let wanted: Vec<String> = ops_files::names_in_ops_files()
        .into_iter()
        .chain(
            ops_files::backend_alert_exprs()
                .iter()
                .flat_map(|(_, e)| ops_files::metric_names(e)),
        )
        .filter(|n| n.starts_with("levee_backend_"))
        .collect();
    assert!(wanted.len() >= 8, "{wanted:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let missing = loop {
        let prom = envoy.admin("/stats/prometheus").expect("prometheus stats");
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|n| !prom.lines().any(|l| l.starts_with(&format!("{n}{{"))))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        thread::sleep(Duration::from_millis(500));
    };
    assert!(missing.is_empty(), "not in /stats/prometheus: {missing:?}");
    let metrics = try_send(etcd.client_port(0), &Request::get("/metrics")).expect("etcd /metrics");
    let metrics = metrics.text();
    let used = sample(&metrics, "etcd_mvcc_db_total_size_in_bytes").expect("db size series");
    let quota = sample(&metrics, "etcd_server_quota_backend_bytes").expect("quota series");
    assert_eq!(quota, QUOTA as f64);
    assert!(
        used / quota > 0.8,
        "LeveeEtcdQuotaNearlyFull would not fire: {used} / {quota}"
    );

    // Compaction and defragmentation free the claims' old revisions, not the live records:
    // with records this large the database stays full.
    etcd.compact_and_defragment(0);
    let compacted = etcd.db_size(0).expect("db size");
    eprintln!("after compaction and defragmentation: db size {compacted}");
    // The operator raises the quota (a restart) and disarms the alarm: served again.
    etcd.restart_with(0, &[&format!("--quota-backend-bytes={}", 4 * QUOTA)]);
    etcd.wait_for_leader(Duration::from_secs(20));
    assert_eq!(
        etcd.alarms(0),
        vec!["NOSPACE".to_string()],
        "the alarm outlives a restart"
    );
    etcd.disarm(0);
    assert!(etcd.alarms(0).is_empty());
    let r = until_served(&envoy, "back", Duration::from_secs(15));
    assert_eq!(r.status, 200, "after the alarm was disarmed: {}", r.text());
    let replay = send(envoy.port(), &keyed("size-0"));
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(replay.body, stored.body, "replayed byte for byte");
    assert_eq!(up.count_for("idempotency-key", "size-0"), 1);
}
