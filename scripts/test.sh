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

# shellcheck source=scripts/emulators.sh
source scripts/emulators.sh

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
start_emulators

step "cargo test (with the emulator tests)"
cargo test --workspace --locked -- --include-ignored
