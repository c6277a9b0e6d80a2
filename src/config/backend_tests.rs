//! `backends` and the fields that reference one: what is accepted, each default, and that every
//! refusal names the JSON path and the fix.

use super::tests::{error, ok};
use super::*;
use std::time::Duration;

const BACKENDS: &str = r#""backends": {
    "records": { "etcd": { "cluster": "etcd" } },
    "limits": { "rls": { "cluster": "ratelimit", "domain": "levee" } } }"#;

fn with(rest: &str) -> String {
    format!("{{{BACKENDS}, {rest}}}")
}

fn global(window: &str, global: &str) -> String {
    with(&format!(
        r#""rate_limits": [{{ "name": "a", "limit": 10, "window": "{window}", "global": {global} }}]"#
    ))
}

#[test]
fn backends_default_to_none_and_parse_in_declaration_order_with_defaults() {
    assert!(ok("{}").backends.is_empty());
    let c = ok(&with("\"idempotency\": {}"));
    assert_eq!(c.backends.len(), 2);
    assert_eq!(c.backends[0].name, "records");
    assert_eq!(
        c.backends[0].kind,
        BackendKind::Etcd(EtcdBackend {
            cluster: "etcd".into(),
            prefix: "levee/".into(),
            timeout: Duration::from_millis(250)
        })
    );
    assert_eq!(
        c.backends[1].kind,
        BackendKind::Rls(RlsBackend {
            cluster: "ratelimit".into(),
            domain: "levee".into(),
            timeout: Duration::from_millis(20)
        })
    );
    assert_eq!(c.backends[1].cluster(), "ratelimit");
    assert_eq!(c.backends[0].timeout(), Duration::from_millis(250));
    let i = c.idempotency.unwrap();
    assert_eq!(i.backend, None, "a backend is used only when named");
    assert_eq!(i.on_backend_error, IdempotencyOnBackendError::Deny);
}

#[test]
fn explicit_backend_fields_are_kept() {
    let c = ok(
        r#"{"backends": {"r": {"etcd": {"cluster": "e", "prefix": "x/", "timeout": "1s"}},
                                "l": {"rls": {"cluster": "c", "domain": "d", "timeout": "5ms"}}}}"#,
    );
    assert_eq!(c.backends[0].cluster(), "e");
    assert!(matches!(&c.backends[0].kind, BackendKind::Etcd(e) if e.prefix == "x/"));
    assert_eq!(c.backends[1].timeout(), Duration::from_millis(5));
}

#[test]
fn idempotency_backend_resolves_to_its_index_with_its_policy() {
    let c = ok(&with(
        r#""idempotency": { "backend": "records", "on_backend_error": "allow" }"#,
    ));
    let i = c.idempotency.unwrap();
    assert_eq!(i.backend, Some(0));
    assert_eq!(i.on_backend_error, IdempotencyOnBackendError::Allow);
}

