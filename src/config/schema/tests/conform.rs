//! A small structural JSON Schema checker for the tests: enough of draft 2020-12 to prove
//! that real configs conform to the generated schema and bad ones do not — `$ref` into
//! `$defs`, `type`, `properties` / `additionalProperties` / `propertyNames` / `required`,
//! `items` / `minItems`, `enum`, numeric bounds, `minLength`, `anyOf` / `oneOf` / `allOf`,
//! `if` / `then` and `not`. It ignores `pattern` (no regex engine in the dependency tree).

use serde_json::Value;

/// Every violation of `schema` by `value`, each as `path: keyword …`; empty when it conforms.
pub fn violations(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(schema, schema, value, "$", &mut out);
    out
}

fn conforms(root: &Value, schema: &Value, value: &Value) -> bool {
    let mut out = Vec::new();
    check(root, schema, value, "", &mut out);
    out.is_empty()
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "number" => v.is_number(),
        "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn check(root: &Value, schema: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/$defs/");
        check(root, &root["$defs"][name], v, path, out);
    }
    if let Some(ty) = schema["type"].as_str() {
        if !type_ok(ty, v) {
            out.push(format!("{path}: type {ty} expected, got {v}"));
            return;
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        if !values.contains(v) {
            out.push(format!("{path}: enum {values:?} does not contain {v}"));
        }
    }
    if let (Some(n), Some(min)) = (v.as_f64(), schema["minimum"].as_f64()) {
        if n < min {
            out.push(format!("{path}: minimum {min} > {n}"));
        }
    }
    if let (Some(n), Some(max)) = (v.as_f64(), schema["maximum"].as_f64()) {
        if n > max {
            out.push(format!("{path}: maximum {max} < {n}"));
        }
    }
    if let (Some(n), Some(min)) = (v.as_f64(), schema["exclusiveMinimum"].as_f64()) {
        if n <= min {
            out.push(format!("{path}: exclusiveMinimum {min} >= {n}"));
        }
    }
    if let (Some(s), Some(min)) = (v.as_str(), schema["minLength"].as_u64()) {
        if (s.chars().count() as u64) < min {
            out.push(format!("{path}: minLength {min}"));
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(min) = schema["minItems"].as_u64() {
            if (items.len() as u64) < min {
                out.push(format!("{path}: minItems {min}"));
            }
        }
        if schema.get("items").is_some() {
            for (i, item) in items.iter().enumerate() {
                check(root, &schema["items"], item, &format!("{path}[{i}]"), out);
            }
        }
    }
    if let Some(obj) = v.as_object() {
        for req in schema["required"].as_array().into_iter().flatten() {
            if let Some(key) = req.as_str() {
                if !obj.contains_key(key) {
                    out.push(format!("{path}: required field {key} missing"));
                }
            }
        }
        for (key, value) in obj {
            let at = format!("{path}.{key}");
            if schema.get("propertyNames").is_some() {
                check(
                    root,
                    &schema["propertyNames"],
                    &Value::from(key.as_str()),
                    &at,
                    out,
                );
            }
            match schema["properties"].get(key) {
                Some(p) => check(root, p, value, &at, out),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        out.push(format!("{at}: unknown field (additionalProperties: false)"))
                    }
                    Some(extra @ Value::Object(_)) => check(root, extra, value, &at, out),
                    _ => {}
                },
            }
        }
    }
    if let Some(any) = schema["anyOf"].as_array() {
        if !any.iter().any(|s| conforms(root, s, v)) {
            out.push(format!("{path}: matches none of anyOf"));
        }
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let n = one.iter().filter(|s| conforms(root, s, v)).count();
        if n != 1 {
            out.push(format!("{path}: matches {n} of oneOf (expected exactly 1)"));
        }
    }
    for sub in schema["allOf"].as_array().into_iter().flatten() {
        check(root, sub, v, path, out);
    }
    if let Some(cond) = schema.get("if") {
        if conforms(root, cond, v) {
            if let Some(then) = schema.get("then") {
                let mut inner = Vec::new();
                check(root, then, v, path, &mut inner);
                out.extend(
                    inner
                        .into_iter()
                        .map(|m| format!("{m} (then of if {cond})")),
                );
            }
        }
    }
    if let Some(not) = schema.get("not") {
        if conforms(root, not, v) {
            out.push(format!("{path}: must not match (not {not})"));
        }
    }
}
