//! What the simulated worker checks on every reply and execution: documented statuses per
//! reason, stale copies only for their own request, one execution per idempotency key at a
//! time, and (after the chaos) every key and limit usable again.

use proptest::prelude::*;

use crate::metrics::{Event, GlobalEvent, IdempotencyEvent};
use crate::pipeline::Plugin;
use crate::request::fake::FakeRequest;
use crate::time::{NANOS_PER_MILLI as MS, NANOS_PER_SEC as SEC};

use super::world::{tracing, Origin, World};

impl World<'_> {
    pub(super) fn check_reply(
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
                // As documented: on a worker that has not seen a body callback yet, a client
                // that sends no body byte within the guard's wait is indistinguishable from
                // a missing `allow_on_headers_stop_iteration`.
                let slow_client = self.sims[i].sent == 0;
                prop_assert!(
                    self.no_body_callbacks || slow_client,
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
            "levee_fallback_queued" => status == 202,
            "levee_fallback_secondary" | "levee_fallback_stale_cache" => {
                (100..=999).contains(&status)
            }
            other => {
                prop_assert!(false, "a reply with unknown details {other:?}");
                false
            }
        };
        prop_assert!(allowed, "{details} answered {status}");
        Ok(())
    }

    /// A stale copy answers only the request it was stored for: same method and path, and
    /// the same `x-user` when the answer varied on it.
    pub(super) fn check_stale_copy(&self, i: usize, body: &[u8]) -> Result<(), TestCaseError> {
        let text = String::from_utf8_lossy(body);
        let id = text
            .strip_prefix("resp-")
            .and_then(|t| t.split(';').next())
            .and_then(|n| n.parse::<usize>().ok());
        let origin = id.and_then(|id| self.answers.get(id));
        prop_assert!(
            origin.is_some(),
            "a stale copy that no upstream answered: {text:.40}"
        );
        if tracing() {
            println!(
                "        stale copy {id:?} from {origin:?}; answering {:?}",
                self.sims[i].req
            );
        }
        if let Some(o) = origin {
            use crate::request::RequestAttributes;
            let req = &self.sims[i].req;
            prop_assert_eq!(&o.method, &req.method, "a stale copy for another method");
            prop_assert_eq!(&o.path, &req.path, "a stale copy for another path");
            if o.vary_user {
                prop_assert_eq!(
                    o.user.as_deref(),
                    req.header("x-user"),
                    "a stale copy for another x-user (Vary)"
                );
            }
        }
        Ok(())
    }

    /// An upstream answer's body of `len` bytes, tagged with a new id for request `i`.
    pub(super) fn answer_body(
        &mut self,
        i: usize,
        headers: &[(String, String)],
        len: usize,
    ) -> Vec<u8> {
        use crate::request::RequestAttributes;
        let req = &self.sims[i].req;
        let vary_user = headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("vary") && v.to_ascii_lowercase().contains("x-user")
        });
        self.answers.push(Origin {
            method: req.method.clone(),
            path: req.path.clone(),
            user: req.header("x-user").map(<[u8]>::to_vec),
            vary_user,
        });
        let mut body = format!("resp-{};", self.answers.len() - 1).into_bytes();
        body.resize(body.len().max(len), b'.');
        body
    }

    pub(super) fn start_execution(&mut self, i: usize) -> Result<(), TestCaseError> {
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
            .host
            .metrics
            .count_of(Event::Global(GlobalEvent::InternalError))
            > 0;
        if !self.faults && !internal {
            let twice = self
                .sims
                .iter()
                .any(|s| s.executing && s.key.as_ref() == Some(&key));
            prop_assert!(!twice, "two executions of key {:?} at once", key.1);
            // A full bucket evicts its oldest completed record (documented; never an
            // in-flight one, which the check above proves): that key may then execute again.
            let evicted = self
                .host
                .metrics
                .count_of(Event::Idempotency(IdempotencyEvent::Evicted))
                > 0;
            if let Some(&until) = self.stored_until.get(&key).filter(|_| !evicted) {
                prop_assert!(
                    self.host.now >= until,
                    "key {:?} executed again while its answer is stored",
                    key.1
                );
            }
        }
        self.sims[i].executing = true;
        Ok(())
    }

    /// The execution ended; remember a stored answer (`status`, when the client got it).
    pub(super) fn end_execution(&mut self, i: usize, status: Option<u16>, stored_kind: bool) {
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
            self.stored_until.insert(key, self.host.now + ttl - MS);
        }
    }

    /// The header the configuration reads idempotency keys from.
    pub(super) fn key_header(plugin: &Plugin) -> String {
        plugin
            .idempotency
            .as_ref()
            .map_or("idempotency-key".to_string(), |l| {
                l.config.header.to_ascii_lowercase()
            })
    }

    /// Long after the chaos, every idempotency key and every limit is usable again: a keyed
    /// POST per key reaches the upstream (no stuck lock, no stuck breaker, no stuck limit).
    pub(super) fn follow_up(&mut self) -> Result<(), TestCaseError> {
        for k in 0..6 {
            self.advance(self.host.now + 10 * SEC)?;
            let key_header = Self::key_header(self.plugin);
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
