//! Serve an axum [`Router`](::axum::Router) from a [`Handler`](crate::Handler).
//!
//! ```
//! use hotswap_handler::{Handler, Request, Response};
//!
//! pub struct App {
//!     router: axum::Router,
//! }
//!
//! impl Handler for App {
//!     type State = ();
//!     fn new((): ()) -> Self {
//!         App { router: axum::Router::new().route("/", axum::routing::get(|| async { "hi" })) }
//!     }
//!     async fn handle(&self, request: Request) -> Response {
//!         hotswap_handler::axum::serve(&self.router, request).await
//!     }
//! }
//! ```

use std::convert::Infallible;

use tower_service::Service;

use crate::{Body, Request, Response};

/// Answers `request` with `router`.
pub async fn serve(router: &::axum::Router, request: Request) -> Response {
    let mut router = router.clone();
    let request = request.map(::axum::body::Body::from);
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
