//! The benchmark's big app, `tracker`: an issue tracker of about 3,000 lines that the benchmark
//! generates, so that case 1 also measures an app of the size and shape of a real one rather than
//! only the small examples. It has 53 routes on one axum `Router` (`export_router!`), askama
//! templates (compiled in, so every build of the crate also compiles its pages), a database layer
//! on SQLite through sqlx (the examples' `sqlite-todo` stack) and 26 direct dependencies.
//!
//! Each of its nine resources (users, teams, projects, milestones, issues, comments, labels,
//! webhooks, time entries) is a module generated from one pattern with its own fields: the row
//! type, the bodies of `POST` and `PATCH` and their validation, a repository of SQL queries, a
//! JSON API (`/api/<resource>`, `/api/<resource>/{id}`, `/api/<resource>/search`) and two HTML
//! pages (`/<resource>`, `/<resource>/{id}`). Shared modules hold the errors (thiserror), the
//! database (opened in memory and seeded with the same rows in every process, so that every
//! server of the benchmark answers the same requests with the same bodies), pagination, the admin
//! token, the dashboard at `/` and the tower-http layers.
//!
//! Askama rather than minijinja: templates checked and compiled into the crate are what an app
//! that wants its pages type-checked uses, and they make a change to the crate rebuild its pages
//! too: the heavier, honest case for a build. (A minijinja template is read at run time; a save of
//! one needs no build at all, which `examples/guestbook` shows.)

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::bench_workspace::OneLineEdit;
use crate::user_style::{CheckedRequest, UserStyleSource};

/// The app's name: its package, its directory and the `tracker` of its dashboard.
pub(crate) const NAME: &str = "tracker";

/// The dashboard's headline, which the benchmark edits.
pub(crate) const EDIT: OneLineEdit = OneLineEdit {
    original: "\"tracker: {} projects, {} open issues\"",
    replacement: "\"tracker {edit}: {} projects, {} open issues\"",
};

/// The `main` of the app as an ordinary axum binary.
pub(crate) const USER_STYLE: UserStyleSource = UserStyleSource::FromExample {
    main: r#"
#[tokio::main]
async fn main() {
    let address = std::env::var("HOTSWAP_BENCH_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await.expect("cannot listen");
    let app = app().await.expect("cannot open the database");
    axum::serve(listener, app).await.expect("server failed");
}
"#,
};

/// Requests whose answers are the same on every server (the seeded rows; nothing created, since
/// new rows get a random uid and the time of their creation).
pub(crate) const CHECKED_REQUESTS: &[CheckedRequest] = &[
    ("GET", "/", ""),
    ("GET", "/health", ""),
    ("GET", "/api/projects", ""),
    ("GET", "/api/issues?page=2&per_page=2", ""),
    ("GET", "/api/issues/2", ""),
    ("GET", "/api/users/999", ""),
    ("GET", "/api/issues/search?q=title", ""),
    ("GET", "/api/search?q=name", ""),
    ("GET", "/projects", ""),
    ("GET", "/issues/1", ""),
    ("GET", "/webhooks", ""),
    ("POST", "/api/labels", r##"{"project_id":1,"name":"bug","color":"red"}"##),
    ("POST", "/api/teams", r#"{"slug":"Not A Slug","name":"x","description":"y"}"#),
    ("PATCH", "/api/issues/1", r#"{"priority":9}"#),
    ("GET", "/api/admin/stats", ""),
    ("GET", "/feed.json", ""),
];

/// What a field holds, and so its Rust type, its SQL type, its check and its seeded values.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Free text of at most this many characters, not empty.
    Text(usize),
    /// Lowercase letters, digits and dashes.
    Slug,
    Email,
    /// `#rrggbb`.
    Color,
    /// An http or https URL.
    Url,
    /// `YYYY-MM-DD`.
    Date,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// An integer in this range.
    Integer(i64, i64),
    Flag,
    /// The id of a row of this table.
    Reference(&'static str),
}

impl Kind {
    fn rust_type(self) -> &'static str {
        match self {
            Kind::Integer(..) | Kind::Reference(_) => "i64",
            Kind::Flag => "bool",
            _ => "String",
        }
    }

    fn sql_type(self) -> &'static str {
        match self {
            Kind::Integer(..) | Kind::Reference(_) => "INTEGER NOT NULL",
            Kind::Flag => "BOOLEAN NOT NULL",
            _ => "TEXT NOT NULL",
        }
    }

    fn is_text(self) -> bool {
        self.rust_type() == "String"
    }

    /// The SQL literal of seeded row `row` (1-based) of `table`.
    fn seed(self, table: &str, field: &str, row: usize) -> String {
        match self {
            Kind::Text(_) => format!("'{} {field} {row}'", title_case(&singular(table))),
            Kind::Slug => format!("'{}-{row}'", singular(table).replace('_', "-")),
            Kind::Email => format!("'person{row}@example.com'"),
            Kind::Color => format!("'#{:02x}{:02x}{:02x}'", 40 * row, 200 - 30 * row, 90 + row),
            Kind::Url => format!("'https://hooks.example.com/{table}/{row}'"),
            Kind::Date => format!("'2026-0{row}-1{row}'"),
            Kind::Choice(options) => format!("'{}'", options[(row - 1) % options.len()]),
            Kind::Integer(low, _) => (low + row as i64).to_string(),
            Kind::Flag => row.is_multiple_of(2).to_string().to_uppercase(),
            Kind::Reference(_) => (1 + (row - 1) % 3).to_string(),
        }
    }
}

/// A resource of the app: its table and its fields (besides `id`, `uid`, `created_at` and
/// `updated_at`, which every row has).
struct Resource {
    table: &'static str,
    fields: &'static [(&'static str, Kind)],
}

const STATUSES: &[&str] = &["open", "in_progress", "closed"];
const EVENTS: &[&str] = &["push", "issue", "comment", "release"];
const ROLES: &[&str] = &["member", "maintainer", "owner"];

