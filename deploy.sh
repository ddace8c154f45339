#!/usr/bin/env bash
# Deploys the five functions to Google Cloud Run, with everything they need:
# APIs, an Artifact Registry repository, the Pub/Sub topics, Firestore and its
# TTL policies, secrets, one service account per function with least
# privilege, the images, the services, and the Eventarc trigger that delivers
# queued tasks to the worker. Idempotent: what exists is left as it is (IAM
# bindings are re-applied, which changes nothing), so it is safe to run again.
# Run ./deploy.sh --help for the options.
set -euo pipefail
cd "$(dirname "$0")"

# The order matters: the tool services first, so the agent and the worker can
# be given their URLs.
ALL_FUNCTIONS=(search_function calculator_function chat_function agent_function agent_worker)
TRIGGER=agent-worker-tasks
SWEEP_JOB=agent-worker-sweep

# The generated Cloud Build config, removed however the script ends.
BUILD_CONFIG=""
cleanup() { [[ -z $BUILD_CONFIG ]] || rm -f -- "$BUILD_CONFIG"; }
trap cleanup EXIT

usage() {
  cat <<'EOF'
Usage: ./deploy.sh [options]

Deploys chat_function, agent_function, agent_worker, search_function and
calculator_function as Cloud Run services (chat, agent, agent-worker, search,
calculator), and creates what they need when it is missing.

Options (each may also come from the environment variable in brackets):
  --project ID          Google Cloud project [PROJECT, GOOGLE_CLOUD_PROJECT,
                        else `gcloud config get-value project`]
  --region REGION       Cloud Run, Artifact Registry and Eventarc region
                        [REGION; default us-central1]
  --firestore-location LOC
                        Firestore location when the database is created
                        [FIRESTORE_LOCATION; default: the region]
  --repository NAME     Artifact Registry docker repository
                        [REPOSITORY; default serverless-agent]
  --topic NAME          Pub/Sub topic for asynchronous tasks; its dead-letter
                        topic is NAME-dead-letter [TOPIC; default agent-tasks]
  --llm-provider P      gemini, vertex or openai [LLM_PROVIDER; default gemini]
  --only NAME           deploy only this function, by binary or service name
                        (chat_function or chat, ...); repeat it or separate
                        names with commas. Shared resources are still ensured.
  --tag TAG             image tag [TAG; default: the git short SHA, else a
                        timestamp]
  --skip-build          deploy images already pushed with this tag
  --rotate-secrets      add the values of the secret variables below as new
                        secret versions even when the secrets exist
  --dry-run             print each gcloud command instead of running it;
                        every resource is taken as missing, so this is the
                        whole plan (values read from Google Cloud, such as
                        service URLs, are placeholders)
  -h, --help            this help

Secrets (read from the environment, sent to Secret Manager on stdin, never
printed; each is created when missing and otherwise left alone unless
--rotate-secrets is given):
  GEMINI_API_KEY   (gemini) required unless the secret already exists
  OPENAI_API_KEY   (openai) optional: mounted when set or when it exists
  API_KEYS         comma-separated NAME:KEY entries (a bare KEY is named by
                   a short hash of it) for chat and agent: each name owns its
                   sessions and tasks; required unless the secret exists
  WEBHOOK_SECRET   signs task callbacks; generated when unset and missing

Model settings passed to the services when set: GEMINI_MODEL (gemini,
vertex), VERTEX_PROJECT (default: the project), VERTEX_LOCATION (default: the
region), OPENAI_BASE_URL, OPENAI_MODEL (openai); and SESSION_TTL_DAYS.
End-user sign-in passed to chat and agent when set: AUTH_FIREBASE_PROJECT
(accept Firebase Authentication ID tokens of this project) and
AUTH_GOOGLE_AUDIENCE (accept Google-signed ID tokens for this audience).
Trace export passed to every service when set (README "Traces"):
OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (an
OTLP/HTTP collector), OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_TRACES_SAMPLER and
OTEL_TRACES_SAMPLER_ARG; with an endpoint, OTEL_EXPORTER_OTLP_HEADERS (it
carries the collector's credentials) is kept in Secret Manager like the
secrets above and mounted on every service when set or when it exists.
A redeploy sets each service's variables in full: what is not set here is
removed, so pass these on every run that should keep tracing on.

What it creates, when missing:
  - APIs: run, cloudbuild, artifactregistry, pubsub, firestore, eventarc,
    cloudscheduler,
    secretmanager, iam (and aiplatform for vertex)
  - the Artifact Registry repository, the Pub/Sub topic, its dead-letter
    topic and a pull subscription keeping dead-lettered messages
  - the Firestore (default) database in native mode, TTL policies on
    expire_at for rate_limits, sessions and messages, no indexes on
    sessions.tail, messages.content and rate_limits.log (never queried),
    and the composite indexes of the listings (sessions by owner and
    updated_at, tasks by owner, status and created_at, usage_days by
    owner, date and model)
  - the secrets above
  - service accounts sa-chat, sa-agent, sa-agent-worker, sa-search,
    sa-calculator and sa-eventarc, with only the roles each needs
  - the images (one Cloud Build run), the five Cloud Run services (search,
    calculator and agent-worker private; chat and agent public), and the
    Eventarc trigger agent-worker-tasks from the topic to the worker, whose
    subscription gets a 600 s ack deadline, retry backoff and dead-lettering
  - the Cloud Scheduler job agent-worker-sweep, which calls the worker's
    POST /sweep every 5 minutes (as sa-eventarc) to send the callbacks
    finished tasks still owe
EOF
}

die() {
  printf 'deploy.sh: error: %s\n' "$*" >&2
  exit 1
}

note() { printf '    %s\n' "$*" >&3; }

step() { printf '\n==> %s\n' "$*" >&3; }

# quote ARGS...: the arguments as one shell-quoted line: plain where that is
# unambiguous, else in single quotes (only the value of a --flag=value).
quote() {
  local arg flag out=()
  for arg in "$@"; do
    flag=""
    if [[ $arg =~ ^(--[a-z0-9-]+=)(.*)$ ]]; then
      flag=${BASH_REMATCH[1]} arg=${BASH_REMATCH[2]}
    fi
    if [[ $arg =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
      out+=("$flag$arg")
    else
      out+=("$flag'${arg//\'/\'\\\'\'}'")
    fi
  done
  printf '%s' "${out[*]}"
}

# run CMD...: runs a command that changes something; in a dry run, prints it.
# The plan goes to file descriptor 3 (standard output), so it is not captured
# when run inside $(...).
run() {
  if [[ $DRY_RUN == true ]]; then
    printf '%s\n' "$(quote "$@")" >&3
    return 0
  fi
  printf '+ %s\n' "$(quote "$@")" >&3
  "$@"
}

# run_with_secret VAR CMD...: runs CMD with the value of the environment
# variable VAR on its standard input (for --data-file=-), so the value never
# appears in an argument list or in the output.
run_with_secret() {
  local var=$1
  shift
  if [[ $DRY_RUN == true ]]; then
    printf '%s  # the value of $%s on stdin\n' "$(quote "$@")" "$var" >&3
    return 0
  fi
  printf '+ %s  # the value of $%s on stdin\n' "$(quote "$@")" "$var" >&3
  printf '%s' "${!var}" | "$@"
}

# exists CMD...: whether a describe/list command succeeds. A dry run checks
# nothing and takes everything as missing, so it prints the whole plan.
exists() {
  [[ $DRY_RUN == true ]] && return 1
  "$@" >/dev/null 2>&1
}

# read_value PLACEHOLDER CMD...: the output of a command that reads a value
# (a URL, a number); in a dry run, PLACEHOLDER, and the command as a comment.
read_value() {
  local placeholder=$1
  shift
  if [[ $DRY_RUN == true ]]; then
    printf '# %s  -> %s\n' "$(quote "$@")" "$placeholder" >&3
    printf '%s' "$placeholder"
    return 0
  fi
  "$@"
}

# bind CMD...: an add-iam-policy-binding. It is idempotent, so it runs every
# time; it is retried because a service account created a moment ago can take
# a few seconds to be visible to IAM.
bind() {
  local attempt
  for attempt in 1 2 3 4 5; do
    if run "$@" --format=none; then
      return 0
    fi
    [[ $attempt == 5 ]] && break
    note "retrying in $((attempt * 3)) s (IAM may not see a new service account yet)"
    sleep "$((attempt * 3))"
  done
  die "could not apply the IAM binding above"
}

# ---------------------------------------------------------------- settings

# load_function NAME: the one place that knows each function's settings. Sets
# F_BINARY, F_SERVICE, F_MEMORY, F_TIMEOUT, F_CONCURRENCY, F_MAX_INSTANCES,
# F_PUBLIC, F_MODEL (calls the model: model secret, Vertex AI role), F_TOOLS
# (calls the tool services), F_SECRETS (Secret Manager secrets it mounts) and
# F_SA (its service account). Accepts a binary or a service name.
load_function() {
  F_MODEL=false F_TOOLS=false F_SECRETS=()
  case "$1" in
    chat_function | chat)
      F_BINARY=chat_function F_SERVICE=chat F_PUBLIC=true
      F_MEMORY=512Mi F_TIMEOUT=60 F_CONCURRENCY=80 F_MAX_INSTANCES=100
      F_MODEL=true F_SECRETS=(API_KEYS)
      ;;
    agent_function | agent)
      F_BINARY=agent_function F_SERVICE=agent F_PUBLIC=true
      F_MEMORY=1Gi F_TIMEOUT=540 F_CONCURRENCY=40 F_MAX_INSTANCES=50
      F_MODEL=true F_TOOLS=true F_SECRETS=(API_KEYS WEBHOOK_SECRET)
      ;;
    agent_worker | agent-worker)
      # Private: Cloud Run IAM authenticates the Eventarc pushes, so no
      # API_KEYS. Its timeout covers a whole task; its concurrency is low
      # because each request runs an agent loop.
      F_BINARY=agent_worker F_SERVICE=agent-worker F_PUBLIC=false
      F_MEMORY=1Gi F_TIMEOUT=600 F_CONCURRENCY=10 F_MAX_INSTANCES=20
      F_MODEL=true F_TOOLS=true F_SECRETS=(WEBHOOK_SECRET)
      ;;
    search_function | search)
      F_BINARY=search_function F_SERVICE=search F_PUBLIC=false
      F_MEMORY=256Mi F_TIMEOUT=30 F_CONCURRENCY=80 F_MAX_INSTANCES=20
      ;;
    calculator_function | calculator)
      F_BINARY=calculator_function F_SERVICE=calculator F_PUBLIC=false
      F_MEMORY=256Mi F_TIMEOUT=30 F_CONCURRENCY=80 F_MAX_INSTANCES=20
      ;;
    *) return 1 ;;
  esac
  # The model's key, if the provider has one, goes wherever the model is.
  if [[ $F_MODEL == true && -n $MODEL_SECRET ]]; then
    F_SECRETS=("$MODEL_SECRET" "${F_SECRETS[@]}")
  fi
  # Every function exports its spans, so every one reads the headers.
  if [[ -n ${TRACE_SECRET:-} ]]; then
    F_SECRETS+=("$TRACE_SECRET")
  fi
  F_SA=$(sa_email "sa-$F_SERVICE")
}

