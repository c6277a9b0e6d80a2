//! The values a request's flow and its host exchange: what to do next ([`Step`]), what a paused
//! request waits for ([`Await`]), and the answer that wakes it ([`Answer`]).
//!
//! Every wait for something outside the request — its own body, a timer, an HTTP callout, a
//! place on a queue — is one kind of step, and every answer comes back through one door,
//! [`super::flow::RequestFlow::resume`], which hands it to whatever the request's stage is
//! waiting with. A new kind of remote call is a new [`Await`] and [`Answer`] pair: the host
//! learns to send it, the stage that asked for it reads the answer; nothing else changes.

pub use crate::backend::call::{RemoteAnswer, RemoteCall};
use crate::fallback::deliveries::QueuedKey;
use crate::fallback::queue::{QueueFull, QueueId};
use crate::forward::CalloutRequest;
use crate::problem::LocalReply;
use crate::request::saved::SavedRequest;
use crate::time::UnixNanos;
use crate::timer_queue::TimerPurpose;

/// What the host should do next with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Let the request go on to the next filter (the router).
    Continue,
    /// Answer it now with this reply; the upstream never sees it.
    Reply(LocalReply),
    /// Keep it paused until what it awaits answers; pass the answer to
    /// [`super::flow::RequestFlow::resume`].
    Await(Await),
}

/// What a paused request waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Await {
    /// The rest of its body (no answer: the body callbacks carry it).
    Body,
    /// A timer: answer [`Answer::Timer`] with `purpose` at `wake_at`.
    Timer {
        wake_at: UnixNanos,
        purpose: TimerPurpose,
    },
    /// An HTTP callout: send it, answer [`Answer::Callout`].
    Callout(CalloutRequest),
    /// A place on its upstream's queue: try, answer [`Answer::Enqueued`].
    Enqueue(Enqueue),
    /// A unary gRPC call to a backend: send it (unless the backend's breaker is open),
    /// answer [`Answer::Remote`].
    Remote(RemoteCall),
}

/// What came back for a paused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A timer it asked for fired.
    Timer(TimerPurpose),
    /// Its callout's answer; `headers` is `None` when there was none (a reset, or the host
    /// refused the dispatch).
    Callout {
        headers: Option<Vec<(String, Vec<u8>)>>,
        body: Vec<u8>,
    },
    /// The queue took it (its id), or was full.
    Enqueued(Result<QueueId, QueueFull>),
    /// How its gRPC call to a backend ended.
    Remote(RemoteAnswer),
}

/// What to do with the answer to a [`BackgroundCall`]: run with the environment of the
/// callback that delivers it and the call's `tag`.
pub type OnBackgroundAnswer = fn(&mut super::Env<'_>, u64, RemoteAnswer);

/// A backend call no request waits for (say, a reservation refilled ahead of need). Pushed on
/// [`super::Env::call_in_background`]; the worker sends it from the root context at its next
/// tick (so the answer does not depend on the request that asked living on), and hands the
/// answer to `on_answer` with `tag`. An open breaker or a refused dispatch answers at once.
#[derive(Debug, Clone)]
pub struct BackgroundCall {
    pub call: RemoteCall,
    /// The caller's own identification of the call (which limit, which key).
    pub tag: u64,
    pub on_answer: OnBackgroundAnswer,
}

/// A request to put on the upstream's queue (the host owns the queues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueue {
    pub upstream: usize,
    pub request: SavedRequest,
    /// The idempotency record the delivered answer completes.
    pub key: Option<QueuedKey>,
}

/// What the upstream answered, as seen in `on_http_response_headers` (router mode).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamAnswer {
    pub status: u16,
    /// Envoy's `response.flags` bitmask.
    pub flags: u64,
    /// All response headers, when [`super::flow::RequestFlow::wants_response_headers`]
    /// asked for them.
    pub headers: Vec<(String, String)>,
    pub end_of_stream: bool,
}
