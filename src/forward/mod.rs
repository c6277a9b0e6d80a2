//! Callout forwarding: levee itself sends the request to the upstream, and retries it.
//!
//! In router mode Envoy's router forwards and levee only watches. In callout mode
//! (`upstreams.*.forward: "callout"`) the host buffers the whole request, and a
//! [`CalloutForward`] decides every step: send an attempt to the upstream's cluster with
//! `dispatch_http_call` (after asking the circuit breaker), classify how it ended, feed the
//! breaker, and — when the attempt failed transiently, the method may be repeated, attempts,
//! deadline and the shared retry budget allow — wait a jittered backoff on the timer queue and
//! try again. Every decision is a [`ForwardStep`] value; the host only carries it out, so the
//! whole loop is tested natively with an in-memory store, a seeded random source and a fake
//! clock.
//!
//! # Respond or Failed
//!
//! The fallback chain runs "when the breaker is open or the final attempt failed". So the end
//! of a forward is:
//! - [`ForwardStep::Respond`] when the final attempt got an answer that is not a failure: any
//!   1xx–4xx status (a `404` is never retried and comes back at once; a `429` still there
//!   after the last retry is the client's answer too, with the upstream's `Retry-After`);
//! - [`ForwardStep::Failed`] when the breaker refused an attempt, or the final attempt is a
//!   failure — a 5xx answer, a timeout, a reset or a connect failure — whether it was not
//!   retryable, retries ran out, or the budget refused. The failure carries the last answer
//!   (client-ready) when there was one, so that with no applicable fallback the caller serves
//!   it unchanged; [`FailureInfo::status`] says what to answer otherwise (`503` breaker open,
//!   `504` timeout, `502` reset).
//!
//! Files: [`intake`] (which requests callout mode takes, and their buffered copy),
//! [`headers`] (what crosses, both ways), [`step`] (the values), [`machine`] (the state
//! machine), [`reply`] (what the client gets from it), [`budget_gate`] (the retry budget over
//! shared data); [`router`] is router mode's part (the breaker around Envoy's forward).

pub mod budget_gate;
pub mod headers;
pub mod intake;
pub mod machine;
pub mod reply;
pub mod router;
pub mod step;

#[cfg(test)]
mod tests;

pub use budget_gate::budget_key;
pub use machine::CalloutForward;
pub use step::{CalloutAnswer, CalloutRequest, FailureInfo, FinalAnswer, ForwardStep};
