#!/usr/bin/env bash
# Packages the functions for AWS Lambda (provided.al2023) and deploys them
# with Function URLs. Run `scripts/lambda.sh --help` for everything.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROG=scripts/lambda.sh

# cargo's target directory, as cargo itself resolves it (CARGO_TARGET_DIR,
# relative to where this script was started, or build.target-dir, else
# target/), and exported as an absolute path so the cargo build below,
# which runs from the workspace, writes where this script then looks.
target_dir() {
  local dir=
  if command -v cargo > /dev/null; then
    dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" 2> /dev/null |
      sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p') || dir=
  fi
  if [[ -z $dir ]]; then
    dir=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $dir == /* ]] || dir=$PWD/$dir
  fi
  printf '%s\n' "$dir"
}
TARGET_DIR=$(target_dir)
export CARGO_TARGET_DIR=$TARGET_DIR
# Where the packages go (and deploy reads them from).
OUT=${LAMBDA_DIR:-$TARGET_DIR/lambda}
[[ $OUT == /* ]] || OUT=$PWD/$OUT

ALL_FUNCTIONS=(chat_function agent_function agent_worker search_function calculator_function)
# agent_worker is a Pub/Sub push endpoint: not deployed to Lambda unless named.
DEFAULT_FUNCTIONS=(chat_function agent_function search_function calculator_function)
# The newest glibc the provided.al2023 runtime has.
AL2023_GLIBC=2.34

usage() {
  cat <<EOF
Usage:
  $PROG build  [--no-build] [--profile PROFILE] [--target TRIPLE] [NAME...]
  $PROG deploy [--role ARN] [--region REGION] [--memory MB] [--timeout SECONDS]
               [--env KEY=VALUE]... [--prefix PREFIX] [--arch x86_64|arm64]
               [--public] [--dry-run] [NAME...]
  $PROG --help

Each function is one binary. When AWS_LAMBDA_RUNTIME_API is set (it is, on
Lambda) it answers Function URL, API Gateway and ALB events with the same
routes as on Cloud Run, so the binary named 'bootstrap' in a zip runs on the
provided.al2023 runtime as it is.

NAME is one of: ${ALL_FUNCTIONS[*]}
Default NAMEs: ${DEFAULT_FUNCTIONS[*]}
agent_worker is Pub/Sub-specific (it is the target of a Pub/Sub push
subscription) and is not deployed to Lambda unless named.

build [NAME...]
  Runs 'cargo build --release --locked -p NAME' for each NAME and packages
    target/lambda/NAME/bootstrap   the binary, mode 755
    target/lambda/NAME.zip         that one file, for the provided.al2023 runtime
  target/ is cargo's target directory: CARGO_TARGET_DIR when set.
  --no-build        package the binaries already in target/release (or
                    target/TRIPLE/release, or the --profile's folder) instead
                    of building them
  --profile PROFILE build with cargo's profile PROFILE instead of release, e.g.
                    dev (target/debug, quick to build, for trying the
                    packaging; deploy release builds: fat LTO, stripped)
  --target TRIPLE   build for TRIPLE (default: LAMBDA_TARGET, else the host),
                    e.g. aarch64-unknown-linux-gnu for arm64 functions; the
                    toolchain needs it (rustup target add TRIPLE) and so does
                    the C compiler (rusqlite bundles SQLite): set
                    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER and
                    CC_aarch64_unknown_linux_gnu to a cross gcc.
  LAMBDA_DIR overrides target/lambda (for build and deploy).
  Binaries link glibc dynamically and provided.al2023 has glibc $AL2023_GLIBC:
  build on a system whose glibc is not newer (Debian 12 is fine: the binaries
  need no symbol newer than $AL2023_GLIBC); the script warns otherwise.

deploy [NAME...]
  For each NAME, deploys target/lambda/NAME.zip (run 'build' first) to the
  Lambda function PREFIX + SERVICE (SERVICE: chat, agent, agent-worker,
  search, calculator, as on Cloud Run):
  - 'aws lambda get-function' to see whether it exists;
  - if not, 'aws lambda create-function --runtime provided.al2023 --handler
    bootstrap --architectures ARCH --role ARN --memory-size MB --timeout S
    --environment ...' (and waits until it is active); if it does,
    'aws lambda update-function-code' with the new zip (and waits for the
    update). Only the code changes on an update: change settings with
    'aws lambda update-function-configuration';
  - a Function URL if it has none ('get-function-url-config', then
    'create-function-url-config --auth-type AWS_IAM --invoke-mode MODE');
  then prints each function's URL.
  --role ARN        execution role for new functions (default: LAMBDA_ROLE);
                    needed only to create one. It needs at least the
                    AWSLambdaBasicExecutionRole policy (CloudWatch Logs).
  --region REGION   AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the
                    aws CLI's configured region)
  --memory MB       memory of new functions (defaults: chat_function 256,
                    agent_function 512, agent_worker 512, search_function 256,
                    calculator_function 128); Lambda gives CPU in proportion
  --timeout SECONDS timeout of new functions (defaults: chat_function 120,
                    agent_function 300, agent_worker 600, search_function 30,
                    calculator_function 30; at most 900)
  --env KEY=VALUE   add an environment variable to new functions (repeatable;
                    overrides the defaults below), e.g. --env GEMINI_API_KEY=...
                    --env API_KEYS=k1,k2
  --prefix PREFIX   function name prefix (default: LAMBDA_PREFIX, else
                    serverless-agent-)
  --arch ARCH       x86_64 or arm64 (default: read from the packaged binary)
  --public          create Function URLs with --auth-type NONE and add the
                    permissions that make them public (lambda:InvokeFunctionUrl
                    with --function-url-auth-type NONE, and lambda:InvokeFunction
                    with --invoked-via-function-url). Set API_KEYS (--env) so
                    the functions still ask for X-API-Key. An existing URL's
                    auth type is not changed ('aws lambda
                    update-function-url-config').
  --invoke-mode MODE
                    RESPONSE_STREAM (default) or BUFFERED: the invoke mode of
                    new Function URLs, and LAMBDA_INVOKE_MODE=MODE in new
                    functions' environment, which must match it (a BUFFERED
                    URL refuses a streamed answer). RESPONSE_STREAM sends chat
                    and task event streams as they are written; BUFFERED holds
                    them until they end (and suits API Gateway and ALB, which
                    take whole answers). An existing function and URL keep
                    theirs: change both together with 'aws lambda
                    update-function-url-config --invoke-mode MODE' and
                    'update-function-configuration' (LAMBDA_INVOKE_MODE=MODE).
  --dry-run         print each aws command that would change something instead
                    of running it (the read-only get-function and
                    get-function-url-config checks still run, when the aws CLI
                    can; a failed check shows the create path)

Environment of new functions (before --env):
  STORE=sqlite SQLITE_PATH=/tmp/agent.db QUEUE=local
  LAMBDA_INVOKE_MODE=RESPONSE_STREAM (the --invoke-mode)
  SQLite in /tmp is the only store Lambda offers locally, and Lambda instances
  share nothing: each instance has its own /tmp, lost when the instance goes,
  so sessions, memory, tasks and rate limits are per instance. For sessions
  shared by every instance use Firestore: --env STORE=firestore
  --env FIRESTORE_PROJECT=... plus Google Application Default Credentials
  the function can read (--env GOOGLE_APPLICATION_CREDENTIALS=/opt/... naming
  a credentials file shipped in a Lambda layer). QUEUE=local runs async
  tasks in the instance that accepted them, and Lambda freezes an instance
  between invocations: prefer synchronous agent runs on Lambda. The agent runs
  its tools in process unless SEARCH_URL/CALCULATOR_URL are set (TOOL_ID_TOKENS
  is off outside Cloud Run; use TOOL_API_KEY for tool functions with API_KEYS).
  Logs are JSON lines in CloudWatch (LOG_FORMAT defaults to json on Lambda).

Examples:
  $PROG build                               # the four default functions
  LAMBDA_TARGET=aarch64-unknown-linux-gnu $PROG build chat_function
  $PROG deploy --role arn:aws:iam::123456789012:role/agent-lambda --dry-run
  $PROG deploy --region eu-west-1 --public --env API_KEYS=secret chat_function
EOF
}

die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

warn() {
  printf '%s: warning: %s\n' "$PROG" "$*" >&2
}

is_function() {
  local f
  for f in "${ALL_FUNCTIONS[@]}"; do
    [[ $1 == "$f" ]] && return 0
  done
  return 1
}

service_name() {
  case $1 in
    chat_function) echo chat ;;
    agent_function) echo agent ;;
    agent_worker) echo agent-worker ;;
    search_function) echo search ;;
    calculator_function) echo calculator ;;
  esac
}

default_memory() {
  case $1 in
    agent_function | agent_worker) echo 512 ;;
    calculator_function) echo 128 ;;
    *) echo 256 ;;
  esac
}

default_timeout() {
  case $1 in
    chat_function) echo 120 ;;
    agent_function) echo 300 ;;
    agent_worker) echo 600 ;;
    *) echo 30 ;;
  esac
}

# ELF machine of a binary: x86_64, arm64, or empty when unknown.
elf_arch() {
  local magic machine
  magic=$(od -An -tx1 -N4 "$1" | tr -d ' \n')
  [[ $magic == 7f454c46 ]] || return 0
  machine=$(od -An -tx1 -j18 -N2 "$1" | tr -d ' \n')
  case $machine in
    3e00) echo x86_64 ;;
    b700) echo arm64 ;;
  esac
}

# Warns when the binary needs a glibc newer than provided.al2023's.
check_glibc() {
  local newest
  newest=$(grep -aoE 'GLIBC_2\.[0-9]+(\.[0-9]+)?' "$1" | sed 's/^GLIBC_//' | sort -uV | tail -n 1 || true)
  if [[ -n $newest ]] && [[ $(printf '%s\n%s\n' "$newest" "$AL2023_GLIBC" | sort -V | tail -n 1) != "$AL2023_GLIBC" ]]; then
    warn "$1 needs glibc $newest, newer than provided.al2023's $AL2023_GLIBC: it will not start on Lambda. Build on Debian 12 (glibc 2.36 headers, no newer symbols) or Amazon Linux 2023."
  fi
}

# ---------------------------------------------------------------- build

cmd_build() {
  local no_build=0 target=${LAMBDA_TARGET:-} profile=release
  local names=()
  while (($#)); do
    case $1 in
      --no-build) no_build=1 ;;
      --profile)
        (($# >= 2)) || die "--profile needs a value"
        profile=$2
        shift
        ;;
      --profile=*) profile=${1#--profile=} ;;
      --target)
        (($# >= 2)) || die "--target needs a value"
        target=$2
        shift
        ;;
      --target=*) target=${1#--target=} ;;
      -h | --help)
        usage
        exit 0
        ;;
      -*) die "unknown option for build: $1 (see --help)" ;;
      *)
        is_function "$1" || die "unknown function '$1': one of ${ALL_FUNCTIONS[*]}"
        names+=("$1")
        ;;
    esac
    shift
  done
  ((${#names[@]})) || names=("${DEFAULT_FUNCTIONS[@]}")
  command -v zip > /dev/null || die "zip is not installed (apt-get install zip)"

  [[ $profile =~ ^[A-Za-z0-9_-]+$ ]] || die "--profile wants a cargo profile name (release, dev, ...), not '$profile'"
  # cargo's folder for the profile: dev builds go to debug/.
  local profile_dir=$profile
  [[ $profile != dev ]] || profile_dir=debug
  local bin_dir="$TARGET_DIR/$profile_dir" target_args=()
  if [[ -n $target ]]; then
    bin_dir="$TARGET_DIR/$target/$profile_dir"
    target_args=(--target "$target")
    if ((!no_build)) && command -v rustup > /dev/null \
      && ! rustup target list --installed 2> /dev/null | grep -qx "$target"; then
      die "the Rust toolchain has no $target target: rustup target add $target"
    fi
  fi

  local name bin dir zipfile arch cargo_build
  for name in "${names[@]}"; do
    bin="$bin_dir/$name"
    cargo_build="cargo build --profile $profile --locked -p $name${target:+ --target $target}"
    if ((no_build)); then
      [[ -f $bin ]] || die "$bin does not exist: --no-build packages a binary already built; build it" \
        "($cargo_build), or drop --no-build to let $PROG build it"
    else
      echo "==> $cargo_build"
      (cd "$ROOT" && cargo build --profile "$profile" --locked -p "$name" "${target_args[@]}")
      [[ -f $bin ]] || die "cargo build -p $name succeeded but $bin does not exist: cargo wrote the" \
        "binary to another target directory than $TARGET_DIR (CARGO_TARGET_DIR, build.target-dir)"
    fi
    arch=$(elf_arch "$bin")
    [[ -n $arch ]] || die "$bin is not an x86_64 or arm64 Linux binary"
    check_glibc "$bin"

    dir="$OUT/$name"
    zipfile="$OUT/$name.zip"
    mkdir -p "$dir"
    rm -f "$dir/bootstrap" "$zipfile"
    cp "$bin" "$dir/bootstrap"
    chmod 755 "$dir/bootstrap"
    # One entry, 'bootstrap', with its unix mode (755) and no extra attributes.
    (cd "$dir" && zip -q -X "$zipfile" bootstrap)
    echo "packaged ${zipfile#"$ROOT"/} ($arch, $(du -k "$zipfile" | cut -f1) KiB) from ${bin#"$ROOT"/}"
  done
}

# ---------------------------------------------------------------- deploy

DRY_RUN=0
REGION_ARGS=()

# Runs an aws command that changes something, or prints it with --dry-run
# (on file descriptor 3, the deploy's stdout, even when the caller discards
# the command's own output).
mutate() {
  if ((DRY_RUN)); then
    {
      printf '+ aws'
      printf ' %q' "$@" "${REGION_ARGS[@]}"
      printf '\n'
    } >&3
  else
    aws "$@" "${REGION_ARGS[@]}"
  fi
}

# check CMD FUNCTION: 0 when the resource exists, 1 when aws says it does not
# (ResourceNotFoundException), otherwise dies (or, with --dry-run, warns and
# answers 1). Prints what aws printed on stdout when it exists.
LAST_OUTPUT=
check() {
  local cmd=$1 fn=$2 err out
  err=$(mktemp)
  if ((DRY_RUN)) && ! command -v aws > /dev/null; then
    rm -f "$err"
    warn "no aws CLI: cannot run $cmd for $fn, showing the create path"
    return 1
  fi
  if out=$(aws lambda "$cmd" --function-name "$fn" "${REGION_ARGS[@]}" "${@:3}" 2> "$err"); then
    rm -f "$err"
    LAST_OUTPUT=$out
    return 0
  fi
  if grep -q ResourceNotFoundException "$err"; then
    rm -f "$err"
    return 1
  fi
  if ((DRY_RUN)); then
    warn "aws lambda $cmd --function-name $fn failed ($(tr '\n' ' ' < "$err")); showing the create path"
    rm -f "$err"
    return 1
  fi
  cat "$err" >&2
  rm -f "$err"
  die "aws lambda $cmd --function-name $fn failed"
}

# said VERB: VERB, or "would have VERB" with --dry-run.
said() {
  if ((DRY_RUN)); then
    echo "would have $1"
  else
    echo "$1"
  fi
}

json_escape() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/\\r}
  printf '%s' "$s"
}

cmd_deploy() {
  local role=${LAMBDA_ROLE:-} region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
  local memory='' timeout='' prefix=${LAMBDA_PREFIX:-serverless-agent-} arch_opt='' public=0
  local invoke_mode=RESPONSE_STREAM
  local names=() env_keys=(STORE SQLITE_PATH QUEUE) env_values=(sqlite /tmp/agent.db local)
  local kv key i found
  while (($#)); do
    case $1 in
      --role | --region | --memory | --timeout | --env | --prefix | --arch | --invoke-mode)
        (($# >= 2)) || die "$1 needs a value"
        ;;
    esac
    case $1 in
      --role) role=$2 && shift ;;
      --region) region=$2 && shift ;;
      --memory) memory=$2 && shift ;;
      --timeout) timeout=$2 && shift ;;
      --prefix) prefix=$2 && shift ;;
      --arch) arch_opt=$2 && shift ;;
      --invoke-mode) invoke_mode=$2 && shift ;;
      --env)
        kv=$2
        shift
        [[ $kv == ?*=* ]] || die "--env wants KEY=VALUE, not '$kv'"
        key=${kv%%=*}
        # The function's mode must be its URL's: one option sets both.
        [[ $key != LAMBDA_INVOKE_MODE ]] || die "set LAMBDA_INVOKE_MODE with --invoke-mode, which sets the Function URL's too"
        found=0
        for i in "${!env_keys[@]}"; do
          if [[ ${env_keys[$i]} == "$key" ]]; then
            env_values[i]=${kv#*=}
            found=1
          fi
        done
        if ((!found)); then
          env_keys+=("$key")
          env_values+=("${kv#*=}")
        fi
        ;;
      --public) public=1 ;;
      --dry-run) DRY_RUN=1 ;;
      -h | --help)
        usage
        exit 0
        ;;
      -*) die "unknown option for deploy: $1 (see --help)" ;;
      *)
        is_function "$1" || die "unknown function '$1': one of ${ALL_FUNCTIONS[*]}"
        names+=("$1")
        ;;
    esac
    shift
  done
  ((${#names[@]})) || names=("${DEFAULT_FUNCTIONS[@]}")
  [[ -z $memory || $memory =~ ^[0-9]+$ ]] || die "--memory wants megabytes (128 to 10240), not '$memory'"
  [[ -z $timeout || $timeout =~ ^[0-9]+$ ]] || die "--timeout wants seconds (1 to 900), not '$timeout'"
  [[ -z $arch_opt || $arch_opt == x86_64 || $arch_opt == arm64 ]] || die "--arch is x86_64 or arm64, not '$arch_opt'"
  [[ $invoke_mode == RESPONSE_STREAM || $invoke_mode == BUFFERED ]] \
    || die "--invoke-mode is RESPONSE_STREAM or BUFFERED, not '$invoke_mode'"
  env_keys+=(LAMBDA_INVOKE_MODE)
  env_values+=("$invoke_mode")
  if ((!DRY_RUN)); then
    command -v aws > /dev/null || die "the aws CLI is not installed (https://aws.amazon.com/cli/)"
  fi
  if [[ -n $region ]]; then
    REGION_ARGS=(--region "$region")
  fi
  exec 3>&1

  local environment='{"Variables":{' sep=''
  for i in "${!env_keys[@]}"; do
    environment+="$sep\"$(json_escape "${env_keys[$i]}")\":\"$(json_escape "${env_values[$i]}")\""
    sep=,
  done
  environment+='}}'

  local name fn zipfile arch url auth_type results=()
  auth_type=AWS_IAM
  if ((public)); then
    auth_type=NONE
  fi
  for name in "${names[@]}"; do
    fn="$prefix$(service_name "$name")"
    zipfile="$OUT/$name.zip"
    if [[ ! -f $zipfile ]]; then
      ((DRY_RUN)) || die "$zipfile does not exist: run '$PROG build $name' first"
      warn "$zipfile does not exist yet: run '$PROG build $name' before deploying"
    fi
    arch=$arch_opt
    if [[ -z $arch ]]; then
      if [[ -f $OUT/$name/bootstrap ]]; then
        arch=$(elf_arch "$OUT/$name/bootstrap")
      fi
      arch=${arch:-x86_64}
    fi

    echo "==> $name -> Lambda function $fn ($arch)"
    if check get-function "$fn" --query Configuration.FunctionName --output text > /dev/null; then
      mutate lambda update-function-code --function-name "$fn" \
        --zip-file "fileb://$zipfile" --architectures "$arch" --output text --query LastUpdateStatus > /dev/null
      mutate lambda wait function-updated-v2 --function-name "$fn" > /dev/null
      echo "$(said updated) the code of $fn"
    else
      if [[ -z $role ]]; then
        ((DRY_RUN)) || die "$fn does not exist: creating it needs --role ARN (or LAMBDA_ROLE)"
        role='<ROLE_ARN: --role or LAMBDA_ROLE>'
      fi
      mutate lambda create-function --function-name "$fn" \
        --runtime provided.al2023 --handler bootstrap --architectures "$arch" \
        --role "$role" --zip-file "fileb://$zipfile" \
        --memory-size "${memory:-$(default_memory "$name")}" \
        --timeout "${timeout:-$(default_timeout "$name")}" \
        --environment "$environment" \
        --description "serverless-agent $name" --output text --query FunctionArn > /dev/null
      mutate lambda wait function-active-v2 --function-name "$fn" > /dev/null
      echo "$(said created) $fn"
    fi

    if check get-function-url-config "$fn" --query FunctionUrl --output text; then
      url=$LAST_OUTPUT
    else
      if ((DRY_RUN)); then
        mutate lambda create-function-url-config --function-name "$fn" --auth-type "$auth_type" \
          --invoke-mode "$invoke_mode" --query FunctionUrl --output text
        url="(the URL create-function-url-config prints)"
      else
        url=$(mutate lambda create-function-url-config --function-name "$fn" --auth-type "$auth_type" \
          --invoke-mode "$invoke_mode" --query FunctionUrl --output text)
      fi
      if ((public)); then
        mutate lambda add-permission --function-name "$fn" \
          --statement-id FunctionURLAllowPublicAccess --action lambda:InvokeFunctionUrl \
          --principal '*' --function-url-auth-type NONE > /dev/null
        mutate lambda add-permission --function-name "$fn" \
          --statement-id FunctionURLAllowInvokeAction --action lambda:InvokeFunction \
          --principal '*' --invoked-via-function-url > /dev/null
      fi
      echo "$(said created) a Function URL for $fn (auth type $auth_type, invoke mode $invoke_mode)"
    fi
    results+=("$name  $fn  $url")
  done

  echo
  echo "Function URLs:"
  printf '  %s\n' "${results[@]}"
  if ((!public)); then
    echo "(auth type AWS_IAM: callers sign requests with SigV4; --public for open URLs)"
  fi
}

# ---------------------------------------------------------------- main

case ${1:-} in
  build)
    shift
    cmd_build "$@"
    ;;
  deploy)
    shift
    cmd_deploy "$@"
    ;;
  -h | --help | help)
    usage
    ;;
  "")
    usage >&2
    exit 2
    ;;
  *)
    printf '%s: error: unknown command %s\n\n' "$PROG" "$1" >&2
    usage >&2
    exit 2
    ;;
esac
