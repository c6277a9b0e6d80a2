//! The whole request pipeline under random traffic: [`RequestFlow`] driven the way the host
//! drives it, by a simulated Envoy worker with a virtual clock.
//!
//! Each case builds a random (valid) plugin config, then runs a few dozen requests through
//! it, interleaved: random methods, paths, hostile header values and idempotency keys, bodies
//! that arrive in chunks at the client's pace (buffered by "Envoy" while levee holds the
//! request, exactly as the real host does), upstream answers with any status, garbage
//! `Retry-After`, resets and failed dispatches, clients that vanish at any stage, and a
//! [`MemoryStore`] that, in half of the cases, refuses reads and writes and injects CAS
//! conflicts. Timers fire in order as the clock moves. Then everything still open is driven
//! to its end.
//!
//! Checked on every step and at the end:
//! - no panic, and no reply with a status levee does not document for that reason;
//! - no hang: a request levee holds always has something that will wake it (a timer, a body
//!   chunk still to come, an outstanding callout);
//! - without store faults: no two executions of one idempotency key at once, and none while
//!   a stored answer for it is within its `ttl`; no internal error unless a table was full.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::cases;
use crate::config;
use crate::idempotency::parse_key;
use crate::metrics::{Event, GlobalEvent, Recorder};
use crate::pipeline::flow::{RequestFlow, Step, UpstreamAnswer};
use crate::pipeline::Plugin;
use crate::random::{RandomSource, SplitMix64};
use crate::request::fake::FakeRequest;
use crate::store::cas::ensure_key;
use crate::store::MemoryStore;
use crate::time::{NANOS_PER_MILLI as MS, NANOS_PER_SEC as SEC};
use crate::timer_queue::TimerPurpose;

const T0: u64 = 1_700_000_000 * SEC;
/// How long the host waits for a first body callback (`host::worker::BODY_GUARD_NS`).
const BODY_GUARD_NS: u64 = 3 * SEC;
/// Whether the flow reads a request body that arrives while the leaky-bucket shaper holds
/// the request. Until it does, a shaped request that needs its body (idempotency fingerprint,
/// callout mode) and whose body arrived during the delay waits forever after its release:
/// Envoy delivered (and buffered) the body while levee did not want it, and sends no second
/// callback. The fuzzer found it; `a_body_that_arrives_while_the_shaper_holds_the_request_is_not_lost`
/// below pins it. Set to `true` once fixed, so the fuzzer checks it again.
const SHAPED_BODY_FIXED: bool = true;
/// No timer levee sets may be further away than this (longest configured wait here: 5 s).
const MAX_WAIT_NS: u64 = 60 * SEC;

