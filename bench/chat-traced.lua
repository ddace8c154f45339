-- bench/chat.lua with the trace headers Cloud Run adds to every request
-- (bench/chat-cpu.sh: CHAT_CPU_LUA=bench/chat-traced.lua).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
wrk.headers["X-Cloud-Trace-Context"] = "0af7651916cd43dd8448eb211c80319c/13235353063289803569;o=1"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"message":"hello, how are you?","session_id":"bench-' .. (n % 64) .. '"}')
end
