//! Leases shared per time bucket, for garbage collection only.
//!
//! A record is attached to the lease of the bucket that ends at least [`BUCKET_SECS`] after
//! the record comes to rest (`locked_until` or `expires_at`), so etcd deletes it some time
//! after it stopped mattering and never before. A lease's ID is derived from its bucket's end
//! (Unix seconds), so every Envoy of the mesh attaches its records to the *same* lease: the
//! first to need a bucket grants it, the others get "lease already exists", which is as good.
//! Each worker remembers the buckets it has seen granted, so a bucket costs one `LeaseGrant`
//! per worker; the number of live leases is `ttl / BUCKET_SECS` whatever the traffic.

use std::collections::BTreeSet;

use crate::backend::etcd::LeaseGrantRequest;
use crate::time::{UnixNanos, NANOS_PER_SEC};

/// Width of a lease bucket, in seconds.
pub const BUCKET_SECS: u64 = 60;
/// High bits of every lease ID levee grants ("LV"), apart from IDs etcd picks itself.
const ID_TAG: i64 = 0x4C56 << 48;
/// gRPC status etcd answers a grant of an existing lease with (`FAILED_PRECONDITION`).
pub const LEASE_EXISTS_CODE: u32 = 9;

/// The bucket end (Unix seconds) for a record at rest at `at_rest_at`.
pub fn bucket_end(at_rest_at: UnixNanos) -> u64 {
    let secs = at_rest_at.div_ceil(NANOS_PER_SEC);
    (secs / BUCKET_SECS + 2) * BUCKET_SECS
}

/// The lease ID of the bucket ending at `end` (Unix seconds).
pub fn lease_id(end: u64) -> i64 {
    ID_TAG | (end as i64 & 0xFFFF_FFFF_FFFF)
}

/// The buckets one worker knows to be granted.
#[derive(Debug, Default)]
pub struct LeaseCache {
    granted: BTreeSet<u64>,
}

/// What a write needs first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseFor {
    /// Attach the record to this lease.
    Ready(i64),
    /// Grant the bucket's lease first (then [`LeaseCache::granted`] with `end`).
    Grant {
        end: u64,
        request: LeaseGrantRequest,
    },
}

impl LeaseCache {
    /// The lease for a record at rest at `at_rest_at`, or the grant to send first.
    pub fn lease_for(&mut self, at_rest_at: UnixNanos, now: UnixNanos) -> LeaseFor {
        let end = bucket_end(at_rest_at);
        let now_secs = now / NANOS_PER_SEC;
        self.granted.retain(|&e| e > now_secs);
        if self.granted.contains(&end) {
            return LeaseFor::Ready(lease_id(end));
        }
        let ttl = end.saturating_sub(now_secs).max(BUCKET_SECS);
        LeaseFor::Grant {
            end,
            request: LeaseGrantRequest {
                ttl: i64::try_from(ttl).unwrap_or(i64::MAX),
                id: lease_id(end),
            },
        }
    }

    /// The bucket ending at `end` is granted (by this worker or another Envoy).
    pub fn granted(&mut self, end: u64) {
        self.granted.insert(end);
    }

    /// etcd said a lease this worker thought granted is not there: grant it again.
    pub fn forget(&mut self, end: u64) {
        self.granted.remove(&end);
    }

    pub fn len(&self) -> usize {
        self.granted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.granted.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS_PER_SEC;

    #[test]
    fn a_bucket_outlives_every_record_attached_to_it() {
        for at_rest in [0, 1, 59 * S, 60 * S, 61 * S + 1, 86_400 * S + 7] {
            let end = bucket_end(at_rest);
            assert!(end * S >= at_rest + BUCKET_SECS * S, "{at_rest}");
            assert!(end * S <= at_rest + 3 * BUCKET_SECS * S, "{at_rest}");
        }
    }

    #[test]
    fn one_grant_per_bucket_then_the_cached_lease() {
        let mut cache = LeaseCache::default();
        let now = 1_000 * S;
        let LeaseFor::Grant { end, request } = cache.lease_for(now + 30 * S, now) else {
            panic!("first use grants")
        };
        assert_eq!(request.id, lease_id(end));
        assert!(request.ttl as u64 * S + now >= now + 30 * S + BUCKET_SECS * S);
        cache.granted(end);
        assert_eq!(
            cache.lease_for(now + 31 * S, now),
            LeaseFor::Ready(lease_id(end))
        );
        // Past its end the bucket is forgotten.
        assert!(matches!(
            cache.lease_for(end * S + 10 * S, end * S + S),
            LeaseFor::Grant { .. }
        ));
        assert!(cache.is_empty());
    }

    #[test]
    fn lease_ids_are_positive_and_distinct_per_bucket() {
        let a = lease_id(bucket_end(1_800_000_000 * S));
        let b = lease_id(bucket_end(1_800_000_060 * S));
        assert!(a > 0 && b > 0 && a != b);
    }
}
