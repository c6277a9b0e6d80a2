//! The proxy-wasm ABI's byte formats and status codes, as total functions.
//!
//! `host::abi` calls Envoy's imports directly instead of through the SDK's `hostcalls`, which
//! `panic!` on any status they do not expect and `unwrap` what they parse: a panic traps the
//! VM, and the worker's filter is dead until a reload. What `host::abi` gets back from the host
//! — a status code, a header map serialized as bytes — is interpreted here. This module does
//! not touch `proxy_wasm`, so it compiles and is tested natively (`host` is wasm32-only), and
//! it is total: any `u32` is some status, any byte string decodes to pairs or to an error.
//!
//! Formats (as written by proxy-wasm-cpp-host, `PairsUtil::marshalPairs`):
//! - header map: `count: u32`, then `count × (name_len: u32, value_len: u32)`, then for each
//!   pair `name \0 value \0`; little-endian; an empty buffer is an empty map.
//! - property path: the segments joined by `\0`.

/// A proxy-wasm status code (proxy-wasm-cpp-host's `WasmResult`), folded into the statuses the
/// SDK's `Status` enum can name, so that every code the host may return has an answer.
///
/// The SDK declares its imports as returning that enum: a code it does not list
/// (`InvalidMemoryAccess` = 6, `Unimplemented` = 12, a future one) is undefined behaviour
/// there. levee declares them as returning `u32` and maps the code here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStatus {
    Ok,
    NotFound,
    BadArgument,
    SerializationFailure,
    ParseFailure,
    Empty,
    CasMismatch,
    InternalFailure,
}

impl HostStatus {
    /// The status for any code: the ones the SDK names as themselves, `BadExpression` (5) as
    /// a bad argument, everything else (`InvalidMemoryAccess`, `ResultMismatch`,
    /// `BrokenConnection`, `Unimplemented`, unknown codes) as an internal failure.
    pub fn from_code(code: u32) -> Self {
        match code {
            0 => Self::Ok,
            1 => Self::NotFound,
            2 | 5 => Self::BadArgument,
            3 => Self::SerializationFailure,
            4 => Self::ParseFailure,
            7 => Self::Empty,
            8 => Self::CasMismatch,
            _ => Self::InternalFailure,
        }
    }
}

/// The log levels of the ABI (`proxy_get_log_level`), trace = 0 … critical = 5.
/// `None` for a level the ABI does not define.
pub fn log_level_index(raw: u32) -> Option<u8> {
    u8::try_from(raw).ok().filter(|l| *l <= 5)
}

/// Why a serialized header map could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairsError {
    /// The buffer ends before the count, the size table or a name/value it announces.
    Truncated,
    /// A name or value is not followed by its `\0`.
    MissingTerminator,
    /// Bytes are left after the last pair.
    TrailingBytes,
}

impl std::fmt::Display for PairsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Truncated => "header map shorter than its sizes announce",
            Self::MissingTerminator => "header map name or value not NUL-terminated",
            Self::TrailingBytes => "bytes after the header map's last pair",
        })
    }
}

/// Bytes each pair takes at least: two `u32` sizes and two terminators.
const MIN_PAIR_BYTES: usize = 10;

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, PairsError> {
    let end = at.checked_add(4).ok_or(PairsError::Truncated)?;
    let raw: [u8; 4] = bytes
        .get(at..end)
        .and_then(|b| b.try_into().ok())
        .ok_or(PairsError::Truncated)?;
    Ok(u32::from_le_bytes(raw))
}

/// The `len` bytes at `*at`, then their `\0`; advances `*at` past the terminator.
fn field<'a>(bytes: &'a [u8], at: &mut usize, len: u32) -> Result<&'a [u8], PairsError> {
    let len = usize::try_from(len).map_err(|_| PairsError::Truncated)?;
    let end = at.checked_add(len).ok_or(PairsError::Truncated)?;
    let value = bytes.get(*at..end).ok_or(PairsError::Truncated)?;
    match bytes.get(end) {
        Some(0) => {}
        Some(_) => return Err(PairsError::MissingTerminator),
        None => return Err(PairsError::Truncated),
    }
    *at = end + 1;
    Ok(value)
}

/// Decodes a serialized header map. An empty buffer is an empty map; any inconsistency (a
/// count or size the buffer cannot hold, a missing terminator, trailing bytes) is an error,
/// never a panic. Names that are not UTF-8 (Envoy does not let them through) are converted
/// lossily rather than failing the whole map.
pub fn decode_pairs(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, PairsError> {
    let mut pairs = Vec::with_capacity(pair_count(bytes)?);
    walk_pairs(bytes, |name, value| {
        let name = match std::str::from_utf8(name) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(name).into_owned(),
        };
        pairs.push((name, value.to_vec()));
    })?;
    Ok(pairs)
}

/// The count a serialized map announces, checked against the buffer's length.
fn pair_count(bytes: &[u8]) -> Result<usize, PairsError> {
    if bytes.is_empty() {
        return Ok(0);
    }
    let count = usize::try_from(read_u32(bytes, 0)?).map_err(|_| PairsError::Truncated)?;
    // Check the count against the buffer before anything is sized by it.
    let needed = count
        .checked_mul(MIN_PAIR_BYTES)
        .and_then(|n| n.checked_add(4))
        .ok_or(PairsError::Truncated)?;
    if needed > bytes.len() {
        return Err(PairsError::Truncated);
    }
    Ok(count)
}

