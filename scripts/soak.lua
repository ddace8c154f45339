-- wrk script for the soak (scripts/soak.sh): a fixed mix of chat, agent,
-- task and tool traffic, sent round-robin from a 40-slot schedule so every
-- run sends the same proportions:
--
--   chat, one of 16 fixed sessions (history is read and grows)   10/40
--   chat, a new session                                             4/40
--   agent, synchronous (calculator + search)                        5/40
--   agent, synchronous, per-session memory (store then recall)      2/40
--   agent, async: true (queued, run by the local queue)             1/40
--   GET /api/v1/tasks/{id} of a task this thread saw                4/40
--   GET /api/v1/tasks/{id} of an unknown id (404 expected)          1/40
--   POST /api/v1/tools/calculate                                    6/40
--   POST /api/v1/tools/search                                       5/40
--   GET /health                                                     2/40
--
-- Each request carries X-Request-Id "soak-KIND-N"; the server echoes it, so
-- a response is counted under the kind of request it answers (wrk does not
-- say which connection a response came from). Counts are per thread and
-- summed in done(). Output: a human summary, then one line starting with
-- "SOAK " of key=value pairs for scripts/soak.sh, and "SOAK_TASK <id>" for
-- one asynchronous task the server accepted (soak.sh checks it completed).

local schedule = {
  "chat_fixed", "calculate", "agent", "search", "chat_fixed", "task_known",
  "chat_new", "calculate", "chat_fixed", "search", "agent", "health",
  "chat_fixed", "calculate", "agent_memory", "task_known", "chat_fixed",
  "search", "chat_new", "agent_async",
  "chat_fixed", "calculate", "agent", "search", "chat_fixed", "task_known",
  "chat_new", "calculate", "chat_fixed", "search", "agent", "health",
  "chat_fixed", "calculate", "agent_memory", "task_known", "chat_fixed",
  "agent", "chat_new", "task_unknown",
}

local kinds = {
  "chat_fixed", "chat_new", "agent", "agent_memory", "agent_async",
  "task_known", "task_unknown", "calculate", "search", "health",
}

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

local json_headers = { ["Content-Type"] = "application/json" }

local expressions = {
  "2*(3+4)", "15 * 23", "sqrt(2) ^ 2 + ln(e)", "max(1, 2, 3) / 4",
  "(1.5e3 - 250) % 7", "-(-(-1))", "round(pi * 1000) / 1000", "10 / 4 + 3 ^ 2",
}
local queries = {
  "cold start", "session memory", "rate limit", "webhook signature",
  "firestore", "pubsub", "calculator", "asynchronous runs",
}

function init(args)
  -- Per-thread state (each wrk thread has its own Lua state).
  -- Flat, keyed "KIND CLASS" ("chat_new 2xx"): wrk 4.1 crashes copying a
  -- nested table out of a thread in done().
  counts = {}
  n = 0
  known_tasks = {}
  known_count = 0
  known_next = 1
  async_task = ""
  async_accepted = 0
  tasks_completed_seen = 0
  thread_id = id or 0
end

