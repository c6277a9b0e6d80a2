//! What a rate limit service's answer means for one of levee's descriptors.
//!
//! A usable answer names a verdict and the numbers for the rate-limit headers: from the
//! descriptor's status (`current_limit`, `limit_remaining`, `duration_until_reset`), or, from a
//! service that sends no statuses (Limitador), from its draft-03 `X-RateLimit-Limit`,
//! `-Remaining` and `-Reset` response headers with the overall code. An `UNKNOWN` code, a
//! status without `current_limit` (envoyproxy/ratelimit's answer for a domain it does not know)
//! or an answer with neither statuses nor headers is a misconfiguration of the service, which
//! the caller treats as a backend error.

use super::response::{Code, DescriptorStatus, RateLimitResponse};
use crate::header_names::{X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET};

/// The service's verdict on one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Under the limit.
    pub allowed: bool,
    /// Requests per window, as the service applies it.
    pub limit: u32,
    /// What is left in the window.
    pub remaining: u32,
    /// Milliseconds until the window resets.
    pub reset_ms: u64,
}

/// Why an answer cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misconfigured {
    /// The overall or the descriptor's code is `UNKNOWN`.
    UnknownCode,
    /// The descriptor's status names no `current_limit` (e.g. an unknown domain).
    NoCurrentLimit,
    /// No status for the descriptor and no draft-03 headers to read instead.
    NoStatus,
}

/// The verdict on the descriptor at `index` of the request.
pub fn verdict(answer: &RateLimitResponse, index: usize) -> Result<Verdict, Misconfigured> {
    if answer.overall_code == Code::Unknown {
        return Err(Misconfigured::UnknownCode);
    }
    match answer.statuses.get(index) {
        Some(status) => from_status(status),
        None if answer.statuses.is_empty() => from_headers(answer),
        None => Err(Misconfigured::NoStatus),
    }
}

fn from_status(s: &DescriptorStatus) -> Result<Verdict, Misconfigured> {
    let allowed = match s.code {
        Code::Ok => true,
        Code::OverLimit => false,
        Code::Unknown => return Err(Misconfigured::UnknownCode),
    };
    let limit = s
        .current_limit
        .as_ref()
        .ok_or(Misconfigured::NoCurrentLimit)?;
    Ok(Verdict {
        allowed,
        limit: limit.requests_per_unit,
        remaining: s.limit_remaining,
        reset_ms: s.duration_until_reset.map_or(0, |d| d.as_millis()),
    })
}

fn from_headers(answer: &RateLimitResponse) -> Result<Verdict, Misconfigured> {
    let header = |name: &str| {
        answer
            .response_headers_to_add
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    };
    // `X-RateLimit-Limit: 10, 10;w=60`: the first number is the limit that applies.
    let leading_number = |v: &str| -> Option<u64> {
        let digits: String = v
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let limit = header(X_RATELIMIT_LIMIT)
        .and_then(leading_number)
        .ok_or(Misconfigured::NoStatus)?;
    let remaining = header(X_RATELIMIT_REMAINING)
        .and_then(leading_number)
        .unwrap_or(0);
    let reset_secs = header(X_RATELIMIT_RESET)
        .and_then(leading_number)
        .unwrap_or(0);
    Ok(Verdict {
        allowed: answer.overall_code == Code::Ok,
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset_ms: reset_secs.saturating_mul(1000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::rls::{CurrentLimit, HeaderValue, ProtoDuration, Unit};

    fn status(code: Code, limit: Option<u32>) -> DescriptorStatus {
        DescriptorStatus {
            code,
            current_limit: limit.map(|n| CurrentLimit {
                requests_per_unit: n,
                unit: Unit::Minute,
                name: String::new(),
            }),
            limit_remaining: 4,
            duration_until_reset: Some(ProtoDuration {
                seconds: 2,
                nanos: 500_000_000,
            }),
            quota: None,
        }
    }

    fn answer(
        overall: Code,
        statuses: Vec<DescriptorStatus>,
        headers: &[(&str, &str)],
    ) -> RateLimitResponse {
        RateLimitResponse {
            overall_code: overall,
            statuses,
            response_headers_to_add: headers
                .iter()
                .map(|(k, v)| HeaderValue {
                    key: k.to_string(),
                    value: v.to_string(),
                    raw_value: Vec::new(),
                })
                .collect(),
            ..RateLimitResponse::default()
        }
    }

    #[test]
    fn a_status_gives_the_verdict_and_the_header_numbers() {
        let a = answer(
            Code::OverLimit,
            vec![status(Code::Ok, Some(10)), status(Code::OverLimit, Some(5))],
            &[],
        );
        assert_eq!(
            verdict(&a, 0),
            Ok(Verdict {
                allowed: true,
                limit: 10,
                remaining: 4,
                reset_ms: 2500
            })
        );
        assert!(!verdict(&a, 1).unwrap().allowed);
    }

    #[test]
    fn a_service_without_statuses_is_read_from_its_draft_03_headers() {
        let h = [
            ("X-RateLimit-Limit", "10, 10;w=60"),
            ("x-ratelimit-remaining", "0"),
            ("X-RateLimit-Reset", "7"),
        ];
        let a = answer(Code::OverLimit, vec![], &h);
        assert_eq!(
            verdict(&a, 0),
            Ok(Verdict {
                allowed: false,
                limit: 10,
                remaining: 0,
                reset_ms: 7000
            })
        );
    }

    #[test]
    fn unknown_codes_missing_limits_and_silent_answers_are_misconfigurations() {
        assert_eq!(
            verdict(&answer(Code::Unknown, vec![], &[]), 0),
            Err(Misconfigured::UnknownCode)
        );
        let no_limit = answer(Code::Ok, vec![status(Code::Ok, None)], &[]);
        assert_eq!(verdict(&no_limit, 0), Err(Misconfigured::NoCurrentLimit));
        assert_eq!(
            verdict(&answer(Code::Ok, vec![], &[]), 0),
            Err(Misconfigured::NoStatus)
        );
        let short = answer(Code::Ok, vec![status(Code::Ok, Some(1))], &[]);
        assert_eq!(verdict(&short, 1), Err(Misconfigured::NoStatus));
        let unknown_status = answer(Code::Ok, vec![status(Code::Unknown, Some(1))], &[]);
        assert_eq!(verdict(&unknown_status, 0), Err(Misconfigured::UnknownCode));
    }
}
