//! The hotswap daemon as a library: the swap engine, the builder, the socket server and the
//! daemon that ties them together. The `hotswap` binary (`src/main.rs`) is its CLI.
//!
//! - [`engine`]: loads handler libraries as generations and serves HTTP through them; usable on
//!   its own to embed hot-swapping in another server.
//! - [`config`]: reads `hotswap.toml`.
//! - [`browser`]: which saves are assets (no build, pages told at once), and live reload's
//!   environment for generations.
//! - [`packages`]: which saves concern the handler (`cargo metadata`).
//! - [`builder`]: running `cargo build` and reading its messages; [`diagnostics`] turns compiler
//!   messages into the protocol's diagnostics.
//! - [`daemon`]: the task that owns builds, swaps and waiting requests.
//! - [`server`]: the local socket; [`subscribers`]: event delivery.
//! - [`serve`]: `hotswap serve`, starting and stopping all of it.
//! - [`scaffold`]: `hotswap new`.

pub mod browser;
pub mod builder;
pub mod config;
pub mod daemon;
pub mod diagnostics;
pub mod engine;
pub mod init;
pub mod packages;
pub mod scaffold;
pub mod serve;
pub mod server;
pub mod state_source;
pub mod subscribers;
