//! One request as the worker keeps it: its pipeline flow, and whether it is gRPC.

use crate::header_names::CONTENT_TYPE;
use crate::pipeline::flow::RequestFlow;
use crate::problem::is_grpc;

use super::host::Host;

/// One request's state, shared between its HTTP context and the worker's timers.
#[derive(Debug, Default)]
pub struct Stream {
    pub flow: RequestFlow,
    /// Whether the request is gRPC (its local replies then carry a grpc-status); `None`
    /// until a reply may be needed: requests that levee only lets through never read it.
    grpc: Option<bool>,
}

// Each request's state is one `Rc<RefCell<Stream>>` allocation. Within the allocator's small
// blocks it is taken and given back on the fast path (≈ 0.2 k instructions less per request
// than the general allocator); the parts few requests use (the callout intake, the fallbacks'
// copy of the request, a running fallback chain) are boxed to keep it there.
#[cfg(target_arch = "wasm32")]
const _: () = assert!(
    std::mem::size_of::<std::cell::RefCell<Stream>>() + 2 * std::mem::size_of::<usize>()
        <= crate::small_blocks::MAX_SMALL,
    "a request's state no longer fits the allocator's small blocks"
);

impl Stream {
    /// A new request; `owner` identifies it in shared state (idempotency locks).
    pub fn new(owner: u64) -> Self {
        Self {
            flow: RequestFlow::new(owner),
            grpc: None,
        }
    }

    pub(super) fn set_grpc(&mut self, content_type: Option<&[u8]>) {
        self.grpc = Some(is_grpc(content_type));
    }

    /// Whether the request is gRPC, reading its `content-type` now if nobody has yet.
    pub(super) fn grpc(&mut self, host: &mut impl Host) -> bool {
        *self
            .grpc
            .get_or_insert_with(|| is_grpc(host.request_header(CONTENT_TYPE).as_deref()))
    }
}
