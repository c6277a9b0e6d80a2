//! The reader's errors: unknown and duplicate fields, `null`, numbers in every notation.

use super::*;
use crate::config::raw::read;

#[test]
fn unknown_field_suggests_the_closest_name() {
    let raw = read(br#"{"limt": 1}"#).unwrap();
    let e = Obj::new(&raw, "rate_limits[0]", &["name", "limit"])
        .err()
        .unwrap();
    assert_eq!(e.path, "rate_limits[0]");
    assert_eq!(
        e.message,
        "unknown field \"limt\" (expected one of: name, limit; did you mean \"limit\"?)"
    );
}

#[test]
fn duplicate_keys_are_refused() {
    let raw = read(br#"{"a": 1, "a": 2}"#).unwrap();
    let e = Obj::new(&raw, "", &["a"]).err().unwrap();
    assert_eq!(e.message, "duplicate field \"a\" (keep one)");
}

#[test]
fn null_reads_as_absent() {
    let raw = read(br#"{"a": null}"#).unwrap();
    let o = Obj::new(&raw, "", &["a"]).unwrap();
    assert_eq!(o.int("a", 0, 10, "").unwrap(), None);
}

#[test]
fn quoted_numbers_get_a_hint() {
    let raw = read(br#"{"limit": "100"}"#).unwrap();
    let o = Obj::new(&raw, "x", &["limit"]).unwrap();
    let e = o.int("limit", 1, 1000, "").unwrap_err();
    assert_eq!(
        e.to_string(),
        "levee config: x.limit: expected a whole number, got \"100\" (write it without quotes)"
    );
}

fn int_error(json: &str) -> String {
    let raw = read(json.as_bytes()).unwrap();
    let o = Obj::new(&raw, "limits", &["n"]).unwrap();
    o.int("n", 1, 16_777_216, "slots per table")
        .unwrap_err()
        .to_string()
}

/// `json`'s `n` is refused as out of range, shown as `shown`.
fn assert_out_of_range(json: &str, shown: &str) {
    assert_eq!(
        int_error(json),
        format!(
            "levee config: limits.n: {shown} is out of range (use 1..=16777216: slots per table)"
        )
    );
}

#[test]
fn a_huge_number_is_out_of_range_not_a_fraction() {
    assert_out_of_range(r#"{"n": 1e30}"#, "1e30");
    assert_out_of_range(r#"{"n": -1e30}"#, "-1e30");
    // Past u64, serde_json reads an integer literal as a float.
    assert_out_of_range(
        r#"{"n": 123456789012345678901234567890}"#,
        "1.2345678901234568e29",
    );
    assert_out_of_range(r#"{"n": 16777217}"#, "16777217");
    assert_out_of_range(r#"{"n": 2.5e7}"#, "25000000");
}

#[test]
fn a_negative_number_is_out_of_range() {
    assert_out_of_range(r#"{"n": -5}"#, "-5");
    assert_out_of_range(r#"{"n": -5.0}"#, "-5");
}

#[test]
fn a_fraction_is_not_a_whole_number() {
    assert_eq!(
        int_error(r#"{"n": 1.5}"#),
        "levee config: limits.n: expected a whole number, got 1.5"
    );
    assert_eq!(
        int_error(r#"{"n": -0.5}"#),
        "levee config: limits.n: expected a whole number, got -0.5"
    );
}

#[test]
fn whole_numbers_in_any_notation_are_read() {
    let raw = read(br#"{"a": 1e3, "b": 100.0, "c": 16777216}"#).unwrap();
    let o = Obj::new(&raw, "", &["a", "b", "c"]).unwrap();
    assert_eq!(o.int("a", 1, 16_777_216, "").unwrap(), Some(1000));
    assert_eq!(o.int("b", 1, 16_777_216, "").unwrap(), Some(100));
    assert_eq!(o.int("c", 1, 16_777_216, "").unwrap(), Some(16_777_216));
}

#[test]
fn paths_quote_keys_that_are_not_names() {
    assert_eq!(join("upstreams", "pay ments"), "upstreams[\"pay ments\"]");
    assert_eq!(join("", "routes"), "routes");
    assert_eq!(index("routes", 2), "routes[2]");
}
