#!/usr/bin/env bash
# Runs one command with both emulators up, then stops them: the quick way to
# rerun one emulator test while working on it, e.g.
#   scripts/with-emulators.sh cargo test -p agent_worker --test pubsub -- --include-ignored
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/emulators.sh
source scripts/emulators.sh
start_emulators
"$@"
