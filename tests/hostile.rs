//! Hostile requests against a real Envoy with 2 workers: bad bytes in keyed headers, hostile
//! idempotency keys and X-Forwarded-For, bodies at and over every limit, upstreams that
//! misbehave (garbage `Retry-After`, huge headers, resets mid-body, stalls past every
//! timeout), clients that vanish at every stage, and one client abusing the slot tables.
//!
//! After each: the status levee documents (a 4xx for hostile input, never a hang), an Envoy
//! log free of wasm panics and traps, no stuck breaker or idempotency lock (a follow-up
//! request behaves), and `levee_held_requests` back to 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

#[path = "hostile/common.rs"]
mod common;
#[path = "hostile/disconnects.rs"]
mod disconnects;
#[path = "hostile/fairness.rs"]
mod fairness;
#[path = "hostile/findings.rs"]
mod findings;
#[path = "hostile/input.rs"]
mod input;
#[path = "hostile/upstream.rs"]
mod upstream;
