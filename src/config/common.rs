//! Validators shared by several blocks: names, methods, header maps, `match`, key lists and
//! outcome classes. Each returns the validated value or an error at the exact JSON path.

use super::defaults as d;
use super::key_parts::{self, header_name, is_token_byte, HEADER_NAME_RULE};
use super::raw::{quote, Raw};
use super::reader::{err, index, Obj};
use super::types::{KeyPart, OutcomeClass, RequestMatch};
use super::ConfigError;

/// The fields of a `match` block.
pub(crate) const MATCH_FIELDS: &[&str] = &["path_prefix", "methods", "route_name", "headers"];

/// The outcome classes `retry_on` and `failure_on` may name, besides status codes.
pub(crate) const OUTCOME_CLASSES: &[(&str, OutcomeClass)] = &[
    ("5xx", OutcomeClass::FiveXx),
    ("gateway_error", OutcomeClass::GatewayError),
    ("reset", OutcomeClass::Reset),
    ("timeout", OutcomeClass::Timeout),
    ("connect_failure", OutcomeClass::ConnectFailure),
];

/// The longest name (`rate_limits[].name`, `upstreams` keys).
pub(crate) const MAX_NAME_LEN: usize = 64;

/// Checks a name used in metrics, logs, headers and shared-data keys: `[a-z0-9_-]{1,64}`.
pub fn name(path: &str, s: &str) -> Result<String, ConfigError> {
    let ok = (1..=MAX_NAME_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(err(
            path,
            format!(
                "{} is not a valid name (use 1-64 characters from a-z, 0-9, \"_\" and \"-\")",
                quote(s)
            ),
        ))
    }
}

/// A list of HTTP methods, upper-cased, duplicates dropped.
pub fn methods(list: Vec<(String, &str)>) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (path, m) in list {
        if m.is_empty() || !m.bytes().all(is_token_byte) {
            return Err(err(
                &path,
                format!(
                    "{} is not an HTTP method (e.g. \"GET\", \"POST\")",
                    quote(m)
                ),
            ));
        }
        let upper = m.to_ascii_uppercase();
        if !out.contains(&upper) {
            out.push(upper);
        }
    }
    Ok(out)
}

/// An object of header name → string value; names lower-cased, each at most once.
pub fn header_map(o: &Obj<'_>) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (key, value) in o.pairs() {
        let path = o.at(key);
        let name = header_name(key)
            .ok_or_else(|| err(&path, format!("{} is {HEADER_NAME_RULE}", quote(key))))?;
        let Raw::Str(value) = value else {
            return Err(err(
                &path,
                format!("expected a string, got {}", value.describe()),
            ));
        };
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(err(&path, "a header value may not contain CR, LF or NUL"));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(err(
                &path,
                format!(
                    "header {} is given twice (names are case-insensitive)",
                    quote(&name)
                ),
            ));
        }
        out.push((name, value.clone()));
    }
    Ok(out)
}

/// A `match` block; absent = every request.
pub fn request_match(parent: &Obj<'_>, key: &str) -> Result<RequestMatch, ConfigError> {
    let Some(o) = parent.obj(key, MATCH_FIELDS)? else {
        return Ok(RequestMatch::default());
    };
    let path_prefix = match o.str("path_prefix")? {
        Some(p) if !p.starts_with('/') => {
            return Err(err(
                &o.at("path_prefix"),
                format!("{} must start with \"/\"", quote(p)),
            ))
        }
        Some(p) if p.contains('?') || p.contains('#') => {
            return Err(err(
                &o.at("path_prefix"),
                format!(
                    "{} contains \"?\" or \"#\": matching uses the path without the query string",
                    quote(p)
                ),
            ))
        }
        p => p.map(str::to_owned),
    };
    let methods = match o.strings("methods")? {
        Some(list) => methods(list)?,
        None => Vec::new(),
    };
    let route_name = match o.str("route_name")? {
        Some("") => {
            return Err(err(
                &o.at("route_name"),
                "must not be empty (omit it to match every route)",
            ))
        }
        r => r.map(str::to_owned),
    };
    let headers = match o.get("headers") {
        Some(raw) => header_map(&Obj::free(raw, &o.at("headers"))?)?,
        None => Vec::new(),
    };
    Ok(RequestMatch {
        path_prefix,
        methods,
        route_name,
        headers,
    })
}

/// A list of key parts (`key`, `scope`, `cache.key`).
pub fn key_list(o: &Obj<'_>, key: &str) -> Result<Vec<KeyPart>, ConfigError> {
    let Some(list) = o.strings(key)? else {
        return Ok(Vec::new());
    };
    list.into_iter()
        .map(|(path, s)| key_parts::parse(s).map_err(|m| err(&path, m)))
        .collect()
}

/// `retry_on` / `failure_on`: class names or 4xx/5xx status codes (as numbers or strings).
pub fn outcome_classes(
    o: &Obj<'_>,
    key: &str,
    default: &[&str],
) -> Result<Vec<OutcomeClass>, ConfigError> {
    let owned;
    let items: &[Raw] = match o.array(key)? {
        Some(items) => items,
        None => {
            owned = default
                .iter()
                .map(|s| Raw::Str((*s).to_owned()))
                .collect::<Vec<_>>();
            &owned
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = index(&o.at(key), i);
        let class = match item {
            Raw::Str(s) => match OUTCOME_CLASSES.iter().find(|(name, _)| name == s) {
                Some((_, class)) => *class,
                None => match s.parse::<u16>() {
                    Ok(code) => OutcomeClass::Status(failure_status(&path, i128::from(code))?),
                    Err(_) => {
                        let names: Vec<&str> = OUTCOME_CLASSES.iter().map(|(n, _)| *n).collect();
                        return Err(err(
                            &path,
                            format!(
                                "{} is not an outcome (use {} or a status such as 429)",
                                quote(s),
                                names.join(", ")
                            ),
                        ));
                    }
                },
            },
            Raw::Int(code) => OutcomeClass::Status(failure_status(&path, *code)?),
            v => {
                return Err(err(
                    &path,
                    format!("expected a string or a status code, got {}", v.describe()),
                ))
            }
        };
        if !out.contains(&class) {
            out.push(class);
        }
    }
    if out.is_empty() {
        return Err(err(
            &o.at(key),
            format!(
                "is empty: list at least one outcome (default: {})",
                default.join(", ")
            ),
        ));
    }
    Ok(out)
}

fn failure_status(path: &str, code: i128) -> Result<u16, ConfigError> {
    match u16::try_from(code) {
        Ok(c) if (d::MIN_FAILURE_STATUS..=d::MAX_STATUS).contains(&u64::from(c)) => Ok(c),
        _ => Err(err(
            path,
            format!(
                "{code} is not a failure status (use 400..=599; a 1xx-3xx answer is a success)"
            ),
        )),
    }
}

impl<'a> Obj<'a> {
    /// An object whose keys are free-form (header maps, the `upstreams` map).
    pub fn free(raw: &'a Raw, path: &str) -> Result<Obj<'a>, ConfigError> {
        let Raw::Obj(pairs) = raw else {
            return Err(err(
                path,
                format!("expected an object, got {}", raw.describe()),
            ));
        };
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        Obj::new(raw, path, &keys)
    }
}
