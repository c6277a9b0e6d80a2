//! The HTTP context: hands each of Envoy's request callbacks to the [`Worker`].

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::worker::{self, LazyAttributes, Stream};

use super::envoy::{EnvoyHost, EnvoyRequest};
use super::shared::Shared;

pub(crate) struct LeveeHttp {
    id: u32,
    shared: Rc<Shared>,
    stream: Rc<RefCell<Stream>>,
}

impl LeveeHttp {
    pub(crate) fn new(id: u32, shared: Rc<Shared>) -> Self {
        let owner = shared.worker.next_owner_id();
        Self {
            id,
            shared,
            stream: Rc::new(RefCell::new(Stream::new(owner))),
        }
    }

    fn host(&self) -> EnvoyHost<'_> {
        EnvoyHost::new(&self.shared.metrics)
    }
}

fn action(a: worker::Action) -> Action {
    match a {
        worker::Action::Continue => Action::Continue,
        worker::Action::Pause => Action::Pause,
    }
}

impl Context for LeveeHttp {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let worker = &self.shared.worker;
        worker.on_callout_response(&mut self.host(), token_id, num_headers, body_size);
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let worker = &self.shared.worker;
        worker.on_grpc_response(&mut self.host(), token_id, status_code, response_size);
    }

    fn on_done(&mut self) -> bool {
        let worker = &self.shared.worker;
        worker.on_done(&mut self.host(), self.id, &self.stream);
        true
    }
}

impl HttpContext for LeveeHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let worker = &self.shared.worker;
        let attrs = LazyAttributes::new(EnvoyRequest, worker.plugin.few_header_reads);
        action(worker.on_request_headers(
            &mut self.host(),
            self.id,
            &self.stream,
            &attrs,
            end_of_stream,
        ))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let worker = &self.shared.worker;
        action(worker.on_request_body(
            &mut self.host(),
            self.id,
            &self.stream,
            body_size,
            end_of_stream,
        ))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let worker = &self.shared.worker;
        action(worker.on_response_headers(&mut self.host(), self.id, &self.stream, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let worker = &self.shared.worker;
        action(worker.on_response_body(&mut self.host(), &self.stream, body_size, end_of_stream))
    }
}
