//! idempotency: to be built.