const RESOURCES: &[Resource] = &[
    Resource {
        table: "users",
        fields: &[
            ("username", Kind::Slug),
            ("email", Kind::Email),
            ("display_name", Kind::Text(80)),
            ("role", Kind::Choice(ROLES)),
            ("admin", Kind::Flag),
        ],
    },
    Resource {
        table: "teams",
        fields: &[("slug", Kind::Slug), ("name", Kind::Text(80)), ("description", Kind::Text(400))],
    },
    Resource {
        table: "projects",
        fields: &[
            ("slug", Kind::Slug),
            ("name", Kind::Text(80)),
            ("description", Kind::Text(2000)),
            ("team_id", Kind::Reference("teams")),
            ("archived", Kind::Flag),
        ],
    },
    Resource {
        table: "milestones",
        fields: &[
            ("project_id", Kind::Reference("projects")),
            ("title", Kind::Text(120)),
            ("due_on", Kind::Date),
            ("closed", Kind::Flag),
        ],
    },
    Resource {
        table: "issues",
        fields: &[
            ("project_id", Kind::Reference("projects")),
            ("milestone_id", Kind::Reference("milestones")),
            ("author_id", Kind::Reference("users")),
            ("title", Kind::Text(200)),
            ("body", Kind::Text(20000)),
            ("status", Kind::Choice(STATUSES)),
            ("priority", Kind::Integer(0, 5)),
        ],
    },
    Resource {
        table: "comments",
        fields: &[
            ("issue_id", Kind::Reference("issues")),
            ("author_id", Kind::Reference("users")),
            ("body", Kind::Text(20000)),
        ],
    },
    Resource {
        table: "labels",
        fields: &[
            ("project_id", Kind::Reference("projects")),
            ("name", Kind::Text(40)),
            ("color", Kind::Color),
        ],
    },
    Resource {
        table: "webhooks",
        fields: &[
            ("project_id", Kind::Reference("projects")),
            ("url", Kind::Url),
            ("event", Kind::Choice(EVENTS)),
            ("active", Kind::Flag),
        ],
    },
    Resource {
        table: "time_entries",
        fields: &[
            ("issue_id", Kind::Reference("issues")),
            ("user_id", Kind::Reference("users")),
            ("minutes", Kind::Integer(0, 24 * 60)),
            ("spent_on", Kind::Date),
            ("note", Kind::Text(500)),
        ],
    },
];

/// How many rows of each table the database starts with.
const SEEDED_ROWS: usize = 5;

/// `users` → `user`, `time_entries` → `time_entry`.
fn singular(table: &str) -> String {
    if let Some(stem) = table.strip_suffix("ies") {
        format!("{stem}y")
    } else {
        table.strip_suffix('s').unwrap_or(table).to_owned()
    }
}

/// `time_entry` → `TimeEntry`.
fn type_name(table: &str) -> String {
    singular(table)
        .split('_')
        .map(|part| {
            let mut characters = part.chars();
            characters.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(characters).collect::<String>()
            })
        })
        .collect()
}

/// `time_entries` → `Time entries`.
fn title_case(words: &str) -> String {
    let text = words.replace('_', " ");
    let mut characters = text.chars();
    characters
        .next()
        .map_or_else(String::new, |first| first.to_uppercase().chain(characters).collect())
}

/// What the report says of the app: its size, measured on the source it generates.
pub(crate) fn description() -> String {
    let source = library_source();
    let manifest: toml::Table = MANIFEST.parse().expect("the manifest is TOML");
    let dependencies = manifest["dependencies"].as_table().map_or(0, toml::Table::len);
    let templates = 2 + 2 * RESOURCES.len();
    format!(
        "{NAME} is the benchmark's big app, generated by bench/src/big_app.rs: an issue tracker of {} lines of Rust in one crate, {} routes on one axum `Router` \
         (`export_router!`), {templates} askama templates (compiled in: each build of the crate compiles its pages), SQLite through sqlx (in memory, seeded at start-up; \
         the examples' stack) and {dependencies} direct dependencies. The change is the dashboard's headline at `/`, a string literal in one handler.",
        source.lines().count(),
        route_count(&source),
    )
}

/// The routes of `source`: every path given to `.route(`.
fn route_count(source: &str) -> usize {
    source.matches(".route(\"").count()
}

/// Writes the app into `directory`: `Cargo.toml`, `hotswap.toml`, `src/lib.rs` and `templates/`.
/// Files are rewritten only when they differ, so that cargo sees no change where there is none.
pub(crate) fn write(directory: &Path) -> anyhow::Result<()> {
    let write = |relative: &str, text: &str| -> anyhow::Result<()> {
        let path = directory.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        crate::user_style::write_if_changed(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))
    };
    write("Cargo.toml", MANIFEST)?;
    write("hotswap.toml", HOTSWAP_TOML)?;
    write("src/lib.rs", &library_source())?;
    write("templates/base.html", &base_template())?;
    write("templates/dashboard.html", DASHBOARD_TEMPLATE)?;
    for resource in RESOURCES {
        write(&format!("templates/{}/list.html", resource.table), &list_template(resource))?;
        write(&format!("templates/{}/show.html", resource.table), &show_template(resource))?;
    }
    Ok(())
}

const MANIFEST: &str = r#"# Written by hotswap-bench (bench/src/big_app.rs): the benchmark's big app.
[package]
name = "tracker"
description = "An issue tracker generated by hotswap-bench: 53 routes, askama pages, SQLite through sqlx."
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
askama = { version = "0.16.1", default-features = false, features = ["derive", "std"] }
axum = { version = "0.8.9", default-features = false, features = ["http1", "json", "query", "tokio"] }
base64 = "0.22.1"
bytes = "1.12"
futures-util = { version = "0.3.34", default-features = false, features = ["std"] }
hex = "0.4.3"
hotswap-handler = { workspace = true, features = ["axum"] }
http = "1.5"
indexmap = { version = "2.14", features = ["serde"] }
mime = "0.3.18"
percent-encoding = "2.3.2"
rand = "0.9.5"
regex = "1.11"
serde = { version = "1.0.219", features = ["derive"] }
serde_json = "1.0.154"
serde_urlencoded = "0.7.1"
sha2 = "0.10.9"
sqlx = { version = "0.8.6", default-features = false, features = ["runtime-tokio", "sqlite"] }
thiserror = "2.0.21"
time = { version = "0.3.41", features = ["formatting", "parsing"] }
tokio = { version = "1.47", features = ["time"] }
tower = { version = "0.5.3", default-features = false, features = ["util"] }
tower-http = { version = "0.6.11", features = ["compression-gzip", "request-id", "set-header", "timeout", "trace"] }
tracing = "0.1.44"
url = "2.5.8"
uuid = { version = "1.17", features = ["v4"] }
"#;