sa_email() { printf '%s@%s.iam.gserviceaccount.com' "$1" "$PROJECT"; }

selected() {
  local f
  for f in "${SELECTED[@]}"; do
    [[ $f == "$1" ]] && return 0
  done
  return 1
}

image_for() {
  printf '%s-docker.pkg.dev/%s/%s/%s:%s' "$REGION" "$PROJECT" "$REPOSITORY" "$1" "$TAG"
}

# ---------------------------------------------------------------- options

PROJECT=${PROJECT:-${GOOGLE_CLOUD_PROJECT:-}}
REGION=${REGION:-us-central1}
FIRESTORE_LOCATION=${FIRESTORE_LOCATION:-}
REPOSITORY=${REPOSITORY:-serverless-agent}
TOPIC=${TOPIC:-agent-tasks}
LLM_PROVIDER=${LLM_PROVIDER:-gemini}
TAG=${TAG:-}
DRY_RUN=false
SKIP_BUILD=false
ROTATE_SECRETS=false
ONLY=()
MODEL_SECRET="" # set once the provider is known (preflight)

need_value() {
  [[ $# -ge 2 && -n $2 && $2 != --* ]] || die "$1 needs a value (see --help)"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --project | --region | --firestore-location | --repository | --topic | --llm-provider | --only | --tag)
      need_value "$@"
      case "$1" in
        --project) PROJECT=$2 ;;
        --region) REGION=$2 ;;
        --firestore-location) FIRESTORE_LOCATION=$2 ;;
        --repository) REPOSITORY=$2 ;;
        --topic) TOPIC=$2 ;;
        --llm-provider) LLM_PROVIDER=$2 ;;
        --only) IFS=, read -r -a names <<<"$2" && ONLY+=("${names[@]}") ;;
        --tag) TAG=$2 ;;
      esac
      shift 2
      ;;
    --project=* | --region=* | --firestore-location=* | --repository=* | --topic=* | --llm-provider=* | --only=* | --tag=*)
      set -- "${1%%=*}" "${1#*=}" "${@:2}"
      ;;
    --dry-run) DRY_RUN=true && shift ;;
    --skip-build) SKIP_BUILD=true && shift ;;
    --rotate-secrets) ROTATE_SECRETS=true && shift ;;
    -h | --help) usage && exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
