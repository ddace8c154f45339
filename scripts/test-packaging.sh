#!/usr/bin/env bash
# Checks the packaging files: cloudbuild.yaml's step graph, the Dockerfile
# and .dockerignore against the workspace, scripts/lambda.sh (the zip it
# makes of a real build, and deploy against a recording fake aws CLI), and
# every shell script with ShellCheck. Needs bash, coreutils, cargo, python3
# with PyYAML (PYTHON, default python3), zip/unzip and ShellCheck
# (SHELLCHECK, default shellcheck); scripts/test.sh provides them.
#
# The one build is the Lambda zip check's: `scripts/lambda.sh build
# --profile dev chat_function`, cargo's dev build (LAMBDA_CHECK_PROFILE
# chooses another, e.g. release). It shares the tests' dependencies but for
# a dozen crates that the tests build with other features: a few minutes
# once per target directory, seconds after. The zip holds whatever binary
# the profile makes, so the dev build checks the packaging as a release
# build would, without fat LTO's nine minutes.
# Exits non-zero on the first failed check.
set -euo pipefail
cd "$(dirname "$0")/.."

FUNCTIONS=(chat_function agent_function agent_worker search_function calculator_function)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

step() { printf '\n==> %s\n' "$*"; }
ok() { printf '  ok: %s\n' "$*"; }
fail() {
  printf '  FAIL: %s\n' "$*" >&2
  exit 1
}

PYTHON=${PYTHON:-python3}
SHELLCHECK=${SHELLCHECK:-shellcheck}
for tool in cargo "$PYTHON" "$SHELLCHECK" zip unzip; do
  command -v "$tool" > /dev/null || fail "$tool is not installed (scripts/test.sh installs what is missing)"
done
"$PYTHON" -c 'import yaml' 2> /dev/null || fail "$PYTHON has no PyYAML (scripts/test.sh installs it into its virtualenv)"

# ------------------------------------------------------------ cloudbuild.yaml
step "cloudbuild.yaml"
"$PYTHON" - "${FUNCTIONS[@]}" <<'PY'
import sys
import yaml

functions = sys.argv[1:]
services = {"chat_function": "chat", "agent_function": "agent", "agent_worker": "agent-worker",
            "search_function": "search", "calculator_function": "calculator"}
tools = ["search_function", "calculator_function"]

def fail(msg):
    print(f"  FAIL: {msg}", file=sys.stderr)
    sys.exit(1)

with open("cloudbuild.yaml") as f:
    doc = yaml.safe_load(f)
steps = doc.get("steps") or fail("no steps")
ids = [s.get("id") for s in steps]
if None in ids:
    fail("every step needs an id")
if len(set(ids)) != len(ids):
    fail(f"duplicate step ids: {ids}")
by_id = {s["id"]: s for s in steps}

def args(step):
    a = step.get("args", [])
    return " ".join(a) if isinstance(a, list) else str(a)

for s in steps:
    for w in s.get("waitFor", []):
        if w != "-" and w not in by_id:
            fail(f"step {s['id']} waits for {w!r}, which is no step id")
print(f"  ok: {len(steps)} steps, every waitFor names an existing id")

# The test step: fmt, clippy and test.
test_steps = [s for s in steps if "cargo test" in args(s)]
if len(test_steps) != 1:
    fail("want exactly one step running cargo test")
test = test_steps[0]
for cmd in ("cargo fmt --all -- --check",
            "cargo clippy --workspace --all-targets --locked -- -D warnings",
            "cargo test --workspace --locked"):
    if cmd not in args(test):
        fail(f"the test step does not run {cmd!r}")
if "--include-ignored" in args(test) or "--ignored" in args(test):
    fail("the test step must not run the emulator (#[ignore]d) tests")
print(f"  ok: step {test['id']} runs fmt, clippy and test")

def find(pred, what):
    found = [s for s in steps if pred(s)]
    if len(found) != 1:
        fail(f"want exactly one {what}, found {len(found)}")
    return found[0]