const HOTSWAP_TOML: &str = r#"# Written by hotswap-bench (bench/src/big_app.rs). hotswap serve reads this file.
package = "tracker"

[server]
listen = "127.0.0.1:3010"

[swap]
smoke_path = "/health"
"#;

/// The shared part of `src/lib.rs`: everything but the resources' modules.
const LIBRARY_HEAD: &str = r##"//! tracker: an issue tracker on axum, generated by hotswap-bench (bench/src/big_app.rs) as the
//! benchmark's big app. Every resource has a JSON API under `/api/<resource>` and HTML pages under
//! `/<resource>`; the rows live in SQLite (in memory, seeded at start-up).

use std::sync::LazyLock;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use indexmap::IndexMap;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// How long a request may take before it is answered with 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The token of the admin routes when `TRACKER_ADMIN_TOKEN` is not set.
const DEFAULT_ADMIN_TOKEN: &str = "tracker-admin-token";

/// The app's stylesheet, served at `/static/app.css`.
const STYLESHEET: &str = "body { font-family: system-ui, sans-serif; margin: 2rem; }\n\
nav a { margin-right: 1rem; }\n\
table { border-collapse: collapse; }\n\
td, th { border: 1px solid #ccc; padding: 0.25rem 0.5rem; }\n";

static SLUG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:-[a-z0-9]+)*$").expect("a valid pattern"));
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$").expect("a valid pattern"));
static COLOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^#[0-9a-f]{6}$").expect("a valid pattern"));
static SEARCH_TERM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\p{L}\p{N}]+").expect("a valid pattern"));

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    pool: SqlitePool,
    admin_token_sha256: String,
}

/// The app: opens the database, seeds it, and routes to it.
pub async fn app() -> Result<Router, AppError> {
    let pool = database::open().await?;
    let token = std::env::var("TRACKER_ADMIN_TOKEN").unwrap_or_else(|_| DEFAULT_ADMIN_TOKEN.to_owned());
    let state = AppState { pool, admin_token_sha256: sha256_hex(token.as_bytes()) };
    Ok(routes(state))
}

hotswap_handler::export_router!(app);

/// Every route, behind the layers every request passes.
fn routes(state: AppState) -> Router {
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::if_not_present(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        ));
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/static/app.css", get(stylesheet))
        .route("/feed.json", get(feed))
        .route("/api/search", get(search_everything))
        .route("/api/admin/stats", get(admin_stats))
        .route("/api/admin/export", get(admin_export))
__RESOURCE_ROUTES__
        .layer(layers)
        .with_state(state)
}

/// The request ids of `x-request-id`: 16 random hex digits.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &http::Request<B>) -> Option<RequestId> {
        let id = format!("{:016x}", rand::random::<u64>());
        http::HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Everything a route can fail with, and the status and JSON body each answers.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("no {what} {id}")]
    NotFound { what: &'static str, id: i64 },
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{what} {id} does not exist")]
    MissingReference { what: &'static str, id: i64 },
    #[error("this route needs the admin token")]
    Unauthorized,
    #[error("template: {0}")]
    Template(#[from] askama::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the database did not open in time")]
    Timeout(#[from] tokio::time::error::Elapsed),
}

impl AppError {
    fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound { .. } => StatusCode::NOT_FOUND,
            AppError::Invalid { .. } | AppError::MissingReference { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Database(_) | AppError::Template(_) | AppError::Json(_) | AppError::Timeout(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let field = match &self {
            AppError::Invalid { field, .. } => Some(*field),
            _ => None,
        };
        let body = serde_json::json!({ "error": self.to_string(), "field": field });
        (status, Json(body)).into_response()
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> AppError {
    AppError::Invalid { field, message: message.into() }
}

/// Checks free text: not blank, at most `max` characters.
fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), AppError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    let length = value.chars().count();
    if length > max {
        return Err(invalid(field, format!("is {length} characters long, at most {max} fit")));
    }
    Ok(())
}

fn check_pattern(field: &'static str, value: &str, pattern: &Regex, what: &str) -> Result<(), AppError> {
    if pattern.is_match(value) {
        Ok(())
    } else {
        Err(invalid(field, format!("{value:?} is not {what}")))
    }
}

fn check_url(field: &'static str, value: &str) -> Result<(), AppError> {
    let parsed = url::Url::parse(value).map_err(|error| invalid(field, error.to_string()))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host_str().is_some() => Ok(()),
        scheme => Err(invalid(field, format!("needs an http or https URL with a host, not {scheme}:"))),
    }
}

fn check_date(field: &'static str, value: &str) -> Result<(), AppError> {
    let format = time::format_description::parse("[year]-[month]-[day]").expect("a valid format");
    time::Date::parse(value, &format)
        .map(|_| ())
        .map_err(|error| invalid(field, format!("{value:?} is not a date (YYYY-MM-DD): {error}")))
}

fn check_choice(field: &'static str, value: &str, choices: &[&str]) -> Result<(), AppError> {
    if choices.contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, format!("{value:?} is none of {}", choices.join(", "))))
    }
}

fn check_range(field: &'static str, value: i64, low: i64, high: i64) -> Result<(), AppError> {
    if (low..=high).contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, format!("{value} is not between {low} and {high}")))
    }
}

/// Fails unless row `id` of `table` exists.
async fn check_reference(
    pool: &SqlitePool,
    table: &'static str,
    what: &'static str,
    id: i64,
) -> Result<(), AppError> {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE id = ?");
    let (count,): (i64,) = sqlx::query_as(&sql).bind(id).fetch_one(pool).await?;
    if count == 0 {
        return Err(AppError::MissingReference { what, id });
    }
    Ok(())
}

