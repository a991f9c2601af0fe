//! A file drop: a static site served from `assets/` (a path relative to the app, as `cargo run`
//! would resolve it), and uploads streamed to `uploads/` chunk by chunk under axum's
//! `DefaultBodyLimit` of 20 MiB, then served back from there.
//!
//! Run it with hotswap, from anywhere (generations run in the app's directory):
//!
//! ```sh
//! hotswap serve -w examples/file-drop
//! curl localhost:3003/                                   # assets/index.html
//! curl -T photo.jpg localhost:3003/upload/photo.jpg      # streamed to uploads/photo.jpg
//! curl localhost:3003/files/photo.jpg
//! ```
//!
//! or without it, for production: `cargo run -p file-drop` (the same `app()`, `axum::serve`d by
//! `src/main.rs`).
//!
//! Routes: `GET /...` (files in `assets/`), `PUT /upload/{name}` (413 past the limit), `GET
//! /files/{name}`, `GET /uploads` (what was uploaded, as JSON), `GET /stats`.

use std::collections::BTreeMap;
use std::path::{Path as FilePath, PathBuf};
use std::sync::{Arc, RwLock};

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, RequestExt, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tower_http::services::ServeDir;

/// The largest upload the app takes.
pub const MAX_UPLOAD_BYTES: usize = 20 * 1024 * 1024;

/// Where uploads go, relative to the app's directory.
const UPLOADS: &str = "uploads";

/// What `GET /stats` starts with.
const TITLE: &str = "file drop";

/// What was uploaded: hotswap's `State`, so the list survives every swap (the files are on disk).
pub type Uploads = Arc<RwLock<BTreeMap<String, Upload>>>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Upload {
    bytes: u64,
}

/// The app, under `hotswap serve` with the list of the previous generation, under `cargo run`
/// with an empty one.
pub async fn app(uploads: Uploads) -> Router {
    Router::new()
        .route("/upload/{name}", put(store).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
        .route("/uploads", get(list))
        .route("/stats", get(stats))
        .with_state(uploads)
        .nest_service("/files", ServeDir::new(UPLOADS))
        .fallback_service(ServeDir::new("assets"))
}

hotswap_handler::export_router!(app, Uploads);

/// Why an upload was refused.
type Refusal = (StatusCode, String);

/// Streams the body to `uploads/.<name>.partial`, never holding more than a chunk in memory,
/// and renames it to `uploads/<name>` once it is complete; a body over the limit is refused
/// with 413 and leaves no file.
async fn store(
    State(uploads): State<Uploads>,
    Path(name): Path<String>,
    request: Request,
) -> Result<(StatusCode, String), Refusal> {
    let target = upload_path(&name)?;
    let partial = FilePath::new(UPLOADS).join(format!(".{name}.partial"));
    let written = match write_body(request, &partial).await {
        Ok(written) => written,
        Err(refusal) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(refusal);
        }
    };
    tokio::fs::rename(&partial, &target).await.map_err(server_error)?;
    uploads.write().unwrap().insert(name.clone(), Upload { bytes: written });
    hotswap_handler::tracing::info!(name, bytes = written, "stored an upload");
    Ok((StatusCode::CREATED, format!("stored {written} bytes at /files/{name}\n")))
}

/// `uploads/<name>`, for a plain file name (no directories, no leading dot).
fn upload_path(name: &str) -> Result<PathBuf, Refusal> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        let refusal = format!("{name:?} is not a plain file name (letters, digits, . - _)\n");
        return Err((StatusCode::BAD_REQUEST, refusal));
    }
    Ok(FilePath::new(UPLOADS).join(name))
}

async fn write_body(request: Request, path: &FilePath) -> Result<u64, Refusal> {
    tokio::fs::create_dir_all(UPLOADS).await.map_err(server_error)?;
    let mut file = tokio::fs::File::create(path).await.map_err(server_error)?;
    // `into_limited_body` applies the route's `DefaultBodyLimit` to the stream.
    let mut chunks = request.into_limited_body().into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| {
            let error = error.into_inner();
            if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                let refusal = format!("an upload may have at most {MAX_UPLOAD_BYTES} bytes\n");
                (StatusCode::PAYLOAD_TOO_LARGE, refusal)
            } else {
                (StatusCode::BAD_REQUEST, format!("the upload broke off: {error}\n"))
            }
        })?;
        file.write_all(&chunk).await.map_err(server_error)?;
        written += chunk.len() as u64;
    }
    file.flush().await.map_err(server_error)?;
    Ok(written)
}

fn server_error(error: std::io::Error) -> Refusal {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n"))
}

async fn list(State(uploads): State<Uploads>) -> Json<BTreeMap<String, Upload>> {
    Json(uploads.read().unwrap().clone())
}

async fn stats(State(uploads): State<Uploads>) -> String {
    let uploads = uploads.read().unwrap();
    let bytes: u64 = uploads.values().map(|upload| upload.bytes).sum();
    format!("{TITLE}: {} files, {bytes} bytes\n", uploads.len())
}
