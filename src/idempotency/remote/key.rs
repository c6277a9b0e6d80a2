//! The etcd key of one idempotency record: the same on every Envoy for the same scope and
//! client key, bounded in length, and made only of bytes levee chose.
//!
//! `<prefix>idem/<32 hex digits>/<readable>`: the hex digits are a 128-bit SipHash (fixed,
//! public key, so every replica agrees) of the scoped key (scope parts and client key,
//! length-prefixed); `<readable>` is up to [`READABLE_LEN`] leading characters of the client
//! key restricted to `[A-Za-z0-9_-]` (others become `_`), there only to help an operator who
//! lists the keys. No client byte can contain `/` or reach outside `prefix`, and the key is at
//! most `prefix` + 70 bytes whatever the client sends.

use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

/// Fixed SipHash key ("levee-etcd-key-1"). Changing it orphans every stored record.
const KEY: [u8; 16] = *b"levee-etcd-key-1";

/// How many characters of the client key the etcd key shows.
pub const READABLE_LEN: usize = 32;

/// The etcd key for `scoped` (see [`crate::idempotency::scoped_key`]) whose client key is
/// `client_key`, under `prefix`.
pub fn record_key(prefix: &str, scoped: &[u8], client_key: &[u8]) -> Vec<u8> {
    let mut hasher = SipHasher13::new_with_key(&KEY);
    hasher.write(scoped);
    let digest = hasher.finish128().as_bytes();
    let mut out = Vec::with_capacity(prefix.len() + 6 + 33 + READABLE_LEN);
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(b"idem/");
    for b in digest {
        out.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    out.push(b'/');
    out.extend(client_key.iter().take(READABLE_LEN).map(|&b| {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            b
        } else {
            b'_'
        }
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_same_scoped_key_maps_to_the_same_etcd_key_and_scopes_differ() {
        let a = record_key("levee/", b"\x01\0\0\0a\x02\0\0\0k1", b"k1");
        assert_eq!(a, record_key("levee/", b"\x01\0\0\0a\x02\0\0\0k1", b"k1"));
        assert_ne!(a, record_key("levee/", b"\x01\0\0\0b\x02\0\0\0k1", b"k1"));
        let text = String::from_utf8(a).expect("ascii");
        assert!(text.starts_with("levee/idem/"), "{text}");
        assert!(text.ends_with("/k1"), "{text}");
    }

    proptest! {
        #[test]
        fn client_bytes_never_escape_the_prefix(
            scoped in proptest::collection::vec(any::<u8>(), 0..600),
            client in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let key = record_key("p/", &scoped, &client);
            prop_assert!(key.starts_with(b"p/idem/"));
            prop_assert!(key.len() <= 2 + 5 + 33 + READABLE_LEN);
            let tail = &key[7..];
            prop_assert_eq!(tail.iter().filter(|&&b| b == b'/').count(), 1);
            prop_assert!(tail.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'/'));
        }
    }
}
