use std::time::Duration;

use crate::config::CacheConfig;
use crate::fallback::cache::*;
use crate::fallback::cache_outcome::*;
use crate::fallback::cacheable::VaryValues;
use crate::fallback::headers::stale_headers;
use crate::fallback::{FALLBACK_HEADER, MARK_STALE_CACHE};
use crate::idempotency::response::StoredResponse;
use crate::store::{KeyHasher, MemoryStore, SharedStore};
use crate::time::NANOS_PER_SEC;

const T0: u64 = 1_700_000_000 * NANOS_PER_SEC;
const HOUR: u64 = 3600 * NANOS_PER_SEC;

fn cfg(max_body: u64, max_total: u64) -> CacheConfig {
    CacheConfig {
        ttl: Duration::from_secs(300),
        max_body_bytes: max_body,
        max_total_bytes: max_total,
        key: Vec::new(),
    }
}

fn setup(max_tracked: u32) -> (MemoryStore, KeyHasher, StaleCache) {
    let store = MemoryStore::new();
    let cache = StaleCache::new("pay", &cfg(1024, 1 << 24), max_tracked);
    cache.ensure_created(&store).unwrap();
    (store, KeyHasher::new([9; 16]), cache)
}

fn answer(body: &str) -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: body.as_bytes().to_vec(),
    }
}

fn no_headers(_: &str) -> Option<&'static [u8]> {
    None
}

#[test]
fn store_then_lookup_round_trips_with_age() {
    let (store, hasher, cache) = setup(64);
    let r = answer("hello");
    let stored = cache.store_response(&store, &hasher, b"k", &VaryValues::default(), &r, T0);
    assert!(matches!(stored, Ok(Stored::Written { .. })), "{stored:?}");
    let now = T0 + 42 * NANOS_PER_SEC + 5;
    let (got, age) = cache
        .lookup_stale(&store, &hasher, b"k", no_headers, HOUR, now)
        .unwrap();
    assert_eq!((got.clone(), age), (r, 42));
    let headers = stale_headers(&got.headers, age);
    assert!(headers.contains(&("age".into(), "42".into())));
    assert!(headers.contains(&(FALLBACK_HEADER.into(), MARK_STALE_CACHE.into())));
    assert_eq!(
        cache.find(&store, &hasher, b"other", no_headers, HOUR, now),
        Err(Miss::NoEntry)
    );
}

#[test]
fn max_stale_is_respected() {
    let (store, hasher, cache) = setup(64);
    cache
        .store_response(
            &store,
            &hasher,
            b"k",
            &VaryValues::default(),
            &answer("x"),
            T0,
        )
        .unwrap();
    let max_stale = 60 * NANOS_PER_SEC;
    assert!(cache
        .lookup_stale(&store, &hasher, b"k", no_headers, max_stale, T0 + max_stale)
        .is_some());
    assert_eq!(
        cache.find(
            &store,
            &hasher,
            b"k",
            no_headers,
            max_stale,
            T0 + max_stale + 1
        ),
        Err(Miss::TooOld { age_seconds: 60 })
    );
}

#[test]
fn entries_come_to_rest_after_ttl_whatever_max_stale_says() {
    let (store, hasher, cache) = setup(64);
    cache
        .store_response(
            &store,
            &hasher,
            b"k",
            &VaryValues::default(),
            &answer("x"),
            T0,
        )
        .unwrap();
    let after_ttl = T0 + 300 * NANOS_PER_SEC;
    assert_eq!(
        cache.find(&store, &hasher, b"k", no_headers, 10 * HOUR, after_ttl),
        Err(Miss::NoEntry)
    );
}

