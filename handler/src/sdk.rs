//! The SDK an app uses: the [`Handler`] trait and the types it speaks.

mod body;
mod connection_io;
pub(crate) mod entry;
mod http_service;
mod instance;
mod live_reload;
mod logging;
mod panics;
mod state;

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use body::{Body, BoxError, is_too_large};

/// Live reload never runs in this process (the standalone mode).
#[cfg(feature = "standalone")]
pub(crate) fn forbid_live_reload() {
    live_reload::forbid_in_this_process();
}

/// A request as the handler sees it. Its body streams as the client sends it (collect it with
/// `http_body_util::BodyExt::collect`, or hand the request to axum, whose extractors and
/// `DefaultBodyLimit` work as usual). Its extensions hold the connection's [`ConnectionInfo`].
pub type Request = http::Request<Body>;

/// The addresses of the connection a request came on, in the request's extensions:
/// `request.extensions().get::<ConnectionInfo>()`. With the `axum` feature, axum's
/// `ConnectInfo<SocketAddr>` extractor works too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// The address the client connected to (the daemon's listen address).
    pub local: std::net::SocketAddr,
}

/// A response: any body that converts into [`Body`] (strings, bytes, streams).
pub type Response = http::Response<Body>;

/// An app served by hotswap.
///
/// Each generation (each build the daemon loads) creates one value of the type with [`new`] (or
/// the async [`create`]), passing the state the previous generation exported, and calls
/// [`handle`] for every request,
/// concurrently, on the generation's own tokio runtime. Code may use tokio freely (spawn tasks,
/// timers, sockets): the runtime and everything on it stop when the generation is retired.
///
/// Keep long-lived data in `State`, not in `static`s: a `static` holding heap memory is never
/// freed when the library is unloaded, and it does not carry over to the next generation.
///
/// For an axum app, [`export_router!`](crate::export_router) writes this trait's impl for you.
///
/// [`new`]: Handler::new
/// [`create`]: Handler::create
/// [`handle`]: Handler::handle
pub trait Handler: Send + Sync + Sized + 'static {
    /// Data that survives swaps (and crashes, and restarts of `hotswap serve`): exported by the
    /// old generation and imported by the new one, field by field (MessagePack with field
    /// names). Add a field with `#[serde(default)]`; rename one with `#[serde(alias = "old")]`;
    /// anything else, bump [`Handler::STATE_VERSION`]. A state that does not fit is refused with
    /// the place and the fix, never dropped. Use `()` for none. Binary values (`bytes::Bytes`,
    /// `Vec<u8>`, `Box<[u8]>`) move as one block each, so 100 MB of them move in well under a
    /// second; a million small values cost more than a few large ones.
    type State: Serialize + DeserializeOwned + Default + Send + 'static;

    /// Bump this when `State` changes in a way serde cannot read from the old JSON, and
    /// implement [`Handler::migrate_state`].
    const STATE_VERSION: u32 = 1;

    /// Creates the app for a new generation. Runs inside the generation's runtime, so it may
    /// spawn tasks. Implement this or [`Handler::create`].
    fn new(state: Self::State) -> Self {
        let _ = state;
        panic!(
            "{} implements neither `Handler::new` nor `Handler::create`",
            std::any::type_name::<Self>()
        )
    }

    /// Creates the app for a new generation, asynchronously: connect a database pool, read
    /// configuration, warm a cache. It runs on the generation's runtime before the generation
    /// takes any request, while the old generation keeps answering (requests that can write wait
    /// until the new one serves, so that nothing they write is lost). An error keeps the old
    /// generation serving and is reported with the swap. The default calls [`Handler::new`].
    fn create(state: Self::State) -> impl Future<Output = Result<Self, BoxError>> + Send {
        async move { Ok(Self::new(state)) }
    }

    /// The state to hand to the next generation, taken when it is about to replace this one.
    /// `None` (the default) lets the next generation start from `State::default()`.
    fn export_state(&self) -> Option<Self::State> {
        None
    }

    /// Turns state exported under another [`Handler::STATE_VERSION`] into this version's
    /// `State`, from its JSON form (map keys as strings, bytes as arrays of numbers). The default
    /// reads the JSON as the current type.
    fn migrate_state(from_version: u32, state: serde_json::Value) -> Result<Self::State, String> {
        serde_json::from_value(state).map_err(|error| {
            format!(
                "state of version {from_version} does not read as version {}: {error}",
                Self::STATE_VERSION
            )
        })
    }

    /// Answers one request. A panic here is caught: the client gets a 500 and the daemon reports
    /// the panic.
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}
