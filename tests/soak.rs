//! `make soak`: minutes of mixed traffic through levee in a real Envoy (2 workers), with
//! upstream faults injected, reporting Envoy's RSS over time, errors by kind, and any lost or
//! duplicated idempotent execution — which must be zero.
//!
//! Ignored by `make test`; `make soak` runs it with `--ignored` (`SOAK_SECS`, default 120;
//! `SOAK_THREADS`, default 6). The traffic, on one test upstream behind four routes:
//! - `/api/…` GETs, rate-limited per user (token bucket, 20 users of varying greed);
//! - `/flaky` GETs through a breaker with a static fallback, 25 % of them failing
//!   (503, a stall past the route timeout, a reset);
//! - keyed POSTs to `/pay/…` (router mode) and `/cpay/…` (callout mode with retries), with
//!   idempotency keys that clients retry, sometimes concurrently; each first attempt may
//!   meet a fault: `500` (stored), `503` (released), a reset before any answer (released:
//!   nothing executed), a reset mid-answer or a stall past the timeout (the upstream acted,
//!   the answer was lost: unknown, locked).
//!
//! What "executed" means at the test upstream: it received the request and did not answer
//! `503` or reset before answering. For every key: at most one execution (no duplicate),
//! and every 2xx the client saw for it — first answer or replay — carries that execution's
//! `x-upstream-seq` (nothing lost, nothing mixed up). Clients retry a key only within 10 s
//! of its first use, well inside `lock_timeout` (30 s), so an "unknown" outcome is never
//! legitimately retaken during the run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use harness::wire;
use harness::*;

const LOCK_TIMEOUT: &str = "30s";
const RETRY_HORIZON: Duration = Duration::from_secs(10);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config() -> serde_json::Value {
    serde_json::json!({
        "rate_limits": [{ "name": "per-user", "match": { "path_prefix": "/api/" }, "key": ["header:x-user"],
                          "algorithm": "token_bucket", "limit": 50, "window": "1s", "burst": 20 }],
        "idempotency": { "methods": ["POST"], "ttl": "30s", "lock_timeout": LOCK_TIMEOUT,
                         "max_body_bytes": 4096, "max_stored_bytes": 2097152,
                         "on_internal_error": "deny" },
        "upstreams": {
            "pay": { "circuit_breaker": { "failure_threshold": 50, "reset_timeout": "1s" } },
            "cpay": { "forward": "callout", "cluster": "upstream", "timeout": "800ms",
                      "retry": { "max_retries": 2, "base_delay": "20ms", "max_delay": "100ms", "deadline": "3s",
                                 "retry_on": ["connect_failure", "503"] } },
            "flaky": { "circuit_breaker": { "failure_threshold": 5, "reset_timeout": "1s" },
                       "fallback": [{ "static": { "status": 200, "body": "fallback" }, "methods": ["GET"] }] }
        },
        "routes": [
            { "match": { "path_prefix": "/pay/" }, "upstream": "pay" },
            { "match": { "path_prefix": "/cpay/" }, "upstream": "cpay" },
            { "match": { "path_prefix": "/flaky" }, "upstream": "flaky" }
        ]
    })
}

/// A keep-alive connection that reconnects after any error.
struct Conn {
    port: u16,
    r: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn send(&mut self, req: &Request) -> Result<Response, String> {
        let started = Instant::now();
        if self.r.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
            s.set_nodelay(true).ok();
            s.set_read_timeout(Some(Duration::from_secs(10))).ok();
            self.r = Some(BufReader::new(s));
        }
        let result = (|| {
            let r = self.r.as_mut().unwrap();
            let req = req.clone().header("connection", "keep-alive");
            r.get_mut()
                .write_all(&req.to_bytes())
                .map_err(|e| e.to_string())?;
            let head = wire::read_head(r)
                .map_err(|e| e.to_string())?
                .ok_or("closed")?;
            let status: u16 = head
                .start_line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or("status")?;
            let framing = wire::response_framing(&head, &req.method, status);
            let body = wire::read_body(r, framing).map_err(|e| e.to_string())?;
            let close = head.has_token("connection", "close");
            Ok((
                Response {
                    status,
                    headers: head.headers,
                    body,
                    elapsed: started.elapsed(),
                },
                close,
            ))
        })();
        match result {
            Ok((resp, close)) => {
                if close {
                    self.r = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.r = None;
                Err(e)
            }
        }
    }
}

/// The fault a keyed request's first attempt meets, as request headers for the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Status500,
    Status503,
    ResetBefore,
    ResetMidAnswer,
    Stall,
}

impl Fault {
    fn pick(roll: u64) -> Fault {
        match roll % 100 {
            0..=69 => Fault::None,
            70..=77 => Fault::Status500,
            78..=87 => Fault::Status503,
            88..=91 => Fault::ResetBefore,
            92..=95 => Fault::ResetMidAnswer,
            _ => Fault::Stall,
        }
    }