#[test]
fn torn_or_reused_body_slot_is_never_served() {
    let (store, hasher, cache) = setup(64);
    let Stored::Written { slot } = cache
        .store_response(
            &store,
            &hasher,
            b"k",
            &VaryValues::default(),
            &answer("mine"),
            T0,
        )
        .unwrap()
    else {
        panic!("not written")
    };
    let key = cache.body_key(slot);
    let blob = store.get(&key).unwrap().unwrap().value;
    // Torn: a prefix of the blob.
    store.set(&key, &blob[..blob.len() / 2], None).unwrap();
    assert_eq!(
        cache.find(&store, &hasher, b"k", no_headers, HOUR, T0 + 1),
        Err(Miss::BodyMismatch)
    );
    // Reused: a valid blob of another answer of the same length.
    let other = answer("your").encode().unwrap().blob;
    assert_eq!(other.len(), blob.len());
    store.set(&key, &other, None).unwrap();
    assert_eq!(
        cache.find(&store, &hasher, b"k", no_headers, HOUR, T0 + 1),
        Err(Miss::BodyMismatch)
    );
    // Garbage and empty.
    for bad in [&b""[..], &[0xFF; 40][..]] {
        store.set(&key, bad, None).unwrap();
        assert_eq!(
            cache.find(&store, &hasher, b"k", no_headers, HOUR, T0 + 1),
            Err(Miss::BodyMismatch)
        );
    }
    // The original blob back: served again.
    store.set(&key, &blob, None).unwrap();
    assert!(cache
        .find(&store, &hasher, b"k", no_headers, HOUR, T0 + 1)
        .is_ok());
}

#[test]
fn garbage_in_the_index_is_a_miss_not_a_panic() {
    let (store, hasher, cache) = setup(8);
    for b in 0..cache.index().buckets() {
        store
            .set(&cache.index().key_of(b), &[1, 0b1111, 7, 7, 7], None)
            .unwrap();
    }
    assert_eq!(
        cache.find(&store, &hasher, b"k", no_headers, HOUR, T0),
        Err(Miss::NoEntry)
    );
}

#[test]
fn vary_is_honoured_on_lookup() {
    let (store, hasher, cache) = setup(64);
    let r = StoredResponse {
        headers: vec![("vary".into(), "Accept-Language".into())],
        ..answer("hallo")
    };
    let names = vec!["accept-language".to_owned()];
    let de = VaryValues::capture(&names, |_| Some(&b"de"[..]));
    cache
        .store_response(&store, &hasher, b"k", &de, &r, T0)
        .unwrap();
    let lang = |v: &'static [u8]| move |n: &str| (n == "accept-language").then_some(v);
    assert!(cache
        .find(&store, &hasher, b"k", lang(b"de"), HOUR, T0 + 1)
        .is_ok());
    assert_eq!(
        cache.find(&store, &hasher, b"k", lang(b"en"), HOUR, T0 + 1),
        Err(Miss::VaryMismatch)
    );
    assert_eq!(
        cache.find(&store, &hasher, b"k", no_headers, HOUR, T0 + 1),
        Err(Miss::VaryMismatch)
    );
}

#[test]
fn a_fresh_copy_is_not_rewritten_but_an_older_one_is() {
    let (store, hasher, cache) = setup(64);
    let v = VaryValues::default();
    cache
        .store_response(&store, &hasher, b"k", &v, &answer("1"), T0)
        .unwrap();
    assert!(!cache.wants(&store, &hasher, b"k", &v, T0 + 1));
    let sets = store.stats().sets;
    assert_eq!(
        cache.store_response(&store, &hasher, b"k", &v, &answer("2"), T0 + 1),
        Ok(Stored::AlreadyFresh)
    );
    assert_eq!(store.stats().sets, sets, "no write for a fresh copy");
    let later = T0 + 2 * NANOS_PER_SEC;
    assert!(cache.wants(&store, &hasher, b"k", &v, later));
    cache
        .store_response(&store, &hasher, b"k", &v, &answer("3"), later)
        .unwrap();
    let (got, age) = cache
        .lookup_stale(&store, &hasher, b"k", no_headers, HOUR, later)
        .unwrap();
    assert_eq!((got.body, age), (b"3".to_vec(), 0));
}

