//! The HTTP context: delegates each callback to the request's [`RequestFlow`].

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::pipeline::flow::Step;
use crate::request::RequestAttributes;

use super::attributes::HostAttributes;
use super::metrics::HostMetrics;
use super::reply;
use super::store::EnvoyStore;
use super::worker::{Shared, Stream};
use super::now;

pub(crate) struct LeveeHttp {
    id: u32,
    shared: Rc<Shared>,
    stream: Rc<RefCell<Stream>>,
}

impl LeveeHttp {
    pub(crate) fn new(id: u32, shared: Rc<Shared>) -> Self {
        Self { id, shared, stream: Rc::default() }
    }

    fn apply_now(&self, step: Step, now: crate::time::UnixNanos) -> Action {
        match step {
            Step::Continue => Action::Continue,
            Step::Reply(r) => {
                reply::send(&r, self.stream.borrow().grpc);
                Action::Pause
            }
            Step::Hold { wake_at, purpose } => {
                self.shared.worker.borrow_mut().hold(self.id, &self.stream, wake_at, purpose, now);
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
            stream.flow.on_request_headers(plugin, &EnvoyStore, &attrs, now, &mut metrics)
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
        let headers = self.stream.borrow_mut().flow.take_response_headers();
        for (name, value) in &headers {
            let _ = hostcalls::set_map_value_bytes(MapType::HttpResponseHeaders, name, Some(value.as_bytes()));
        }
        Action::Continue
    }
}
