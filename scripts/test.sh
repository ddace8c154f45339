#!/usr/bin/env bash
# The project's one test command (README "Test"; .ci/run calls exactly this).
#
# Runs the format and lint gates, starts Google's Firestore and Pub/Sub
# emulators, then runs every test in the workspace: unit tests, real HTTP
# over loopback, SQLite on disk, real processes, and the tests that need the
# emulators (marked #[ignore] so a bare `cargo test` skips them visibly).
# Needs a Rust toolchain with rustfmt and clippy, python3 with PyYAML and
# venv (schemathesis is installed from PyPI into a virtualenv), the
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

step "schemathesis for the contract test (a pinned virtualenv beside the build)"
VENV="$(realpath -m "${CARGO_TARGET_DIR:-target}")/schemathesis-venv"
if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qxF -f <(grep -v '^#' scripts/requirements-contract.txt); then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-contract.txt
fi
export SCHEMATHESIS="$VENV/bin/schemathesis"
"$SCHEMATHESIS" --version

step "start the Firestore and Pub/Sub emulators"
start_emulators

step "cargo test (with the emulator tests)"
cargo test --workspace --locked -- --include-ignored