deploys = {}
images = doc.get("images") or []
for fn in functions:
    build = find(lambda s: args(s).startswith("build ") and f"--build-arg FUNCTION={fn} " in args(s) + " ",
                 f"docker build step with --build-arg FUNCTION={fn}")
    if "$SHORT_SHA" not in args(build):
        fail(f"the build of {fn} does not tag with $SHORT_SHA")
    if build.get("waitFor") != [test["id"]]:
        fail(f"the build of {fn} should wait only for the tests, waits for {build.get('waitFor')}")
    tag = next(a for a in build["args"] if f"/{fn}:" in a)
    push = find(lambda s: args(s) == f"push {tag}", f"push step for {tag}")
    if build["id"] not in push.get("waitFor", []):
        fail(f"the push of {fn} does not wait for its build {build['id']}")
    deploy = find(lambda s: "run deploy" in args(s) and f"--image={tag}" in args(s), f"deploy step for {tag}")
    if push["id"] not in deploy.get("waitFor", []):
        fail(f"the deploy of {fn} does not wait for its push {push['id']}")
    if f"run deploy {services[fn]} " not in args(deploy) + " ":
        fail(f"the deploy of {fn} does not deploy service {services[fn]}")
    if "--region=${_REGION}" not in args(deploy) or "--quiet" not in args(deploy):
        fail(f"the deploy of {fn} needs --region=${{_REGION}} and --quiet")
    if tag not in images:
        fail(f"images: does not list {tag}")
    deploys[fn] = deploy
    print(f"  ok: {fn}: {build['id']} -> {push['id']} -> {deploy['id']} (service {services[fn]})")

for caller in ("agent_function", "agent_worker"):
    for tool in tools:
        if deploys[tool]["id"] not in deploys[caller].get("waitFor", []):
            fail(f"the deploy of {caller} does not wait for the deploy of {tool}")
print("  ok: the agent and worker deploys wait for the tool deploys")

subs = doc.get("substitutions") or {}
if subs.get("_REGION") != "us-central1" or subs.get("_REPOSITORY") != "serverless-agent":
    fail(f"substitutions: want _REGION us-central1 and _REPOSITORY serverless-agent, got {subs}")
if (doc.get("options") or {}).get("machineType") != "E2_HIGHCPU_8":
    fail("options.machineType is not E2_HIGHCPU_8")
if not doc.get("timeout"):
    fail("no timeout")
print("  ok: substitutions, options, images and timeout")
PY

# ------------------------------------------------------------ Dockerfile
step "Dockerfile and .dockerignore"
# Instructions only (no comments), continuation lines joined.
"$PYTHON" - > "$TMP/instructions" <<'PY'
lines, cur = [], ""
for raw in open("Dockerfile"):
    line = raw.rstrip("\n")
    if not cur and line.lstrip().startswith("#"):
        continue
    if line.endswith("\\"):
        cur += line[:-1] + " "
        continue
    cur += line
    if cur.strip():
        lines.append(" ".join(cur.split()))
    cur = ""
print("\n".join(lines))
PY
# shellcheck disable=SC2016 # a literal $FUNCTION, as the Dockerfile has it
BUILD='cargo build --release --locked -p "$FUNCTION"'
grep -E '^RUN ' "$TMP/instructions" | grep -qF "$BUILD" || fail "no RUN in the Dockerfile runs: $BUILD"
# Every cargo build the Dockerfile runs is exactly that one.
if grep -oE 'cargo build[^&;|]*' "$TMP/instructions" | sed 's/ *$//' | grep -vxF "$BUILD" | grep -q .; then
  fail "the Dockerfile runs another cargo build than: $BUILD"
fi
ok "builds with: $BUILD"
grep -qE '^ARG FUNCTION$' "$TMP/instructions" || fail "no ARG FUNCTION"
for fn in "${FUNCTIONS[@]}"; do
  grep -E '^RUN ' "$TMP/instructions" | grep -qw "$fn" || fail "the FUNCTION check does not accept $fn"
done
ok "ARG FUNCTION, checked against the five functions"
last_from=$(grep -E '^FROM ' "$TMP/instructions" | tail -n 1)
[[ $last_from =~ ^FROM\ (gcr\.io/distroless/|scratch) ]] || fail "the runtime stage is not distroless/static: $last_from"
user=$(awk '/^FROM /{u=""} /^USER /{u=$2} END{print u}' "$TMP/instructions")
[[ -n $user && $user != root && $user != 0 && $user != 0:* && $user != root:* ]] \
  || fail "the runtime stage has no non-root USER (USER '${user}')"
