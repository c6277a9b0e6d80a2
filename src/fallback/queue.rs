//! Queue for later: accept a request with `202` now, deliver it to the upstream when it is back.
//!
//! # Where the queue lives — plainly
//! In **the memory of one worker VM inside Envoy**. It is not shared between workers, it is
//! not persisted, and it is **lost when Envoy restarts, the worker's VM is replaced (a new
//! `vm_config`/code) or the VM traps**; a request accepted with `202` is then never delivered.
//! Bounds are per worker: `max_items` and `max_bytes` apply to each worker's queue, so Envoy
//! can hold up to `--concurrency × max_bytes`. Each worker delivers what it accepted, from its
//! root context's tick. (A shared-data design would survive nothing more — shared data dies
//! with the process too — and would need pre-created slots and cross-worker claiming; per-worker
//! memory keeps it simple.) For work that must not be lost, use a real queue.
//!
//! # Accepting
//! [`RequestQueue::enqueue`] refuses a request that would exceed either bound ([`QueueFull`]:
//! the caller moves on to the next fallback, or `503`). An accepted request gets a random
//! [`QueueId`] and the reply [`accepted_reply`]: `202`, `{"id":"…","status":"queued"}`,
//! `x-levee-fallback: queued`. There is no `Location`: levee has no status endpoint to point
//! at, and a `Location` that 404s would be worse than none.
//!
//! # Delivering: at least once, with an idempotency key
//! Every delivery carries an `Idempotency-Key` (the configured idempotency header name): the
//! client's own if it sent one, else `levee-<id>`, fixed at enqueue time, so retries of one
//! item always carry the same key and the upstream (or levee's idempotency layer in front of
//! it) can deduplicate. Delivery is **at least once**: a delivery whose answer was lost (reset,
//! timeout, Envoy never called back within the lease) is sent again. The 202 is never what an
//! idempotency record stores; the delivered upstream answer is ([`super::deliveries`]).
//!
//! Deliveries are driven by [`super::deliveries`] from the caller's timer; retries, leases
//! and giving up are described in [`super::delivery`].
//!
//! # Counting bytes
//! An item counts its method, path, authority, header names and values, body and key, plus
//! [`ITEM_OVERHEAD_BYTES`] and [`HEADER_OVERHEAD_BYTES`] per header for the bookkeeping
//! around them, so `max_bytes` is close to the real heap use of a worker's queue.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::header_names::{AUTHORITY, CONTENT_TYPE, METHOD, PATH};
use crate::idempotency::response::StoredResponse;
use crate::random::RandomSource;
use crate::request::saved::SavedRequest;
use crate::retry::backoff::Backoff;
use crate::time::UnixNanos;

/// The id [`RequestQueue::enqueue`] hands out; defined with the deliveries that carry it.
pub use super::delivery::QueueId;
use super::delivery::{DeliveryOutcome, DeliveryPolicy, DeliveryTicket, Due, Settled};
use super::{FALLBACK_HEADER, MARK_QUEUED};
use crate::hop_by_hop::end_to_end;

/// Bookkeeping per item (the item, its map and schedule entries, its backoff state).
pub const ITEM_OVERHEAD_BYTES: u64 = 256;
/// Bookkeeping per stored header (two string headers).
pub const HEADER_OVERHEAD_BYTES: u64 = 48;
/// A queue's bounds (per worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_items: u32,
    pub max_bytes: u64,
}

/// Bytes `request` counts against `max_bytes` (see the module docs).
fn size_bytes(request: &SavedRequest) -> u64 {
    let headers: u64 = request
        .headers
        .iter()
        .map(|(n, v)| HEADER_OVERHEAD_BYTES + (n.len() + v.len()) as u64)
        .sum();
    ITEM_OVERHEAD_BYTES
        + (request.method.len() + request.path.len() + request.authority.len() + request.body.len())
            as u64
        + headers
}

/// Why a request was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFull {
    Items { max: u32 },
    Bytes { used: u64, needed: u64, max: u64 },
}

