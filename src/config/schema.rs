//! The JSON Schema (draft 2020-12) of the plugin configuration, so editors can validate and
//! complete a levee config before Envoy ever sees it.
//!
//! Why generate it instead of writing it? A hand-written schema drifts: someone adds a field
//! to the validator and the editor starts flagging a valid config, or a default changes and the
//! schema keeps advertising the old one. So the schema is built from the validator's own tables:
//!
//! - **which fields an object may hold**: the same `FIELDS` lists the validator passes to
//!   `Obj::new` (its `deny_unknown_fields`), so every object gets `additionalProperties: false`
//!   over exactly the keys levee accepts;
//! - **enums**: the choice tables the validator looks names up in (`ALGORITHMS`, `MODES`, …);
//! - **defaults and bounds**: the constants in [`super::defaults`] that the validator falls
//!   back to and checks against;
//! - **units and key parts**: the duration units of [`super::duration`] and the forms listed in
//!   [`super::key_parts::VALID_FORMS`].
//!
//! What is written here is the prose (`description`) and the JSON Schema shape. The tests in
//! `schema/tests.rs` pin the rest against the validator itself: every property's default is what
//! `to_effective_json` fills in, every `minimum`/`maximum` is accepted and one step beyond is
//! refused, every `enum` value parses. The committed `schema/levee.schema.json` is compared with
//! [`json_schema_pretty`] by `committed_schema_is_up_to_date`.
//!
//! Cross-field rules that JSON Schema can say simply are included (`burst` only for bucket
//! algorithms, `cluster` required for callouts, exactly one kind per fallback entry); the rest
//! (unique names, dangling routes, orders) are left to `levee check`. One deliberate difference:
//! the validator reads `null` as "absent", the schema does not offer `null` (an editor should
//! not suggest it).

mod backends;
mod blocks;
#[cfg(test)]
mod tests;
mod upstream;

use super::defaults as d;
use super::duration;
use super::key_parts::VALID_FORMS;
use serde_json::{json, Map, Value};

/// The draft this schema is written against.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The whole schema as a JSON value.
pub fn json_schema() -> Value {
    let mut defs = shared_defs();
    for (name, def) in blocks::defs() {
        defs.insert(name.to_owned(), def);
    }
    let mut root = blocks::root();
    root["$schema"] = DIALECT.into();
    root["title"] = "levee plugin configuration".into();
    root["$defs"] = Value::Object(defs);
    root
}

/// The schema as committed in `schema/levee.schema.json`: pretty-printed, one trailing newline.
pub fn json_schema_pretty() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// One documented property: its JSON Schema plus `description`, `default` and `examples`.
pub(crate) struct Prop(Value);

impl Prop {
    pub(crate) fn new(schema: Value, description: &str) -> Prop {
        let mut v = schema;
        v["description"] = description.into();
        Prop(v)
    }
    pub(crate) fn default(mut self, value: impl Into<Value>) -> Prop {
        self.0["default"] = value.into();
        self
    }
    pub(crate) fn example(mut self, value: impl Into<Value>) -> Prop {
        self.0["examples"] = Value::Array(vec![value.into()]);
        self
    }
}

/// A closed object: `properties` in the order of the validator's `fields`, then any described
/// property the validator does not know (the tests refuse those), `additionalProperties: false`.
pub(crate) fn object(
    description: &str,
    fields: &[&str],
    props: Vec<(&str, Prop)>,
    required: &[&str],
) -> Value {
    let mut properties = Map::new();
    for field in fields {
        let described = props
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, p)| p.0.clone());
        properties.insert(
            (*field).to_owned(),
            described.unwrap_or_else(|| json!({ "description": UNDOCUMENTED })),
        );
    }
    for (name, prop) in props {
        if !fields.contains(&name) {
            properties.insert(name.to_owned(), prop.0);
        }
    }
    let mut o = json!({
        "type": "object", "description": description, "properties": properties, "additionalProperties": false,
    });
    if !required.is_empty() {
        o["required"] = required.into();
    }
    o
}

/// Marks a field the validator accepts but no table describes; a test refuses it.
pub(crate) const UNDOCUMENTED: &str = "UNDOCUMENTED";

/// `{"$ref": "#/$defs/<name>"}`.
pub(crate) fn def(name: &str) -> Value {
    json!({ "$ref": format!("#/$defs/{name}") })
}

/// A whole number in `min..=max`.
pub(crate) fn int(min: u64, max: u64) -> Value {
    json!({ "type": "integer", "minimum": min, "maximum": max })
}

/// A number in `(0, 1]` (ratios and thresholds).
pub(crate) fn fraction() -> Value {
    json!({ "type": "number", "exclusiveMinimum": 0, "maximum": 1 })
}

