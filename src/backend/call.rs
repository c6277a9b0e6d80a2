//! One unary gRPC call to a remote engine (etcd, a rate limit service) and how it ended: the
//! values a pattern's machine hands the request core to send, and gets back. Plain data, so
//! the pattern folders and the core both use them without importing each other.

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
