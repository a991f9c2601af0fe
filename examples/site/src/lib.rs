//! A small HTML site, to see pages follow the saves: change the headline below and save (the page
//! in the browser shows it by itself), save `assets/site.css` (the page is restyled in place,
//! nothing is built), break the code (the compiler's error shows over the page).
//!
//! Routes: `GET /` (the home page, with a visit counter kept in the `State`), `GET /about` (the
//! template `templates/about.html`, read at each request), `GET /assets/{file}` (files of
//! `assets/`, read at each request), `GET /api/visits` (JSON), `GET /robots.txt` (plain text),
//! `GET /api/bytes` (256 bytes, binary), `GET /health`. Plain SDK, no framework: a change builds in
//! well under a second.

use std::sync::atomic::{AtomicU64, Ordering};

use hotswap_handler::http::{HeaderValue, StatusCode, header};
use hotswap_handler::{Body, Handler, Request, Response};

/// The home page's headline: edit it and save.
const HEADLINE: &str = "Welcome to the hotswap site";

pub struct Site {
    visits: AtomicU64,
}

impl Handler for Site {
    /// The visit count survives swaps: `u64` is all the state this site keeps.
    type State = u64;

    fn new(visits: u64) -> Self {
        Site { visits: AtomicU64::new(visits) }
    }

    fn export_state(&self) -> Option<u64> {
        Some(self.visits.load(Ordering::SeqCst))
    }

    async fn handle(&self, request: Request) -> Response {
        let path = request.uri().path();
        match path {
            "/" => {
                let count = self.visits.fetch_add(1, Ordering::SeqCst) + 1;
                answer("text/html; charset=utf-8", home(count))
            }
            "/about" => match std::fs::read_to_string("templates/about.html") {
                Ok(page) => answer("text/html; charset=utf-8", page),
                Err(error) => status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("templates/about.html: {error}\n"),
                ),
            },
            "/api/visits" => {
                let visits = self.visits.load(Ordering::SeqCst);
                answer("application/json", format!("{{\"visits\":{visits}}}"))
            }
            "/api/bytes" => answer("application/octet-stream", (0..=255).collect::<Vec<u8>>()),
            "/robots.txt" => answer("text/plain; charset=utf-8", "User-agent: *\nAllow: /\n"),
            "/health" => answer("text/plain; charset=utf-8", "ok\n"),
            _ => match path.strip_prefix("/assets/") {
                Some(file) => asset(file),
                None => status(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }
}

hotswap_handler::export_handler!(Site);

fn home(count: u64) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>hotswap site</title>
  <link rel="icon" href="/assets/mark.svg">
  <link rel="stylesheet" href="/assets/site.css">
</head>
<body>
  <h1 id="headline">{HEADLINE}</h1>
  <p>This page comes from <code>examples/site/src/lib.rs</code>. Change the headline there and save:
  the page shows it by itself. Save <code>assets/site.css</code>: it is restyled in place.</p>
  <p class="visits">Visits: <span id="visits">{count}</span> (kept across swaps)</p>
  <p><label>Type something, then save the stylesheet: <input id="note" name="note"></label></p>
  <p><a href="/about">About</a></p>
</body>
</html>
"#
    )
}

/// A file of `assets/` (generations run in the package's directory), read at each request.
fn asset(file: &str) -> Response {
    if file.starts_with('.') || file.contains(['/', '\\']) {
        return status(StatusCode::NOT_FOUND, "not found\n");
    }
    let content_type = match file.rsplit_once('.').map(|(_, extension)| extension) {
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("js") => "text/javascript; charset=utf-8",
        _ => "application/octet-stream",
    };
    match std::fs::read(std::path::Path::new("assets").join(file)) {
        Ok(bytes) => {
            let mut response = answer(content_type, bytes);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        Err(_) => status(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn answer(content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn status(code: StatusCode, text: impl Into<Body>) -> Response {
    let mut response = answer("text/plain; charset=utf-8", text);
    *response.status_mut() = code;
    response
}
