//! The `backends` block against a real Envoy: a reference to a backend that does not exist, or
//! of the wrong kind, is refused with the JSON path named; a backend whose cluster Envoy does
//! not know costs nothing to requests that do not use it; and every backend's metrics exist
//! from configure time with the backend and the result as Prometheus labels, through the
//! `stats_tags` shipped in `envoy/envoy.yaml`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::*;

fn options(config: &str, up: &Upstream) -> EnvoyOptions {
    EnvoyOptions {
        concurrency: 2,
        stats_tags: shipped_levee_stats_tags(),
        ..EnvoyOptions::levee(config, up.port())
    }
}

/// The `levee_*` `stats_tags` of `envoy/envoy.yaml` as `(tag_name, regex)`.
fn shipped_levee_stats_tags() -> Vec<(String, String)> {
    let yaml = std::fs::read_to_string(crate_root().join("envoy/envoy.yaml")).unwrap();
    let lines: Vec<&str> = yaml.lines().map(str::trim).collect();
    let unquote = |s: &str| s.trim().trim_matches('\'').replace("''", "'");
    let tags: Vec<(String, String)> = lines
        .windows(2)
        .filter_map(|w| {
            let name = w[0].strip_prefix("- tag_name:")?;
            let regex = w[1].strip_prefix("regex:")?;
            Some((unquote(name), unquote(regex)))
        })
        .filter(|(name, _)| name.starts_with("levee_"))
        .collect();
    assert!(tags.iter().any(|(n, _)| n == "levee_backend"), "{tags:?}");
    tags
}

#[test]
fn references_to_missing_or_wrong_backends_are_refused_with_the_path_named() {
    let up = Upstream::start();
    let backends =
        r#""backends": { "limits": { "rls": { "cluster": "ratelimit", "domain": "levee" } } }"#;
    let cases = [
        (
            format!(r#"{{ {backends}, "idempotency": {{ "backend": "records" }} }}"#),
            "idempotency.backend: \"records\" is not a backend",
        ),
        (
            format!(r#"{{ {backends}, "idempotency": {{ "backend": "limits" }} }}"#),
            "not an etcd backend",
        ),
        (
            format!(
                r#"{{ {backends}, "rate_limits": [{{ "name": "a", "limit": 5, "window": "10s", "global": {{ "backend": "limits" }} }}] }}"#
            ),
            "rate_limits[0].window",
        ),
    ];
    for (config, named) in cases {
        let line = Envoy::refused_config_line(options(&config, &up));
        assert!(
            line.contains(named),
            "error line does not name {named}: {line}"
        );
    }
}

#[test]
fn a_backend_whose_cluster_envoy_does_not_know_leaves_other_requests_alone_and_exports_labelled_metrics(
) {
    let up = Upstream::start();
    let config = r#"{
        "backends": {
            "records": { "etcd": { "cluster": "no-such-etcd" } },
            "limits": { "rls": { "cluster": "no-such-ratelimit", "domain": "levee" } } },
        "rate_limits": [{ "name": "local", "key": [], "limit": 1000, "window": "1s" }] }"#;
    let envoy = Envoy::start(options(config, &up));
    for _ in 0..10 {
        let r = send(envoy.port(), &Request::get("/hello"));
        assert_eq!(r.status, 200);
    }
    assert_eq!(up.requests().len(), 10);
    let prom = envoy.admin("/stats/prometheus").unwrap();
    let has = |family: &str, labels: &[&str]| {
        prom.lines()
            .any(|l| l.starts_with(&format!("{family}{{")) && labels.iter().all(|x| l.contains(x)))
    };
    for backend in ["records", "limits"] {
        let b = format!("levee_backend=\"{backend}\"");
        for result in [
            "ok",
            "error",
            "refused",
            "exhausted",
            "timeout",
            "rejected_open",
        ] {
            let r = format!("levee_result=\"{result}\"");
            assert!(
                has("levee_backend_calls", &[&b, &r]),
                "{backend} {result}:\n{prom}"
            );
        }
        for policy in ["deny", "allow", "local"] {
            let r = format!("levee_result=\"{policy}\"");
            assert!(
                has("levee_backend_decisions", &[&b, &r]),
                "{backend} {policy}"
            );
        }
        assert!(has("levee_backend_breaker_state", &[&b]), "{backend}");
        assert!(has("levee_backend_reserve_refills", &[&b]), "{backend}");
    }
    for line in prom.lines().filter(|l| l.starts_with("levee_backend")) {
        assert!(
            line.contains("{levee_backend=\"") || line.contains(",levee_backend=\""),
            "a backend name escaped the stats_tags: {line}"
        );
    }
    assert_eq!(envoy.stat("wasmcustom.levee_backend.records.calls.ok"), 0);
}
