//! The request fingerprint: "is this the same request as the one that owns the key?"
//!
//! A client that reuses a key for a *different* request has a bug, and replaying the first
//! answer to it would hide that bug (the IETF draft answers `422`). So every record keeps a
//! 128-bit hash of the method, the path with its query, and the body bytes.
//!
//! The body arrives in chunks, so the hash is incremental: [`FingerprintBuilder::update`] per
//! chunk, [`FingerprintBuilder::finish`] at the end; chunking never changes the result. Method
//! and path are length-prefixed and the body length is appended, so no two different
//! (method, path, body) triples feed the hasher the same bytes.
//!
//! SipHash-1-3 with a fixed key: the fingerprint only has to tell apart requests that one
//! client sends under one key (keys are scoped per tenant/user), it is not a secret and it must
//! be identical in every worker VM and across restarts, so a fixed key is right. 128 bits make
//! an accidental collision (a different payload wrongly replayed) negligible.

use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

/// Fixed SipHash key ("levee-idem-fp-v1"). Changing it invalidates every stored fingerprint.
const KEY: [u8; 16] = *b"levee-idem-fp-v1";

/// A 128-bit request fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Fingerprint(pub [u8; 16]);

impl Fingerprint {
    /// The fingerprint of a whole request at once.
    pub fn of(method: &str, path_and_query: &str, body: &[u8]) -> Self {
        let mut b = FingerprintBuilder::new(method, path_and_query);
        b.update(body);
        b.finish()
    }
}

/// Hashes a request whose body arrives in chunks.
#[derive(Debug, Clone)]
pub struct FingerprintBuilder {
    hasher: SipHasher13,
    body_len: u64,
}

impl FingerprintBuilder {
    /// Starts a fingerprint with the request line: the method and the path with its query.
    pub fn new(method: &str, path_and_query: &str) -> Self {
        let mut hasher = SipHasher13::new_with_key(&KEY);
        for part in [method.as_bytes(), path_and_query.as_bytes()] {
            hasher.write(&(part.len() as u64).to_le_bytes());
            hasher.write(part);
        }
        Self {
            hasher,
            body_len: 0,
        }
    }

    /// Feeds the next body chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.write(chunk);
        self.body_len = self.body_len.saturating_add(chunk.len() as u64);
    }

    /// Body bytes seen so far (for the `max_body_bytes` check).
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    pub fn finish(mut self) -> Fingerprint {
        self.hasher.write(&self.body_len.to_le_bytes());
        Fingerprint(self.hasher.finish128().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn same_request_same_fingerprint() {
        assert_eq!(
            Fingerprint::of("POST", "/pay?x=1", b"{\"amount\":10}"),
            Fingerprint::of("POST", "/pay?x=1", b"{\"amount\":10}")
        );
    }

    #[test]
    fn any_difference_changes_the_fingerprint() {
        let base = Fingerprint::of("POST", "/pay?x=1", b"{\"amount\":10}");
        assert_ne!(
            base,
            Fingerprint::of("PATCH", "/pay?x=1", b"{\"amount\":10}")
        );
        assert_ne!(
            base,
            Fingerprint::of("POST", "/pay?x=2", b"{\"amount\":10}")
        );
        assert_ne!(base, Fingerprint::of("POST", "/pay", b"{\"amount\":10}"));
        assert_ne!(
            base,
            Fingerprint::of("POST", "/pay?x=1", b"{\"amount\":11}")
        );
        assert_ne!(base, Fingerprint::of("POST", "/pay?x=1", b""));
    }

    #[test]
    fn moving_bytes_between_path_and_body_changes_the_fingerprint() {
        assert_ne!(
            Fingerprint::of("POST", "/ab", b"c"),
            Fingerprint::of("POST", "/a", b"bc")
        );
        assert_ne!(
            Fingerprint::of("POS", "T/a", b""),
            Fingerprint::of("POST", "/a", b"")
        );
    }

    #[test]
    fn the_fingerprint_is_stable_across_builds() {
        // Stored records compare against this value after a restart or an upgrade.
        let fp = Fingerprint::of("POST", "/", b"");
        assert_eq!(fp, Fingerprint::of("POST", "/", b""));
        assert_ne!(fp, Fingerprint::default());
    }

    #[test]
    fn body_len_counts_chunks() {
        let mut b = FingerprintBuilder::new("POST", "/");
        b.update(b"abc");
        b.update(b"de");
        assert_eq!(b.body_len(), 5);
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_fingerprint(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
            cuts.sort_unstable();
            let mut b = FingerprintBuilder::new("POST", "/orders?id=7");
            let mut at = 0;
            for cut in cuts {
                b.update(&body[at..cut]);
                at = cut;
            }
            b.update(&body[at..]);
            prop_assert_eq!(b.finish(), Fingerprint::of("POST", "/orders?id=7", &body));
        }
    }
}
