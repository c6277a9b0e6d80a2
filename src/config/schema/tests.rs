//! Pins the generated schema to the validator: the committed file is current, every property is
//! described and accepted, every default is what `to_effective_json` fills in, every bound and
//! enum is the validator's, and real configs conform (checked by the small structural checker
//! in `conform.rs`, which does not evaluate `pattern`).

use super::super::{parse, to_effective_json, TOP_FIELDS};
use super::{json_schema, json_schema_pretty, UNDOCUMENTED};
use serde_json::{json, Value};

mod conform;
mod fixtures;
use conform::violations;
use fixtures::*;

#[test]
fn committed_schema_is_up_to_date() {
    let committed = std::fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
    assert!(
        committed == json_schema_pretty(),
        "schema/levee.schema.json is stale or missing: regenerate it with \
         `cargo run --bin levee -- schema > schema/levee.schema.json` and commit it"
    );
}

#[test]
fn schema_has_every_top_level_key_and_declares_its_dialect() {
    let s = json_schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let keys: Vec<String> = properties(&s).into_iter().map(|(k, _)| k).collect();
    let mut expected: Vec<String> = TOP_FIELDS.iter().map(|f| (*f).to_owned()).collect();
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(s["additionalProperties"], false);
}

#[test]
fn every_object_is_closed_and_every_field_is_described() {
    let s = json_schema();
    for c in contexts() {
        let def = object_def(&s, c.def);
        assert_eq!(def["additionalProperties"], false, "{}", c.def);
        for (name, prop) in properties(def) {
            let text = prop["description"].as_str().unwrap_or(UNDOCUMENTED);
            assert!(
                text != UNDOCUMENTED && !text.is_empty(),
                "{}.{name} has no description",
                c.def
            );
        }
    }
    let defined: Vec<&String> = s["$defs"].as_object().unwrap().keys().collect();
    for c in contexts().iter().filter(|c| c.def != "root") {
        assert!(
            defined.iter().any(|d| *d == c.def),
            "{} is tested but not defined",
            c.def
        );
    }
}

#[test]
fn every_described_field_is_accepted_with_its_default_or_example() {
    let s = json_schema();
    for c in contexts() {
        for (name, prop) in properties(object_def(&s, c.def)) {
            let sample = prop
                .get("default")
                .or_else(|| prop["examples"].get(0))
                .cloned()
                .unwrap_or_else(|| json!({}));
            let d = doc(&c, &c.roomy, &name, sample);
            if let Err(e) = parse(d.as_bytes()) {
                panic!(
                    "{}.{name}: the schema offers a value the validator refuses: {e}\n{d}",
                    c.def
                );
            }
        }
    }
}

#[test]
fn defaults_are_what_the_validator_fills_in() {
    let s = json_schema();
    for c in contexts() {
        for (name, prop) in properties(object_def(&s, c.def)) {
            let Some(default) = prop.get("default") else {
                continue;
            };
            let mut checked = false;
            for base in c.bases.iter().filter(|b| b.get(&name).is_none()) {
                let d = (c.wrap)(base.clone()).to_string();
                let effective = to_effective_json(&parse(d.as_bytes()).unwrap());
                let Some(actual) = effective.pointer(c.at).and_then(|o| o.get(&name)) else {
                    continue;
                };
                checked = true;
                if *default == json!({}) && actual.is_object() {
                    continue; // "{}" means "the object with its own defaults", checked in its own context
                }
                assert_eq!(
                    actual, default,
                    "{}.{name}: schema default differs from the validator's",
                    c.def
                );
            }
            assert!(
                checked,
                "{}.{name}: default never checked (add a base where it applies)",
                c.def
            );
        }
    }
}

