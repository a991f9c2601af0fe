//! The guestbook without hotswap, as it runs in production: `cargo run -p guestbook` in
//! `examples/guestbook` (`pages/` is a relative path). The same `app()` that hotswap swaps,
//! served by `axum::serve`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = guestbook::app(guestbook::Entries::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3004").await?;
    println!("serving http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
