//! The idempotency layer over shared data: records in a bounded slot table, stored answers
//! under separate keys, and the stored-bytes budget under one key.
//!
//! Keys (all pre-created at configure time, so no request ever creates a key):
//! - `levee:v1:idem:records:<bucket>` — the per-key records (a few dozen bytes each), in a
//!   [`SlotTable`] that never evicts a live record ([`Eviction::NeverLive`]): evicting one
//!   would let a retry execute twice. A full table is an internal error (`on_internal_error`).
//! - `levee:v1:idem:body:<slot>` — one stored answer per record slot, written *before* the
//!   record names it; the record's [`BodyRef`] (length + checksum) must match for a replay.
//! - `levee:v1:idem:budget` — bytes held by stored answers (a counter), bounded by
//!   `max_stored_bytes`: storing an answer adds its size (minus what it replaces), and a new
//!   record claiming a slot frees the answer the slot's previous record left behind.

use crate::config::{ClientIpConfig, IdempotencyConfig};
use crate::idempotency::machine::{begin, finish, renew, Begin, Finish, Outcome};
use crate::idempotency::record::Completed;
use crate::idempotency::replay::{replay, Replay};
use crate::idempotency::response::StoredResponse;
use crate::idempotency::{parse_key, scoped_key, Fingerprint, IdempotencyKey, KeyError};
use crate::request::keys::extract_key;
use crate::request::matcher::matches;
use crate::request::RequestAttributes;
use crate::store::cas::{update_key, Step};
use crate::store::hash::{KeyHash, KeyHasher};
use crate::store::slots::{Eviction, SlotTable, TableError};
use crate::store::SharedStore;
use crate::time::UnixNanos;

use super::MAX_CAS_ATTEMPTS;

pub const BUDGET_KEY: &str = "levee:v1:idem:budget";
const BODY_PREFIX: &str = "levee:v1:idem:body:";

/// What the request's `Idempotency-Key` header says.
#[derive(Debug)]
pub enum KeyCheck {
    /// The layer does not apply (method or match) or the request carries no key.
    NotKeyed,
    /// `required` and absent.
    Missing,
    Invalid(KeyError),
    Keyed {
        key: IdempotencyKey,
        hash: KeyHash,
    },
}

/// A key this request holds: where its record lives and who owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldKey {
    pub hash: KeyHash,
    pub slot: u32,
    pub owner: u64,
}

/// The result of claiming a key.
#[derive(Debug)]
pub struct Claim {
    pub begin: Begin,
    /// The record's slot (names the body key).
    pub slot: u32,
}

#[derive(Debug)]
pub struct IdempotencyLayer {
    pub config: IdempotencyConfig,
    pub table: SlotTable,
    /// Body keys (one per record slot).
    pub body_slots: u32,
}

impl IdempotencyLayer {
    pub fn new(config: &IdempotencyConfig, slots: u32) -> Self {
        let table = SlotTable::new("idem", "records", slots);
        let body_slots = table.slots();
        Self {
            config: config.clone(),
            table,
            body_slots,
        }
    }

    pub fn body_key(slot: u32) -> String {
        format!("{BODY_PREFIX}{slot}")
    }

