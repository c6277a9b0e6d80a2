//! Validates the `idempotency` block into [`IdempotencyConfig`].
//!
//! The bounds here protect the guarantee itself: `max_body_bytes` may not exceed Envoy's
//! default buffer limit (a larger body is refused by Envoy before levee can hash it), and
//! `release_on` may only list 4xx/5xx statuses (releasing a key after a 2xx answer would let
//! a retry execute the operation twice — exactly what idempotency keys exist to prevent).

use super::backend::{reference, Need, IDEMPOTENCY_ON_BACKEND_ERROR};
use super::common::{key_list, methods, request_match};
use super::defaults as d;
use super::key_parts::{header_name, HEADER_NAME_RULE};
use super::rate_limit::ON_INTERNAL_ERROR;
use super::raw::{quote, Raw};
use super::reader::{err, index, int_value, Obj};
use super::types::{
    BackendConfig, IdempotencyConfig, IdempotencyOnBackendError, OnConcurrent, OnInternalError,
};
use super::ConfigError;

pub(crate) const FIELDS: &[&str] = &[
    "methods",
    "match",
    "header",
    "required",
    "scope",
    "ttl",
    "lock_timeout",
    "fingerprint",
    "on_concurrent",
    "release_on",
    "max_key_length",
    "max_body_bytes",
    "max_stored_bytes",
    "on_internal_error",
    "backend",
    "on_backend_error",
];

pub const ON_CONCURRENT: &[(&str, OnConcurrent)] = &[
    ("reject", OnConcurrent::Reject),
    ("wait", OnConcurrent::Wait),
];

pub fn idempotency(
    raw: &Raw,
    path: &str,
    backends: &[BackendConfig],
) -> Result<IdempotencyConfig, ConfigError> {
    let o = Obj::new(raw, path, FIELDS)?;
    let backend = reference(&o, "backend", backends, Need::Etcd)?;
    let on_backend_error = match o.choice("on_backend_error", IDEMPOTENCY_ON_BACKEND_ERROR)? {
        Some(_) if backend.is_none() => {
            return Err(err(
                &o.at("on_backend_error"),
                "only applies with \"backend\" (remove it, or name an etcd backend)",
            ))
        }
        Some(p) => p,
        None => IdempotencyOnBackendError::Deny,
    };
    let methods = match o.strings("methods")? {
        Some(list) if list.is_empty() => {
            return Err(err(
                &o.at("methods"),
                "is empty: list at least one method (default [\"POST\", \"PATCH\"])",
            ))
        }
        Some(list) => methods(list)?,
        None => d::IDEMPOTENCY_METHODS
            .iter()
            .map(|m| (*m).to_owned())
            .collect(),
    };
    let header = match o.str("header")? {
        Some(h) => header_name(h).ok_or_else(|| {
            err(
                &o.at("header"),
                format!("{} is {HEADER_NAME_RULE}", quote(h)),
            )
        })?,
        None => d::IDEMPOTENCY_HEADER.to_owned(),
    };
    let ttl = positive(&o, "ttl")?.unwrap_or(d::IDEMPOTENCY_TTL);
    let lock_timeout = positive(&o, "lock_timeout")?.unwrap_or(d::LOCK_TIMEOUT);
    let release_on = match o.array("release_on")? {
        Some(items) => {
            let mut out: Vec<u16> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let code = int_value(item, &index(&o.at("release_on"), i), d::MIN_FAILURE_STATUS, d::MAX_STATUS,
                    "only a 4xx/5xx answer can mean \"not processed\"; releasing after a success would allow a second execution")?;
                if !out.contains(&(code as u16)) {
                    out.push(code as u16);
                }
            }
            out
        }
        None => d::RELEASE_ON.to_vec(),
    };
    let max_body_bytes = o
        .int("max_body_bytes", 1, d::ENVOY_BUFFER_LIMIT,
            "Envoy's default buffer limit is 1 MiB; a larger body is refused by Envoy before levee can hash or store it")?
        .unwrap_or(d::IDEMPOTENCY_MAX_BODY);
    let max_stored_bytes = o
        .int("max_stored_bytes", 1, d::MAX_TOTAL_BYTES_CAP, "")?
        .unwrap_or(d::MAX_STORED_BYTES);
    if max_stored_bytes < max_body_bytes {
        return Err(err(&o.at("max_stored_bytes"), format!(
            "{max_stored_bytes} is smaller than max_body_bytes ({max_body_bytes}): not even one response would fit"
        )));
    }
    Ok(IdempotencyConfig {
        methods,
        matcher: request_match(&o, "match")?,
        header,
        required: o.bool("required")?.unwrap_or(false),
        scope: key_list(&o, "scope")?,
        ttl,
        lock_timeout,
        fingerprint: o.bool("fingerprint")?.unwrap_or(true),
        on_concurrent: o
            .choice("on_concurrent", ON_CONCURRENT)?
            .unwrap_or(OnConcurrent::Reject),
        release_on,
        max_key_length: o
            .int("max_key_length", 1, d::MAX_MAX_KEY_LENGTH, "")?
            .map_or(d::MAX_KEY_LENGTH, |n| n as u32),
        max_body_bytes,
        max_stored_bytes,
        on_internal_error: o
            .choice("on_internal_error", ON_INTERNAL_ERROR)?
            .unwrap_or(OnInternalError::Deny),
        backend,
        on_backend_error,
    })
}

/// A duration that must be > 0.
pub fn positive(o: &Obj<'_>, key: &str) -> Result<Option<std::time::Duration>, ConfigError> {
    match o.duration(key)? {
        Some(t) if t.is_zero() => Err(err(&o.at(key), "must be greater than 0s")),
        t => Ok(t),
    }
}
