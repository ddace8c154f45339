-- wrk script for POST /api/v1/chat: 64 sessions in turn, as 64 users would.
-- wrk -t2 -c64 -d10s --latency -s bench/chat.lua http://127.0.0.1:8080/api/v1/chat
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"message":"hello, how are you?","session_id":"bench-' .. (n % 64) .. '"}')
end
