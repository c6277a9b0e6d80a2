//! Validates `backends` (the remote engines) and the fields that name one:
//! `idempotency.backend` and `rate_limits[].global`.
//!
//! A backend is named once and referenced by name, so a reference is resolved here into an
//! index and checked for its kind: idempotency records need etcd's create-if-absent Txn, a
//! global limit needs a rate limit service. A `global` limit's window must be a unit the rate
//! limit protocol can carry (`1s`, `1m`, `1h`, `1d`): any other window would be silently
//! rounded by the service, and the local and global tiers would count different things.

use super::defaults as d;
use super::idempotency::positive;
use super::raw::{quote, Raw};
use super::reader::{err, join, Obj};
use super::types::{
    BackendConfig, BackendKind, EtcdBackend, GlobalLimit, GlobalMode, GlobalOnBackendError,
    IdempotencyOnBackendError, RlsBackend,
};
use super::ConfigError;
use std::time::Duration;

/// A backend entry holds exactly one of these.
pub(crate) const KINDS: &[&str] = &["etcd", "rls"];
pub(crate) const ETCD_FIELDS: &[&str] = &["cluster", "prefix", "timeout"];
pub(crate) const RLS_FIELDS: &[&str] = &["cluster", "domain", "timeout"];
pub(crate) const GLOBAL_FIELDS: &[&str] = &["backend", "mode", "on_backend_error"];

pub const GLOBAL_MODES: &[(&str, GlobalMode)] = &[
    ("reserve", GlobalMode::Reserve),
    ("exact", GlobalMode::Exact),
];
pub const GLOBAL_ON_BACKEND_ERROR: &[(&str, GlobalOnBackendError)] = &[
    ("local", GlobalOnBackendError::Local),
    ("allow", GlobalOnBackendError::Allow),
    ("deny", GlobalOnBackendError::Deny),
];
pub const IDEMPOTENCY_ON_BACKEND_ERROR: &[(&str, IdempotencyOnBackendError)] = &[
    ("deny", IdempotencyOnBackendError::Deny),
    ("allow", IdempotencyOnBackendError::Allow),
];

/// The `backends` object, in declaration order.
pub fn backends(raw: &Raw, path: &str) -> Result<Vec<BackendConfig>, ConfigError> {
    let map = Obj::free(raw, path)?;
    map.pairs()
        .iter()
        .map(|(key, value)| backend(key, value, &join(path, key)))
        .collect()
}

fn backend(key: &str, raw: &Raw, path: &str) -> Result<BackendConfig, ConfigError> {
    let name = super::common::name(path, key)?;
    let o = Obj::new(raw, path, KINDS)?;
    let kind = match (o.get("etcd"), o.get("rls")) {
        (Some(e), None) => BackendKind::Etcd(etcd(&Obj::new(e, &o.at("etcd"), ETCD_FIELDS)?)?),
        (None, Some(r)) => BackendKind::Rls(rls(&Obj::new(r, &o.at("rls"), RLS_FIELDS)?)?),
        _ => {
            return Err(err(
                path,
                "needs exactly one of \"etcd\" (idempotency records) or \"rls\" (a rate limit service for global limits)",
            ))
        }
    };
    Ok(BackendConfig { name, kind })
}

fn etcd(o: &Obj<'_>) -> Result<EtcdBackend, ConfigError> {
    Ok(EtcdBackend {
        cluster: cluster(o)?,
        prefix: printable(o, "prefix", d::MAX_ETCD_PREFIX_LEN)?
            .unwrap_or_else(|| d::ETCD_PREFIX.to_owned()),
        timeout: timeout(o)?.unwrap_or(d::ETCD_TIMEOUT),
    })
}

fn rls(o: &Obj<'_>) -> Result<RlsBackend, ConfigError> {
    let domain = printable(o, "domain", d::MAX_RLS_DOMAIN_LEN)?.ok_or_else(|| {
        err(
            o.path(),
            "missing field \"domain\" (the rate limit service's domain, e.g. \"levee\")",
        )
    })?;
    Ok(RlsBackend {
        cluster: cluster(o)?,
        domain,
        timeout: timeout(o)?.unwrap_or(d::RLS_TIMEOUT),
    })
}

