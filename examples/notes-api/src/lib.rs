//! A notes API behind the tower-http layers most axum apps carry: `TraceLayer` (a `request{method
//! uri version}` span and a line per request and response), gzip compression, a request timeout,
//! and a bearer token that writes must show (`ValidateRequestHeaderLayer`).
//!
//! Run it with hotswap, from anywhere (`-v` or `RUST_LOG=debug` shows TraceLayer's spans):
//!
//! ```sh
//! hotswap serve -w examples/notes-api -v
//! curl localhost:3002/notes
//! curl -H 'authorization: Bearer let-me-in' -H 'content-type: application/json' \
//!      -d '{"text": "buy milk"}' localhost:3002/notes
//! ```
//!
//! or without it, for production: `cargo run -p notes-api` (the same `app()`, `axum::serve`d by
//! `src/main.rs`). The token is `NOTES_TOKEN` from the environment, `let-me-in` without one.
//!
//! Routes: `GET /` (a summary), `GET /notes`, `POST /notes` (`{"text": ...}`), `DELETE
//! /notes/{id}`, `GET /slow?ms=N` (answers after N ms, or 408 from the timeout past 2 s).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Method, Request, Response, StatusCode, header};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

/// What the summary at `GET /` starts with.
const TITLE: &str = "notes";

/// How long a request may take before the app answers 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The notes: hotswap's `State`, so they survive every swap.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Notebook {
    next_id: u64,
    notes: BTreeMap<u64, Note>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Note {
    id: u64,
    text: String,
}

/// The notebook as the routes share it; hotswap exports the same data at a swap.
pub type Notes = Arc<RwLock<Notebook>>;

/// The app, under `hotswap serve` with the notes of the previous generation, under `cargo run`
/// with none.
pub async fn app(notes: Notes) -> Router {
    let token = std::env::var("NOTES_TOKEN").unwrap_or_else(|_| "let-me-in".to_owned());
    Router::new()
        .route("/", get(summary))
        .route("/notes", get(list).post(create))
        .route("/notes/{id}", delete(remove))
        .route("/slow", get(slow))
        .with_state(notes)
        // The last layer added is the outermost: every request is traced, then compressed, then
        // timed, then checked for its token.
        .layer(ValidateRequestHeaderLayer::custom(WritesNeedToken::new(&token)))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
}

hotswap_handler::export_router!(app, Notes);

/// Lets reads through and asks every other request for `authorization: Bearer <token>`.
#[derive(Debug, Clone)]
struct WritesNeedToken {
    expected: Arc<str>,
}

impl WritesNeedToken {
    fn new(token: &str) -> Self {
        WritesNeedToken { expected: format!("Bearer {token}").into() }
    }
}

impl<B> ValidateRequest<B> for WritesNeedToken {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<Body>> {
        if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let given = request.headers().get(header::AUTHORIZATION).map(|value| value.as_bytes());
        if given == Some(self.expected.as_bytes()) {
            return Ok(());
        }
        let mut refused =
            Response::new(Body::from("writing needs `authorization: Bearer <token>`\n"));
        *refused.status_mut() = StatusCode::UNAUTHORIZED;
        refused.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
        Err(refused)
    }
}

async fn summary(State(notes): State<Notes>) -> String {
    let count = notes.read().unwrap().notes.len();
    format!("{TITLE}: {count} notes\n")
}

async fn list(State(notes): State<Notes>) -> Json<Vec<Note>> {
    Json(notes.read().unwrap().notes.values().cloned().collect())
}

#[derive(Deserialize)]
struct NewNote {
    text: String,
}

async fn create(State(notes): State<Notes>, Json(new): Json<NewNote>) -> (StatusCode, Json<Note>) {
    let mut notebook = notes.write().unwrap();
    notebook.next_id += 1;
    let note = Note { id: notebook.next_id, text: new.text };
    notebook.notes.insert(note.id, note.clone());
    hotswap_handler::tracing::info!(id = note.id, "added a note");
    (StatusCode::CREATED, Json(note))
}

async fn remove(State(notes): State<Notes>, Path(id): Path<u64>) -> StatusCode {
    match notes.write().unwrap().notes.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

#[derive(Deserialize)]
struct SlowQuery {
    ms: u64,
}

async fn slow(Query(query): Query<SlowQuery>) -> String {
    tokio::time::sleep(Duration::from_millis(query.ms)).await;
    format!("slept {} ms\n", query.ms)
}
