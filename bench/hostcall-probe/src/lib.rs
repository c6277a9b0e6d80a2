//! A proxy-wasm filter that makes one kind of host call `N` times per request.
//!
//! Why it exists: levee's cost inside Envoy is mostly host calls, and what one costs cannot
//! be read from levee itself. `make profile` loads this filter once per call kind with the
//! plugin configuration `"<kind>:<N>"` (e.g. `"shared_get:20"`), counts Envoy's instructions
//! per request under callgrind, and divides the difference to `"none:0"` by `N`.
//!
//! Kinds: `none`, `property` (`source.address`), `header_map` (all request headers),
//! `header` (one request header), `absent_header` (a request header that is not there),
//! `shared_get`, `shared_set`, `metric` (increment), `metric_get` (read a counter),
//! `response_header` (add one, in the response callback), `response_replace` (replace one),
//! `response_status` (read `:status`), `time`.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(ProbeRoot { kind: Kind::None, calls: 0, metric: 0 })
    });
}}

const SHARED_KEY: &str = "hostcall-probe:state";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Property,
    HeaderMap,
    Header,
    AbsentHeader,
    SharedGet,
    SharedSet,
    Metric,
    MetricGet,
    ResponseHeader,
    ResponseReplace,
    ResponseStatus,
    Time,
}

impl Kind {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Kind::None,
            "property" => Kind::Property,
            "header_map" => Kind::HeaderMap,
            "header" => Kind::Header,
            "absent_header" => Kind::AbsentHeader,
            "shared_get" => Kind::SharedGet,
            "shared_set" => Kind::SharedSet,
            "metric" => Kind::Metric,
            "response_header" => Kind::ResponseHeader,
            "response_replace" => Kind::ResponseReplace,
            "response_status" => Kind::ResponseStatus,
            "metric_get" => Kind::MetricGet,
            "time" => Kind::Time,
            _ => return None,
        })
    }
}

struct ProbeRoot {
    kind: Kind,
    calls: u32,
    metric: u32,
}

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        let parsed = text.trim().split_once(':').and_then(|(kind, calls)| {
            Some((Kind::parse(kind)?, calls.trim().parse::<u32>().ok()?))
        });
        let Some((kind, calls)) = parsed else {
            log::error!("hostcall-probe: configuration must be \"<kind>:<calls>\", got {text:?}");
            return false;
        };
        self.kind = kind;
        self.calls = calls;
        self.metric = hostcalls::define_metric(MetricType::Counter, "hostcall_probe").unwrap_or(0);
        // 17 bytes, the size of a token-bucket state.
        hostcalls::set_shared_data(SHARED_KEY, Some(&[7u8; 17]), None).is_ok()
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe { kind: self.kind, calls: self.calls, metric: self.metric }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    kind: Kind,
    calls: u32,
    metric: u32,
}

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let mut bytes = 0usize;
        for _ in 0..self.calls {
            bytes += match self.kind {
                Kind::Property => hostcalls::get_property(vec!["source", "address"])
                    .ok()
                    .flatten()
                    .map_or(0, |v| v.len()),
                Kind::HeaderMap => hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
                    .map_or(0, |m| m.len()),
                Kind::Header => hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-user")
                    .ok()
                    .flatten()
                    .map_or(0, |v| v.len()),
                Kind::AbsentHeader => {
                    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-not-sent")
                        .ok()
                        .flatten()
                        .map_or(0, |v| v.len())
                }
                Kind::SharedGet => hostcalls::get_shared_data(SHARED_KEY)
                    .ok()
                    .and_then(|(v, _)| v)
                    .map_or(0, |v| v.len()),
                Kind::SharedSet => {
                    usize::from(hostcalls::set_shared_data(SHARED_KEY, Some(&[8u8; 17]), None).is_ok())
                }
                Kind::Metric => usize::from(hostcalls::increment_metric(self.metric, 1).is_ok()),
                Kind::MetricGet => hostcalls::get_metric(self.metric).map_or(0, |v| v as usize),
                Kind::Time => usize::from(hostcalls::get_current_time().is_ok()),
                Kind::None | Kind::ResponseHeader | Kind::ResponseReplace | Kind::ResponseStatus => 0,
            };
        }
        // Keeps the results alive, so no call can be optimised away.
        if bytes == usize::MAX {
            log::info!("hostcall-probe: {bytes}");
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let mut bytes = 0usize;
        for _ in 0..self.calls {
            bytes += match self.kind {
                Kind::ResponseHeader => {
                    usize::from(hostcalls::add_map_value(MapType::HttpResponseHeaders, "x-probe", "1").is_ok())
                }
                Kind::ResponseReplace => usize::from(
                    hostcalls::set_map_value(MapType::HttpResponseHeaders, "x-probe", Some("1")).is_ok(),
                ),
                Kind::ResponseStatus => hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status")
                    .ok()
                    .flatten()
                    .map_or(0, |v| v.len()),
                _ => 0,
            };
        }
        if bytes == usize::MAX {
            log::info!("hostcall-probe: {bytes}");
        }
        Action::Continue
    }
}
