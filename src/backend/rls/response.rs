//! The answer half of the Envoy rate limit service protocol: a verdict per descriptor and
//! the headers the service wants on the response.
//!
//! What levee reads from it: `overall_code`; per descriptor the `current_limit`,
//! `limit_remaining` and `duration_until_reset` (the rate-limit headers); and, from services
//! that send no statuses, their draft-03 `X-RateLimit-*` `response_headers_to_add`. Field
//! numbers are those of Envoy's `api/envoy/service/ratelimit/v3/rls.proto` and
//! `api/envoy/config/core/v3/base.proto`. `dynamic_metadata` (field 6) is skipped.

use super::request::Unit;
use crate::backend::wire::{
    for_each_field, put_bytes, put_i32, put_i64, put_message, put_u64, DecodeError, Message,
};

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `UNKNOWN = 0` (also what an unknown number reads as): the service could not decide.
    Unknown = 0,
    /// `OK = 1`: under the limit.
    Ok = 1,
    /// `OVER_LIMIT = 2`.
    OverLimit = 2,
}

impl Code {
    fn from_i32(v: i32) -> Code {
        match v {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        }
    }
}

/// `google.protobuf.Duration` (and `Timestamp`, same fields) as sent: seconds and nanos.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtoDuration {
    /// Field 1 of google.protobuf.Duration (`int64 seconds`).
    pub seconds: i64,
    /// Field 2 of google.protobuf.Duration (`int32 nanos`).
    pub nanos: i32,
}

impl ProtoDuration {
    /// As milliseconds, negative values clamped to zero.
    pub fn as_millis(self) -> u64 {
        let secs = u64::try_from(self.seconds).unwrap_or(0);
        let nanos = u64::try_from(self.nanos).unwrap_or(0);
        secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
    }
}

