//! etcd's lease grant: a lease collects the keys attached to it when it expires.
//!
//! levee does not time its records with leases (lifetimes are decided by times inside the
//! record); it attaches records to a lease shared per time bucket so that etcd deletes them
//! eventually. Field numbers are those of etcd's `api/etcdserverpb/rpc.proto`.

use super::kv::ResponseHeader;
use crate::backend::wire::{for_each_field, put_bytes, put_i64, put_message, DecodeError, Message};

/// `etcdserverpb.LeaseGrantRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseGrantRequest {
    /// Field 1 of etcdserverpb.LeaseGrantRequest (`int64 TTL`): seconds.
    pub ttl: i64,
    /// Field 2 of etcdserverpb.LeaseGrantRequest (`int64 ID`): 0 lets etcd choose.
    pub id: i64,
}

impl Message for LeaseGrantRequest {
    const NAME: &'static str = "etcdserverpb.LeaseGrantRequest";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_i64(buf, 1, self.ttl);
        put_i64(buf, 2, self.id);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.ttl = f.i64()?,
                2 => m.id = f.i64()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `etcdserverpb.LeaseGrantResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseGrantResponse {
    /// Field 1 of etcdserverpb.LeaseGrantResponse (`ResponseHeader header`).
    pub header: Option<ResponseHeader>,
    /// Field 2 of etcdserverpb.LeaseGrantResponse (`int64 ID`): the granted lease.
    pub id: i64,
    /// Field 3 of etcdserverpb.LeaseGrantResponse (`int64 TTL`): seconds, as granted.
    pub ttl: i64,
    /// Field 4 of etcdserverpb.LeaseGrantResponse (`string error`).
    pub error: String,
}

impl Message for LeaseGrantResponse {
    const NAME: &'static str = "etcdserverpb.LeaseGrantResponse";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        if let Some(h) = &self.header {
            put_message(buf, 1, h);
        }
        put_i64(buf, 2, self.id);
        put_i64(buf, 3, self.ttl);
        put_bytes(buf, 4, self.error.as_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.header = Some(f.message()?),
                2 => m.id = f.i64()?,
                3 => m.ttl = f.i64()?,
                4 => m.error = f.string()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}
