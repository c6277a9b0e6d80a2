//! A request's passage through every configured limit, as one decision: refuse it (with the
//! `429` problem and its headers), hold it until the shaper lets it go, or let it on with the
//! rate-limit headers the answer will carry.
//!
//! The engine ([`super::engine`]) counts; this turns its verdict into what the request sees,
//! so the request sequencer only acts on the decision.

use crate::config::{LeveeConfig, Mode};
use crate::header_names::RETRY_AFTER;
use crate::metrics::Metrics;
use crate::problem::{problem, LocalReply, ProblemKind};
use crate::time::UnixNanos;

use super::engine::{Check, LimitRequest, RateLimiter, Verdict};
use super::headers::rate_limit_headers;

/// What the limits decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateAdmission {
    /// Over a limit: answer with this reply (the upstream never sees the request).
    Refuse(LocalReply),
    /// Admitted. `headers` go on the answer; `hold_until` is the shaper's release time, when
    /// the request must wait first.
    Pass {
        headers: Vec<(String, String)>,
        hold_until: Option<UnixNanos>,
    },
}

/// Runs every limit of `limiter` on `req` at `now`.
pub fn admit(
    limiter: &RateLimiter,
    config: &LeveeConfig,
    request: LimitRequest<'_>,
    metrics: &mut dyn Metrics,
) -> RateAdmission {
    let check = limiter.check(request, metrics);
    decide(limiter, config, &check, request.now)
}

/// What the request sees of the limits' `check`.
pub fn decide(
    limiter: &RateLimiter,
    config: &LeveeConfig,
    check: &Check,
    now: UnixNanos,
) -> RateAdmission {
    let style = config.rate_limit_headers;
    match check.verdict {
        Verdict::Reject { limit, .. } => {
            let Some(cfg) = limiter.limits.get(limit).map(|l| &l.config) else {
                return RateAdmission::Pass {
                    headers: Vec::new(),
                    hold_until: None,
                };
            };
            log::debug!("levee: rate limit \"{}\" rejected a request", cfg.name);
            let mut reply = problem(
                ProblemKind::RateLimited,
                cfg.status,
                &format!("rate limit \"{}\" exceeded", cfg.name),
                &[("limit", &cfg.name)],
            );
            match check
                .headline
                .as_ref()
                .and_then(|h| limiter.limits.get(h.limit).map(|l| (h, l)))
            {
                Some((h, headline)) => reply.headers.extend(rate_limit_headers(
                    style,
                    &cfg.name,
                    headline.params.window_ns,
                    &h.evaluation,
                    true,
                    now,
                )),
                None => reply.headers.push((RETRY_AFTER.into(), "1".into())),
            }
            RateAdmission::Refuse(reply)
        }
        Verdict::Admit | Verdict::Delay { .. } => {
            let headers = check
                .headline
                .as_ref()
                .and_then(|h| limiter.limits.get(h.limit).map(|l| (h, l)))
                .filter(|(_, limit)| limit.config.mode == Mode::Enforce)
                .map(|(h, limit)| {
                    rate_limit_headers(
                        style,
                        &limit.config.name,
                        limit.params.window_ns,
                        &h.evaluation,
                        false,
                        now,
                    )
                })
                .unwrap_or_default();
            let hold_until = match check.verdict {
                Verdict::Delay { until } if until > now => Some(until),
                _ => None,
            };
            RateAdmission::Pass {
                headers,
                hold_until,
            }
        }
    }
}
