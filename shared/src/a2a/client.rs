//! The agent's client of the A2A agents in `A2A_AGENTS` (each offered to
//! the model as the tool `ask_<name>`): written with the server.
