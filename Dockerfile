# syntax=docker/dockerfile:1
#
# One image per function. Build with BuildKit (the default since Docker 23;
# DOCKER_BUILDKIT=1 on older clients):
#
#   docker build --build-arg FUNCTION=chat_function -t chat_function .
#
# FUNCTION is one of chat_function, agent_function, agent_worker,
# search_function, calculator_function. The build stage runs exactly
#
#   cargo build --release --locked -p "$FUNCTION"
#
# twice: first on stub sources, so the dependencies are compiled in a layer of
# their own that stays cached until Cargo.toml or Cargo.lock change, then on
# the real sources. The image runs the binary as a non-root user on
# distroless (glibc, CA certificates, nothing else) and listens on $PORT.

# Pinned to the MSRV on bookworm: the runtime below is Debian 12, so the
# binary must be linked against the same glibc (2.36) or an older one.
# The slim image already has gcc and libc6-dev (rusqlite's bundled SQLite,
# aws-lc); TLS is rustls, so no OpenSSL.
FROM rust:1.91-slim-bookworm AS builder

ARG FUNCTION
RUN case "${FUNCTION:-}" in \
      chat_function|agent_function|agent_worker|search_function|calculator_function) ;; \
      "") echo "error: FUNCTION is not set. Build one function's image with" \
               "--build-arg FUNCTION=NAME, NAME one of: chat_function agent_function" \
               "agent_worker search_function calculator_function" >&2; exit 1 ;; \
      *) echo "error: FUNCTION=\"$FUNCTION\" is not a function. Use one of: chat_function" \
              "agent_function agent_worker search_function calculator_function" >&2; exit 1 ;; \
    esac

WORKDIR /src

# 1. Dependencies only: the manifests of every workspace member (cargo loads
#    the whole workspace) and stub sources mirroring each crate's targets.
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/
COPY chat_function/Cargo.toml chat_function/
COPY agent_function/Cargo.toml agent_function/
COPY agent_worker/Cargo.toml agent_worker/
COPY tool_functions/search/Cargo.toml tool_functions/search/
COPY tool_functions/calculator/Cargo.toml tool_functions/calculator/
COPY local/Cargo.toml local/
COPY bench/Cargo.toml bench/
RUN set -eu; \
    for crate in shared chat_function agent_function agent_worker \
                 tool_functions/search tool_functions/calculator local; do \
      mkdir -p "$crate/src"; : > "$crate/src/lib.rs"; \
    done; \
    for crate in chat_function agent_function agent_worker \
                 tool_functions/search tool_functions/calculator local bench; do \
      mkdir -p "$crate/src"; echo 'fn main() {}' > "$crate/src/main.rs"; \
    done

# Download once, under a lock: the five images may build in parallel on one
# daemon (cloudbuild.yaml) and share this cache.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo fetch --locked

# target/ stays in this layer (not in a cache mount), so the next step of
# the build starts from the compiled dependencies. The stubs are removed so
# that only the real sources remain once they are copied.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo build --release --locked -p "$FUNCTION" \
    && rm -rf shared/src chat_function/src agent_function/src agent_worker/src \
              tool_functions/search/src tool_functions/calculator/src local/src bench/src

# 2. The real sources, and the documents the search tool compiles into the
#    binary (include_str! in shared/src/tools/search.rs).
COPY README.md BENCHMARKS.md ./
COPY docs docs
COPY shared/src shared/src
COPY chat_function/src chat_function/src
COPY agent_function/src agent_function/src
COPY agent_worker/src agent_worker/src
COPY tool_functions/search/src tool_functions/search/src
COPY tool_functions/calculator/src tool_functions/calculator/src
COPY local/src local/src
COPY bench/src bench/src

# COPY keeps the files' own mtimes, which may be older than the stub build:
# touch them so cargo rebuilds the workspace crates (and only those).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    find shared chat_function agent_function agent_worker tool_functions local bench \
         -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p "$FUNCTION" \
    && install -D -m 0755 "target/release/$FUNCTION" /out/function

# Runtime: glibc and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG FUNCTION
LABEL org.opencontainers.image.source="https://github.com/serverless-agent/serverless-agent" \
      org.opencontainers.image.title="${FUNCTION}" \
      org.opencontainers.image.description="serverless-agent: the ${FUNCTION} function" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/function /function

# SQLITE_PATH's default (.agent-data/agent.db) is relative: it lands in the
# non-root user's home, which it can write.
WORKDIR /home/nonroot
USER nonroot
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/function"]