/// A new row's uid.
fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Now, as the rows store it (RFC 3339, UTC).
fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A `LIKE` pattern that finds `term` anywhere (`!` escapes the pattern's own characters).
fn like_pattern(term: &str) -> String {
    let mut pattern = String::from("%");
    for character in term.chars() {
        if matches!(character, '%' | '_' | '!') {
            pattern.push('!');
        }
        pattern.push(character);
    }
    pattern.push('%');
    pattern
}

/// The words of a search, lowercased, at most five.
fn search_terms(query: &str) -> Vec<String> {
    SEARCH_TERM.find_iter(&query.to_lowercase()).map(|term| term.as_str().to_owned()).take(5).collect()
}

/// Renders a page.
fn render(page: &impl Template) -> Result<Html<String>, AppError> {
    Ok(Html(page.render()?))
}

/// `?page=N&per_page=M` of a list.
#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct Page {
    #[serde(default = "first_page")]
    pub(crate) page: i64,
    #[serde(default = "default_per_page")]
    pub(crate) per_page: i64,
}

fn first_page() -> i64 {
    1
}

fn default_per_page() -> i64 {
    20
}

impl Default for Page {
    fn default() -> Self {
        Page { page: first_page(), per_page: default_per_page() }
    }
}

impl Page {
    pub(crate) fn limit(&self) -> i64 {
        self.per_page.clamp(1, 100)
    }

    pub(crate) fn offset(&self) -> i64 {
        (self.page.max(1) - 1) * self.limit()
    }

    /// The query of the next page, if there are more rows than this page shows.
    pub(crate) fn next_query(&self, total: i64) -> Option<String> {
        if self.page.max(1) * self.limit() >= total {
            return None;
        }
        serde_urlencoded::to_string([("page", self.page.max(1) + 1), ("per_page", self.limit())]).ok()
    }

    /// An opaque cursor for this page (what a client hands back to come back to it).
    pub(crate) fn cursor(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("page={};per_page={}", self.page.max(1), self.limit()))
    }
}

/// One page of a list, as the JSON API answers it.
#[derive(Debug, Serialize)]
pub(crate) struct Paged<T> {
    pub(crate) items: Vec<T>,
    pub(crate) page: i64,
    pub(crate) per_page: i64,
    pub(crate) total: i64,
    pub(crate) cursor: String,
    pub(crate) next: Option<String>,
}

impl<T> Paged<T> {
    pub(crate) fn new(items: Vec<T>, page: &Page, total: i64, base: &str) -> Self {
        Paged {
            items,
            page: page.page.max(1),
            per_page: page.limit(),
            total,
            cursor: page.cursor(),
            next: page.next_query(total).map(|query| format!("{base}?{query}")),
        }
    }
}

/// `?q=...` of a search.
#[derive(Debug, Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    pub(crate) q: String,
    pub(crate) page: Option<i64>,
}

impl SearchQuery {
    pub(crate) fn page(&self) -> Page {
        Page { page: self.page.unwrap_or(1), ..Page::default() }
    }

    /// The link to this search again.
    pub(crate) fn link(&self, base: &str) -> String {
        format!("{base}?q={}", utf8_percent_encode(&self.q, NON_ALPHANUMERIC))
    }
}

/// The answer of a search.
#[derive(Debug, Serialize)]
pub(crate) struct SearchResults<T> {
    pub(crate) terms: Vec<String>,
    pub(crate) link: String,
    pub(crate) items: Vec<T>,
}

/// Fails unless the request carries the admin token, as `Authorization: Bearer TOKEN` or as the
/// password of `Authorization: Basic` (user `admin`).
fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or(AppError::Unauthorized)?;
    let token = if let Some(token) = header.strip_prefix("Bearer ") {
        token.to_owned()
    } else if let Some(encoded) = header.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| AppError::Unauthorized)?;
        let text = String::from_utf8(decoded).map_err(|_| AppError::Unauthorized)?;
        text.strip_prefix("admin:").ok_or(AppError::Unauthorized)?.to_owned()
    } else {
        return Err(AppError::Unauthorized);
    };
    if sha256_hex(token.as_bytes()) == state.admin_token_sha256 {
        Ok(())
    } else {
        Err(AppError::Unauthorized)
    }
}

/// The database: opened in memory (one connection, kept open: an in-memory SQLite database lives
/// as long as its connection), its tables created and seeded.
mod database {
    use super::*;

    pub(crate) async fn open() -> Result<SqlitePool, AppError> {
        let connecting = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect("sqlite::memory:");
        let pool = tokio::time::timeout(Duration::from_secs(10), connecting).await??;
        for statement in SCHEMA.iter().chain(SEED) {
            sqlx::query(statement).execute(&pool).await?;
        }
        Ok(pool)
    }

    /// Every table.
    pub(crate) const TABLES: &[&str] = &[__TABLE_NAMES__];

    const SCHEMA: &[&str] = &[
__SCHEMA__
    ];

    /// The rows every process starts with (fixed uids and times, so every server answers alike).
    const SEED: &[&str] = &[
__SEED__
    ];

