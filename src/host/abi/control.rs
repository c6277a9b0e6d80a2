//! Host calls that return no data: logging, the clock, the tick timer, contexts and streams,
//! metrics, local replies and callouts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::types::{LogLevel, MetricType, Status};

use crate::abi_wire::{encode_pairs, log_level_index};

use super::check;

/// `proxy_continue_stream`'s stream type for the HTTP request.
const STREAM_HTTP_REQUEST: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_metric(metric_id: u32, return_value: *mut u64) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

pub(crate) fn log(level: LogLevel, message: &str) -> Result<(), Status> {
    // SAFETY: `message` is a live slice for the duration of the call.
    check(unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) })
}

/// The level Envoy logs wasm at (`--component-log-level wasm:…`).
pub(crate) fn get_log_level() -> Result<LogLevel, Status> {
    let mut raw: u32 = 0;
    // SAFETY: the out-pointer is a live local.
    check(unsafe { proxy_get_log_level(&mut raw) })?;
    match log_level_index(raw) {
        Some(0) => Ok(LogLevel::Trace),
        Some(1) => Ok(LogLevel::Debug),
        Some(2) => Ok(LogLevel::Info),
        Some(3) => Ok(LogLevel::Warn),
        Some(4) => Ok(LogLevel::Error),
        Some(_) => Ok(LogLevel::Critical),
        None => Err(Status::InternalFailure),
    }
}

/// Envoy's wall clock.
pub(crate) fn get_current_time() -> Result<SystemTime, Status> {
    let mut nanos: u64 = 0;
    // SAFETY: the out-pointer is a live local.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
    UNIX_EPOCH
        .checked_add(Duration::from_nanos(nanos))
        .ok_or(Status::InternalFailure)
}

/// The root context's tick period (zero: off). Periods over `u32::MAX` ms saturate.
pub(crate) fn set_tick_period(period: Duration) -> Result<(), Status> {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    check(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// Makes `context_id` the context later host calls act on (from a timer or a callout answer).
pub(crate) fn set_effective_context(context_id: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_set_effective_context(context_id) })
}

/// Resumes the (effective) paused request.
pub(crate) fn resume_http_request() -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) })
}

pub(crate) fn define_metric(metric_type: MetricType, name: &str) -> Result<u32, Status> {
    let mut id: u32 = 0;
    // SAFETY: `name` is a live slice; the out-pointer is a live local.
    check(unsafe { proxy_define_metric(metric_type as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub(crate) fn increment_metric(metric_id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_increment_metric(metric_id, offset) })
}

/// A stat's current value: a u64 through a pointer, so the host does not re-enter the VM
/// (about as cheap as an increment, unlike calls that return bytes).
pub(crate) fn get_metric(metric_id: u32) -> Result<u64, Status> {
    let mut value: u64 = 0;
    // SAFETY: the out-pointer is a live local.
    check(unsafe { proxy_get_metric(metric_id, &mut value) })?;
    Ok(value)
}

pub(crate) fn record_metric(metric_id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_record_metric(metric_id, value) })
}

/// Answers the (effective) request locally. Unlike the SDK's `send_http_response`, it passes
/// `details` (Envoy's `%RESPONSE_CODE_DETAILS%`) and a gRPC status (`-1`: none).
pub(crate) fn send_local_response(
    status_code: u32,
    details: &str,
    body: &[u8],
    headers: &[(&str, &[u8])],
    grpc_status: i32,
) -> Result<(), Status> {
    let headers = encode_pairs(headers);
    // SAFETY: every pointer/length pair describes a live slice for the duration of the call.
    check(unsafe {
        proxy_send_local_response(
            status_code,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc_status,
        )
    })
}

/// Sends an HTTP callout; its token is registered with the SDK's dispatcher, which routes the
/// answer to the context that was active here.
///
/// The one host call still made through the SDK: only its `dispatch_http_call` can register
/// the token (`dispatcher::register_callout` is private), and an unregistered token makes the
/// SDK's `proxy_on_http_call_response` panic. It panics only on a status other than Ok,
/// `BadArgument` and `InternalFailure`; Envoy's `proxy_http_call` returns only those, plus
/// `InvalidMemoryAccess` for pointers outside the VM's memory, which live slices never are.
pub(crate) fn dispatch_http_call(
    upstream: &str,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
    trailers: Vec<(&str, &str)>,
    timeout: Duration,
) -> Result<u32, Status> {
    proxy_wasm::hostcalls::dispatch_http_call(upstream, headers, body, trailers, timeout)
}

/// Sends a unary gRPC call; its token is registered with the SDK's dispatcher, which routes the
/// answer (`on_grpc_call_response`) to the context that was active here.
///
/// Made through the SDK for the same reason as [`dispatch_http_call`]: only its
/// `dispatch_grpc_call` registers the token (an unregistered gRPC token's answer is dropped).
/// The SDK panics on a status other than Ok, `ParseFailure` and `InternalFailure`. Envoy's
/// `proxy_grpc_call` returns `ParseFailure` for an unknown cluster, `InternalFailure` when the
/// request cannot start, and `BadArgument` only when it cannot build a gRPC client for a plain
/// cluster name, which it does without checking the cluster (so in practice never);
/// `InvalidMemoryAccess` needs pointers outside the VM's memory, which live slices never are.
pub(crate) fn dispatch_grpc_call(
    cluster: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<u32, Status> {
    proxy_wasm::hostcalls::dispatch_grpc_call(
        cluster,
        service,
        method,
        Vec::new(),
        Some(message),
        timeout,
    )
}
