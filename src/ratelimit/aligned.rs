//! Epoch-aligned windows: the arithmetic the fixed window and the sliding window counter share.
//!
//! Why aligned to the Unix epoch rather than to a key's first request: the window is then a
//! function of `now` alone, so every worker agrees on it without coordinating, and a header
//! can say when it ends.
//!
//! Why a stored window may be *later* than the one `now` falls in: Envoy's clock is wall time,
//! and it can step back (NTP). A stored window that has not ended yet keeps counting until it
//! has, so a clock step never hands out a fresh allowance.

use super::Params;
use crate::time::UnixNanos;

/// The window length in nanoseconds; a 0 ns window counts as 1 ns (no division by zero).
pub fn length(params: &Params) -> u64 {
    params.window_ns.max(1)
}

/// The start of the epoch-aligned window of `length` (≥ 1) that contains `now`.
pub fn start_containing(now: UnixNanos, length: u64) -> UnixNanos {
    now - now % length
}

/// The end of the window that starts at `start`, saturating at the end of time.
pub fn end(start: UnixNanos, length: u64) -> UnixNanos {
    start.saturating_add(length)
}

/// Whether a stored window that starts at `stored` still counts when `now` falls in the
/// window starting at `current`: it is that window, or a later one the clock stepped back from.
pub fn still_counts(stored: UnixNanos, current: UnixNanos) -> bool {
    stored >= current
}

/// Whether the window starting at `later` comes right after the one starting at `earlier`.
pub fn is_next(earlier: UnixNanos, later: UnixNanos, length: u64) -> bool {
    earlier.checked_add(length) == Some(later)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_start_on_multiples_of_their_length_since_the_epoch() {
        assert_eq!(start_containing(125, 60), 120);
        assert_eq!(start_containing(120, 60), 120);
        assert_eq!(start_containing(119, 60), 60);
        assert_eq!(start_containing(u64::MAX, 1), u64::MAX);
        assert_eq!(end(120, 60), 180);
        assert_eq!(end(u64::MAX - 5, 60), u64::MAX);
    }

    #[test]
    fn a_later_stored_window_keeps_counting_after_a_clock_step_back() {
        assert!(still_counts(120, 120));
        assert!(still_counts(180, 120));
        assert!(!still_counts(60, 120));
    }

    #[test]
    fn only_the_adjacent_window_is_next_and_the_end_of_time_has_none() {
        assert!(is_next(60, 120, 60));
        assert!(!is_next(0, 120, 60));
        assert!(!is_next(u64::MAX - 5, u64::MAX, 60));
    }
}
