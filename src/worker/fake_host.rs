//! A [`Host`] in memory, for native tests and the flow fuzzer: it answers reads from what
//! the test put in it and records every action the worker asks for, with the context it was
//! made on, so the test checks what Envoy would have seen.

use std::collections::{HashMap, HashSet};

use crate::metrics::{Metrics, Recorder};
use crate::problem::LocalReply;
use crate::store::{MemoryStore, SharedStore};
use crate::time::UnixNanos;
use crate::timer_queue::ContextId;

use super::host::{Callout, DispatchRefused, GrpcCall, Host};

/// One action the worker asked of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    Resume,
    Reply {
        reply: LocalReply,
        grpc: bool,
    },
    Dispatch {
        token: u32,
        cluster: String,
        headers: Vec<(String, String)>,
        timeout_ms: u128,
    },
    DispatchRefused,
    /// A gRPC call sent to a backend's cluster.
    Grpc {
        token: u32,
        cluster: String,
        service: String,
        method: String,
        message: Vec<u8>,
        timeout_ms: u128,
    },
    GrpcRefused,
    SetResponseHeader(String, String),
    AddResponseHeader(String, String),
    SetRequestHeader(String, String),
    Log(String),
}

/// A header map as the host returns it.
pub(crate) type HeaderPairs = Vec<(String, Vec<u8>)>;

/// The upstream's answer the current response callbacks read.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeResponse {
    /// Headers, `:status` included.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) flags: u64,
    /// The body chunk of the current `on_response_body`.
    pub(crate) chunk: Vec<u8>,
}

pub(crate) struct FakeHost<'a> {
    pub(crate) now: UnixNanos,
    pub(crate) store: &'a MemoryStore,
    pub(crate) metrics: Recorder,
    /// The context the next call acts on (the callback's own, or the effective one).
    pub(crate) current: ContextId,
    /// Contexts the host no longer knows (`set_effective_context` fails for them).
    pub(crate) gone: HashSet<ContextId>,
    /// Per context: its request headers and the body bytes Envoy holds.
    pub(crate) requests: HashMap<ContextId, (HeaderPairs, Vec<u8>)>,
    pub(crate) response: FakeResponse,
    /// The callout answer being delivered: headers (`None`: unreadable) and body.
    pub(crate) callout_answer: (Option<HeaderPairs>, Vec<u8>),
    /// Refuse the next dispatches (a cluster that does not exist, for instance).
    pub(crate) refuse_dispatch: bool,
    /// Clusters the scripted gRPC peer knows: a call to another is refused, as Envoy does.
    pub(crate) grpc_clusters: HashSet<String>,
    /// The message of the gRPC answer being delivered.
    pub(crate) grpc_answer: Vec<u8>,
    pub(crate) next_token: u32,
    pub(crate) tick_ms: Option<u64>,
    pub(crate) held: i64,
    /// Host calls that return data (what the per-request budget counts).
    pub(crate) reads: u32,
    pub(crate) calls: Vec<(ContextId, Call)>,
}

impl<'a> FakeHost<'a> {
    pub(crate) fn new(store: &'a MemoryStore, now: UnixNanos) -> Self {
        Self {
            now,
            store,
            metrics: Recorder::default(),
            current: 0,
            gone: HashSet::new(),
            requests: HashMap::new(),
            response: FakeResponse::default(),
            callout_answer: (None, Vec::new()),
            refuse_dispatch: false,
            grpc_clusters: HashSet::new(),
            grpc_answer: Vec::new(),
            next_token: 1,
            tick_ms: None,
            held: 0,
            reads: 0,
            calls: Vec::new(),
        }
    }

    fn record(&mut self, call: Call) {
        self.calls.push((self.current, call));
    }

    /// Takes the calls recorded so far.
    pub(crate) fn take_calls(&mut self) -> Vec<(ContextId, Call)> {
        std::mem::take(&mut self.calls)
    }
}

impl Host for FakeHost<'_> {
    fn now(&mut self) -> UnixNanos {
        self.reads += 1;
        self.now
    }

    fn env_parts(&mut self) -> (&dyn SharedStore, &mut dyn Metrics) {
        (self.store, &mut self.metrics)
    }

    fn set_effective_context(&mut self, id: ContextId) -> bool {
        self.current = id;
        !self.gone.contains(&id)
    }

    fn resume_request(&mut self) {
        self.record(Call::Resume);
    }

    fn send_local_reply(&mut self, reply: &LocalReply, grpc: bool) {
        let reply = reply.clone();
        self.record(Call::Reply { reply, grpc });
    }

    fn request_header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.reads += 1;
        let (headers, _) = self.requests.get(&self.current)?;
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn request_body(&mut self, start: usize, len: usize) -> Vec<u8> {
        self.reads += 1;
        self.requests
            .get(&self.current)
            .and_then(|(_, body)| body.get(start..start.saturating_add(len).min(body.len())))
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    fn response_header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.reads += 1;
        let headers = &self.response.headers;
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn response_headers(&mut self) -> Vec<(String, Vec<u8>)> {
        self.reads += 1;
        self.response.headers.clone()
    }

    fn response_flags(&mut self) -> u64 {
        self.reads += 1;
        self.response.flags
    }

    fn set_request_header(&mut self, name: &str, value: &str) {
        self.record(Call::SetRequestHeader(name.into(), value.into()));
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        self.record(Call::SetResponseHeader(name.into(), value.into()));
    }

    fn add_response_header(&mut self, name: &str, value: &str) {
        self.record(Call::AddResponseHeader(name.into(), value.into()));
    }

    fn response_body(&mut self, len: usize) -> Vec<u8> {
        self.reads += 1;
        let chunk = &self.response.chunk;
        chunk[..len.min(chunk.len())].to_vec()
    }

    fn dispatch_callout(&mut self, call: Callout<'_>) -> Option<u32> {
        if self.refuse_dispatch {
            self.record(Call::DispatchRefused);
            return None;
        }
        let token = self.next_token;
        self.next_token += 1;
        let headers = call
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.record(Call::Dispatch {
            token,
            cluster: call.cluster.to_string(),
            headers,
            timeout_ms: call.timeout.as_millis(),
        });
        Some(token)
    }

    fn callout_headers(&mut self) -> Option<Vec<(String, Vec<u8>)>> {
        self.reads += 1;
        self.callout_answer.0.clone()
    }

    fn callout_body(&mut self, len: usize) -> Vec<u8> {
        self.reads += 1;
        let body = &self.callout_answer.1;
        body[..len.min(body.len())].to_vec()
    }

    fn dispatch_grpc_call(&mut self, call: GrpcCall<'_>) -> Result<u32, DispatchRefused> {
        if !self.grpc_clusters.contains(call.cluster) {
            self.record(Call::GrpcRefused);
            return Err(DispatchRefused);
        }
        let token = self.next_token;
        self.next_token += 1;
        self.record(Call::Grpc {
            token,
            cluster: call.cluster.to_string(),
            service: call.service.to_string(),
            method: call.method.to_string(),
            message: call.message.to_vec(),
            timeout_ms: call.timeout.as_millis(),
        });
        Ok(token)
    }

    fn grpc_response_body(&mut self, len: usize) -> Vec<u8> {
        self.reads += 1;
        let body = &self.grpc_answer;
        body[..len.min(body.len())].to_vec()
    }

    fn set_tick_period(&mut self, ms: Option<u64>) {
        self.tick_ms = ms;
    }

    fn add_held_requests(&mut self, by: i64) {
        self.held += by;
    }

    fn log_critical(&mut self, message: &str) {
        self.record(Call::Log(message.to_string()));
    }
}