#[test]
fn bounds_are_the_validators_bounds() {
    let s = json_schema();
    let mut probed = 0;
    for c in contexts() {
        for (name, prop) in properties(object_def(&s, c.def)) {
            let p = resolved(&s, &prop);
            let accepts = |v: Value| parse(doc(&c, &c.roomy, &name, v).as_bytes());
            let refused = |v: Value| {
                let e = accepts(v.clone())
                    .err()
                    .unwrap_or_else(|| panic!("{}.{name} = {v} accepted", c.def));
                assert!(
                    e.path.ends_with(&name),
                    "{}.{name} = {v}: error at {}",
                    c.def,
                    e.path
                );
            };
            if p["type"] == "integer" {
                let (min, max) = (
                    p["minimum"].as_u64().unwrap(),
                    p["maximum"].as_u64().unwrap(),
                );
                for v in [min, max] {
                    assert!(accepts(v.into()).is_ok(), "{}.{name} = {v} refused", c.def);
                }
                if min > 0 {
                    refused((min - 1).into());
                }
                refused((max + 1).into());
                probed += 1;
            }
            if p["type"] == "number" {
                let max = p["maximum"].as_f64().unwrap();
                let low = p["exclusiveMinimum"].as_f64().unwrap();
                assert!(
                    accepts(max.into()).is_ok() && accepts((low + 0.001).into()).is_ok(),
                    "{}.{name}",
                    c.def
                );
                refused((max + 0.001).into());
                refused(low.into());
                probed += 1;
            }
        }
    }
    assert!(probed >= 20, "only {probed} bounds probed");
}

#[test]
fn every_enum_value_parses_and_others_are_refused() {
    let s = json_schema();
    for c in contexts() {
        for (name, prop) in properties(object_def(&s, c.def)) {
            let Some(values) = prop["enum"].as_array() else {
                continue;
            };
            for v in values {
                let d = doc(&c, &c.roomy, &name, v.clone());
                assert!(
                    parse(d.as_bytes()).is_ok(),
                    "{}.{name} = {v} refused",
                    c.def
                );
            }
            assert!(parse(doc(&c, &c.roomy, &name, json!("nope")).as_bytes()).is_err());
        }
    }
    let classes = s["$defs"]["outcomes"]["items"]["anyOf"][0]["enum"]
        .as_array()
        .unwrap()
        .clone();
    let retry = contexts().into_iter().find(|c| c.def == "retry").unwrap();
    assert!(parse(doc(&retry, &json!({}), "retry_on", Value::Array(classes)).as_bytes()).is_ok());
}

#[test]
fn spec_example_parses_and_conforms() {
    let s = json_schema();
    let example = spec_example();
    let cfg = parse(example.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(violations(&s, &example), Vec::<String>::new());
    // What `levee check` prints is itself a valid config.
    assert_eq!(
        violations(&s, &to_effective_json(&cfg)),
        Vec::<String>::new()
    );
    for small in [
        json!({}),
        json!({ "rate_limits": [{ "name": "ip", "key": ["client_ip"], "limit": 5, "window": "1s" }] }),
    ] {
        assert!(parse(small.to_string().as_bytes()).is_ok());
        assert_eq!(violations(&s, &small), Vec::<String>::new());
    }
}

#[test]
fn schema_refuses_what_the_validator_refuses() {
    let s = json_schema();
    let bad = [
        (json!({ "ratelimits": [] }), "unknown"),
        (
            json!({ "rate_limits": [{ "name": "a", "limit": 1 }] }),
            "window",
        ),
        (
            json!({ "rate_limits": [{ "name": "a", "limit": 1, "window": "1s", "algorithm": "fixed_window", "burst": 2 }] }),
            "not",
        ),
        (
            json!({ "rate_limits": [{ "name": "a", "limit": 1, "window": "1s", "max_delay": "1s" }] }),
            "not",
        ),
        (json!({ "rate_limit_headers": "all" }), "enum"),
        (
            json!({ "upstreams": { "p": { "forward": "callout" } } }),
            "cluster",
        ),
        (json!({ "upstreams": { "p": { "retry": {} } } }), "forward"),
        (
            json!({ "upstreams": { "p": { "cluster": "c", "fallback": [{ "cluster": "x", "queue": {} }] } } }),
            "oneOf",
        ),
        (json!({ "idempotency": { "release_on": [200] } }), "minimum"),
    ];
    for (doc, why) in bad {
        assert!(
            parse(doc.to_string().as_bytes()).is_err(),
            "validator accepts {doc}"
        );
        let v = violations(&s, &doc);
        assert!(
            v.iter().any(|m| m.contains(why)),
            "{doc}: expected a violation mentioning {why:?}, got {v:?}"
        );
    }
}

#[test]
fn duration_pattern_lists_every_unit() {
    let pattern = json_schema()["$defs"]["duration"]["pattern"]
        .as_str()
        .unwrap()
        .to_owned();
    for unit in ["ns", "us", "µs", "ms", "s", "m", "h", "d"] {
        assert!(
            pattern.contains(&format!("|{unit}|"))
                || pattern.contains(&format!("({unit}|"))
                || pattern.contains(&format!("|{unit})")),
            "{unit}"
        );
    }
}
