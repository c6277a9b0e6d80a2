//! Parsing the `Idempotency-Key` header value.
//!
//! The IETF draft defines the header as a structured-field *String* (`"8e03978e-40d5"`), while
//! most clients (and Stripe) send a bare token (`8e03978e-40d5`). levee accepts both and they
//! name the same key: `abc` and `"abc"` decode to the bytes `abc`.
//!
//! - **Bare**: every byte is visible ASCII (`0x21..=0x7E`).
//! - **Quoted** (RFC 8941 §3.3.3 sf-string): a value that starts with `"` must end with the
//!   closing `"` and nothing after it (levee accepts no parameters); inside, bytes are
//!   `0x20..=0x7E`, `\` escapes only `"` and `\`.
//!
//! Leading and trailing spaces and tabs are not part of a field value (RFC 9110 §5.5) and are
//! ignored. The length limit (`max_key_length`) applies to the decoded key. Errors are values
//! (→ `400`); no input panics.
//!
//! **Exactly one key.** The field is a single sf-string (RFC 9651 Item), not a List, so a
//! request with two `Idempotency-Key` lines has no key levee could pick: taking the first
//! would let two clients' retries, or a proxy that appended a line, name a key the client did
//! not mean. Such a request is a `400` and locks nothing ([`parse_single_key`]). A bare key
//! may not contain `,` for the same reason: HTTP lets an intermediary merge repeated lines
//! into one comma-separated value (RFC 9110 §5.3), so `a,b` is two keys, not one (a quoted
//! key may contain commas).

use std::fmt;

/// A validated idempotency key: 1..=`max_key_length` bytes, all in `0x20..=0x7E`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The key as a header value for `X-Idempotency-Key`: bare when it is a valid bare token,
    /// otherwise re-quoted as an sf-string (so that a key with a space round-trips).
    pub fn header_value(&self) -> String {
        let bare_ok =
            !self.0.starts_with('"') && self.0.bytes().all(|b| is_visible(b) && b != b',');
        if bare_ok {
            return self.0.clone();
        }
        let mut out = String::with_capacity(self.0.len() + 2);
        out.push('"');
        for c in self.0.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a header value is not a usable key. Every variant is a `400` for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Nothing (or only whitespace, or `""`).
    Empty,
    /// The decoded key is longer than `max_key_length`.
    TooLong { max: u32 },
    /// A byte outside visible ASCII (bare) or outside `0x20..=0x7E` (inside quotes).
    NotVisibleAscii,
    /// Starts with `"` but is not one well-formed sf-string.
    BadQuoting,
    /// Several keys: repeated header lines, or a bare value with a `,` (a merged list).
    NotSingle,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the idempotency key is empty"),
            Self::TooLong { max } => write!(f, "the idempotency key is longer than {max} bytes"),
            Self::NotVisibleAscii => f.write_str(
                "the idempotency key must be visible ASCII (a quoted string may contain spaces)",
            ),
            Self::NotSingle => f.write_str(
                "send exactly one idempotency key: the request has several key header lines, \
                 or a ',' outside quotes (a list)",
            ),
            Self::BadQuoting => f.write_str(
                "the idempotency key starts with '\"' but is not a valid quoted string \
                 (close the quote; escape only '\\\"' and '\\\\')",
            ),
        }
    }
}

impl std::error::Error for KeyError {}

fn is_visible(b: u8) -> bool {
    (0x21..=0x7E).contains(&b)
}

/// Parses the key of a request whose key header came on `lines` field lines (`raw` is the
/// first): more than one line is [`KeyError::NotSingle`], whatever the values say.
pub fn parse_single_key(
    raw: &[u8],
    lines: usize,
    max_len: u32,
) -> Result<IdempotencyKey, KeyError> {
    if lines > 1 {
        return Err(KeyError::NotSingle);
    }
    parse_key(raw, max_len)
}

