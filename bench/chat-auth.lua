-- bench/chat.lua with a credential from the environment: BENCH_API_KEY as
-- X-API-Key, BENCH_TOKEN (from `bench issuer`) as Authorization: Bearer.
-- BENCH_TOKEN=... wrk -t1 -c8 -d10s -s bench/chat-auth.lua http://127.0.0.1:8080/api/v1/chat
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_API_KEY")
if key and key ~= "" then wrk.headers["X-API-Key"] = key end
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"message":"hello, how are you?","session_id":"bench-' .. (n % 64) .. '"}')
end