    fn apply(self, req: Request) -> Request {
        match self {
            Fault::None => req,
            Fault::Status500 => req.header("x-upstream-status", "500"),
            Fault::Status503 => req.header("x-upstream-status", "503"),
            Fault::ResetBefore => req.header("x-upstream-reset", "1"),
            Fault::ResetMidAnswer => req.header("x-upstream-reset", "after-headers"),
            Fault::Stall => req.header("x-upstream-delay-ms", "1500"),
        }
    }
}

/// Whether the test upstream executed a request it received (see the module docs).
fn executed(r: &ReceivedRequest) -> bool {
    r.header("x-upstream-status").as_deref() != Some("503")
        && r.header("x-upstream-reset").as_deref() != Some("1")
}

#[derive(Default)]
struct Tally {
    by_kind: HashMap<String, u64>,
    /// Per key: the `x-upstream-seq` of every 2xx the client saw.
    seen_2xx: HashMap<String, Vec<u64>>,
    latencies_ms: Vec<u64>,
}

impl Tally {
    fn count(&mut self, kind: String) {
        *self.by_kind.entry(kind).or_insert(0) += 1;
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
#[ignore = "minutes long: run with `make soak`"]
fn soak() {
    let secs = env_u64("SOAK_SECS", 120);
    let threads = env_u64("SOAK_THREADS", 6) as usize;
    let up = Upstream::start();
    let envoy = Envoy::start(EnvoyOptions {
        concurrency: 2,
        route_timeout: Duration::from_millis(800),
        ..EnvoyOptions::levee(&config().to_string(), up.port())
    });
    let port = envoy.port();
    let stop = AtomicBool::new(false);
    let next_key = AtomicU64::new(0);
    let tally = Mutex::new(Tally::default());
    let recent: Mutex<Vec<(String, String, Instant)>> = Mutex::new(Vec::new());
    let mut rss = Vec::new();
    let started = Instant::now();
    thread::scope(|s| {
        for t in 0..threads {
            let (stop, next_key, tally, recent) = (&stop, &next_key, &tally, &recent);
            s.spawn(move || {
                let mut rng = Rng(0x50a4 + t as u64);
                let mut conn = Conn { port, r: None };
                while !stop.load(Ordering::Relaxed) {
                    let roll = rng.next() % 100;
                    if roll < 40 {
                        let user = format!("u{}", (rng.next() % 20).pow(2) % 20);
                        let r = conn.send(
                            &Request::get(&format!("/api/{}", rng.next() % 7))
                                .header("x-user", user),
                        );
                        let kind = match r {
                            Ok(r) => format!("api {}", r.status),
                            Err(e) => format!("api error: {e}"),
                        };
                        tally.lock().unwrap().count(kind);
                    } else if roll < 60 {
                        let mut req = Request::get("/flaky").timeout(Duration::from_secs(5));
                        match rng.next() % 20 {
                            0..=2 => req = req.header("x-upstream-status", "503"),
                            3 => req = req.header("x-upstream-delay-ms", "1500"),
                            4 => req = req.header("x-upstream-reset", "1"),
                            _ => {}
                        }
                        let r = try_send(port, &req);
                        let kind = match r {
                            Ok(r) if r.header("x-levee-fallback").is_some() => {
                                format!("flaky {} (fallback)", r.status)
                            }
                            Ok(r) => format!("flaky {}", r.status),
                            Err(e) => format!("flaky error: {e}"),
                        };
                        tally.lock().unwrap().count(kind);
                    } else {
                        // A keyed POST: a fresh key, or a retry of a recent one.
                        let retry = rng.next() % 100 < 35;
                        let picked = if retry {
                            let mut rec = recent.lock().unwrap();
                            rec.retain(|(_, _, at)| at.elapsed() < RETRY_HORIZON);
                            (!rec.is_empty()).then(|| {
                                let i = (rng.next() % rec.len() as u64) as usize;
                                (rec[i].0.clone(), rec[i].1.clone())
                            })
                        } else {
                            None
                        };
                        let (key, path, fault) = match picked {
                            Some((k, p)) => (k, p, Fault::None),
                            None => {
                                let n = next_key.fetch_add(1, Ordering::Relaxed);
                                let key = format!("key-{n}");
                                let path = if n % 2 == 0 {
                                    format!("/pay/{n}")
                                } else {
                                    format!("/cpay/{n}")
                                };
                                recent.lock().unwrap().push((
                                    key.clone(),
                                    path.clone(),
                                    Instant::now(),
                                ));
                                (key, path, Fault::pick(rng.next()))
                            }
                        };
                        let req = fault.apply(
                            Request::post(&path, format!("amount={}", key.len()).into_bytes())
                                .header("idempotency-key", &key)
                                .timeout(Duration::from_secs(8)),
                        );
                        let r = if fault == Fault::None {
                            conn.send(&req)
                        } else {
                            try_send(port, &req).map_err(|e| e.to_string())
                        };
                        let mut tl = tally.lock().unwrap();
                        let mode = if path.starts_with("/pay/") {
                            "router"
                        } else {
                            "callout"
                        };
                        match r {
                            Ok(r) => {
                                tl.latencies_ms.push(r.elapsed.as_millis() as u64);
                                let replay = if r.header("idempotent-replayed").is_some() {
                                    " replay"
                                } else {
                                    ""
                                };
                                tl.count(format!("keyed {mode} {}{replay}", r.status));
                                if (200..300).contains(&r.status) {
                                    let seq = r
                                        .header("x-upstream-seq")
                                        .and_then(|s| s.parse().ok())
                                        .unwrap_or(0);
                                    tl.seen_2xx.entry(key).or_default().push(seq);
                                }
                            }
                            Err(e) => tl.count(format!(
                                "keyed {mode} error ({fault:?}): {}",
                                e.split(':').next().unwrap_or("")
                            )),
                        }
                    }
                }
            });
        }
        // The clock: sample Envoy's RSS until time is up.
        while started.elapsed() < Duration::from_secs(secs) {
            rss.push((started.elapsed().as_secs(), envoy.rss_bytes()));
            thread::sleep(
                Duration::from_secs(5)
                    .min(Duration::from_secs(secs).saturating_sub(started.elapsed())),
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
    rss.push((started.elapsed().as_secs(), envoy.rss_bytes()));
    // Let stalled upstream answers finish before reading the upstream's log.
    thread::sleep(Duration::from_secs(2));

    // Executions per key at the upstream.
    let mut executions: HashMap<String, Vec<u64>> = HashMap::new();
    let mut received: HashMap<String, u64> = HashMap::new();
    for r in up.requests() {
        if let Some(key) = r.header("idempotency-key") {
            *received.entry(key.clone()).or_insert(0) += 1;
            if executed(&r) {
                executions.entry(key).or_default().push(r.seq);
            }
        }
    }
    let tally = tally.into_inner().unwrap();
    let duplicated: Vec<(&String, &Vec<u64>)> =
        executions.iter().filter(|(_, e)| e.len() > 1).collect();
    let mut lost = Vec::new();
    for (key, seqs) in &tally.seen_2xx {
        let exec = executions.get(key).map(Vec::as_slice).unwrap_or_default();
        for seq in seqs {
            if exec.len() != 1 || exec[0] != *seq {
                lost.push((key.clone(), *seq, exec.to_vec()));
            }
        }
    }

    // The report.
    let total: u64 = tally.by_kind.values().sum();
    println!(
        "\n== levee soak: {secs} s, {threads} client threads, {total} requests ({:.0}/s) ==",
        total as f64 / secs as f64
    );
    let mut kinds: Vec<_> = tally.by_kind.iter().collect();
    kinds.sort();
    for (k, n) in kinds {
        println!("  {n:>8}  {k}");
    }
    let mut lat = tally.latencies_ms.clone();
    lat.sort_unstable();
    if !lat.is_empty() {
        let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
        println!(
            "keyed latency ms: p50 {} p90 {} p99 {} max {}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0)
        );
    }
    println!("Envoy RSS (MiB) over time:");
    for (t, b) in &rss {
        println!("  {t:>5} s  {:>8.1}", *b as f64 / (1024.0 * 1024.0));
    }
    let keys = next_key.load(Ordering::Relaxed);
    println!(
        "idempotency: {keys} keys, {} executed, {} received attempts; duplicated executions: {}, lost or mixed-up answers: {}",
        executions.len(),
        received.values().sum::<u64>(),
        duplicated.len(),
        lost.len()
    );
    for (k, v) in [
        "levee_internal_errors",
        "levee_idempotency_stored",
        "levee_idempotency_replayed",
        "levee_idempotency_conflict",
        "levee_idempotency_released",
        "levee_idempotency_unknown",
        "levee_held_requests",
    ]
    .iter()
    .map(|m| (m, envoy.stat(m)))
    {
        println!("  {k}: {v}");
    }
    let log = envoy.log();
    let panics = log
        .lines()
        .filter(|l| l.contains("panicked") || l.contains("Function: proxy_on_"))
        .count();
    println!("wasm panics / traps in Envoy's log: {panics}");

    assert!(
        duplicated.is_empty(),
        "duplicated executions: {:?}",
        &duplicated[..duplicated.len().min(10)]
    );
    assert!(
        lost.is_empty(),
        "lost or mixed-up answers: {:?}",
        &lost[..lost.len().min(10)]
    );
    assert_eq!(panics, 0);
    assert_eq!(
        envoy.wait_for_stat("levee_held_requests", 0, Duration::from_secs(5)),
        0
    );
    let first = rss
        .iter()
        .find(|(t, _)| *t >= 10)
        .or(rss.first())
        .map_or(0, |r| r.1);
    let last = rss.last().map_or(0, |r| r.1);
    assert!(
        last < first.saturating_mul(2).max(first + (64 << 20)),
        "RSS grew from {first} to {last} bytes"
    );
}