impl fmt::Display for QueueFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Items { max } => write!(f, "queue holds max_items ({max})"),
            Self::Bytes { used, needed, max } => {
                write!(
                    f,
                    "queue holds {used} bytes; {needed} more exceed max_bytes ({max})"
                )
            }
        }
    }
}

impl std::error::Error for QueueFull {}

#[derive(Debug, Clone)]
struct Item {
    request: SavedRequest,
    key: String,
    size: u64,
    accepted_at: UnixNanos,
    due_at: UnixNanos,
    attempts: u32,
    in_flight: Option<u32>,
    backoff: Backoff,
}

/// One worker's queue; see the module docs.
#[derive(Debug, Clone)]
pub struct RequestQueue {
    limits: QueueLimits,
    policy: DeliveryPolicy,
    key_header: String,
    items: HashMap<QueueId, Item>,
    schedule: BTreeSet<(UnixNanos, QueueId)>,
    bytes: u64,
}

impl RequestQueue {
    /// `key_header`: the idempotency header name (lower-case, e.g. `idempotency-key`).
    pub fn new(limits: QueueLimits, policy: DeliveryPolicy, key_header: &str) -> Self {
        Self {
            limits,
            policy,
            key_header: key_header.to_ascii_lowercase(),
            items: HashMap::new(),
            schedule: BTreeSet::new(),
            bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes counted against `max_bytes`.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The most bytes this worker's queue may count: `max_bytes`.
    pub fn memory_bound(&self) -> u64 {
        self.limits.max_bytes
    }

    /// Accepts `request`, due at once. Hop-by-hop headers, `content-length` and
    /// pseudo-headers are dropped; the idempotency header is set (see the module docs).
    pub fn enqueue(
        &mut self,
        mut request: SavedRequest,
        rng: &mut dyn RandomSource,
        now: UnixNanos,
    ) -> Result<QueueId, QueueFull> {
        if self.items.len() >= self.limits.max_items as usize {
            return Err(QueueFull::Items {
                max: self.limits.max_items,
            });
        }
        let mut id = QueueId(rng.next_u64());
        while self.items.contains_key(&id) {
            id = QueueId(rng.next_u64());
        }
        // A delivery is a new request on a new connection; `expect` asked the first one.
        let mut headers = end_to_end(&request.headers, &["expect"]);
        let client_key = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(&self.key_header))
            .map(|(_, v)| String::from_utf8_lossy(v))
            .find(|v| !v.trim().is_empty())
            .map(|v| v.into_owned());
        let key = match client_key {
            Some(k) => k,
            None => {
                let generated = format!("levee-{id}");
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&self.key_header));
                headers.push((self.key_header.clone(), generated.clone().into_bytes()));
                generated
            }
        };
        request.headers = headers.into();
        let size = size_bytes(&request) + key.len() as u64;
        if self.bytes.saturating_add(size) > self.limits.max_bytes {
            return Err(QueueFull::Bytes {
                used: self.bytes,
                needed: size,
                max: self.limits.max_bytes,
            });
        }
        self.bytes += size;
        self.schedule.insert((now, id));
        self.items.insert(
            id,
            Item {
                request,
                key,
                size,
                accepted_at: now,
                due_at: now,
                attempts: 0,
                in_flight: None,
                backoff: self.policy.backoff.clone(),
            },
        );
        Ok(id)
    }

    /// The request of a queued item.
    pub fn request(&self, id: QueueId) -> Option<&SavedRequest> {
        self.items.get(&id).map(|i| &i.request)
    }

    /// The idempotency key every delivery of the item carries.
    pub fn idempotency_key(&self, id: QueueId) -> Option<&str> {
        self.items.get(&id).map(|i| i.key.as_str())
    }

    /// `:method`, `:path`, `:authority`, then the stored headers (key included): what a
    /// callout needs.
    pub fn call_headers(&self, id: QueueId) -> Option<Vec<(String, String)>> {
        let r = self.request(id)?;
        let mut out = vec![
            (METHOD.to_owned(), r.method.clone()),
            (PATH.to_owned(), r.path.clone()),
            (AUTHORITY.to_owned(), r.authority.clone()),
        ];
        out.extend(r.header_strings());
        Some(out)
    }

    /// When the next item falls due (to arm the timer); `None` when empty.
    pub fn next_wake(&self) -> Option<UnixNanos> {
        self.schedule.first().map(|&(at, _)| at)
    }

    /// The next item whose time has come: to deliver (leased for `lease_ns`), or to give up.
    /// Call until `None`.
    pub fn next_due(&mut self, now: UnixNanos) -> Option<Due> {
        let (id, item) = loop {
            let &(at, id) = self.schedule.first()?;
            if at > now {
                return None;
            }
            self.schedule.remove(&(at, id));
            // Every schedule entry has its item; skip one that does not, rather than trust it.
            if let Some(item) = self.items.get_mut(&id) {
                break (id, item);
            }
        };
        if now.saturating_sub(item.accepted_at) >= self.policy.max_age_ns {
            let attempts = item.attempts;
            self.remove(id);
            return Some(Due::GiveUp { id, attempts });
        }
        item.attempts = item.attempts.saturating_add(1);
        item.in_flight = Some(item.attempts);
        item.due_at = now.saturating_add(self.policy.lease_ns);
        self.schedule.insert((item.due_at, id));
        Some(Due::Deliver(DeliveryTicket {
            id,
            attempt: item.attempts,
        }))
    }

    /// Records how the delivery `ticket` went; see [`DeliveryOutcome`].
    pub fn on_delivery_result(
        &mut self,
        ticket: DeliveryTicket,
        outcome: DeliveryOutcome,
        rng: &mut dyn RandomSource,
        now: UnixNanos,
    ) -> Settled {
        let max_age = self.policy.max_age_ns;
        let Some(item) = self.items.get_mut(&ticket.id) else {
            return Settled::Stale;
        };
        if let DeliveryOutcome::Delivered { .. } = outcome {
            // A late success of an earlier attempt still completes the item.
            let attempts = item.attempts;
            self.remove(ticket.id);
            return Settled::Delivered { attempts };
        }
        if item.in_flight != Some(ticket.attempt) {
            return Settled::Stale;
        }
        item.in_flight = None;
        let due = match outcome {
            DeliveryOutcome::NotSent { retry_at } => {
                item.attempts = item.attempts.saturating_sub(1);
                retry_at.max(now)
            }
            DeliveryOutcome::Failed { retry_after_ns } => {
                let delay = item
                    .backoff
                    .next_delay_ns(rng)
                    .max(retry_after_ns.unwrap_or(0));
                now.saturating_add(delay)
            }
            DeliveryOutcome::Delivered { .. } => now,
        };
        if due.saturating_sub(item.accepted_at) >= max_age {
            let attempts = item.attempts;
            self.remove(ticket.id);
            return Settled::GaveUp { attempts };
        }
        let old = (item.due_at, ticket.id);
        item.due_at = due;
        self.schedule.remove(&old);
        self.schedule.insert((due, ticket.id));
        Settled::RetryAt(due)
    }

    fn remove(&mut self, id: QueueId) {
        if let Some(item) = self.items.remove(&id) {
            self.schedule.remove(&(item.due_at, id));
            self.bytes = self.bytes.saturating_sub(item.size);
        }
    }
}

/// The `202` that tells the client its request was queued.
pub fn accepted_reply(id: QueueId) -> StoredResponse {
    StoredResponse {
        status: 202,
        headers: vec![
            (CONTENT_TYPE.to_owned(), "application/json".to_owned()),
            (FALLBACK_HEADER.to_owned(), MARK_QUEUED.to_owned()),
        ],
        body: format!("{{\"id\":\"{id}\",\"status\":\"queued\"}}").into_bytes(),
    }
}