grep -qE '^ENTRYPOINT ' "$TMP/instructions" || fail "no ENTRYPOINT"
ok "runtime ${last_from#FROM }, USER $user"

# Every workspace member's manifest and sources are copied.
mapfile -t MEMBERS < <("$PYTHON" - <<'PY'
import re
text = open("Cargo.toml").read()
block = re.search(r"^\s*members\s*=\s*\[(.*?)\]", text, re.S | re.M)
for line in block.group(1).splitlines():
    line = line.split("#", 1)[0]
    for m in re.findall(r'"([^"]+)"', line):
        print(m)
PY
)
((${#MEMBERS[@]})) || fail "found no workspace members in Cargo.toml"
# The sources of the COPY instructions from the build context (not the
# destination, not --from=stage copies).
mapfile -t SOURCES < <(awk '$1 == "COPY" && !/--from=/ {
  n = 0
  for (i = 2; i <= NF; i++) if ($i !~ /^--/) args[++n] = $i
  for (i = 1; i < n; i++) print args[i]
}' "$TMP/instructions")
copied() { # copied PATH: some COPY source is PATH or a folder holding it
  local src
  for src in "${SOURCES[@]}"; do
    src=${src%/}
    [[ $1 == "$src" || $1 == "$src"/* || $src == . ]] && return 0
  done
  return 1
}
for m in "${MEMBERS[@]}"; do
  copied "$m/Cargo.toml" || fail "the Dockerfile does not copy $m/Cargo.toml (workspace member)"
  copied "$m/src/x.rs" || fail "the Dockerfile does not copy $m/src (workspace member)"
done
copied Cargo.lock || fail "the Dockerfile does not copy Cargo.lock"
ok "copies Cargo.lock and the manifest and sources of all ${#MEMBERS[@]} members: ${MEMBERS[*]}"

# The documents the search tool embeds, from its include_str! paths.
mapfile -t DOCS < <(sed -nE 's#.*include_str!\("(\.\./)+([^"]+)"\).*#\2#p' shared/src/tools/search/corpus.rs)
((${#DOCS[@]})) || fail "found no include_str! documents in shared/src/tools/search/corpus.rs"
for doc in "${DOCS[@]}"; do
  [[ -f $doc ]] || fail "shared/src/tools/search/corpus.rs embeds $doc, which does not exist"
  copied "$doc" || fail "the Dockerfile does not copy $doc (embedded by the search tool)"
done
ok "copies the embedded documents: ${DOCS[*]}"

# .dockerignore: target and .git out; nothing the build copies excluded.
[[ -f .dockerignore ]] || fail "no .dockerignore"
need=(Cargo.toml Cargo.lock "${DOCS[@]}")
for m in "${MEMBERS[@]}"; do
  need+=("$m/Cargo.toml" "$m/src/main.rs" "$m/src/lib.rs")
done
"$PYTHON" - "${need[@]}" <<'PY'
import re
import sys

def fail(msg):
    print(f"  FAIL: {msg}", file=sys.stderr)
    sys.exit(1)

patterns = []
for line in open(".dockerignore"):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    neg = line.startswith("!")
    pat = line[1:] if neg else line
    pat = pat.strip("/")
    rx, i = "", 0
    while i < len(pat):
        if pat.startswith("**/", i):
            rx += "(?:.*/)?"
            i += 3
        elif pat.startswith("**", i):
            rx += ".*"
            i += 2
        elif pat[i] == "*":
            rx += "[^/]*"
            i += 1
        elif pat[i] == "?":
            rx += "[^/]"
            i += 1
        else:
            rx += re.escape(pat[i])
            i += 1
    patterns.append((neg, re.compile(rx + "$")))

def excluded(path):
    # Docker: the last matching pattern wins; a pattern matching a parent
    # folder excludes what is in it.
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for neg, rx in patterns:
        if any(rx.match(p) for p in prefixes):
            result = not neg
    return result

for path in ("target/release/chat_function", ".git/HEAD"):
    if not excluded(path):
        fail(f".dockerignore does not exclude {path.split('/')[0]}")
for path in sys.argv[1:] + ["README.md", "BENCHMARKS.md", "docs/tools.md"]:
    if excluded(path):
        fail(f".dockerignore excludes {path}, which the build needs")
print(f"  ok: .dockerignore excludes target/ and .git/, keeps the {len(sys.argv) - 1} files the build needs")
PY

# ------------------------------------------------------------ lambda.sh
step "scripts/lambda.sh"
scripts/lambda.sh --help | grep -q 'provided.al2023' || fail "lambda.sh --help does not mention provided.al2023"
ok "--help"

# Packages go to a temporary LAMBDA_DIR, not target/lambda.
export LAMBDA_DIR="$TMP/lambda"
repo=$PWD
zipfile=$LAMBDA_DIR/chat_function.zip
# A real build, packaged: the check always runs (a check skipped on every
# fresh clone proves nothing). Which binary it must hold is found here from
# cargo, not from the script under test.
profile=${LAMBDA_CHECK_PROFILE:-dev}
profile_dir=$profile
[[ $profile != dev ]] || profile_dir=debug
target_dir=$(cargo metadata --format-version 1 --no-deps |
  "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
binary=$target_dir/$profile_dir/chat_function
scripts/lambda.sh build --profile "$profile" chat_function > "$TMP/build.out" \
  || fail "lambda.sh build --profile $profile chat_function failed"
[[ -f $zipfile ]] || fail "build --profile $profile chat_function made no $zipfile: $(cat "$TMP/build.out")"
grep -qF "from ${binary#"$PWD"/}" "$TMP/build.out" \
  || fail "build did not package $binary: $(cat "$TMP/build.out")"
entries=$(unzip -Z1 "$zipfile")
[[ $entries == bootstrap ]] || fail "$zipfile holds '$entries', not just bootstrap"
mode=$(unzip -Z "$zipfile" bootstrap | awk '{print $1}')
[[ $mode == -rwx?-x?-x ]] || fail "bootstrap in $zipfile has mode $mode, not executable (755)"
unzip -q -d "$TMP/unzipped" "$zipfile"
[[ -x $TMP/unzipped/bootstrap ]] || fail "bootstrap is not executable once unzipped"
cmp -s "$TMP/unzipped/bootstrap" "$binary" || fail "bootstrap is not $binary"
ok "Lambda zip (checked, not skipped): build --profile $profile chat_function built $binary" \
  "and zipped it as one executable bootstrap ($mode)"

# --no-build packages what is built, in cargo's target directory even when
# CARGO_TARGET_DIR is relative to where the script runs; and where nothing
# is built, it says so, naming --no-build.
rm -f "$zipfile"
(cd "$(dirname "$target_dir")" &&
  CARGO_TARGET_DIR=$(basename "$target_dir") "$repo/scripts/lambda.sh" build --no-build --profile "$profile" chat_function) \
  > "$TMP/nobuild.out" || fail "build --no-build with a relative CARGO_TARGET_DIR failed"
cmp -s "$LAMBDA_DIR/chat_function/bootstrap" "$binary" \
  || fail "build --no-build with a relative CARGO_TARGET_DIR did not package $binary"
if CARGO_TARGET_DIR="$TMP/empty-target" scripts/lambda.sh build --no-build chat_function > /dev/null 2> "$TMP/nobuild.err"; then
  fail "build --no-build with nothing built succeeded"
fi
grep -qF "$TMP/empty-target/release/chat_function does not exist: --no-build" "$TMP/nobuild.err" \
  || fail "build --no-build with nothing built: $(cat "$TMP/nobuild.err")"
ok "build --no-build: from a relative CARGO_TARGET_DIR; with nothing built, an error naming --no-build"

# A fake aws CLI: records every call; a function exists once create-function
# ran for it (state files), as its URL config once create-function-url-config ran.
mkdir -p "$TMP/bin" "$TMP/state"
cat > "$TMP/bin/aws" <<'FAKE'
#!/usr/bin/env bash
set -euo pipefail
printf '%s\n' "$*" >> "$FAKE_AWS_LOG"
fn=
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ ${args[$i]} == --function-name ]]; then fn=${args[$((i + 1))]}; fi
done
not_found() {
  echo "An error occurred (ResourceNotFoundException) when calling the $1 operation: Function not found: $fn" >&2
  exit 254
}
case "${1:-} ${2:-}" in
  "lambda get-function")
    [[ -f $FAKE_AWS_STATE/fn-$fn ]] || not_found GetFunction
    echo "$fn" ;;
  "lambda create-function")
    touch "$FAKE_AWS_STATE/fn-$fn"
    echo "arn:aws:lambda:us-east-1:123456789012:function:$fn" ;;
  "lambda get-function-url-config")
    [[ -f $FAKE_AWS_STATE/url-$fn ]] || not_found GetFunctionUrlConfig
    echo "https://$fn.lambda-url.us-east-1.on.aws/" ;;
  "lambda create-function-url-config")
    [[ -f $FAKE_AWS_STATE/fn-$fn ]] || not_found CreateFunctionUrlConfig
    touch "$FAKE_AWS_STATE/url-$fn"
    echo "https://$fn.lambda-url.us-east-1.on.aws/" ;;
  *) echo '{}' ;;
