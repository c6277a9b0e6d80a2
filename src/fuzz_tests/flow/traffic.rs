//! The traffic side of the simulated worker: clients opening requests and sending bodies,
//! disconnects, the clock, store faults, and the final drain that drives every open request
//! to its end (the upstreams' answers are in [`super::upstream`]).

use proptest::prelude::*;

use std::cell::RefCell;
use std::rc::Rc;

use crate::config;
use crate::idempotency::parse_key;
use crate::random::RandomSource;
use crate::request::fake::FakeRequest;
use crate::request::RequestAttributes;
use crate::time::{NANOS_PER_MILLI as MS, NANOS_PER_SEC as SEC};
use crate::worker::Stream;

use super::MAX_WAIT_NS;

use super::world::{ctx, Phase, Sim, Whole, World, ROOT};

impl World<'_> {
    pub(super) fn new_request(&mut self) -> Result<(), TestCaseError> {
        let rng = &mut self.rng;
        let method = ["GET", "POST", "POST", "PATCH", "PUT", "HEAD"][rng.below(6) as usize];
        let path =
            ["/svc/a", "/svc/b?q=1", "/other", "/svc/a?q=%zz", "/svc"][rng.below(5) as usize];
        let mut req = FakeRequest::new(method, path)
            .source(["10.0.0.1:1234", "[::1]:80", "not-an-ip"][rng.below(3) as usize]);
        let user: Vec<u8> = match rng.below(5) {
            0 => b"alice".to_vec(),
            1 => b"bob".to_vec(),
            2 => (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect(),
            3 => vec![0xff; 60_000],
            _ => Vec::new(),
        };
        if rng.below(5) != 0 {
            req = req.header("x-user", &user);
        }
        if rng.below(3) == 0 {
            let xff: Vec<String> = (0..rng.below(100))
                .map(|n| format!("10.1.{}.{}", n / 256, n % 256))
                .collect();
            req = req.header("x-forwarded-for", xff.join(", "));
        }
        let key_header = Self::key_header(self.plugin);
        let raw_key: Option<Vec<u8>> = match rng.below(8) {
            0..=2 => Some(format!("k{}", rng.below(6)).into_bytes()),
            3 => Some(format!("\"k{}\"", rng.below(6)).into_bytes()),
            4 => Some(b"bad\x01key".to_vec()),
            5 => Some(vec![b'x'; 70_000]),
            6 => Some((0..rng.below(40)).map(|_| rng.next_u64() as u8).collect()),
            _ => None,
        };
        if let Some(k) = &raw_key {
            req = req.header(&key_header, k);
        }
        if rng.below(4) == 0 {
            req = req.header("content-type", "application/grpc");
        }
        let body: Vec<u8> = match rng.below(4) {
            0 => Vec::new(),
            1 => vec![b'b'; rng.below(64) as usize],
            2 => vec![b'c'; 32 + rng.below(1500) as usize],
            _ => b"amount=10".to_vec(),
        };
        self.open(req, body, raw_key.as_deref())
    }

    /// A client opens a request: its headers arrive (the body follows at its own pace).
    pub(super) fn open(
        &mut self,
        req: FakeRequest,
        body: Vec<u8>,
        raw_key: Option<&[u8]>,
    ) -> Result<(), TestCaseError> {
        let key = self.keyed_identity(&req, raw_key);
        let i = self.sims.len();
        let stream = Rc::new(RefCell::new(Stream::new(self.worker.next_owner_id())));
        self.host
            .requests
            .insert(ctx(i), (Whole(&req).all_headers(), Vec::new()));
        self.sims.push(Sim {
            stream: Rc::clone(&stream),
            req,
            body,
            sent: 0,
            phase: Phase::Held,
            key,
            executing: false,
            executed: false,
            cluster: String::new(),
            callout: None,
            response_paused: false,
        });
        let eos = self.sims[i].body.is_empty();
        self.host.current = ctx(i);
        let attrs = Whole(&self.sims[i].req);
        let action = self
            .worker
            .on_request_headers(&mut self.host, ctx(i), &stream, &attrs, eos);
        self.after_callback(i, action)
    }

    /// The request's idempotency identity (scope + normalised key) if levee will treat it as
    /// keyed: the layer matches and the key parses.
    pub(super) fn keyed_identity(
        &self,
        req: &FakeRequest,
        raw: Option<&[u8]>,
    ) -> Option<(Vec<u8>, String)> {
        let layer = self.plugin.idempotency.as_ref()?;
        if !layer.config.methods.iter().any(|m| m == &req.method) {
            return None;
        }
        if !crate::request::matcher::matches(&layer.config.matcher, req) {
            return None;
        }
        let key = parse_key(raw?, layer.config.max_key_length).ok()?;
        let scope = if layer.config.scope.is_empty() {
            Vec::new()
        } else {
            req.header("x-user")
                .map_or(b"\0".to_vec(), |v| [b"\x01".as_slice(), v].concat())
        };
        Some((scope, key.as_str().to_string()))
    }

    /// The client sends the next piece of its body.
    pub(super) fn send_body(&mut self, i: usize) -> Result<(), TestCaseError> {
        let s = &mut self.sims[i];
        if s.sent >= s.body.len() || matches!(s.phase, Phase::Answered | Phase::Done) {
            return Ok(());
        }
        let n = (1 + self.rng.below(s.body.len() as u64)) as usize;
        s.sent = (s.sent + n).min(s.body.len());
        let eos = s.sent == s.body.len();
        let stream = Rc::clone(&s.stream);
        if self.no_body_callbacks && stream.borrow().flow.holds_request() {
            // Envoy buffers it and never calls back while levee holds the request.
            return Ok(());
        }
        // Envoy holds every byte sent so far while levee holds the request.
        let held = s.body[..s.sent].to_vec();
        let sent = s.sent;
        if let Some(request) = self.host.requests.get_mut(&ctx(i)) {
            request.1 = held;
        }
        self.host.current = ctx(i);
        let action = self
            .worker
            .on_request_body(&mut self.host, ctx(i), &stream, sent, eos);
        self.after_callback(i, action)
    }

    /// The stream ends: completed, reset, or the client went away.
    pub(super) fn done(&mut self, i: usize) -> Result<(), TestCaseError> {
        if self.sims[i].phase == Phase::Done {
            return Ok(());
        }
        self.trace(i, "done");
        let stream = Rc::clone(&self.sims[i].stream);
        self.host.current = ctx(i);
        self.worker.on_done(&mut self.host, ctx(i), &stream);
        let s = &mut self.sims[i];
        s.phase = Phase::Done;
        s.executing = false;
        s.callout = None;
        prop_assert!(
            !self.worker.has_timer(ctx(i)) && !self.worker.holds(ctx(i)),
            "request {i} ended but the worker still keeps it"
        );
        self.settle().map(|_| ())
    }

    /// Moves the clock to `to`, ticking at every deadline on the way, at its own instant.
    pub(super) fn advance(&mut self, to: u64) -> Result<(), TestCaseError> {
        while let Some(at) = self.worker.next_deadline().filter(|at| *at <= to) {
            self.host.now = self.host.now.max(at);
            self.host.current = ROOT;
            self.worker.on_tick(&mut self.host);
            self.settle()?;
        }
        self.host.now = self.host.now.max(to);
        Ok(())
    }

    /// A request levee holds must have something that will wake it.
    pub(super) fn check_not_hung(&self, i: usize) -> Result<(), TestCaseError> {
        let s = &self.sims[i];
        let flow = &s.stream.borrow().flow;
        if s.phase != Phase::Held || !flow.holds_request() {
            return Ok(());
        }
        let body_to_come = s.sent < s.body.len() && flow.wants_body();
        prop_assert!(
            body_to_come || self.has_timer(i),
            "request {i} ({} {}) is held with nothing to wake it (body {}/{} sent, wants body: {})\n{:?}\nconfig: {}",
            s.req.method, s.req.path, s.sent, s.body.len(), flow.wants_body(), flow,
            config::to_effective_json(&self.plugin.config)
        );
        Ok(())
    }

    pub(super) fn step(&mut self) -> Result<(), TestCaseError> {
        let open: Vec<usize> = (0..self.sims.len())
            .filter(|&i| self.sims[i].phase != Phase::Done)
            .collect();
        let roll = self.rng.below(100);
        if open.is_empty() || roll < 20 {
            return self.new_request();
        }
        let i = open[self.rng.below(open.len() as u64) as usize];
        // Now and then Envoy refuses a callout (an unknown cluster, for instance).
        self.host.refuse_dispatch = self.rng.below(10) == 0;
        match (roll, self.sims[i].phase) {
            (20..=29, _) => {
                let to = self.host.now + self.rng.below(800) * MS;
                self.advance(to)?;
            }
            (30..=37, _) => self.done(i)?, // the client hangs up, whatever the stage
            (38..=41, _) if self.faults => self.toggle_faults(),
            (42..=45, _) if !self.deliveries.is_empty() => self.delivery_answer(false)?,
            (_, Phase::Held) => self.send_body(i)?,
            (_, Phase::Calling) => {
                let fault = self.rng.below(10);
                self.callout_answer(i, fault)?;
            }
            (_, Phase::Forwarded) => {
                self.send_body(i)?;
                self.router_answer(i)?;
            }
            (_, Phase::Answered) => self.done(i)?,
            (_, Phase::Done) => {}
        }
        Ok(())
    }

    pub(super) fn toggle_faults(&mut self) {
        match self.rng.below(5) {
            0 => self.host.store.fail_next_cas(self.rng.below(40) as u32),
            1 => self.host.store.conflict_probability(
                self.rng.next_u64(),
                [0, 300_000, 900_000][self.rng.below(3) as usize],
            ),
            2 => self.host.store.fail_reads(self.rng.below(2) == 0),
            3 => self.host.store.fail_writes(self.rng.below(2) == 0),
            _ => {
                self.host.store.fail_reads(false);
                self.host.store.fail_writes(false);
                self.host.store.conflict_probability(0, 0);
            }
        }
    }

    /// Stops the chaos and drives every open request to its end, as a patient client and a
    /// healthy upstream would.
    pub(super) fn drain(&mut self) -> Result<(), TestCaseError> {
        let store = self.host.store;
        store.fail_next_cas(0);
        store.fail_reads(false);
        store.fail_writes(false);
        store.conflict_probability(0, 0);
        self.host.refuse_dispatch = false;
        let deadline = self.host.now + 10 * MAX_WAIT_NS;
        loop {
            let open: Vec<usize> = (0..self.sims.len())
                .filter(|&i| self.sims[i].phase != Phase::Done)
                .collect();
            // Queued requests are delivered (and their keys completed) before it ends.
            let background = !self.deliveries.is_empty() || self.worker.next_deadline().is_some();
            if open.is_empty() && !background {
                return Ok(());
            }
            prop_assert!(
                self.host.now < deadline,
                "requests still open after {} s of virtual time",
                10 * MAX_WAIT_NS / SEC
            );
            let mut progressed = false;
            for &i in &open {
                self.check_not_hung(i)?;
                if self.sims[i].phase == Phase::Held
                    && !self.has_timer(i)
                    && self.sims[i].sent >= self.sims[i].body.len()
                {
                    // Only the known hang gets here (check_not_hung let it through): the client gives up.
                    self.done(i)?;
                    progressed = true;
                    continue;
                }
                match self.sims[i].phase {
                    Phase::Held if self.sims[i].sent < self.sims[i].body.len() => {
                        self.send_body(i)?;
                        progressed = true;
                    }
                    Phase::Calling => {
                        self.callout_answer(i, 9)?;
                        progressed = true;
                    }
                    Phase::Forwarded => {
                        self.router_answer(i)?;
                        progressed = true;
                    }
                    Phase::Answered => {
                        self.done(i)?;
                        progressed = true;
                    }
                    _ => {}
                }
            }
            if !self.deliveries.is_empty() {
                self.delivery_answer(true)?;
                progressed = true;
            }
            if !progressed {
                let next = self.worker.next_deadline();
                prop_assert!(next.is_some(), "open requests but nothing left to happen");
                if let Some(at) = next {
                    self.advance(at)?;
                }
            }
        }
    }
}
