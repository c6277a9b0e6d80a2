//! Byte layouts shared by the rate-limit algorithms.
//!
//! Every non-empty state starts with one *tag* byte that names both the algorithm and the
//! layout version (high nibble = algorithm, low nibble = version). A state written by another
//! algorithm — a config reload may change `algorithm` under the same limit name — or by a
//! future layout therefore never decodes: the algorithms treat anything they cannot decode as
//! the empty state, i.e. "never seen / at rest". That errs towards admitting after a reload,
//! never towards panicking on a request.
//!
//! Integers are little-endian; the sliding-window log also uses LEB128 varints.

/// `fixed_window`, layout 1: tag, window start (u64 ns), count (u64).
pub const TAG_FIXED_WINDOW: u8 = 0x11;
/// `sliding_window_log`, layout 1: tag, oldest entry (u64 ms), varint deltas (ms).
pub const TAG_SLIDING_WINDOW_LOG: u8 = 0x21;
/// `sliding_window_counter`, layout 1: tag, window start (u64 ns), previous, current (u64).
pub const TAG_SLIDING_WINDOW_COUNTER: u8 = 0x31;
/// `token_bucket`, layout 1: tag, TAT whole ns (u64), TAT fraction in 1/limit ns (u64).
pub const TAG_TOKEN_BUCKET: u8 = 0x41;
/// `leaky_bucket`, layout 1: same fields as the token bucket.
pub const TAG_LEAKY_BUCKET: u8 = 0x51;

/// The payload after `tag`, if `state` is exactly `tag` followed by `len` bytes.
pub fn payload(state: &[u8], tag: u8, len: usize) -> Option<&[u8]> {
    match state.split_first() {
        Some((&t, rest)) if t == tag && rest.len() == len => Some(rest),
        _ => None,
    }
}

/// The payload after `tag`, whatever its length.
pub fn payload_any_len(state: &[u8], tag: u8) -> Option<&[u8]> {
    match state.split_first() {
        Some((&t, rest)) if t == tag => Some(rest),
        _ => None,
    }
}

/// The little-endian u64 at `at`, if the bytes are there.
pub fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    let chunk: [u8; 8] = bytes.get(at..end)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// The size of a state that is a tag followed by `n` little-endian u64s.
pub const fn u64s_state_bytes(n: usize) -> usize {
    1 + 8 * n
}

/// The `N` u64s after `tag`, if `state` is exactly `tag` followed by `N` of them (the
/// inverse of [`encode_u64s`]).
pub fn decode_u64s<const N: usize>(state: &[u8], tag: u8) -> Option<[u64; N]> {
    let p = payload(state, tag, 8 * N)?;
    let mut values = [0u64; N];
    for (i, v) in values.iter_mut().enumerate() {
        *v = read_u64(p, 8 * i)?;
    }
    Some(values)
}

/// `tag` followed by each value as a little-endian u64.
pub fn encode_u64s(tag: u8, values: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 * values.len());
    out.push(tag);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // Truncation intended: the low seven bits plus the continuation bit.
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one varint from the front of `bytes`: the value and the bytes it used.
/// `None` for a truncated varint or one that does not fit a u64.
pub fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7f);
        let shift = 7 * u32::try_from(i).ok()?;
        // The tenth byte may only carry the top bit of a u64.
        if i == 9 && bits > 1 {
            return None;
        }
        value |= bits << shift;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// How many bytes `v` takes as a varint.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            push_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(read_varint(&out), Some((v, out.len())));
        }
    }

    #[test]
    fn refuses_truncated_and_overlong_varints() {
        assert_eq!(read_varint(&[]), None);
        assert_eq!(read_varint(&[0x80]), None);
        assert_eq!(read_varint(&[0xff; 10]), None);
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
    }

    #[test]
    fn u64s_round_trip_only_under_their_tag_and_exact_length() {
        let state = encode_u64s(0x31, &[1, u64::MAX, 7]);
        assert_eq!(state.len(), u64s_state_bytes(3));
        assert_eq!(decode_u64s::<3>(&state, 0x31), Some([1, u64::MAX, 7]));
        assert_eq!(decode_u64s::<3>(&state, 0x11), None);
        assert_eq!(decode_u64s::<2>(&state, 0x31), None);
        assert_eq!(decode_u64s::<3>(&state[..24], 0x31), None);
        assert_eq!(decode_u64s::<0>(&[0x31], 0x31), Some([]));
    }

    #[test]
    fn payload_requires_tag_and_exact_length() {
        assert_eq!(payload(&[0x11, 1, 2], 0x11, 2), Some(&[1u8, 2][..]));
        assert_eq!(payload(&[0x11, 1, 2], 0x21, 2), None);
        assert_eq!(payload(&[0x11, 1], 0x11, 2), None);
        assert_eq!(payload(&[], 0x11, 0), None);
        assert_eq!(read_u64(&[1, 0, 0, 0, 0, 0, 0, 0], 0), Some(1));
        assert_eq!(read_u64(&[1, 0, 0], 0), None);
        assert_eq!(read_u64(&[0; 8], usize::MAX), None);
    }
}
