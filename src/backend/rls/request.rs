//! The request half of the Envoy rate limit service protocol: a domain and descriptors.
//!
//! levee sends one descriptor per limit with entries `("levee_limit", name)` and
//! `("key", value)`, its own `limit` override (so the service needs only the domain in its
//! config) and the request's cost. Field numbers are those of Envoy's
//! `api/envoy/service/ratelimit/v3/rls.proto` and
//! `api/envoy/extensions/common/ratelimit/v3/ratelimit.proto`.

use crate::backend::wire::{
    for_each_field, put_bytes, put_bytes_always, put_i32, put_message, put_u64, DecodeError,
    Message,
};

/// A rate limit's time unit: `envoy.type.v3.RateLimitUnit` in an override and
/// `RateLimitResponse.RateLimit.Unit` in an answer (same numbers; only answers know `WEEK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `UNKNOWN = 0` (also what an unknown number reads as).
    Unknown = 0,
    /// `SECOND = 1`.
    Second = 1,
    /// `MINUTE = 2`.
    Minute = 2,
    /// `HOUR = 3`.
    Hour = 3,
    /// `DAY = 4`.
    Day = 4,
    /// `MONTH = 5`.
    Month = 5,
    /// `YEAR = 6`.
    Year = 6,
    /// `WEEK = 7` (answers only).
    Week = 7,
}

impl Unit {
    /// The unit for a protobuf number; unknown numbers read as [`Unit::Unknown`].
    pub fn from_i32(v: i32) -> Unit {
        match v {
            1 => Unit::Second,
            2 => Unit::Minute,
            3 => Unit::Hour,
            4 => Unit::Day,
            5 => Unit::Month,
            6 => Unit::Year,
            7 => Unit::Week,
            _ => Unit::Unknown,
        }
    }

    /// The unit's length in seconds, for the fixed units (`None` for unknown, month and year).
    pub fn seconds(self) -> Option<u64> {
        match self {
            Unit::Second => Some(1),
            Unit::Minute => Some(60),
            Unit::Hour => Some(3600),
            Unit::Day => Some(86_400),
            Unit::Week => Some(604_800),
            Unit::Unknown | Unit::Month | Unit::Year => None,
        }
    }
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// Field 1 of envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry (`string key`).
    pub key: String,
    /// Field 2 of envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry (`string value`).
    pub value: String,
}

impl Message for Entry {
    const NAME: &'static str = "envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_bytes(buf, 1, self.key.as_bytes());
        put_bytes(buf, 2, self.value.as_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.key = f.string()?,
                2 => m.value = f.string()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.RateLimitOverride`: the limit the
/// service applies instead of its configured one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitOverride {
    /// Field 1 of envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.RateLimitOverride
    /// (`uint32 requests_per_unit`).
    pub requests_per_unit: u32,
    /// Field 2 of envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.RateLimitOverride
    /// (`envoy.type.v3.RateLimitUnit unit`).
    pub unit: Unit,
}

impl Message for LimitOverride {
    const NAME: &'static str =
        "envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.RateLimitOverride";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_u64(buf, 1, u64::from(self.requests_per_unit));
        put_i32(buf, 2, self.unit as i32);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = LimitOverride {
            requests_per_unit: 0,
            unit: Unit::Unknown,
        };
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.requests_per_unit = f.u32()?,
                2 => m.unit = Unit::from_i32(f.i32()?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`: one thing to count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// Field 1 of envoy.extensions.common.ratelimit.v3.RateLimitDescriptor (`repeated Entry entries`).
    pub entries: Vec<Entry>,
    /// Field 2 of envoy.extensions.common.ratelimit.v3.RateLimitDescriptor
    /// (`RateLimitOverride limit`).
    pub limit: Option<LimitOverride>,
    /// Field 3 of envoy.extensions.common.ratelimit.v3.RateLimitDescriptor
    /// (`google.protobuf.UInt64Value hits_addend`, Envoy ≥ 1.33): this descriptor's cost,
    /// overriding the request's.
    pub hits_addend: Option<u64>,
}

impl Message for Descriptor {
    const NAME: &'static str = "envoy.extensions.common.ratelimit.v3.RateLimitDescriptor";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        for e in &self.entries {
            put_message(buf, 1, e);
        }
        if let Some(l) = &self.limit {
            put_message(buf, 2, l);
        }
        if let Some(h) = self.hits_addend {
            // google.protobuf.UInt64Value: field 1 `uint64 value`.
            let mut wrapper = Vec::new();
            put_u64(&mut wrapper, 1, h);
            put_bytes_always(buf, 3, &wrapper);
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.entries.push(f.message()?),
                2 => m.limit = Some(f.message()?),
                3 => {
                    let mut value = 0;
                    for_each_field("google.protobuf.UInt64Value", f.bytes()?, |w| {
                        if w.number == 1 {
                            value = w.u64()?;
                        }
                        Ok(())
                    })?;
                    m.hits_addend = Some(value);
                }
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `envoy.service.ratelimit.v3.RateLimitRequest`: the argument of `ShouldRateLimit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitRequest {
    /// Field 1 of envoy.service.ratelimit.v3.RateLimitRequest (`string domain`).
    pub domain: String,
    /// Field 2 of envoy.service.ratelimit.v3.RateLimitRequest (`repeated RateLimitDescriptor descriptors`).
    pub descriptors: Vec<Descriptor>,
    /// Field 3 of envoy.service.ratelimit.v3.RateLimitRequest (`uint32 hits_addend`): 0 means 1.
    pub hits_addend: u32,
}

impl Message for RateLimitRequest {
    const NAME: &'static str = "envoy.service.ratelimit.v3.RateLimitRequest";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_bytes(buf, 1, self.domain.as_bytes());
        for d in &self.descriptors {
            put_message(buf, 2, d);
        }
        put_u64(buf, 3, u64::from(self.hits_addend));
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.domain = f.string()?,
                2 => m.descriptors.push(f.message()?),
                3 => m.hits_addend = f.u32()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}