/// Parses one `Idempotency-Key` header value into a key of at most `max_len` bytes.
pub fn parse_key(raw: &[u8], max_len: u32) -> Result<IdempotencyKey, KeyError> {
    let value = trim_ows(raw);
    let max = usize::try_from(max_len).unwrap_or(usize::MAX);
    let decoded = match value.first() {
        None => return Err(KeyError::Empty),
        Some(b'"') => decode_sf_string(value, max)?,
        Some(_) => {
            if value.len() > max {
                return Err(KeyError::TooLong { max: max_len });
            }
            if value.contains(&b',') {
                return Err(KeyError::NotSingle);
            }
            if !value.iter().copied().all(is_visible) {
                return Err(KeyError::NotVisibleAscii);
            }
            value.to_vec()
        }
    };
    if decoded.is_empty() {
        return Err(KeyError::Empty);
    }
    if decoded.len() > max {
        return Err(KeyError::TooLong { max: max_len });
    }
    // Every byte is in 0x20..=0x7E, so this is ASCII; the fallback is unreachable.
    String::from_utf8(decoded)
        .map(IdempotencyKey)
        .map_err(|_| KeyError::NotVisibleAscii)
}

/// The name of the record for `key` under `scope` (the values of the config's `scope` key
/// parts, in order): each part length-prefixed, so `("ab", "c")` and `("a", "bc")` differ and
/// two tenants sending the same key never share a record.
pub fn scoped_key(scope: &[&[u8]], key: &IdempotencyKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        scope.iter().map(|p| p.len() + 4).sum::<usize>() + key.as_bytes().len() + 4,
    );
    for part in scope.iter().copied().chain([key.as_bytes()]) {
        out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn trim_ows(raw: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = raw.iter().position(|b| !is_ows(b)).unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    raw.get(start..end).unwrap_or_default()
}

/// Decodes `"…"` (the whole of `value`). Stops early once the key exceeds `max` bytes so that a
/// huge header costs no more than `max` bytes of allocation.
fn decode_sf_string(value: &[u8], max: usize) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::new();
    let mut bytes = value.iter().copied().skip(1);
    loop {
        match bytes.next() {
            None => return Err(KeyError::BadQuoting),
            Some(b'"') => break,
            Some(b'\\') => match bytes.next() {
                Some(c @ (b'"' | b'\\')) => out.push(c),
                _ => return Err(KeyError::BadQuoting),
            },
            Some(c) if (0x20..=0x7E).contains(&c) => out.push(c),
            Some(_) => return Err(KeyError::NotVisibleAscii),
        }
        if out.len() > max {
            // The tail must still be well-formed for TooLong to be the honest answer.
            return finish_scan(bytes).and(Err(KeyError::TooLong {
                max: u32::try_from(max).unwrap_or(u32::MAX),
            }));
        }
    }
    if bytes.next().is_some() {
        return Err(KeyError::BadQuoting);
    }
    Ok(out)
}

