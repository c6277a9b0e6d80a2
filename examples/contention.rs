//! The AWS "Exponential Backoff and Jitter" contention experiment, driven by levee's own
//! [`levee::retry::Backoff`].
//!
//! Why: the jitter choice in `retry.jitter` is a trade between the load retries put on a
//! contended resource and how long clients take to get through. This replays the Architecture
//! Blog's model (Marc Brooker, 2015) with the delays levee really computes, so the README's
//! table comes from the shipped formulas, not from a re-implementation of them.
//!
//! The model, a discrete-event simulation: one row with a version number (optimistic
//! concurrency). Each of N clients, all starting at t = 0, reads the version, then writes it
//! back with "expect version v"; the write succeeds only if nobody wrote in between, otherwise
//! the client backs off and starts over (read, write). Every network hop takes |Normal(10 ms,
//! 2 ms)|. A client stops after its first successful write. Reported, averaged over trials:
//! **calls** = writes the row received (the contended work), **time** = when the last client
//! succeeded. Retry n waits `Backoff::next_delay_ns` (n = 0 for the first retry, as levee counts retries;
//! the blog's code starts at n = 1, which doubles every delay).
//!
//! ```text
//! cargo run --release --example contention [-- --clients 10,20,50,100 --trials 100 --base-ms 5 --cap-ms 2000 --seed 1]
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use levee::config::Jitter;
use levee::random::{RandomSource, SplitMix64};
use levee::retry::Backoff;

const MS: f64 = 1_000_000.0;

/// The strategies compared: levee's four jitters, plus immediate retry as the blog's reference.
const STRATEGIES: [(&str, Option<Jitter>); 5] = [
    ("none (exponential)", Some(Jitter::None)),
    ("full", Some(Jitter::Full)),
    ("equal", Some(Jitter::Equal)),
    ("decorrelated", Some(Jitter::Decorrelated)),
    ("no backoff (reference)", None),
];

struct Params {
    clients: Vec<usize>,
    trials: u64,
    base: Duration,
    cap: Duration,
    seed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The read reaches the row; the client learns the current version.
    Read,
    /// The write with the version read earlier reaches the row.
    Write(u64),
}

/// One trial: returns (writes the row received, completion time in ns).
fn trial(clients: usize, strategy: Option<Jitter>, p: &Params, rng: &mut SplitMix64) -> (u64, u64) {
    let mut backoffs: Vec<Backoff> = (0..clients)
        .map(|_| Backoff::new(strategy.unwrap_or(Jitter::None), p.base, p.cap))
        .collect();
    // (arrival time at the row, tie-breaking sequence, client, event)
    let mut queue = BinaryHeap::new();
    let mut seq = 0u64;
    for c in 0..clients {
        queue.push(Reverse((net_delay(rng), seq, c, Event::Read)));
        seq += 1;
    }
    let (mut version, mut calls, mut end) = (0u64, 0u64, 0u64);
    while let Some(Reverse((t, _, c, event))) = queue.pop() {
        let next = match event {
            // The version travels back, then the write travels to the row.
            Event::Read => Some((t + net_delay(rng) + net_delay(rng), Event::Write(version))),
            Event::Write(seen) => {
                calls += 1;
                if seen == version {
                    version += 1;
                    end = end.max(t + net_delay(rng)); // the client hears of its success
                    None
                } else {
                    let wait = match (strategy, backoffs.get_mut(c)) {
                        (Some(_), Some(b)) => b.next_delay_ns(rng),
                        _ => 0,
                    };
                    // The failure travels back, the client waits, the new read travels out.
                    Some((t + net_delay(rng) + wait + net_delay(rng), Event::Read))
                }
            }
        };
        if let Some((at, ev)) = next {
            queue.push(Reverse((at, seq, c, ev)));
            seq += 1;
        }
    }
    (calls, end)
}

/// |Normal(10 ms, 2 ms)| in ns (Box–Muller on levee's SplitMix64).
fn net_delay(rng: &mut SplitMix64) -> u64 {
    let u1 = unit(rng).max(f64::MIN_POSITIVE);
    let u2 = unit(rng);
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    ((10.0 + 2.0 * z).abs() * MS) as u64
}

fn unit(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn parse() -> Result<Params, String> {
    let mut p = Params {
        clients: vec![10, 20, 30, 40, 50, 100],
        trials: 100,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(2000),
        seed: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let (flag, value) = match pair {
            [f, v] => (f.as_str(), v.as_str()),
            _ => return Err(format!("{} needs a value", pair.concat())),
        };
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag {
            "--clients" => {
                p.clients = value
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse::<usize>()
                            .map_err(|e| format!("--clients {c}: {e}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--trials" => p.trials = num(value)?.max(1),
            "--base-ms" => p.base = Duration::from_millis(num(value)?),
            "--cap-ms" => p.cap = Duration::from_millis(num(value)?),
            "--seed" => p.seed = num(value)?,
            _ => {
                return Err(format!(
                    "unknown flag {flag} (use --clients, --trials, --base-ms, --cap-ms, --seed)"
                ))
            }
        }
    }
    Ok(p)
}

fn main() {
    let p = match parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("contention: {e}");
            std::process::exit(2);
        }
    };
    // results[clients][strategy] = (mean calls, mean completion ms)
    let mut results = Vec::new();
    for &n in &p.clients {
        let mut row = Vec::new();
        for (i, (_, strategy)) in STRATEGIES.iter().enumerate() {
            let mut rng = SplitMix64::seeded(p.seed ^ ((n as u64) << 32) ^ i as u64);
            let (mut calls, mut time) = (0u64, 0u64);
            for _ in 0..p.trials {
                let (c, t) = trial(n, *strategy, &p, &mut rng);
                calls += c;
                time += t;
            }
            row.push((
                calls as f64 / p.trials as f64,
                time as f64 / p.trials as f64 / MS,
            ));
        }
        results.push(row);
    }
    println!(
        "Contention: N clients, one optimistic-concurrency row, network |N(10 ms, 2 ms)| per hop, \
         base_delay {} ms, max_delay {} ms, {} trials each (seed {}); delays from levee::retry::Backoff.\n",
        p.base.as_millis(),
        p.cap.as_millis(),
        p.trials,
        p.seed
    );
    for (title, pick) in [
        ("Total calls (writes the row received)", 0usize),
        ("Completion time (ms, last client done)", 1),
    ] {
        println!("{title}\n");
        let names: Vec<&str> = STRATEGIES.iter().map(|(name, _)| *name).collect();
        println!("| clients | {} |", names.join(" | "));
        println!("|---:|{}", "---:|".repeat(names.len()));
        for (n, row) in p.clients.iter().zip(&results) {
            let cells: Vec<String> = row
                .iter()
                .map(|(calls, ms)| {
                    if pick == 0 {
                        format!("{calls:.0}")
                    } else {
                        format!("{ms:.0}")
                    }
                })
                .collect();
            println!("| {n} | {} |", cells.join(" | "));
        }
        println!();
    }
}
