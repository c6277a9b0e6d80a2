//! The values a request's flow and its host exchange: what to do next ([`Step`]), what a paused
//! request waits for ([`Await`]), and the answer that wakes it ([`Answer`]).
//!
//! Every wait for something outside the request — its own body, a timer, an HTTP callout, a
//! place on a queue — is one kind of step, and every answer comes back through one door,
//! [`super::flow::RequestFlow::resume`], which hands it to whatever the request's stage is
//! waiting with. A new kind of remote call is a new [`Await`] and [`Answer`] pair: the host
//! learns to send it, the stage that asked for it reads the answer; nothing else changes.

use crate::fallback::queue::{QueueFull, QueueId};
use crate::forward::CalloutRequest;
use crate::idempotency::layer::HeldKey;
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

/// One unary gRPC call to a configured backend (`backends` entry), through its Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCall {
    /// Index into the config's `backends`: the cluster, the breaker and the metrics.
    pub backend: usize,
    /// The fully-qualified service, e.g. `etcdserverpb.KV`.
    pub service: &'static str,
    /// The method, e.g. `Txn`.
    pub method: &'static str,
    /// The serialized request message (protobuf, without gRPC framing).
    pub message: Vec<u8>,
    /// The call's timeout (normally the backend's `timeout`).
    pub timeout_ms: u64,
}

/// How a [`RemoteCall`] ended. Envoy reports a refused connection, a reset, no healthy host
/// and a timeout all as UNAVAILABLE (14): only `elapsed_ns` tells a timeout apart. A call the
/// backend's open breaker refused, or that Envoy would not send at all, is answered at once
/// with UNAVAILABLE and `elapsed_ns` 0 — so the caller never waits on a known-bad backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAnswer {
    /// gRPC status: 0 OK, else the failure (14 UNAVAILABLE, 4 DEADLINE_EXCEEDED, 2 UNKNOWN, …).
    pub status: u32,
    /// The response message (protobuf, without gRPC framing); empty unless `status` is 0.
    pub message: Vec<u8>,
    /// From dispatch to answer, by the host's clock.
    pub elapsed_ns: u64,
}

impl RemoteAnswer {
    /// gRPC's OK.
    pub const OK: u32 = 0;
    /// gRPC's UNAVAILABLE: what Envoy reports for every transport failure.
    pub const UNAVAILABLE: u32 = 14;

    /// A failure answered without a call (open breaker, refused dispatch).
    pub fn unavailable() -> Self {
        Self {
            status: Self::UNAVAILABLE,
            message: Vec::new(),
            elapsed_ns: 0,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status == Self::OK
    }
}

/// A request to put on the upstream's queue (the host owns the queues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueue {
    pub upstream: usize,
    pub request: SavedRequest,
    /// The idempotency record the delivered answer completes.
    pub key: Option<HeldKey>,
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
