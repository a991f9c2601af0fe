//! A guestbook with both kinds of templates an axum app uses: the page itself is an askama
//! template, checked and compiled into the app at build time (`templates/guestbook.html`), and
//! the about page is a minijinja template read from disk at run time (`pages/about.html`, a path
//! relative to the app), so editing it shows at the next request, without a build.
//!
//! Run it with hotswap, from anywhere (generations run in the app's directory):
//!
//! ```sh
//! hotswap serve -w examples/guestbook
//! curl -d 'name=Ada&message=Hello' localhost:3004/sign
//! curl localhost:3004/                   # askama
//! curl localhost:3004/about              # minijinja, from pages/about.html
//! ```
//!
//! or without it, for production: `cargo run -p guestbook` in `examples/guestbook` (the same
//! `app()`, `axum::serve`d by `src/main.rs`).

use std::sync::{Arc, RwLock};

use askama::Template;
use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

/// The page's heading.
const TITLE: &str = "Guestbook";

/// The entries: hotswap's `State`, so they survive every swap.
pub type Entries = Arc<RwLock<Vec<Entry>>>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    name: String,
    message: String,
}

/// What the routes share: the entries, and the templates read from disk.
#[derive(Clone)]
struct Site {
    entries: Entries,
    pages: Arc<minijinja::Environment<'static>>,
}

/// The app, under `hotswap serve` with the entries of the previous generation, under `cargo run`
/// with none.
pub async fn app(entries: Entries) -> Router {
    let mut pages = minijinja::Environment::new();
    // Read when first rendered and again whenever the file changes on disk.
    pages.set_loader(minijinja::path_loader("pages"));
    let site = Site { entries, pages: Arc::new(pages) };
    Router::new()
        .route("/", get(guestbook))
        .route("/sign", post(sign))
        .route("/about", get(about))
        .with_state(site)
}

hotswap_handler::export_router!(app, Entries);

/// `templates/guestbook.html`, compiled in.
#[derive(Template)]
#[template(path = "guestbook.html")]
struct GuestbookPage<'a> {
    title: &'a str,
    entries: &'a [Entry],
}

type PageError = (StatusCode, String);

fn render_error(error: impl std::fmt::Display) -> PageError {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot render the page: {error}\n"))
}

async fn guestbook(State(site): State<Site>) -> Result<Html<String>, PageError> {
    let entries = site.entries.read().unwrap();
    let page = GuestbookPage { title: TITLE, entries: &entries };
    Ok(Html(page.render().map_err(render_error)?))
}

#[derive(Deserialize)]
struct Signature {
    name: String,
    message: String,
}

async fn sign(State(site): State<Site>, Form(signature): Form<Signature>) -> Redirect {
    let entry = Entry { name: signature.name, message: signature.message };
    site.entries.write().unwrap().push(entry);
    Redirect::to("/")
}

/// `pages/about.html`, read from disk by minijinja.
async fn about(State(site): State<Site>) -> Result<Html<String>, PageError> {
    let count = site.entries.read().unwrap().len();
    let template = site.pages.get_template("about.html").map_err(render_error)?;
    let page =
        template.render(minijinja::context! { title => TITLE, count }).map_err(render_error)?;
    Ok(Html(page))
}