    /// Plain keys to pre-create: every body key and the budget.
    pub fn plain_keys(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.body_slots)
            .map(Self::body_key)
            .chain(std::iter::once(BUDGET_KEY.to_string()))
    }

    /// Shared-data bytes: the records, the body keys' names and map nodes, and the stored
    /// answers, which the stored-bytes counter keeps within `max_stored_bytes` (a slot's dead
    /// answer is freed when a new record claims the slot).
    pub fn memory_bound(&self) -> u64 {
        let records = self.table.memory_bound(64);
        let body_keys =
            u64::from(self.body_slots).saturating_mul(BODY_PREFIX.len() as u64 + 10 + 160);
        records
            .saturating_add(body_keys)
            .saturating_add(self.config.max_stored_bytes)
    }

    /// Reads the key header of a request this layer applies to.
    pub fn check_key(
        &self,
        hasher: &KeyHasher,
        client_ip: &ClientIpConfig,
        req: &dyn RequestAttributes,
    ) -> KeyCheck {
        let cfg = &self.config;
        if !cfg.methods.iter().any(|m| m == req.method()) || !matches(&cfg.matcher, req) {
            return KeyCheck::NotKeyed;
        }
        let Some(raw) = req.header(&cfg.header) else {
            return if cfg.required {
                KeyCheck::Missing
            } else {
                KeyCheck::NotKeyed
            };
        };
        let key = match parse_key(raw, cfg.max_key_length) {
            Ok(k) => k,
            Err(e) => return KeyCheck::Invalid(e),
        };
        let mut scope = Vec::new();
        let _ = extract_key(&cfg.scope, client_ip, req, &mut scope);
        let scoped = scoped_key(&[&scope], &key);
        KeyCheck::Keyed {
            hash: hasher.hash(b"idem", &scoped),
            key,
        }
    }

    /// Claims the key (or learns that it is taken, completed, or bound to another request).
    pub fn claim(
        &self,
        store: &dyn SharedStore,
        hash: KeyHash,
        fingerprint: Fingerprint,
        owner: u64,
        now: UnixNanos,
    ) -> Result<Claim, TableError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let lookup = self.table.lookup(store, hash, now, Eviction::NeverLive)?;
            let slot = lookup.placement.slot().ok_or(TableError::Full)?;
            let b = begin(
                &self.config,
                lookup.state.as_deref(),
                fingerprint,
                owner,
                now,
            );
            if let Begin::Execute { new_state, .. } = &b {
                match self.table.try_commit(
                    store,
                    &lookup,
                    &new_state.bytes,
                    new_state.at_rest_at,
                    now,
                ) {
                    // The slot is ours: whatever answer its previous record left is dead.
                    Ok(_) => self.clear_body(store, slot),
                    Err(TableError::Conflict) => continue,
                    Err(e) => return Err(e),
                }
            }
            return Ok(Claim { begin: b, slot });
        }
        Err(TableError::Contended)
    }

    /// The answer to replay for a completed record.
    pub fn replay(&self, store: &dyn SharedStore, record: &Completed, key_echo: &str) -> Replay {
        let blob = record
            .body
            .and_then(|b| store.get(&Self::body_key(b.slot)).ok().flatten())
            .map(|v| v.value);
        replay(record, blob.as_deref(), key_echo)
    }

    /// Extends the owner's lock; false when it is no longer the owner.
    pub fn renew(
        &self,
        store: &dyn SharedStore,
        hash: KeyHash,
        owner: u64,
        now: UnixNanos,
    ) -> bool {
        let r = self.table.update(
            store,
            hash,
            now,
            Eviction::NeverLive,
            MAX_CAS_ATTEMPTS,
            |state| match state.and_then(|s| renew(&self.config, s, owner, now)) {
                Some(ns) => crate::store::slots::SlotStep::Write {
                    state: ns.bytes,
                    at_rest_at: ns.at_rest_at,
                    result: true,
                },
                None => crate::store::slots::SlotStep::Keep(false),
            },
        );
        matches!(r, Ok(true))
    }

    /// Records how the owner's request ended. For `Stored`, `response` is the answer to keep
    /// (its blob is written first, if the budget has room).
    pub fn complete(
        &self,
        store: &dyn SharedStore,
        held: HeldKey,
        outcome: Outcome,
        response: Option<&StoredResponse>,
        now: UnixNanos,
    ) -> Result<(), TableError> {
        let outcome = match (outcome, response) {
            (Outcome::Stored { status, .. }, Some(resp)) => Outcome::Stored {
                status,
                body: self.store_body(store, held.slot, resp, now),
            },
            (o, _) => o,
        };
        if outcome == Outcome::Unknown {
            return Ok(());
        }
        self.table.update(
            store,
            held.hash,
            now,
            Eviction::NeverLive,
            MAX_CAS_ATTEMPTS,
            |state| match finish(&self.config, state, held.owner, outcome, now) {
                Finish::Write(ns) => crate::store::slots::SlotStep::Write {
                    state: ns.bytes,
                    at_rest_at: ns.at_rest_at,
                    result: (),
                },
                Finish::Unchanged | Finish::NotOwner => crate::store::slots::SlotStep::Keep(()),
            },
        )
    }

    /// Writes the answer's blob if the budget has room; its reference, or `None`.
    fn store_body(
        &self,
        store: &dyn SharedStore,
        slot: u32,
        resp: &StoredResponse,
        now: UnixNanos,
    ) -> Option<crate::idempotency::record::BodyRef> {
        let encoded = resp.encode().ok()?;
        let key = Self::body_key(slot);
        let old = store
            .get(&key)
            .ok()
            .flatten()
            .map_or(0, |v| v.value.len() as u64);
        let new = encoded.blob.len() as u64;
        if !self.adjust_stored_bytes(store, new, old) {
            log::warn!("levee idempotency: max_stored_bytes reached; remembering the status only");
            return None;
        }
        if store.set(&key, &encoded.blob, None).is_err() {
            self.adjust_stored_bytes(store, old, new);
            return None;
        }
        Some(encoded.body_ref(slot, now))
    }

    /// Frees the answer a slot's previous record left behind (shared data has no delete:
    /// writing an empty value frees the bytes), when a new record claims the slot.
    fn clear_body(&self, store: &dyn SharedStore, slot: u32) {
        let key = Self::body_key(slot);
        let Ok(Some(current)) = store.get(&key) else {
            return;
        };
        if current.value.is_empty() {
            return;
        }
        if store.set(&key, &[], Some(current.cas)).is_ok() {
            self.adjust_stored_bytes(store, 0, current.value.len() as u64);
        }
    }

    /// The bytes held by stored answers, as one shared counter: `add` more, `remove` fewer.
    /// An increase that would pass `max_stored_bytes` is refused (false).
    fn adjust_stored_bytes(&self, store: &dyn SharedStore, add: u64, remove: u64) -> bool {
        let max = self.config.max_stored_bytes;
        let result = update_key(store, BUDGET_KEY, MAX_CAS_ATTEMPTS, |current| {
            let used = current
                .and_then(|v| v.value.get(..8).and_then(|b| b.try_into().ok()))
                .map_or(0, u64::from_le_bytes);
            let next = used.saturating_sub(remove).saturating_add(add);
            if add > remove && next > max {
                return Step::Keep(false);
            }
            Step::Write {
                value: next.to_le_bytes().to_vec(),
                result: true,
            }
        });
        matches!(result, Ok(true))
    }
}
