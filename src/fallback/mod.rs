//! Graceful fallback: what a client gets when its upstream cannot answer.
//!
//! When the circuit breaker is open, or the final attempt to the upstream failed, levee walks
//! the upstream's `fallback` list in order and serves the first entry that can answer.
//! Four kinds exist, one file each:
//!
//! | kind | answer | marker (`x-levee-fallback`) | file |
//! |---|---|---|---|
//! | `stale_cache` | a copy of an earlier successful GET/HEAD answer, at most `max_stale` old, with `Age` | `stale-cache` | [`cacheable`] (what may be kept), [`cache`] (where) |
//! | `cluster` | the same request sent to a secondary Envoy cluster | `secondary` | host callout; [`headers::mark`] adds the marker |
//! | `static` | the configured status, headers and body | `static` | [`chain::static_reply`] |
//! | `queue` | `202` with an id; the request is delivered later, at least once | `queued` | [`queue`] (accepting), [`deliveries`] (delivering) |
//!
//! [`chain::choose`] decides which entries may run at all: the entry's `methods`, and the
//! matrix of what router mode still allows once the request has gone upstream.
//!
//! # Why a fallback never depends on the failing thing
//! A fallback that calls the upstream that just failed turns one outage into two (the
//! "cascading fallbacks" pitfall). The chain avoids it by construction:
//! - `stale_cache` reads only Envoy's shared data, `static` only the configuration: neither
//!   performs any I/O;
//! - `cluster` must name another Envoy cluster than the upstream's own (config validation
//!   refuses `"cluster": <the upstream's cluster>`), and its answers are not counted by the
//!   upstream's breaker, so a failing secondary cannot keep the primary open;
//! - `queue` accepts the request locally; delivery happens later, in the background, and
//!   only when the upstream's breaker allows a call (a delivery is an ordinary attempt that
//!   the breaker counts), so with the breaker open nothing touches the failing upstream;
//! - an entry that cannot answer (cache miss, secondary failed, queue full) simply passes
//!   to the next entry; none of them retries the upstream. An empty or exhausted chain ends
//!   in levee's own `503`.
//!
//! Everything here is pure: no host calls, no clock (`now` is an argument), and decoding
//! bytes read from shared data never panics (garbage is a miss).

pub mod cache;
pub mod cache_outcome;
pub mod cacheable;
pub mod chain;
pub mod deliveries;
pub mod delivery;
pub mod headers;
pub mod index_entry;
pub mod kept;
pub mod queue;
pub mod run;

#[cfg(test)]
mod tests;

pub use cache::StaleCache;
pub use cache_outcome::{CacheError, Miss, StaleHit, Stored};
pub use cacheable::{cache_key, NotStored, VaryValues};
pub use chain::{choose, kind_name, marker, static_reply, Situation};
pub use delivery::{DeliveryOutcome, DeliveryPolicy, DeliveryTicket, Due, QueueId, Settled};
pub use headers::{mark, stale_headers};
pub use queue::{accepted_reply, QueueFull, QueueLimits, RequestQueue};

/// The response header that marks every degraded answer.
pub const FALLBACK_HEADER: &str = "x-levee-fallback";
/// Marker of an answer served from the stale cache.
pub const MARK_STALE_CACHE: &str = "stale-cache";
/// Marker of an answer from the secondary cluster.
pub const MARK_SECONDARY: &str = "secondary";
/// Marker of the configured static answer.
pub const MARK_STATIC: &str = "static";
/// Marker of the `202` that accepted a request into the queue.
pub const MARK_QUEUED: &str = "queued";
