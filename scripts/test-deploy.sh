#!/usr/bin/env bash
# Tests deploy.sh without Google Cloud: a recording fake `gcloud`, first on
# PATH, logs every call (one line each, arguments separated by tabs) and keeps
# the resources it was asked to create in a state directory, so describe and
# list answer as Google Cloud would (NOT_FOUND until created) and a create of
# something that exists fails, as it would for real. Needs bash, coreutils,
# grep, and shellcheck for the lint check (skipped when it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

TMP=$(mktemp -d -t test-deploy.XXXXXX)
trap 'rm -rf -- "$TMP"' EXIT
mkdir -p "$TMP/bin"

cat >"$TMP/bin/gcloud" <<'FAKE'
#!/usr/bin/env bash
# The fake gcloud: FAKE_LOG gets one line per call, FAKE_STATE the resources.
set -euo pipefail
(IFS=$'\t' && printf '%s\n' "$*") >>"$FAKE_LOG"

words=()
declare -A flag=()
for arg in "$@"; do
  case "$arg" in
    --*=*) flag[${arg%%=*}]=${arg#*=} ;;
    --*) flag[$arg]=true ;;
    *) words+=("$arg") ;;
  esac
done
format=${flag[--format]:-}
name=${words[3]:-}

has() { [[ -e $FAKE_STATE/$1 ]]; }
mark() { mkdir -p "$(dirname "$FAKE_STATE/$1")" && printf '%s' "${2:-}" >"$FAKE_STATE/$1"; }
need() {
  has "$1" || { echo "ERROR: (gcloud) NOT_FOUND: $1 was not found" >&2 && exit 1; }
}
create() {
  if has "$1"; then
    echo "ERROR: (gcloud) ALREADY_EXISTS: $1 already exists" >&2
    exit 1
  fi
  mark "$1" "${2:-}"
}
# A secret's value arrives on stdin (--data-file=-); each version is kept.
add_version() {
  [[ ${flag[--data-file]:-} == - ]] || { echo "fake gcloud: the secret value must come on stdin" >&2 && exit 2; }
  local n=1
  while has "secret/$1/v$n"; do n=$((n + 1)); done
  mark "secret/$1/v$n" "$(cat)"
}

case "${words[*]:0:3}" in
  "config get-value project") echo demo ;;
  "services enable "*) ;;
  "projects describe demo")
    [[ $format == 'value(projectNumber)' ]] && echo 123456789012
    ;;
  "projects add-iam-policy-binding demo") ;;
  "artifacts repositories describe") need "repository/$name" ;;
  "artifacts repositories create") create "repository/$name" ;;
  "pubsub topics describe") need "topic/$name" ;;
  "pubsub topics create") create "topic/$name" ;;
  "pubsub topics add-iam-policy-binding") need "topic/$name" ;;
  "pubsub subscriptions describe" | "pubsub subscriptions update" | "pubsub subscriptions add-iam-policy-binding")
    need "subscription/${name##*/}"
    ;;
  "pubsub subscriptions create") create "subscription/$name" && need "topic/${flag[--topic]}" ;;
  "firestore databases describe")
    need "database/${flag[--database]}"
    if [[ $format == 'value(type)' ]]; then
      type=$(cat "$FAKE_STATE/database/${flag[--database]}")
      echo "${type:-FIRESTORE_NATIVE}"
    fi
    ;;
  "firestore databases create") create "database/${flag[--database]}" ;;
  "firestore fields ttls")
    need "database/${flag[--database]}"
    group=${flag[--collection-group]}
    case "${words[3]:-}" in
      list)
        if has "ttl/$group"; then
          echo "projects/demo/databases/(default)/collectionGroups/$group/fields/expire_at"
        fi
        ;;
      update) mark "ttl/$group" ;;
      *) echo "fake gcloud: unsupported: $*" >&2 && exit 2 ;;
    esac
    ;;
  "firestore indexes fields")
    need "database/${flag[--database]}"
    [[ ${words[3]:-} == update ]] || { echo "fake gcloud: unsupported: $*" >&2 && exit 2; }
    ;;
  "firestore indexes composite")
    need "database/${flag[--database]}"
    case "${words[3]:-}" in
      # As deploy.sh formats the list: group, field paths, orders (with
      # the __name__ field Firestore adds last).
      list)
        # A list gcloud formats otherwise than deploy.sh expects.
        [[ -n ${FAKE_INDEX_LIST_UNREADABLE:-} ]] && exit 0
        for index in "$FAKE_STATE"/index/*; do
          if [[ -e $index ]]; then printf '%s\n' "$(cat "$index")"; fi
        done
        ;;
      create)
        paths="" orders=""
        for arg in "$@"; do
          [[ $arg == --field-config=* ]] || continue
          config=${arg#--field-config=}
          [[ $config =~ ^field-path=([a-z_]+),order=(ascending|descending)$ ]] ||
            { echo "fake gcloud: a bad --field-config: $config" >&2 && exit 2; }
          paths+="${BASH_REMATCH[1]},"
          orders+="${BASH_REMATCH[2]^^},"
        done
        last=${orders%,}
        last=${last##*,}
        create "index/${flag[--collection-group]}-${paths//,/-}" \
          "$(printf '%s\t%s\t%s' "${flag[--collection-group]}" "${paths}__name__" "$orders$last")"
        ;;
      *) echo "fake gcloud: unsupported: $*" >&2 && exit 2 ;;
    esac
    ;;
  "secrets describe "* | "secrets add-iam-policy-binding "*) need "secret/${words[2]}" ;;
  "secrets create "*) create "secret/${words[2]}/created" && add_version "${words[2]}" ;;
  "secrets versions add") need "secret/$name" && add_version "$name" ;;
  "iam service-accounts describe" | "iam service-accounts add-iam-policy-binding")
    need "service-account/${name%%@*}"
    ;;
  "iam service-accounts create") create "service-account/$name" ;;
  "builds submit "* | "builds submit")
    config=${flag[--config]}
    n=$(find "$FAKE_STATE" -maxdepth 2 -path '*/builds/*' -type f 2>/dev/null | wc -l)
    mark "builds/$((n + 1)).yaml" "$(cat "$config")"
    # The images the build pushes: the config's `images:` list.
    sed -n "/^images:/,/^[^ ]/s/^  - '\(.*\)'$/\1/p" "$config" >>"$FAKE_STATE/images"
    ;;
  "run deploy "*)
    service=${words[2]}
    grep -qxF -- "${flag[--image]}" "$FAKE_STATE/images" 2>/dev/null ||
      { echo "ERROR: (gcloud) image ${flag[--image]} not found" >&2 && exit 1; }
    mark "service/$service"
    ;;
  "run services describe")
    need "service/$name"
    [[ $format == 'value(status.url)' ]] && echo "https://$name-abc123-uc.a.run.app"
    ;;
  "run services add-iam-policy-binding") need "service/$name" ;;
  "eventarc triggers describe")
    need "trigger/$name"
    if [[ $format == 'value(transport.pubsub.subscription)' ]]; then
      echo "projects/demo/subscriptions/eventarc-us-central1-$name-sub-123"
    fi
    ;;
  "eventarc triggers create")
    need "service/${flag[--destination-run-service]}"
    need "topic/${flag[--transport-topic]##*/}"
    create "trigger/$name"
    mark "subscription/eventarc-us-central1-$name-sub-123"
    ;;
  "scheduler jobs describe") need "scheduler/$name" ;;
  "scheduler jobs create")
    # gcloud scheduler jobs create http NAME: the name follows the type.
    [[ ${words[3]:-} == http ]] || { echo "fake gcloud: unsupported: $*" >&2 && exit 2; }
    need "service/agent-worker"
    create "scheduler/${words[4]}"
    ;;
  *) echo "fake gcloud: unsupported: $*" >&2 && exit 2 ;;
