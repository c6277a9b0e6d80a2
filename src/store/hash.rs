//! Keyed hashing of client keys, so that a client cannot aim many keys at one slot.
//!
//! Slot tables place a client key (an IP, an API key, an idempotency key) by its hash. With
//! an unkeyed hash an attacker could precompute thousands of keys that land in one bucket and
//! evict everybody else's rate-limit state, or fill the buckets an idempotency key needs.
//! SipHash-1-3 with a secret key makes placement unpredictable from outside. The secret is a
//! process-wide singleton in shared data ([`HASH_SECRET_KEY`]): every worker VM must place a
//! key in the same slot, and a config reload must keep it, or all state would be orphaned.
//! [`KeyHasher::load_or_create`] does that at configure time via [`super::cas::get_or_create`].
//!
//! The 128-bit result is split in two independent halves: `slot_seed` picks the bucket and
//! `fingerprint` tells keys in one bucket apart (64 bits: accidental collisions are
//! negligible, deliberate ones need the secret). [`jump_bucket`] maps the seed to a bucket
//! with Lamping & Veach's jump consistent hash, so resizing a table moves few keys.

use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};

use super::cas::{get_or_create, UpdateError};
use super::SharedStore;

/// Shared-data key of the 16-byte hashing secret.
pub const HASH_SECRET_KEY: &str = "levee:v1:meta:hash_secret";

/// The two halves of a keyed 128-bit hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash {
    /// Chooses the bucket.
    pub slot_seed: u64,
    /// Identifies the key inside its bucket; never 0, so 0 can mean "empty".
    pub fingerprint: u64,
}

/// SipHash-1-3 keyed with a secret shared by all worker VMs.
#[derive(Clone)]
pub struct KeyHasher {
    secret: [u8; 16],
}

/// Why the stored secret could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretError {
    /// Reading or creating the key failed.
    Store(UpdateError),
    /// The stored value is not 16 bytes (another program wrote the key?).
    Malformed { len: usize },
}

impl std::fmt::Display for SecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretError::Store(e) => write!(f, "loading the hash secret: {e}"),
            SecretError::Malformed { len } => write!(
                f,
                "shared-data key {HASH_SECRET_KEY} holds {len} bytes, expected 16; \
                 another plugin in this vm_id writes levee's keys"
            ),
        }
    }
}

impl std::error::Error for SecretError {}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher { secret: <redacted> }")
    }
}

impl KeyHasher {
    pub fn new(secret: [u8; 16]) -> Self {
        Self { secret }
    }

    /// The secret every worker shares: the stored one, or `fresh` (random bytes from the
    /// caller) if none is stored yet. Configure time only.
    pub fn load_or_create(store: &dyn SharedStore, fresh: [u8; 16]) -> Result<Self, SecretError> {
        let stored = get_or_create(store, HASH_SECRET_KEY, &fresh).map_err(SecretError::Store)?;
        let secret: [u8; 16] = stored
            .as_slice()
            .try_into()
            .map_err(|_| SecretError::Malformed { len: stored.len() })?;
        Ok(Self::new(secret))
    }

    /// Hashes `key` within `domain` (e.g. the table's name). The domain is length-prefixed,
    /// so `("ab", "c")` and `("a", "bc")` hash differently.
    pub fn hash(&self, domain: &[u8], key: &[u8]) -> KeyHash {
        let mut h = SipHasher13::new_with_key(&self.secret);
        // One `write` of the whole input hashes the same as one per part (SipHash sees one
        // byte stream) and runs the hasher's tail handling once instead of three times.
        let mut joined = [0u8; 128];
        let len = 8 + domain.len() + key.len();
        match joined.get_mut(..len) {
            Some(buf) => {
                let (prefix, rest) = buf.split_at_mut(8);
                prefix.copy_from_slice(&(domain.len() as u64).to_le_bytes());
                let (d, k) = rest.split_at_mut(domain.len());
                d.copy_from_slice(domain);
                k.copy_from_slice(key);
                h.write(buf);
            }
            None => {
                h.write(&(domain.len() as u64).to_le_bytes());
                h.write(domain);
                h.write(key);
            }
        }
        let out = h.finish128();
        KeyHash {
            slot_seed: out.h1,
            fingerprint: if out.h2 == 0 { 1 } else { out.h2 },
        }
    }
}

