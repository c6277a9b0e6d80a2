-- Distinct client keys: header `unique` = <prefix>N for N = 1, 2, …, stop_after. wrk's main
-- thread sleeps for the whole -d duration whatever its workers do, so once `stop_after`
-- responses came back this script prints the summary line itself and exits the process.
-- Requests still in flight then add at most (connections - 1) keys past N.
local errors = 0

function request()
  bench.counter = bench.counter + 1
  wrk.headers[bench.unique] = bench.prefix .. bench.counter
  return wrk.format()
end

function response(status, headers, body)
  bench.seen = bench.seen + 1
  if status >= 400 then errors = errors + 1 end
  if bench.seen >= bench.stop_after then
    io.write(string.format('BENCHJSON {"requests":%d,"duration_us":0,"bytes":0,"err_connect":0,' ..
      '"err_read":0,"err_write":0,"err_status":%d,"err_timeout":0,"lat_mean_us":0,"lat_p50_us":0,' ..
      '"lat_p90_us":0,"lat_p99_us":0,"lat_p999_us":0,"lat_max_us":0}\n', bench.seen, errors))
    io.flush()
    os.exit(0)
  end
end
