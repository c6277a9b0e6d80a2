//! The upstream side of the simulated worker: callout answers (with resets and garbage),
//! queue deliveries' answers, and the router's answers with their bodies.

use std::rc::Rc;

use proptest::prelude::*;

use crate::random::RandomSource;
use crate::worker::fake_host::{Call, FakeResponse};
use crate::worker::Action;

use super::world::{ctx, tracing, Phase, World, ROOT};

impl World<'_> {
    /// The outstanding callout of request `i` comes back.
    pub(super) fn callout_answer(&mut self, i: usize, fault: u64) -> Result<(), TestCaseError> {
        let rng = &mut self.rng;
        // What Envoy's HTTP codec lets through is a 3-digit status; every attempt's parser
        // (primary and secondary cluster) is fed garbage too and must read it as a reset.
        let status = [
            "200", "201", "404", "429", "500", "502", "503", "504", "abc", "", "99999", "0",
        ][rng.below(12) as usize];
        let mut headers: Vec<(String, Vec<u8>)> =
            vec![(":status".into(), status.as_bytes().to_vec())];
        match rng.below(6) {
            0 => headers.push(("retry-after".into(), b"1".to_vec())),
            1 => headers.push(("retry-after".into(), b"99999999999999999999".to_vec())),
            2 => headers.push((
                "retry-after".into(),
                b"Wed, 21 Oct 2015 07:28:00 GMT".to_vec(),
            )),
            3 => headers.push(("x-ratelimit-reset".into(), vec![0xff, 0x00, b'1'])),
            4 => headers.push(("x-huge".into(), vec![b'h'; 60_000])),
            _ => {}
        }
        let cache = cache_headers(rng);
        let len = rng.below(2000) as usize;
        for (n, v) in &cache {
            headers.push((n.clone(), v.clone().into_bytes()));
        }
        let body = self.answer_body(i, &cache, len);
        if tracing() {
            println!("        callout answer for #{i}: fault {fault} status {status:?}");
        }
        let Some(token) = self.sims[i].callout.take() else {
            prop_assert!(
                false,
                "request {i} is calling without an outstanding callout"
            );
            return Ok(());
        };
        // A reset (no headers), an empty header map, or a real answer.
        let (num_headers, answer) = match fault {
            0 | 1 => (0, (None, Vec::new())),
            2 => (1, (Some(Vec::new()), body)),
            _ => (headers.len(), (Some(headers), body)),
        };
        let body_size = answer.1.len();
        self.host.callout_answer = answer;
        self.host.current = ctx(i);
        self.worker
            .on_callout_response(&mut self.host, token, num_headers, body_size);
        if self.settle()?.contains(&i) {
            return Ok(());
        }
        // Ignored, or a backoff: something else must still wake the request.
        self.sims[i].phase = self.waiting_phase(i);
        if self.sims[i].phase == Phase::Held && self.sims[i].stream.borrow().flow.holds_request() {
            prop_assert!(
                self.has_timer(i),
                "a callout answer was ignored and nothing will wake the request"
            );
        }
        Ok(())
    }

    /// The root context's oldest outstanding queue delivery comes back (`healthy`: 200).
    pub(super) fn delivery_answer(&mut self, healthy: bool) -> Result<(), TestCaseError> {
        if self.deliveries.is_empty() {
            return Ok(());
        }
        let token = self.deliveries.remove(0);
        let status = if healthy {
            "200"
        } else {
            ["200", "201", "404", "429", "500", "503", "abc", ""][self.rng.below(8) as usize]
        };
        let mut headers = vec![(":status".to_string(), status.as_bytes().to_vec())];
        if self.rng.below(3) == 0 {
            headers.push(("retry-after".into(), b"1".to_vec()));
        }
        let reset = !healthy && self.rng.below(8) == 0;
        let num_headers = if reset { 0 } else { headers.len() };
        self.host.callout_answer = ((!reset).then_some(headers), b"delivered".to_vec());
        self.host.current = ROOT;
        self.worker
            .on_callout_response(&mut self.host, token, num_headers, 9);
        self.settle().map(|_| ())
    }

    /// The router's upstream answers request `i` (headers, then the body in pieces).
    pub(super) fn router_answer(&mut self, i: usize) -> Result<(), TestCaseError> {
        let rng = &mut self.rng;
        let status = [200u16, 201, 204, 404, 408, 429, 500, 502, 503, 504][rng.below(10) as usize];
        // Envoy's response flags: mostly none, sometimes upstream reset / connect failure / timeout.
        let flags = [0u64, 0, 0, 0x10, 0x20, 0x100, u64::MAX][rng.below(7) as usize];
        let len = rng.below(1500) as usize;
        let cache = cache_headers(rng);
        let body = self.answer_body(i, &cache, len);
        let rng = &mut self.rng;
        let mut headers = vec![
            (":status".to_string(), status.to_string().into_bytes()),
            ("content-type".into(), b"text/plain".to_vec()),
            ("x-big".into(), vec![b'v'; rng.below(3) as usize * 30_000]),
        ];
        headers.extend(cache.into_iter().map(|(n, v)| (n, v.into_bytes())));
        self.host.response = FakeResponse {
            headers,
            flags,
            chunk: Vec::new(),
        };
        self.host.current = ctx(i);
        let stream = Rc::clone(&self.sims[i].stream);
        let action =
            self.worker
                .on_response_headers(&mut self.host, ctx(i), &stream, body.is_empty());
        self.trace(
            i,
            &format!(
                "upstream answered {status} flags {flags:#x}, body {}",
                body.len()
            ),
        );
        let mine = |c: &(u32, Call)| c.0 == ctx(i);
        let replied = self
            .host
            .calls
            .iter()
            .any(|c| mine(c) && matches!(c.1, Call::Reply { .. }));
        let dispatched = self
            .host
            .calls
            .iter()
            .any(|c| mine(c) && matches!(c.1, Call::Dispatch { .. }));
        if action == Action::Pause || replied || dispatched {
            // A fallback replaces the upstream's answer (it failed before its headers went
            // out); the host keeps the response paused until it answers.
            self.sims[i].response_paused = !replied;
            self.end_execution(i, None, false);
            self.settle()?;
            return Ok(());
        }
        self.settle()?;
        let mut off = 0;
        while off < body.len() {
            let n = (1 + self.rng.below(body.len() as u64)) as usize;
            let end = (off + n).min(body.len());
            self.host.response.chunk = body[off..end].to_vec();
            self.worker
                .on_response_body(&mut self.host, &stream, end - off, end == body.len());
            off = end;
        }
        // The flow reads Envoy's flags only for a 5xx: below that the answer counts as is.
        let stored_kind = flags == 0 || status < 500;
        self.sims[i].phase = Phase::Answered;
        self.end_execution(i, Some(status), stored_kind);
        self.done(i)
    }
}

/// Response headers the stale cache reads: cacheability, variants, credentials.
fn cache_headers(rng: &mut crate::random::SplitMix64) -> Vec<(String, String)> {
    const CHOICES: [(&str, &str); 12] = [
        ("cache-control", "public, max-age=60"),
        ("cache-control", "private"),
        ("cache-control", "no-store"),
        ("cache-control", "s-maxage=5, ,,=,"),
        ("cache-control", "\"quoted, no-store\""),
        ("vary", "x-user"),
        ("vary", "*"),
        ("vary", "X-User, accept-encoding, ,x-user"),
        ("vary", ""),
        ("set-cookie", "a=b"),
        ("age", "-1"),
        ("expires", "0"),
    ];
    (0..rng.below(3))
        .map(|_| {
            let (n, v) = CHOICES[rng.below(CHOICES.len() as u64) as usize];
            (n.to_string(), v.to_string())
        })
        .collect()
}
