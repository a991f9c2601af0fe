//! Write a handler library for hotswap.
//!
//! An app implements [`Handler`] in a `cdylib` crate and exports it with [`export_handler!`]; the
//! hotswap daemon builds that crate, loads it, and hands it HTTP connections. Everything else
//! (the generation's tokio runtime, serving HTTP with hyper, catching panics, moving state between
//! generations, forwarding `tracing` records to the daemon) is done here.
//!
//! ```
//! use hotswap_handler::{Body, Handler, Request, Response};
//!
//! pub struct Hello;
//!
//! impl Handler for Hello {
//!     type State = ();
//!     fn new((): ()) -> Self {
//!         Hello
//!     }
//!     async fn handle(&self, _request: Request) -> Response {
//!         Response::new(Body::from("hello from hotswap\n"))
//!     }
//! }
//!
//! hotswap_handler::export_handler!(Hello);
//! ```
//!
//! The [`abi`] module is the C contract with the daemon; it has no dependencies and is all the
//! daemon uses of this crate (with `default-features = false`).

pub mod abi;

#[cfg(feature = "sdk")]
mod sdk;

#[cfg(feature = "sdk")]
pub use sdk::{Body, BoxError, ConnectionInfo, Handler, Request, Response, is_too_large};

#[cfg(feature = "axum")]
pub mod axum;

#[cfg(feature = "state-format")]
pub mod state_format;

#[cfg(feature = "standalone")]
pub mod standalone;

#[cfg(feature = "sdk")]
pub use {bytes, http, serde_json, tokio, tracing};

/// Items the [`export_handler!`] macro expands to; not part of the API.
#[cfg(feature = "sdk")]
#[doc(hidden)]
pub mod __private {
    pub use crate::sdk::entry::header;
}

/// Exports `$app` (a type implementing [`Handler`]) as this library's handler. Use it once, in
/// the crate's `lib.rs`.
#[cfg(feature = "sdk")]
#[macro_export]
macro_rules! export_handler {
    ($app:ty) => {
        // Built by `hotswap serve` on its shared library of the app's dependencies, the library
        // links it (see `shared_deps` in hotswap.toml); never in any other build.
        #[allow(unexpected_cfgs)]
        const _: () = {
            #[cfg(hotswap_shared_deps)]
            extern crate hotswap_shared_deps as _;
        };

        /// The hotswap entry point: returns this library's ABI header.
        #[unsafe(no_mangle)]
        pub extern "C" fn hotswap_handler_entry() -> *const $crate::abi::HandlerHeader {
            static HEADER: $crate::abi::HandlerHeader = $crate::__private::header::<$app>();
            &HEADER
        }
    };
}
