//! Hostile input: bad bytes in keyed headers, hostile idempotency keys and X-Forwarded-For,
//! bodies at and over every limit.

use std::time::Duration;

use super::common::*;
use super::harness::*;

/// Bytes no UTF-8 decoder accepts, but HTTP/1.1 allows in a field value (obs-text).
fn not_utf8(n: usize, salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| 0x80 | ((i as u8).wrapping_add(salt) & 0x7f))
        .collect()
}

#[test]
fn non_utf8_and_50_kb_values_in_a_keyed_header_are_keys_like_any_other() {
    let (up, envoy) = start(serde_json::json!({
        "rate_limits": [{ "name": "per-user", "key": ["header:x-user"], "limit": 3, "window": "1h" }],
        "idempotency": { "scope": ["header:x-user"] },
    }));
    let users = [
        not_utf8(12, 0),
        not_utf8(12, 1),
        not_utf8(50_000, 2),
        b"\xff".to_vec(),
    ];
    for user in &users {
        let statuses: Vec<u16> = (0..5)
            .map(|_| send(envoy.port(), &Request::get("/x").header("x-user", user)).status)
            .collect();
        assert_eq!(
            statuses,
            [200, 200, 200, 429, 429],
            "each value is its own exact bucket"
        );
    }
    // The same bytes as an idempotency scope: one execution, then replays.
    for user in &users[..3] {
        let post = Request::post("/pay", b"a".to_vec())
            .header("x-user", user)
            .header("idempotency-key", "scoped");
        let first = send(envoy.port(), &post);
        let again = send(envoy.port(), &post);
        // The per-user limit is spent, so the 429 answers before the key is claimed.
        assert!(
            first.status == 429 && again.status == 429,
            "{} {}",
            first.status,
            again.status
        );
    }
    let fresh = not_utf8(40, 9);
    let post = Request::post("/pay", b"a".to_vec())
        .header("x-user", &fresh)
        .header("idempotency-key", "scoped");
    assert_eq!(send(envoy.port(), &post).status, 200);
    let replay = send(envoy.port(), &post);
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    // Over Envoy's header limit (60 KiB by default) Envoy itself refuses, levee never sees it.
    let r = send(
        envoy.port(),
        &Request::get("/x").header("x-user", not_utf8(70_000, 3)),
    );
    assert_eq!(r.status, 431);
    assert_eq!(up.count(), 4 * 3 + 1);
    assert_clean(&envoy);
}

#[test]
fn hostile_idempotency_keys_get_400_and_leave_nothing_locked() {
    let (up, envoy) = start(serde_json::json!({ "idempotency": { "max_key_length": 64 } }));
    let post = |key: &[u8]| {
        send(
            envoy.port(),
            &Request::post("/pay", b"x".to_vec()).header("idempotency-key", key),
        )
    };
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("control character", b"ab\x01cd".to_vec()),
        ("tab inside", b"ab\tcd".to_vec()),
        ("DEL", b"ab\x7fcd".to_vec()),
        ("not UTF-8", not_utf8(10, 0)),
        ("UTF-8 but not ASCII", "clé".as_bytes().to_vec()),
        ("65 bytes", vec![b'k'; 65]),
        ("50 KB", vec![b'k'; 50_000]),
        ("unclosed quote", b"\"abc".to_vec()),
        ("bad escape", b"\"a\\bc\"".to_vec()),
        ("parameters after the string", b"\"abc\";x=1".to_vec()),
        ("only a quoted empty string", b"\"\"".to_vec()),
        ("only spaces", b"   ".to_vec()),
    ];
    let mut by_levee = 0;
    for (what, key) in &hostile {
        let r = post(key);
        assert!(r.elapsed < Duration::from_secs(5), "{what}");
        // Envoy's HTTP/1 codec refuses some bytes itself (a plain 400, levee never sees it).
        if r.header("content-type").as_deref() == Some("application/problem+json") {
            assert_problem(&r, 400);
            by_levee += 1;
        } else {
            assert_eq!(r.status, 400, "{what}: {}", r.text());
        }
    }
    assert!(
        by_levee >= hostile.len() - 3,
        "only {by_levee} reached levee"
    );
    assert_eq!(up.count(), 0, "no hostile key reached the upstream");
    // A quoted key with spaces is fine, and names the same key as its bare form would.
    assert_eq!(post(b"\"a b\"").status, 200);
    assert_eq!(post(b"plain").status, 200);
    assert_eq!(
        post(b"plain").header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(envoy.stat("levee_idempotency_invalid_key"), by_levee as u64);
    assert_clean(&envoy);
}

