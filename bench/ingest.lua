-- wrk script for the HTTP ingestion bench (bench/run.sh): every request POSTs a distinct
-- interaction. Identities are drawn from a pool so customers are both created and reused;
-- one request in four carries a unique Idempotency-Key; bodies are about 560 bytes.
-- Usage: wrk ... -s bench/ingest.lua http://127.0.0.1:PORT -- TOKEN [POOL]
-- done() prints the 2xx count, the non-2xx count (and the last such status), the 2xx rate.

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

local token, pool
local n = 0
ok2xx = 0  -- globals: done() reads them with thread:get
bad = 0
last_bad = 0
local channels = {"email", "sms", "phone", "chat", "social", "app", "push", "post", "in_person"}
local filler = string.rep("Thanks for your message about the late parcel; we have asked the " ..
                          "courier for an update and will write again within two working days. ", 4)
local text = string.sub(filler, 1, 560)

function init(args)
   token = args[1] or ""
   pool = tonumber(args[2] or "20000")
   math.randomseed(os.time() + (tid or 0) * 7919)
end

function request()
   n = n + 1
   local who = math.random(pool)
   local ch = channels[(n % #channels) + 1]
   local dir = (n % 3 == 0) and "outbound" or "inbound"
   local body = string.format(
      '{"identity":{"type":"email","value":"wrk%d@example.com"},"channel":"%s",' ..
      '"direction":"%s","thread_id":"t-%d-%d","subject":"Order %d: delivery",' ..
      '"body":"%s (ref %d-%d)","metadata":{"source":"wrk","n":%d}}',
      who, ch, dir, tid or 0, math.floor(n / 4), n, text, tid or 0, n, n)
   local headers = {
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json",
      ["Candor-Purpose"] = "service",
   }
   if n % 4 == 0 then
      headers["Idempotency-Key"] = string.format("wrk-%d-%d-%d", tid or 0, n, math.random(1e9))
   end
   return wrk.format("POST", "/v1/interactions", headers, body)
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
   io.write(string.format("INGEST 2xx=%d non2xx=%d socket_errors=%d secs=%.2f " ..
                          "rate_2xx=%.0f p50_ms=%.2f p99_ms=%.2f last_non2xx_status=%d\n",
                          ok, nb, summary.errors.connect + summary.errors.read +
                          summary.errors.write + summary.errors.timeout, secs, ok / secs,
                          latency:percentile(50) / 1000, latency:percentile(99) / 1000, status))
end
