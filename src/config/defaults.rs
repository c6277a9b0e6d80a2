//! Every default and every bound of the plugin JSON, in one place: the validator,
//! `to_effective_json`, the JSON Schema and the docs' reference all read these constants, so
//! they cannot disagree.
//!
//! | field | default | accepted |
//! |---|---|---|
//! | `client_ip.xff_trusted_hops` | `0` (rightmost X-Forwarded-For entry) | 0..=16 |
//! | `client_ip.ipv6_prefix` | `64` | 1..=128 |
//! | `limits.max_tracked_keys` | `65536` | 1..=16 777 216 |
//! | `limits.max_memory_bytes` | `536870912` (512 MiB) | 1 MiB..=64 GiB; refuses a config whose shared-data bound exceeds it |
//! | `rate_limit_headers` | `"x-ratelimit"` | `x-ratelimit`, `ietf`, `both`, `none` |
//! | `rate_limits[].name` | required | `[a-z0-9_-]{1,64}`, unique |
//! | `rate_limits[].match` | every request | see `match` below |
//! | `rate_limits[].key` | `[]` (one global bucket) | key parts |
//! | `rate_limits[].algorithm` | `"token_bucket"` (as Envoy's `local_ratelimit`) | five names |
//! | `rate_limits[].limit` | required | 1..=1 000 000 000; ≤ 10 000 for `sliding_window_log` |
//! | `rate_limits[].window` | required | > 0, ≤ 366d |
//! | `rate_limits[].burst` | = `limit` | token/leaky bucket only; 1..=1 000 000 000 |
//! | `rate_limits[].max_delay` | `"0s"` (police) | leaky bucket only; ≤ 1h |
//! | `rate_limits[].mode` | `"enforce"` | `enforce`, `shadow` |
//! | `rate_limits[].status` | `429` | 400..=599 |
//! | `rate_limits[].on_internal_error` | `"allow"` | `allow`, `deny` |
//! | `match.path_prefix` / `.methods` / `.route_name` / `.headers` | any | prefix starts with `/`; methods upper-cased; header names lower-cased |
//! | `idempotency.methods` | `["POST", "PATCH"]` | non-empty |
//! | `idempotency.match` | every request | |
//! | `idempotency.header` | `"idempotency-key"` | header name, stored lower-case |
//! | `idempotency.required` | `false` | |
//! | `idempotency.scope` | `[]` | key parts |
//! | `idempotency.ttl` | `"24h"` | > 0 |
//! | `idempotency.lock_timeout` | `"30s"` | > 0 |
//! | `idempotency.fingerprint` | `true` | |
//! | `idempotency.on_concurrent` | `"reject"` | `reject`, `wait` |
//! | `idempotency.release_on` | `[408, 425, 429, 503]` | 400..=599 |
//! | `idempotency.max_key_length` | `255` | 1..=4096 |
//! | `idempotency.max_body_bytes` | `262144` (256 KiB) | 1..=1 048 576 (Envoy's default buffer limit) |
//! | `idempotency.max_stored_bytes` | `67108864` (64 MiB) | ≥ `max_body_bytes`, ≤ 4 GiB |
//! | `idempotency.on_internal_error` | `"deny"` | `allow`, `deny` |
//! | `upstreams.*.forward` | `"router"` (observe; Envoy's router forwards) | `router`, `callout` |
//! | `upstreams.*.cluster` | none; required for `callout` and for a `queue` fallback | |
//! | `upstreams.*.authority` | the request's `:authority` | |
//! | `upstreams.*.timeout` | `"15s"` (Envoy's route timeout default) | > 0 |
//! | `upstreams.*.max_body_bytes` | `1048576` (1 MiB) | 1..=16 MiB |
//! | `retry.max_retries` | `2` (3 attempts) | 0..=10 |
//! | `retry.base_delay` / `retry.max_delay` | `"100ms"` / `"2s"` | base > 0, max ≥ base |
//! | `retry.jitter` | `"full"` | `full`, `equal`, `decorrelated`, `none` |
//! | `retry.deadline` | `timeout × (1 + max_retries)` | > 0 |
//! | `retry.retry_on` | `["5xx", "reset", "timeout", "connect_failure"]` | classes or 400..=599 |
//! | `retry.respect_retry_after` | `true` | |
//! | `retry.budget` | none (absent); `{}` = ratio `0.2`, `min_per_second` `10` | ratio in (0, 1] |
//! | `retry.non_idempotent` | `"with_key"` | `with_key`, `never`, `always` |
//! | `circuit_breaker.failure_threshold` | `5` | 0..=1 000 000 (0 = off; needs `failure_rate`) |
//! | `circuit_breaker.failure_rate` | none; `{}` = threshold `0.5`, `minimum_calls` `20`, `window` `"10s"` | threshold in (0, 1] |
//! | `circuit_breaker.slow_call` | none | > 0 |
//! | `circuit_breaker.reset_timeout` | `"30s"` | > 0 |
//! | `circuit_breaker.half_open_successes` | `3` | 1..=1000 |
//! | `circuit_breaker.half_open_max_in_flight` | `1` | 1..=1000 |
//! | `circuit_breaker.failure_on` | `["5xx", "timeout", "reset", "connect_failure"]` | classes or 400..=599 |
//! | `cache.ttl` | `"5m"` | > 0 |
//! | `cache.max_body_bytes` | `65536` | 1..=1 048 576 |
//! | `cache.max_total_bytes` | `33554432` (32 MiB) | ≥ `max_body_bytes`, ≤ 4 GiB |
//! | `cache.key` | `[]` (method + path + query only) | key parts |
//! | `fallback[].methods` | every method | |
//! | `fallback[].stale_cache.max_stale` | `"1h"` | needs the upstream's `cache` |
//! | `fallback[].queue.max_items` / `.max_bytes` | `1000` / `16777216` | 1..=1 000 000 / 1..=1 GiB |
//! | `fallback[].static.status` / `.headers` / `.body` | `200` / `{}` / `""` | status 100..=599 |
//! | `routes[].match` | every request (first matching route wins) | |
//! | `routes[].upstream` | required | a name in `upstreams` |
//! | `backends.*` | exactly one of `etcd`, `rls` | names `[a-z0-9_-]{1,64}` |
//! | `backends.*.etcd.cluster` / `.rls.cluster` | required | an Envoy cluster (HTTP/2) |
//! | `backends.*.etcd.prefix` | `"levee/"` | 1..=128 printable ASCII characters |
//! | `backends.*.etcd.timeout` | `"250ms"` | > 0, ≤ 1m |
//! | `backends.*.rls.domain` | required | 1..=256 printable ASCII characters |
//! | `backends.*.rls.timeout` | `"20ms"` | > 0, ≤ 1m |
//! | `idempotency.backend` | none (shared data) | an `etcd` backend |
//! | `idempotency.on_backend_error` | `"deny"` | `deny`, `allow`; only with `backend` |
//! | `rate_limits[].global.backend` | required | an `rls` backend; `window` must be 1s, 1m, 1h or 1d |
//! | `rate_limits[].global.mode` | `"reserve"` | `reserve`, `exact` |
//! | `rate_limits[].global.on_backend_error` | `"local"` | `local`, `allow`, `deny` |

