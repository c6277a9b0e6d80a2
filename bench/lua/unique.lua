-- Every request carries a fresh value in header `unique` (e.g. Idempotency-Key: <prefix>N).
function request()
  bench.counter = bench.counter + 1
  wrk.headers[bench.unique] = bench.prefix .. bench.counter
  return wrk.format()
end