    /// How many rows each table has, in the order of [`TABLES`].
    pub(crate) async fn counts(pool: &SqlitePool) -> Result<IndexMap<&'static str, i64>, AppError> {
        let counted = futures_util::future::try_join_all(TABLES.iter().map(|table| async move {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            let (count,): (i64,) = sqlx::query_as(&sql).fetch_one(pool).await?;
            Ok::<_, AppError>((*table, count))
        }))
        .await?;
        Ok(counted.into_iter().collect())
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    title: &'static str,
    headline: String,
    counts: Vec<(&'static str, i64)>,
    recent: Vec<issues::Issue>,
}

/// `GET /`: how many rows of each kind there are, and the latest issues.
async fn dashboard(State(state): State<AppState>) -> Result<Html<String>, AppError> {
    let counts = database::counts(&state.pool).await?;
    let (open,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM issues WHERE status = 'open'")
        .fetch_one(&state.pool)
        .await?;
    let headline = format!("tracker: {} projects, {} open issues", counts["projects"], open);
    let recent = issues::Repository::new(&state.pool).list(&Page { page: 1, per_page: 5 }).await?;
    render(&DashboardPage {
        title: "Dashboard",
        headline,
        counts: counts.into_iter().collect(),
        recent,
    })
}

/// `GET /metrics`: the row counts in Prometheus' text format.
async fn metrics(State(state): State<AppState>) -> Result<String, AppError> {
    let mut text = String::from("# TYPE tracker_rows gauge\n");
    for (table, count) in database::counts(&state.pool).await? {
        text.push_str(&format!("tracker_rows{{table=\"{table}\"}} {count}\n"));
    }
    Ok(text)
}

/// `GET /static/app.css`, with an `ETag` of its content.
async fn stylesheet(headers: HeaderMap) -> Response {
    let etag = format!("\"{}\"", &sha256_hex(STYLESHEET.as_bytes())[..16]);
    let unchanged = headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == etag);
    if unchanged {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            (http::header::CONTENT_TYPE, mime::TEXT_CSS_UTF_8.to_string()),
            (http::header::ETAG, etag),
        ],
        bytes::Bytes::from_static(STYLESHEET.as_bytes()),
    )
        .into_response()
}

/// `GET /feed.json`: the latest issues as a JSON Feed.
async fn feed(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    let recent = issues::Repository::new(&state.pool).list(&Page { page: 1, per_page: 10 }).await?;
    let items: Vec<serde_json::Value> = recent
        .iter()
        .map(|issue| {
            serde_json::json!({
                "id": issue.uid,
                "url": format!("/issues/{}", issue.id),
                "title": issue.title,
                "content_text": issue.body,
                "date_published": issue.created_at,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "version": "https://jsonfeed.org/version/1.1",
        "title": "tracker: latest issues",
        "items": items,
    })))
}

/// `GET /api/search?q=...`: how many rows of each kind match.
async fn search_everything(
    State(state): State<AppState>,
    Query(query): Query<SearchQuery>,
) -> Result<Json<serde_json::Value>, AppError> {
    let terms = search_terms(&query.q);
    let page = query.page();
    let mut found = IndexMap::new();
__SEARCH_EVERYTHING__
    Ok(Json(serde_json::json!({
        "terms": terms,
        "link": query.link("/api/search"),
        "found": found,
    })))
}

