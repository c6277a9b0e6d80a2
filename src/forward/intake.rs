//! What callout mode takes from a request before levee sends it itself: which requests it
//! may take at all, and the copy of the request that the body is then buffered into.

use std::rc::Rc;

use crate::config::defaults::IDEMPOTENCY_HEADER;
use crate::header_names::{CONTENT_TYPE, UPGRADE};
use crate::problem::is_grpc;
use crate::request::saved::SavedRequest;
use crate::request::RequestAttributes;

/// Whether a request may be forwarded by callout: gRPC, upgrades (WebSocket) and CONNECT
/// stream and cannot be buffered, so they always go through Envoy's router.
pub fn callout_eligible(req: &dyn RequestAttributes) -> bool {
    !is_grpc(req.header(CONTENT_TYPE)) && req.header(UPGRADE).is_none() && req.method() != "CONNECT"
}

/// A request being buffered for callout mode.
#[derive(Debug)]
pub struct Intake {
    /// The head (method, path, authority, headers).
    pub head: SavedRequest,
    /// The body, as it arrives.
    pub body: Vec<u8>,
    /// The request carries an idempotency key header (retries of non-idempotent methods
    /// need one), whether or not the idempotency layer applies to it.
    pub has_key_header: bool,
}

impl Intake {
    /// `head` is the copy of `req`'s head ([`SavedRequest::of`]); `key_header` is the
    /// configured idempotency key header, if the layer is configured.
    pub fn of(req: &dyn RequestAttributes, head: SavedRequest, key_header: Option<&str>) -> Self {
        let header = key_header.unwrap_or(IDEMPOTENCY_HEADER);
        Self {
            has_key_header: req.header(header).is_some_and(|v| !v.is_empty()),
            head,
            body: Vec::new(),
        }
    }

    /// The whole request, once its body is complete.
    pub fn finish(self) -> SavedRequest {
        SavedRequest {
            body: Rc::new(self.body),
            ..self.head
        }
    }
}