#[test]
fn global_limit_resolves_with_defaults_reserve_and_local() {
    let c = ok(&global("1m", r#"{ "backend": "limits" }"#));
    assert_eq!(
        c.rate_limits[0].global,
        Some(GlobalLimit {
            backend: 1,
            mode: GlobalMode::Reserve,
            on_backend_error: GlobalOnBackendError::Local
        })
    );
    let c = ok(&global(
        "1d",
        r#"{ "backend": "limits", "mode": "exact", "on_backend_error": "deny" }"#,
    ));
    let g = c.rate_limits[0].global.unwrap();
    assert_eq!(
        (g.mode, g.on_backend_error),
        (GlobalMode::Exact, GlobalOnBackendError::Deny)
    );
    assert_eq!(
        ok(&global("1s", r#"{"backend": "limits"}"#)).rate_limits[0].window,
        Duration::from_secs(1)
    );
    assert!(ok(&global("1h", r#"{"backend": "limits"}"#)).rate_limits[0]
        .global
        .is_some());
    assert_eq!(
        ok("{\"rate_limits\": [{\"name\": \"a\", \"limit\": 1, \"window\": \"7s\"}]}").rate_limits
            [0]
        .global,
        None
    );
}

#[test]
fn the_effective_config_round_trips_backends_and_references() {
    let doc = with(
        r#""idempotency": { "backend": "records" },
           "rate_limits": [{ "name": "a", "limit": 10, "window": "1m", "global": { "backend": "limits" } }]"#,
    );
    let c = ok(&doc);
    let effective = to_effective_json(&c);
    assert_eq!(effective["backends"]["records"]["etcd"]["prefix"], "levee/");
    assert_eq!(effective["backends"]["limits"]["rls"]["timeout"], "20ms");
    assert_eq!(effective["idempotency"]["backend"], "records");
    assert_eq!(effective["idempotency"]["on_backend_error"], "deny");
    assert_eq!(effective["rate_limits"][0]["global"]["mode"], "reserve");
    // Keys come out sorted, so indexes may differ; the names they resolve to may not.
    assert_eq!(to_effective_json(&ok(&effective.to_string())), effective);
}

#[test]
fn a_backend_needs_exactly_one_kind() {
    for body in [
        r#"{}"#,
        r#"{"etcd": {"cluster": "e"}, "rls": {"cluster": "r", "domain": "d"}}"#,
    ] {
        let e = error(&format!(r#"{{"backends": {{"b": {body}}}}}"#));
        assert!(
            e.contains("backends.b: needs exactly one of \"etcd\""),
            "{e}"
        );
    }
    let e = error(r#"{"backends": {"b": {"redis": {}}}}"#);
    assert!(e.contains("backends.b: unknown field \"redis\""), "{e}");
}

#[test]
fn backend_names_follow_the_name_rule() {
    let e = error(r#"{"backends": {"Records": {"etcd": {"cluster": "e"}}}}"#);
    assert!(e.contains("\"Records\" is not a valid name"), "{e}");
    let e = error(
        r#"{"backends": {"a": {"etcd": {"cluster": "e"}}, "a": {"etcd": {"cluster": "e"}}}}"#,
    );
    assert!(e.contains("duplicate field \"a\""), "{e}");
    let e = error(r#"{"backends": []}"#);
    assert!(e.contains("backends: expected an object"), "{e}");
}

#[test]
fn backend_fields_are_checked() {
    let cases = [
        (
            r#"{"etcd": {}}"#,
            "backends.b.etcd: missing field \"cluster\"",
        ),
        (
            r#"{"etcd": {"cluster": "a b"}}"#,
            "backends.b.etcd.cluster: \"a b\" must be non-empty",
        ),
        (
            r#"{"etcd": {"cluster": ""}}"#,
            "backends.b.etcd.cluster: \"\" must be non-empty",
        ),
        (
            r#"{"etcd": {"cluster": "e", "prefix": ""}}"#,
            "backends.b.etcd.prefix: \"\" must be 1-128 printable",
        ),
        (
            r#"{"etcd": {"cluster": "e", "prefix": "a b"}}"#,
            "backends.b.etcd.prefix",
        ),
        (
            r#"{"etcd": {"cluster": "e", "timeout": "0s"}}"#,
            "backends.b.etcd.timeout: must be greater than 0s",
        ),
        (
            r#"{"etcd": {"cluster": "e", "timeout": "2m"}}"#,
            "backends.b.etcd.timeout: is longer than 1m",
        ),
        (
            r#"{"etcd": {"cluster": "e", "domain": "d"}}"#,
            "backends.b.etcd: unknown field \"domain\"",
        ),
        (
            r#"{"rls": {"cluster": "r"}}"#,
            "backends.b.rls: missing field \"domain\"",
        ),
        (
            r#"{"rls": {"domain": "d"}}"#,
            "backends.b.rls: missing field \"cluster\"",
        ),
        (
            r#"{"rls": {"cluster": "r", "domain": "a\nb"}}"#,
            "backends.b.rls.domain",
        ),
        (
            r#"{"rls": {"cluster": "r", "domain": "d", "timeout": "fast"}}"#,
            "backends.b.rls.timeout: \"fast\"",
        ),
        (
            r#"{"rls": {"cluster": "r", "domain": "d", "prefix": "p"}}"#,
            "backends.b.rls: unknown field \"prefix\"",
        ),
    ];
    for (body, want) in cases {
        let e = error(&format!(r#"{{"backends": {{"b": {body}}}}}"#));
        assert!(e.contains(want), "{body}: {e}");
    }
}

#[test]
fn idempotency_backend_must_exist_and_be_etcd() {
    let e = error(r#"{"idempotency": {"backend": "records"}}"#);
    assert!(
        e.contains("idempotency.backend: \"records\" is not a backend (add it under \"backends\""),
        "{e}"
    );
    let e = error(&with(r#""idempotency": {"backend": "record"}"#));
    assert!(
        e.contains(
            "idempotency.backend: \"record\" is not a backend (known backends: records, limits)"
        ),
        "{e}"
    );
    let e = error(&with(r#""idempotency": {"backend": "limits"}"#));
    assert!(
        e.contains("idempotency.backend: backend \"limits\" is not an etcd backend"),
        "{e}"
    );
}

#[test]
fn idempotency_on_backend_error_needs_a_backend_and_a_known_policy() {
    let e = error(r#"{"idempotency": {"on_backend_error": "allow"}}"#);
    assert!(
        e.contains("idempotency.on_backend_error: only applies with \"backend\""),
        "{e}"
    );
    let e = error(&with(
        r#""idempotency": {"backend": "records", "on_backend_error": "local"}"#,
    ));
    assert!(
        e.contains("idempotency.on_backend_error: \"local\" is not one of: deny, allow"),
        "{e}"
    );
}

#[test]
fn global_backend_must_exist_and_be_rls() {
    let e = error(&global("1m", r#"{}"#));
    assert!(
        e.contains("rate_limits[0].global: missing field \"backend\""),
        "{e}"
    );
    let e = error(&global("1m", r#"{"backend": "nope"}"#));
    assert!(
        e.contains("rate_limits[0].global.backend: \"nope\" is not a backend"),
        "{e}"
    );
    let e = error(&global("1m", r#"{"backend": "records"}"#));
    assert!(
        e.contains("rate_limits[0].global.backend: backend \"records\" is not an rls backend"),
        "{e}"
    );
    let e = error(&global("1m", r#"{"backend": "limits", "mode": "batch"}"#));
    assert!(
        e.contains("rate_limits[0].global.mode: \"batch\" is not one of: reserve, exact"),
        "{e}"
    );
    let e = error(&global(
        "1m",
        r#"{"backend": "limits", "on_backend_error": "ignore"}"#,
    ));
    assert!(
        e.contains(
            "rate_limits[0].global.on_backend_error: \"ignore\" is not one of: local, allow, deny"
        ),
        "{e}"
    );
    let e = error(&global("1m", r#"{"backend": "limits", "cost": 2}"#));
    assert!(
        e.contains("rate_limits[0].global: unknown field \"cost\""),
        "{e}"
    );
}

#[test]
fn a_global_window_must_be_a_unit_the_service_counts_in() {
    for window in ["30s", "2m", "1500ms", "7d", "90m"] {
        let e = error(&global(window, r#"{"backend": "limits"}"#));
        assert!(
            e.contains("rate_limits[0].window:") && e.contains("1s, 1m, 1h or 1d"),
            "{window}: {e}"
        );
    }
}
