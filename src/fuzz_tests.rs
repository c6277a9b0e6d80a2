//! Fuzzing by property tests: everything levee reads from outside must never panic.
//!
//! levee runs inside Envoy, where a Rust panic traps the VM: the request gets a 503 and,
//! without `failure_policy: FAIL_RELOAD`, the filter stays broken for every later request. So
//! every byte that comes from outside — the plugin JSON, request headers, upstream answers,
//! and the shared-data values any worker VM (or an older levee) may have written — is fed
//! here in bulk, valid, mutated and random, and the code that reads it must stay total.
//!
//! Why proptest and not `cargo fuzz`: only the stable toolchain exists where levee is built
//! and tested, and `cargo fuzz` needs nightly. The targets below are the same idea —
//! structure-aware mutation of valid inputs plus raw bytes — with a bounded number of cases
//! so they run inside `make test` in seconds. Raise the budget for a long run with
//! `PROPTEST_CASES=100000 cargo test --lib fuzz_tests`.
//!
//! - [`abi_wire`]: the header maps and status codes the host returns through the ABI.
//! - [`config_json`]: plugin config (`config::parse`).
//! - [`parsers`]: `Idempotency-Key`, `Retry-After` /
//!   `X-RateLimit-Reset`, `X-Forwarded-For`, key extraction.
//! - [`state`], [`stored_records`]: every stored-state byte layout, from garbage and from
//!   bit-flipped valid states.
//! - [`flow`]: the whole [`crate::pipeline::flow::RequestFlow`] driven by random requests,
//!   upstream answers, timers and disconnects against a [`crate::store::MemoryStore`] that
//!   injects CAS conflicts and host failures.
//!
//! A finding becomes a named regression test in [`regressions`].

mod abi_wire;
mod config_json;
mod flow;
mod parsers;
mod regressions;
mod state;
mod stored_records;

use crate::random::{RandomSource, SplitMix64};

/// A proptest config with `cases` cases and a fixed seed, so that `make test` is
/// deterministic. `PROPTEST_CASES=n` changes the budget and `PROPTEST_RNG_SEED=n` the seed
/// (`FUZZ_RANDOM=1`: a fresh seed each run, for exploring).
pub(crate) fn cases(cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngSeed};
    let defaults = Config::default();
    let from_env = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok());
    let rng_seed = match defaults.rng_seed {
        RngSeed::Random if std::env::var_os("FUZZ_RANDOM").is_none() => RngSeed::Fixed(0x1e7ee),
        seed => seed,
    };
    Config {
        cases: from_env.unwrap_or(cases),
        rng_seed,
        // Failures are reported with their input; no regression files in the source tree.
        failure_persistence: None,
        ..defaults
    }
}

/// Flips, overwrites, truncates, extends or splices `bytes`, `rounds` times.
pub(crate) fn mutate_bytes(bytes: &mut Vec<u8>, rng: &mut SplitMix64, rounds: u32) {
    for _ in 0..rounds {
        let len = bytes.len() as u64;
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len) as usize;
                bytes[i] = interesting_byte(rng);
            }
            2 if len > 0 => bytes.truncate(rng.below(len) as usize),
            3 => {
                let n = rng.below(16);
                for _ in 0..n {
                    bytes.push(interesting_byte(rng));
                }
            }
            4 if len >= 8 => {
                // Overwrite an aligned-or-not u64 with an extreme value.
                let i = rng.below(len - 7) as usize;
                let v = interesting_u64(rng);
                bytes[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            5 if len > 1 => {
                let i = rng.below(len) as usize;
                let j = rng.below(len) as usize;
                bytes.swap(i, j);
            }
            _ => {
                let i = rng.below(len + 1) as usize;
                bytes.insert(i, interesting_byte(rng));
            }
        }
    }
}

/// A byte that tends to sit on a boundary: 0, 0xff, a tag or version value, a varint marker.
pub(crate) fn interesting_byte(rng: &mut SplitMix64) -> u8 {
    const BYTES: [u8; 12] = [
        0, 1, 2, 0x7f, 0x80, 0xff, 0x11, 0x21, 0x31, 0x41, 0x51, 0xfe,
    ];
    if rng.below(2) == 0 {
        BYTES[rng.below(BYTES.len() as u64) as usize]
    } else {
        rng.next_u64() as u8
    }
}

/// A u64 that tends to break arithmetic: 0, 1, MAX, MAX/2, powers of two, now-ish.
pub(crate) fn interesting_u64(rng: &mut SplitMix64) -> u64 {
    match rng.below(8) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => u64::MAX / 2,
        4 => 1 << rng.below(64),
        5 => (1 << rng.below(64)) - 1,
        6 => 1_700_000_000_000_000_000u64.wrapping_add(rng.below(1 << 40)),
        _ => rng.next_u64(),
    }
}