pub(crate) fn boolean() -> Value {
    json!({ "type": "boolean" })
}

/// A non-empty string without whitespace (cluster names, authorities).
pub(crate) fn token() -> Value {
    json!({ "type": "string", "pattern": "^\\S+$" })
}

/// The names of a validator choice table, as an `enum`.
pub(crate) fn choice<T>(table: &[(&'static str, T)]) -> Value {
    json!({ "type": "string", "enum": names(table) })
}

pub(crate) fn names<T>(table: &[(&'static str, T)]) -> Vec<&'static str> {
    table.iter().map(|(n, _)| *n).collect()
}

/// A duration as the config writes it (`"500ms"`), as a JSON value.
pub(crate) fn dur(value: std::time::Duration) -> Value {
    duration::format(value).into()
}

pub(crate) fn list(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

/// The building blocks several objects share: durations, names, methods, headers, key parts,
/// outcome classes.
fn shared_defs() -> Map<String, Value> {
    let units: Vec<String> = duration::unit_names().map(str::to_owned).collect();
    let tchar = "[!#$%&'*+.^_`|~0-9A-Za-z-]";
    let mut defs = Map::new();
    let mut add = |name: &str, v: Value| {
        defs.insert(name.to_owned(), v);
    };
    add(
        "duration",
        json!({
            "type": "string",
            "description": "A number and a unit, no spaces: \"250ms\", \"1.5s\", \"5m\", \"24h\", \"2d\". No bare numbers, no compound forms (write \"90m\", not \"1h30m\").",
            "pattern": format!("^[0-9]+(\\.[0-9]+)?({})$", units.join("|")),
            "examples": ["500ms", "30s", "5m"],
        }),
    );
    add(
        "name",
        json!({
            "type": "string",
            "description": "Used in metrics, logs, headers and shared-data keys.",
            "pattern": format!("^[a-z0-9_-]{{1,{}}}$", super::common::MAX_NAME_LEN),
        }),
    );
    add(
        "method",
        json!({
            "type": "string",
            "description": "An HTTP method; compared upper-cased.",
            "pattern": format!("^{tchar}+$"),
            "examples": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        }),
    );
    add(
        "methods",
        json!({ "type": "array", "items": def("method") }),
    );
    add(
        "header_name",
        json!({
            "type": "string",
            "description": "An HTTP header name (RFC 9110 token, or a pseudo-header such as \":authority\"); compared lower-cased.",
            "pattern": format!("^:?{tchar}+$"),
        }),
    );
    add(
        "header_map",
        json!({
            "type": "object",
            "description": "Header name -> exact value. Names are case-insensitive and may appear once.",
            "propertyNames": def("header_name"),
            "additionalProperties": { "type": "string", "pattern": "^[^\\r\\n\\u0000]*$" },
        }),
    );
    add("key_part", key_part());
    add(
        "key_parts",
        json!({
            "type": "array", "items": def("key_part"),
            "description": format!("Parts that identify whom a limit or record belongs to: {VALID_FORMS}."),
        }),
    );
    add("status", int(d::MIN_FAILURE_STATUS, d::MAX_STATUS));
    add("outcomes", outcomes());
    defs
}

/// `source_ip | … | header:NAME | query:NAME | metadata:FILTER/PATH`, the forms read from
/// [`VALID_FORMS`]; each `prefix:` form gets the syntax `key_parts::parse` checks.
fn key_part() -> Value {
    let mut alternatives: Vec<String> = Vec::new();
    for form in VALID_FORMS.split(", ") {
        alternatives.push(match form.split_once(':') {
            None => form.to_owned(),
            Some(("header", _)) => "header::?[!#$%&'*+.^_`|~0-9A-Za-z-]+".to_owned(),
            // printable ASCII except & = # ?
            Some(("query", _)) => "query:[!\"$%'-<>@-~]+".to_owned(),
            Some(("metadata", _)) => "metadata:[^/\\s]+(/[^/\\s]+)+".to_owned(),
            Some((prefix, _)) => format!("{prefix}:.+"),
        });
    }
    json!({
        "type": "string",
        "description": format!("One of: {VALID_FORMS}."),
        "pattern": format!("^({})$", alternatives.join("|")),
        "examples": ["client_ip", "header:x-user-id", "metadata:envoy.filters.http.jwt_authn/payload/sub"],
    })
}

/// `retry_on` / `failure_on`: class names or 4xx/5xx statuses (numbers or numeric strings).
fn outcomes() -> Value {
    json!({
        "type": "array",
        "minItems": 1,
        "items": { "anyOf": [
            { "type": "string", "enum": names(super::common::OUTCOME_CLASSES) },
            def("status"),
            { "type": "string", "pattern": "^[45][0-9][0-9]$" },
        ] },
    })
}
