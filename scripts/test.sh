#!/usr/bin/env bash
# The project's one test command (README "Test"; .ci/run calls exactly this).
#
# Runs the format and lint gates, starts Google's Firestore and Pub/Sub
# emulators, then runs every test in the workspace: unit tests, real HTTP
# over loopback, SQLite on disk, real processes, a real browser, and the
# tests that need the emulators or the installed tools (marked #[ignore] so
# a bare `cargo test` skips them visibly). Needs a Rust toolchain with
# rustfmt and clippy, the Google Cloud CLI with its Firestore and Pub/Sub
# emulators (Java), python3 and Node.js 20 with npm; the rest (zip, unzip,
# python3's venv, Chromium, ShellCheck, from PyPI the SDKs, schemathesis
# and PyYAML in a virtualenv beside the build, and from npm playwright-core)
# it installs when missing, see scripts/prerequisites.sh. deploy.sh and the Lambda script are tested
# against recording fakes of gcloud and aws, so neither needs an account.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# shellcheck source=scripts/emulators.sh
source scripts/emulators.sh

# What the checks need beyond the Rust toolchain and the Google Cloud CLI:
# installed when missing (the distribution's packages as root on Debian,
# else ShellCheck from PyPI into the virtualenv), or the script stops at
# once naming the command to run. Exports VENV, SCHEMATHESIS, PYTHON and
# SHELLCHECK.
step "prerequisites"
# shellcheck source=scripts/prerequisites.sh
source scripts/prerequisites.sh
prerequisites

step "deploy.sh against a recording fake gcloud"
./scripts/test-deploy.sh

step "packaging: Dockerfile, cloudbuild.yaml, Lambda (a zip of chat_function's dev build), shellcheck"
./scripts/test-packaging.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc for agent-core (warnings are errors; no test support in the release API)"
doc="${CARGO_TARGET_DIR:-target}/doc/agent_core"
rm -rf "$doc" # rustdoc leaves the pages of modules that are gone
RUSTDOCFLAGS="-D warnings" cargo doc -p agent-core --no-deps --locked
for module in testing store/contract; do
  if [[ -e "$doc/$module" ]]; then
    echo "agent_core::${module//\//::} is documented: test support leaked into the release library" >&2
    exit 1
  fi
done

step "build the tests"
cargo test --workspace --locked --no-run

step "start the Firestore and Pub/Sub emulators"
start_emulators

step "cargo test (with the emulator tests)"
cargo test --workspace --locked -- --include-ignored
