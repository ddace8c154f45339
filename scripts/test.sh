#!/usr/bin/env bash
# The project's one test command (README "Test"; .ci/run calls exactly this).
#
# Runs the format and lint gates, starts Google's Firestore and Pub/Sub
# emulators, then runs every test in the workspace: unit tests, real HTTP
# over loopback, SQLite on disk, real processes, and the tests that need the
# emulators (marked #[ignore] so a bare `cargo test` skips them visibly).
# Needs a Rust toolchain with rustfmt and clippy, python3 with PyYAML, the
# ShellCheck linter, zip and unzip, and the Google Cloud CLI with its Firestore and
# Pub/Sub emulators (Java). deploy.sh and the Lambda script are tested
# against recording fakes of gcloud and aws, so neither needs an account.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

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
  pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
  EMULATOR_PGIDS+=("${pgid:-$pid}")
  for _ in $(seq 1 120); do
    if grep -q "$ready" "$log"; then
      export "$var=127.0.0.1:$port"
      echo "$name emulator on 127.0.0.1:$port (process group ${pgid:-$pid})"
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

step "deploy.sh against a recording fake gcloud"
./scripts/test-deploy.sh

step "packaging: Dockerfile, cloudbuild.yaml, Lambda, shellcheck"
./scripts/test-packaging.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build the tests"
cargo test --workspace --locked --no-run

step "start the Firestore and Pub/Sub emulators"
start_emulator Firestore "Dev App Server is now running" FIRESTORE_EMULATOR_HOST emulators firestore start
start_emulator Pub/Sub "Server started" PUBSUB_EMULATOR_HOST beta emulators pubsub start --project=test-project

step "cargo test (with the emulator tests)"
cargo test --workspace --locked -- --include-ignored
