//! The host adapter: the only module that uses `proxy_wasm`.
//!
//! It turns Envoy's callbacks into calls on the plain-Rust [`crate::worker::Worker`] and
//! implements the worker's [`crate::worker::Host`] with ABI calls. Nothing here decides
//! anything: if a branch needs a test, it belongs in `worker` or `pipeline`, not here. Every
//! host call goes through [`abi`], which returns every host status as a value (the SDK's
//! `hostcalls` panic on the ones they do not expect, and a panic traps the VM), and every
//! error is handled.

mod abi;
mod envoy;
mod http;
mod logger;
mod metrics;
mod root;
mod shared;
mod store;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    logger::install(LogLevel::Trace);
    std::panic::set_hook(Box::new(|info| {
        let _ = abi::log(LogLevel::Critical, &format!("levee panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::LeveeRoot::new(context_id))
    });
}}

/// Logs through the host, ignoring a refused log call (nothing better to do with it).
pub(crate) fn log(level: LogLevel, message: &str) {
    let _ = abi::log(level, message);
}

/// Envoy's current time as Unix nanoseconds (0 if the host refuses, which it never does).
pub(crate) fn now() -> crate::time::UnixNanos {
    abi::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(crate::time::duration_nanos)
        .unwrap_or(0)
}
