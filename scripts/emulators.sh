# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/with-emulators.sh: starts Google's
# Firestore and Pub/Sub emulators and stops them when the shell exits.

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

EMULATOR_PGIDS=()

# gcloud starts a Java child that outlives it, so each emulator runs in a
# process group of its own and is stopped by that group's id, never by name.
stop_emulators() {
  local pgid
  for pgid in "${EMULATOR_PGIDS[@]}"; do
    kill -TERM -- "-$pgid" 2>/dev/null || true
  done
  sleep 1
  for pgid in "${EMULATOR_PGIDS[@]}"; do
    kill -KILL -- "-$pgid" 2>/dev/null || true
  done
}
trap stop_emulators EXIT

# start_emulator NAME READY_LINE VAR gcloud-args...: starts an emulator on a
# free port in its own process group, waits for READY_LINE in its log, and
# exports VAR=127.0.0.1:PORT.
start_emulator() {
  local name=$1 ready=$2 var=$3 port log pid pgid
  shift 3
  port=$(free_port)
  log=$(mktemp -t "${name//[^A-Za-z]/}-emulator.XXXXXX")
  setsid gcloud "$@" --host-port="127.0.0.1:$port" >"$log" 2>&1 < /dev/null &
  pid=$!
  # setsid makes the child the leader of a new group, whose id is its pid.
  # Until it has run, ps still shows the caller's group, which must never be
  # recorded: stopping that group would kill the caller (the test run).
  pgid=""
  for _ in $(seq 1 250); do
    pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
    [[ $pgid == "$pid" ]] && break
    sleep 0.02
  done
  if [[ $pgid != "$pid" ]]; then
    echo "the $name emulator did not get a process group of its own (pid $pid, group ${pgid:-none})" >&2
    kill "$pid" 2>/dev/null || true
    return 1
  fi
  EMULATOR_PGIDS+=("$pid")
  for _ in $(seq 1 120); do
    if grep -q "$ready" "$log"; then
      export "$var=127.0.0.1:$port"
      echo "$name emulator on 127.0.0.1:$port (process group $pid)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    sleep 0.5
  done
  echo "the $name emulator did not start; its log:" >&2
  cat "$log" >&2
  return 1
}

# start_emulators: both emulators, exporting FIRESTORE_EMULATOR_HOST and
# PUBSUB_EMULATOR_HOST for the commands that follow.
start_emulators() {
  start_emulator Firestore "Dev App Server is now running" FIRESTORE_EMULATOR_HOST emulators firestore start
  start_emulator Pub/Sub "Server started" PUBSUB_EMULATOR_HOST beta emulators pubsub start --project=test-project
}
