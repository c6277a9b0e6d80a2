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
//!
//! The hash is the `siphasher` crate's SipHash-1-3/128 of `len(domain) ‖ domain ‖ key`,
//! computed here over the parts where they lie: every request hashes a key, and joining the
//! parts into one buffer first costs a zeroed buffer and two copies. The tests check it
//! against the crate.

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
    /// The secret as SipHash's two key words (little-endian halves).
    keys: [u64; 2],
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
        let (low, high) = secret.split_at(8);
        Self {
            keys: [le_word(low), le_word(high)],
        }
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
        // The message is `len(domain)` as 8 bytes little-endian, the domain, then the key,
        // read where they lie (joining them would cost copies).
        let mut sip = Sip13::new(self.keys);
        sip.absorb(domain.len() as u64);
        let mut message = Words::new(sip);
        message.feed(domain);
        message.feed(key);
        let (h1, h2) = message.finish(8 + domain.len() + key.len());
        KeyHash {
            slot_seed: h1,
            fingerprint: if h2 == 0 { 1 } else { h2 },
        }
    }
}

/// SipHash-1-3 with a 128-bit result, as the `siphasher` crate's `sip128::SipHasher13`
/// computes it (one compression round per word, three per finalization half), over 8-byte
/// little-endian words.
struct Sip13 {
    v: [u64; 4],
}

impl Sip13 {
    fn new([k0, k1]: [u64; 2]) -> Self {
        Self {
            // The 128-bit variant's 0xee is folded into v1's constant (0x…6d ^ 0xee).
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f83,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
        }
    }

    fn round(&mut self) {
        let [v0, v1, v2, v3] = &mut self.v;
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v2 = v2.rotate_left(32);
    }

    fn absorb(&mut self, word: u64) {
        self.v[3] ^= word;
        self.round();
        self.v[0] ^= word;
    }

    /// The two result halves, after the last `tail` bytes (fewer than 8) of a message of
    /// `len` bytes.
    fn finish(mut self, len: usize, tail: u64) -> (u64, u64) {
        self.absorb((len as u64 & 0xff) << 56 | tail);
        self.v[2] ^= 0xee;
        self.rounds(3);
        let h1 = self.v.iter().fold(0, |x, v| x ^ v);
        self.v[1] ^= 0xdd;
        self.rounds(3);
        let h2 = self.v.iter().fold(0, |x, v| x ^ v);
        (h1, h2)
    }

    fn rounds(&mut self, n: usize) {
        for _ in 0..n {
            self.round();
        }
    }
}

/// Cuts a message handed over in pieces into the 8-byte words [`Sip13`] absorbs, holding
/// back the bytes that do not fill a word yet.
struct Words {
    sip: Sip13,
    /// The held-back bytes, little-endian in the low `pending_len` bytes.
    pending: u64,
    pending_len: usize,
}

impl Words {
    fn new(sip: Sip13) -> Self {
        Self {
            sip,
            pending: 0,
            pending_len: 0,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let (words, rest) = bytes.as_chunks::<8>();
        // Bits of a word that belong after the held-back bytes (0 when none are held).
        let shift = 8 * self.pending_len as u32;
        for word in words {
            let word = u64::from_le_bytes(*word);
            if shift == 0 {
                self.sip.absorb(word);
            } else {
                self.sip.absorb(self.pending | word << shift);
                self.pending = word >> (64 - shift);
            }
        }
        let rest_word = le_word(rest);
        self.pending |= rest_word << shift;
        self.pending_len += rest.len();
        if self.pending_len >= 8 {
            // Only when bytes were held back, so 8 <= shift <= 56.
            self.sip.absorb(self.pending);
            self.pending = rest_word >> (64 - shift);
            self.pending_len -= 8;
        }
    }

    fn finish(self, len: usize) -> (u64, u64) {
        self.sip.finish(len, self.pending)
    }
}

/// Up to 8 bytes as a little-endian number.
fn le_word(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0, |word, &byte| word << 8 | u64::from(byte))
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
    use std::hash::Hasher;

    use siphasher::sip128::{Hasher128, SipHasher13};

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
        /// hash is the `siphasher` crate's SipHash-1-3/128 of the three parts, whatever their
        /// lengths (every split of the words) and whatever the secret.
        #[test]
        fn the_hash_is_siphash13_of_the_length_prefixed_domain_and_the_key(
            secret in proptest::prelude::any::<[u8; 16]>(),
            domain in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let mut h = SipHasher13::new_with_key(&secret);
            h.write(&(domain.len() as u64).to_le_bytes());
            h.write(&domain);
            h.write(&key);
            let out = h.finish128();
            let got = KeyHasher::new(secret).hash(&domain, &key);
            proptest::prop_assert_eq!(got.slot_seed, out.h1);
            proptest::prop_assert_eq!(got.fingerprint, if out.h2 == 0 { 1 } else { out.h2 });
        }
    }

    #[test]
    fn every_length_up_to_a_few_words_hashes_as_siphasher() {
        let secret = *b"0123456789abcdef";
        let bytes: Vec<u8> = (0..=255).collect();
        for domain_len in 0..20 {
            for key_len in 0..40 {
                let (domain, key) = (&bytes[..domain_len], &bytes[100..100 + key_len]);
                let mut h = SipHasher13::new_with_key(&secret);
                h.write(&(domain_len as u64).to_le_bytes());
                h.write(domain);
                h.write(key);
                let out = h.finish128();
                let got = hasher().hash(domain, key);
                assert_eq!((got.slot_seed, got.fingerprint), (out.h1, out.h2));
            }
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