esac
FAKE
chmod +x "$TMP/bin/gcloud"
export PATH="$TMP/bin:$PATH"

# Settings from the caller's environment must not leak into the runs.
unset PROJECT GOOGLE_CLOUD_PROJECT REGION FIRESTORE_LOCATION REPOSITORY TOPIC LLM_PROVIDER TAG \
  GEMINI_API_KEY OPENAI_API_KEY API_KEYS WEBHOOK_SECRET GEMINI_MODEL VERTEX_PROJECT \
  VERTEX_LOCATION OPENAI_BASE_URL OPENAI_MODEL SESSION_TTL_DAYS AUTH_FIREBASE_PROJECT AUTH_GOOGLE_AUDIENCE \
  OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT OTEL_EXPORTER_OTLP_PROTOCOL \
  OTEL_EXPORTER_OTLP_HEADERS OTEL_TRACES_SAMPLER OTEL_TRACES_SAMPLER_ARG

GEMINI_VALUE=gemini-test-value-7Qx2
API_KEYS_VALUE=client-key-one-9Zk,client-key-two-4Wm
SA=iam.gserviceaccount.com
PUBSUB_AGENT=serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com
SUBSCRIPTION=projects/demo/subscriptions/eventarc-us-central1-agent-worker-tasks-sub-123
SERVICES=(search calculator chat agent agent-worker)
BINARIES=(search_function calculator_function chat_function agent_function agent_worker)

PASSED=0
RUN="" STATE="" LOG="" RC=0

# deploy RUN_NAME STATE_NAME [VAR=VALUE...] -- ARGS...: runs deploy.sh against
# the fake with the state STATE_NAME, keeping this run's log and output.
deploy() {
  RUN=$1 STATE="$TMP/state/$2"
  shift 2
  local env=()
  while [[ $1 != -- ]]; do
    env+=("$1")
    shift
  done
  shift
  LOG="$TMP/$RUN.log"
  mkdir -p "$STATE"
  : >"$LOG"
  RC=0
  env FAKE_LOG="$LOG" FAKE_STATE="$STATE" "${env[@]}" ./deploy.sh "$@" \
    >"$TMP/$RUN.out" 2>"$TMP/$RUN.err" </dev/null || RC=$?
}

fail() {
  {
    printf '\nFAIL: %s\n' "$1"
    shift
    printf '  %s\n' "$@"
    if [[ -n $RUN ]]; then
      printf -- '--- run "%s" (exit %s): stderr\n' "$RUN" "$RC"
      tail -n 15 "$TMP/$RUN.err"
    fi
  } >&2
  exit 1
}

pass() { PASSED=$((PASSED + 1)) && printf 'ok   %s\n' "$1"; }

