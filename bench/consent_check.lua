-- wrk script for the HTTP single-decision bench (bench/run.sh, section 5): every request
-- POSTs /v1/consents/check for one of the customer ids given, cycling through purposes.
-- Usage: wrk ... -s bench/consent_check.lua http://127.0.0.1:PORT -- TOKEN ID [ID...]
-- done() prints the 2xx count, the non-2xx count and the 2xx rate.

local token
local ids = {}
local purposes = {"marketing", "analytics", "personalization"}
local n = 0
ok2xx = 0
bad = 0

function init(args)
   token = args[1] or ""
   for i = 2, #args do ids[#ids + 1] = args[i] end
end

function request()
   n = n + 1
   local body = '{"customer_id":"' .. ids[(n % #ids) + 1] .. '","purpose":"' ..
      purposes[(n % #purposes) + 1] .. '","channel":"email"}'
   return wrk.format("POST", "/v1/consents/check",
                     {["Authorization"] = "Bearer " .. token,
                      ["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
   if status >= 200 and status < 300 then ok2xx = ok2xx + 1 else bad = bad + 1 end
end

function done(summary, latency, requests)
   local ok, nb = 0, 0
   for _, t in ipairs(threads or {}) do
      ok = ok + t:get("ok2xx"); nb = nb + t:get("bad")
   end
   io.write(string.format("CONSENT ok2xx=%d bad=%d rate_2xx=%.0f\n", ok, nb,
                          ok / (summary.duration / 1e6)))
end

threads = {}
function setup(thread) table.insert(threads, thread) end