/// Validates the rest of a quoted string without keeping it.
fn finish_scan(mut bytes: impl Iterator<Item = u8>) -> Result<(), KeyError> {
    loop {
        match bytes.next() {
            None => return Err(KeyError::BadQuoting),
            Some(b'"') => break,
            Some(b'\\') => match bytes.next() {
                Some(b'"' | b'\\') => {}
                _ => return Err(KeyError::BadQuoting),
            },
            Some(c) if (0x20..=0x7E).contains(&c) => {}
            Some(_) => return Err(KeyError::NotVisibleAscii),
        }
    }
    if bytes.next().is_some() {
        return Err(KeyError::BadQuoting);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &[u8]) -> Result<String, KeyError> {
        parse_key(s, 16).map(|k| k.as_str().to_owned())
    }

    #[test]
    fn key_parsing_table() {
        let ok: &[(&[u8], &str)] = &[
            (b"abc", "abc"),
            (b"  abc\t", "abc"),
            (b"8e03978e-40d5-43", "8e03978e-40d5-43"),
            (b"\"abc\"", "abc"),
            (b"\"a b\"", "a b"),
            (br#""a\"b""#, "a\"b"),
            (br#""a\\b""#, "a\\b"),
            (b"a\"b", "a\"b"),
            (b"~!#$%&'()*+-./", "~!#$%&'()*+-./"),
            (b"\"a,b\"", "a,b"),
            (b"0123456789abcdef", "0123456789abcdef"),
            (b"\"0123456789abcdef\"", "0123456789abcdef"),
        ];
        for (raw, want) in ok {
            assert_eq!(
                parse(raw).as_deref(),
                Ok(*want),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let bad: &[(&[u8], KeyError)] = &[
            (b"", KeyError::Empty),
            (b"   ", KeyError::Empty),
            (b"\"\"", KeyError::Empty),
            (b"0123456789abcdefX", KeyError::TooLong { max: 16 }),
            (b"\"0123456789abcdefX\"", KeyError::TooLong { max: 16 }),
            (b"a b", KeyError::NotVisibleAscii),
            (b"a,b", KeyError::NotSingle),
            (b"a, b", KeyError::NotSingle),
            (b"\"a\", \"b\"", KeyError::BadQuoting),
            (b"a\x7Fb", KeyError::NotVisibleAscii),
            (b"caf\xC3\xA9", KeyError::NotVisibleAscii),
            (b"a\0", KeyError::NotVisibleAscii),
            (b"\"a\tb\"", KeyError::NotVisibleAscii),
            (b"\"a\xFF\"", KeyError::NotVisibleAscii),
            (b"\"abc", KeyError::BadQuoting),
            (b"\"", KeyError::BadQuoting),
            (b"\"abc\";p=1", KeyError::BadQuoting),
            (b"\"abc\"x", KeyError::BadQuoting),
            (br#""a\nb""#, KeyError::BadQuoting),
            (br#""abc\"#, KeyError::BadQuoting),
            (b"\"0123456789abcdefX", KeyError::BadQuoting),
        ];
        for (raw, want) in bad {
            assert_eq!(parse(raw), Err(*want), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn bare_and_quoted_forms_name_the_same_key() {
        assert_eq!(parse_key(b"k-1", 255), parse_key(b"\"k-1\"", 255));
    }

    #[test]
    fn header_value_requotes_only_when_needed() {
        let k = |s: &[u8]| parse_key(s, 255).unwrap().header_value();
        assert_eq!(k(b"abc"), "abc");
        assert_eq!(k(b"\"abc\""), "abc");
        assert_eq!(k(br#""a b""#), r#""a b""#);
        assert_eq!(k(br#""\"x""#), r#""\"x""#);
        assert_eq!(k(br#""a \\ b""#), r#""a \\ b""#);
        // A comma would read back as a list: quoted.
        assert_eq!(k(br#""a,b""#), r#""a,b""#);
    }

    #[test]
    fn two_key_lines_are_never_one_key_whatever_their_values() {
        assert_eq!(parse_single_key(b"a", 2, 255), Err(KeyError::NotSingle));
        assert_eq!(parse_single_key(b"\"a\"", 3, 255), Err(KeyError::NotSingle));
        assert_eq!(
            parse_single_key(b"a", 1, 255).map(|k| k.as_str().to_owned()),
            Ok("a".to_owned())
        );
        assert!(KeyError::NotSingle.to_string().contains("exactly one"));
    }

    #[test]
    fn scoped_keys_never_collide_across_scopes() {
        let k = parse_key(b"k", 255).unwrap();
        let bc = parse_key(b"bc", 255).unwrap();
        let c = parse_key(b"c", 255).unwrap();
        assert_ne!(scoped_key(&[b"acme"], &k), scoped_key(&[b"globex"], &k));
        assert_ne!(scoped_key(&[b"a"], &bc), scoped_key(&[b"ab"], &c));
        assert_ne!(scoped_key(&[b"a", b"b"], &c), scoped_key(&[b"ab"], &c));
        assert_ne!(scoped_key(&[], &k), scoped_key(&[b""], &k));
        assert_eq!(scoped_key(&[b"acme"], &k), scoped_key(&[b"acme"], &k));
    }

    #[test]
    fn error_messages_name_the_fix() {
        assert!(KeyError::TooLong { max: 255 }.to_string().contains("255"));
        assert!(KeyError::BadQuoting.to_string().contains("quote"));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_respects_the_limit(raw in proptest::collection::vec(any::<u8>(), 0..64), max in 0u32..40) {
            if let Ok(k) = parse_key(&raw, max) {
                prop_assert!(!k.as_bytes().is_empty());
                prop_assert!(k.as_bytes().len() <= max as usize);
                prop_assert!(k.as_bytes().iter().all(|b| (0x20..=0x7E).contains(b)));
            }
        }

        #[test]
        fn header_value_parses_back_to_the_same_key(s in "[ -~]{1,40}") {
            if let Ok(k) = parse_key(s.as_bytes(), 255) {
                prop_assert_eq!(parse_key(k.header_value().as_bytes(), 255), Ok(k));
            }
        }
    }
}