# calls PATTERN...: the logged calls of this run in which each PATTERN (a
# glob) matches one whole argument.
calls() {
  local line want field hit all
  local -a fields
  while IFS= read -r line; do
    IFS=$'\t' read -r -a fields <<<"$line"
    all=true
    for want in "$@"; do
      hit=false
      for field in "${fields[@]}"; do
        # shellcheck disable=SC2254 # $want is a glob on purpose.
        case "$field" in $want) hit=true && break ;; esac
      done
      [[ $hit == true ]] || { all=false && break; }
    done
    [[ $all == false ]] || printf '%s\n' "$line"
  done <"$LOG"
}

count() { calls "$@" | wc -l; }

# nearest PATTERN...: the calls matching the first three patterns, for a
# failure message.
nearest() { calls "${@:1:3}" | tr '\t' ' ' | head -n 8 | sed 's/^/    /'; }

# expect_call NAME PATTERN...: at least one call matches every pattern.
expect_call() {
  local name=$1
  shift
  [[ $(count "$@") -gt 0 ]] || fail "$name" "no gcloud call with all of: $*" "nearest calls:" "$(nearest "$@")"
}

expect_no_call() {
  local name=$1
  shift
  [[ $(count "$@") -eq 0 ]] || fail "$name" "unexpected gcloud call with all of: $*" "$(calls "$@" | tr '\t' ' ' | head -n 5)"
}

expect_rc() {
  [[ $RC -eq $2 ]] || fail "$1" "expected exit $2, got $RC"
}

expect_output() { # NAME FILE-SUFFIX TEXT: the run's stdout/stderr contains TEXT
  grep -qF -- "$3" "$TMP/$RUN.$2" || fail "$1" "std${2} of run \"$RUN\" does not contain: $3" "$(head -n 20 "$TMP/$RUN.$2")"
}

mutating_calls() {
  grep -E $'(^|\t)(create|deploy|update|add-iam-policy-binding|enable|submit|add)(\t|$)' "$LOG" || true
}

# line_of PATTERN...: the line number of the first matching call.
line_of() {
  local first
  first=$(calls "$@" | head -n 1)
  [[ -n $first ]] || { echo 0 && return; }
  grep -nxF -- "$first" "$LOG" | head -n 1 | cut -d: -f1
}

secret_value() { cat "$STATE/secret/$1/v$2"; }

# ------------------------------------------------------------------- lint

if command -v shellcheck >/dev/null; then
  shellcheck deploy.sh scripts/test-deploy.sh >"$TMP/shellcheck.txt" 2>&1 ||
    fail "shellcheck" "$(cat "$TMP/shellcheck.txt")"
  pass "shellcheck: deploy.sh and scripts/test-deploy.sh are clean"
else
  printf 'skip shellcheck (not installed)\n'
fi

# ---------------------------------------------------------------- options

deploy help fresh-help -- --help
expect_rc "--help exits 0" 0
for option in --project --region --firestore-location --repository --topic --llm-provider --only --tag \
  --skip-build --rotate-secrets --dry-run --help GEMINI_API_KEY API_KEYS WEBHOOK_SECRET PROJECT REGION; do
  expect_output "--help mentions $option" out "$option"
done
[[ ! -s $LOG ]] || fail "--help calls no gcloud" "$(cat "$LOG")"
pass "--help exits 0, explains every option and variable, calls nothing"

deploy unknown fresh-unknown -- --project demo --bogus
[[ $RC -ne 0 ]] || fail "an unknown option fails" "exit 0"
expect_output "an unknown option is named" err "unknown option: --bogus"
deploy bad-only fresh-bad-only -- --project demo --only nonsense
[[ $RC -ne 0 ]] || fail "--only with an unknown name fails" "exit 0"
expect_output "--only names the unknown function" err '"nonsense"'
deploy bad-provider fresh-bad-provider -- --project demo --llm-provider foo
[[ $RC -ne 0 ]] || fail "--llm-provider foo fails" "exit 0"
expect_output "--llm-provider explains" err "gemini, vertex or openai"
pass "unknown options, functions and providers exit non-zero with a message"

# ---------------------------------------------------------------- dry run

deploy dry fresh-dry -- --dry-run --project demo --region us-central1 --tag test123
expect_rc "the dry run exits 0" 0
[[ -z $(mutating_calls) ]] || fail "the dry run changes nothing" "it called:" "$(mutating_calls)"
[[ ! -s $LOG ]] || fail "the dry run calls no gcloud with --project" "$(cat "$LOG")"
for expected in \
  "gcloud services enable run.googleapis.com" \
  "gcloud artifacts repositories create serverless-agent --repository-format=docker" \
  "gcloud pubsub topics create agent-tasks --project=demo" \
  "gcloud pubsub topics create agent-tasks-dead-letter --project=demo" \
  "gcloud firestore databases create --database='(default)' --location=us-central1 --type=firestore-native" \
  "gcloud firestore fields ttls update expire_at --collection-group=rate_limits" \
  "gcloud firestore fields ttls update expire_at --collection-group=response_cache" \
  "gcloud firestore fields ttls update expire_at --collection-group=sessions" \
  "gcloud firestore fields ttls update expire_at --collection-group=messages" \
  "gcloud firestore indexes composite create --collection-group=sessions" \
  "gcloud firestore indexes composite create --collection-group=tasks" \
  "gcloud secrets create GEMINI_API_KEY" "gcloud secrets create API_KEYS" "gcloud secrets create WEBHOOK_SECRET" \
  "gcloud iam service-accounts create sa-eventarc" \
  "gcloud builds submit --config=" \
  "FUNCTION=search_function" "FUNCTION=calculator_function" "FUNCTION=chat_function" \
  "FUNCTION=agent_function" "FUNCTION=agent_worker" \
  "gcloud eventarc triggers create agent-worker-tasks" \
  "gcloud scheduler jobs create http agent-worker-sweep" \
  "gcloud pubsub subscriptions update" \
  "gcloud projects add-iam-policy-binding demo --member=serviceAccount:sa-eventarc@demo.$SA --role=roles/eventarc.eventReceiver"; do
  expect_output "the dry run prints: $expected" out "$expected"