impl Message for ProtoDuration {
    const NAME: &'static str = "google.protobuf.Duration";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_i64(buf, 1, self.seconds);
        put_i32(buf, 2, self.nanos);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.seconds = f.i64()?,
                2 => m.nanos = f.i32()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `RateLimitResponse.RateLimit`: the limit the service applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentLimit {
    /// Field 1 of envoy.service.ratelimit.v3.RateLimitResponse.RateLimit (`uint32 requests_per_unit`).
    pub requests_per_unit: u32,
    /// Field 2 of envoy.service.ratelimit.v3.RateLimitResponse.RateLimit (`Unit unit`).
    pub unit: Unit,
    /// Field 3 of envoy.service.ratelimit.v3.RateLimitResponse.RateLimit (`string name`).
    pub name: String,
}

impl Message for CurrentLimit {
    const NAME: &'static str = "envoy.service.ratelimit.v3.RateLimitResponse.RateLimit";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_u64(buf, 1, u64::from(self.requests_per_unit));
        put_i32(buf, 2, self.unit as i32);
        put_bytes(buf, 3, self.name.as_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = CurrentLimit {
            requests_per_unit: 0,
            unit: Unit::Unknown,
            name: String::new(),
        };
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.requests_per_unit = f.u32()?,
                2 => m.unit = Unit::from_i32(f.i32()?),
                3 => m.name = f.string()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `RateLimitResponse.Quota`: a cacheable grant (not implemented by Envoy; read for completeness).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quota {
    /// Field 1 of envoy.service.ratelimit.v3.RateLimitResponse.Quota (`uint32 requests`).
    pub requests: u32,
    /// Field 2 of envoy.service.ratelimit.v3.RateLimitResponse.Quota
    /// (`google.protobuf.Timestamp valid_until`).
    pub valid_until: Option<ProtoDuration>,
    /// Field 3 of envoy.service.ratelimit.v3.RateLimitResponse.Quota (`string id`).
    pub id: String,
}

impl Message for Quota {
    const NAME: &'static str = "envoy.service.ratelimit.v3.RateLimitResponse.Quota";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_u64(buf, 1, u64::from(self.requests));
        if let Some(t) = &self.valid_until {
            put_message(buf, 2, t);
        }
        put_bytes(buf, 3, self.id.as_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.requests = f.u32()?,
                2 => m.valid_until = Some(f.message()?),
                3 => m.id = f.string()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `RateLimitResponse.DescriptorStatus`: the verdict on one descriptor, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorStatus {
    /// Field 1 of envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus (`Code code`).
    pub code: Code,
    /// Field 2 of envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus (`RateLimit current_limit`).
    pub current_limit: Option<CurrentLimit>,
    /// Field 3 of envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus (`uint32 limit_remaining`).
    pub limit_remaining: u32,
    /// Field 4 of envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus
    /// (`google.protobuf.Duration duration_until_reset`).
    pub duration_until_reset: Option<ProtoDuration>,
    /// Field 5 of envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus (`Quota quota`).
    pub quota: Option<Quota>,
}

impl Message for DescriptorStatus {
    const NAME: &'static str = "envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_i32(buf, 1, self.code as i32);
        if let Some(l) = &self.current_limit {
            put_message(buf, 2, l);
        }
        put_u64(buf, 3, u64::from(self.limit_remaining));
        if let Some(d) = &self.duration_until_reset {
            put_message(buf, 4, d);
        }
        if let Some(q) = &self.quota {
            put_message(buf, 5, q);
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = DescriptorStatus {
            code: Code::Unknown,
            current_limit: None,
            limit_remaining: 0,
            duration_until_reset: None,
            quota: None,
        };
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.code = Code::from_i32(f.i32()?),
                2 => m.current_limit = Some(f.message()?),
                3 => m.limit_remaining = f.u32()?,
                4 => m.duration_until_reset = Some(f.message()?),
                5 => m.quota = Some(f.message()?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `envoy.config.core.v3.HeaderValue`: a header the service asks to add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderValue {
    /// Field 1 of envoy.config.core.v3.HeaderValue (`string key`).
    pub key: String,
    /// Field 2 of envoy.config.core.v3.HeaderValue (`string value`).
    pub value: String,
    /// Field 3 of envoy.config.core.v3.HeaderValue (`bytes raw_value`): used when `value` is empty.
    pub raw_value: Vec<u8>,
}

impl Message for HeaderValue {
    const NAME: &'static str = "envoy.config.core.v3.HeaderValue";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_bytes(buf, 1, self.key.as_bytes());
        put_bytes(buf, 2, self.value.as_bytes());
        put_bytes(buf, 3, &self.raw_value);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.key = f.string()?,
                2 => m.value = f.string()?,
                3 => m.raw_value = f.bytes()?.to_vec(),
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `envoy.service.ratelimit.v3.RateLimitResponse`: the answer of `ShouldRateLimit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitResponse {
    /// Field 1 of envoy.service.ratelimit.v3.RateLimitResponse (`Code overall_code`).
    pub overall_code: Code,
    /// Field 2 of envoy.service.ratelimit.v3.RateLimitResponse (`repeated DescriptorStatus statuses`).
    pub statuses: Vec<DescriptorStatus>,
    /// Field 3 of envoy.service.ratelimit.v3.RateLimitResponse
    /// (`repeated config.core.v3.HeaderValue response_headers_to_add`).
    pub response_headers_to_add: Vec<HeaderValue>,
    /// Field 4 of envoy.service.ratelimit.v3.RateLimitResponse
    /// (`repeated config.core.v3.HeaderValue request_headers_to_add`).
    pub request_headers_to_add: Vec<HeaderValue>,
    /// Field 5 of envoy.service.ratelimit.v3.RateLimitResponse (`bytes raw_body`).
    pub raw_body: Vec<u8>,
    /// Field 7 of envoy.service.ratelimit.v3.RateLimitResponse (`Quota quota`).
    pub quota: Option<Quota>,
}

impl Default for RateLimitResponse {
    fn default() -> Self {
        RateLimitResponse {
            overall_code: Code::Unknown,
            statuses: Vec::new(),
            response_headers_to_add: Vec::new(),
            request_headers_to_add: Vec::new(),
            raw_body: Vec::new(),
            quota: None,
        }
    }
}

impl Message for RateLimitResponse {
    const NAME: &'static str = "envoy.service.ratelimit.v3.RateLimitResponse";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_i32(buf, 1, self.overall_code as i32);
        for s in &self.statuses {
            put_message(buf, 2, s);
        }
        for h in &self.response_headers_to_add {
            put_message(buf, 3, h);
        }
        for h in &self.request_headers_to_add {
            put_message(buf, 4, h);
        }
        put_bytes(buf, 5, &self.raw_body);
        if let Some(q) = &self.quota {
            put_message(buf, 7, q);
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.overall_code = Code::from_i32(f.i32()?),
                2 => m.statuses.push(f.message()?),
                3 => m.response_headers_to_add.push(f.message()?),
                4 => m.request_headers_to_add.push(f.message()?),
                5 => m.raw_body = f.bytes()?.to_vec(),
                7 => m.quota = Some(f.message()?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}
