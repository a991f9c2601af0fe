//! Live reload in the browser: pages served by a generation follow the saves.
//!
//! On when the daemon says so (it starts hosts with `HOTSWAP_LIVE_RELOAD_SOCKET`, the path of
//! its local socket, unless `[browser] live_reload = false`), never in the standalone mode. Then
//! the SDK, before the app sees a request:
//!
//! - answers `GET /__hotswap/live.js` (the page script, `live_reload/live.js`) and
//!   `GET /__hotswap/events` (Server-Sent Events, fed by a connection of its own to the daemon's
//!   socket: `initialize`, `subscribe`, `status`, then the daemon's events, see
//!   [`daemon_events`]); anything else under `/__hotswap/` is a 404;
//! - takes `Accept-Encoding` off navigations (requests for a document), so that a compression
//!   layer in the app (tower-http's `CompressionLayer`) leaves the page as text;
//! - puts `<script src="/__hotswap/live.js">` into the HTML the app answers a navigation with
//!   ([`injection`]): before `</body>`, or at the end, with its `Content-Length` fixed. HEAD,
//!   other methods, other types and compressed bodies are passed on byte for byte.

mod daemon_events;
pub(crate) mod injection;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderValue, Method, StatusCode, header};

use super::instance::Phase;
use super::{Body, Response};

/// Where the SDK's own routes live, on the app's address.
pub(crate) const PREFIX: &str = "/__hotswap/";

/// The environment variable the daemon sets (see `daemon/src/browser.rs`).
const SOCKET_VARIABLE: &str = "HOTSWAP_LIVE_RELOAD_SOCKET";

/// The page script; `__HOTSWAP_GENERATION__` becomes the generation that serves it.
const LIVE_SCRIPT: &str = include_str!("live_reload/live.js");

/// Set by the standalone mode: live reload never runs there, whatever the environment says.
static FORBIDDEN: AtomicBool = AtomicBool::new(false);

/// Turns live reload off for every generation this process starts (the standalone mode).
#[cfg(feature = "standalone")]
pub(crate) fn forbid_in_this_process() {
    FORBIDDEN.store(true, Ordering::SeqCst);
}

/// Live reload for one generation.
#[derive(Debug, Clone)]
pub(crate) struct LiveReload {
    /// The daemon's local socket.
    socket: PathBuf,
    generation: u64,
}

/// What to do with a request before the app sees it.
pub(crate) enum BeforeApp {
    /// One of the SDK's routes: this is the answer.
    Answer(Response),
    /// The app answers; with `inject`, an HTML answer gets the script.
    Serve { inject: bool },
}

impl LiveReload {
    /// On when the daemon set the variable, and this is not the standalone mode.
    pub(crate) fn from_environment(generation: u64) -> Option<Self> {
        Self::with_socket(std::env::var_os(SOCKET_VARIABLE), generation)
    }

    fn with_socket(socket: Option<std::ffi::OsString>, generation: u64) -> Option<Self> {
        if FORBIDDEN.load(Ordering::SeqCst) {
            return None;
        }
        let socket = socket.filter(|value| !value.is_empty())?;
        Some(Self { socket: PathBuf::from(socket), generation })
    }

    /// Answers the SDK's routes, and prepares a navigation for injection.
    pub(crate) async fn before_app(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &mut http::HeaderMap,
        phase: tokio::sync::watch::Receiver<Phase>,
    ) -> BeforeApp {
        if let Some(route) = uri.path().strip_prefix(PREFIX) {
            return BeforeApp::Answer(self.answer(route, method, uri, phase).await);
        }
        let inject = injection::is_navigation(method, headers);
        if inject {
            // The page must come back uncompressed to take the script.
            headers.remove(header::ACCEPT_ENCODING);
        }
        BeforeApp::Serve { inject }
    }

    /// The app's answer to a navigation, with the script when it is HTML.
    pub(crate) async fn inject(&self, response: Response) -> Response {
        injection::inject(response, self.generation).await
    }

    async fn answer(
        &self,
        route: &str,
        method: &Method,
        uri: &http::Uri,
        phase: tokio::sync::watch::Receiver<Phase>,
    ) -> Response {
        if method != Method::GET {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "hotswap's live reload answers GET only\n",
            );
        }
        match route {
            "live.js" => {
                let script =
                    LIVE_SCRIPT.replace("__HOTSWAP_GENERATION__", &self.generation.to_string());
                let mut response = http::Response::new(Body::from(script));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/javascript; charset=utf-8"),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            "events" => {
                let page_generation = uri.query().and_then(|query| {
                    query
                        .split('&')
                        .find_map(|pair| pair.strip_prefix("generation="))
                        .and_then(|value| value.parse().ok())
                });
                let context =
                    daemon_events::Context { generation: self.generation, page_generation };
                match daemon_events::connect(&self.socket, context, phase).await {
                    Ok(body) => {
                        let mut response = http::Response::new(body);
                        let headers = response.headers_mut();
                        headers.insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/event-stream"),
                        );
                        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                        response
                    }
                    Err(error) => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "hotswap's live reload cannot reach the daemon at {}: {error}\n",
                            self.socket.display()
                        ),
                    ),
                }
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /__hotswap/ is hotswap's (live.js, events) while live reload is on\n",
            ),
        }
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = http::Response::new(Body::from(message.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the standalone feature nothing in this process forbids it.
    #[cfg(not(feature = "standalone"))]
    #[test]
    fn the_daemons_variable_turns_it_on() {
        let live = LiveReload::with_socket(Some("/run/hotswap/app.sock".into()), 4).unwrap();
        assert_eq!(
            (live.socket.as_path(), live.generation),
            (std::path::Path::new("/run/hotswap/app.sock"), 4)
        );
        assert!(LiveReload::with_socket(None, 4).is_none());
    }

    #[cfg(feature = "standalone")]
    #[test]
    fn the_standalone_mode_turns_it_off_whatever_the_environment_says() {
        let socket = || Some(std::ffi::OsString::from("/run/hotswap/app.sock"));
        assert!(LiveReload::with_socket(Some("".into()), 1).is_none(), "empty is off");
        // What `standalone::serve_until` does first.
        forbid_in_this_process();
        assert!(LiveReload::with_socket(socket(), 1).is_none());
    }
}