done
for i in "${!SERVICES[@]}"; do
  service=${SERVICES[$i]}
  expect_output "the dry run deploys $service" out \
    "gcloud run deploy $service --image=us-central1-docker.pkg.dev/demo/serverless-agent/${BINARIES[$i]}:test123"
  expect_output "the dry run creates sa-$service" out "gcloud iam service-accounts create sa-$service"
done
pass "--dry-run exits 0, prints the whole plan for all five functions, changes nothing"

deploy dry-config fresh-dry-config -- --dry-run --tag test123
expect_rc "a dry run without --project exits 0" 0
expect_call "the project comes from gcloud config" config get-value project
[[ -z $(mutating_calls) ]] || fail "the dry run changes nothing" "$(mutating_calls)"
expect_output "the configured project is used" out "gcloud run deploy chat "
expect_output "the configured project is used" out "--project=demo"
pass "without --project, the project is gcloud's configured one"

# ---------------------------------------------------------------- a real run

deploy first main GEMINI_API_KEY="$GEMINI_VALUE" API_KEYS="$API_KEYS_VALUE" -- --project demo --region us-central1 --tag test123
expect_rc "the first run exits 0" 0

# Every call names the project, so the user's gcloud configuration cannot
# redirect a deployment.
without_project=$(grep -vF -- $'\t--project=demo' "$LOG" | grep -vE $'\tdemo(\t|$)' || true)
[[ -z $without_project ]] || fail "every gcloud call names the project" "$without_project"
pass "every gcloud call names --project=demo"

expect_call "APIs enabled" services enable run.googleapis.com cloudbuild.googleapis.com artifactregistry.googleapis.com \
  pubsub.googleapis.com firestore.googleapis.com eventarc.googleapis.com cloudscheduler.googleapis.com \
  secretmanager.googleapis.com iam.googleapis.com
expect_no_call "aiplatform only for vertex" services enable aiplatform.googleapis.com
expect_call "repository created" artifacts repositories create serverless-agent --repository-format=docker --location=us-central1
expect_call "topic created" pubsub topics create agent-tasks
expect_call "dead-letter topic created" pubsub topics create agent-tasks-dead-letter
expect_call "Firestore created" firestore databases create '--database=(default)' --location=us-central1 --type=firestore-native
for group in rate_limits response_cache sessions messages; do
  expect_call "TTL on $group" firestore fields ttls update expire_at "--collection-group=$group" --enable-ttl --async
done
expect_call "no index on a session's tail" firestore indexes fields update tail --collection-group=sessions \
  --disable-indexes --async
expect_call "no index on a message's text" firestore indexes fields update content --collection-group=messages \
  --disable-indexes --async
expect_call "no index on a rate limit's log" firestore indexes fields update log --collection-group=rate_limits \
  --disable-indexes --async
expect_call "no index on a cached answer" firestore indexes fields update value --collection-group=response_cache \
  --disable-indexes --async
expect_call "sessions listed by owner, newest first" firestore indexes composite create --collection-group=sessions \
  --field-config=field-path=owner,order=ascending --field-config=field-path=updated_at,order=descending --async
expect_call "tasks listed by owner, newest first" firestore indexes composite create --collection-group=tasks \
  --field-config=field-path=owner,order=ascending --field-config=field-path=created_at,order=descending --async
expect_call "tasks listed by owner and status" firestore indexes composite create --collection-group=tasks \
  --field-config=field-path=owner,order=ascending --field-config=field-path=status,order=ascending \
  --field-config=field-path=created_at,order=descending --async
expect_call "usage by owner and date" firestore indexes composite create --collection-group=usage_days \
  --field-config=field-path=owner,order=ascending --field-config=field-path=date,order=ascending \
  --field-config=field-path=model,order=ascending --async
[[ $(count firestore indexes composite create) -eq 4 ]] ||
  fail "four composite indexes" "$(calls firestore indexes composite create)"
pass "APIs, repository, topics, Firestore, TTL policies, index exemptions and the listings' indexes are created"

