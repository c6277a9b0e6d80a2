//! A request's own callbacks (headers, body, response, end), in the order Envoy calls them:
//! what to read from the host, what to tell the flow, and what to return.
//!
//! Reads are as few as the flow allows: every host call that returns data costs a round
//! trip into the VM, so nothing is read that the flow will not use.

use std::cell::RefCell;
use std::rc::Rc;

use crate::header_names::{is_rate_limit_field, CONTENT_TYPE, STATUS};
use crate::pipeline::flow::Step;
use crate::pipeline::step::UpstreamAnswer;
use crate::request::RequestAttributes;
use crate::timer_queue::ContextId;

use super::host::{Action, Host};
use super::stream::Stream;
use super::{Moment, Worker};

impl Worker {
    /// Maps a step decided inside a request callback to that callback's return value.
    fn apply_now(
        &self,
        host: &mut impl Host,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        step: Step,
        now: crate::time::UnixNanos,
    ) -> Action {
        self.schedule_flow_timer(host, id, stream, now);
        self.apply(host, id, stream, step, now, Moment::InCallback)
    }

    /// The request's headers arrived (`attrs` reads them).
    pub fn on_request_headers(
        &self,
        host: &mut impl Host,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        attrs: &dyn RequestAttributes,
        end_of_stream: bool,
    ) -> Action {
        if self.plugin.is_pass_through() {
            return Action::Continue;
        }
        let now = host.now();
        let step = {
            let mut stream = stream.borrow_mut();
            let step = self.with_env(host, now, |env| {
                stream.flow.on_request_headers(env, attrs, end_of_stream)
            });
            if !matches!(step, Step::Continue) {
                // levee may answer this request itself, now or later: note whether it is gRPC
                // while its headers are at hand.
                stream.set_grpc(attrs.header(CONTENT_TYPE));
            }
            step
        };
        self.apply_now(host, id, stream, step, now)
    }