/// Calls `f` with each pair of a serialized header map, in order, without copying; the
/// errors are [`decode_pairs`]'s (pairs before the fault may have been seen).
pub fn walk_pairs<'a>(
    bytes: &'a [u8],
    mut f: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<(), PairsError> {
    let count = pair_count(bytes)?;
    if count == 0 && bytes.is_empty() {
        return Ok(());
    }
    // `pair_count` checked that the size table and the offsets into it fit.
    let mut data = 4 + count * 8;
    for i in 0..count {
        let sizes = 4 + i * 8;
        let name_len = read_u32(bytes, sizes)?;
        let value_len = read_u32(bytes, sizes + 4)?;
        let name = field(bytes, &mut data, name_len)?;
        let value = field(bytes, &mut data, value_len)?;
        f(name, value);
    }
    if data != bytes.len() {
        return Err(PairsError::TrailingBytes);
    }
    Ok(())
}

/// Serializes a header map (for `proxy_send_local_response`). Lengths over `u32::MAX` cannot
/// occur in wasm32, where `usize` is 32 bits.
pub fn encode_pairs(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| k.len() + v.len() + MIN_PAIR_BYTES)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Serializes a property path (`["source", "address"]` → `source\0address`).
pub fn encode_path(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect()
    }

    #[test]
    fn every_status_code_has_a_status() {
        assert_eq!(HostStatus::from_code(0), HostStatus::Ok);
        assert_eq!(HostStatus::from_code(1), HostStatus::NotFound);
        assert_eq!(HostStatus::from_code(2), HostStatus::BadArgument);
        assert_eq!(HostStatus::from_code(3), HostStatus::SerializationFailure);
        assert_eq!(HostStatus::from_code(4), HostStatus::ParseFailure);
        assert_eq!(HostStatus::from_code(5), HostStatus::BadArgument);
        assert_eq!(HostStatus::from_code(7), HostStatus::Empty);
        assert_eq!(HostStatus::from_code(8), HostStatus::CasMismatch);
        for code in [6, 9, 10, 11, 12, 13, 255, u32::MAX] {
            assert_eq!(HostStatus::from_code(code), HostStatus::InternalFailure);
        }
    }

    #[test]
    fn log_levels_outside_trace_to_critical_are_refused() {
        assert_eq!(log_level_index(0), Some(0));
        assert_eq!(log_level_index(5), Some(5));
        assert_eq!(log_level_index(6), None);
        assert_eq!(log_level_index(u32::MAX), None);
    }

    #[test]
    fn an_encoded_map_decodes_to_itself() {
        let list: [(&str, &[u8]); 4] = [
            (":status", b"200"),
            ("content-type", b"application/json"),
            ("x-empty", b""),
            ("x-binary", &[0, 0xff, 0x80, 0]),
        ];
        assert_eq!(decode_pairs(&encode_pairs(&list)), Ok(pairs(&list)));
        assert_eq!(decode_pairs(&encode_pairs(&[])), Ok(Vec::new()));
    }

    #[test]
    fn an_empty_buffer_is_an_empty_map() {
        assert_eq!(decode_pairs(&[]), Ok(Vec::new()));
    }

    #[test]
    fn a_count_the_buffer_cannot_hold_is_refused_before_allocating() {
        assert_eq!(decode_pairs(&[1, 2, 3]), Err(PairsError::Truncated));
        assert_eq!(
            decode_pairs(&u32::MAX.to_le_bytes()),
            Err(PairsError::Truncated)
        );
        let mut one = 1u32.to_le_bytes().to_vec();
        one.extend_from_slice(&[0; 9]);
        assert_eq!(decode_pairs(&one), Err(PairsError::Truncated));
    }

    #[test]
    fn a_size_past_the_end_is_truncated() {
        let mut bytes = encode_pairs(&[("a", b"b")]);
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_pairs(&bytes), Err(PairsError::Truncated));
        let mut bytes = encode_pairs(&[("a", b"b")]);
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(decode_pairs(&bytes), Err(PairsError::Truncated));
    }

    #[test]
    fn a_missing_terminator_or_trailing_byte_is_refused() {
        let mut bytes = encode_pairs(&[("a", b"b")]);
        let name_nul = 4 + 8 + 1;
        bytes[name_nul] = b'x';
        assert_eq!(decode_pairs(&bytes), Err(PairsError::MissingTerminator));
        let mut bytes = encode_pairs(&[("a", b"b")]);
        bytes.push(0);
        assert_eq!(decode_pairs(&bytes), Err(PairsError::TrailingBytes));
        let mut bytes = encode_pairs(&[("a", b"b")]);
        bytes.pop();
        assert_eq!(decode_pairs(&bytes), Err(PairsError::Truncated));
    }

    #[test]
    fn a_non_utf8_name_is_kept_lossily() {
        let bytes = encode_pairs(&[("ok", b"1")]);
        let mut bad = bytes.clone();
        bad[4 + 8] = 0xff;
        assert_eq!(
            decode_pairs(&bad),
            Ok(vec![("\u{fffd}k".to_owned(), b"1".to_vec())])
        );
    }

    #[test]
    fn property_paths_are_nul_joined() {
        assert_eq!(encode_path(&["source", "address"]), b"source\0address");
        assert_eq!(encode_path(&["a"]), b"a");
        assert_eq!(encode_path(&[]), b"");
        assert_eq!(encode_path(&["", ""]), b"\0");
    }
}
