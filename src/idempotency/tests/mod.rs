//! Behaviour tests for the record machine and classification.

mod classify;
mod key_reads;
mod machine;
mod machine_prop;

use crate::config::{IdempotencyConfig, OnConcurrent, OnInternalError, RequestMatch};
use std::time::Duration;

pub(super) const SEC: u64 = 1_000_000_000;

pub(super) fn cfg() -> IdempotencyConfig {
    IdempotencyConfig {
        methods: vec!["POST".into(), "PATCH".into()],
        matcher: RequestMatch::default(),
        header: "idempotency-key".into(),
        required: false,
        scope: Vec::new(),
        ttl: Duration::from_secs(160),
        lock_timeout: Duration::from_secs(30),
        fingerprint: true,
        on_concurrent: OnConcurrent::Reject,
        release_on: vec![408, 425, 429, 503],
        max_key_length: 255,
        max_body_bytes: 1000,
        max_stored_bytes: 10_000,
        on_internal_error: OnInternalError::Deny,
        backend: None,
        on_backend_error: crate::config::IdempotencyOnBackendError::Deny,
    }
}
