//! The raw JSON document, exactly as written: the first of the two config stages.
//!
//! Why not `#[derive(Deserialize)]` structs with `deny_unknown_fields`? Because serde's errors
//! do not carry the JSON path (`unknown field "limt"` — but in which of five rate limits?), and
//! the one line Envoy logs on a refused config is all an operator sees. So the document is
//! first read into [`Raw`], a JSON tree that keeps what `serde_json::Value` throws away:
//!
//! - **object keys in declaration order** (`upstreams` are numbered in the order written,
//!   and `routes[].upstream` indexes that order),
//! - **duplicate keys** (`serde_json::Value` keeps the last silently; levee refuses them),
//! - **integers apart from decimals** (`100` is a count, `100.0` is not).
//!
//! Then [`super::reader`] walks the tree with a path in hand and checks each object against
//! the list of fields it may hold — the same contract as `deny_unknown_fields`, with the path.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// One JSON value. Objects keep their keys in order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Null,
    Bool(bool),
    /// Any JSON number written without fraction or exponent.
    Int(i128),
    /// A JSON number with a fraction or an exponent.
    Float(f64),
    Str(String),
    Arr(Vec<Raw>),
    Obj(Vec<(String, Raw)>),
}

impl Raw {
    /// A short description for "expected X, got Y" errors: the value itself when it is
    /// small (strings are quoted and cut at 40 characters), else its kind.
    pub fn describe(&self) -> String {
        match self {
            Raw::Null => "null".into(),
            Raw::Bool(b) => b.to_string(),
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Str(s) => quote(s),
            Raw::Arr(_) => "an array".into(),
            Raw::Obj(_) => "an object".into(),
        }
    }
}

/// `"text"` with JSON escaping, cut at 40 characters: safe to put in a log line.
pub fn quote(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    let mut q = serde_json::Value::String(cut).to_string();
    if s.chars().count() > 40 {
        q.insert(q.len() - 1, '…');
    }
    q
}

/// Reads a whole document. Empty or all-whitespace input reads as `{}`.
pub fn read(json: &[u8]) -> Result<Raw, String> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Raw::Obj(Vec::new()));
    }
    serde_json::from_slice(json).map_err(|e| format!("invalid JSON: {e}"))
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(i128::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Int(i128::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut pairs = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Raw>()? {
            pairs.push((k, v));
        }
        Ok(Raw::Obj(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_keep_declaration_order_and_duplicates() {
        let raw = read(br#"{"b":1,"a":2,"b":3}"#).unwrap();
        let Raw::Obj(pairs) = raw else {
            panic!("not an object")
        };
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
    }

    #[test]
    fn integers_and_decimals_stay_apart() {
        assert_eq!(read(b"100").unwrap(), Raw::Int(100));
        assert_eq!(read(b"100.0").unwrap(), Raw::Float(100.0));
        assert_eq!(read(b"-3").unwrap(), Raw::Int(-3));
    }

    #[test]
    fn empty_input_reads_as_empty_object() {
        assert_eq!(read(b"").unwrap(), Raw::Obj(vec![]));
        assert_eq!(read(b" \n\t").unwrap(), Raw::Obj(vec![]));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let e = read(b"{\n  \"a\": 1,\n}").unwrap_err();
        assert!(e.starts_with("invalid JSON:"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn long_strings_are_cut_when_quoted() {
        let q = quote(&"x".repeat(100));
        assert!(q.chars().count() < 50, "{q}");
        assert!(q.ends_with("…\""));
    }
}
