//! The idempotency layer over shared data: records in a bounded slot table, stored answers
//! under separate keys, and the stored-bytes budget under one key.
//!
//! Keys (all pre-created at configure time, so no request ever creates a key):
//! - `levee:v1:idem:records:<bucket>` — the per-key records (a few dozen bytes each), in a
//!   [`SlotTable`] of `max_tracked_keys` slots. When a new key finds its 4-way bucket full of
//!   live records, the **completed** record written longest ago is evicted
//!   ([`RECORD_EVICTION`]); an **in-flight** record never is, and a bucket of four in-flight
//!   records is an internal error (`on_internal_error`).
//!   Why evict at all: records stay live for `ttl` (24 h by default) after completing, so
//!   with unique keys per request every bucket fills up with finished answers long before
//!   the table as a whole is full, and refusing every new key of such a bucket (`503`) is
//!   worse than forgetting its oldest answer. What eviction costs: a retry of the evicted key
//!   executes again — the one promise idempotency makes, broken for the key least likely to
//!   be retried. It is counted (`levee_idempotency_evicted`), and `max_tracked_keys` should
//!   exceed the keys to keep for `ttl`. An in-flight record is different: evicting it would
//!   let a retry execute *while the first execution runs*, which no table size excuses.
//! - `levee:v1:idem:body:<slot>` — one stored answer per record slot, written *before* the
//!   record names it; the record's [`BodyRef`](crate::idempotency::BodyRef) (length +
//!   checksum) must match for a replay.
//! - `levee:v1:idem:budget` — bytes held by stored answers, bounded by `max_stored_bytes`;
//!   how it stays exact, and when answers are freed, is in [`super::answers`].

use crate::config::{ClientIpConfig, IdempotencyConfig};
use crate::idempotency::machine::{begin, finish, renew, Begin, Finish, Outcome};
use crate::idempotency::record::{evictable, Completed};
use crate::idempotency::replay::{replay, Replay};
use crate::idempotency::response::StoredResponse;
use crate::idempotency::{parse_single_key, scoped_key, Fingerprint, IdempotencyKey, KeyError};
use crate::request::keys::extract_key;
use crate::request::matcher::matches;
use crate::request::RequestAttributes;
use crate::store::hash::{KeyHash, KeyHasher};
use crate::store::slots::{Eviction, Lookup, Placement, SlotStep, SlotTable, TableError};
use crate::store::SharedStore;
use crate::time::UnixNanos;

use super::shared_keys::BODY_PREFIX;
pub use super::shared_keys::BUDGET_KEY;

/// How a new key makes room in a bucket full of live records: the completed record written
/// longest ago goes, an in-flight one never (see the module docs).
pub const RECORD_EVICTION: Eviction = Eviction::LeastRecentlyTouchedWhere(evictable);

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
        /// The scope and key as one name, the same on every Envoy (records in a backend).
        scoped: Vec<u8>,
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
    /// The claim evicted another key's completed record to make room.
    pub evicted: bool,
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

    /// Plain keys to pre-create: every body key and the budget.
    pub fn plain_keys(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.body_slots)
            .map(Self::body_key)
            .chain(std::iter::once(BUDGET_KEY.to_string()))
    }

    /// Shared-data bytes: the records, the body keys' names and map nodes, and the stored
    /// answers, which the stored-bytes counter keeps within `max_stored_bytes`.
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
        // When the key is optional, a request without one is not keyed whatever its method:
        // asking for the key first spares most requests the method read. In Envoy an absent
        // header costs a fraction of a present one (no answer to copy into the VM).
        if !cfg.required && req.header(&cfg.header).is_none() {
            return KeyCheck::NotKeyed;
        }
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
        let lines = req.header_lines(&cfg.header);
        let key = match parse_single_key(raw, lines, cfg.max_key_length) {
            Ok(k) => k,
            Err(e) => return KeyCheck::Invalid(e),
        };
        let mut scope = Vec::new();
        extract_key(&cfg.scope, client_ip, req, &mut scope);
        let scoped = scoped_key(&[&scope], &key);
        KeyCheck::Keyed {
            hash: hasher.hash(b"idem", &scoped),
            key,
            scoped,
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
        let (claim, (dropped, _)) =
            self.table
                .update_lookup(store, hash, now, RECORD_EVICTION, None, |lookup| {
                    self.decide_claim(lookup, fingerprint, owner, now)
                })?;
        let claim = claim?;
        if let Begin::Execute { .. } = claim.begin {
            // The slot is ours: the answer its previous (or evicted) record left is dead, and
            // so are those of the records the write dropped.
            self.free_dead_answer(store, claim.slot, Some(owner), now);
            self.free_dropped(store, &dropped, now);
        }
        Ok(claim)
    }

    /// The pure part of [`Self::claim`], run on every read of the key's bucket: whether this
    /// request executes (and the record it writes), or what it learns instead.
    fn decide_claim(
        &self,
        lookup: &Lookup,
        fingerprint: Fingerprint,
        owner: u64,
        now: UnixNanos,
    ) -> SlotStep<Result<Claim, TableError>> {
        let Some(slot) = lookup.placement.slot() else {
            return SlotStep::Keep(Err(TableError::Full));
        };
        let state = lookup.state();
        let decided = begin(&self.config, state, fingerprint, owner, now);
        let Begin::Execute { new_state, .. } = &decided else {
            let (begin, evicted) = (decided, false);
            return SlotStep::Keep(Ok(Claim {
                begin,
                slot,
                evicted,
            }));
        };
        SlotStep::Write {
            state: new_state.bytes.clone(),
            at_rest_at: new_state.at_rest_at,
            result: Ok(Claim {
                evicted: matches!(lookup.placement, Placement::Evict { .. }),
                begin: decided,
                slot,
            }),
        }
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
        let r = self
            .table
            .update_dropping(store, hash, now, Eviction::NeverLive, |state| {
                match state.and_then(|s| renew(&self.config, s, owner, now)) {
                    Some(ns) => SlotStep::Write {
                        state: ns.bytes,
                        at_rest_at: ns.at_rest_at,
                        result: true,
                    },
                    None => SlotStep::Keep(false),
                }
            });
        match r {
            Ok((renewed, dropped)) => {
                self.free_dropped(store, &dropped, now);
                renewed
            }
            Err(_) => false,
        }
    }

    /// Records how the owner's request ended. For `Stored`, `response` is the answer to keep
    /// (its blob is written first, if the budget has room; given back if the key turns out
    /// to be no longer ours).
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
                body: self.store_answer(store, held.slot, resp, now),
            },
            (o, _) => o,
        };
        if outcome == Outcome::Unknown {
            return Ok(());
        }
        let (owner, dropped) =
            self.table
                .update_dropping(
                    store,
                    held.hash,
                    now,
                    Eviction::NeverLive,
                    |state| match finish(&self.config, state, held.owner, outcome, now) {
                        Finish::Write(ns) => SlotStep::Write {
                            state: ns.bytes,
                            at_rest_at: ns.at_rest_at,
                            result: true,
                        },
                        Finish::Unchanged => SlotStep::Keep(true),
                        Finish::NotOwner => SlotStep::Keep(false),
                    },
                )?;
        self.free_dropped(store, &dropped, now);
        if let (false, Outcome::Stored { body: Some(_), .. }) = (owner, outcome) {
            // Our lock expired and the key moved on: the answer we wrote is nobody's.
            self.free_dead_answer(store, held.slot, None, now);
        }
        Ok(())
    }
}