# One build with a step per function, pushing each image with the tag.
builds=$(cat "$STATE"/builds/*.yaml)
[[ $(count builds submit) -eq 1 ]] || fail "one Cloud Build run" "$(calls builds submit)"
for f in "${BINARIES[@]}"; do
  grep -qF -- "'FUNCTION=$f'" <<<"$builds" || fail "the build builds $f" "$builds"
done
for f in "${BINARIES[@]}"; do
  image="us-central1-docker.pkg.dev/demo/serverless-agent/$f:test123"
  grep -qxF -- "$image" "$STATE/images" || fail "the build pushes $image" "$builds"
done
pass "the images are built with FUNCTION=<binary> and pushed with the tag"

# service binary MEMORY TIMEOUT CONCURRENCY MAX_INSTANCES
while read -r service binary memory timeout concurrency max; do
  expect_call "deploy $service" run deploy "$service" \
    "--image=us-central1-docker.pkg.dev/demo/serverless-agent/$binary:test123" --region=us-central1 \
    "--service-account=sa-$service@demo.$SA" "--memory=$memory" --cpu=1 "--timeout=$timeout" \
    "--concurrency=$concurrency" --min-instances=0 "--max-instances=$max" \
    '--set-env-vars=STORE=firestore,FIRESTORE_PROJECT=demo,GOOGLE_CLOUD_PROJECT=demo,LOG_FORMAT=json*' \
    --cpu-boost --ingress=all --quiet
done <<'EOF'
search search_function 256Mi 30 80 20
calculator calculator_function 256Mi 30 80 20
chat chat_function 512Mi 60 80 100
agent agent_function 1Gi 540 40 50
agent-worker agent_worker 1Gi 600 10 20
EOF
pass "each service is deployed with its image, account, memory, timeout, concurrency, instances and STORE=firestore"

for service in search calculator agent-worker; do
  expect_call "$service is private" run deploy "$service" --no-allow-unauthenticated
  expect_no_call "$service is private" run deploy "$service" --allow-unauthenticated
done
for service in chat agent; do
  expect_call "$service is public" run deploy "$service" --allow-unauthenticated
done
pass "search, calculator and agent-worker are private; chat and agent public"

# A tool function has no model: a provider setting without its key would
# stop it at start-up.
for service in chat agent agent-worker; do
  expect_call "$service calls the model" run deploy "$service" "--set-env-vars=*,LLM_PROVIDER=gemini*"
done
for service in search calculator; do
  expect_no_call "$service gets no model settings" run deploy "$service" "--set-env-vars=*LLM_PROVIDER*"
done
pass "the model settings go to chat, agent and worker only"

for service in agent agent-worker; do
  expect_call "$service gets the tool URLs" run deploy "$service" \
    "--set-env-vars=*,SEARCH_URL=https://search-abc123-uc.a.run.app/api/v1/tools/search*" \
    "--set-env-vars=*,CALCULATOR_URL=https://calculator-abc123-uc.a.run.app/api/v1/tools/calculate*"
done
for service in agent agent-worker; do
  expect_call "$service publishes to Pub/Sub" run deploy "$service" \
    "--set-env-vars=*,QUEUE=pubsub,PUBSUB_TOPIC=agent-tasks,PUBSUB_PROJECT=demo*"
done
[[ $(line_of run services describe search '--format=value(status.url)') -gt $(line_of run deploy search) &&
  $(line_of run deploy agent) -gt $(line_of run services describe calculator '--format=value(status.url)') ]] ||
  fail "the tools are deployed and their URLs read before the agent" "$(tr '\t' ' ' <"$LOG" | grep -E 'run (deploy|services describe)')"
pass "agent and worker get SEARCH_URL/CALCULATOR_URL of the deployed tools (read after deploying them)"

expect_call "chat secrets" run deploy chat '--set-secrets=GEMINI_API_KEY=GEMINI_API_KEY:latest,API_KEYS=API_KEYS:latest'
expect_call "agent secrets" run deploy agent \
  '--set-secrets=GEMINI_API_KEY=GEMINI_API_KEY:latest,API_KEYS=API_KEYS:latest,WEBHOOK_SECRET=WEBHOOK_SECRET:latest'
expect_call "worker secrets" run deploy agent-worker '--set-secrets=GEMINI_API_KEY=GEMINI_API_KEY:latest,WEBHOOK_SECRET=WEBHOOK_SECRET:latest'
for service in search calculator; do
  expect_no_call "$service mounts no secret" run deploy "$service" '--set-secrets=*'
done
pass "secrets mounted: GEMINI_API_KEY on chat/agent/worker, API_KEYS on chat/agent, WEBHOOK_SECRET on agent/worker, none on tools"

for name in GEMINI_API_KEY API_KEYS WEBHOOK_SECRET; do
  expect_call "secret $name created" secrets create "$name" --data-file=- --replication-policy=automatic
done
[[ $(secret_value GEMINI_API_KEY 1) == "$GEMINI_VALUE" ]] || fail "GEMINI_API_KEY holds the value of \$GEMINI_API_KEY"
[[ $(secret_value API_KEYS 1) == "$API_KEYS_VALUE" ]] || fail "API_KEYS holds the value of \$API_KEYS"
WEBHOOK_VALUE=$(secret_value WEBHOOK_SECRET 1)
[[ $WEBHOOK_VALUE =~ ^[0-9a-f]{64}$ ]] || fail "WEBHOOK_SECRET is generated: 32 random bytes in hex"
pass "the secrets are created from the environment (WEBHOOK_SECRET generated), values on stdin"

for value in "$GEMINI_VALUE" "$API_KEYS_VALUE" client-key-one-9Zk "$WEBHOOK_VALUE"; do
  if grep -qF -- "$value" "$LOG" "$TMP/first.out" "$TMP/first.err"; then
    fail "secret values are never logged or printed" "found a secret value in: $(grep -lF -- "$value" "$LOG" "$TMP/first.out" "$TMP/first.err")"
  fi
done
pass "no secret value appears in the gcloud arguments or the script's output"

for service in "${SERVICES[@]}"; do
  expect_call "sa-$service created" iam service-accounts create "sa-$service"
  expect_call "sa-$service uses Firestore" projects add-iam-policy-binding demo \
    "--member=serviceAccount:sa-$service@demo.$SA" --role=roles/datastore.user
done
expect_call "sa-eventarc created" iam service-accounts create sa-eventarc
expect_no_call "no Vertex AI role with gemini" '--role=roles/aiplatform.user'
# secret: the accounts allowed to read it, and nothing else.
while read -r secret accounts; do
  for account in $accounts; do
    expect_call "$account reads $secret" secrets add-iam-policy-binding "$secret" \
      "--member=serviceAccount:$account@demo.$SA" --role=roles/secretmanager.secretAccessor
  done
  n=$(count secrets add-iam-policy-binding "$secret" --role=roles/secretmanager.secretAccessor)
  [[ $n -eq $(wc -w <<<"$accounts") ]] || fail "only $accounts read $secret" "$(calls secrets add-iam-policy-binding "$secret")"
done <<'EOF'
GEMINI_API_KEY sa-chat sa-agent sa-agent-worker
API_KEYS sa-chat sa-agent
WEBHOOK_SECRET sa-agent sa-agent-worker
EOF
for publisher in sa-agent sa-agent-worker; do
  expect_call "$publisher publishes to the topic" pubsub topics add-iam-policy-binding agent-tasks \
    "--member=serviceAccount:$publisher@demo.$SA" --role=roles/pubsub.publisher
done
[[ $(count pubsub topics add-iam-policy-binding agent-tasks) -eq 2 ]] ||
  fail "only sa-agent and sa-agent-worker publish to the topic" "$(calls pubsub topics add-iam-policy-binding agent-tasks)"
for tool in search calculator; do
  for caller in sa-agent sa-agent-worker; do
    expect_call "$caller invokes $tool" run services add-iam-policy-binding "$tool" --region=us-central1 \
      "--member=serviceAccount:$caller@demo.$SA" --role=roles/run.invoker
  done
  [[ $(count run services add-iam-policy-binding "$tool") -eq 2 ]] || fail "only the agent and the worker invoke $tool"
done
expect_call "sa-eventarc invokes the worker" run services add-iam-policy-binding agent-worker \
  "--member=serviceAccount:sa-eventarc@demo.$SA" --role=roles/run.invoker
[[ $(count run services add-iam-policy-binding agent-worker) -eq 1 ]] || fail "only sa-eventarc invokes the worker"
expect_call "sa-eventarc receives events" projects add-iam-policy-binding demo \
  "--member=serviceAccount:sa-eventarc@demo.$SA" --role=roles/eventarc.eventReceiver
pass "one account per function, each with only its roles (Firestore, secrets, topic, invokers)"

expect_call "the Eventarc trigger" eventarc triggers create agent-worker-tasks --location=us-central1 \
  --destination-run-service=agent-worker --destination-run-region=us-central1 --destination-run-path=/ \
  --event-filters=type=google.cloud.pubsub.topic.v1.messagePublished \
  --transport-topic=projects/demo/topics/agent-tasks "--service-account=sa-eventarc@demo.$SA"
expect_call "the trigger's subscription is updated" pubsub subscriptions update "$SUBSCRIPTION" --ack-deadline=600 \
  --dead-letter-topic=projects/demo/topics/agent-tasks-dead-letter --max-delivery-attempts=5 \
  --min-retry-delay=10s --max-retry-delay=600s
expect_call "Pub/Sub may dead-letter" pubsub topics add-iam-policy-binding agent-tasks-dead-letter \
  "--member=$PUBSUB_AGENT" --role=roles/pubsub.publisher
expect_call "Pub/Sub may forward from the subscription" pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" \
  "--member=$PUBSUB_AGENT" --role=roles/pubsub.subscriber
pass "the Eventarc trigger delivers the topic to the worker, with ack deadline 600 and dead-lettering after 5 attempts"

expect_call "the sweep's schedule" scheduler jobs create http agent-worker-sweep --location=us-central1 \
  "--schedule=*/5 * * * *" --uri=https://agent-worker-abc123-uc.a.run.app/sweep --http-method=POST \
  "--oidc-service-account-email=sa-eventarc@demo.$SA" --oidc-token-audience=https://agent-worker-abc123-uc.a.run.app
pass "Cloud Scheduler calls the worker's POST /sweep every 5 minutes as sa-eventarc"

for service in "${SERVICES[@]}"; do
  expect_output "the URL of $service is printed" out "https://$service-abc123-uc.a.run.app"
done
expect_output "private services are marked" out "private"
pass "every service URL is printed at the end"

# ------------------------------------------------------------ a second run

deploy second main GEMINI_API_KEY="$GEMINI_VALUE" API_KEYS="$API_KEYS_VALUE" -- --project demo --region us-central1 --tag test123
expect_rc "the second run exits 0" 0
expect_no_call "the second run creates nothing" create
expect_no_call "the second run adds no secret version" secrets versions add
expect_no_call "the TTL policies are not updated again" firestore fields ttls update
expect_output "existing composite indexes are kept" out "index on tasks (owner,status,created_at) exists"
[[ $(count run deploy) -eq 5 ]] || fail "the second run deploys again" "$(calls run deploy)"
expect_output "existing secrets are kept" out "secret API_KEYS exists; kept"
pass "a second run creates nothing that exists (and redeploys the five services)"

deploy unreadable-indexes main GEMINI_API_KEY="$GEMINI_VALUE" API_KEYS="$API_KEYS_VALUE" FAKE_INDEX_LIST_UNREADABLE=1 -- --project demo --tag test123 --skip-build
expect_rc "a run that cannot read the index list exits 0" 0
[[ $(count firestore indexes composite create) -eq 4 ]] || fail "each index is tried" "$(calls firestore indexes composite create)"
expect_output "an index that exists is not an error" out "index on sessions (owner,updated_at) exists"
pass "an index the list did not show but that exists (ALREADY_EXISTS) is taken as there"

deploy rotate main GEMINI_API_KEY=rotated-gemini-5Tq API_KEYS=rotated-keys-8Rn -- --project demo --tag test123 --skip-build --rotate-secrets
expect_rc "the rotation run exits 0" 0
expect_call "API_KEYS rotated" secrets versions add API_KEYS --data-file=-
expect_call "GEMINI_API_KEY rotated" secrets versions add GEMINI_API_KEY --data-file=-
expect_no_call "WEBHOOK_SECRET (unset) is not rotated" secrets versions add WEBHOOK_SECRET
[[ $(secret_value API_KEYS 2) == rotated-keys-8Rn ]] || fail "the new API_KEYS version holds the new value"
expect_no_call "--skip-build builds nothing" builds submit
grep -qF -- rotated- "$LOG" "$TMP/rotate.out" "$TMP/rotate.err" && fail "rotated values are never printed"
pass "--rotate-secrets adds new versions from the environment; --skip-build builds nothing"

# Firestore in Datastore mode cannot serve the store: a clear error.
mkdir -p "$TMP/state/datastore/database"
printf DATASTORE_MODE >"$TMP/state/datastore/database/(default)"
deploy datastore datastore API_KEYS=k GEMINI_API_KEY=g -- --project demo --tag test123
[[ $RC -ne 0 ]] || fail "a Datastore-mode database stops the deployment" "exit 0"
expect_output "the error says why" err "native mode"
pass "a Datastore-mode database is a clear error"

# ------------------------------------------------------------------ --only

deploy only-search only GEMINI_API_KEY="$GEMINI_VALUE" API_KEYS="$API_KEYS_VALUE" -- --project demo --tag test123 --only search
expect_rc "--only search exits 0" 0
[[ $(count run deploy) -eq 1 && $(count run deploy search) -eq 1 ]] || fail "--only search deploys only search" "$(calls run deploy)"
[[ $(grep -o "FUNCTION=[a-z_]*" "$STATE/builds/1.yaml") == FUNCTION=search_function ]] ||
  fail "--only search builds only search_function" "$(cat "$STATE/builds/1.yaml")"
expect_no_call "--only search creates no trigger" eventarc triggers create
expect_no_call "--only search creates no sweep job" scheduler jobs create
expect_no_call "--only search needs no model key" secrets create GEMINI_API_KEY
pass "--only search builds and deploys only search"

deploy only-agent-missing only-missing GEMINI_API_KEY=g API_KEYS=k -- --project demo --tag test123 --only agent
[[ $RC -ne 0 ]] || fail "--only agent without the tools fails" "exit 0"
expect_output "the missing tool is named" err "needs the search service, which is not deployed"
[[ -z $(mutating_calls) ]] || fail "the check comes before any change" "$(mutating_calls)"
pass "--only agent with no tool services deployed is a clear error, before any change"

deploy only-two only GEMINI_API_KEY="$GEMINI_VALUE" API_KEYS="$API_KEYS_VALUE" -- --project demo --tag test124 --only agent_function --only calculator,search
expect_rc "--only agent_function --only calculator,search exits 0" 0
[[ $(count run deploy) -eq 3 ]] || fail "three services deployed" "$(calls run deploy)"
[[ $(line_of run deploy calculator) -lt $(line_of run deploy agent) ]] || fail "the tools are deployed before the agent"
expect_call "the agent gets the tool URLs" run deploy agent "--set-env-vars=*SEARCH_URL=https://search-abc123-uc.a.run.app/*"
pass "--only takes repeated and comma-separated binary or service names, deployed in order"

# ----------------------------------------------------------------- vertex

deploy vertex vertex API_KEYS="$API_KEYS_VALUE" -- --project demo --tag test123 --llm-provider vertex
expect_rc "vertex without GEMINI_API_KEY exits 0" 0
expect_call "the Vertex AI API is enabled" services enable aiplatform.googleapis.com
for service in chat agent agent-worker; do
  expect_call "sa-$service calls Vertex AI" projects add-iam-policy-binding demo \
    "--member=serviceAccount:sa-$service@demo.$SA" --role=roles/aiplatform.user
done
[[ $(count --role=roles/aiplatform.user) -eq 3 ]] || fail "only the model callers get aiplatform.user" "$(calls --role=roles/aiplatform.user)"
expect_no_call "no GEMINI_API_KEY secret" secrets create GEMINI_API_KEY
expect_no_call "no GEMINI_API_KEY mounted" run deploy '--set-secrets=*GEMINI_API_KEY*'
expect_call "vertex settings" run deploy agent '--set-env-vars=*LLM_PROVIDER=vertex,VERTEX_PROJECT=demo,VERTEX_LOCATION=us-central1*'
pass "--llm-provider vertex grants roles/aiplatform.user and needs no GEMINI_API_KEY"

deploy openai openai API_KEYS=k OPENAI_API_KEY=openai-test-value-2Jd OPENAI_MODEL=llama3 -- --project demo --tag test123 --llm-provider openai
expect_rc "openai exits 0" 0
expect_call "the OpenAI key is a secret" secrets create OPENAI_API_KEY --data-file=-
expect_call "chat mounts the OpenAI key" run deploy chat '--set-secrets=OPENAI_API_KEY=OPENAI_API_KEY:latest,API_KEYS=API_KEYS:latest' \
  '--set-env-vars=*,LLM_PROVIDER=openai,OPENAI_MODEL=llama3*'
expect_no_call "no GEMINI_API_KEY with openai" '*GEMINI_API_KEY*'
grep -qF -- openai-test-value "$LOG" "$TMP/openai.out" "$TMP/openai.err" && fail "the OpenAI key is never printed"
pass "--llm-provider openai keeps OPENAI_API_KEY in Secret Manager and passes OPENAI_MODEL"

deploy firebase firebase API_KEYS=k GEMINI_API_KEY=g AUTH_FIREBASE_PROJECT=my-app AUTH_GOOGLE_AUDIENCE=https://chat.example -- --project demo --tag test123
expect_rc "end-user sign-in exits 0" 0
for service in chat agent; do
  expect_call "$service accepts the ID tokens" run deploy "$service" \
    '--set-env-vars=*,AUTH_FIREBASE_PROJECT=my-app,AUTH_GOOGLE_AUDIENCE=https://chat.example*'
done
for service in agent-worker search calculator; do
  expect_no_call "$service is private: no end-user sign-in" run deploy "$service" '--set-env-vars=*AUTH_*'
done
pass "AUTH_FIREBASE_PROJECT and AUTH_GOOGLE_AUDIENCE reach the public services only"

deploy comma-audience comma-audience API_KEYS=k GEMINI_API_KEY=g AUTH_GOOGLE_AUDIENCE=a,b -- --project demo --tag test123
[[ $RC -ne 0 ]] || fail "an audience list with a comma is refused" "exit 0"
grep -q 'AUTH_GOOGLE_AUDIENCE must not contain a comma' "$TMP/comma-audience.err" || fail "the error names AUTH_GOOGLE_AUDIENCE" "$(cat "$TMP/comma-audience.err")"
pass "a comma in AUTH_GOOGLE_AUDIENCE stops the script before it changes anything"

TRACE_HEADERS=x-api-key=trace-test-value-8Hq,x-tenant=demo
deploy traces traces API_KEYS=k GEMINI_API_KEY=g OTEL_EXPORTER_OTLP_ENDPOINT=https://collector.example:4318 \
  OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.25 OTEL_EXPORTER_OTLP_HEADERS="$TRACE_HEADERS" \
  -- --project demo --tag test123
expect_rc "trace export exits 0" 0
expect_call "the trace headers are a secret" secrets create OTEL_EXPORTER_OTLP_HEADERS --data-file=-
[[ $(secret_value OTEL_EXPORTER_OTLP_HEADERS 1) == "$TRACE_HEADERS" ]] ||
  fail "the secret holds the headers as given" "$(secret_value OTEL_EXPORTER_OTLP_HEADERS 1)"
for service in "${SERVICES[@]}"; do
  expect_call "$service exports its spans" run deploy "$service" \
    '--set-env-vars=*,OTEL_EXPORTER_OTLP_ENDPOINT=https://collector.example:4318,OTEL_TRACES_SAMPLER=parentbased_traceidratio,OTEL_TRACES_SAMPLER_ARG=0.25*' \
    '--set-secrets=*OTEL_EXPORTER_OTLP_HEADERS=OTEL_EXPORTER_OTLP_HEADERS:latest*'
  expect_call "$service may read the trace headers" secrets add-iam-policy-binding OTEL_EXPORTER_OTLP_HEADERS \
    "--member=serviceAccount:sa-$service@demo.$SA" --role=roles/secretmanager.secretAccessor
done
grep -qF -- trace-test-value "$LOG" "$TMP/traces.out" "$TMP/traces.err" && fail "the trace headers are never printed"
pass "trace export: the OTLP settings reach every service, the headers as a secret each one may read"

deploy traces-off traces-off API_KEYS=k GEMINI_API_KEY=g OTEL_EXPORTER_OTLP_HEADERS="$TRACE_HEADERS" -- --project demo --tag test123
expect_rc "headers without an endpoint exit 0" 0
expect_no_call "no endpoint: no trace setting and no trace secret" '*OTEL_*'
pass "without an endpoint, trace export stays off: the headers are neither stored nor mounted"

deploy comma-sampler comma-sampler API_KEYS=k GEMINI_API_KEY=g OTEL_EXPORTER_OTLP_ENDPOINT=https://collector.example \
  OTEL_TRACES_SAMPLER_ARG=0.1,0.2 -- --project demo --tag test123
[[ $RC -ne 0 ]] || fail "a comma in a trace setting is refused" "exit 0"
expect_output "the error names the setting" err "OTEL_TRACES_SAMPLER_ARG must not contain a comma"
[[ -z $(mutating_calls) ]] || fail "the check comes before any change" "$(mutating_calls)"
pass "a comma in a trace setting stops the script before it changes anything"

deploy no-key no-key API_KEYS=k -- --project demo --tag test123
[[ $RC -ne 0 ]] || fail "gemini without GEMINI_API_KEY fails" "exit 0"
expect_output "the error names GEMINI_API_KEY" err "GEMINI_API_KEY is not set"
[[ -z $(mutating_calls) ]] || fail "the check comes before any change" "$(mutating_calls)"
pass "gemini without GEMINI_API_KEY (and no secret) is a clear error, before any change"

printf '\n%d checks passed\n' "$PASSED"