#[test]
fn forged_and_100_entry_x_forwarded_for_lands_in_the_trusted_position_bucket() {
    // One trusted proxy appends the real client: the client is the second entry from the
    // right, whatever it forged to the left of it.
    let (_up, envoy) = start(serde_json::json!({
        "client_ip": { "xff_trusted_hops": 1 },
        "rate_limits": [{ "name": "per-ip", "key": ["client_ip"], "limit": 2, "window": "1h" }],
    }));
    let xff = |forged: usize, client: &str| {
        let mut entries: Vec<String> = (0..forged)
            .map(|i| format!("10.9.{}.{}", i / 250, i % 250))
            .collect();
        entries.push(client.to_string());
        entries.push("192.0.2.1".to_string()); // the trusted proxy's own entry
        entries.join(", ")
    };
    let get = |v: &str| {
        send(
            envoy.port(),
            &Request::get("/x").header("x-forwarded-for", v),
        )
        .status
    };
    // Different forgeries, one client: one bucket.
    assert_eq!(get(&xff(100, "203.0.113.7")), 200);
    assert_eq!(get(&xff(3, "203.0.113.7")), 200);
    assert_eq!(get(&xff(0, "203.0.113.7")), 429);
    // Garbage, IPv6 with a port, too few entries: a status, never a failure.
    for v in [
        "not, an, ip",
        "[2001:db8::1]:443, 192.0.2.1",
        "192.0.2.1",
        ",,,,",
        "1.2.3.4:99999, x",
    ] {
        let s = get(v);
        assert!(s == 200 || s == 429, "{v}: {s}");
    }
    let raw = [
        b"10.0.0.1, ".to_vec(),
        not_utf8(30, 4),
        b", 192.0.2.1".to_vec(),
    ]
    .concat();
    let s = send(
        envoy.port(),
        &Request::get("/x").header("x-forwarded-for", raw),
    )
    .status;
    assert!(s == 200 || s == 429, "{s}");
    assert_clean(&envoy);
}

#[test]
fn bodies_at_and_over_every_limit() {
    // Idempotency holds at most 1024 body bytes; callout mode buffers at most 2048; Envoy's
    // own buffer is 64 KiB. Each limit: exactly at it passes, one byte over is a 413.
    let config = callout_upstream(
        &serde_json::json!({ "max_body_bytes": 2048 }),
        &serde_json::json!({ "idempotency": { "max_body_bytes": 1024 } }),
    );
    let (up, envoy) = start_with(config, |o| {
        o.per_connection_buffer_limit_bytes = Some(65_536)
    });
    let keyed =
        |key: &str, n: usize| Request::post("/pay", vec![b'b'; n]).header("idempotency-key", key);
    assert_eq!(send(envoy.port(), &keyed("at-limit", 1024)).status, 200);
    assert_problem(&send(envoy.port(), &keyed("over", 1025)), 413);
    assert_problem(
        &send(envoy.port(), &keyed("over-chunked", 1025).chunked()),
        413,
    );
    // The 413 released the key: the same key with a body that fits executes at once.
    assert_eq!(send(envoy.port(), &keyed("over", 10)).status, 200);
    // Unkeyed requests meet the callout limit.
    assert_eq!(
        send(envoy.port(), &Request::post("/p", vec![b'c'; 2048])).status,
        200
    );
    assert_problem(
        &send(envoy.port(), &Request::post("/p", vec![b'c'; 2049])),
        413,
    );
    assert_problem(
        &send(
            envoy.port(),
            &Request::post("/p", vec![b'c'; 2049]).chunked(),
        ),
        413,
    );
    // Over Envoy's buffer: Envoy answers 413 itself; the key is left unlocked.
    let huge = send(envoy.port(), &keyed("huge", 200_000));
    assert_eq!(huge.status, 413);
    assert_eq!(send(envoy.port(), &keyed("huge", 10)).status, 200);
    let reached: Vec<usize> = up.requests().iter().map(|r| r.body.len()).collect();
    assert_eq!(
        reached,
        [1024, 10, 2048, 10],
        "only bodies within every limit reached the upstream"
    );
    assert_clean(&envoy);
}

#[test]
fn two_idempotency_key_lines_or_a_merged_list_get_400_and_lock_nothing() {
    // Envoy's single-header read returns only the first of two lines; levee counts the lines.
    // Both ways levee reads headers: one by one (few headers), and the whole map (many).
    for cfg in [
        serde_json::json!({ "idempotency": {} }),
        serde_json::json!({ "idempotency": {}, "rate_limits": [{ "name": "many",
            "key": ["header:x-a", "header:x-b", "header:x-c"], "limit": 100, "window": "1m" }] }),
    ] {
        let (up, envoy) = start(cfg);
        let post = || Request::post("/pay", b"x".to_vec());
        let two_lines = send(
            envoy.port(),
            &post()
                .header("idempotency-key", "aaa")
                .header("idempotency-key", "bbb"),
        );
        assert_problem(&two_lines, 400);
        assert!(
            two_lines.text().contains("exactly one"),
            "{}",
            two_lines.text()
        );
        for merged in ["aaa,bbb", "aaa, bbb", "\"aaa\", \"bbb\""] {
            let r = send(envoy.port(), &post().header("idempotency-key", merged));
            assert_problem(&r, 400);
        }
        assert_eq!(
            up.count(),
            0,
            "no request with several keys reached the upstream"
        );
        // Nothing was locked or recorded under either key: each executes afresh.
        for key in ["aaa", "bbb"] {
            let r = send(envoy.port(), &post().header("idempotency-key", key));
            assert_eq!(r.status, 200, "{key}: {}", r.text());
            assert!(r.header("idempotent-replayed").is_none(), "{key}");
        }
        assert_eq!(up.count(), 2);
        assert_eq!(envoy.stat("levee_idempotency_invalid_key"), 4);
        assert_clean(&envoy);
    }
}
