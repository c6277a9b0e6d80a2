//! levee: one proxy-wasm HTTP filter that gives Envoy the reliability patterns backend
//! teams keep re-writing — rate limiting, idempotency keys, circuit breaking, retries with
//! backoff and jitter, and graceful fallbacks.
//!
//! Everything except [`host`] is plain Rust: algorithms take `now` as an argument, shared
//! state goes through the [`store::SharedStore`] trait, each layer returns a decision value,
//! and the [`worker`] turns those into calls on a small `Host` trait that [`host`] implements
//! with proxy-wasm. Only `host` touches `proxy_wasm`,
//! and it is compiled for `wasm32` only, so every other module is unit-tested natively.

pub mod abi_wire;
pub mod backend;
pub mod breaker;
pub mod config;
pub mod decimal;
pub mod fallback;
pub mod footprint;
pub mod forward;
pub mod header_block;
pub mod header_names;
pub mod hop_by_hop;
pub mod idempotency;
pub mod metrics;
pub mod outcome;
pub mod pipeline;
pub mod problem;
pub mod provision;
pub mod random;
pub mod ratelimit;
pub mod request;
pub mod retry;
pub mod small_blocks;
pub mod store;
pub mod time;
pub mod timer_queue;
pub mod window;
pub mod worker;

#[cfg(test)]
mod fuzz_tests;
#[cfg(target_arch = "wasm32")]
mod host;

/// Small blocks freed by one request serve the next: see [`small_blocks`].
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: small_blocks::SmallBlocks<std::alloc::System> =
    small_blocks::SmallBlocks::new(std::alloc::System);
