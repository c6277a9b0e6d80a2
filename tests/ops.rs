//! The Grafana dashboard and the Prometheus alert rules in `envoy/` name only metrics that
//! exist, show every metric levee defines, and alert on what operators asked for. (That a
//! real Envoy running the demo exports every name they use is checked by the demo test in
//! `tests/configs.rs`; `make check-ops` also runs `promtool check rules` and
//! `promtool test rules` on the rules.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ops_files;

use ops_files::*;
use std::collections::BTreeSet;

#[test]
fn metric_names_are_pulled_out_of_promql() {
    let expr = r#"histogram_quantile(0.99, sum by (levee_upstream, le) (rate(levee_upstream_attempts_per_request_bucket{instance=~"$instance"}[$__rate_interval])))
        / on (instance) group_left max without (job) (levee_memory_bound_bytes offset 5m) > bool 0.5"#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(
        names,
        [
            "levee_memory_bound_bytes",
            "levee_upstream_attempts_per_request_bucket"
        ]
    );
}

#[test]
fn every_dashboard_and_alert_query_names_a_metric_levee_or_envoy_exports() {
    let known: BTreeSet<String> = levee_families()
        .into_iter()
        .chain(ENVOY_NAMES.iter().map(|s| s.to_string()))
        .collect();
    let exprs: Vec<String> = dashboard_exprs()
        .into_iter()
        .chain(alert_exprs().into_iter().map(|(_, e)| e))
        .collect();
    assert!(exprs.len() > 30, "{exprs:?}");
    for expr in exprs {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in names {
            assert!(
                known.contains(&name),
                "{name} (in {expr}) is not a metric levee or Envoy exports"
            );
        }
    }
}

#[test]
fn the_dashboard_shows_every_metric_levee_defines() {
    let shown: BTreeSet<String> = dashboard_exprs()
        .iter()
        .flat_map(|e| metric_names(e))
        .collect();
    let missing: Vec<String> = levee_families()
        .into_iter()
        .filter(|f| !shown.contains(f))
        .collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
}

#[test]
fn every_dashboard_panel_has_a_query_and_a_unique_id() {
    let text = std::fs::read_to_string(dashboard_path()).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut ids = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id {}",
            p["id"]
        );
        if p["type"] != "row" {
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
    assert_eq!(dash["uid"], "levee-overview");
}

#[test]
fn the_alert_rules_cover_what_operators_page_on() {
    let alerts: BTreeSet<String> = alert_exprs().into_iter().map(|(a, _)| a).collect();
    for name in [
        "LeveeCircuitOpen",
        "LeveeInternalErrors",
        "LeveeBackendErrors",
        "LeveeRateLimitRejectedShareHigh",
        "LeveeIdempotencyEvictions",
    ] {
        assert!(alerts.contains(name), "{name} missing from {alerts:?}");
    }
}

#[test]
fn the_backend_alert_rules_name_levee_backend_and_etcd_series_and_cover_a_full_etcd() {
    let families = backend_families();
    for f in [
        "levee_backend_calls",
        "levee_backend_decisions",
        "levee_backend_breaker_state",
    ] {
        assert!(families.contains(f), "{f} not in {families:?}");
    }
    let known: BTreeSet<String> = families
        .into_iter()
        .chain(ENVOY_NAMES.iter().chain(ETCD_NAMES).map(|s| s.to_string()))
        .collect();
    let rules = backend_alert_exprs();
    for (alert, expr) in &rules {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {alert}: {expr}");
        for name in names {
            assert!(
                known.contains(&name),
                "{name} (in {alert}) is not a backend or etcd series"
            );
        }
    }
    let full = rules
        .iter()
        .find(|(a, _)| a == "LeveeBackendFull")
        .map(|(_, e)| e.as_str());
    assert!(
        full.is_some_and(|e| e.contains(r#"levee_result="exhausted""#)),
        "{full:?}"
    );
    let alerts: BTreeSet<&str> = rules.iter().map(|(a, _)| a.as_str()).collect();
    for name in ["LeveeBackendDecisions", "LeveeEtcdQuotaNearlyFull"] {
        assert!(alerts.contains(name), "{name} missing from {alerts:?}");
    }
}