local function body_of(t)
  local parts = {}
  for _, kv in ipairs(t) do
    local v = kv[2]
    if type(v) == "string" then
      v = '"' .. v .. '"'
    else
      v = tostring(v)
    end
    table.insert(parts, '"' .. kv[1] .. '":' .. v)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function request()
  n = n + 1
  local kind = schedule[(n - 1) % #schedule + 1]
  local headers = { ["X-Request-Id"] = "soak-" .. kind .. "-" .. thread_id .. "-" .. n }
  local method, path, body = "POST", nil, nil
  if kind == "chat_fixed" then
    path = "/api/v1/chat"
    body = body_of({
      { "message", "soak message " .. n },
      { "session_id", "soak-" .. (n % 16) },
    })
  elseif kind == "chat_new" then
    path = "/api/v1/chat"
    body = body_of({ { "message", "hello from a new session " .. n } })
  elseif kind == "agent" then
    path = "/api/v1/agent"
    body = body_of({ { "task", "Calcula 15 * 23 y busca información sobre matemáticas" } })
  elseif kind == "agent_memory" then
    path = "/api/v1/agent"
    local session = "soak-mem-" .. (n % 8)
    if math.floor(n / #schedule) % 2 == 0 then
      body = body_of({
        { "task", "remember that my favourite number is " .. n },
        { "session_id", session },
      })
    else
      body = body_of({ { "task", "what do you remember?" }, { "session_id", session } })
    end
  elseif kind == "agent_async" then
    path = "/api/v1/agent"
    body = body_of({
      { "task", "Calcula 15 * 23 y busca información sobre matemáticas" },
      { "async", true },
    })
  elseif kind == "task_known" then
    method = "GET"
    if known_count > 0 then
      path = "/api/v1/tasks/" .. known_tasks[(n % known_count) + 1]
    else
      path = "/api/v1/tasks/soak-none-yet"
    end
  elseif kind == "task_unknown" then
    method = "GET"
    path = "/api/v1/tasks/soak-unknown-" .. n
  elseif kind == "calculate" then
    path = "/api/v1/tools/calculate"
    body = body_of({ { "expression", expressions[(n % #expressions) + 1] } })
  elseif kind == "search" then
    path = "/api/v1/tools/search"
    body = body_of({ { "query", queries[(n % #queries) + 1] }, { "max_results", 3 } })
  else
    method = "GET"
    path = "/health"
  end
  if body then
    for k, v in pairs(json_headers) do
      headers[k] = v
    end
  end
  return wrk.format(method, path, headers, body)
end

local function header(headers, name)
  return headers[name] or headers[string.lower(name)]
end

function response(status, headers, body)
  local rid = header(headers, "X-Request-Id") or ""
  local kind = string.match(rid, "^soak%-([a-z_]+)%-") or "other"
  local key = kind .. " " .. math.floor(status / 100) .. "xx"
  counts[key] = (counts[key] or 0) + 1
  if status >= 200 and status < 300 and (kind == "agent" or kind == "agent_async" or kind == "agent_memory") then
    local task_id = string.match(body, '"task_id":"([^"]+)"')
    if task_id then
      -- A bounded ring of the last 64 task ids, to read back.
      known_tasks[known_next] = task_id
      known_next = known_next % 64 + 1
      known_count = math.min(known_count + 1, 64)
      if kind == "agent_async" and status == 202 then
        async_task = task_id
        async_accepted = async_accepted + 1
      end
    end
  end
  if kind == "task_known" and status == 200 and string.find(body, '"status":"completed"', 1, true) then
    tasks_completed_seen = tasks_completed_seen + 1
  end
end

local function pct(latency, p)
  return latency:percentile(p) / 1000.0
end

function done(summary, latency, requests)
  local classes = { "2xx", "3xx", "4xx", "5xx" }
  local total = {}
  for _, class in ipairs(classes) do total[class] = 0 end
  local per_kind = {}
  local async_task_id, async_total, completed_seen = "", 0, 0
  for _, thread in ipairs(threads) do
    for key, v in pairs(thread:get("counts")) do
      local kind, class = string.match(key, "^(%S+) (%S+)$")
      per_kind[kind] = per_kind[kind] or { ["2xx"] = 0, ["3xx"] = 0, ["4xx"] = 0, ["5xx"] = 0 }
      per_kind[kind][class] = (per_kind[kind][class] or 0) + v
      total[class] = (total[class] or 0) + v
    end
    local t = thread:get("async_task")
    if t and t ~= "" then
      async_task_id = t
    end
    async_total = async_total + (thread:get("async_accepted") or 0)
    completed_seen = completed_seen + (thread:get("tasks_completed_seen") or 0)
  end
  local seconds = summary.duration / 1e6
  local errors = summary.errors
  local socket_errors = errors.connect + errors.read + errors.write + errors.timeout
  io.write("\n-- soak mix: responses by request kind (2xx/4xx/5xx) --\n")
  local order = {}
  for _, k in ipairs(kinds) do table.insert(order, k) end
  table.insert(order, "other")
  for _, k in ipairs(order) do
    local c = per_kind[k]
    if c then
      io.write(string.format("  %-13s 2xx=%-8d 4xx=%-6d 5xx=%d\n", k, c["2xx"], c["4xx"], c["5xx"]))
    end
  end
  io.write(string.format(
    "requests=%d in %.1fs (%.0f req/s); 2xx=%d 3xx=%d 4xx=%d 5xx=%d; socket errors=%d (timeouts %d)\n",
    summary.requests, seconds, summary.requests / seconds,
    total["2xx"], total["3xx"], total["4xx"], total["5xx"], socket_errors, errors.timeout))
  io.write(string.format(
    "latency ms: p50=%.2f p90=%.2f p99=%.2f p99.9=%.2f max=%.2f mean=%.2f\n",
    pct(latency, 50), pct(latency, 90), pct(latency, 99), pct(latency, 99.9),
    latency.max / 1000.0, latency.mean / 1000.0))
  io.write(string.format(
    "SOAK requests=%d seconds=%.1f rps=%.1f 2xx=%d 3xx=%d 4xx=%d 5xx=%d socket_errors=%d timeouts=%d "
      .. "p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f p999_ms=%.2f max_ms=%.2f async_accepted=%d completed_seen=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    total["2xx"], total["3xx"], total["4xx"], total["5xx"], socket_errors, errors.timeout,
    pct(latency, 50), pct(latency, 90), pct(latency, 99), pct(latency, 99.9),
    latency.max / 1000.0, async_total, completed_seen))
  if async_task_id ~= "" then
    io.write("SOAK_TASK " .. async_task_id .. "\n")
  end
end
