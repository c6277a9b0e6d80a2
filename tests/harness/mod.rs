//! The integration-test harness: a real Envoy with a wasm filter, a scriptable upstream behind
//! it, and a raw HTTP/1.1 client in front of it.
//!
//! Why it exists: levee's guarantees (exact limits across worker VMs, one execution per
//! idempotency key, breaker transitions, retries that really wait) only hold or fail inside
//! Envoy's wasm host, so every pattern is proven end to end: client → Envoy + levee.wasm →
//! [`Upstream`]. Each `tests/*.rs` file includes this module with `mod harness;`. Everything
//! binds ephemeral ports on 127.0.0.1, so test files and tests within them run in parallel.
//!
//! Where things come from: `ENVOY_BIN` (set by `make test`; else `.venv/bin/envoy`) and
//! `LEVEE_WASM` (else `target/wasm32-wasip1/release/levee.wasm`).
//!
//! ```ignore
//! let up = Upstream::start();
//! let envoy = Envoy::start(EnvoyOptions::levee(r#"{"rate_limits": []}"#, up.port()));
//! let r = send(envoy.port(), &Request::get("/x").header("x-upstream-status", "503"));
//! assert_eq!(r.status, 503);
//! assert_eq!(up.count(), 1);
//! ```

// Each test file uses a different part of the harness; the rest is dead code there.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod client;
pub mod envoy;
pub mod envoy_config;
pub mod etcd;
pub mod etcd_admin;
pub mod grpc_web;
pub mod idempotency_etcd;
pub mod keyed;
pub mod levee;
pub mod peers;
pub mod raw_envoy;
pub mod redis;
pub mod rls;
pub mod upstream;
pub mod wire;

pub use client::{
    burst, send, send_and_disconnect_after, send_raw, try_send, Client, Request, Response,
};
pub use envoy::{crate_root, envoy_bin, Envoy, EnvoyOptions, Route};
pub use levee::{callout_upstream, merged, single_upstream, start_levee};
pub use upstream::{ReceivedRequest, Reply, Upstream};
