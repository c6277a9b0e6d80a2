//! The root context: configuration, the worker's tick, and callouts sent from a tick.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use crate::random::entropy_bytes;
use crate::worker::{self, Worker};

use super::abi;
use super::envoy::EnvoyHost;
use super::http::LeveeHttp;
use super::log;
use super::metrics;
use super::shared::Shared;
use super::store::EnvoyStore;

pub(crate) struct LeveeRoot {
    id: u32,
    shared: Option<Rc<Shared>>,
}

impl LeveeRoot {
    pub(crate) fn new(context_id: u32) -> Self {
        Self {
            id: context_id,
            shared: None,
        }
    }

    fn configure(&mut self) -> Result<(), String> {
        let raw = abi::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .map_err(|s| format!("levee config: cannot read the plugin configuration ({s:?})"))?
            .unwrap_or_default();
        let (plugin, footprint) = worker::configure(&raw, &EnvoyStore, entropy_bytes())?;
        let metrics = metrics::define_all(&plugin, footprint.bytes());
        worker::reconcile_breakers(&plugin, &EnvoyStore, &mut metrics::HostMetrics(&metrics));
        log(LogLevel::Info, &worker::summary(&plugin, &footprint));
        let rng = crate::random::SplitMix64::from_entropy();
        self.shared = Some(Rc::new(Shared {
            worker: Worker::new(Rc::new(plugin), rng, self.id),
            metrics,
        }));
        Ok(())
    }
}

impl Context for LeveeRoot {
    /// Callouts sent from a timer (retries after a backoff) answer here.
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(shared) = &self.shared {
            let host = &mut EnvoyHost::new(&shared.metrics);
            shared
                .worker
                .on_callout_response(host, token_id, num_headers, body_size);
        }
    }

    /// gRPC calls sent from a timer (a request resumed by a tick) answer here.
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if let Some(shared) = &self.shared {
            let host = &mut EnvoyHost::new(&shared.metrics);
            shared
                .worker
                .on_grpc_response(host, token_id, status_code, response_size);
        }
    }
}

impl RootContext for LeveeRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        // Forward only what Envoy will print: formatting a dropped debug line costs per request.
        if let Ok(level) = abi::get_log_level() {
            super::logger::set_level(level);
        }
        match self.configure() {
            Ok(()) => true,
            Err(message) => {
                log(LogLevel::Error, &message);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            shared.worker.on_tick(&mut EnvoyHost::new(&shared.metrics));
        } else {
            let _ = abi::set_tick_period(std::time::Duration::ZERO);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.as_ref()?;
        if shared.worker.plugin.is_pass_through() {
            // Nothing configured: every callback would return at once. A context of no size
            // costs no allocation, no stream and no id per request.
            return Some(Box::new(PassThrough));
        }
        Some(Box::new(LeveeHttp::new(context_id, shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The HTTP context of a configuration without layers: every callback lets the request pass
/// (the SDK's defaults), as the worker would.
struct PassThrough;

impl Context for PassThrough {}

impl HttpContext for PassThrough {}