done

# The plan and the progress go to standard output through descriptor 3.
exec 3>&1

case "$LLM_PROVIDER" in
  gemini | vertex | openai) ;;
  *) die "--llm-provider must be gemini, vertex or openai, not \"$LLM_PROVIDER\"" ;;
esac

if [[ $DRY_RUN == false ]] && ! command -v gcloud >/dev/null; then
  die "gcloud is not installed: see https://cloud.google.com/sdk/docs/install"
fi
if [[ -z $PROJECT ]] && command -v gcloud >/dev/null; then
  PROJECT=$(gcloud config get-value project 2>/dev/null || true)
fi
[[ -n $PROJECT ]] || die "no project: pass --project, set PROJECT, or run gcloud config set project ID"
FIRESTORE_LOCATION=${FIRESTORE_LOCATION:-$REGION}

SELECTED=()
if [[ ${#ONLY[@]} -eq 0 ]]; then
  SELECTED=("${ALL_FUNCTIONS[@]}")
else
  for name in "${ONLY[@]}"; do
    load_function "$name" || die "--only: unknown function \"$name\" (one of: chat agent agent-worker search calculator, or their binary names)"
  done
  # Kept in deployment order, whatever the order given.
  for f in "${ALL_FUNCTIONS[@]}"; do
    for name in "${ONLY[@]}"; do
      load_function "$name"
      if [[ $F_BINARY == "$f" ]]; then
        SELECTED+=("$f")
        break
      fi
    done
  done
fi

if [[ -z $TAG ]]; then
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    TAG=$(git rev-parse --short HEAD)
  else
    TAG=$(date -u +%Y%m%d-%H%M%S)
  fi
fi

[[ $TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--tag \"$TAG\" is not a valid image tag"

TOPIC_PATH="projects/$PROJECT/topics/$TOPIC"
DEAD_LETTER_TOPIC="$TOPIC-dead-letter"
EVENTARC_SA=$(sa_email sa-eventarc)
P=(--project="$PROJECT")

printf 'Deploying %s to project %s, region %s, image tag %s, model provider %s\n' \
  "${SELECTED[*]}" "$PROJECT" "$REGION" "$TAG" "$LLM_PROVIDER" >&3
[[ $DRY_RUN == false ]] || printf 'Dry run: the commands are printed, nothing is changed.\n' >&3

# --------------------------------------------------------------- preflight

secret_exists() { exists gcloud secrets describe "$1" "${P[@]}"; }

# The model's key: Gemini needs one; an OpenAI-compatible server may not.
case "$LLM_PROVIDER" in
  gemini) MODEL_SECRET=GEMINI_API_KEY ;;
  openai)
    if [[ -n ${OPENAI_API_KEY:-} ]] || secret_exists OPENAI_API_KEY; then
      MODEL_SECRET=OPENAI_API_KEY
    else
      note "note: no OPENAI_API_KEY (variable or secret): the model server is called without a key"
    fi
    ;;
esac

# Trace export's headers hold a collector's credentials: a secret, mounted on
# every service, once trace export is on (an endpoint is set).
TRACE_SECRET=""
if [[ -n ${OTEL_EXPORTER_OTLP_ENDPOINT:-}${OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:-} ]] &&
  { [[ -n ${OTEL_EXPORTER_OTLP_HEADERS:-} ]] || secret_exists OTEL_EXPORTER_OTLP_HEADERS; }; then
  TRACE_SECRET=OTEL_EXPORTER_OTLP_HEADERS
fi

# The secrets the selected functions mount, each once.
NEEDED_SECRETS=()
for f in "${SELECTED[@]}"; do
  load_function "$f"
  for s in "${F_SECRETS[@]}"; do
    [[ " ${NEEDED_SECRETS[*]} " == *" $s "* ]] || NEEDED_SECRETS+=("$s")
  done
done

# Stop before changing anything when a required value is missing.
for s in GEMINI_API_KEY API_KEYS; do
  [[ " ${NEEDED_SECRETS[*]} " == *" $s "* && -z ${!s:-} ]] || continue
  if [[ $DRY_RUN == true ]]; then
    note "note: $s is unset; a real run stops unless the secret $s exists"
  elif ! secret_exists "$s"; then
    case "$s" in
      GEMINI_API_KEY) die "GEMINI_API_KEY is not set and the secret GEMINI_API_KEY does not exist: set it (a Google AI Studio key), or use --llm-provider vertex" ;;
      API_KEYS) die "API_KEYS is not set and the secret API_KEYS does not exist: set it to the comma-separated keys clients will send as X-API-Key" ;;
    esac
  fi
done

# The agent and the worker call the tool services: deployed now, or already.
for f in agent_function agent_worker; do
  selected "$f" || continue
  for tool in search_function calculator_function; do
    selected "$tool" && continue
    load_function "$tool"
    if [[ $DRY_RUN == false ]] && ! exists gcloud run services describe "$F_SERVICE" --region="$REGION" "${P[@]}"; then
      die "$f needs the $F_SERVICE service, which is not deployed in $REGION: deploy it too (--only $F_SERVICE,...) or deploy everything"
    fi
  done
done

# ------------------------------------------------------------------- steps

enable_apis() {
  step "1. Enable APIs"
  local apis=(run cloudbuild artifactregistry pubsub firestore eventarc cloudscheduler secretmanager iam)
  [[ $LLM_PROVIDER == vertex ]] && apis+=(aiplatform)
  # Enabling an enabled API changes nothing, so this runs every time.
  run gcloud services enable "${apis[@]/%/.googleapis.com}" "${P[@]}"
}

ensure_repository() {
  step "2. Artifact Registry repository $REPOSITORY"
  if exists gcloud artifacts repositories describe "$REPOSITORY" --location="$REGION" "${P[@]}"; then
    note "exists"
  else
    run gcloud artifacts repositories create "$REPOSITORY" --repository-format=docker \
      --location="$REGION" --description="serverless-agent function images" "${P[@]}"
  fi
}

ensure_topic() {
  if exists gcloud pubsub topics describe "$1" "${P[@]}"; then
    note "topic $1 exists"
  else
    run gcloud pubsub topics create "$1" "${P[@]}"
  fi
}

ensure_topics() {
  step "3. Pub/Sub topics $TOPIC and $DEAD_LETTER_TOPIC"
  ensure_topic "$TOPIC"
  ensure_topic "$DEAD_LETTER_TOPIC"
  # A topic with no subscription drops what is published to it: this one
  # keeps dead-lettered tasks (7 days) so they can be inspected or replayed.
  local sub="$DEAD_LETTER_TOPIC-sub"
  if exists gcloud pubsub subscriptions describe "$sub" "${P[@]}"; then
    note "subscription $sub exists"
  else
    run gcloud pubsub subscriptions create "$sub" --topic="$DEAD_LETTER_TOPIC" \
      --message-retention-duration=7d "${P[@]}"
  fi
}

ensure_firestore() {
  step "4. Firestore (default) database and TTL policies"
  local db_type
  if [[ $DRY_RUN == false ]] &&
    db_type=$(gcloud firestore databases describe --database='(default)' --format='value(type)' "${P[@]}" 2>/dev/null); then
    # The store speaks Firestore's native API; a Datastore-mode database
    # cannot serve it and cannot be converted once it holds data.
    [[ $db_type == FIRESTORE_NATIVE ]] ||
      die "the (default) Firestore database of $PROJECT is in $db_type, not native mode: STORE=firestore needs native mode"
    note "database exists (native mode)"
  else
    run gcloud firestore databases create --database='(default)' --location="$FIRESTORE_LOCATION" \
      --type=firestore-native "${P[@]}"
  fi
  # Rate-limit windows, response cache entries, and sessions and messages
  # with SESSION_TTL_DAYS, carry expire_at; the TTL policies delete them
  # once it has passed.
  local group names
  for group in rate_limits response_cache sessions messages; do
    names=""
    if [[ $DRY_RUN == false ]]; then
      names=$(gcloud firestore fields ttls list --collection-group="$group" --database='(default)' \
        --format='value(name)' "${P[@]}" 2>/dev/null || true)
    fi
    if [[ $'\n'$names$'\n' == *"/fields/expire_at"$'\n'* ]]; then
      note "TTL on $group.expire_at is enabled"
    else
      run gcloud firestore fields ttls update expire_at --collection-group="$group" \
        --database='(default)' --enable-ttl --async "${P[@]}"
    fi
  done
  # Nothing is ever looked up by a message's text, by the copy of the last
  # messages a session document keeps, by a rate limit's sliding log (up
  # to 80 KB of admission times) or by a cached answer, and Firestore indexes every field by
  # default: each index entry is written with the document, slowing every
  # commit and filling storage. Setting this again changes nothing.
  local field
  for field in sessions:tail messages:content rate_limits:log response_cache:value; do
    run gcloud firestore indexes fields update "${field#*:}" --collection-group="${field%%:*}" \
      --database='(default)' --disable-indexes --async --quiet "${P[@]}"
  done
  # GET /api/v1/sessions and GET /api/v1/tasks filter on the owner (and a
  # task's status) and order by time, newest first: Firestore serves an
  # equality on one field ordered by another only from a composite index
  # (the emulator needs none). Each index also serves the id order that
  # breaks ties, in the direction of its last field.
  local indexes=""
  if [[ $DRY_RUN == false ]]; then
    indexes=$(gcloud firestore indexes composite list --database='(default)' \
      --format='value(name.segment(-3),fields[].fieldPath.list(separator=","),fields[].order.list(separator=","))' \
      "${P[@]}" 2>/dev/null || true)
  fi
  ensure_composite_index "$indexes" sessions owner:ASCENDING updated_at:DESCENDING
  ensure_composite_index "$indexes" tasks owner:ASCENDING created_at:DESCENDING
  ensure_composite_index "$indexes" tasks owner:ASCENDING status:ASCENDING created_at:DESCENDING
  # GET /api/v1/usage: a principal's day records in a range of dates, by
  # date then model.
  ensure_composite_index "$indexes" usage_days owner:ASCENDING date:ASCENDING model:ASCENDING
}

# ensure_composite_index EXISTING GROUP FIELD:ORDER...: creates the composite
# index of GROUP on those fields unless EXISTING (the lines of `gcloud
# firestore indexes composite list` as ensure_firestore formats them: group,
# field paths, orders, tab-separated) has it, with or without the __name__
# field Firestore adds last. Built in the background (--async): listings
# answer an error until it is ready, a few minutes on a new database.
ensure_composite_index() {
  local existing=$1 group=$2 spec field order paths="" orders=""
  shift 2
  local configs=()
  for spec in "$@"; do
    field=${spec%%:*} order=${spec#*:}
    paths+="${paths:+,}$field"
    orders+="${orders:+,}$order"
    configs+=("--field-config=field-path=$field,order=${order,,}")
  done
  if grep -qE "^$group"$'\t'"$paths(,__name__)?"$'\t'"$orders(,[A-Z]+)?\$" <<<"$existing"; then
    note "index on $group ($paths) exists"
    return 0
  fi
  # Should the list above not show an index that exists (its format is
  # gcloud's to change), the create says ALREADY_EXISTS: that is success.
  local err
  err=$(mktemp)
  if run gcloud firestore indexes composite create --collection-group="$group" "${configs[@]}" \
    --database='(default)' --async "${P[@]}" 2>"$err"; then
    rm -f "$err"
  elif grep -q 'ALREADY_EXISTS' "$err"; then
    rm -f "$err"
    note "index on $group ($paths) exists"
  else
    cat "$err" >&2
    rm -f "$err"
    return 1
  fi
}

random_secret() {
  if command -v openssl >/dev/null; then
    openssl rand -hex 32
  else
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
  fi
}

ensure_secret() {
  local name=$1
  if secret_exists "$name"; then
    if [[ -n ${!name:-} && $ROTATE_SECRETS == true ]]; then
      run_with_secret "$name" gcloud secrets versions add "$name" --data-file=- "${P[@]}"
    elif [[ -n ${!name:-} ]]; then
      note "secret $name exists; kept (--rotate-secrets adds \$$name as a new version)"
    else
      note "secret $name exists"
    fi
    return 0
  fi
  if [[ -z ${!name:-} && $name == WEBHOOK_SECRET && $DRY_RUN == false ]]; then
    # Only the services need it, so a random one is as good as any; read it
    # with: gcloud secrets versions access latest --secret=WEBHOOK_SECRET
    printf -v "$name" '%s' "$(random_secret)"
    note "WEBHOOK_SECRET is unset: generated a random one"
  fi
  run_with_secret "$name" gcloud secrets create "$name" --replication-policy=automatic \
    --data-file=- "${P[@]}"
}

ensure_secrets() {
  step "5. Secrets ${NEEDED_SECRETS[*]}"
  local s
  for s in "${NEEDED_SECRETS[@]}"; do
    ensure_secret "$s"
  done
}

ensure_service_account() {
  local email
  email=$(sa_email "$1")
  if exists gcloud iam service-accounts describe "$email" "${P[@]}"; then
    note "service account $1 exists"
  else
    run gcloud iam service-accounts create "$1" --display-name="$2" "${P[@]}"
  fi
}

ensure_identities() {
  step "6. Service accounts and their roles"
  local f s
  # Every account is created, even with --only: the bindings on the tool
  # services and on the worker name the callers' accounts.
  for f in "${ALL_FUNCTIONS[@]}"; do
    load_function "$f"
    ensure_service_account "sa-$F_SERVICE" "serverless-agent $F_SERVICE"
  done
  ensure_service_account sa-eventarc "serverless-agent Eventarc trigger to agent-worker"

  for f in "${SELECTED[@]}"; do
    load_function "$f"
    # Every function keeps its rate limits (and more) in Firestore.
    bind gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$F_SA" \
      --role=roles/datastore.user --condition=None
    if [[ $F_MODEL == true && $LLM_PROVIDER == vertex ]]; then
      bind gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$F_SA" \
        --role=roles/aiplatform.user --condition=None
    fi
    # Each secret is readable only by the accounts of the services mounting it.
    for s in "${F_SECRETS[@]}"; do
      bind gcloud secrets add-iam-policy-binding "$s" --member="serviceAccount:$F_SA" \
        --role=roles/secretmanager.secretAccessor "${P[@]}"
    done
    # Only the agent (tasks) and the worker (a fanned-out run's children,
    # and the run again once they ended) publish, and only to this topic.
    if [[ $f == agent_function || $f == agent_worker ]]; then
      bind gcloud pubsub topics add-iam-policy-binding "$TOPIC" --member="serviceAccount:$F_SA" \
        --role=roles/pubsub.publisher "${P[@]}"
    fi
  done
  if selected agent_worker; then
    bind gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$EVENTARC_SA" \
      --role=roles/eventarc.eventReceiver --condition=None
  fi
}

build_images() {
  step "7. Build and push the images (tag $TAG)"
  if [[ $SKIP_BUILD == true ]]; then
    note "skipped (--skip-build): deploying images tagged $TAG"
    return 0
  fi
  local f image
  BUILD_CONFIG=$(mktemp -t deploy-cloudbuild.XXXXXX.yaml)
  {
    echo "# Generated by deploy.sh: one docker build per function, all in parallel"
    echo "# on one 8-vCPU machine, images named as in cloudbuild.yaml."
    echo "steps:"
    for f in "${SELECTED[@]}"; do
      image=$(image_for "$f")
      echo "  - id: build-$f"
      echo "    name: gcr.io/cloud-builders/docker"
      echo "    args: ['build', '--build-arg', 'FUNCTION=$f', '-t', '$image', '.']"
      echo "    waitFor: ['-']"
    done
    echo "images:"
    for f in "${SELECTED[@]}"; do
      echo "  - '$(image_for "$f")'"
    done
    echo "options:"
    echo "  machineType: E2_HIGHCPU_8"
    echo "  # The Dockerfile uses BuildKit (RUN --mount cache mounts)."
    echo "  env: ['DOCKER_BUILDKIT=1']"
    echo "# Five release builds with LTO take far longer than the default 10 minutes."
    echo "timeout: 5400s"
  } >"$BUILD_CONFIG"
  if [[ $DRY_RUN == true ]]; then
    note "build config ($BUILD_CONFIG, removed on exit):"
    sed 's/^/    #   /' "$BUILD_CONFIG" >&3
  fi
  run gcloud builds submit --config="$BUILD_CONFIG" "${P[@]}" .
}

# service_url SERVICE: its URL, read from Cloud Run.
service_url() {
  read_value "https://$1.dry-run.invalid" \
    gcloud run services describe "$1" --region="$REGION" --format='value(status.url)' "${P[@]}"
}

deploy_function() {
  load_function "$1"
  local env secrets=() s auth
  env="STORE=firestore,FIRESTORE_PROJECT=$PROJECT,GOOGLE_CLOUD_PROJECT=$PROJECT,LOG_FORMAT=json"
  # Model settings only where the model is called: the tool functions
  # have no model, and its key is not mounted there.
  if [[ $F_MODEL == true ]]; then
    env+=",LLM_PROVIDER=$LLM_PROVIDER"
    case "$LLM_PROVIDER" in
      gemini) env+="${GEMINI_MODEL:+,GEMINI_MODEL=$GEMINI_MODEL}" ;;
      vertex)
        env+=",VERTEX_PROJECT=${VERTEX_PROJECT:-$PROJECT},VERTEX_LOCATION=${VERTEX_LOCATION:-$REGION}"
        env+="${GEMINI_MODEL:+,GEMINI_MODEL=$GEMINI_MODEL}"
        ;;
      openai)
        env+="${OPENAI_BASE_URL:+,OPENAI_BASE_URL=$OPENAI_BASE_URL}"
        env+="${OPENAI_MODEL:+,OPENAI_MODEL=$OPENAI_MODEL}"
        ;;
    esac
  fi
  env+="${SESSION_TTL_DAYS:+,SESSION_TTL_DAYS=$SESSION_TTL_DAYS}"
  # Every function's spans, so that one run is one trace across services.
  local var
  for var in "${TRACE_SETTINGS[@]}"; do
    env+="${!var:+,$var=${!var}}"
  done
  # End users sign in to the public services only; the private ones are
  # called by the agent and by Eventarc, which Cloud Run IAM authenticates.
  if [[ $F_PUBLIC == true ]]; then
    env+="${AUTH_FIREBASE_PROJECT:+,AUTH_FIREBASE_PROJECT=$AUTH_FIREBASE_PROJECT}"
    env+="${AUTH_GOOGLE_AUDIENCE:+,AUTH_GOOGLE_AUDIENCE=$AUTH_GOOGLE_AUDIENCE}"
  fi
  if [[ $F_BINARY == agent_function || $F_BINARY == agent_worker ]]; then
    env+=",QUEUE=pubsub,PUBSUB_TOPIC=$TOPIC,PUBSUB_PROJECT=$PROJECT"
  fi
  if [[ $F_TOOLS == true ]]; then
    env+=",SEARCH_URL=$SEARCH_SERVICE_URL/api/v1/tools/search"
    env+=",CALCULATOR_URL=$CALCULATOR_SERVICE_URL/api/v1/tools/calculate"
  fi
  for s in "${F_SECRETS[@]}"; do
    secrets+=("$s=$s:latest")
  done
  # The values are set in full each time (not updated), so the service is
  # what this script says, whatever was changed by hand.
  if [[ ${#secrets[@]} -gt 0 ]]; then
    secrets=(--set-secrets="$(IFS=,; printf '%s' "${secrets[*]}")")
  else
    secrets=(--clear-secrets)
  fi
  if [[ $F_PUBLIC == true ]]; then auth=--allow-unauthenticated; else auth=--no-allow-unauthenticated; fi
  # Ingress stays "all" for the private services too: the agent calls the
  # tools, and Eventarc pushes to the worker, through Google's front end, and
  # Cloud Run IAM (roles/run.invoker) is what keeps everyone else out.
  run gcloud run deploy "$F_SERVICE" --image="$(image_for "$F_BINARY")" --region="$REGION" \
    --service-account="$F_SA" --memory="$F_MEMORY" --cpu=1 --concurrency="$F_CONCURRENCY" \
    --timeout="$F_TIMEOUT" --min-instances=0 --max-instances="$F_MAX_INSTANCES" \
    --set-env-vars="$env" "${secrets[@]}" "$auth" --ingress=all --cpu-boost --quiet "${P[@]}"
}

# Trace export's plain settings, passed to every service when set (the
# headers are a secret: TRACE_SECRET).
TRACE_SETTINGS=(OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT OTEL_EXPORTER_OTLP_PROTOCOL
  OTEL_TRACES_SAMPLER OTEL_TRACES_SAMPLER_ARG)

check_env_values() {
  # --set-env-vars separates variables with commas.
  local var
  for var in GEMINI_MODEL VERTEX_PROJECT VERTEX_LOCATION OPENAI_BASE_URL OPENAI_MODEL SESSION_TTL_DAYS \
    AUTH_FIREBASE_PROJECT AUTH_GOOGLE_AUDIENCE "${TRACE_SETTINGS[@]}"; do
    [[ ${!var:-} != *,* ]] || die "$var must not contain a comma"
  done
}

deploy_services() {
  step "8. Deploy the services"
  local f tool caller
  for f in search_function calculator_function; do
    selected "$f" && deploy_function "$f"
  done
  SEARCH_SERVICE_URL="" CALCULATOR_SERVICE_URL=""
  if selected agent_function || selected agent_worker; then
    SEARCH_SERVICE_URL=$(service_url search)
    CALCULATOR_SERVICE_URL=$(service_url calculator)
    [[ -n $SEARCH_SERVICE_URL && -n $CALCULATOR_SERVICE_URL ]] ||
      die "could not read the URLs of the search and calculator services"
  fi
  # The agent and the worker call the tools with Google ID tokens. A tool is
  # bound when it was just deployed, or when a caller is (then it exists).
  for tool in search calculator; do
    selected "${tool}_function" || selected agent_function || selected agent_worker || continue
    for caller in sa-agent sa-agent-worker; do
      bind gcloud run services add-iam-policy-binding "$tool" --region="$REGION" \
        --member="serviceAccount:$(sa_email "$caller")" --role=roles/run.invoker "${P[@]}"
    done
  done
  for f in chat_function agent_function agent_worker; do
    selected "$f" && deploy_function "$f"
  done
  if selected agent_worker; then
    # Only the Eventarc trigger's account may invoke the worker.
    bind gcloud run services add-iam-policy-binding agent-worker --region="$REGION" \
      --member="serviceAccount:$EVENTARC_SA" --role=roles/run.invoker "${P[@]}"
  fi
}

ensure_trigger() {
  step "9. Eventarc trigger $TRIGGER ($TOPIC -> agent-worker)"
  if ! selected agent_worker; then
    note "skipped: agent_worker is not being deployed"
    return 0
  fi
  if exists gcloud eventarc triggers describe "$TRIGGER" --location="$REGION" "${P[@]}"; then
    note "trigger exists"
  else
    # On a project new to Eventarc, its permissions can take minutes to
    # propagate; everything before this step is in place, so a rerun is the fix.
    run gcloud eventarc triggers create "$TRIGGER" --location="$REGION" \
      --destination-run-service=agent-worker --destination-run-region="$REGION" \
      --destination-run-path=/ \
      --event-filters=type=google.cloud.pubsub.topic.v1.messagePublished \
      --transport-topic="$TOPIC_PATH" --service-account="$EVENTARC_SA" "${P[@]}" ||
      die "creating the Eventarc trigger failed (see above); if Eventarc is new to this project, wait a few minutes and run ./deploy.sh again"
  fi
  local subscription number pubsub_agent
  subscription=$(read_value "projects/$PROJECT/subscriptions/TRIGGER_SUBSCRIPTION" \
    gcloud eventarc triggers describe "$TRIGGER" --location="$REGION" \
    --format='value(transport.pubsub.subscription)' "${P[@]}")
  [[ -n $subscription ]] || die "the trigger $TRIGGER has no Pub/Sub subscription yet; run again in a minute"
  # A task runs for up to the worker's timeout before it is acknowledged; a
  # message whose deliveries keep failing goes to the dead-letter topic after
  # 5 attempts (TASK_MAX_ATTEMPTS is 5 too) instead of looping forever.
  run gcloud pubsub subscriptions update "$subscription" --ack-deadline=600 \
    --dead-letter-topic="projects/$PROJECT/topics/$DEAD_LETTER_TOPIC" --max-delivery-attempts=5 \
    --min-retry-delay=10s --max-retry-delay=600s "${P[@]}"
  # Dead-lettering is done by the Pub/Sub service agent: it must publish to
  # the dead-letter topic and acknowledge on the subscription. It also signs
  # the pushes as sa-eventarc (projects older than April 2021 do not grant
  # that by default).
  number=$(read_value PROJECT_NUMBER gcloud projects describe "$PROJECT" --format='value(projectNumber)')
  [[ -n $number ]] || die "could not read the project number of $PROJECT"
  pubsub_agent="serviceAccount:service-$number@gcp-sa-pubsub.iam.gserviceaccount.com"
  bind gcloud pubsub topics add-iam-policy-binding "$DEAD_LETTER_TOPIC" --member="$pubsub_agent" \
    --role=roles/pubsub.publisher "${P[@]}"
  bind gcloud pubsub subscriptions add-iam-policy-binding "$subscription" --member="$pubsub_agent" \
    --role=roles/pubsub.subscriber "${P[@]}"
  bind gcloud iam service-accounts add-iam-policy-binding "$EVENTARC_SA" --member="$pubsub_agent" \
    --role=roles/iam.serviceAccountTokenCreator "${P[@]}"
}

# The callbacks finished tasks still owe that no Pub/Sub redelivery will
# bring back (a cancel request that died before sending its callback): the
# worker's POST /sweep sends them, called every 5 minutes by Cloud Scheduler
# with an ID token of sa-eventarc, the one account that may invoke it.
ensure_sweep() {
  step "10. Cloud Scheduler job $SWEEP_JOB (owed callbacks -> agent-worker /sweep)"
  if ! selected agent_worker; then
    note "skipped: agent_worker is not being deployed"
    return 0
  fi
  if exists gcloud scheduler jobs describe "$SWEEP_JOB" --location="$REGION" "${P[@]}"; then
    note "job exists"
    return 0
  fi
  local url
  url=$(service_url agent-worker)
  run gcloud scheduler jobs create http "$SWEEP_JOB" --location="$REGION" --schedule='*/5 * * * *' \
    --uri="$url/sweep" --http-method=POST --oidc-service-account-email="$EVENTARC_SA" \
    --oidc-token-audience="$url" --attempt-deadline=600s "${P[@]}"
}

print_urls() {
  step "11. Services"
  local f url access
  for f in "${ALL_FUNCTIONS[@]}"; do
    load_function "$f"
    if [[ $F_PUBLIC == true ]]; then
      access="public (X-API-Key)"
    else
      access="private (Cloud Run IAM)"
    fi
    if [[ $DRY_RUN == true ]]; then
      url="https://$F_SERVICE.dry-run.invalid"
    elif ! url=$(gcloud run services describe "$F_SERVICE" --region="$REGION" \
      --format='value(status.url)' "${P[@]}" 2>/dev/null) || [[ -z $url ]]; then
      url="(not deployed)"
    fi
    printf '    %-13s %-45s %s\n' "$F_SERVICE" "$url" "$access" >&3
  done
}

check_env_values
enable_apis
ensure_repository
ensure_topics
ensure_firestore
ensure_secrets
ensure_identities
build_images
deploy_services
ensure_trigger
ensure_sweep
print_urls
if [[ $DRY_RUN == true ]]; then
  printf '\nDry run: nothing was changed.\n' >&3
else
  printf '\nDone.\n' >&3
fi
