//! The file drop without hotswap, as it runs in production: `cargo run -p file-drop` in
//! `examples/file-drop` (its `assets/` and `uploads/` are relative paths). The same `app()` that
//! hotswap swaps, served by `axum::serve`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = file_drop::app(file_drop::Uploads::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3003").await?;
    println!("serving http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
