//! The wire contract between the hotswap daemon and its clients (the CLI, `hotswap-lsp`, the VS
//! Code extension, tests, or anyone with a socket).
//!
//! - [`framing`]: one JSON message per line, at most 1 MiB; pure functions over bytes.
//! - [`jsonrpc`]: JSON-RPC 2.0 envelopes, error codes, decoding a line into a typed message.
//! - [`messages`]: the requests (`initialize`, `didSave`, `reload`, ...) with params and results.
//! - [`events`]: the notifications the daemon sends to subscribers.
//! - [`endpoint`]: which socket belongs to which workspace.
//! - [`transport`] and [`client`]: opening that socket and talking over it.
//! - [`control`]: the channel between the daemon and each generation's host process (not for
//!   editor clients: daemon and host are the same binary).
//!
//! `protocol/README.md` documents every message for authors of clients in other languages, and
//! `protocol/vectors/` pins the encoding with examples that both the Rust and the TypeScript
//! implementations check.

pub mod client;
pub mod control;
pub mod endpoint;
pub mod events;
pub mod framing;
pub mod jsonrpc;
pub mod messages;
pub mod transport;

pub use client::{Client, ClientError};
pub use endpoint::Endpoint;
pub use events::Event;
pub use messages::{ClientRequest, Method, PROTOCOL_VERSION};
