//! Envoy as the worker's [`Host`]: each method is one proxy-wasm ABI call.
//!
//! Local replies go through [`abi::send_local_response`] rather than the SDK's
//! `send_http_response`, which passes no details: `details` (e.g. `levee_rate_limited`) lands
//! in Envoy's `%RESPONSE_CODE_DETAILS%`, and gRPC requests get a gRPC status instead of a body,
//! with the reason in `grpc-message` (Envoy adds none when the body is empty).

use proxy_wasm::types::{BufferType, LogLevel, MapType};

use crate::header_block::HeaderBlock;
use crate::metrics::Metrics;
use crate::problem::{grpc_message, LocalReply};
use crate::store::SharedStore;
use crate::time::UnixNanos;
use crate::timer_queue::ContextId;
use crate::worker::{Callout, DispatchRefused, GrpcCall, Host, MetricIds, RequestReads};

use super::abi;
use super::metrics::HostMetrics;
use super::store::EnvoyStore;

/// The current request's headers and properties, read through the ABI.
pub(crate) struct EnvoyRequest;

impl RequestReads for EnvoyRequest {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        abi::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn headers(&self) -> HeaderBlock {
        abi::get_map_block(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    fn property(&self, path: &[u8]) -> Option<Vec<u8>> {
        abi::get_property(path).ok().flatten()
    }
}

/// The host of one callback; built per callback (it costs nothing).
pub(crate) struct EnvoyHost<'a> {
    metrics: HostMetrics<'a>,
    held_gauge: u32,
}

impl<'a> EnvoyHost<'a> {
    pub(crate) fn new(ids: &'a MetricIds) -> Self {
        Self {
            held_gauge: ids.held_requests,
            metrics: HostMetrics(ids),
        }
    }
}

impl Host for EnvoyHost<'_> {
    fn now(&mut self) -> UnixNanos {
        super::now()
    }

    fn env_parts(&mut self) -> (&dyn SharedStore, &mut dyn Metrics) {
        (&EnvoyStore, &mut self.metrics)
    }

    fn set_effective_context(&mut self, id: ContextId) -> bool {
        abi::set_effective_context(id).is_ok()
    }

    fn resume_request(&mut self) {
        let _ = abi::resume_http_request();
    }

    fn send_local_reply(&mut self, reply: &LocalReply, grpc: bool) {
        let mut pairs: Vec<(&str, &[u8])> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        let message;
        let (status, body, grpc_status): (u32, &[u8], i32) = match (grpc, &reply.grpc_status) {
            (true, Some(g)) => {
                message = grpc_message(&g.message);
                pairs.push(("grpc-message", message.as_bytes()));
                (200, b"", i32::try_from(g.code).unwrap_or(2))
            }
            _ => (u32::from(reply.status), &reply.body, -1),
        };
        // Refused only when the stream is already gone: nothing is left to answer.
        let _ = abi::send_local_response(status, reply.details, body, &pairs, grpc_status);
    }

    fn request_header(&mut self, name: &str) -> Option<Vec<u8>> {
        EnvoyRequest.header(name)
    }

    fn request_body(&mut self, start: usize, len: usize) -> Vec<u8> {
        abi::get_buffer(BufferType::HttpRequestBody, start, len)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn response_header(&mut self, name: &str) -> Option<Vec<u8>> {
        abi::get_map_value_bytes(MapType::HttpResponseHeaders, name)
            .ok()
            .flatten()
    }

    fn response_headers(&mut self) -> Vec<(String, Vec<u8>)> {
        abi::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default()
    }

    fn response_flags(&mut self) -> u64 {
        EnvoyRequest
            .property(b"response\0flags")
            .and_then(|b| b.get(..8).and_then(|b| b.try_into().ok()))
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    }

    fn set_request_header(&mut self, name: &str, value: &str) {
        let _ = abi::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value.as_bytes()));
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        let _ =
            abi::set_map_value_bytes(MapType::HttpResponseHeaders, name, Some(value.as_bytes()));
    }

    fn add_response_header(&mut self, name: &str, value: &str) {
        let _ = abi::add_map_value_bytes(MapType::HttpResponseHeaders, name, value.as_bytes());
    }

    fn response_body(&mut self, len: usize) -> Vec<u8> {
        abi::get_buffer(BufferType::HttpResponseBody, 0, len)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn dispatch_callout(&mut self, call: Callout<'_>) -> Option<u32> {
        abi::dispatch_http_call(call.cluster, call.headers, call.body, vec![], call.timeout).ok()
    }

    fn callout_headers(&mut self) -> Option<Vec<(String, Vec<u8>)>> {
        abi::get_map_bytes(MapType::HttpCallResponseHeaders).ok()
    }

    fn callout_body(&mut self, len: usize) -> Vec<u8> {
        abi::get_buffer(BufferType::HttpCallResponseBody, 0, len)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn dispatch_grpc_call(&mut self, call: GrpcCall<'_>) -> Result<u32, DispatchRefused> {
        abi::dispatch_grpc_call(
            call.cluster,
            call.service,
            call.method,
            call.message,
            call.timeout,
        )
        .map_err(|_| DispatchRefused)
    }

    fn grpc_response_body(&mut self, len: usize) -> Vec<u8> {
        abi::get_buffer(BufferType::GrpcReceiveBuffer, 0, len)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn set_tick_period(&mut self, ms: Option<u64>) {
        let _ = abi::set_tick_period(std::time::Duration::from_millis(ms.unwrap_or(0)));
    }

    fn add_held_requests(&mut self, by: i64) {
        let _ = abi::increment_metric(self.held_gauge, by);
    }

    fn log_critical(&mut self, message: &str) {
        super::log(LogLevel::Critical, message);
    }
}
