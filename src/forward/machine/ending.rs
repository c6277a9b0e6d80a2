//! How a forward ends: `Respond` with the final answer, or `Failed` for the fallback chain.

use crate::metrics::{Metrics, UpstreamEvent};
use crate::outcome::{is_failure, AttemptOutcome};
use crate::retry::policy::GiveUp;

use super::{CalloutForward, Phase};
use crate::forward::headers::client_headers;
use crate::forward::step::{CalloutAnswer, FailureInfo, FinalAnswer, ForwardStep};

impl CalloutForward {
    /// No more attempts: `Failed` if the last one failed (5xx, timeout, reset, connect
    /// failure), else `Respond` with its answer.
    pub(super) fn finish(
        &mut self,
        answer: CalloutAnswer,
        outcome: AttemptOutcome,
        gave_up: Option<GiveUp>,
        metrics: &mut dyn Metrics,
    ) -> ForwardStep {
        if matches!(
            gave_up,
            Some(GiveUp::MaxRetries | GiveUp::Deadline | GiveUp::RetryAfterBeyondDeadline)
        ) {
            self.count(metrics, UpstreamEvent::RetriesExhausted);
        }
        let client = match answer {
            CalloutAnswer::Reset => None,
            CalloutAnswer::Response {
                status,
                headers,
                body,
            } => Some(FinalAnswer {
                status,
                headers: client_headers(&headers, self.attempts),
                body,
                attempts: self.attempts,
            }),
        };
        match client {
            Some(answer) if !is_failure(&outcome) => {
                self.done(ForwardStep::Respond(answer), metrics)
            }
            last_answer => self.fail(gave_up, last_answer, metrics),
        }
    }

    pub(super) fn fail(
        &mut self,
        gave_up: Option<GiveUp>,
        last_answer: Option<FinalAnswer>,
        metrics: &mut dyn Metrics,
    ) -> ForwardStep {
        let info = FailureInfo {
            attempts: self.attempts,
            last_outcome: self.last_outcome,
            breaker_open: false,
            retry_after_ns: None,
            gave_up,
            last_answer,
        };
        self.done(ForwardStep::Failed(info), metrics)
    }

    pub(super) fn done(&mut self, step: ForwardStep, metrics: &mut dyn Metrics) -> ForwardStep {
        self.phase = Phase::Done;
        if self.attempts > 0 {
            metrics.attempts_per_request(self.index, self.attempts);
        }
        step
    }
}
