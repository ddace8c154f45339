#!/usr/bin/env bash
# The soak: the release `local` runner under a real load generator (wrk,
# with scripts/soak.lua's mix of chat, agent, async agent, task, tool and
# health requests) for SOAK_SECONDS, then checks that nothing failed and
# that memory stayed flat. Figures go to RELIABILITY.md ("Soak").
#
#   scripts/soak.sh                    # 64 connections, 2 threads, 60 s
#   SOAK_SECONDS=10 scripts/soak.sh    # a short run, to try it
#
# Settings (environment): SOAK_SECONDS (60), SOAK_CONNECTIONS (64),
# SOAK_THREADS (2), SOAK_WARMUP_SECONDS (5), SOAK_IDLE_SECONDS (10, idle
# time after the run before the last memory sample), SOAK_KEEP=1 to keep the
# temporary folder (database, server log, RSS log, wrk output), which is
# also kept when the soak fails. Builds with `cargo build --release -p
# local`, so CARGO_TARGET_DIR is respected.
#
# Exits non-zero when any response was a 5xx (as wrk saw it, or as the
# server counted it, warm-up included), a request failed at the socket, the
# process died, the local queue did not drain, or an asynchronous task did
# not complete. Needs wrk and curl; sqlite3, when installed, adds a count of
# the stored tasks by status.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${SOAK_SECONDS:-60}
connections=${SOAK_CONNECTIONS:-64}
threads=${SOAK_THREADS:-2}
warmup=${SOAK_WARMUP_SECONDS:-5}
idle=${SOAK_IDLE_SECONDS:-10}
# Every sample of the process's memory is this many seconds apart.
sample_every=5

die() {
  echo "soak: $*" >&2
  exit 1
}

for tool in wrk curl awk; do
  command -v "$tool" >/dev/null || die "$tool is required (apt-get install $tool)"
done

echo "==> cargo build --release -p local"
cargo build --release --locked -p local
bin="${CARGO_TARGET_DIR:-target}/release/local"
[[ -x $bin ]] || die "no binary at $bin after the build"

