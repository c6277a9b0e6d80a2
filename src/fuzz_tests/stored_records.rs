//! The stored records other than limits and breakers, fed garbage and bit-flipped valid
//! encodings: slot buckets, idempotency records and their stored answers, retry budgets,
//! stale-cache index entries, and the per-worker delivery queue under any schedule.

use proptest::prelude::*;

use super::{cases, interesting_u64, mutate_bytes};
use crate::config::{self, IdempotencyConfig, RetryBudget};
use crate::fallback::delivery::{DeliveryOutcome, DeliveryPolicy, Due};
use crate::fallback::index_entry::Entry as IndexEntry;
use crate::fallback::queue::{QueueLimits, RequestQueue};
use crate::idempotency::record::Record;
use crate::idempotency::{self as idem, Fingerprint, Outcome, StoredResponse};
use crate::random::{RandomSource, SplitMix64};
use crate::request::saved::SavedRequest;
use crate::retry::backoff::Backoff;
use crate::retry::budget as retry_budget;
use crate::store::bucket::{Bucket, CodecError, Entry as SlotEntry, WAYS};
use crate::time::NANOS_PER_SEC as SEC;

const T0: u64 = 1_700_000_000 * SEC;

fn idempotency_cfg() -> IdempotencyConfig {
    let doc = serde_json::json!({ "idempotency": { "ttl": "1m", "lock_timeout": "3s", "max_body_bytes": 1024, "max_stored_bytes": 4096 } });
    config::parse(doc.to_string().as_bytes())
        .ok()
        .and_then(|c| c.idempotency)
        .expect("the fixed test config must parse")
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn slot_buckets_decode_to_what_they_encode(
        seed in any::<u64>(),
        rounds in 0u32..5,
        ways in proptest::collection::vec((1u64.., any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..24)), 0..=WAYS),
    ) {
        let mut bucket = Bucket::default();
        for (i, (fingerprint, last_touched, at_rest_at, state)) in ways.into_iter().enumerate() {
            bucket.ways[i] = Some(SlotEntry { fingerprint, last_touched, at_rest_at, state });
        }
        let mut bytes = bucket.encode().unwrap_or_default();
        prop_assert_eq!(Bucket::decode(&bytes).ok(), Some(bucket));
        let mut rng = SplitMix64::seeded(seed);
        mutate_bytes(&mut bytes, &mut rng, rounds);
        match Bucket::decode(&bytes) {
            Ok(b) => match b.encode() {
                Ok(again) => prop_assert_eq!(Bucket::decode(&again).ok(), Some(b)),
                Err(e) => prop_assert!(matches!(e, CodecError::StateTooLarge(_)), "{e}"),
            },
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        let _ = Bucket::decode_or_empty(&bytes).encoded_len();
    }

    #[test]
    fn idempotency_records_and_stored_answers_survive_mutation(
        seed in any::<u64>(),
        rounds in 0u32..5,
        owner in any::<u64>(),
        status in 100u16..600,
        headers in proptest::collection::vec(("[a-z-]{1,12}", "[ -~]{0,20}"), 0..5),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let cfg = idempotency_cfg();
        let mut rng = SplitMix64::seeded(seed);
        let now = T0 + rng.below(100 * SEC);
        // A record the machine wrote: claimed, maybe finished.
        let Some(record_bytes) = (match idem::begin(&cfg, None, Fingerprint([3; 16]), owner, now) {
            idem::Begin::Execute { new_state, .. } => Some(new_state.bytes),
            _ => None,
        }) else { return Err(TestCaseError::fail("a fresh key must execute")) };
        let outcome = [Outcome::Released, Outcome::Unknown, Outcome::Stored { status, body: None }, Outcome::TooLarge { status }][rng.below(4) as usize];
        let mut state = match idem::finish(&cfg, Some(&record_bytes), owner, outcome, now + 1) {
            idem::Finish::Write(s) => s.bytes,
            _ => record_bytes,
        };
        mutate_bytes(&mut state, &mut rng, rounds);
        if let Some(r) = Record::decode(&state) {
            prop_assert_eq!(Record::decode(&r.encode()), Some(r));
        }
        let at = interesting_u64(&mut rng);
        let _ = idem::begin(&cfg, Some(&state), Fingerprint([3; 16]), owner, at);
        let _ = idem::renew(&cfg, &state, owner, at);
        let _ = idem::finish(&cfg, Some(&state), owner, outcome, at);
        let _ = idem::at_rest_at(&state);

        // The stored answer blob.
        let answer = StoredResponse { status, headers, body };
        if let Ok(encoded) = answer.encode() {
            let body_ref = encoded.body_ref(1, 1);
            let mut blob = encoded.blob.clone();
            prop_assert_eq!(StoredResponse::decode_for(&blob, &body_ref).ok(), Some(answer.clone()));
            mutate_bytes(&mut blob, &mut rng, rounds.max(1));
            let _ = StoredResponse::decode_for(&blob, &body_ref);
            if let Ok(r) = StoredResponse::decode(&blob) {
                let _ = r.encode();
            }
        }

    }

    #[test]
    fn retry_budgets_never_grant_more_than_earned_on_any_state(
        seed in any::<u64>(),
        rounds in 0u32..5,
        deposits in 0u32..50,
        ratio in 0.0f64..1.0,
        min_per_second in 0u32..5,
    ) {
        let cfg = RetryBudget { ratio, min_per_second };
        let mut rng = SplitMix64::seeded(seed);
        let mut state = Vec::new();
        let mut now = T0;
        for _ in 0..deposits {
            now += rng.below(SEC / 2);
            state = retry_budget::deposit(&state, now);
        }
        mutate_bytes(&mut state, &mut rng, rounds);
        let at = if rng.below(2) == 0 { now } else { interesting_u64(&mut rng) };
        let balance = retry_budget::balance(&cfg, &state, at);
        let (granted, new_state) = retry_budget::try_withdraw(&cfg, &state, at);
        prop_assert_eq!(granted, balance >= 1);
        prop_assert_eq!(granted, new_state.is_some());
        // Whatever the bytes said, a decoded window holds at most 10 s of u32 counters: the
        // grant is bounded by ratio × deposits it could hold plus the floor.
        let ceiling = (ratio * 10.0 * f64::from(u32::MAX)).floor() as i64 + i64::from(min_per_second) * 10;
        prop_assert!(balance <= ceiling);
        let _ = retry_budget::deposit(&state, at);
    }

    #[test]
    fn stale_cache_index_entries_decode_to_what_they_encode(
        status in any::<u16>(), stored_at in any::<u64>(), vary in any::<u64>(), len in any::<u32>(), sum in any::<u64>(),
        seed in any::<u64>(), rounds in 0u32..4,
    ) {
        let e = IndexEntry { status, stored_at, vary_digest: vary, blob_len: len, checksum: sum };
        let mut bytes = e.encode();
        prop_assert_eq!(IndexEntry::decode(&bytes), Some(e));
        mutate_bytes(&mut bytes, &mut SplitMix64::seeded(seed), rounds);
        if let Some(d) = IndexEntry::decode(&bytes) {
            prop_assert_eq!(d.encode(), bytes);
        }
    }

    #[test]
    fn the_delivery_queue_stays_within_its_bounds_under_any_schedule(
        ops in proptest::collection::vec((0u8..4, any::<u64>(), 0usize..3000), 1..80),
        max_items in 1u32..10,
        max_bytes in 300u64..20_000,
    ) {
        let policy = DeliveryPolicy {
            backoff: Backoff::new(config::Jitter::Full, std::time::Duration::from_millis(10), std::time::Duration::from_secs(1)),
            lease_ns: SEC,
            max_age_ns: 30 * SEC,
        };
        let mut q = RequestQueue::new(QueueLimits { max_items, max_bytes }, policy, "idempotency-key");
        let mut rng = SplitMix64::seeded(7);
        let mut now = T0;
        let mut tickets = Vec::new();
        for (op, x, size) in ops {
            match op {
                0 => {
                    let request = SavedRequest {
                        method: "POST".into(),
                        path: "/q".into(),
                        authority: "a".into(),
                        headers: vec![("idempotency-key".into(), format!("k{x}").into_bytes()), ("connection".into(), b"close".to_vec())].into(),
                        body: std::rc::Rc::new(vec![0; size]),
                    };
                    let _ = q.enqueue(request, &mut rng, now);
                }
                1 => now = now.saturating_add(x % (5 * SEC)),
                2 => {
                    while let Some(due) = q.next_due(now) {
                        if let Due::Deliver(t) = due {
                            prop_assert!(q.request(t.id).is_some());
                            prop_assert!(q.call_headers(t.id).is_some());
                            tickets.push(t);
                        }
                    }
                }
                _ => {
                    if let Some(t) = tickets.pop() {
                        let status = (x % 600) as u16;
                        let outcome = match x % 3 {
                            0 => DeliveryOutcome::from_status(Some(status), None),
                            1 => DeliveryOutcome::Failed { retry_after_ns: Some(interesting_u64(&mut rng)) },
                            _ => DeliveryOutcome::NotSent { retry_at: interesting_u64(&mut rng) },
                        };
                        let _ = q.on_delivery_result(t, outcome, &mut rng, now);
                    }
                }
            }
            prop_assert!(q.len() <= max_items as usize);
            prop_assert!(q.bytes() <= max_bytes);
            if let Some(wake) = q.next_wake() {
                prop_assert!(wake >= T0);
            }
        }
    }
}