/// Jump consistent hash: a bucket in `[0, buckets)` for `seed` (0 when `buckets` is 0).
/// Growing from `n` to `m` buckets moves only `(m - n) / m` of the keys, all into the new
/// buckets; shrinking moves only the keys of the removed buckets.
pub fn jump_bucket(seed: u64, buckets: u32) -> u32 {
    let mut key = seed;
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    u32::try_from(b).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn hasher() -> KeyHasher {
        KeyHasher::new(*b"0123456789abcdef")
    }

    #[test]
    fn same_input_same_hash() {
        assert_eq!(
            hasher().hash(b"rl:api", b"10.0.0.1"),
            hasher().hash(b"rl:api", b"10.0.0.1")
        );
    }

    proptest::proptest! {
        /// Placement must not change between levee versions sharing one Envoy's data: the
        /// joined write hashes exactly as the three parts written one by one.
        #[test]
        fn one_write_hashes_as_the_parts_written_one_by_one(
            domain in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let mut h = SipHasher13::new_with_key(b"0123456789abcdef");
            h.write(&(domain.len() as u64).to_le_bytes());
            h.write(&domain);
            h.write(&key);
            let out = h.finish128();
            let got = hasher().hash(&domain, &key);
            proptest::prop_assert_eq!(got.slot_seed, out.h1);
            proptest::prop_assert_eq!(got.fingerprint, if out.h2 == 0 { 1 } else { out.h2 });
        }
    }

    #[test]
    fn domain_is_length_prefixed() {
        let h = hasher();
        assert_ne!(h.hash(b"ab", b"c"), h.hash(b"a", b"bc"));
        assert_ne!(h.hash(b"", b"abc"), h.hash(b"abc", b""));
    }

    #[test]
    fn different_secrets_place_keys_differently() {
        let other = KeyHasher::new([7; 16]);
        assert_ne!(hasher().hash(b"d", b"k"), other.hash(b"d", b"k"));
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        assert!(!format!("{:?}", hasher()).contains("0123"));
    }

    #[test]
    fn secret_is_created_once_and_shared() {
        let store = MemoryStore::new();
        let a = KeyHasher::load_or_create(&store, [1; 16]).unwrap();
        let b = KeyHasher::load_or_create(&store, [2; 16]).unwrap();
        assert_eq!(a.hash(b"d", b"k"), b.hash(b"d", b"k"));
        assert_eq!(
            store.get(HASH_SECRET_KEY).unwrap().unwrap().value,
            vec![1; 16]
        );
    }

    #[test]
    fn malformed_secret_is_an_error() {
        let store = MemoryStore::new();
        store.set(HASH_SECRET_KEY, b"short", None).unwrap();
        assert_eq!(
            KeyHasher::load_or_create(&store, [1; 16]).map(|_| ()),
            Err(SecretError::Malformed { len: 5 })
        );
    }

    #[test]
    fn jump_bucket_stays_in_range_and_spreads() {
        let mut counts = [0u32; 10];
        for i in 0..10_000u64 {
            let b = jump_bucket(hasher().hash(b"d", &i.to_le_bytes()).slot_seed, 10);
            counts[b as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(jump_bucket(123, 0), 0);
        assert_eq!(jump_bucket(123, 1), 0);
    }

    #[test]
    fn growing_a_table_moves_keys_only_into_new_buckets() {
        let mut moved = 0;
        for i in 0..10_000u64 {
            let seed = hasher().hash(b"d", &i.to_le_bytes()).slot_seed;
            let (old, new) = (jump_bucket(seed, 100), jump_bucket(seed, 125));
            if old != new {
                assert!(new >= 100);
                moved += 1;
            }
        }
        assert!(
            (1500..2500).contains(&moved),
            "{moved} moved, expected about 2000"
        );
    }
}