    /// Envoy holds `body_size` request body bytes (all of them while levee holds the request).
    pub fn on_request_body(
        &self,
        host: &mut impl Host,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let (wants, holds, seen) = {
            let s = stream.borrow();
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
        self.body_callbacks_work.set(true);
        // Held bodies accumulate in Envoy's buffer: read only the bytes not seen yet.
        let start = usize::try_from(seen).unwrap_or(usize::MAX).min(body_size);
        let chunk = host.request_body(start, body_size - start);
        let now = host.now();
        let step = self.with_env(host, now, |env| {
            stream
                .borrow_mut()
                .flow
                .on_request_body(env, &chunk, end_of_stream)
        });
        self.apply_now(host, id, stream, step, now)
    }

    /// The upstream's response headers arrived (router mode, or after a callout answer
    /// levee let through).
    pub fn on_response_headers(
        &self,
        host: &mut impl Host,
        id: ContextId,
        stream: &Rc<RefCell<Stream>>,
        end_of_stream: bool,
    ) -> Action {
        if self.plugin.is_pass_through() {
            return Action::Continue;
        }
        let unobserved = stream.borrow_mut().flow.response_headers_unobserved();
        if let Some(headers) = unobserved {
            write_answer_headers(host, &headers);
            return Action::Continue;
        }
        let (headers, step, now) = {
            let mut stream = stream.borrow_mut();
            let answer = if stream.flow.wants_response_headers() {
                upstream_answer(
                    host,
                    end_of_stream,
                    stream.flow.wants_response_header_list(),
                )
            } else {
                UpstreamAnswer::default()
            };
            // A quiet breaker's success and most answers need no time: skip the clock then.
            let now = match stream.flow.clock_free_answer(&self.plugin, &answer) {
                Some(at) => at,
                None => host.now(),
            };
            let (headers, step) = self.with_env(host, now, |env| {
                stream.flow.on_response_headers(env, answer)
            });
            (headers, step, now)
        };
        if let Some(step) = step {
            // The upstream failed before its headers went out: a fallback replaces its answer.
            return self.apply_now(host, id, stream, step, now);
        }
        write_answer_headers(host, &headers);
        Action::Continue
    }

    /// A piece of the upstream's response body.
    pub fn on_response_body(
        &self,
        host: &mut impl Host,
        stream: &Rc<RefCell<Stream>>,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if !stream.borrow().flow.wants_response_body() {
            return Action::Continue;
        }
        let chunk = host.response_body(body_size);
        let now = host.now();
        self.with_env(host, now, |env| {
            stream
                .borrow_mut()
                .flow
                .on_response_body(env, &chunk, end_of_stream)
        });
        Action::Continue
    }

    /// The stream ended (completed, reset, or its client went away): release what it holds.
    pub fn on_done(&self, host: &mut impl Host, id: ContextId, stream: &Rc<RefCell<Stream>>) {
        // Most requests end with nothing to clean up: skip even the clock read then.
        let needs_flow = !self.plugin.is_pass_through() && stream.borrow().flow.has_loose_ends();
        let needs_worker = self.registry.borrow().knows(id);
        if !needs_flow && !needs_worker {
            return;
        }
        let now = host.now();
        if needs_flow {
            self.with_env(host, now, |env| stream.borrow_mut().flow.on_done(env));
        }
        self.registry.borrow_mut().forget(host, id, now);
    }
}

/// Writes the headers levee adds to the upstream's answer. The rate-limit fields are added
/// beside any the upstream sent, as Envoy's own rate limit filters add theirs (and an add is
/// the cheaper host call: a replace first searches the map); levee's other headers
/// (`x-idempotency-key`) replace the upstream's copy.
fn write_answer_headers(host: &mut impl Host, headers: &[(String, String)]) {
    for (name, value) in headers {
        if is_rate_limit_field(name) {
            host.add_response_header(name, value);
        } else {
            host.set_response_header(name, value);
        }
    }
}

/// The response status, Envoy's response flags and the headers, as far as the flow needs.
fn upstream_answer(
    host: &mut impl Host,
    end_of_stream: bool,
    with_headers: bool,
) -> UpstreamAnswer {
    let (status, headers) = if with_headers {
        let all = host.response_headers();
        let status = all
            .iter()
            .find(|(k, _)| k == STATUS)
            .and_then(|(_, v)| status_code(v))
            .unwrap_or(0);
        let headers = all
            .into_iter()
            .filter(|(k, _)| !k.starts_with(':'))
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        (status, headers)
    } else {
        // The breaker needs only the status: one small host call instead of the whole map.
        let status = host
            .response_header(STATUS)
            .and_then(|v| status_code(&v))
            .unwrap_or(0);
        (status, Vec::new())
    };
    // Envoy's response flags only tell timeouts, resets and connect failures apart, which
    // show as 5xx (or no status): a 2xx–4xx needs no property read.
    let flags = if status == 0 || status >= 500 {
        host.response_flags()
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

/// A `:status` value: exactly three ASCII digits (what Envoy sends); anything else is none.
fn status_code(value: &[u8]) -> Option<u16> {
    match value {
        [a, b, c] if value.iter().all(u8::is_ascii_digit) => Some(
            [a, b, c]
                .iter()
                .fold(0, |n, d| n * 10 + u16::from(**d - b'0')),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{status_code, write_answer_headers};
    use crate::store::MemoryStore;
    use crate::worker::fake_host::{Call, FakeHost};

    #[test]
    fn rate_limit_fields_are_added_beside_the_upstreams_and_levees_own_headers_replace() {
        let store = MemoryStore::new();
        let mut host = FakeHost::new(&store, 0);
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        let headers = [
            pair("x-ratelimit-limit", "10"),
            pair("x-ratelimit-remaining", "9"),
            pair("x-ratelimit-reset", "1700000000"),
            pair("ratelimit-policy", "\"rl\";q=10;w=60"),
            pair("ratelimit", "\"rl\";r=9;t=6"),
            pair("x-idempotency-key", "k-1"),
        ];
        write_answer_headers(&mut host, &headers);
        let calls: Vec<Call> = host.take_calls().into_iter().map(|(_, c)| c).collect();
        let mut want: Vec<Call> = headers[..5]
            .iter()
            .map(|(n, v)| Call::AddResponseHeader(n.clone(), v.clone()))
            .collect();
        want.push(Call::SetResponseHeader(
            "x-idempotency-key".into(),
            "k-1".into(),
        ));
        assert_eq!(calls, want);
    }

    #[test]
    fn a_status_is_three_ascii_digits() {
        assert_eq!(status_code(b"200"), Some(200));
        assert_eq!(status_code(b"503"), Some(503));
        assert_eq!(status_code(b"099"), Some(99));
        for bad in [
            &b""[..],
            b"20",
            b"2000",
            b"2a0",
            b" 200",
            b"-20",
            "٢٠٠".as_bytes(),
        ] {
            assert_eq!(status_code(bad), None, "{bad:?}");
        }
    }
}
