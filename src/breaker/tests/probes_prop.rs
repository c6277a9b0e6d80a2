//! Property: HALF_OPEN never has more live probes than `half_open_max_in_flight`.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Admit,
    /// Record the result of the n-th outstanding ticket (modulo their number).
    Finish {
        which: usize,
        failed: bool,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Admit),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(which, failed)| Op::Finish { which, failed }),
        2 => (0u64..3_000).prop_map(|ms| Op::Advance { ms }),
    ]
}

proptest! {
    #[test]
    fn concurrent_probes_never_exceed_half_open_max_in_flight(
        max in 1u32..4,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let c = BreakerConfig {
            failure_threshold: 2,
            reset_timeout: Duration::from_secs(1),
            half_open_successes: 3,
            half_open_max_in_flight: max,
            ..cfg()
        };
        let mut h = Harness::new(c);
        // Outstanding tickets and, for probes, their lease end.
        let mut outstanding: Vec<(Ticket, Option<UnixNanos>)> = Vec::new();
        for op in ops {
            match op {
                Op::Admit => match h.admit() {
                    Admission::Allow(t) => outstanding.push((t, None)),
                    Admission::Probe { ticket, lease_until } => outstanding.push((ticket, Some(lease_until))),
                    Admission::Reject { retry_after_ns } => prop_assert!(retry_after_ns > 0),
                },
                Op::Finish { which, failed } if !outstanding.is_empty() => {
                    let (t, _) = outstanding.swap_remove(which % outstanding.len());
                    h.record(t, failed);
                }
                Op::Finish { .. } => {}
                Op::Advance { ms } => h.advance(ms * MS),
            }
            let now = h.now();
            let s = state::State::decode(&h.cfg, &h.bytes);
            // Probes of the current epoch that still hold an unexpired lease.
            let live = outstanding
                .iter()
                .filter(|(t, until)| t.epoch == s.epoch && t.probe.is_some() && until.is_some_and(|u| u > now))
                .count();
            prop_assert!(live <= max as usize, "{live} live probes > {max}");
            prop_assert!(s.leases.len() <= max as usize);
        }
    }
}
