//! A to-do list API on axum. The list lives in the handler's `State`, so it survives every swap:
//! add items, change the code, save, and the items are still there.
//!
//! Routes: `GET /` (a summary), `GET /health`, `GET /todos`, `POST /todos` (`{"title": ...}`),
//! `GET|PATCH|DELETE /todos/{id}` (`PATCH` takes `{"title"?, "done"?}`), `GET /slow?ms=N` (answers
//! after N milliseconds of async work: handy to watch a request finish on the old code).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// Everything that survives a swap.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TodoState {
    next_id: u64,
    items: BTreeMap<u64, Item>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    id: u64,
    title: String,
    #[serde(default)]
    done: bool,
}

/// The state as the routes share it (and as hotswap exports it at a swap: the same data).
pub type Shared = Arc<Mutex<TodoState>>;

/// The app: under `hotswap serve`, each generation calls this with the items the previous one
/// had; an ordinary `main` would call it with `Shared::default()` and `axum::serve` it.
pub async fn app(state: Shared) -> Router {
    routes(state)
}

hotswap_handler::export_router!(app, Shared);

fn routes(state: Shared) -> Router {
    Router::new()
        .route("/", get(summary))
        .route("/health", get(|| async { "ok\n" }))
        .route("/todos", get(list).post(create))
        .route("/todos/{id}", get(show).patch(update).delete(remove))
        .route("/slow", get(slow))
        .with_state(state)
}

async fn summary(State(state): State<Shared>) -> String {
    let state = state.lock().expect("state lock");
    let open = state.items.values().filter(|item| !item.done).count();
    format!("todo: {} items, {open} open\n", state.items.len())
}

async fn list(State(state): State<Shared>) -> Json<Vec<Item>> {
    Json(state.lock().expect("state lock").items.values().cloned().collect())
}

#[derive(Deserialize)]
struct NewItem {
    title: String,
}

async fn create(State(state): State<Shared>, Json(new): Json<NewItem>) -> (StatusCode, Json<Item>) {
    let mut state = state.lock().expect("state lock");
    state.next_id += 1;
    let item = Item { id: state.next_id, title: new.title, done: false };
    state.items.insert(item.id, item.clone());
    hotswap_handler::tracing::info!(id = item.id, "created an item");
    (StatusCode::CREATED, Json(item))
}

async fn show(State(state): State<Shared>, Path(id): Path<u64>) -> Result<Json<Item>, StatusCode> {
    let state = state.lock().expect("state lock");
    state.items.get(&id).cloned().map(Json).ok_or(StatusCode::NOT_FOUND)
}

#[derive(Deserialize)]
struct Change {
    title: Option<String>,
    done: Option<bool>,
}

async fn update(
    State(state): State<Shared>,
    Path(id): Path<u64>,
    Json(change): Json<Change>,
) -> Result<Json<Item>, StatusCode> {
    let mut state = state.lock().expect("state lock");
    let item = state.items.get_mut(&id).ok_or(StatusCode::NOT_FOUND)?;
    if let Some(title) = change.title {
        item.title = title;
    }
    if let Some(done) = change.done {
        item.done = done;
    }
    Ok(Json(item.clone()))
}

async fn remove(State(state): State<Shared>, Path(id): Path<u64>) -> StatusCode {
    match state.lock().expect("state lock").items.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

#[derive(Deserialize)]
struct SlowQuery {
    #[serde(default)]
    ms: u64,
}

async fn slow(Query(query): Query<SlowQuery>) -> String {
    hotswap_handler::tokio::time::sleep(Duration::from_millis(query.ms.min(60_000))).await;
    format!("slept {} ms\n", query.ms)
}
