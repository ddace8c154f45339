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

# What the checks need beyond the Rust toolchain and the Google Cloud CLI.
# On a new Debian machine (as root) the missing packages are installed;
# elsewhere the script stops at once, naming the command to run.
step "prerequisites"
missing=()
for tool in shellcheck zip unzip; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]}; install them first: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "installing PyYAML for python3 (the packaging checks parse cloudbuild.yaml)"
  python3 -m pip install --quiet --disable-pip-version-check pyyaml ||
    { echo "missing: PyYAML; install it first: python3 -m pip install pyyaml" >&2; exit 1; }
fi
for tool in gcloud java cargo; do
  command -v "$tool" >/dev/null || {
    echo "missing: $tool (the Google Cloud CLI with its Firestore and Pub/Sub emulators, Java, and a Rust toolchain)" >&2
    exit 1
  }
done

step "deploy.sh against a recording fake gcloud"
./scripts/test-deploy.sh

step "packaging: Dockerfile, cloudbuild.yaml, Lambda, shellcheck"
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

step "schemathesis for the contract test (a pinned virtualenv beside the build)"
VENV="$(realpath -m "${CARGO_TARGET_DIR:-target}")/schemathesis-venv"
if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qxF -f <(grep -v '^#' scripts/requirements-contract.txt); then
  # Made again from nothing: a virtualenv moved with its target directory
  # keeps scripts that point at the old place and cannot run.
  python3 -m venv --clear "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-contract.txt
fi
export SCHEMATHESIS="$VENV/bin/schemathesis"
"$SCHEMATHESIS" --version

step "start the Firestore and Pub/Sub emulators"
start_emulators

step "cargo test (with the emulator tests)"
cargo test --workspace --locked -- --include-ignored
