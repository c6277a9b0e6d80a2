//! One abusive client (many keys, many requests) against everybody else's limits.
//!
//! The documented policy (the book's rate-limiting chapter, `src/store/slots.rs`): a rate limit's table has
//! `max_tracked_keys / 4` buckets of 4 ways; a key lives in the one bucket a keyed hash picks,
//! and when a new key finds its bucket full of live entries, the least recently *written*
//! one is evicted — its key starts over with a fresh allowance. So an abuser cannot touch
//! another client's count, and can make it forget only by landing at least 4 of its own live
//! keys in that client's bucket after the client's last admitted request. With the abuser's
//! `n` keys spread over `b` buckets, that happens to a given bucket with probability
//! `P(Poisson(n / b) ≥ 4)`: for 20 000 keys over 16 384 buckets, about 3.6 %.

use std::collections::HashSet;

use super::common::*;
use super::harness::*;

const VICTIMS: usize = 300;
const LIMIT: usize = 5;
const ABUSIVE_KEYS: usize = 20_000;

/// `P(X ≥ 4)` for `X ~ Poisson(lambda)`.
fn poisson_at_least_4(lambda: f64) -> f64 {
    let e = (-lambda).exp();
    1.0 - e * (1.0 + lambda + lambda * lambda / 2.0 + lambda.powi(3) / 6.0)
}

/// `n` requests over keep-alive connections on `threads` threads; the statuses, by request.
fn flood(port: u16, n: usize, threads: usize, req: impl Fn(usize) -> Request + Sync) -> Vec<u16> {
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let req = &req;
                s.spawn(move || {
                    let mut c = Client::connect(port);
                    (t * per..((t + 1) * per).min(n))
                        .map(|i| c.send(&req(i)).status)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn an_abusive_client_cannot_exhaust_others_and_evicts_no_more_than_the_policy_allows() {
    let (up, envoy) = start(serde_json::json!({
        "limits": { "max_tracked_keys": 65536 },
        "rate_limits": [{ "name": "per-user", "key": ["header:x-user"], "algorithm": "token_bucket",
                          "limit": LIMIT, "window": "1h" }],
    }));
    let get = |user: String| Request::get("/x").header("x-user", user);
    // The victims use up their allowance exactly.
    let statuses = flood(envoy.port(), VICTIMS * (LIMIT + 1), 2, |i| {
        get(format!("victim-{}", i / (LIMIT + 1)))
    });
    for (v, chunk) in statuses.chunks(LIMIT + 1).enumerate() {
        assert_eq!(
            chunk.iter().filter(|s| **s == 200).count(),
            LIMIT,
            "victim {v}: {chunk:?}"
        );
    }
    // The abuser: 20 000 distinct keys, plus a storm on one key of its own.
    let rss_before = envoy.rss_bytes();
    let abuse = flood(envoy.port(), ABUSIVE_KEYS, 4, |i| {
        get(format!("abuser-{i}"))
    });
    assert!(abuse.iter().all(|s| *s == 200));
    let storm = flood(envoy.port(), 2_000, 2, |_| get("abuser-storm".into()));
    assert_eq!(storm.iter().filter(|s| **s == 200).count(), LIMIT);
    // Shared data stays within the bound the tables imply (keys are pre-created; only
    // their values fill up), whatever the number of distinct clients.
    let grown = envoy.rss_bytes().saturating_sub(rss_before);
    let bound = envoy.stat("levee_memory_bound_bytes");
    eprintln!(
        "fairness: RSS grew {} KiB under the flood; the tables' bound is {} KiB",
        grown / 1024,
        bound / 1024
    );
    assert!(
        grown <= bound + (32 << 20),
        "RSS grew {grown} bytes, bound {bound}"
    );

    // Nobody else's allowance was consumed: fresh clients get exactly their limit.
    let fresh = flood(envoy.port(), 50 * (LIMIT + 1), 2, |i| {
        get(format!("fresh-{}", i / (LIMIT + 1)))
    });
    for chunk in fresh.chunks(LIMIT + 1) {
        assert_eq!(
            chunk.iter().filter(|s| **s == 200).count(),
            LIMIT,
            "{chunk:?}"
        );
    }
    // Exhausted victims stay exhausted unless the abuser filled their bucket.
    let after = flood(envoy.port(), VICTIMS, 2, |i| get(format!("victim-{i}")));
    let forgotten: HashSet<usize> = after
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == 200)
        .map(|(i, _)| i)
        .collect();
    assert!(after.iter().all(|s| *s == 200 || *s == 429));
    let buckets = 65_536.0 / 4.0;
    let p = poisson_at_least_4(ABUSIVE_KEYS as f64 / buckets);
    let expected = p * VICTIMS as f64;
    let sd = (VICTIMS as f64 * p * (1.0 - p)).sqrt();
    let bound = (expected + 5.0 * sd).ceil() as usize;
    eprintln!(
        "fairness: {} of {VICTIMS} exhausted victims forgotten after {ABUSIVE_KEYS} abusive keys \
         (policy: {:.1} expected, P = {:.2} %; bound {bound})",
        forgotten.len(),
        expected,
        100.0 * p
    );
    assert!(
        forgotten.len() <= bound,
        "{} victims lost their state; the policy allows ~{expected:.1}",
        forgotten.len()
    );
    // And a forgotten victim starts over with exactly its limit, no more.
    if let Some(&v) = forgotten.iter().next() {
        let again = flood(envoy.port(), LIMIT + 2, 1, |_| get(format!("victim-{v}")));
        assert_eq!(
            again.iter().filter(|s| **s == 200).count(),
            LIMIT - 1,
            "{again:?}"
        );
    }
    assert_eq!(envoy.stat("levee_internal_errors"), 0);
    drop(up);
    assert_clean(&envoy);
}
