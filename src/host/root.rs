//! The root context: configuration, the shared tables, the worker's tick.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use crate::config;
use crate::footprint::Footprint;
use crate::pipeline::{Plugin, HASH_SECRET_KEY};
use crate::provision::provision;
use crate::random::entropy_bytes;
use crate::store::cas::get_or_create;

use super::abi;
use super::http::LeveeHttp;
use super::metrics::MetricIds;
use super::store::EnvoyStore;
use super::worker::{Shared, Worker};
use super::{log, now};

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
        let config = config::parse(&raw).map_err(|e| e.to_string())?;
        let secret = load_secret()?;
        let plugin = Plugin::new(config, secret);
        // Refused before a single key is created: over the ceiling, creating the tables is
        // what would take the time and the memory.
        let footprint = Footprint::of(&plugin);
        footprint.check(&plugin.config).map_err(|e| e.to_string())?;
        provision(&plugin, &EnvoyStore)?;
        let metrics = MetricIds::define_all(&plugin);
        let bound = footprint.bytes();
        metrics.set_memory_bound(bound);
        log(
            LogLevel::Info,
            &format!(
                "levee configured: {} rate limit(s), {} upstream(s); shared-data bound {} bytes ({} MiB) of the {} MiB ceiling, {} shared-data keys",
                plugin.config.rate_limits.len(),
                plugin.config.upstreams.len(),
                bound,
                bound / (1024 * 1024),
                plugin.config.limits.max_memory_bytes / (1024 * 1024),
                footprint.keys()
            ),
        );
        let queues = RefCell::new(super::delivery::Queues::for_plugin(&plugin));
        self.shared = Some(Rc::new(Shared {
            plugin: Rc::new(plugin),
            worker: RefCell::new(Worker::with_held_gauge(metrics.held_requests)),
            rng: RefCell::new(crate::random::SplitMix64::from_entropy()),
            body_callbacks_work: std::cell::Cell::new(false),
            queues,
            body_guard_logged: std::cell::Cell::new(false),
            root_id: self.id,
            metrics: Rc::new(metrics),
        }));
        Ok(())
    }
}

/// The keyed-hash secret: created once in shared data, so every worker VM and every later
/// configuration agree on it.
fn load_secret() -> Result<[u8; 16], String> {
    let fresh: [u8; 16] = entropy_bytes().ok_or("levee: the host refused random bytes")?;
    let stored = get_or_create(&EnvoyStore, HASH_SECRET_KEY, &fresh)
        .map_err(|e| format!("levee: cannot read or create {HASH_SECRET_KEY}: {e:?}"))?;
    stored.as_slice().try_into().map_err(|_| {
        format!(
            "levee: {HASH_SECRET_KEY} holds {} bytes, expected 16",
            stored.len()
        )
    })
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
            shared.on_callout_response(token_id, num_headers, body_size, now());
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
            shared.on_tick(now());
        } else {
            let _ = abi::set_tick_period(std::time::Duration::ZERO);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(LeveeHttp::new(context_id, shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
