//! Property tests: the machine never panics, and never hands a live lock to a second owner.

use super::{cfg, SEC};
use crate::idempotency::record::Record;
use crate::idempotency::{at_rest_at, begin, finish, renew, Begin, Fingerprint, Outcome};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000 * SEC;

fn fp(n: u8) -> Fingerprint {
    Fingerprint([n; 16])
}

proptest! {
    #[test]
    fn transitions_never_panic_on_arbitrary_state(
        state in proptest::collection::vec(any::<u8>(), 0..70),
        owner in any::<u64>(),
        now in any::<u64>(),
    ) {
        let _ = begin(&cfg(), Some(&state), fp(1), owner, now);
        let _ = renew(&cfg(), &state, owner, now);
        let _ = finish(&cfg(), Some(&state), owner, Outcome::Released, now);
        let _ = at_rest_at(&state);
    }

    #[test]
    fn at_most_one_owner_holds_a_live_lock(
        steps in proptest::collection::vec((0u64..4, 0u64..40), 1..30),
    ) {
        // Owners 0..4 race begin at increasing times; a live InFlight is only ever replaced
        // after its lock expired.
        let c = cfg();
        let mut state: Vec<u8> = Vec::new();
        let mut now = T0;
        for (owner, dt) in steps {
            now += dt * SEC;
            let before = Record::decode(&state);
            if let Begin::Execute { new_state, .. } = begin(&c, Some(&state), fp(1), owner, now) {
                if let Some(Record::InFlight(r)) = before {
                    prop_assert!(r.owner == owner || now >= r.locked_until);
                }
                state = new_state.bytes;
            }
        }
    }
}
