#!/usr/bin/env bash
# The chat function's own CPU per request (BENCHMARKS.md, "Chat CPU per
# request"): starts each given chat_function binary on a fresh SQLite file,
# loads it with wrk (2 threads, 64 connections, bench/chat.lua) after a
# one-second warm-up, and reads the server's CPU time (utime + stime of
# /proc/PID/stat) before and after: the difference over the requests wrk
# completed is its CPU per request. The binaries take turns, round after
# round, so that a machine whose speed drifts shifts them all alike; the
# median and spread of each are printed at the end.
#
#   bench/chat-cpu.sh ROUNDS BINARY...
#   bench/chat-cpu.sh 6 /tmp/before/chat_function target/release/chat_function
#   CHAT_CPU_LOG=default CHAT_CPU_LUA=bench/chat-traced.lua \
#     bench/chat-cpu.sh 6 BEFORE AFTER LOG_FORMAT=json
#
# Arguments after the binaries of the form VAR=value are set for the
# server. Settings (environment): CHAT_CPU_SECONDS (10), CHAT_CPU_LOG
# (RUST_LOG, warn; `default` leaves it unset, which is info),
# CHAT_CPU_LUA (bench/chat.lua; bench/chat-traced.lua adds the trace
# headers Cloud Run sends), CHAT_CPU_PORT (18080).
#
# Each run also prints `other`: the cores that other processes kept busy
# meanwhile (all CPU time less the server's and wrk's), since a busy
# neighbour raises the CPU a request takes. Needs wrk, curl and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "chat-cpu: $*" >&2
  exit 1
}

[[ $# -ge 2 ]] || die "usage: bench/chat-cpu.sh ROUNDS BINARY... [VAR=value...]"
rounds=$1
shift
binaries=()
settings=()
for arg in "$@"; do
  if [[ $arg == *=* ]]; then settings+=("$arg"); else binaries+=("$arg"); fi
done
[[ ${#binaries[@]} -ge 1 ]] || die "no binary given"
for tool in wrk curl /usr/bin/time; do
  command -v "$tool" >/dev/null || die "$tool is required (apt-get install wrk curl time)"
done

seconds=${CHAT_CPU_SECONDS:-10}
log=${CHAT_CPU_LOG:-warn}
lua=${CHAT_CPU_LUA:-bench/chat.lua}
port=${CHAT_CPU_PORT:-18080}
url="http://127.0.0.1:$port/api/v1/chat"
ticks=$(getconf CLK_TCK)
work=$(mktemp -d "${TMPDIR:-/tmp}/chat-cpu.XXXXXX")
server=""
cleanup() {
  if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then
    kill "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Seconds of CPU the whole machine has spent, in clock ticks.
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# The server's utime + stime, in clock ticks.
server_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }

# One run: prints "cpu_us_per_request user_us sys_us requests req_per_s other_cores".
run() {
  local binary=$1 db="$work/chat.db"
  rm -f "$db" "$db-wal" "$db-shm"
  local env=(PORT="$port" RATE_LIMIT_CHAT=10000/1s SQLITE_PATH="$db" "${settings[@]}")
  [[ $log == default ]] || env+=(RUST_LOG="$log")
  env "${env[@]}" "$binary" >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/health" && break
    sleep 0.05
  done
  wrk -t2 -c64 -d1s -s "$lua" "$url" >/dev/null
  local u0 s0 b0 u1 s1 b1 out
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$server/stat")
  b0=$(busy)
  out=$({ /usr/bin/time -f "wrk-cpu %U %S" wrk -t2 -c64 -d"${seconds}s" -s "$lua" "$url"; } 2>&1)
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$server/stat")
  b1=$(busy)
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=""
  grep -q 'Non-2xx\|Socket errors' <<<"$out" && die "$binary: failed requests: $out"
  awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v b=$((b1 - b0)) -v t="$ticks" -v d="$seconds" '
    /requests in/ { n = $1 }
    /Requests\/sec/ { rps = $2 }
    /^wrk-cpu/ { w = $2 + $3 }
    END {
      printf "%.1f %.1f %.1f %d %.0f %.2f\n", (u + s) * 1e6 / t / n, u * 1e6 / t / n, s * 1e6 / t / n, n, rps,
        (b / t - (u + s) / t - w) / d
    }' <<<"$out"
}

for round in $(seq 1 "$rounds"); do
  for i in "${!binaries[@]}"; do
    read -r cpu user sys n rps other < <(run "${binaries[$i]}")
    echo "$i $cpu" >>"$work/runs"
    printf 'round %d  %-40s %7.1f us/request (user %.1f, sys %.1f)  %d requests  %s req/s  other %s cores\n' \
      "$round" "${binaries[$i]}" "$cpu" "$user" "$sys" "$n" "$rps" "$other"
  done
done

echo
for i in "${!binaries[@]}"; do
  awk -v i="$i" '$1 == i {print $2}' "$work/runs" | sort -n | awk -v name="${binaries[$i]}" '
    { v[NR] = $1 }
    END {
      median = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%-40s median %.1f us/request, min %.1f, max %.1f, %d runs\n", name, median, v[1], v[NR], NR
    }'
done
