//! Support for hotswap's end-to-end tests: building the example and fixture libraries once per
//! run, a small HTTP client, and running the real binaries.

pub mod artifacts;
pub mod binaries;
pub mod browser;
pub mod http;
pub mod in_process;
pub mod load;
