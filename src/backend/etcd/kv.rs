//! etcd's key-value messages: the header every answer carries, a stored key, and the three
//! operations a transaction can run (range, put, delete range).
//!
//! Field numbers are those of etcd's `api/etcdserverpb/rpc.proto` and `api/mvccpb/kv.proto`
//! (unchanged since etcd 3.0; the newer fields used here since 3.1). Only the fields levee uses
//! are modelled; others are skipped when read.

use crate::backend::wire::{
    for_each_field, put_bool, put_bytes, put_i64, put_message, put_u64, DecodeError, Message,
};

/// `etcdserverpb.ResponseHeader`: which revision the answer reflects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    /// Field 1 of etcdserverpb.ResponseHeader (`uint64 cluster_id`).
    pub cluster_id: u64,
    /// Field 2 of etcdserverpb.ResponseHeader (`uint64 member_id`).
    pub member_id: u64,
    /// Field 3 of etcdserverpb.ResponseHeader (`int64 revision`): the store's revision when
    /// the request was applied.
    pub revision: i64,
    /// Field 4 of etcdserverpb.ResponseHeader (`uint64 raft_term`).
    pub raft_term: u64,
}

impl Message for ResponseHeader {
    const NAME: &'static str = "etcdserverpb.ResponseHeader";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_u64(buf, 1, self.cluster_id);
        put_u64(buf, 2, self.member_id);
        put_i64(buf, 3, self.revision);
        put_u64(buf, 4, self.raft_term);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.cluster_id = f.u64()?,
                2 => m.member_id = f.u64()?,
                3 => m.revision = f.i64()?,
                4 => m.raft_term = f.u64()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `mvccpb.KeyValue`: one stored key with its revisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// Field 1 of mvccpb.KeyValue (`bytes key`).
    pub key: Vec<u8>,
    /// Field 2 of mvccpb.KeyValue (`int64 create_revision`): the revision that created the key.
    pub create_revision: i64,
    /// Field 3 of mvccpb.KeyValue (`int64 mod_revision`): the revision of its last change.
    pub mod_revision: i64,
    /// Field 4 of mvccpb.KeyValue (`int64 version`): changes since creation.
    pub version: i64,
    /// Field 5 of mvccpb.KeyValue (`bytes value`).
    pub value: Vec<u8>,
    /// Field 6 of mvccpb.KeyValue (`int64 lease`): 0 for none.
    pub lease: i64,
}

impl Message for KeyValue {
    const NAME: &'static str = "mvccpb.KeyValue";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_bytes(buf, 1, &self.key);
        put_i64(buf, 2, self.create_revision);
        put_i64(buf, 3, self.mod_revision);
        put_i64(buf, 4, self.version);
        put_bytes(buf, 5, &self.value);
        put_i64(buf, 6, self.lease);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.key = f.bytes()?.to_vec(),
                2 => m.create_revision = f.i64()?,
                3 => m.mod_revision = f.i64()?,
                4 => m.version = f.i64()?,
                5 => m.value = f.bytes()?.to_vec(),
                6 => m.lease = f.i64()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `etcdserverpb.RangeRequest`: read one key (or a range).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// Field 1 of etcdserverpb.RangeRequest (`bytes key`).
    pub key: Vec<u8>,
    /// Field 2 of etcdserverpb.RangeRequest (`bytes range_end`): empty reads `key` alone.
    pub range_end: Vec<u8>,
    /// Field 3 of etcdserverpb.RangeRequest (`int64 limit`): 0 for no limit.
    pub limit: i64,
    /// Field 7 of etcdserverpb.RangeRequest (`bool serializable`): member-local read.
    pub serializable: bool,
    /// Field 8 of etcdserverpb.RangeRequest (`bool keys_only`).
    pub keys_only: bool,
    /// Field 9 of etcdserverpb.RangeRequest (`bool count_only`).
    pub count_only: bool,
}

