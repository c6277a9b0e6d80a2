//! The few things the worker asks of its host, as a trait: Envoy's proxy-wasm ABI in
//! production (`src/host`), a recording fake in tests and in the flow fuzzer.
//!
//! Every method is one host call (or none), named after what it does for the worker, so that
//! the worker's logic — which call, when, in which order — is plain Rust that native tests
//! drive. Host refusals are absorbed by the adapter: a refused call reads as "nothing" (an
//! empty value, `None`, `false`), which is what the worker does with it anyway.

use crate::metrics::Metrics;
use crate::problem::LocalReply;
use crate::store::SharedStore;
use crate::time::UnixNanos;
use crate::timer_queue::ContextId;

/// What a request callback tells the host: let the request (or response) go on, or stop it
/// until levee resumes or answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// One callout to send: the cluster, headers (pseudo-headers first), optional body, timeout.
#[derive(Debug)]
pub struct Callout<'a> {
    pub cluster: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: Option<&'a [u8]>,
    pub timeout: std::time::Duration,
}

/// One unary gRPC call to send: the cluster, the fully-qualified service and method, the
/// serialized message, the timeout.
#[derive(Debug)]
pub struct GrpcCall<'a> {
    pub cluster: &'a str,
    pub service: &'a str,
    pub method: &'a str,
    pub message: &'a [u8],
    pub timeout: std::time::Duration,
}

/// The host would not send a gRPC call (unknown cluster, no client): nothing went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchRefused;

/// Envoy's side of one worker, as the worker sees it.
pub trait Host {
    /// The host's clock, in Unix nanoseconds.
    fn now(&mut self) -> UnixNanos;
    /// Shared data and the metric sink, together (a request step needs both at once).
    fn env_parts(&mut self) -> (&dyn SharedStore, &mut dyn Metrics);
    /// Makes `id` the request later calls act on (outside its own callbacks); false if the
    /// host no longer knows it.
    fn set_effective_context(&mut self, id: ContextId) -> bool;
    /// Lets a request levee paused go on to the upstream.
    fn resume_request(&mut self);
    /// Answers the current request with levee's own reply (a gRPC status for gRPC).
    fn send_local_reply(&mut self, reply: &LocalReply, grpc: bool);
    /// One request header of the current request.
    fn request_header(&mut self, name: &str) -> Option<Vec<u8>>;
    /// `len` bytes of the request body Envoy holds, from `start`.
    fn request_body(&mut self, start: usize, len: usize) -> Vec<u8>;
    /// One response header of the current request's upstream answer.
    fn response_header(&mut self, name: &str) -> Option<Vec<u8>>;
    /// Every response header, pseudo-headers included.
    fn response_headers(&mut self) -> Vec<(String, Vec<u8>)>;
    /// Envoy's response flags (timeouts, resets, connect failures), 0 if unknown.
    fn response_flags(&mut self) -> u64;
    /// Adds or replaces a request header (before the request goes on to the upstream).
    fn set_request_header(&mut self, name: &str, value: &str);
    /// Adds or replaces a response header.
    fn set_response_header(&mut self, name: &str, value: &str);
    /// Adds a response header beside any of the same name the upstream sent.
    fn add_response_header(&mut self, name: &str, value: &str);
    /// The first `len` bytes of the response body chunk Envoy holds.
    fn response_body(&mut self, len: usize) -> Vec<u8>;
    /// Sends a callout; its token, or `None` if the host refused it.
    fn dispatch_callout(&mut self, call: Callout<'_>) -> Option<u32>;
    /// The headers of the callout answer being delivered (`None`: unreadable).
    fn callout_headers(&mut self) -> Option<Vec<(String, Vec<u8>)>>;
    /// The first `len` bytes of the callout answer's body.
    fn callout_body(&mut self, len: usize) -> Vec<u8>;
    /// Sends a unary gRPC call; its token (gRPC tokens are their own space, apart from
    /// callout tokens), or [`DispatchRefused`].
    fn dispatch_grpc_call(&mut self, call: GrpcCall<'_>) -> Result<u32, DispatchRefused>;
    /// The first `len` bytes of the gRPC answer being delivered.
    fn grpc_response_body(&mut self, len: usize) -> Vec<u8>;
    /// Asks for a tick every `ms` milliseconds, or none (`None`).
    fn set_tick_period(&mut self, ms: Option<u64>);
    /// Moves the held-requests gauge.
    fn add_held_requests(&mut self, by: i64);
    /// A line operators must see (logged at critical level).
    fn log_critical(&mut self, message: &str);
}
