//! MCP (the Model Context Protocol), both ways, on the official SDK
//! (`rmcp`).
//!
//! - [`server`]: `POST /mcp` serves a function's tools to any MCP client
//!   (Claude Desktop, ADK's `McpToolset`, Genkit), statelessly, so that any
//!   instance behind Cloud Run's load balancer or on Lambda can answer any
//!   request.
//! - [`client`]: the agent's client of the servers in `MCP_SERVERS`, whose
//!   tools it offers the model as `name__tool`.

pub mod client;
pub mod server;

pub use server::api;
