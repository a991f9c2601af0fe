//! The notes API without hotswap, as it runs in production: `cargo run -p notes-api`. The same
//! `app()` that hotswap swaps, served by `axum::serve`, with TraceLayer's lines on stderr
//! (`RUST_LOG=debug` for the request spans).

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry().with(tracing_subscriber::fmt::layer()).with(filter).init();
    let app = notes_api::app(notes_api::Notes::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3002").await?;
    println!("serving http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