esac
FAKE
chmod +x "$TMP/bin/aws"
export FAKE_AWS_LOG="$TMP/aws.log" FAKE_AWS_STATE="$TMP/state"
: > "$FAKE_AWS_LOG"
fake() { PATH="$TMP/bin:$PATH" scripts/lambda.sh "$@"; }
ROLE=arn:aws:iam::123456789012:role/test-lambda

fake deploy --dry-run --role "$ROLE" --region us-east-1 chat_function > "$TMP/dry.out" 2> "$TMP/dry.err" \
  || fail "deploy --dry-run failed: $(cat "$TMP/dry.err")"
grep -E '^\+ aws lambda create-function ' "$TMP/dry.out" | grep -q -- '--runtime provided.al2023' \
  || fail "deploy --dry-run does not print create-function --runtime provided.al2023: $(cat "$TMP/dry.out")"
grep -qE '^\+ aws lambda create-function-url-config .*--auth-type AWS_IAM' "$TMP/dry.out" \
  || fail "deploy --dry-run does not print create-function-url-config --auth-type AWS_IAM"
if grep -vE '^lambda get-function(-url-config)? ' "$FAKE_AWS_LOG" | grep -q .; then
  fail "deploy --dry-run ran a command that changes something: $(cat "$FAKE_AWS_LOG")"