/// A random valid config over a small space of knobs: every layer, small tables.
fn config_json(rng: &mut SplitMix64, small_tables: bool) -> Value {
    let pick = |rng: &mut SplitMix64, items: &[&str]| {
        items[rng.below(items.len() as u64) as usize].to_string()
    };
    let key_choices = [
        json!([]),
        json!(["header:x-user"]),
        json!(["client_ip"]),
        json!(["header:x-user", "query:q"]),
    ];
    let mut rate_limits = Vec::new();
    for i in 0..rng.below(3) {
        let algorithm = pick(
            rng,
            &[
                "fixed_window",
                "sliding_window_log",
                "sliding_window_counter",
                "token_bucket",
                "leaky_bucket",
            ],
        );
        let mut rl = json!({
            "name": format!("rl{i}"),
            "algorithm": algorithm,
            "limit": 1 + rng.below(4),
            "window": pick(rng, &["200ms", "1s"]),
            "key": key_choices[rng.below(4) as usize].clone(),
            "mode": pick(rng, &["enforce", "enforce", "shadow"]),
            "on_internal_error": pick(rng, &["allow", "deny"]),
        });
        if algorithm == "leaky_bucket" && rng.below(2) == 0 {
            rl["max_delay"] = json!(pick(rng, &["100ms", "500ms"]));
        }
        if rng.below(3) == 0 {
            rl["match"] = json!({ "methods": ["POST"] });
        }
        rate_limits.push(rl);
    }
    let mut doc = json!({
        "limits": { "max_tracked_keys": if small_tables { 4 + rng.below(12) } else { 4096 } },
        "rate_limits": rate_limits,
        "rate_limit_headers": pick(rng, &["x-ratelimit", "ietf", "both", "none"]),
    });
    if rng.below(4) != 0 {
        doc["idempotency"] = json!({
            "required": rng.below(4) == 0,
            "scope": if rng.below(2) == 0 { json!([]) } else { json!(["header:x-user"]) },
            "ttl": "5s",
            "lock_timeout": pick(rng, &["300ms", "1s"]),
            "fingerprint": rng.below(3) != 0,
            "on_concurrent": pick(rng, &["reject", "wait"]),
            "max_key_length": 16 + rng.below(32),
            "max_body_bytes": 64 + rng.below(256),
            "max_stored_bytes": 4096,
            "on_internal_error": pick(rng, &["allow", "deny"]),
        });
    }
    if rng.below(4) != 0 {
        let callout = rng.below(2) == 0;
        let mut up = json!({
            "forward": if callout { "callout" } else { "router" },
            "timeout": "500ms",
            "max_body_bytes": 128 + rng.below(512),
        });
        if callout {
            up["cluster"] = json!("c");
            if rng.below(3) != 0 {
                let mut retry = json!({
                    "max_retries": rng.below(4),
                    "base_delay": "20ms", "max_delay": "200ms", "deadline": "2s",
                    "jitter": pick(rng, &["full", "equal", "decorrelated", "none"]),
                    "respect_retry_after": rng.below(2) == 0,
                    "non_idempotent": pick(rng, &["with_key", "never", "always"]),
                });
                if rng.below(2) == 0 {
                    retry["budget"] = json!({ "ratio": 0.5, "min_per_second": rng.below(3) });
                }
                up["retry"] = retry;
            }
        }
        if rng.below(2) == 0 {
            up["circuit_breaker"] = json!({
                "failure_threshold": 1 + rng.below(3),
                "reset_timeout": "300ms",
                "half_open_successes": 1 + rng.below(2),
                "half_open_max_in_flight": 1 + rng.below(2),
            });
        }
        if rng.below(3) == 0 {
            up["fallback"] =
                json!([{ "static": { "status": 203, "body": "fallback" }, "methods": ["GET"] }]);
        }
        doc["upstreams"] = json!({ "svc": up });
        doc["routes"] = json!([{ "match": { "path_prefix": "/svc" }, "upstream": "svc" }]);
    }
    doc
}

/// The host's configure: parse, build, pre-create every table and key.
fn plugin(doc: &Value, store: &MemoryStore) -> Result<Plugin, TestCaseError> {
    let cfg = config::parse(doc.to_string().as_bytes())
        .map_err(|e| TestCaseError::fail(format!("generated config refused: {e}\n{doc}")))?;
    let plugin = Plugin::new(cfg, [9; 16]);
    for t in plugin.tables() {
        t.ensure_created(store)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    }
    for key in plugin.plain_keys() {
        ensure_key(store, &key, b"").map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    }
    Ok(plugin)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Paused by levee (timer, body, or key wait).
    Held,
    /// A callout is outstanding.
    Calling,
    /// Passed to the router; the upstream answer has not been delivered yet.
    Forwarded,
    /// levee answered it.
    Answered,
    /// The stream ended (`on_done` ran).
    Done,
}

struct Sim {
    flow: RequestFlow,
    req: FakeRequest,
    body: Vec<u8>,
    /// Body bytes the client has sent so far (Envoy buffers them while levee holds).
    sent: usize,
    phase: Phase,
    /// The normalised idempotency key (with its scope), when the request is a keyed one.
    key: Option<(Vec<u8>, String)>,
    executing: bool,
    /// The shaper held it (a leaky-bucket delay).
    shaped: bool,
    /// It reached the upstream at least once.
    executed: bool,
}

/// The simulated worker: clock, store, timers, requests, and what the checks remember.
struct World<'a> {
    plugin: &'a Plugin,
    store: &'a MemoryStore,
    now: u64,
    rng: SplitMix64,
    metrics: Recorder,
    sims: Vec<Sim>,
    timers: BTreeSet<(u64, u64, usize, u8)>,
    timer_seq: u64,
    /// The worker has seen a body callback (the host's `body_callbacks_work`).
    body_callbacks_work: bool,
    /// The plugin config lacks `allow_on_headers_stop_iteration`: no body callback ever comes
    /// while levee holds a request.
    no_body_callbacks: bool,
    faults: bool,
    /// Per key: until when its stored answer must be replayed, not executed again.
    stored_until: HashMap<(Vec<u8>, String), u64>,
}

