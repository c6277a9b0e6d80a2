-- Moderate, steady load for latency: each connection waits `delay_ms` between its requests
-- (closed loop with think time), so Envoy is far from saturation and queueing stays out of p99.
function delay()
  return bench.delay_ms
end