fn cluster(o: &Obj<'_>) -> Result<String, ConfigError> {
    match o.str("cluster")? {
        Some(s) if !s.is_empty() && !s.chars().any(char::is_whitespace) => Ok(s.to_owned()),
        Some(s) => Err(err(
            &o.at("cluster"),
            format!("{} must be non-empty and without spaces", quote(s)),
        )),
        None => Err(err(
            o.path(),
            "missing field \"cluster\" (the Envoy cluster, HTTP/2, that reaches the backend)",
        )),
    }
}

/// 1..=`max` bytes of printable ASCII without spaces (it goes into keys and protocol fields).
fn printable(o: &Obj<'_>, key: &str, max: usize) -> Result<Option<String>, ConfigError> {
    match o.str(key)? {
        Some(s) if (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(s.to_owned()))
        }
        Some(s) => Err(err(
            &o.at(key),
            format!(
                "{} must be 1-{max} printable ASCII characters without spaces",
                quote(s)
            ),
        )),
        None => Ok(None),
    }
}

fn timeout(o: &Obj<'_>) -> Result<Option<Duration>, ConfigError> {
    match positive(o, "timeout")? {
        Some(t) if t > d::MAX_BACKEND_TIMEOUT => Err(err(
            &o.at("timeout"),
            "is longer than 1m (every request that uses the backend may wait this long)",
        )),
        t => Ok(t),
    }
}

/// Which kind a reference needs, for errors.
#[derive(Clone, Copy)]
pub enum Need {
    Etcd,
    Rls,
}

/// Resolves the backend named at `o.key` into its index, checking its kind.
pub fn reference(
    o: &Obj<'_>,
    key: &str,
    backends: &[BackendConfig],
    need: Need,
) -> Result<Option<usize>, ConfigError> {
    let Some(name) = o.str(key)? else {
        return Ok(None);
    };
    let (kind, what) = match need {
        Need::Etcd => ("etcd", "idempotency records need an etcd backend"),
        Need::Rls => ("rls", "a global limit needs an rls backend"),
    };
    let Some(i) = backends.iter().position(|b| b.name == name) else {
        let known: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        let hint = if known.is_empty() {
            format!(
                "add it under \"backends\", e.g. \"backends\": {{ {}: {{ \"{kind}\": {{ … }} }} }}",
                quote(name)
            )
        } else {
            format!("known backends: {}", known.join(", "))
        };
        return Err(err(
            &o.at(key),
            format!("{} is not a backend ({hint})", quote(name)),
        ));
    };
    let matches = matches!(
        (&backends[i].kind, need),
        (BackendKind::Etcd(_), Need::Etcd) | (BackendKind::Rls(_), Need::Rls)
    );
    if !matches {
        return Err(err(
            &o.at(key),
            format!("backend {} is not an {kind} backend ({what})", quote(name)),
        ));
    }
    Ok(Some(i))
}

/// `rate_limits[i].global`, given the limit's window.
pub fn global(
    raw: &Raw,
    path: &str,
    window: Duration,
    backends: &[BackendConfig],
) -> Result<GlobalLimit, ConfigError> {
    let o = Obj::new(raw, path, GLOBAL_FIELDS)?;
    let backend = reference(&o, "backend", backends, Need::Rls)?.ok_or_else(|| {
        err(
            path,
            "missing field \"backend\" (the name of an rls entry in \"backends\")",
        )
    })?;
    let expressible = window.subsec_nanos() == 0
        && crate::backend::rls::unit_for_window_secs(window.as_secs()).is_some();
    if !expressible {
        let window_path = path.strip_suffix(".global").unwrap_or(path);
        return Err(err(
            &join(window_path, "window"),
            format!(
                "\"{}\" cannot be sent to a rate limit service, which counts per 1s, 1m, 1h or 1d (use one of those windows with \"global\")",
                super::duration::format(window)
            ),
        ));
    }
    Ok(GlobalLimit {
        backend,
        mode: o
            .choice("mode", GLOBAL_MODES)?
            .unwrap_or(GlobalMode::Reserve),
        on_backend_error: o
            .choice("on_backend_error", GLOBAL_ON_BACKEND_ERROR)?
            .unwrap_or(GlobalOnBackendError::Local),
    })
}
