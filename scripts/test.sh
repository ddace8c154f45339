#!/usr/bin/env bash
# The project's one test command (README "Test"; .ci/run calls exactly this).
#
# Runs the format and lint gates, then every test in the workspace: unit
# tests, real HTTP over loopback, SQLite on disk, real processes. Needs only
# a Rust toolchain (rustup with rustfmt and clippy) on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked
