//! An empty proxy-wasm HTTP filter: every callback keeps the default, which is
//! `Action::Continue`.
//!
//! Why it exists: any wasm filter costs Envoy something before it does any work (the VM
//! call per callback, header map copies). The benchmark loads this filter to measure that
//! floor, so levee's own cost is what it adds above it. The integration-test harness also
//! loads it to prove itself against a real Envoy without depending on levee's code.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
}}

/// Accepts any configuration and hands out one [`Noop`] per HTTP stream.
struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        log::info!("noop-filter configured");
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The per-stream context: all callbacks use the SDK defaults (continue).
struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {}