/// `GET /api/admin/stats` (admin token): the row counts and the database's size.
async fn admin_stats(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AppError> {
    require_admin(&state, &headers)?;
    let counts = database::counts(&state.pool).await?;
    let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count").fetch_one(&state.pool).await?;
    Ok(Json(serde_json::json!({ "rows": counts, "pages": pages })))
}

/// `GET /api/admin/export` (admin token): every row of every table.
async fn admin_export(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AppError> {
    require_admin(&state, &headers)?;
    let everything = Page { page: 1, per_page: 100 };
    let mut export = serde_json::Map::new();
__EXPORT__
    Ok(Json(serde_json::Value::Object(export)))
}
"##;

/// One resource's module; `__T__`, `__table__`, `__singular__`, `__Title__` and the `__FIELDS…__`
/// markers are filled in by [`resource_module`].
const RESOURCE_MODULE: &str = r#"
/// __Title__: the rows of `__table__`, their JSON API under `/api/__table__` and their pages under
/// `/__table__`.
mod __table__ {
    use super::*;

    /// One row of `__table__`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct __T__ {
        pub(crate) id: i64,
        pub(crate) uid: String,
__STRUCT_FIELDS__
        pub(crate) created_at: String,
        pub(crate) updated_at: String,
    }

    /// The body of `POST /api/__table__`.
    #[derive(Debug, Clone, Deserialize)]
    pub(crate) struct New__T__ {
__NEW_FIELDS__
    }

    /// The body of `PATCH /api/__table__/{id}`: the fields to change.
    #[derive(Debug, Clone, Default, Deserialize)]
    pub(crate) struct __T__Patch {
__PATCH_FIELDS__
    }

    /// A row as sqlx reads it (a tuple needs no derive macro).
    type Row = (i64, String, __ROW_TYPES__ String, String);

    impl From<Row> for __T__ {
        fn from((id, uid, __ROW_NAMES__ created_at, updated_at): Row) -> Self {
            __T__ { id, uid, __ROW_NAMES__ created_at, updated_at }
        }
    }

    /// The columns of a row, in the order of [`Row`].
    const COLUMNS: &str = "id, uid, __COLUMNS__, created_at, updated_at";

    impl New__T__ {
        /// Checks every field; the error names the first that is wrong.
        pub(crate) fn validate(&self) -> Result<(), AppError> {
__VALIDATE__
            Ok(())
        }

        /// Checks that the rows this one refers to exist.
        pub(crate) async fn check_references(&self, pool: &SqlitePool) -> Result<(), AppError> {
__CHECK_REFERENCES__
            Ok(())
        }
    }

    impl __T__Patch {
        /// The row after the change, as a new row to check.
        pub(crate) fn applied_to(self, current: &__T__) -> New__T__ {
            New__T__ {
__PATCH_APPLY__
            }
        }
    }

    /// The queries of `__table__`.
    pub(crate) struct Repository<'a> {
        pool: &'a SqlitePool,
    }

    impl<'a> Repository<'a> {
        pub(crate) fn new(pool: &'a SqlitePool) -> Self {
            Repository { pool }
        }

        pub(crate) async fn count(&self) -> Result<i64, AppError> {
            let (count,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM __table__").fetch_one(self.pool).await?;
            Ok(count)
        }

        /// One page of rows, newest first.
        pub(crate) async fn list(&self, page: &Page) -> Result<Vec<__T__>, AppError> {
            let sql = format!("SELECT {COLUMNS} FROM __table__ ORDER BY id DESC LIMIT ? OFFSET ?");
            let rows: Vec<Row> = sqlx::query_as(&sql)
                .bind(page.limit())
                .bind(page.offset())
                .fetch_all(self.pool)
                .await?;
            Ok(rows.into_iter().map(__T__::from).collect())
        }

        pub(crate) async fn get(&self, id: i64) -> Result<__T__, AppError> {
            let sql = format!("SELECT {COLUMNS} FROM __table__ WHERE id = ?");
            let row: Option<Row> = sqlx::query_as(&sql).bind(id).fetch_optional(self.pool).await?;
            row.map(__T__::from).ok_or(AppError::NotFound { what: "__singular__", id })
        }

        /// The rows whose __SEARCHED__ contains every term.
        pub(crate) async fn search(&self, terms: &[String], page: &Page) -> Result<Vec<__T__>, AppError> {
            let mut sql = format!("SELECT {COLUMNS} FROM __table__ WHERE 1 = 1");
            for _ in terms {
                sql.push_str(" AND lower(__SEARCHED__) LIKE ? ESCAPE '!'");
            }
            sql.push_str(" ORDER BY id LIMIT ? OFFSET ?");
            let mut query = sqlx::query_as::<_, Row>(&sql);
            for term in terms {
                query = query.bind(like_pattern(term));
            }
            let rows = query.bind(page.limit()).bind(page.offset()).fetch_all(self.pool).await?;
            Ok(rows.into_iter().map(__T__::from).collect())
        }

        pub(crate) async fn insert(&self, new: &New__T__) -> Result<__T__, AppError> {
            let now = timestamp();
            let sql = format!(
                "INSERT INTO __table__ (uid, __COLUMNS__, created_at, updated_at) \
                 VALUES (?, __PLACEHOLDERS__, ?, ?) RETURNING {COLUMNS}"
            );
            let row: Row = sqlx::query_as(&sql)
                .bind(new_uid())
__BINDS__
                .bind(&now)
                .bind(&now)
                .fetch_one(self.pool)
                .await?;
            Ok(__T__::from(row))
        }

        pub(crate) async fn update(&self, id: i64, changed: &New__T__) -> Result<__T__, AppError> {
            let sql = format!(
                "UPDATE __table__ SET __ASSIGNMENTS__, updated_at = ? WHERE id = ? RETURNING {COLUMNS}"
            );
            let new = changed;
            let row: Option<Row> = sqlx::query_as(&sql)
__BINDS__
                .bind(timestamp())
                .bind(id)
                .fetch_optional(self.pool)
                .await?;
            row.map(__T__::from).ok_or(AppError::NotFound { what: "__singular__", id })
        }

        pub(crate) async fn delete(&self, id: i64) -> Result<(), AppError> {
            let result =
                sqlx::query("DELETE FROM __table__ WHERE id = ?").bind(id).execute(self.pool).await?;
            if result.rows_affected() == 0 {
                return Err(AppError::NotFound { what: "__singular__", id });
            }
            Ok(())
        }
    }

    #[derive(Template)]
    #[template(path = "__table__/list.html")]
    struct ListPage {
        title: &'static str,
        items: Vec<__T__>,
        page: Page,
        total: i64,
        next: Option<String>,
    }

    #[derive(Template)]
    #[template(path = "__table__/show.html")]
    struct ShowPage {
        title: &'static str,
        item: __T__,
    }

    /// `GET /api/__table__?page=N&per_page=M`.
    async fn list(
        State(state): State<AppState>,
        Query(page): Query<Page>,
    ) -> Result<Json<Paged<__T__>>, AppError> {
        let repository = Repository::new(&state.pool);
        let total = repository.count().await?;
        let items = repository.list(&page).await?;
        Ok(Json(Paged::new(items, &page, total, "/api/__table__")))
    }

    /// `GET /api/__table__/{id}`.
    async fn show(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<__T__>, AppError> {
        Ok(Json(Repository::new(&state.pool).get(id).await?))
    }

    /// `POST /api/__table__`.
    async fn create(
        State(state): State<AppState>,
        Json(new): Json<New__T__>,
    ) -> Result<(StatusCode, Json<__T__>), AppError> {
        new.validate()?;
        new.check_references(&state.pool).await?;
        let created = Repository::new(&state.pool).insert(&new).await?;
        tracing::info!(id = created.id, uid = %created.uid, "created a __singular__");
        Ok((StatusCode::CREATED, Json(created)))
    }

    /// `PATCH /api/__table__/{id}`.
    async fn update(
        State(state): State<AppState>,
        Path(id): Path<i64>,
        Json(patch): Json<__T__Patch>,
    ) -> Result<Json<__T__>, AppError> {
        let repository = Repository::new(&state.pool);
        let current = repository.get(id).await?;
        let changed = patch.applied_to(&current);
        changed.validate()?;
        changed.check_references(&state.pool).await?;
        let updated = repository.update(id, &changed).await?;
        tracing::info!(id, "updated a __singular__");
        Ok(Json(updated))
    }

    /// `DELETE /api/__table__/{id}`.
    async fn remove(State(state): State<AppState>, Path(id): Path<i64>) -> Result<StatusCode, AppError> {
        Repository::new(&state.pool).delete(id).await?;
        tracing::info!(id, "deleted a __singular__");
        Ok(StatusCode::NO_CONTENT)
    }

    /// `GET /api/__table__/search?q=...`.
    async fn search(
        State(state): State<AppState>,
        Query(query): Query<SearchQuery>,
    ) -> Result<Json<SearchResults<__T__>>, AppError> {
        let terms = search_terms(&query.q);
        let items = Repository::new(&state.pool).search(&terms, &query.page()).await?;
        Ok(Json(SearchResults { link: query.link("/api/__table__/search"), terms, items }))
    }

    /// `GET /__table__`: a page of rows as HTML.
    async fn list_page(
        State(state): State<AppState>,
        Query(page): Query<Page>,
    ) -> Result<Html<String>, AppError> {
        let repository = Repository::new(&state.pool);
        let total = repository.count().await?;
        let items = repository.list(&page).await?;
        let next = page.next_query(total);
        render(&ListPage { title: "__Title__", items, page, total, next })
    }

    /// `GET /__table__/{id}`: one row as HTML.
    async fn show_page(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Html<String>, AppError> {
        let item = Repository::new(&state.pool).get(id).await?;
        render(&ShowPage { title: "__Title__", item })
    }

    /// The routes of `__table__`.
    pub(crate) fn routes() -> Router<AppState> {
        Router::new()
            .route("/api/__table__", get(list).post(create))
            .route("/api/__table__/search", get(search))
            .route("/api/__table__/{id}", get(show).patch(update).delete(remove))
            .route("/__table__", get(list_page))
            .route("/__table__/{id}", get(show_page))
    }
}
"#;

/// `src/lib.rs`.
fn library_source() -> String {
    let mut routes = String::new();
    let mut table_names = Vec::new();
    let mut schema = String::new();
    let mut seed = String::new();
    let mut search = String::new();
    let mut export = String::new();
    for resource in RESOURCES {
        let table = resource.table;
        let _ = writeln!(routes, "        .merge({table}::routes())");
        table_names.push(format!("{table:?}"));
        let columns: Vec<String> = resource
            .fields
            .iter()
            .map(|(name, kind)| format!("{name} {}", kind.sql_type()))
            .collect();
        let _ = writeln!(
            schema,
            "        \"CREATE TABLE {table} (id INTEGER PRIMARY KEY AUTOINCREMENT, uid TEXT NOT NULL UNIQUE, {}, \
             created_at TEXT NOT NULL, updated_at TEXT NOT NULL)\",",
            columns.join(", ")
        );
        for row in 1..=SEEDED_ROWS {
            let names: Vec<&str> = resource.fields.iter().map(|(name, _)| *name).collect();
            let values: Vec<String> =
                resource.fields.iter().map(|(name, kind)| kind.seed(table, name, row)).collect();
            let time = format!("'2026-01-{:02}T09:{:02}:00Z'", row, row * 7);
            let _ = writeln!(
                seed,
                "        \"INSERT INTO {table} (uid, {}, created_at, updated_at) VALUES \
                 ('00000000-0000-4000-8000-{:06}{row:06}', {}, {time}, {time})\",",
                names.join(", "),
                table.len(),
                values.join(", ")
            );
        }
        let _ = writeln!(
            search,
            "    found.insert(\"{table}\", {table}::Repository::new(&state.pool).search(&terms, &page).await?.len());"
        );
        let _ = writeln!(
            export,
            "    export.insert(\"{table}\".to_owned(), serde_json::to_value({table}::Repository::new(&state.pool).list(&everything).await?)?);"
        );
    }
    let mut text = LIBRARY_HEAD
        .replace("__RESOURCE_ROUTES__\n", &routes)
        .replace("__TABLE_NAMES__", &table_names.join(", "))
        .replace("__SCHEMA__\n", &schema)
        .replace("__SEED__\n", &seed)
        .replace("__SEARCH_EVERYTHING__\n", &search)
        .replace("__EXPORT__\n", &export);
    for resource in RESOURCES {
        text.push_str(&resource_module(resource));
    }
    text
}

/// The module of one resource.
fn resource_module(resource: &Resource) -> String {
    let table = resource.table;
    let singular = singular(table);
    let type_name = type_name(table);
    let mut struct_fields = String::new();
    let mut new_fields = String::new();
    let mut patch_fields = String::new();
    let mut row_types = String::new();
    let mut row_names = String::new();
    let mut validate = String::new();
    let mut check_references = String::new();
    let mut patch_apply = String::new();
    let mut binds = String::new();
    let mut assignments = Vec::new();
    for (name, kind) in resource.fields {
        let rust_type = kind.rust_type();
        let _ = writeln!(struct_fields, "        pub(crate) {name}: {rust_type},");
        let _ = writeln!(new_fields, "        pub(crate) {name}: {rust_type},");
        let _ = writeln!(patch_fields, "        pub(crate) {name}: Option<{rust_type}>,");
        let _ = write!(row_types, "{rust_type}, ");
        let _ = write!(row_names, "{name}, ");
        let check = match kind {
            Kind::Text(max) => format!("check_text(\"{name}\", &self.{name}, {max})?;"),
            Kind::Slug => format!("check_pattern(\"{name}\", &self.{name}, &SLUG, \"a slug\")?;"),
            Kind::Email => {
                format!("check_pattern(\"{name}\", &self.{name}, &EMAIL, \"an email address\")?;")
            }
            Kind::Color => {
                format!("check_pattern(\"{name}\", &self.{name}, &COLOR, \"a color (#rrggbb)\")?;")
            }
            Kind::Url => format!("check_url(\"{name}\", &self.{name})?;"),
            Kind::Date => format!("check_date(\"{name}\", &self.{name})?;"),
            Kind::Choice(options) => format!(
                "check_choice(\"{name}\", &self.{name}, &[{}])?;",
                options.iter().map(|option| format!("{option:?}")).collect::<Vec<_>>().join(", ")
            ),
            Kind::Integer(low, high) => {
                format!("check_range(\"{name}\", self.{name}, {low}, {high})?;")
            }
            Kind::Flag => String::new(),
            Kind::Reference(_) => format!(
                "if self.{name} <= 0 {{\n                return Err(invalid(\"{name}\", \"must be the id of a row\"));\n            }}"
            ),
        };
        if !check.is_empty() {
            let _ = writeln!(validate, "            {check}");
        }
        if let Kind::Reference(referenced) = kind {
            let _ = writeln!(
                check_references,
                "            check_reference(pool, \"{referenced}\", \"{}\", self.{name}).await?;",
                singular_of(referenced)
            );
        }
        let fallback = if kind.is_text() {
            format!("current.{name}.clone()")
        } else {
            format!("current.{name}")
        };
        let _ = writeln!(
            patch_apply,
            "                {name}: self.{name}.unwrap_or_else(|| {fallback}),"
        );
        let bound = if kind.is_text() { format!("&new.{name}") } else { format!("new.{name}") };
        let _ = writeln!(binds, "                .bind({bound})");
        assignments.push(format!("{name} = ?"));
    }
    let names: Vec<&str> = resource.fields.iter().map(|(name, _)| *name).collect();
    let searched = resource
        .fields
        .iter()
        .find(|(_, kind)| matches!(kind, Kind::Text(_)))
        .or_else(|| resource.fields.iter().find(|(_, kind)| kind.is_text()))
        .map_or("uid", |(name, _)| *name);
    RESOURCE_MODULE
        .replace("__STRUCT_FIELDS__\n", &struct_fields)
        .replace("__NEW_FIELDS__\n", &new_fields)
        .replace("__PATCH_FIELDS__\n", &patch_fields)
        .replace("__ROW_TYPES__ ", &row_types)
        .replace("__ROW_NAMES__ ", &row_names)
        .replace("__VALIDATE__\n", &validate)
        .replace("__CHECK_REFERENCES__\n", &check_references)
        .replace("__PATCH_APPLY__\n", &patch_apply)
        .replace("__BINDS__\n", &binds)
        .replace("__COLUMNS__", &names.join(", "))
        .replace("__PLACEHOLDERS__", &vec!["?"; names.len()].join(", "))
        .replace("__ASSIGNMENTS__", &assignments.join(", "))
        .replace("__SEARCHED__", searched)
        .replace("__T__", &type_name)
        .replace("__table__", table)
        .replace("__singular__", &singular.replace('_', " "))
        .replace("__Title__", &title_case(table))
}

/// What a row of `table` is called in messages: `time entry`.
fn singular_of(table: &str) -> String {
    singular(table).replace('_', " ")
}

/// The layout every page extends: the navigation to every resource's list.
fn base_template() -> String {
    let navigation: String = RESOURCES
        .iter()
        .map(|resource| {
            format!("    <a href=\"/{}\">{}</a>\n", resource.table, title_case(resource.table))
        })
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{{{{ title }}}} · tracker</title>
  <link rel="stylesheet" href="/static/app.css">
</head>
<body>
  <nav>
    <a href="/">Dashboard</a>
{navigation}  </nav>
  <main>
{{% block content %}}{{% endblock %}}
  </main>
  <footer>tracker, generated by hotswap-bench</footer>
</body>
</html>
"#
    )
}

const DASHBOARD_TEMPLATE: &str = r#"{% extends "base.html" %}
{% block content %}
<h1>{{ headline }}</h1>
<table>
  {% for (table, count) in counts %}
  <tr><th><a href="/{{ table }}">{{ table }}</a></th><td>{{ count }}</td></tr>
  {% endfor %}
</table>
<h2>Latest issues</h2>
<ul>
  {% for issue in recent %}
  <li><a href="/issues/{{ issue.id }}">{{ issue.title }}</a> ({{ issue.status }}, priority {{ issue.priority }})</li>
  {% endfor %}
</ul>
{% endblock %}
"#;

/// A resource's list page.
fn list_template(resource: &Resource) -> String {
    let headers: String =
        resource.fields.iter().map(|(name, _)| format!("<th>{name}</th>")).collect();
    let cells: String =
        resource.fields.iter().map(|(name, _)| format!("<td>{{{{ item.{name} }}}}</td>")).collect();
    let table = resource.table;
    format!(
        r#"{{% extends "base.html" %}}
{{% block content %}}
<h1>{{{{ title }}}}</h1>
<p>{{{{ total }}}} in all; page {{{{ page.page }}}}.</p>
<table>
  <thead><tr><th>id</th>{headers}<th>created</th></tr></thead>
  <tbody>
  {{% for item in items %}}
    <tr><td><a href="/{table}/{{{{ item.id }}}}">{{{{ item.id }}}}</a></td>{cells}<td>{{{{ item.created_at }}}}</td></tr>
  {{% endfor %}}
  </tbody>
</table>
{{% if let Some(next) = next %}}<p><a href="/{table}?{{{{ next }}}}">Next page</a></p>{{% endif %}}
{{% endblock %}}
"#
    )
}

/// A resource's page of one row.
fn show_template(resource: &Resource) -> String {
    let fields: String = resource
        .fields
        .iter()
        .map(|(name, _)| format!("  <dt>{name}</dt><dd>{{{{ item.{name} }}}}</dd>\n"))
        .collect();
    let table = resource.table;
    format!(
        r#"{{% extends "base.html" %}}
{{% block content %}}
<h1>{{{{ title }}}}: #{{{{ item.id }}}}</h1>
<dl>
  <dt>uid</dt><dd>{{{{ item.uid }}}}</dd>
{fields}  <dt>created</dt><dd>{{{{ item.created_at }}}}</dd>
  <dt>updated</dt><dd>{{{{ item.updated_at }}}}</dd>
</dl>
<p><a href="/{table}">All {table}</a></p>
{{% endblock %}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_app_is_big_and_has_the_edited_line_once() {
        let source = library_source();
        let lines = source.lines().count();
        assert!((2500..4000).contains(&lines), "{lines} lines");
        assert_eq!(source.matches(EDIT.original).count(), 1);
        let routes = route_count(&source);
        assert!(routes >= 30, "{routes} routes");
        assert!(!source.contains("__"), "a marker is left: {}", {
            let at = source.find("__").unwrap_or(0);
            &source[at.saturating_sub(80)..(at + 80).min(source.len())]
        });
        // Everything but the one `export_router!` line is ordinary axum.
        assert_eq!(source.matches("hotswap_handler").count(), 1);
    }

    #[test]
    fn the_manifest_has_twenty_or_more_direct_dependencies() {
        let manifest: toml::Table = MANIFEST.parse().unwrap();
        let dependencies = manifest["dependencies"].as_table().unwrap();
        assert!(dependencies.len() >= 20, "{}", dependencies.len());
    }

    #[test]
    fn names_of_resources() {
        assert_eq!(singular("time_entries"), "time_entry");
        assert_eq!(type_name("time_entries"), "TimeEntry");
        assert_eq!(singular("users"), "user");
        assert_eq!(title_case("time_entries"), "Time entries");
    }
}