fn purpose_code(p: TimerPurpose) -> u8 {
    match p {
        TimerPurpose::Release => 0,
        TimerPurpose::Backoff => 1,
        TimerPurpose::BodyGuard => 2,
        TimerPurpose::Poll => 3,
        TimerPurpose::Renew => 4,
    }
}

fn purpose_of(code: u8) -> TimerPurpose {
    match code {
        0 => TimerPurpose::Release,
        1 => TimerPurpose::Backoff,
        2 => TimerPurpose::BodyGuard,
        3 => TimerPurpose::Poll,
        _ => TimerPurpose::Renew,
    }
}

fn tracing() -> bool {
    std::env::var_os("FUZZ_TRACE").is_some()
}

impl World<'_> {
    fn trace(&self, i: usize, what: &str) {
        if tracing() {
            let s = &self.sims[i];
            println!(
                "{:>6} ms  #{i:<3} {} {} key={:?}: {what}",
                (self.now - T0) / MS,
                s.req.method,
                s.req.path,
                s.key.as_ref().map(|k| (&k.1, k.0.len()))
            );
        }
    }

    fn schedule(&mut self, i: usize, at: u64, purpose: TimerPurpose) -> Result<(), TestCaseError> {
        prop_assert!(
            at <= self.now + MAX_WAIT_NS,
            "a timer {} s away",
            (at - self.now) / SEC
        );
        self.timer_seq += 1;
        self.timers
            .insert((at, self.timer_seq, i, purpose_code(purpose)));
        Ok(())
    }

    fn has_timer(&self, i: usize) -> bool {
        self.timers.iter().any(|t| t.2 == i)
    }

    /// What the host does with a step (`apply_now` / `apply_later`), plus the checks.
    fn apply(&mut self, i: usize, step: Step) -> Result<(), TestCaseError> {
        if tracing() {
            let shown = match &step {
                Step::Reply(r) => format!("Reply {} {}", r.status, r.details),
                Step::Dispatch(_) => "Dispatch".to_string(),
                other => format!("{other:?}"),
            };
            self.trace(i, &shown);
        }
        if let Some((at, purpose)) = self.sims[i].flow.take_timer() {
            self.schedule(i, at, purpose)?;
        }
        match step {
            Step::Continue => {
                self.sims[i].phase = Phase::Forwarded;
                self.start_execution(i)?;
            }
            Step::Reply(r) => {
                self.check_reply(i, r.status, r.details, &r.headers)?;
                self.sims[i].phase = Phase::Answered;
                self.end_execution(i, Some(r.status), r.details == "levee_callout");
            }
            Step::Hold { wake_at, purpose } => {
                if purpose == TimerPurpose::Release {
                    self.sims[i].shaped = true;
                }
                prop_assert!(
                    wake_at >= self.now.saturating_sub(1),
                    "a wake-up in the past"
                );
                self.sims[i].phase = Phase::Held;
                self.schedule(i, wake_at, purpose)?;
            }
            Step::AwaitBody => {
                self.sims[i].phase = Phase::Held;
                if !self.body_callbacks_work {
                    self.schedule(i, self.now + BODY_GUARD_NS, TimerPurpose::BodyGuard)?;
                }
                // Envoy already holds whatever the client sent; if levee wants it now and
                // it is all there, the host hands it over at the next body callback — which
                // only comes if more body is on its way.
                self.deliver_buffered_body(i)?;
            }
            Step::Enqueue(_) => {
                // The host would queue it and answer 202; the fuzzed configs have no queue.
                self.sims[i].phase = Phase::Answered;
                self.end_execution(i, None, false);
            }
            Step::Dispatch(req) => {
                prop_assert!(req.timeout_ns > 0, "an attempt without a timeout");
                prop_assert!(req.headers.iter().any(|(n, _)| n == ":path"));
                self.sims[i].phase = Phase::Calling;
                self.start_execution(i)?;
            }
        }
        Ok(())
    }

    /// Body callbacks run only while body is arriving; a held request that wants a body that
    /// has already fully arrived gets nothing more from Envoy.
    fn deliver_buffered_body(&mut self, _i: usize) -> Result<(), TestCaseError> {
        Ok(())
    }

    fn check_reply(
        &mut self,
        i: usize,
        status: u16,
        details: &str,
        headers: &[(String, String)],
    ) -> Result<(), TestCaseError> {
        let keyed = self.sims[i].key.is_some();
        let echo = headers.iter().any(|(n, _)| n == "x-idempotency-key");
        let allowed = match details {
            "levee_rate_limited" => status == 429,
            "levee_circuit_open" => status == 503,
            "levee_idempotency_bad_key" => status == 400,
            "levee_idempotency_conflict" | "levee_idempotency_completed" => {
                prop_assert!(echo, "a {details} without X-Idempotency-Key");
                status == 409
            }
            "levee_idempotency_mismatch" => {
                prop_assert!(echo, "a 422 without X-Idempotency-Key");
                status == 422
            }
            "levee_idempotent_replay" => {
                prop_assert!(echo && keyed, "a replay without X-Idempotency-Key");
                true
            }
            "levee_payload_too_large" => status == 413,
            "levee_body_not_delivered" => {
                let known = self.sims[i].shaped && !SHAPED_BODY_FIXED;
                // As documented: on a worker that has not seen a body callback yet, a client
                // that sends no body byte within the guard's wait is indistinguishable from
                // a missing `allow_on_headers_stop_iteration`.
                let slow_client = self.sims[i].sent == 0;
                prop_assert!(
                    self.no_body_callbacks || known || slow_client,
                    "body-not-delivered although the body came"
                );
                status == 500
            }
            "levee_internal_error" => {
                let full_possible = self.plugin.config.limits.max_tracked_keys < 64;
                prop_assert!(
                    self.faults || full_possible,
                    "an internal error without any store fault"
                );
                status == 503
            }
            "levee_upstream_timeout" => status == 504,
            "levee_upstream_reset"
            | "levee_upstream_connect_failure"
            | "levee_upstream_failure" => status == 502 || status == 504,
            "levee_callout" => (100..=999).contains(&status),
            "levee_fallback_static" => status == 203,
            other => {
                prop_assert!(false, "a reply with unknown details {other:?}");
                false
            }
        };
        prop_assert!(allowed, "{details} answered {status}");
        Ok(())
    }

    fn start_execution(&mut self, i: usize) -> Result<(), TestCaseError> {
        self.sims[i].executed = true;
        let Some(key) = self.sims[i].key.clone() else {
            return Ok(());
        };
        if self.sims[i].executing {
            return Ok(()); // a retry of the same execution
        }
        // A full idempotency table (small tables) is an internal error; with
        // `on_internal_error: allow` the request then runs unprotected, as documented.
        let internal = self
            .metrics
            .count_of(Event::Global(GlobalEvent::InternalError))
            > 0;
        if !self.faults && !internal {
            let twice = self
                .sims
                .iter()
                .any(|s| s.executing && s.key.as_ref() == Some(&key));
            prop_assert!(!twice, "two executions of key {:?} at once", key.1);
            if let Some(&until) = self.stored_until.get(&key) {
                prop_assert!(
                    self.now >= until,
                    "key {:?} executed again while its answer is stored",
                    key.1
                );
            }
        }
        self.sims[i].executing = true;
        Ok(())
    }

    /// The execution ended; remember a stored answer (`status`, when the client got it).
    fn end_execution(&mut self, i: usize, status: Option<u16>, stored_kind: bool) {
        let s = &mut self.sims[i];
        if !std::mem::take(&mut s.executing) {
            return;
        }
        let (Some(key), Some(status), Some(layer)) =
            (s.key.clone(), status, &self.plugin.idempotency)
        else {
            return;
        };
        let released = layer.config.release_on.contains(&status) || matches!(status, 502 | 504);
        if stored_kind && !released {
            let ttl = crate::time::duration_nanos(layer.config.ttl);
            // Stored at the last instant the answer was seen; a hair's margin for rounding.
            self.stored_until.insert(key, self.now + ttl - MS);
        }
    }

    fn new_request(&mut self) -> Result<(), TestCaseError> {
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
        let key_header = self
            .plugin
            .idempotency
            .as_ref()
            .map_or("idempotency-key".to_string(), |l| {
                l.config.header.to_ascii_lowercase()
            });
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
    fn open(
        &mut self,
        req: FakeRequest,
        body: Vec<u8>,
        raw_key: Option<&[u8]>,
    ) -> Result<(), TestCaseError> {
        let key = self.keyed_identity(&req, raw_key);
        let i = self.sims.len();
        self.sims.push(Sim {
            flow: RequestFlow::new(self.rng.next_u64()),
            req,
            body,
            sent: 0,
            phase: Phase::Held,
            key,
            executing: false,
            shaped: false,
            executed: false,
        });
        let eos = self.sims[i].body.is_empty();
        let step = {
            let (sims, rng, metrics) = (&mut self.sims, &mut self.rng, &mut self.metrics);
            let s = &mut sims[i];
            s.flow
                .on_request_headers(self.plugin, self.store, &s.req, eos, self.now, rng, metrics)
        };
        self.apply(i, step)
    }

    /// The request's idempotency identity (scope + normalised key) if levee will treat it as
    /// keyed: the layer matches and the key parses.
    fn keyed_identity(&self, req: &FakeRequest, raw: Option<&[u8]>) -> Option<(Vec<u8>, String)> {
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
            use crate::request::RequestAttributes;
            req.header("x-user")
                .map_or(b"\0".to_vec(), |v| [b"\x01".as_slice(), v].concat())
        };
        Some((scope, key.as_str().to_string()))
    }

    /// The client sends the next piece of its body.
    fn send_body(&mut self, i: usize) -> Result<(), TestCaseError> {
        let s = &mut self.sims[i];
        if s.sent >= s.body.len() || matches!(s.phase, Phase::Answered | Phase::Done) {
            return Ok(());
        }
        let n = (1 + self.rng.below(s.body.len() as u64)) as usize;
        s.sent = (s.sent + n).min(s.body.len());
        let eos = s.sent == s.body.len();
        if !s.flow.wants_body() || self.no_body_callbacks && s.flow.holds_request() {
            // Envoy buffers it (levee holds the request) or passes it on.
            return Ok(());
        }
        self.body_callbacks_work = true;
        let seen = usize::try_from(s.flow.body_seen())
            .unwrap_or(usize::MAX)
            .min(s.sent);
        let chunk = s.body[seen..s.sent].to_vec();
        let step = {
            let (sims, rng, metrics) = (&mut self.sims, &mut self.rng, &mut self.metrics);
            sims[i].flow.on_request_body(
                self.plugin,
                self.store,
                &chunk,
                eos,
                self.now,
                rng,
                metrics,
            )
        };
        self.apply(i, step)
    }

    /// The outstanding callout of request `i` comes back.
    fn callout_answer(&mut self, i: usize, fault: u64) -> Result<(), TestCaseError> {
        let rng = &mut self.rng;
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
        let body = vec![b'r'; rng.below(2000) as usize];
        if tracing() {
            println!("        callout answer for #{i}: fault {fault} status {status:?}");
        }
        let step = {
            let (sims, rng, metrics) = (&mut self.sims, &mut self.rng, &mut self.metrics);
            let flow = &mut sims[i].flow;
            match fault {
                0 => flow.on_dispatch_failed(self.plugin, self.store, self.now, rng, metrics),
                1 => flow.on_callout_response(
                    self.plugin,
                    self.store,
                    None,
                    Vec::new(),
                    self.now,
                    rng,
                    metrics,
                ),
                2 => flow.on_callout_response(
                    self.plugin,
                    self.store,
                    Some(Vec::new()),
                    body,
                    self.now,
                    rng,
                    metrics,
                ),
                _ => flow.on_callout_response(
                    self.plugin,
                    self.store,
                    Some(headers),
                    body,
                    self.now,
                    rng,
                    metrics,
                ),
            }
        };
        match step {
            Some(step) => self.apply(i, step),
            None => {
                // Ignored: something else must still wake the request.
                if let Some((at, purpose)) = self.sims[i].flow.take_timer() {
                    self.schedule(i, at, purpose)?;
                }
                prop_assert!(
                    self.has_timer(i),
                    "a callout answer was ignored and nothing will wake the request"
                );
                Ok(())
            }
        }
    }

    /// The router's upstream answers request `i` (headers, then the body in pieces).
    fn router_answer(&mut self, i: usize) -> Result<(), TestCaseError> {
        let rng = &mut self.rng;
        let status = [200u16, 201, 204, 404, 408, 429, 500, 502, 503, 504][rng.below(10) as usize];
        // Envoy's response flags: mostly none, sometimes upstream reset / connect failure / timeout.
        let flags = [0u64, 0, 0, 0x10, 0x20, 0x100, u64::MAX][rng.below(7) as usize];
        let body = vec![b'u'; rng.below(1500) as usize];
        let answer = UpstreamAnswer {
            status,
            flags,
            headers: vec![
                ("content-type".into(), "text/plain".into()),
                ("x-big".into(), "v".repeat(rng.below(3) as usize * 30_000)),
            ],
            end_of_stream: body.is_empty(),
        };
        let (wants, add) = {
            let s = &mut self.sims[i];
            let wants = s.flow.wants_response_headers();
            let answer = if wants {
                answer
            } else {
                UpstreamAnswer::default()
            };
            (
                wants,
                s.flow.on_response_headers(
                    self.plugin,
                    self.store,
                    answer,
                    self.now,
                    &mut self.metrics,
                ),
            )
        };
        let _ = (wants, add);
        let mut off = 0;
        while off < body.len() {
            let n = (1 + self.rng.below(body.len() as u64)) as usize;
            let end = (off + n).min(body.len());
            let s = &mut self.sims[i];
            if s.flow.wants_response_body() {
                s.flow.on_response_body(
                    self.plugin,
                    self.store,
                    &body[off..end],
                    end == body.len(),
                    self.now,
                    &mut self.metrics,
                );
            }
            off = end;
        }
        let stored_kind = flags == 0;
        self.trace(
            i,
            &format!(
                "upstream answered {status} flags {flags:#x}, body {}",
                body.len()
            ),
        );
        self.sims[i].phase = Phase::Answered;
        self.end_execution(i, Some(status), stored_kind);
        self.done(i);
        Ok(())
    }

    /// The stream ends: completed, reset, or the client went away.
    fn done(&mut self, i: usize) {
        if self.sims[i].phase == Phase::Done {
            return;
        }
        self.trace(i, "done");
        {
            let s = &mut self.sims[i];
            s.flow
                .on_done(self.plugin, self.store, self.now, &mut self.metrics);
            s.phase = Phase::Done;
            s.executing = false;
        }
        self.timers.retain(|t| t.2 != i);
    }

    /// Moves the clock to `to`, firing every timer due on the way at its own instant.
    fn advance(&mut self, to: u64) -> Result<(), TestCaseError> {
        while let Some(&first) = self.timers.iter().next() {
            if first.0 > to {
                break;
            }
            self.timers.remove(&first);
            let (at, _, i, code) = first;
            self.now = self.now.max(at);
            if self.sims[i].phase == Phase::Done {
                continue;
            }
            let step = {
                let (sims, rng, metrics) = (&mut self.sims, &mut self.rng, &mut self.metrics);
                sims[i].flow.on_timer(
                    self.plugin,
                    self.store,
                    purpose_of(code),
                    self.now,
                    rng,
                    metrics,
                )
            };
            match step {
                Some(step) => self.apply(i, step)?,
                None => {
                    if let Some((at, purpose)) = self.sims[i].flow.take_timer() {
                        self.schedule(i, at, purpose)?;
                    }
                }
            }
        }
        self.now = self.now.max(to);
        Ok(())
    }

    /// A request levee holds must have something that will wake it.
    fn check_not_hung(&self, i: usize) -> Result<(), TestCaseError> {
        let s = &self.sims[i];
        if s.phase != Phase::Held || !s.flow.holds_request() {
            return Ok(());
        }
        let body_to_come = s.sent < s.body.len() && s.flow.wants_body();
        if !body_to_come && !self.has_timer(i) && s.shaped && !SHAPED_BODY_FIXED {
            return Ok(()); // the known hang, see SHAPED_BODY_FIXED
        }
        prop_assert!(
            body_to_come || self.has_timer(i),
            "request {i} ({} {}) is held with nothing to wake it (body {}/{} sent, wants body: {})\n{:?}\nconfig: {}",
            s.req.method, s.req.path, s.sent, s.body.len(), s.flow.wants_body(), s.flow,
            config::to_effective_json(&self.plugin.config)
        );
        Ok(())
    }

    fn step(&mut self) -> Result<(), TestCaseError> {
        let open: Vec<usize> = (0..self.sims.len())
            .filter(|&i| self.sims[i].phase != Phase::Done)
            .collect();
        let roll = self.rng.below(100);
        if open.is_empty() || roll < 20 {
            return self.new_request();
        }
        let i = open[self.rng.below(open.len() as u64) as usize];
        match (roll, self.sims[i].phase) {
            (20..=29, _) => {
                let to = self.now + self.rng.below(800) * MS;
                self.advance(to)?;
            }
            (30..=37, _) => self.done(i), // the client hangs up, whatever the stage
            (38..=41, _) if self.faults => self.toggle_faults(),
            (_, Phase::Held) => self.send_body(i)?,
            (_, Phase::Calling) => {
                let fault = self.rng.below(10);
                self.callout_answer(i, fault)?;
            }
            (_, Phase::Forwarded) => {
                self.send_body(i)?;
                self.router_answer(i)?;
            }
            (_, Phase::Answered) => self.done(i),
            (_, Phase::Done) => {}
        }
        Ok(())
    }

    fn toggle_faults(&mut self) {
        match self.rng.below(5) {
            0 => self.store.fail_next_cas(self.rng.below(40) as u32),
            1 => self.store.conflict_probability(
                self.rng.next_u64(),
                [0, 300_000, 900_000][self.rng.below(3) as usize],
            ),
            2 => self.store.fail_reads(self.rng.below(2) == 0),
            3 => self.store.fail_writes(self.rng.below(2) == 0),
            _ => {
                self.store.fail_reads(false);
                self.store.fail_writes(false);
                self.store.conflict_probability(0, 0);
            }
        }
    }

    /// Stops the chaos and drives every open request to its end, as a patient client and a
    /// healthy upstream would.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        self.store.fail_next_cas(0);
        self.store.fail_reads(false);
        self.store.fail_writes(false);
        self.store.conflict_probability(0, 0);
        let deadline = self.now + 10 * MAX_WAIT_NS;
        loop {
            let open: Vec<usize> = (0..self.sims.len())
                .filter(|&i| self.sims[i].phase != Phase::Done)
                .collect();
            if open.is_empty() {
                return Ok(());
            }
            prop_assert!(
                self.now < deadline,
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
                    self.done(i);
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
                        self.done(i);
                        progressed = true;
                    }
                    _ => {}
                }
            }
            if !progressed {
                let next = self.timers.iter().next().map(|t| t.0);
                prop_assert!(next.is_some(), "open requests but nothing left to happen");
                if let Some(at) = next {
                    self.advance(at)?;
                }
            }
        }
    }
}