use std::time::Duration;

pub const XFF_TRUSTED_HOPS: u32 = 0;
pub const MAX_XFF_TRUSTED_HOPS: u64 = 16;
pub const IPV6_PREFIX: u8 = 64;
pub const MAX_IPV6_PREFIX: u64 = 128;
pub const MAX_TRACKED_KEYS: u32 = 65_536;
pub const MAX_MAX_TRACKED_KEYS: u64 = 16_777_216;
/// The ceiling on a config's shared-data bound (see `crate::footprint`). Chosen from two
/// numbers: a config of defaults with every layer (two limits, idempotency, a cache) is
/// ~146 MiB, so several caches and limits fit beside idempotency; and the densest config it
/// admits creates ~2 million keys, which the first `on_configure` of a process creates in
/// a few seconds (later VMs and reloads of the same key set skip the walk).
pub const MAX_MEMORY_BYTES: u64 = 512 * 1_048_576;
pub const MIN_MAX_MEMORY_BYTES: u64 = 1_048_576;
pub const MAX_MAX_MEMORY_BYTES: u64 = 64 * 1_073_741_824;

pub const MAX_LIMIT: u64 = 1_000_000_000;
pub const MAX_SLIDING_LOG_LIMIT: u64 = 10_000;
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 86_400);
pub const MAX_SHAPING_DELAY: Duration = Duration::from_secs(3_600);
pub const RATE_LIMIT_STATUS: u16 = 429;

