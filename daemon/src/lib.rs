//! The hotswap daemon as a library: the swap engine, the builder, the socket server and the
//! daemon that ties them together. The `hotswap` binary (`src/main.rs`) is its CLI.

pub mod engine;
