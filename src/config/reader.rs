//! Walks the [`Raw`] tree with the JSON path in hand, so every error can name it.
//!
//! [`Obj::new`] is levee's `deny_unknown_fields`: it checks an object against the fields it
//! may hold and refuses unknown and duplicate keys, suggesting the closest known field
//! (`unknown field "limt" (expected one of: name, match, …; did you mean "limit"?)`).
//! The typed getters then read one field each and return `Ok(None)` when it is absent.
//! `null` counts as absent everywhere (YAML's `field:` with nothing after it is `null`).

use super::duration;
use super::raw::{quote, Raw};
use super::ConfigError;
use std::time::Duration;

/// Builds an error at `path`.
pub fn err(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// `parent.key`, or `key` at the root; keys that are not plain names are bracket-quoted.
pub fn join(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", quote(key)),
    }
}

/// `parent[i]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// One JSON object under validation.
pub struct Obj<'a> {
    pairs: &'a [(String, Raw)],
    path: String,
}

impl<'a> Obj<'a> {
    /// Checks that `raw` is an object whose keys are all in `fields`, each at most once.
    pub fn new(raw: &'a Raw, path: &str, fields: &[&str]) -> Result<Self, ConfigError> {
        let Raw::Obj(pairs) = raw else {
            return Err(err(
                path,
                format!("expected an object, got {}", raw.describe()),
            ));
        };
        for (i, (key, _)) in pairs.iter().enumerate() {
            if !fields.contains(&key.as_str()) {
                return Err(err(path, unknown_field(key, fields)));
            }
            if pairs[..i].iter().any(|(k, _)| k == key) {
                return Err(err(
                    path,
                    format!("duplicate field {} (keep one)", quote(key)),
                ));
            }
        }
        Ok(Obj {
            pairs,
            path: path.to_owned(),
        })
    }

    /// The path of this object.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of one of its fields.
    pub fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// All key/value pairs, in order (for free-form maps such as `headers`).
    pub fn pairs(&self) -> &'a [(String, Raw)] {
        self.pairs
    }

    /// A field's value; `None` if absent or `null`.
    pub fn get(&self, key: &str) -> Option<&'a Raw> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .filter(|v| **v != Raw::Null)
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Raw::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.type_err(key, "true or false", v)),
        }
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Raw::Str(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(self.type_err(key, "a string", v)),
        }
    }

    /// A whole number in `lo..=hi`; `why` (may be empty) explains the bound.
    pub fn int(&self, key: &str, lo: u64, hi: u64, why: &str) -> Result<Option<u64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => int_value(v, &self.at(key), lo, hi, why).map(Some),
        }
    }

    /// A number (integer or decimal).
    pub fn number(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Raw::Int(i)) => Ok(Some(*i as f64)),
            Some(Raw::Float(f)) => Ok(Some(*f)),
            Some(v) => Err(self.type_err(key, "a number", v)),
        }
    }

    pub fn duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Raw::Str(s)) => duration::parse(s)
                .map(Some)
                .map_err(|e| err(&self.at(key), format!("{} {e}", quote(s)))),
            Some(v) => Err(self.type_err(key, "a duration string such as \"500ms\" or \"1m\"", v)),
        }
    }

    /// One of a fixed set of strings, mapped to its value.
    pub fn choice<T: Copy>(
        &self,
        key: &str,
        options: &[(&str, T)],
    ) -> Result<Option<T>, ConfigError> {
        let Some(s) = self.str(key)? else {
            return Ok(None);
        };
        match options.iter().find(|(name, _)| *name == s) {
            Some((_, value)) => Ok(Some(*value)),
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                Err(err(
                    &self.at(key),
                    format!("{} is not one of: {}", quote(s), names.join(", ")),
                ))
            }
        }
    }

    pub fn array(&self, key: &str) -> Result<Option<&'a [Raw]>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Raw::Arr(items)) => Ok(Some(items.as_slice())),
            Some(v) => Err(self.type_err(key, "an array", v)),
        }
    }

    /// A list of strings, each with its path.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<(String, &'a str)>>, ConfigError> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        let path = self.at(key);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Raw::Str(s) => out.push((index(&path, i), s.as_str())),
                v => {
                    return Err(err(
                        &index(&path, i),
                        format!("expected a string, got {}", v.describe()),
                    ))
                }
            }
        }
        Ok(Some(out))
    }

    /// A nested object with its own field list.
    pub fn obj(&self, key: &str, fields: &[&str]) -> Result<Option<Obj<'a>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Obj::new(v, &self.at(key), fields).map(Some),
        }
    }

    fn type_err(&self, key: &str, expected: &str, got: &Raw) -> ConfigError {
        let hint = match got {
            Raw::Str(s) if s.parse::<f64>().is_ok() && expected.contains("number") => {
                " (write it without quotes)"
            }
            _ => "",
        };
        err(
            &self.at(key),
            format!("expected {expected}, got {}{hint}", got.describe()),
        )
    }
}

/// A whole number in `lo..=hi` at `path`.
///
/// `100.0` and `1e3` are whole numbers and read as such. A number too large or too small is
/// "out of range" whatever its notation (`1e30` is a number, just not one levee can use);
/// only a fraction (`1.5`) or a non-number is "expected a whole number".
pub fn int_value(v: &Raw, path: &str, lo: u64, hi: u64, why: &str) -> Result<u64, ConfigError> {
    let out_of_range = |shown: String| {
        let sep = if why.is_empty() { "" } else { ": " };
        err(
            path,
            format!("{shown} is out of range (use {lo}..={hi}{sep}{why})"),
        )
    };
    let n = match v {
        Raw::Int(i) => *i,
        Raw::Float(f) if f.is_finite() && f.fract() == 0.0 => {
            if *f < lo as f64 || *f > hi as f64 {
                return Err(out_of_range(show_float(*f)));
            }
            *f as i128
        }
        Raw::Str(s) if s.parse::<i128>().is_ok() => {
            return Err(err(
                path,
                format!(
                    "expected a whole number, got {} (write it without quotes)",
                    v.describe()
                ),
            ))
        }
        _ => {
            return Err(err(
                path,
                format!("expected a whole number, got {}", v.describe()),
            ))
        }
    };
    if n < i128::from(lo) || n > i128::from(hi) {
        return Err(out_of_range(n.to_string()));
    }
    u64::try_from(n).map_err(|_| out_of_range(n.to_string()))
}

/// A whole float as an operator would have written it: `1e30`, not thirty-one digits.
fn show_float(f: f64) -> String {
    if f.abs() >= 1e16 {
        format!("{f:e}")
    } else {
        format!("{f}")
    }
}

fn unknown_field(key: &str, fields: &[&str]) -> String {
    let mut msg = format!(
        "unknown field {} (expected one of: {}",
        quote(key),
        fields.join(", ")
    );
    let best = fields
        .iter()
        .map(|f| (edit_distance(key, f), *f))
        .min_by_key(|(d, _)| *d);
    if let Some((d, f)) = best {
        if d <= 2 && d < key.len() {
            msg.push_str(&format!("; did you mean \"{f}\"?"));
        }
    }
    msg.push(')');
    msg
}

/// Levenshtein distance over bytes; field names are short ASCII.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;

/// A duration that must be > 0.
pub fn positive(o: &Obj<'_>, key: &str) -> Result<Option<std::time::Duration>, ConfigError> {
    match o.duration(key)? {
        Some(t) if t.is_zero() => Err(err(&o.at(key), "must be greater than 0s")),
        t => Ok(t),
    }
}
