//! The HTTP context: delegates each callback to the request's [`RequestFlow`].

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use crate::pipeline::flow::{Await, Step, UpstreamAnswer};
use crate::pipeline::Env;
use crate::request::RequestAttributes;

use super::abi;
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
        let owner = shared.next_owner_id();
        Self {
            id,
            shared,
            stream: Rc::new(RefCell::new(Stream::new(owner))),
        }
    }

    /// Maps a step decided inside a request callback to that callback's return value.
    fn apply_now(&self, step: Step, now: crate::time::UnixNanos) -> Action {
        self.shared.schedule_flow_timer(self.id, &self.stream, now);
        match step {
            Step::Continue => {
                self.shared.worker.borrow_mut().unhold(self.id);
                Action::Continue
            }
            Step::Reply(r) => {
                self.shared.worker.borrow_mut().unhold(self.id);
                let grpc = self.stream.borrow_mut().grpc();
                reply::send(&r, grpc);
                Action::Pause
            }
            step @ Step::Await(Await::Timer { .. } | Await::Body) => {
                self.shared.pause(self.id, &self.stream, step, now);
                Action::Pause
            }
            Step::Await(Await::Callout(req)) => {
                self.shared.dispatch(self.id, &self.stream, req, now);
                Action::Pause
            }
            Step::Await(Await::Enqueue(e)) => {
                let next = self.shared.enqueue(self.id, &self.stream, e, now);
                self.apply_now(next, now)
            }
        }
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
        self.shared
            .on_callout_response(token_id, num_headers, body_size, now());
    }

    fn on_done(&mut self) -> bool {
        // Most requests end with nothing to clean up: skip even the clock read then.
        let needs_flow =
            !self.shared.plugin.is_pass_through() && self.stream.borrow().flow.has_loose_ends();
        let needs_worker = self.shared.worker.borrow().knows(self.id);
        if !needs_flow && !needs_worker {
            return true;
        }
        let now = now();
        if needs_flow {
            let mut metrics = HostMetrics(&self.shared.metrics);
            let mut rng = self.shared.rng.borrow_mut();
            let mut env = Env::new(
                &self.shared.plugin,
                &EnvoyStore,
                now,
                &mut *rng,
                &mut metrics,
            );
            self.stream.borrow_mut().flow.on_done(&mut env);
        }
        self.shared.worker.borrow_mut().forget(self.id, now);
        true
    }
}

impl HttpContext for LeveeHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let plugin = &self.shared.plugin;
        if plugin.is_pass_through() {
            return Action::Continue;
        }
        let now = now();
        let attrs = HostAttributes::new(plugin.few_header_reads);
        let mut metrics = HostMetrics(&self.shared.metrics);
        let step = {
            let mut stream = self.stream.borrow_mut();
            let mut rng = self.shared.rng.borrow_mut();
            let mut env = Env::new(plugin, &EnvoyStore, now, &mut *rng, &mut metrics);
            let step = stream
                .flow
                .on_request_headers(&mut env, &attrs, end_of_stream);
            if !matches!(step, Step::Continue) {
                // levee may answer this request itself, now or later: note whether it is gRPC
                // while its headers are at hand.
                stream.set_grpc(attrs.header("content-type"));
            }
            step
        };
        self.apply_now(step, now)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (wants, holds, seen) = {
            let s = self.stream.borrow();
            (
                s.flow.wants_body(),
                s.flow.holds_request(),
                s.flow.body_seen(),
            )
        };
        if !wants {
            return if holds {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        self.shared.body_callbacks_work.set(true);
        // Held bodies accumulate in Envoy's buffer: read only the bytes not seen yet.
        let start = usize::try_from(seen).unwrap_or(usize::MAX).min(body_size);
        let chunk = abi::get_buffer(BufferType::HttpRequestBody, start, body_size - start)
            .ok()
            .flatten()
            .unwrap_or_default();
        let now = now();
        let mut metrics = HostMetrics(&self.shared.metrics);
        let step = {
            let mut rng = self.shared.rng.borrow_mut();
            let mut env = Env::new(
                &self.shared.plugin,
                &EnvoyStore,
                now,
                &mut *rng,
                &mut metrics,
            );
            self.stream
                .borrow_mut()
                .flow
                .on_request_body(&mut env, &chunk, end_of_stream)
        };
        self.apply_now(step, now)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let plugin = &self.shared.plugin;
        if plugin.is_pass_through() {
            return Action::Continue;
        }
        let now = now();
        let (headers, step) = {
            let mut stream = self.stream.borrow_mut();
            let answer = if stream.flow.wants_response_headers() {
                upstream_answer(end_of_stream, stream.flow.wants_response_header_list())
            } else {
                UpstreamAnswer::default()
            };
            let mut metrics = HostMetrics(&self.shared.metrics);
            let mut rng = self.shared.rng.borrow_mut();
            let mut env = Env::new(plugin, &EnvoyStore, now, &mut *rng, &mut metrics);
            stream.flow.on_response_headers(&mut env, answer)
        };
        if let Some(step) = step {
            // The upstream failed before its headers went out: a fallback replaces its answer.
            return self.apply_now(step, now);
        }
        for (name, value) in &headers {
            let _ = abi::set_map_value_bytes(
                MapType::HttpResponseHeaders,
                name,
                Some(value.as_bytes()),
            );
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.stream.borrow().flow.wants_response_body() {
            return Action::Continue;
        }
        let chunk = abi::get_buffer(BufferType::HttpResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut metrics = HostMetrics(&self.shared.metrics);
        let mut rng = self.shared.rng.borrow_mut();
        let mut env = Env::new(
            &self.shared.plugin,
            &EnvoyStore,
            now(),
            &mut *rng,
            &mut metrics,
        );
        self.stream
            .borrow_mut()
            .flow
            .on_response_body(&mut env, &chunk, end_of_stream);
        Action::Continue
    }
}

/// The response status, Envoy's response flags and the headers, read in
/// `on_http_response_headers`.
fn upstream_answer(end_of_stream: bool, with_headers: bool) -> UpstreamAnswer {
    let parse_status = |v: &[u8]| std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
    let (status, headers) = if with_headers {
        let all = abi::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default();
        let status = all
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| parse_status(v))
            .unwrap_or(0);
        let headers = all
            .into_iter()
            .filter(|(k, _)| !k.starts_with(':'))
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        (status, headers)
    } else {
        // The breaker needs only the status: one small host call instead of the whole map.
        let status = abi::get_map_value_bytes(MapType::HttpResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|v| parse_status(&v))
            .unwrap_or(0);
        (status, Vec::new())
    };
    // Envoy's response flags only tell timeouts, resets and connect failures apart, which
    // show as 5xx (or no status): a 2xx–4xx needs no property read.
    let flags = if status == 0 || status >= 500 {
        abi::get_property(vec!["response", "flags"])
            .ok()
            .flatten()
            .and_then(|b| b.get(..8).and_then(|b| b.try_into().ok()))
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    } else {
        0
    };
    UpstreamAnswer {
        status,
        flags,
        headers,
        end_of_stream,
    }
}
