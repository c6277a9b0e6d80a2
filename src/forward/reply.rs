//! What the client gets from a callout-mode forward: the upstream's answer as it is, or, when
//! every attempt failed and no fallback answers, the failure's reply — together with how the
//! request ended, which the idempotency record needs.

use crate::idempotency::request::AnswerCopy;
use crate::outcome::UpstreamResult;
use crate::problem::{problem, LocalReply, ProblemKind};

use super::headers::ATTEMPTS_HEADER;
use super::step::{FailureInfo, FinalAnswer};

/// Header values as text (invalid UTF-8 replaced).
pub fn lossy(headers: Vec<(String, Vec<u8>)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// The upstream's answer, for the client.
pub fn answer_reply(answer: FinalAnswer) -> LocalReply {
    LocalReply {
        status: answer.status,
        headers: lossy(answer.headers),
        body: answer.body,
        details: "levee_callout",
        grpc_status: None,
    }
}

/// A failed forward: the client's reply when no fallback answers, and how it ended.
#[derive(Debug)]
pub struct Failure {
    pub reply: LocalReply,
    pub result: UpstreamResult,
    /// The last attempt's answer, when the client gets it as it is.
    pub answer: Option<AnswerCopy>,
}

/// The reply to `info` for a request to upstream `upstream`.
pub fn failure(info: FailureInfo, upstream: &str) -> Failure {
    let result = match (info.attempts, info.last_outcome) {
        (0, _) | (_, None) => UpstreamResult::RejectedBeforeForwarding,
        (_, Some(outcome)) => UpstreamResult::of_attempt(
            outcome,
            info.last_answer.as_ref().map_or(0, |a| a.body.len() as u64),
        ),
    };
    if info.breaker_open {
        let mut reply = crate::breaker::open_reply(upstream, info.retry_after_ns.unwrap_or(1));
        reply
            .headers
            .push((ATTEMPTS_HEADER.into(), info.attempts.to_string()));
        return Failure {
            reply,
            result,
            answer: None,
        };
    }
    let status = info.status();
    let details = info.details();
    let attempts = info.attempts;
    if let Some(answer) = info.last_answer {
        let reply = answer_reply(answer);
        let copy = (reply.status, reply.headers.clone(), reply.body.clone());
        return Failure {
            reply,
            result,
            answer: Some(copy),
        };
    }
    let mut reply = problem(
        ProblemKind::UpstreamFailure,
        status,
        &format!("upstream \"{upstream}\" did not answer ({attempts} attempt(s))"),
        &[("upstream", upstream)],
    );
    reply.details = details;
    reply
        .headers
        .push((ATTEMPTS_HEADER.into(), attempts.to_string()));
    Failure {
        reply,
        result,
        answer: None,
    }
}