fi
[[ -z $(ls "$TMP/state") ]] || fail "deploy --dry-run created something"
ok "deploy --dry-run prints create-function (provided.al2023) and create-function-url-config, runs only get-*"

# The Function URL's invoke mode and the function's LAMBDA_INVOKE_MODE are
# set together: a streamed answer on a BUFFERED URL is refused. (--dry-run
# prints the environment's JSON shell-quoted: \" for ".)
grep -E '^\+ aws lambda create-function-url-config ' "$TMP/dry.out" | grep -q -- '--invoke-mode RESPONSE_STREAM' \
  || fail "deploy --dry-run: the Function URL is not created with --invoke-mode RESPONSE_STREAM"
grep -E '^\+ aws lambda create-function ' "$TMP/dry.out" | grep -qF 'LAMBDA_INVOKE_MODE\":\"RESPONSE_STREAM' \
  || fail "deploy --dry-run: the function's environment lacks LAMBDA_INVOKE_MODE=RESPONSE_STREAM"
fake deploy --dry-run --invoke-mode BUFFERED --role "$ROLE" chat_function > "$TMP/buffered.out" 2> /dev/null \
  || fail "deploy --dry-run --invoke-mode BUFFERED failed"
grep -E '^\+ aws lambda create-function-url-config ' "$TMP/buffered.out" | grep -q -- '--invoke-mode BUFFERED' \
  || fail "deploy --invoke-mode BUFFERED: the Function URL is not BUFFERED"
grep -E '^\+ aws lambda create-function ' "$TMP/buffered.out" | grep -qF 'LAMBDA_INVOKE_MODE\":\"BUFFERED' \
  || fail "deploy --invoke-mode BUFFERED: the function's environment is not BUFFERED"
