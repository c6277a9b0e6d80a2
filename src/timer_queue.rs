//! A per-worker queue of deadlines, driven by the root context's single tick timer.
//!
//! proxy-wasm gives each root context one tick period per worker. levee needs many timers
//! (shaper releases, backoff waits, body-arrival guards), each owned by one paused request.
//! This queue keeps them ordered by deadline; the host sets the tick period to the time until
//! the earliest deadline (and turns ticking off when the queue is empty, so an idle worker does
//! not wake up). A request that goes away cancels its timers at once, so nothing is left behind.

use std::collections::{BTreeMap, HashMap};

use crate::time::UnixNanos;

/// Which paused request a timer belongs to (the proxy-wasm http context id).
pub type ContextId = u32;

/// What the owner wants done when the timer fires; interpreted by the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerPurpose {
    /// A shaped (delayed) request may now continue.
    Release,
    /// A retry backoff wait is over: start the next attempt.
    Backoff,
    /// A request paused for its body saw no body callback in time.
    BodyGuard,
    /// Re-check a condition (e.g. wait for another request's idempotency record).
    Poll,
    /// Renew a lease or lock held by this request.
    Renew,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    pub context: ContextId,
    pub purpose: TimerPurpose,
}

/// Deadlines ordered by time, then by insertion order.
#[derive(Debug, Default)]
pub struct TimerQueue {
    by_deadline: BTreeMap<(UnixNanos, u64), Fired>,
    by_context: HashMap<ContextId, Vec<(UnixNanos, u64)>>,
    next_seq: u64,
}

impl TimerQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `purpose` for `context` at `at`.
    pub fn schedule(&mut self, context: ContextId, purpose: TimerPurpose, at: UnixNanos) {
        let id = (at, self.next_seq);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.by_deadline.insert(id, Fired { context, purpose });
        self.by_context.entry(context).or_default().push(id);
    }

    /// Cancels every timer of `context` with this purpose.
    pub fn cancel(&mut self, context: ContextId, purpose: TimerPurpose) {
        if let Some(ids) = self.by_context.get_mut(&context) {
            let by_deadline = &mut self.by_deadline;
            ids.retain(|id| {
                let matches = by_deadline.get(id).is_some_and(|f| f.purpose == purpose);
                if matches {
                    by_deadline.remove(id);
                }
                !matches
            });
            if ids.is_empty() {
                self.by_context.remove(&context);
            }
        }
    }

    /// Cancels every timer of `context` (the request finished or its client went away).
    pub fn cancel_all(&mut self, context: ContextId) {
        if let Some(ids) = self.by_context.remove(&context) {
            for id in ids {
                self.by_deadline.remove(&id);
            }
        }
    }

    /// Removes and returns every timer due at `now`, earliest first.
    pub fn pop_due(&mut self, now: UnixNanos) -> Vec<Fired> {
        let mut fired = Vec::new();
        while let Some((&id, _)) = self.by_deadline.first_key_value() {
            if id.0 > now {
                break;
            }
            if let Some(f) = self.by_deadline.remove(&id) {
                if let Some(ids) = self.by_context.get_mut(&f.context) {
                    ids.retain(|x| *x != id);
                    if ids.is_empty() {
                        self.by_context.remove(&f.context);
                    }
                }
                fired.push(f);
            }
        }
        fired
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<UnixNanos> {
        self.by_deadline.first_key_value().map(|(id, _)| id.0)
    }

    pub fn len(&self) -> usize {
        self.by_deadline.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_deadline.is_empty()
    }

    /// The latest deadline, if any.
    pub fn last_deadline(&self) -> Option<UnixNanos> {
        self.by_deadline.last_key_value().map(|(id, _)| id.0)
    }

    /// Whether `context` owns any timer.
    pub fn has_owner(&self, context: ContextId) -> bool {
        self.by_context.contains_key(&context)
    }

    /// Contexts that still own timers (for leak checks in tests and metrics).
    pub fn owners(&self) -> usize {
        self.by_context.len()
    }
}

/// The tick period to ask the host for: the time until `next`, at least 1 ms (the host's
/// granularity), or `None` (ticking off) when nothing waits.
pub fn tick_period_ms(next: Option<UnixNanos>, now: UnixNanos) -> Option<u64> {
    next.map(|at| {
        at.saturating_sub(now)
            .div_ceil(crate::time::NANOS_PER_MILLI)
            .max(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_and_only_when_due() {
        let mut q = TimerQueue::new();
        q.schedule(1, TimerPurpose::Release, 300);
        q.schedule(2, TimerPurpose::Backoff, 100);
        q.schedule(3, TimerPurpose::Release, 200);
        assert_eq!(q.pop_due(50), vec![]);
        let fired: Vec<_> = q.pop_due(250).iter().map(|f| f.context).collect();
        assert_eq!(fired, vec![2, 3]);
        assert_eq!(q.next_deadline(), Some(300));
        assert_eq!(q.owners(), 1);
    }

    #[test]
    fn a_request_that_goes_away_leaves_nothing_behind() {
        let mut q = TimerQueue::new();
        q.schedule(7, TimerPurpose::Release, 100);
        q.schedule(7, TimerPurpose::BodyGuard, 50);
        q.schedule(8, TimerPurpose::Release, 100);
        q.cancel_all(7);
        assert_eq!(q.len(), 1);
        assert_eq!(q.owners(), 1);
        assert_eq!(q.pop_due(1_000).len(), 1);
        assert!(q.is_empty());
        assert_eq!(q.owners(), 0);
    }

    #[test]
    fn cancel_removes_only_the_named_purpose() {
        let mut q = TimerQueue::new();
        q.schedule(7, TimerPurpose::BodyGuard, 50);
        q.schedule(7, TimerPurpose::Release, 100);
        q.cancel(7, TimerPurpose::BodyGuard);
        assert_eq!(
            q.pop_due(1_000),
            vec![Fired {
                context: 7,
                purpose: TimerPurpose::Release
            }]
        );
    }

    #[test]
    fn ticking_stops_when_nothing_waits() {
        assert_eq!(tick_period_ms(None, 5), None);
        assert_eq!(tick_period_ms(Some(5), 10), Some(1));
        assert_eq!(tick_period_ms(Some(10 + 2_500_000), 10), Some(3));
    }
}
