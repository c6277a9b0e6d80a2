//! The HTTP context: delegates each callback to the request's [`RequestFlow`].

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::pipeline::flow::{Step, UpstreamAnswer};
use crate::request::RequestAttributes;

use super::attributes::HostAttributes;
use super::metrics::HostMetrics;
use super::now;
use super::reply;
use super::store::EnvoyStore;
use super::worker::{Shared, Stream};

pub(crate) struct LeveeHttp {
    id: u32,
    shared: Rc<Shared>,
    stream: Rc<RefCell<Stream>>,
}

impl LeveeHttp {
    pub(crate) fn new(id: u32, shared: Rc<Shared>) -> Self {
        Self {
            id,
            shared,
            stream: Rc::default(),
        }
    }

    fn apply_now(&self, step: Step, now: crate::time::UnixNanos) -> Action {
        match step {
            Step::Continue => Action::Continue,
            Step::Reply(r) => {
                reply::send(&r, self.stream.borrow().grpc);
                Action::Pause
            }
            Step::Hold { wake_at, purpose } => {
                self.shared
                    .worker
                    .borrow_mut()
                    .hold(self.id, &self.stream, wake_at, purpose, now);
                Action::Pause
            }
        }
    }
}

impl Context for LeveeHttp {
    fn on_done(&mut self) -> bool {
        self.shared.worker.borrow_mut().forget(self.id, now());
        true
    }
}

impl HttpContext for LeveeHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let plugin = &self.shared.plugin;
        if plugin.is_pass_through() {
            return Action::Continue;
        }
        let now = now();
        let attrs = HostAttributes::default();
        let mut metrics = HostMetrics(&self.shared.metrics);
        let step = {
            let mut stream = self.stream.borrow_mut();
            stream.set_grpc(attrs.header("content-type"));
            stream
                .flow
                .on_request_headers(plugin, &EnvoyStore, &attrs, now, &mut metrics)
        };
        self.apply_now(step, now)
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if self.stream.borrow().flow.holds_request() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let plugin = &self.shared.plugin;
        if plugin.is_pass_through() {
            return Action::Continue;
        }
        let mut stream = self.stream.borrow_mut();
        let answer = if stream.flow.wants_upstream_answer() {
            upstream_answer()
        } else {
            UpstreamAnswer {
                status: 0,
                flags: 0,
            }
        };
        let mut metrics = HostMetrics(&self.shared.metrics);
        let headers =
            stream
                .flow
                .on_response_headers(plugin, &EnvoyStore, answer, now(), &mut metrics);
        for (name, value) in &headers {
            let _ = hostcalls::set_map_value_bytes(
                MapType::HttpResponseHeaders,
                name,
                Some(value.as_bytes()),
            );
        }
        Action::Continue
    }
}

/// The response status and Envoy's response flags, read in `on_http_response_headers`.
fn upstream_answer() -> UpstreamAnswer {
    let status = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    let flags = hostcalls::get_property(vec!["response", "flags"])
        .ok()
        .flatten()
        .and_then(|b| b.get(..8).and_then(|b| b.try_into().ok()))
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    UpstreamAnswer { status, flags }
}