/// The statuses that mean "not a success": rejections, `release_on`, status outcomes.
pub const MIN_FAILURE_STATUS: u64 = 400;
/// The largest HTTP status levee accepts anywhere.
pub const MAX_STATUS: u64 = 599;
/// The upper bound of plain counters (breaker thresholds and call counts, retry budget floor, queue items).
pub const MAX_COUNT: u64 = 1_000_000;

pub const IDEMPOTENCY_METHODS: [&str; 2] = ["POST", "PATCH"];
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3_600);
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
pub const RELEASE_ON: [u16; 4] = [408, 425, 429, 503];
pub const MAX_KEY_LENGTH: u32 = 255;
pub const MAX_MAX_KEY_LENGTH: u64 = 4_096;
pub const IDEMPOTENCY_MAX_BODY: u64 = 262_144;
/// Envoy's default `per_connection_buffer_limit_bytes`: a larger body is refused by Envoy
/// (413) before levee could hash or store it.
pub const ENVOY_BUFFER_LIMIT: u64 = 1_048_576;
pub const MAX_STORED_BYTES: u64 = 67_108_864;
pub const MAX_TOTAL_BYTES_CAP: u64 = 4 * 1_073_741_824;

pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(15);
pub const UPSTREAM_MAX_BODY: u64 = 1_048_576;
pub const UPSTREAM_MAX_BODY_CAP: u64 = 16 * 1_048_576;

pub const MAX_RETRIES: u32 = 2;
pub const MAX_MAX_RETRIES: u64 = 10;
pub const BASE_DELAY: Duration = Duration::from_millis(100);
pub const MAX_DELAY: Duration = Duration::from_secs(2);
pub const RETRY_ON: [&str; 4] = ["5xx", "reset", "timeout", "connect_failure"];
pub const BUDGET_RATIO: f64 = 0.2;
pub const BUDGET_MIN_PER_SECOND: u32 = 10;

pub const FAILURE_THRESHOLD: u32 = 5;
pub const FAILURE_RATE_THRESHOLD: f64 = 0.5;
pub const FAILURE_RATE_MINIMUM_CALLS: u32 = 20;
pub const FAILURE_RATE_WINDOW: Duration = Duration::from_secs(10);
pub const RESET_TIMEOUT: Duration = Duration::from_secs(30);
pub const HALF_OPEN_SUCCESSES: u32 = 3;
pub const HALF_OPEN_MAX_IN_FLIGHT: u32 = 1;
pub const MAX_HALF_OPEN: u64 = 1_000;
/// The breaker's state holds one lease per probe in flight, at most 255 of them.
pub const MAX_HALF_OPEN_IN_FLIGHT: u64 = 255;
pub const FAILURE_ON: [&str; 4] = ["5xx", "timeout", "reset", "connect_failure"];

pub const CACHE_TTL: Duration = Duration::from_secs(300);
pub const CACHE_MAX_BODY: u64 = 65_536;
pub const CACHE_MAX_TOTAL: u64 = 33_554_432;
pub const MAX_STALE: Duration = Duration::from_secs(3_600);
pub const QUEUE_MAX_ITEMS: u32 = 1_000;
pub const QUEUE_MAX_BYTES: u64 = 16_777_216;
pub const MAX_QUEUE_BYTES: u64 = 1_073_741_824;
pub const STATIC_STATUS: u16 = 200;
pub const MIN_STATIC_STATUS: u64 = 100;

pub const ETCD_PREFIX: &str = "levee/";
pub const MAX_ETCD_PREFIX_LEN: usize = 128;
pub const ETCD_TIMEOUT: Duration = Duration::from_millis(250);
pub const MAX_RLS_DOMAIN_LEN: usize = 256;
pub const RLS_TIMEOUT: Duration = Duration::from_millis(20);
/// A backend call holds a request; longer than this is a misconfiguration, not a choice.
pub const MAX_BACKEND_TIMEOUT: Duration = Duration::from_secs(60);
