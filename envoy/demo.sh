# Try each levee pattern against the demo (`make run`, or envoy/docker-compose.yaml).
# `make run` prints these lines; `sh envoy/demo.sh` runs them all in order.

# 1. Rate limit "per-client" (token bucket, 5 per 10 s per source IP): 5 × 200, then 429
for i in $(seq 8); do curl -s -o /dev/null -w '%{http_code} ' localhost:10000/api/orders; done; echo
curl -si localhost:10000/api/orders; echo        # 429 problem+json, Retry-After, X-RateLimit-*

# 2. Shaper "shaper" (leaky bucket, 2/s): 5 concurrent requests all pass, released ~0.5 s apart
for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code} after %{time_total}s\n' localhost:10000/shaped/report & done; wait

# 3. Idempotency: the same key twice is charged once; the second answer is a byte-for-byte
#    replay (same charge_id, Idempotent-Replayed: true); the same key with another body is 422
curl -si localhost:10000/payments -H 'Idempotency-Key: order-42' -H 'content-type: application/json' -d '{"amount":100}'; echo
curl -si localhost:10000/payments -H 'Idempotency-Key: order-42' -H 'content-type: application/json' -d '{"amount":100}'; echo
curl -si localhost:10000/payments -H 'Idempotency-Key: order-42' -H 'content-type: application/json' -d '{"amount":999}'; echo

# 4. Circuit breaker (router mode): the flaky upstream fails half the time; after 2 failures in
#    a row the circuit opens and levee answers 503 + x-levee-circuit: open for 15 s, then probes
for i in $(seq 20); do curl -s -o /dev/null -w '%{http_code} ' localhost:10000/flaky; done; echo
curl -si localhost:10000/flaky; echo

# 5. Retries (callout mode, full jitter, up to 5 attempts): almost always 200; x-levee-attempts
#    says how many attempts it took
for i in $(seq 6); do curl -s -o /dev/null -D - localhost:10000/retry | grep -iE '^HTTP|^x-levee-attempts' | tr -d '\r' | paste -sd' '; done

# 6. Fallback (callout mode, no retry): a failed attempt is answered by the static fallback,
#    marked x-levee-fallback: static
for i in $(seq 6); do curl -s -D - localhost:10000/fallback | grep -iE '^HTTP|^x-levee|^\{' | tr -d '\r' | paste -sd' '; done

# 7. Metrics, labelled by limit / upstream (envoy.yaml stats_tags)
curl -s localhost:9901/stats/prometheus | grep -E '^levee_[a-z_]+\{levee_(limit|upstream)=' | grep -v ' 0$'
