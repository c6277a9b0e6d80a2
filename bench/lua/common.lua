-- Shared by every bench script (run.py prepends it): argument parsing and the JSON summary.
-- Arguments after `--` are key=value: method=, body=, header=Name: value (repeatable),
-- unique=<header name> (a per-request counter value), prefix=, stop_after=N, delay_ms=N.

bench = { unique = nil, prefix = "", counter = 0, stop_after = 0, delay_ms = 0, seen = 0 }

function init(args)
  for _, a in ipairs(args) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if k == "method" then wrk.method = v
    elseif k == "body" then wrk.body = v
    elseif k == "header" then
      local hn, hv = v:match("^([^:]+):%s*(.*)$")
      wrk.headers[hn] = hv
    elseif k == "unique" then bench.unique = v
    elseif k == "prefix" then bench.prefix = v
    elseif k == "stop_after" then bench.stop_after = tonumber(v)
    elseif k == "delay_ms" then bench.delay_ms = tonumber(v)
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_p50_us":%d,' ..
    '"lat_p90_us":%d,"lat_p99_us":%d,"lat_p999_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
