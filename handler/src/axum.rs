//! Serve an axum [`Router`](::axum::Router) with hotswap.
//!
//! The short way, for an app that already builds its `Router` in a function: make that function
//! `pub async` in the crate's library and export it. The state you hand in is what survives
//! swaps, crashes and restarts; keep it in `Arc`s, as axum state usually is, so that the router's
//! copy and hotswap's are the same data.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::sync::{Arc, RwLock};
//!
//! use axum::Router;
//! use axum::extract::State;
//! use axum::routing::get;
//!
//! /// Survives every swap: serde writes it out, the next generation reads it back.
//! #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
//! pub struct Visits(Arc<RwLock<BTreeMap<String, u64>>>);
//!
//! pub async fn app(visits: Visits) -> Router {
//!     Router::new().route("/", get(|State(visits): State<Visits>| async move {
//!         let mut counts = visits.0.write().unwrap();
//!         let count = counts.entry("/".to_owned()).or_default();
//!         *count += 1;
//!         format!("visit {count}\n")
//!     }))
//!     .with_state(visits)
//! }
//!
//! hotswap_handler::export_router!(app, Visits);
//! ```
//!
//! Without state: `pub async fn app() -> Router` and `export_router!(app)`. The function may
//! also return `Result<Router, E>` (any error type that converts into a boxed error): an error
//! keeps the old generation serving and is reported with the swap. It runs before the new
//! generation takes any request, while the old one keeps answering. Under `cargo run`, your own
//! `main` calls the same function and serves it with `axum::serve`, without hotswap.
//!
//! For full control, implement [`Handler`](crate::Handler) and answer with [`serve`].

use std::convert::Infallible;

use tower_service::Service;

use crate::{Body, BoxError, Request, Response};

#[doc(hidden)]
pub use ::axum::Router as __Router;

/// What an app function may return: a `Router`, or a `Result` with one.
pub trait IntoRouter {
    /// The router, or why there is none.
    fn into_router(self) -> Result<::axum::Router, BoxError>;
}

impl IntoRouter for ::axum::Router {
    fn into_router(self) -> Result<::axum::Router, BoxError> {
        Ok(self)
    }
}

impl<E: Into<BoxError>> IntoRouter for Result<::axum::Router, E> {
    fn into_router(self) -> Result<::axum::Router, BoxError> {
        self.map_err(Into::into)
    }
}

/// Answers `request` with `router`.
pub async fn serve(router: &::axum::Router, request: Request) -> Response {
    let mut router = router.clone();
    let mut request = request.map(::axum::body::Body::new);
    // As `into_make_service_with_connect_info::<SocketAddr>()` would: the client's address.
    if let Some(info) = request.extensions().get::<crate::ConnectionInfo>().copied() {
        request.extensions_mut().insert(::axum::extract::ConnectInfo(info.peer));
    }
    let ready: Result<(), Infallible> = std::future::poll_fn(|cx| {
        <::axum::Router as Service<http::Request<::axum::body::Body>>>::poll_ready(&mut router, cx)
    })
    .await;
    let Ok(()) = ready;
    match router.call(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}

/// Exports an async function that builds an axum `Router` as the library's hotswap handler (see
/// the [module docs](crate::axum)).
///
/// - `export_router!(app)`: `async fn app() -> Router`
/// - `export_router!(app, State)`: `async fn app(state: State) -> Router`, where `State` is
///   `Clone + Default + Serialize + Deserialize` and survives swaps
/// - `export_router!(app, State, version = 2, migrate = migrate)`: with a
///   [`STATE_VERSION`](crate::Handler::STATE_VERSION) and a function `fn migrate(from_version:
///   u32, old: serde_json::Value) -> Result<State, String>` (see
///   [`Handler::migrate_state`](crate::Handler::migrate_state))
///
/// The function may return `Router` or `Result<Router, E>`.
#[macro_export]
macro_rules! export_router {
    ($app:path) => {
        /// The hotswap handler `export_router!` made: the app's `Router`, built for each
        /// generation (`hotswap_handler::standalone` can serve it too).
        pub struct HotswapApp {
            router: $crate::axum::__Router,
        }

        impl $crate::Handler for HotswapApp {
            type State = ();

            fn create(
                (): (),
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<Self, $crate::BoxError>,
            > + ::core::marker::Send {
                async {
                    let router = $crate::axum::IntoRouter::into_router($app().await)?;
                    ::core::result::Result::Ok(HotswapApp { router })
                }
            }

            fn handle(
                &self,
                request: $crate::Request,
            ) -> impl ::core::future::Future<Output = $crate::Response> + ::core::marker::Send
            {
                $crate::axum::serve(&self.router, request)
            }
        }

        $crate::export_handler!(HotswapApp);
    };
    ($app:path, $state:ty) => {
        $crate::export_router!(@with_state $app, $state, 1, <$state as $crate::axum::__DefaultMigration>::__migrate);
    };
    ($app:path, $state:ty, version = $version:expr, migrate = $migrate:path) => {
        $crate::export_router!(@with_state $app, $state, $version, $migrate);
    };
    (@with_state $app:path, $state:ty, $version:expr, $migrate:expr) => {
        /// The hotswap handler `export_router!` made: the app's `Router`, built for each
        /// generation with the state that survives swaps (`hotswap_handler::standalone` can
        /// serve it too).
        pub struct HotswapApp {
            router: $crate::axum::__Router,
            state: $state,
        }

        impl $crate::Handler for HotswapApp {
            type State = $state;
            const STATE_VERSION: u32 = $version;

            fn create(
                state: $state,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<Self, $crate::BoxError>,
            > + ::core::marker::Send {
                async move {
                    let kept = ::core::clone::Clone::clone(&state);
                    let router = $crate::axum::IntoRouter::into_router($app(state).await)?;
                    ::core::result::Result::Ok(HotswapApp { router, state: kept })
                }
            }

            fn export_state(&self) -> ::core::option::Option<$state> {
                ::core::option::Option::Some(::core::clone::Clone::clone(&self.state))
            }

            fn migrate_state(
                from_version: u32,
                state: $crate::serde_json::Value,
            ) -> ::core::result::Result<$state, ::std::string::String> {
                ($migrate)(from_version, state)
            }

            fn handle(
                &self,
                request: $crate::Request,
            ) -> impl ::core::future::Future<Output = $crate::Response> + ::core::marker::Send
            {
                $crate::axum::serve(&self.router, request)
            }
        }

        $crate::export_handler!(HotswapApp);
    };
}

/// The migration `export_router!` uses without one: the old state's JSON read as the new type.
#[doc(hidden)]
pub trait __DefaultMigration: Sized {
    fn __migrate(from_version: u32, state: serde_json::Value) -> Result<Self, String>;
}

impl<T: serde::de::DeserializeOwned> __DefaultMigration for T {
    fn __migrate(from_version: u32, state: serde_json::Value) -> Result<Self, String> {
        serde_json::from_value(state)
            .map_err(|error| format!("the state of version {from_version} does not read: {error}"))
    }
}
