-- wrk script for the timeline bench (bench/run.sh): GET a 50-item page of one customer's
-- timeline, cycling through the first page and the cursors of the following pages so reads
-- land on different parts of the index.
-- Usage: wrk ... -s bench/timeline.lua http://127.0.0.1:PORT -- TOKEN CUSTOMER_ID [CURSOR...]
-- done() prints the 2xx and non-2xx counts and the latency percentiles.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

ok2xx = 0  -- globals: done() reads them with thread:get
bad = 0
last_bad = 0
local paths = {}
local headers = {}
local n = 0

function init(args)
   local token, customer = args[1], args[2]
   headers["Authorization"] = "Bearer " .. token
   headers["Candor-Purpose"] = "service"
   local base = "/v1/customers/" .. customer .. "/timeline?limit=50"
   table.insert(paths, base)
   for i = 3, #args do
      table.insert(paths, base .. "&cursor=" .. args[i])
   end
end

function request()
   n = n + 1
   return wrk.format("GET", paths[(n % #paths) + 1], headers)
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok2xx = ok2xx + 1
   else
      bad = bad + 1
      last_bad = status
   end
end

function done(summary, latency, requests)
   local ok, nb, status = 0, 0, 0
   for _, t in ipairs(threads) do
      ok = ok + (t:get("ok2xx") or 0)
      nb = nb + (t:get("bad") or 0)
      if (t:get("last_bad") or 0) ~= 0 then status = t:get("last_bad") end
   end
   local secs = summary.duration / 1e6
   io.write(string.format("TIMELINE 2xx=%d non2xx=%d secs=%.2f rate_2xx=%.0f p50_ms=%.2f " ..
                          "p90_ms=%.2f p99_ms=%.2f max_ms=%.2f last_non2xx_status=%d\n",
                          ok, nb, secs, ok / secs, latency:percentile(50) / 1000,
                          latency:percentile(90) / 1000, latency:percentile(99) / 1000,
                          latency.max / 1000, status))
end