impl World<'_> {
    /// Long after the chaos, every idempotency key and every limit is usable again: a keyed
    /// POST per key reaches the upstream (no stuck lock, no stuck breaker, no stuck limit).
    fn follow_up(&mut self) -> Result<(), TestCaseError> {
        for k in 0..6 {
            self.advance(self.now + 10 * SEC)?;
            let key_header = self
                .plugin
                .idempotency
                .as_ref()
                .map_or("idempotency-key".to_string(), |l| {
                    l.config.header.to_ascii_lowercase()
                });
            let key = format!("k{k}");
            let req = FakeRequest::new("POST", "/svc/a")
                .source("10.0.0.1:1234")
                .header("x-user", "alice")
                .header(&key_header, &key);
            let i = self.sims.len();
            self.open(req, b"amount=10".to_vec(), Some(key.as_bytes()))?;
            self.drain()?;
            let s = &self.sims[i];
            prop_assert!(
                s.executed,
                "a follow-up POST with key {key} did not reach the upstream"
            );
        }
        Ok(())
    }
}

fn run_case(
    seed: u64,
    steps: u32,
    faults: bool,
    no_body_callbacks: bool,
) -> Result<(), TestCaseError> {
    let mut rng = SplitMix64::seeded(seed);
    let small = faults || rng.below(3) == 0;
    let doc = config_json(&mut rng, small);
    let store = MemoryStore::new();
    let plugin = plugin(&doc, &store)?;
    if tracing() {
        println!("config: {doc}");
    }
    let mut world = World {
        plugin: &plugin,
        store: &store,
        now: T0 + rng.below(SEC),
        rng,
        metrics: Recorder::default(),
        sims: Vec::new(),
        timers: BTreeSet::new(),
        timer_seq: 0,
        body_callbacks_work: false,
        no_body_callbacks,
        faults,
        stored_until: HashMap::new(),
    };
    for _ in 0..steps {
        world.step()?;
        for i in 0..world.sims.len() {
            if world.sims[i].phase == Phase::Held && world.sims[i].sent >= world.sims[i].body.len()
            {
                world.check_not_hung(i)?;
            }
        }
    }
    world.drain()?;
    if !no_body_callbacks {
        world.follow_up()?;
    }
    let _ = doc;
    Ok(())
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn the_pipeline_never_panics_hangs_or_misanswers_without_store_faults(seed in any::<u64>(), steps in 10u32..250) {
        run_case(seed, steps, false, false)?;
    }

    #[test]
    fn the_pipeline_never_panics_or_hangs_when_shared_data_fails(seed in any::<u64>(), steps in 10u32..250) {
        run_case(seed, steps, true, false)?;
    }

    #[test]
    fn without_body_callbacks_held_requests_end_with_500_never_hang(seed in any::<u64>(), steps in 10u32..120) {
        run_case(seed, steps, false, true)?;
    }
}

