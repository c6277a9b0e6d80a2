//! levee's door to Envoy: every proxy-wasm host call, made on the raw ABI imports.
//!
//! Why not the SDK's `proxy_wasm::hostcalls`: each of its functions `panic!`s when the host
//! returns a status it does not expect (52 places in 0.2.5), and its imports are declared as
//! returning the SDK's `Status` enum, so a code outside it is undefined behaviour. A panic
//! traps the VM, and the filter is dead on that worker until Envoy reloads it. These wrappers
//! declare the imports as returning `u32`, map *every* code ([`crate::abi_wire::HostStatus`])
//! and return `Result<_, Status>`: they never panic and never unwrap.
//!
//! Each wrapper keeps the name, arguments and `Ok` type of the SDK function it replaces (only
//! the module path changes at the call site), and the SDK's reading of a successful answer:
//! which statuses mean "no value" (`NotFound` for getters), and what a null pointer with `Ok`
//! means. The SDK stays for what it does well: `proxy_wasm::main!`, the context traits and
//! the dispatcher that routes host callbacks to them.
//!
//! Two exceptions: [`dispatch_http_call`] and [`dispatch_grpc_call`] go through the SDK,
//! because the SDK's dispatcher must register the call's token to route its answer (an
//! unknown HTTP token panics, an unknown gRPC token is dropped; see there).
//!
//! Memory the host returns was allocated by calling the SDK's exported
//! `proxy_on_memory_allocate` (the Rust global allocator, a boxed slice of exactly `size`
//! bytes), so [`take`] adopts it with `Vec::from_raw_parts(ptr, size, size)`, as the SDK does.
//!
//! Cost: every call that returns data makes the host call back into the VM to allocate
//! (≈ 11k instructions, callgrind), calls that return nothing ≈ 1–3k. Add none lightly.

mod control;
mod data;

pub(crate) use control::{
    define_metric, dispatch_grpc_call, dispatch_http_call, get_current_time, get_log_level,
    get_metric, increment_metric, log, record_metric, resume_http_request, send_local_response,
    set_effective_context, set_tick_period,
};
pub(crate) use data::{
    add_map_value_bytes, get_buffer, get_map_block, get_map_bytes, get_map_value_bytes,
    get_property, get_shared_data, set_map_value_bytes, set_shared_data,
};

use proxy_wasm::types::Status;

use crate::abi_wire::HostStatus;

/// `Ok(())` for status code 0, the matching [`Status`] for any other code.
fn check(code: u32) -> Result<(), Status> {
    match HostStatus::from_code(code) {
        HostStatus::Ok => Ok(()),
        HostStatus::NotFound => Err(Status::NotFound),
        HostStatus::BadArgument => Err(Status::BadArgument),
        HostStatus::SerializationFailure => Err(Status::SerializationFailure),
        HostStatus::ParseFailure => Err(Status::ParseFailure),
        HostStatus::Empty => Err(Status::Empty),
        HostStatus::CasMismatch => Err(Status::CasMismatch),
        HostStatus::InternalFailure => Err(Status::InternalFailure),
    }
}

/// Adopts `size` bytes the host allocated at `data`; `None` for a null pointer.
///
/// # Safety
/// `data` must be null or come from `proxy_on_memory_allocate(size)`, owned by nobody else.
unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        // SAFETY: per the contract above, `data` is a live allocation of exactly `size` bytes
        // from the global allocator (align 1), initialized by the host.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }
}
