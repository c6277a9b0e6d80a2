-- paced.lua with a fresh value in header `unique` per request (e.g. Idempotency-Key:
-- <prefix>N): the latency of keyed requests that each carry a distinct key.
function delay()
  return bench.delay_ms
end

function request()
  bench.counter = bench.counter + 1
  wrk.headers[bench.unique] = bench.prefix .. bench.counter
  return wrk.format()
end
