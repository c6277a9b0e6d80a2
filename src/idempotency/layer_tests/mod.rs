//! The idempotency layer over a [`MemoryStore`] with a fake clock: which record a full
//! bucket gives up ([`eviction`]), when stored answers are freed and that the byte counter
//! stays exact ([`answers`]), also under injected CAS conflicts, interleavings and threads
//! ([`exactness`]).

mod answers;
mod eviction;
mod exactness;

use serde_json::json;

use crate::idempotency::machine::{Begin, Outcome};
use crate::idempotency::response::StoredResponse;
use crate::idempotency::Fingerprint;
use crate::store::cas::ensure_key;
use crate::store::hash::KeyHash;
use crate::store::{MemoryStore, SharedStore};
use crate::time::NANOS_PER_SEC;

use super::layer::{Claim, HeldKey, IdempotencyLayer, BUDGET_KEY};

const SEC: u64 = NANOS_PER_SEC;
const T0: u64 = 1_700_000_000 * SEC;
/// Every request of these tests has the same method, path and body.
const FP: Fingerprint = Fingerprint([7; 16]);

/// A layer of `slots` record slots (`ttl` 10 s, `lock_timeout` 3 s) over a fresh store with
/// its keys created, as at configure time.
fn layer(slots: u32, max_stored_bytes: u64) -> (IdempotencyLayer, MemoryStore) {
    let doc = json!({ "idempotency": { "ttl": "10s", "lock_timeout": "3s",
        "max_body_bytes": max_stored_bytes.min(1024), "max_stored_bytes": max_stored_bytes } });
    let cfg = crate::config::parse(doc.to_string().as_bytes()).unwrap();
    let layer = IdempotencyLayer::new(&cfg.idempotency.unwrap(), slots);
    let store = MemoryStore::new();
    layer.table.ensure_created(&store).unwrap();
    for key in layer.plain_keys() {
        ensure_key(&store, &key, b"").unwrap();
    }
    (layer, store)
}

/// Keys with one seed share a bucket, whatever the table's size.
fn key(seed: u64, n: u64) -> KeyHash {
    KeyHash {
        slot_seed: seed,
        fingerprint: n,
    }
}

/// A key (fingerprint `n`) whose bucket is `bucket`.
fn key_in(l: &IdempotencyLayer, bucket: u32, n: u64) -> KeyHash {
    (0..)
        .map(|seed| key(seed, n))
        .find(|k| l.table.bucket_of(*k) == bucket)
        .unwrap()
}

/// An answer with a body of `body_len` bytes `tag`.
fn answer(tag: u8, body_len: usize) -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: vec![tag; body_len],
    }
}

/// Claims `k` for `owner`; panics unless the claim executes.
fn claim(l: &IdempotencyLayer, store: &dyn SharedStore, k: KeyHash, owner: u64, now: u64) -> Claim {
    let c = l.claim(store, k, FP, owner, now).unwrap();
    assert!(matches!(c.begin, Begin::Execute { .. }), "{c:?}");
    c
}

/// Completes the claim with `resp` stored.
fn store_answer(
    l: &IdempotencyLayer,
    store: &dyn SharedStore,
    k: KeyHash,
    c: &Claim,
    owner: u64,
    resp: &StoredResponse,
    now: u64,
) {
    let held = HeldKey {
        hash: k,
        slot: c.slot,
        owner,
    };
    let stored = Outcome::Stored {
        status: resp.status,
        body: None,
    };
    l.complete(store, held, stored, Some(resp), now).unwrap();
}

/// One whole request: claim `k`, store `resp`. Returns the claim.
fn execute(
    l: &IdempotencyLayer,
    store: &dyn SharedStore,
    k: KeyHash,
    owner: u64,
    resp: &StoredResponse,
    now: u64,
) -> Claim {
    let c = claim(l, store, k, owner, now);
    store_answer(l, store, k, &c, owner, resp, now);
    c
}

/// What a retry of `k` gets.
#[derive(Debug, PartialEq, Eq)]
enum Retry {
    Replayed(Vec<u8>),
    /// Completed, but its answer is gone (`409`).
    Gone,
    Executes,
    InFlight,
}

/// A retry of `k` at `now` (its claim is written only if it executes).
fn retry(l: &IdempotencyLayer, store: &dyn SharedStore, k: KeyHash, now: u64) -> Retry {
    match l.claim(store, k, FP, 0xFEED, now).unwrap().begin {
        Begin::Replay { record } => match l.replay(store, &record, "k") {
            crate::idempotency::Replay::Answer(a) => Retry::Replayed(a.body),
            crate::idempotency::Replay::Gone { .. } => Retry::Gone,
        },
        Begin::Execute { .. } => Retry::Executes,
        Begin::Conflict { .. } => Retry::InFlight,
        other => panic!("unexpected {other:?}"),
    }
}

/// The stored-bytes counter.
fn counted(store: &MemoryStore) -> u64 {
    let v = store.get(BUDGET_KEY).unwrap().unwrap().value;
    v.get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
}

/// Bytes the body keys hold.
fn held(store: &MemoryStore) -> u64 {
    store
        .keys()
        .iter()
        .filter(|k| k.starts_with("levee:v1:idem:body:"))
        .map(|k| store.get(k).unwrap().unwrap().value.len() as u64)
        .sum()
}

#[track_caller]
fn assert_exact(store: &MemoryStore) {
    assert_eq!(counted(store), held(store), "the counter drifted");
}