/// Replays one case with a trace of every step: `FUZZ_SEED=… FUZZ_STEPS=… [FUZZ_FAULTS=1]
/// FUZZ_TRACE=1 cargo test --lib replay_a_fuzz_case -- --ignored --nocapture`.
#[test]
#[ignore = "a debugging aid, run by hand"]
fn replay_a_fuzz_case() {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let steps = u32::try_from(var("FUZZ_STEPS").unwrap_or(100)).unwrap_or(100);
    let r = run_case(
        var("FUZZ_SEED").unwrap_or(0),
        steps,
        std::env::var_os("FUZZ_FAULTS").is_some(),
        false,
    );
    println!("{r:?}");
}

/// The fuzzer's first finding, kept as a plain regression test (see [`SHAPED_BODY_FIXED`]).
#[test]
fn a_body_that_arrives_while_the_shaper_holds_the_request_is_not_lost() {
    let doc = json!({
        "rate_limits": [{ "name": "shaper", "algorithm": "leaky_bucket", "limit": 2, "window": "1s", "burst": 1, "max_delay": "900ms" }],
        "idempotency": {},
    });
    let store = MemoryStore::new();
    let plugin = plugin(&doc, &store).expect("config");
    let mut rng = SplitMix64::seeded(1);
    let mut metrics = Recorder::default();
    let now = T0;
    let post = |key: &str| FakeRequest::new("POST", "/pay").header("idempotency-key", key);
    // The first request takes the bucket's only token.
    let mut first = RequestFlow::new(1);
    let step = first.on_request_headers(
        &plugin,
        &store,
        &post("a"),
        false,
        now,
        &mut rng,
        &mut metrics,
    );
    assert_eq!(step, Step::AwaitBody);
    let step = first.on_request_body(
        &plugin,
        &store,
        b"amount=1",
        true,
        now,
        &mut rng,
        &mut metrics,
    );
    assert_eq!(step, Step::Continue);
    // The second is shaped; its body arrives (all of it) while it waits.
    let mut second = RequestFlow::new(2);
    let step = second.on_request_headers(
        &plugin,
        &store,
        &post("b"),
        false,
        now,
        &mut rng,
        &mut metrics,
    );
    let Step::Hold {
        wake_at,
        purpose: TimerPurpose::Release,
    } = step
    else {
        panic!("expected the shaper to hold it, got {step:?}");
    };
    if second.wants_body() {
        let step = second.on_request_body(
            &plugin,
            &store,
            b"amount=2",
            true,
            now,
            &mut rng,
            &mut metrics,
        );
        assert!(second.holds_request(), "{step:?}");
    } // else Envoy buffers the body and never calls again
    let step = second.on_timer(
        &plugin,
        &store,
        TimerPurpose::Release,
        wake_at,
        &mut rng,
        &mut metrics,
    );
    assert_eq!(
        step,
        Some(Step::Continue),
        "released, the request must go on, not wait for a body it already sent"
    );
}
