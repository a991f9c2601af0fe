//! A to-do list in SQLite, through sqlx: the rows live in `data/todos.db`, a path relative to the
//! app, so they outlive every swap, crash and restart with nothing for hotswap to carry (the app
//! has no hotswap `State`). Each generation opens its own pool in the async `app()`, and creates
//! the table if it is missing, while the previous generation keeps answering.
//!
//! Run it with hotswap, from anywhere (generations run in the app's directory):
//!
//! ```sh
//! hotswap serve -w examples/sqlite-todo
//! curl -H 'content-type: application/json' -d '{"title": "water the plants"}' localhost:3006/todos
//! curl localhost:3006/todos
//! ```
//!
//! or without it, for production: `cargo run -p sqlite-todo` in `examples/sqlite-todo` (the same
//! `app()`, `axum::serve`d by `src/main.rs`). `DATABASE_FILE` chooses another file.
//!
//! Routes: `GET /` (a summary), `GET /todos`, `POST /todos` (`{"title": ...}`), `PATCH
//! /todos/{id}` (`{"done": true}`), `DELETE /todos/{id}`.

use std::str::FromStr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// What the summary at `GET /` starts with.
const TITLE: &str = "todos";

/// The app: opens the database (creating it and its table when missing) and routes to it.
pub async fn app() -> Result<Router, sqlx::Error> {
    let file = std::env::var("DATABASE_FILE").unwrap_or_else(|_| "data/todos.db".to_owned());
    if let Some(directory) = std::path::Path::new(&file).parent() {
        std::fs::create_dir_all(directory)?;
    }
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{file}"))?
        .create_if_missing(true)
        // Two generations may have it open at once during a swap: WAL lets readers and a
        // writer share it.
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS todos (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL,
            done BOOLEAN NOT NULL DEFAULT FALSE
        )",
    )
    .execute(&pool)
    .await?;
    Ok(Router::new()
        .route("/", get(summary))
        .route("/todos", get(list).post(create))
        .route("/todos/{id}", patch(update).delete(remove))
        .with_state(pool))
}

hotswap_handler::export_router!(app);

#[derive(Debug, Serialize)]
struct Todo {
    id: i64,
    title: String,
    done: bool,
}

/// A row of `todos` as sqlx reads it (tuples need no derive macro, so no `sqlx-macros` to build).
type TodoRow = (i64, String, bool);

impl From<TodoRow> for Todo {
    fn from((id, title, done): TodoRow) -> Self {
        Todo { id, title, done }
    }
}

type DatabaseError = (StatusCode, String);

fn database_error(error: sqlx::Error) -> DatabaseError {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("database: {error}\n"))
}

async fn summary(State(pool): State<SqlitePool>) -> Result<String, DatabaseError> {
    let (count, open): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(*) FILTER (WHERE NOT done) FROM todos")
            .fetch_one(&pool)
            .await
            .map_err(database_error)?;
    Ok(format!("{TITLE}: {count}, {open} open\n"))
}

async fn list(State(pool): State<SqlitePool>) -> Result<Json<Vec<Todo>>, DatabaseError> {
    let rows: Vec<TodoRow> = sqlx::query_as("SELECT id, title, done FROM todos ORDER BY id")
        .fetch_all(&pool)
        .await
        .map_err(database_error)?;
    Ok(Json(rows.into_iter().map(Todo::from).collect()))
}

#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

async fn create(
    State(pool): State<SqlitePool>,
    Json(new): Json<NewTodo>,
) -> Result<(StatusCode, Json<Todo>), DatabaseError> {
    let row: TodoRow =
        sqlx::query_as("INSERT INTO todos (title) VALUES (?) RETURNING id, title, done")
            .bind(new.title)
            .fetch_one(&pool)
            .await
            .map_err(database_error)?;
    Ok((StatusCode::CREATED, Json(Todo::from(row))))
}

#[derive(Deserialize)]
struct Change {
    done: bool,
}

async fn update(
    State(pool): State<SqlitePool>,
    Path(id): Path<i64>,
    Json(change): Json<Change>,
) -> Result<Json<Todo>, DatabaseError> {
    let row: Option<TodoRow> =
        sqlx::query_as("UPDATE todos SET done = ? WHERE id = ? RETURNING id, title, done")
            .bind(change.done)
            .bind(id)
            .fetch_optional(&pool)
            .await
            .map_err(database_error)?;
    row.map(|row| Json(Todo::from(row))).ok_or((StatusCode::NOT_FOUND, format!("no todo {id}\n")))
}

async fn remove(
    State(pool): State<SqlitePool>,
    Path(id): Path<i64>,
) -> Result<StatusCode, DatabaseError> {
    let result = sqlx::query("DELETE FROM todos WHERE id = ?")
        .bind(id)
        .execute(&pool)
        .await
        .map_err(database_error)?;
    Ok(if result.rows_affected() == 0 { StatusCode::NOT_FOUND } else { StatusCode::NO_CONTENT })
}
