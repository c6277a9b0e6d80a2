//! Turning a completed record into the answer a later same-key request gets.
//!
//! A replay is the stored status, headers and body, plus `Idempotent-Replayed: true` and the
//! `X-Idempotency-Key` echo. Headers that described the first *connection* rather than the
//! answer are dropped: hop-by-hop headers (RFC 9110 §7.6.1: `connection`, the names it lists,
//! `keep-alive`, `te`, `trailer`, `transfer-encoding`, `upgrade`, `proxy-*`), pseudo-headers,
//! and `content-length` (Envoy recomputes it for the replayed body).
//!
//! When the body blob is gone or is not the one the record names (the body table reused the
//! entry, a write failed), the answer is [`Replay::Gone`]: the request *did* complete, so the
//! client gets `409` "completed with status N" — never a second execution.

use crate::hop_by_hop::end_to_end;

use super::record::Completed;
use super::response::StoredResponse;

/// `Idempotent-Replayed: true` marks a replayed answer (Stripe's convention).
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Every response to a keyed request echoes the key.
pub const KEY_ECHO_HEADER: &str = "x-idempotency-key";

/// What to send for a [`super::Begin::Replay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Send this answer (headers already passed through [`replay_headers`]).
    Answer(StoredResponse),
    /// The answer is no longer available: `409` "completed with `status`".
    Gone { status: u16 },
}

/// Builds the replay for `record` from the blob read at its `BodyRef` (`None`: nothing there).
/// `key_echo` is the `X-Idempotency-Key` value (see `IdempotencyKey::header_value`).
pub fn replay(record: &Completed, blob: Option<&[u8]>, key_echo: &str) -> Replay {
    let gone = Replay::Gone {
        status: record.status,
    };
    let (Some(body_ref), Some(blob)) = (record.body.as_ref(), blob) else {
        return gone;
    };
    match StoredResponse::decode_for(blob, body_ref) {
        Ok(stored) if stored.status == record.status => Replay::Answer(StoredResponse {
            status: stored.status,
            headers: replay_headers(&stored.headers, key_echo),
            body: stored.body,
        }),
        _ => gone,
    }
}

/// The stored headers minus per-connection ones, plus the replay marker and the key echo.
pub fn replay_headers(stored: &[(String, String)], key_echo: &str) -> Vec<(String, String)> {
    let mut out = end_to_end(stored, &[REPLAYED_HEADER, KEY_ECHO_HEADER]);
    out.push((REPLAYED_HEADER.to_owned(), "true".to_owned()));
    out.push((KEY_ECHO_HEADER.to_owned(), key_echo.to_owned()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::fingerprint::Fingerprint;
    use crate::idempotency::record::BodyRef;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn replay_headers_drop_hop_by_hop_and_content_length_and_keep_order() {
        let stored = h(&[
            (":status", "201"),
            ("content-type", "application/json"),
            ("Connection", "close, X-Hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("upgrade", "h2c"),
            ("proxy-authenticate", "Basic"),
            ("Proxy-Connection", "keep-alive"),
            ("content-length", "17"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("x-idempotency-key", "spoofed"),
            ("idempotent-replayed", "false"),
            ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ]);
        assert_eq!(
            replay_headers(&stored, "k-1"),
            h(&[
                ("content-type", "application/json"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
                ("idempotent-replayed", "true"),
                ("x-idempotency-key", "k-1"),
            ])
        );
    }

    fn completed(body: Option<BodyRef>) -> Completed {
        Completed {
            fingerprint: Fingerprint([1; 16]),
            status: 201,
            stored_at: 0,
            expires_at: 10,
            body,
        }
    }

    fn stored() -> StoredResponse {
        StoredResponse {
            status: 201,
            headers: h(&[("content-length", "3"), ("x-a", "1")]),
            body: vec![0xFF, 1, 2],
        }
    }

    #[test]
    fn replay_uses_the_blob_the_record_names() {
        let e = stored().encode().unwrap();
        assert_eq!(
            replay(&completed(Some(e.body_ref(1, 2))), Some(&e.blob), "k"),
            Replay::Answer(StoredResponse {
                status: 201,
                headers: h(&[
                    ("x-a", "1"),
                    ("idempotent-replayed", "true"),
                    ("x-idempotency-key", "k")
                ]),
                body: vec![0xFF, 1, 2],
            })
        );
    }

    #[test]
    fn a_missing_or_foreign_blob_is_gone_not_reexecuted() {
        let e = stored().encode().unwrap();
        let body = e.body_ref(1, 2);
        let gone = Replay::Gone { status: 201 };
        assert_eq!(replay(&completed(None), Some(&e.blob), "k"), gone);
        assert_eq!(replay(&completed(Some(body)), None, "k"), gone);
        let other = StoredResponse {
            body: vec![9],
            ..stored()
        };
        let other = other.encode().unwrap().blob;
        assert_eq!(replay(&completed(Some(body)), Some(&other), "k"), gone);
    }

    #[test]
    fn a_blob_whose_status_disagrees_with_the_record_is_gone() {
        let e = StoredResponse {
            status: 200,
            ..stored()
        }
        .encode()
        .unwrap();
        assert_eq!(
            replay(&completed(Some(e.body_ref(1, 2))), Some(&e.blob), "k"),
            Replay::Gone { status: 201 }
        );
    }
}