work=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")
server_pid=""
sampler_pid=""
keep=${SOAK_KEEP:-0}
cleanup() {
  if [[ -n $sampler_pid ]]; then
    kill "$sampler_pid" 2>/dev/null || true
  fi
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
  fi
  if [[ $keep == 1 ]]; then
    echo "soak: kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# A port nothing listens on (bash's /dev/tcp fails to connect to it).
port=""
for _ in $(seq 1 50); do
  candidate=$((20000 + RANDOM % 40000))
  if ! (: <"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
    port=$candidate
    break
  fi
done
[[ -n $port ]] || die "found no free port"
url="http://127.0.0.1:$port"

# The rate limits are raised to the most a limit may be, 10000 a second
# (above what wrk sends here): the soak tests serving, not the limiter (which
# still runs, logging every request in the store, but never refuses one). The offline model is forced so a provider
# key in the environment never sends the load to a paid API, and every
# other setting that would change what is served is cleared.
echo "==> starting $bin on $url (store $work/agent.db)"
env \
  PORT="$port" \
  SQLITE_PATH="$work/agent.db" \
  STORE=sqlite \
  QUEUE=local \
  LLM_PROVIDER=offline \
  API_KEYS= \
  SEARCH_URL= \
  CALCULATOR_URL= \
  SEARCH_CORPUS= \
  RATE_LIMIT_CHAT=10000/1s \
  RATE_LIMIT_AGENT=10000/1s \
  RATE_LIMIT_TOOLS=10000/1s \
  RATE_LIMIT_TASKS=10000/1s \
  LOG_FORMAT=pretty \
  RUST_LOG=info \
  "$bin" >"$work/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 100); do
  kill -0 "$server_pid" 2>/dev/null || {
    keep=1
    cat "$work/server.log" >&2
    die "the server exited at start-up"
  }
  curl -fsS "$url/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$url/health" >/dev/null || die "no answer from $url/health after 10 s"

# From /proc/PID/status: VmRSS (resident now), RssAnon (its heap and
# stacks part), VmHWM (the peak so far), all in kB, and Threads; and the
# open files.
status_kb() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$server_pid/status"; }
open_fds() { find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }
sample() {
  printf '%s %s rss_kb=%s anon_kb=%s hwm_kb=%s threads=%s fds=%s\n' "$(date +%s)" "$1" \
    "$(status_kb VmRSS)" "$(status_kb RssAnon)" "$(status_kb VmHWM)" "$(status_kb Threads)" "$(open_fds)"
}

rss_boot=$(status_kb VmRSS)
echo "==> warm-up: ${warmup}s of the same mix (RSS at boot $(mb "$rss_boot") MiB)"
wrk -t"$threads" -c"$connections" -d"${warmup}s" --timeout 10s -s scripts/soak.lua "$url" >"$work/warmup.txt"

rss_start=$(status_kb VmRSS)
sample start >"$work/rss.log"
(
  while kill -0 "$server_pid" 2>/dev/null; do
    sleep "$sample_every"
    sample run >>"$work/rss.log" 2>/dev/null || true
  done
) &
sampler_pid=$!

echo "==> wrk -t$threads -c$connections -d${seconds}s --latency --timeout 10s -s scripts/soak.lua $url"
wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency --timeout 10s -s scripts/soak.lua "$url" | tee "$work/wrk.txt"

kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""

failures=()
alive=1
kill -0 "$server_pid" 2>/dev/null || alive=0
if [[ $alive == 0 ]]; then
  failures+=("the server process died during the run")
  keep=1
  tail -n 50 "$work/server.log" >&2
  echo "soak: FAILED: ${failures[*]}" >&2
  exit 1
fi
rss_end=$(status_kb VmRSS)
sample end >>"$work/rss.log"

soak_line=$(grep '^SOAK ' "$work/wrk.txt" || true)
[[ -n $soak_line ]] || die "wrk printed no SOAK line (see $work/wrk.txt)"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$soak_line"; }

# The server's own counters: answers by status over the whole life of the
# process (warm-up included), and what the local queue did.
metric_sum() {
  # The sum of every series of the counter $1 that has all the labels after it.
  local name=$1
  shift
  curl -fsS "$url/metrics" | awk -v name="$name" -v labels="$*" '
    BEGIN { n = split(labels, want, " ") }
    index($0, name "{") == 1 {
      for (i = 1; i <= n; i++) if (!index($0, want[i])) next
      sum += $NF
    }
    END { printf "%d\n", sum }'
}
server_5xx=$(curl -fsS "$url/metrics" | awk '/^http_requests_total\{/ && /status="5[0-9][0-9]"/ { s += $NF } END { printf "%d\n", s }')

# Tasks in the store not yet at an end (synchronous runs included), when
# sqlite3 can tell; 0 otherwise.
unfinished() {
  if command -v sqlite3 >/dev/null; then
    sqlite3 -readonly "$work/agent.db" "SELECT count(*) FROM tasks WHERE status IN ('queued', 'running');"
  else
    echo 0
  fi
}

# Drained: every task accepted asynchronously (202) has been run to an end
# by the local queue, and no task in the store is left queued or running.
# (The queue may finish a few more than were answered 202: a task published
# just as wrk closed its connection runs, but its 202 was never sent.)
accepted=$(metric_sum http_requests_total 'route="/api/v1/agent"' 'status="202"')
drained=0
for _ in $(seq 1 120); do
  completed=$(metric_sum worker_tasks_total 'outcome="completed"')
  failed=$(metric_sum worker_tasks_total 'outcome="failed"')
  if ((completed + failed >= accepted)) && (($(unfinished) == 0)); then
    drained=1
    break
  fi
  sleep 0.5
done
echo "==> local queue: $accepted accepted asynchronously, $completed completed, $failed failed"
((drained == 1)) || failures+=("not drained 60 s after the run: $accepted accepted asynchronously, $((completed + failed)) finished; $(unfinished) tasks queued or running in the store")
((failed == 0)) || failures+=("$failed asynchronous tasks failed")

# One asynchronous task the load generator saw accepted, read back.
async_task=$(sed -n 's/^SOAK_TASK //p' "$work/wrk.txt" | tail -n 1)
if [[ -n $async_task ]]; then
  async_status=$(curl -fsS "$url/api/v1/tasks/$async_task" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
  echo "==> asynchronous task $async_task: $async_status"
  [[ $async_status == completed ]] || failures+=("asynchronous task $async_task is $async_status, not completed")
else
  failures+=("no asynchronous task was accepted during the run")
fi

if command -v sqlite3 >/dev/null; then
  echo "==> tasks in the store (synchronous and asynchronous runs): status|count|claimed more than once"
  sqlite3 -readonly "$work/agent.db" 'SELECT status, count(*), sum(attempts > 1) FROM tasks GROUP BY status ORDER BY status;' |
    tee "$work/tasks.txt" | sed 's/^/  /'
fi

echo "==> idle ${idle}s"
sleep "$idle"
kill -0 "$server_pid" 2>/dev/null || failures+=("the server process died while idle")
rss_idle=$(status_kb VmRSS)
hwm=$(status_kb VmHWM)
sample idle >>"$work/rss.log"
# The peak: the largest sample, or VmHWM if larger (it can also read lower
# than a sample: the kernel updates it lazily).
rss_peak=$(awk '{ for (i = 3; i <= NF; i++) if ($i ~ /^(rss|hwm)_kb=/) { v = substr($i, index($i, "=") + 1) + 0; if (v > max) max = v } }
  END { print max }' "$work/rss.log")

echo "==> RSS samples (every ${sample_every}s)"
sed 's/^/  /' "$work/rss.log"

kill -TERM "$server_pid"
stop_rc=0
wait "$server_pid" || stop_rc=$?
server_pid=""
((stop_rc == 0)) || failures+=("the server exited with $stop_rc on SIGTERM")

wrk_5xx=$(field 5xx)
socket_errors=$(field socket_errors)
((wrk_5xx == 0)) || failures+=("$wrk_5xx responses were 5xx")
((server_5xx == 0)) || failures+=("the server counted $server_5xx 5xx responses (warm-up included)")
((socket_errors == 0)) || failures+=("$socket_errors requests failed at the socket (timeouts: $(field timeouts))")
# The server's warnings and errors, without colours and timestamps, counted
# by message (the start-up warning that API_KEYS is empty is expected).
grep -E 'WARN|ERROR' "$work/server.log" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^[^ ]* *//' |
  sort | uniq -c | sort -rn >"$work/warnings.txt" || true
warnings=$(awk '{ n += $1 } END { printf "%d\n", n }' "$work/warnings.txt")

cat <<EOF

== soak summary ==
load        wrk -t$threads -c$connections -d${seconds}s (after ${warmup}s warm-up), scripts/soak.lua mix
requests    $(field requests) in $(field seconds)s = $(field rps) req/s
statuses    2xx=$(field 2xx) 4xx=$(field 4xx) 5xx=$wrk_5xx (server-side 5xx, warm-up included: $server_5xx); socket errors $socket_errors
latency     p50=$(field p50_ms) ms p90=$(field p90_ms) ms p99=$(field p99_ms) ms p99.9=$(field p999_ms) ms max=$(field max_ms) ms
RSS         boot $(mb "$rss_boot") MiB, start $(mb "$rss_start") MiB, peak $(mb "$rss_peak") MiB (VmHWM now $(mb "$hwm") MiB), end $(mb "$rss_end") MiB, after ${idle}s idle $(mb "$rss_idle") MiB
queue       $accepted async tasks answered 202, $completed completed, $failed failed; drained: $([[ $drained == 1 ]] && echo yes || echo no)
server log  $warnings WARN/ERROR lines
EOF
head -n 5 "$work/warnings.txt" | cut -c1-160 | sed 's/^/           /'

if ((${#failures[@]} > 0)); then
  keep=1
  printf 'soak: FAILED: %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "soak: OK"
