# levee's mesh demo: two Envoys with levee (ports 10001 and 10002), one etcd holding the
# idempotency records, one payments service behind both (`make run-mesh`, which prints these
# lines; `sh envoy/mesh/demo.sh` runs them in order). make run-mesh's output shows each
# execution as a [payments] line and each answer as an [envoy-1] or [envoy-2] line.

# 1. A keyed POST on Envoy 1 executes: 201 "charged", with a new charge_id
curl -si localhost:10001/payments -H 'Idempotency-Key: order-7' -H 'content-type: application/json' -d '{"amount":100}'; echo

# 2. The client retries and lands on Envoy 2: it finds the record in etcd and replays the
#    answer byte for byte (same charge_id) with Idempotent-Replayed: true
sleep 1   # (a retry right away may get 409: the answer is written to etcd just after it left)
curl -si localhost:10002/payments -H 'Idempotency-Key: order-7' -H 'content-type: application/json' -d '{"amount":100}'; echo

# 3. The payments service executed it once
curl -s 'localhost:9904/stats?filter=^http\.payments\.downstream_rq_completed$'

# 4. The same key with another body, on either Envoy: 422
curl -si localhost:10002/payments -H 'Idempotency-Key: order-7' -H 'content-type: application/json' -d '{"amount":999}'; echo
curl -si localhost:10001/payments -H 'Idempotency-Key: order-7' -H 'content-type: application/json' -d '{"amount":999}'; echo

# The records are kept for an hour (ttl): to run this again, use another Idempotency-Key.
