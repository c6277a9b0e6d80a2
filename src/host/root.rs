//! The root context: configuration, the shared tables, the worker's tick.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use crate::config;
use crate::pipeline::{Plugin, HASH_SECRET_KEY};
use crate::random::entropy_bytes;
use crate::store::cas::{ensure_key, get_or_create};

use crate::worker::Worker;

use super::abi;
use super::envoy::EnvoyHost;
use super::http::LeveeHttp;
use super::log;
use super::metrics::MetricIds;
use super::store::EnvoyStore;

/// What the root context shares with its HTTP contexts: the worker and the metric ids its
/// host adapter counts into.
pub(crate) struct Shared {
    pub(crate) worker: Worker,
    pub(crate) metrics: MetricIds,
}

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
        let store = EnvoyStore;
        for table in plugin.tables() {
            table.ensure_created(&store).map_err(|e| {
                format!(
                    "levee: cannot create shared-data table {}: {e:?}",
                    table.key_of(0)
                )
            })?;
        }
        for key in plugin.plain_keys() {
            ensure_key(&store, &key, b"")
                .map_err(|e| format!("levee: cannot create shared-data key {key}: {e:?}"))?;
        }
        let metrics = MetricIds::define_all(&plugin);
        let bound = plugin.memory_bound();
        metrics.set_memory_bound(bound);
        log(
            LogLevel::Info,
            &format!(
                "levee configured: {} rate limit(s), {} upstream(s); shared-data bound {} bytes ({} MiB)",
                plugin.config.rate_limits.len(),
                plugin.config.upstreams.len(),
                bound,
                bound / (1024 * 1024)
            ),
        );
        let rng = crate::random::SplitMix64::from_entropy();
        self.shared = Some(Rc::new(Shared {
            worker: Worker::new(Rc::new(plugin), rng, self.id),
            metrics,
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
            let host = &mut EnvoyHost::new(&shared.metrics);
            shared
                .worker
                .on_callout_response(host, token_id, num_headers, body_size);
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
        let shared = self.shared.clone()?;
        Some(Box::new(LeveeHttp::new(context_id, shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