impl Message for RangeRequest {
    const NAME: &'static str = "etcdserverpb.RangeRequest";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_bytes(buf, 1, &self.key);
        put_bytes(buf, 2, &self.range_end);
        put_i64(buf, 3, self.limit);
        put_bool(buf, 7, self.serializable);
        put_bool(buf, 8, self.keys_only);
        put_bool(buf, 9, self.count_only);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.key = f.bytes()?.to_vec(),
                2 => m.range_end = f.bytes()?.to_vec(),
                3 => m.limit = f.i64()?,
                7 => m.serializable = f.bool()?,
                8 => m.keys_only = f.bool()?,
                9 => m.count_only = f.bool()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `etcdserverpb.RangeResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// Field 1 of etcdserverpb.RangeResponse (`ResponseHeader header`).
    pub header: Option<ResponseHeader>,
    /// Field 2 of etcdserverpb.RangeResponse (`repeated mvccpb.KeyValue kvs`).
    pub kvs: Vec<KeyValue>,
    /// Field 3 of etcdserverpb.RangeResponse (`bool more`).
    pub more: bool,
    /// Field 4 of etcdserverpb.RangeResponse (`int64 count`).
    pub count: i64,
}

impl Message for RangeResponse {
    const NAME: &'static str = "etcdserverpb.RangeResponse";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        if let Some(h) = &self.header {
            put_message(buf, 1, h);
        }
        for kv in &self.kvs {
            put_message(buf, 2, kv);
        }
        put_bool(buf, 3, self.more);
        put_i64(buf, 4, self.count);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.header = Some(f.message()?),
                2 => m.kvs.push(f.message()?),
                3 => m.more = f.bool()?,
                4 => m.count = f.i64()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `etcdserverpb.PutRequest`: write one key, optionally attached to a lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// Field 1 of etcdserverpb.PutRequest (`bytes key`).
    pub key: Vec<u8>,
    /// Field 2 of etcdserverpb.PutRequest (`bytes value`).
    pub value: Vec<u8>,
    /// Field 3 of etcdserverpb.PutRequest (`int64 lease`): 0 for none.
    pub lease: i64,
    /// Field 4 of etcdserverpb.PutRequest (`bool prev_kv`).
    pub prev_kv: bool,
    /// Field 5 of etcdserverpb.PutRequest (`bool ignore_value`).
    pub ignore_value: bool,
    /// Field 6 of etcdserverpb.PutRequest (`bool ignore_lease`).
    pub ignore_lease: bool,
}

impl Message for PutRequest {
    const NAME: &'static str = "etcdserverpb.PutRequest";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_bytes(buf, 1, &self.key);
        put_bytes(buf, 2, &self.value);
        put_i64(buf, 3, self.lease);
        put_bool(buf, 4, self.prev_kv);
        put_bool(buf, 5, self.ignore_value);
        put_bool(buf, 6, self.ignore_lease);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.key = f.bytes()?.to_vec(),
                2 => m.value = f.bytes()?.to_vec(),
                3 => m.lease = f.i64()?,
                4 => m.prev_kv = f.bool()?,
                5 => m.ignore_value = f.bool()?,
                6 => m.ignore_lease = f.bool()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `etcdserverpb.PutResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// Field 1 of etcdserverpb.PutResponse (`ResponseHeader header`).
    pub header: Option<ResponseHeader>,
    /// Field 2 of etcdserverpb.PutResponse (`mvccpb.KeyValue prev_kv`).
    pub prev_kv: Option<KeyValue>,
}

impl Message for PutResponse {
    const NAME: &'static str = "etcdserverpb.PutResponse";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        if let Some(h) = &self.header {
            put_message(buf, 1, h);
        }
        if let Some(kv) = &self.prev_kv {
            put_message(buf, 2, kv);
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.header = Some(f.message()?),
                2 => m.prev_kv = Some(f.message()?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `etcdserverpb.DeleteRangeRequest`: delete one key (or a range).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// Field 1 of etcdserverpb.DeleteRangeRequest (`bytes key`).
    pub key: Vec<u8>,
    /// Field 2 of etcdserverpb.DeleteRangeRequest (`bytes range_end`).
    pub range_end: Vec<u8>,
    /// Field 3 of etcdserverpb.DeleteRangeRequest (`bool prev_kv`).
    pub prev_kv: bool,
}

impl Message for DeleteRangeRequest {
    const NAME: &'static str = "etcdserverpb.DeleteRangeRequest";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        put_bytes(buf, 1, &self.key);
        put_bytes(buf, 2, &self.range_end);
        put_bool(buf, 3, self.prev_kv);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.key = f.bytes()?.to_vec(),
                2 => m.range_end = f.bytes()?.to_vec(),
                3 => m.prev_kv = f.bool()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `etcdserverpb.DeleteRangeResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// Field 1 of etcdserverpb.DeleteRangeResponse (`ResponseHeader header`).
    pub header: Option<ResponseHeader>,
    /// Field 2 of etcdserverpb.DeleteRangeResponse (`int64 deleted`).
    pub deleted: i64,
    /// Field 3 of etcdserverpb.DeleteRangeResponse (`repeated mvccpb.KeyValue prev_kvs`).
    pub prev_kvs: Vec<KeyValue>,
}

impl Message for DeleteRangeResponse {
    const NAME: &'static str = "etcdserverpb.DeleteRangeResponse";

    fn encode_to(&self, buf: &mut Vec<u8>) {
        if let Some(h) = &self.header {
            put_message(buf, 1, h);
        }
        put_i64(buf, 2, self.deleted);
        for kv in &self.prev_kvs {
            put_message(buf, 3, kv);
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for_each_field(Self::NAME, bytes, |f| {
            match f.number {
                1 => m.header = Some(f.message()?),
                2 => m.deleted = f.i64()?,
                3 => m.prev_kvs.push(f.message()?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}
