//! `agent-core`: everything the serverless-agent functions share.
//!
//! Each function crate (chat, agent, worker, tools) is a thin `api(app)` of
//! routes over this library, made a service of its own by
//! [`App::standalone`] or merged with the others by `local`, so a fix here
//! reaches every function and no function holds logic another would need.
//! The map:
//!
//! - [`a2a`]: the Agent2Agent protocol's wire, in its revisions 1.0 and
//!   0.3 (the agent function serves it), and the agent's client of other
//!   agents (`A2A_AGENTS`).
//! - [`agent`]: the tool-calling loop and its step trace.
//! - `app`: what every function builds at start-up (settings, logs,
//!   metrics, model, stores), so each `main` is a few lines.
//! - [`auth`]: who is calling: every request's principal (an API key's
//!   name, a verified Firebase or Google ID token's user, or `anonymous`),
//!   the key each record belongs to.
//! - [`chat`]: a chat turn (read the session's history, ask the model,
//!   store the turn) and a chat batch: the chat function runs them in the
//!   request, the worker runs a batch queued with `"async": true`.
//! - [`config`]: typed settings from the environment, validated once; a bad
//!   value stops the process with exit code 2 and one clear line.
//! - [`runtime`]: `serve(router)` on `$PORT` with graceful shutdown, or on AWS
//!   Lambda through `lambda_http` when `AWS_LAMBDA_RUNTIME_API` is set.
//! - `logging`: JSON logs for Cloud Logging (severity, trace correlation) or
//!   pretty logs for a terminal.
//! - [`telemetry`]: traces as OpenTelemetry spans, exported over OTLP when
//!   an endpoint is set, continued across functions and the queue.
//! - [`gcp`]: the GCP metadata server: access and ID tokens, cached.
//! - [`http`]: the layer every function shares: error envelope, JSON bodies,
//!   authentication, rate limits, CORS, body limits, request ids, `/health`,
//!   `/metrics`, and `/openapi.json`, generated from the routes' own types.
//! - [`jsonrpc`]: JSON-RPC 2.0 requests, answers and errors, as MCP's and
//!   A2A's endpoints read and write them.
//! - [`llm`]: the `Model` trait and its providers (Gemini, Vertex AI,
//!   OpenAI-compatible, offline), with retries and streaming; the price
//!   table and what each answer spent.
//! - [`mcp`]: the Model Context Protocol both ways: `POST /mcp` serves a
//!   function's tools statelessly; the agent's client offers the model the
//!   tools of the servers in `MCP_SERVERS`.
//! - [`multi`]: multi-agent runs: a planner's subtasks run by executors
//!   in waves, then one synthesis.
//! - [`research`]: the research flow: subtopics, researchers, analyst,
//!   writer and critic, a report that cites what the searches returned.
//! - [`cache`]: the response cache: identical model inputs answered once,
//!   from memory or the store, with single flight on concurrent misses.
//! - [`store`]: the store traits and their backends, SQLite (embedded) and
//!   Firestore, each one file per store trait; what was spent, summed per
//!   session and per principal, day and model in the step that stores it.
//! - [`task`]: a task as clients see it, the stream of its progress, and
//!   the one way a task record is run (synchronously or by the worker).
//! - [`queue`]: where asynchronous tasks wait: Pub/Sub, or the local queue.
//! - `retry`: what every retry loop shares: backoff with jitter,
//!   `Retry-After`, error chains.
//! - [`delivery`]: what a Pub/Sub-triggered worker receives (push envelopes
//!   and Eventarc CloudEvents), decoded into one delivery.
//! - [`worker`]: runs a delivered task once in effect (claims, leases,
//!   retries) and reports it.
//! - [`webhook`]: signed callbacks to a task's `callback_url`.
//! - [`callback`]: a finished task's callback, leased and recorded in the
//!   store so that it survives a crash, until delivered or given up.
//! - [`outbound_url`]: the guard every request to a client-given URL passes
//!   (no SSRF): public addresses only, pinned, no redirects.
//! - [`owned`]: records belong to their principal: the store keys of a
//!   principal's sessions, and who may read a task.
//! - [`session`]: session ids: generated, or checked when a client gives
//!   one.
//! - [`tools`]: the `Tool` trait and the tools: calculator, search,
//!   memory, remote tool functions, and a tool served as an HTTP route.
//! - `testing` (tests and the `testing` feature only): loopback servers
//!   and settings for the functions' tests.

#![warn(unreachable_pub)]

pub mod a2a;
pub mod agent;
pub(crate) mod app;
pub mod auth;
pub mod cache;
pub mod callback;
pub mod chat;
pub mod config;
pub mod delivery;
pub mod gcp;
pub mod http;
pub mod jsonrpc;
pub mod llm;
pub(crate) mod logging;
pub mod mcp;
pub mod multi;
pub mod outbound_url;
pub mod owned;
pub mod queue;
pub mod research;
pub(crate) mod retry;
pub mod runtime;
pub mod session;
pub mod store;
pub mod task;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tools;
pub mod webhook;
pub mod worker;

pub use app::App;
pub use config::Settings;