#[test]
fn many_keys_stay_within_the_precreated_keys() {
    let (store, hasher, cache) = setup(64);
    let keys_before = store.key_count();
    for i in 0..5_000u32 {
        let _ = cache.store_response(
            &store,
            &hasher,
            &i.to_le_bytes(),
            &VaryValues::default(),
            &answer("x"),
            T0 + u64::from(i),
        );
    }
    assert_eq!(
        store.key_count(),
        keys_before,
        "no key created on the request path"
    );
    assert_eq!(cache.body_slots(), 64);
    assert!(store.total_bytes() as u64 <= cache.memory_bound());
    // The most recent keys are still served.
    let now = T0 + 5_000;
    assert!(cache
        .lookup_stale(
            &store,
            &hasher,
            &4_999u32.to_le_bytes(),
            no_headers,
            HOUR,
            now
        )
        .is_some());
}

#[test]
fn max_total_bytes_bounds_the_whole_store() {
    for (body, total) in [(65_536, 33_554_432), (1024, 1 << 20), (100_000, 10_000_000)] {
        let c = StaleCache::new("payments", &cfg(body, total), 65_536);
        assert!(
            c.memory_bound() <= total,
            "{body}/{total}: {}",
            c.memory_bound()
        );
        assert_eq!(c.body_slots() % 4, 0);
        assert!(u64::from(c.body_slots() + 4) * (body + 4096) > total / 2);
    }
    assert_eq!(
        StaleCache::new("payments", &cfg(65_536, 33_554_432), 65_536).body_slots(),
        476
    );
    assert_eq!(
        StaleCache::new("p", &cfg(1024, 1 << 30), 100).body_slots(),
        100
    );
    assert_eq!(StaleCache::new("p", &cfg(1024, 1024), 100).body_slots(), 1);
}

#[test]
fn a_table_smaller_than_a_bucket_refuses_the_other_ways() {
    let store = MemoryStore::new();
    let cache = StaleCache::new("p", &cfg(1024, 1024), 100);
    cache.ensure_created(&store).unwrap();
    let hasher = KeyHasher::new([1; 16]);
    let v = VaryValues::default();
    let results: Vec<_> = (0..4u8)
        .map(|i| cache.store_response(&store, &hasher, &[i], &v, &answer("x"), T0))
        .collect();
    assert!(results.contains(&Ok(Stored::Written { slot: 0 })));
    assert!(results.contains(&Err(CacheError::NoRoom)));
    assert_eq!(store.key_count(), 1 + 1 + 1, "probe, one bucket, one body");
}

#[test]
fn oversized_answers_are_refused() {
    let (store, hasher, cache) = setup(8);
    let big = answer(&"x".repeat(1025));
    assert!(matches!(
        cache.store_response(&store, &hasher, b"k", &VaryValues::default(), &big, T0),
        Err(CacheError::TooLarge {
            len: 1025,
            max: 1024
        })
    ));
}

#[test]
fn stale_headers_add_upstream_age_and_drop_connection_headers() {
    let stored = vec![
        ("content-type".into(), "application/json".into()),
        ("Age".into(), "30".into()),
        ("content-length".into(), "2".into()),
        ("connection".into(), "x-hop".into()),
        ("x-hop".into(), "1".into()),
        ("transfer-encoding".into(), "chunked".into()),
        ("x-levee-fallback".into(), "forged".into()),
        ("etag".into(), "\"v1\"".into()),
    ];
    assert_eq!(
        stale_headers(&stored, 12),
        vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("etag".into(), "\"v1\"".into()),
            ("age".into(), "42".into()),
            ("x-levee-fallback".into(), "stale-cache".into()),
        ]
    );
}

#[test]
fn a_lost_commit_race_is_retried() {
    let (store, hasher, cache) = setup(64);
    store.fail_next_cas(2);
    assert!(matches!(
        cache.store_response(
            &store,
            &hasher,
            b"k",
            &VaryValues::default(),
            &answer("x"),
            T0
        ),
        Ok(Stored::Written { .. })
    ));
    assert!(cache
        .lookup_stale(&store, &hasher, b"k", no_headers, HOUR, T0)
        .is_some());
}