if fake deploy --dry-run --invoke-mode STREAM --role "$ROLE" chat_function > /dev/null 2> "$TMP/mode.err"; then
  fail "deploy --invoke-mode STREAM succeeded"
fi
grep -q 'RESPONSE_STREAM or BUFFERED' "$TMP/mode.err" || fail "deploy --invoke-mode STREAM: $(cat "$TMP/mode.err")"
if fake deploy --dry-run --env LAMBDA_INVOKE_MODE=BUFFERED --role "$ROLE" chat_function > /dev/null 2> "$TMP/mode.err"; then
  fail "deploy --env LAMBDA_INVOKE_MODE=... succeeded: the URL's mode would not follow"
fi
grep -q -- '--invoke-mode' "$TMP/mode.err" || fail "deploy --env LAMBDA_INVOKE_MODE: $(cat "$TMP/mode.err")"
ok "deploy: the Function URL's --invoke-mode and LAMBDA_INVOKE_MODE agree (RESPONSE_STREAM by default, BUFFERED on request); a bad mode, or the variable alone, is refused"

fake deploy --dry-run --public --role "$ROLE" chat_function > "$TMP/public.out" 2> /dev/null
grep -qE '^\+ aws lambda create-function-url-config .*--auth-type NONE' "$TMP/public.out" \
  || fail "deploy --dry-run --public does not use --auth-type NONE"
grep -E '^\+ aws lambda add-permission ' "$TMP/public.out" | grep -q 'lambda:InvokeFunctionUrl' \
  || fail "deploy --dry-run --public does not add the lambda:InvokeFunctionUrl permission"
ok "deploy --dry-run --public: auth type NONE and add-permission lambda:InvokeFunctionUrl"

: > "$FAKE_AWS_LOG"
fake deploy --role "$ROLE" --region us-east-1 chat_function > "$TMP/run1.out" 2> "$TMP/run1.err" \
  || fail "deploy against the fake aws failed: $(cat "$TMP/run1.err")"
[[ $(grep -c '^lambda create-function ' "$FAKE_AWS_LOG") == 1 ]] || fail "first deploy: want one create-function"
grep -qF -- "--zip-file fileb://$zipfile" "$FAKE_AWS_LOG" \
  || fail "first deploy: create-function without the zip"
grep -q '^lambda create-function-url-config .*--invoke-mode RESPONSE_STREAM' "$FAKE_AWS_LOG" \
  || fail "first deploy: no create-function-url-config --invoke-mode RESPONSE_STREAM"
if grep -q '^lambda update-function-code ' "$FAKE_AWS_LOG"; then
  fail "first deploy: update-function-code on a function that did not exist"
fi
grep -q 'https://serverless-agent-chat.lambda-url' "$TMP/run1.out" || fail "first deploy: no URL printed"

: > "$FAKE_AWS_LOG"
fake deploy --role "$ROLE" --region us-east-1 chat_function > "$TMP/run2.out" 2> "$TMP/run2.err" \
  || fail "second deploy against the fake aws failed: $(cat "$TMP/run2.err")"
grep -q '^lambda update-function-code .*--function-name serverless-agent-chat' "$FAKE_AWS_LOG" \
  || fail "second deploy: no update-function-code"
if grep -qE '^lambda create-function(-url-config)? ' "$FAKE_AWS_LOG"; then
  fail "second deploy created something again: $(cat "$FAKE_AWS_LOG")"
fi
grep -q 'https://serverless-agent-chat.lambda-url' "$TMP/run2.out" || fail "second deploy: no URL printed"
ok "deploy against a fake aws: creates once, then update-function-code and no create"

# ------------------------------------------------------------ shellcheck
step "shellcheck"
mapfile -t SCRIPTS < <(find . -name '*.sh' -not -path './target/*' -not -path './.git/*' | sort)
"$SHELLCHECK" "${SCRIPTS[@]}" || fail "shellcheck"
ok "$("$SHELLCHECK" --version | sed -n 's/^version: /shellcheck /p'): ${SCRIPTS[*]}"

printf '\npackaging checks passed\n'
