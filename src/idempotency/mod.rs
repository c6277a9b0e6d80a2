//! Idempotency keys: one execution per key, and the same answer for every retry.
//!
//! A client that retries a `POST /payments` after a timeout cannot know whether the first
//! attempt charged the card. With an `Idempotency-Key` header it does not need to: the first
//! request with a key executes, its answer (status, headers, body) is kept for `ttl`, and every
//! later request with the same key — from any worker VM — gets that answer replayed byte for
//! byte with `Idempotent-Replayed: true` instead of a second execution. Requests with the same
//! key that arrive while the first is running get `409` + `Retry-After` (or wait for it); a key
//! reused for a different request gets `422` (the [`fingerprint`] differs); a bad key `400`.
//!
//! # What a proxy can and cannot promise
//!
//! levee sees the request and the answer, not the upstream's database, so each ending is one of
//! three [`outcome`]s:
//! - **released** — certainly not executed (levee refused it, the upstream was never reached,
//!   or it answered a `release_on` status such as `503`): the record is cleared and the next
//!   same-key request executes at once;
//! - **unknown** — maybe executed (timeout, reset, `502`/`504`, the client left after the
//!   request went out): the record stays locked (`409`) until `lock_timeout`, then may be
//!   retaken. A timeout is the classic "succeeded but the response was lost": releasing it
//!   would let the retry charge twice, so levee holds the key instead;
//! - **stored** — every other answer, kept for `ttl` and replayed. One too large to keep
//!   (over `max_body_bytes`) is remembered as "completed with status N" (`409` to later
//!   requests): still never a second execution.
//!
//! Limits: state lives in shared data, i.e. in **one Envoy process** (all its workers, not
//! other replicas, and not across a restart); records live in a bounded table, so with more
//! than `max_tracked_keys` live keys the *completed* record written longest ago in a full
//! bucket is evicted (a retry of that key executes again; an in-flight record is never
//! evicted: [`record::evictable`]); `max_stored_bytes` bounds the stored answers (a byte
//! counter next to the records, kept exact by the [`layer`]), and an answer that
//! does not fit is remembered by status only.
//! The owner renews its lock every `lock_timeout / 3` while its request lives, so a slow but
//! alive first request is never retaken under it.
//!
//! # Layout
//!
//! Pure functions of bytes and `now`, for the caller's read-compute-CAS loops:
//! [`key`] parses the header; [`fingerprint`] hashes the request; [`record`] is the small
//! per-key state (42–61 bytes) and [`machine`] its transitions (`begin`, `renew`, `finish`);
//! [`response`] is the codec for the answer, which lives under a *separate* key so that large
//! bodies never ride along with the hot record, named by a [`BodyRef`] whose length and
//! checksum must match; [`mod@replay`] turns a record and its blob into the replayed answer;
//! [`outcome`] classifies how a request ended.
//!
//! Over shared data: [`layer`] holds the records in a bounded slot table (claim, renew,
//! complete), its answer store keeps the stored answers and their byte counter exact, and
//! [`shared_keys`] names the plain keys both use.
//!
//! The caller's order on completion: classify → (stored) encode the answer, reserve
//! its size, write the blob → [`finish`] with its [`BodyRef`] (or `None` if it did not fit).
//! The blob is written *before* the record names it, so a replay never sees a record whose
//! blob is not there yet; a [`Finish::NotOwner`] means the blob should be refunded.

mod answers;
pub mod capture;
pub mod fingerprint;
pub mod key;
pub mod key_env;
pub mod layer;
pub mod machine;
pub mod outcome;
pub mod record;
pub mod remote;
pub mod replay;
pub mod replies;
pub mod request;
pub mod request_key;
pub mod response;
pub mod shared_keys;

pub use fingerprint::{Fingerprint, FingerprintBuilder};
pub use key::{parse_key, parse_single_key, scoped_key, IdempotencyKey, KeyError};
pub use machine::{begin, finish, renew, renew_interval_ns, Begin, Finish, NewState, Outcome};
pub use outcome::{classify, OutcomeKind, UpstreamResult};
pub use record::{at_rest_at, evictable, BodyRef, Completed, InFlight, Record, TooLarge};
pub use replay::{replay, replay_headers, Replay, KEY_ECHO_HEADER, REPLAYED_HEADER};
pub use response::{DecodeError, EncodedResponse, StoredResponse, TooLargeToEncode};

#[cfg(test)]
mod layer_tests;
#[cfg(test)]
mod tests;
