//! The chat without hotswap, as it runs in production: `cargo run -p chat`. The same `app()`
//! that hotswap swaps, served by `axum::serve` with the peer addresses `ConnectInfo` reads.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = chat::app(chat::History::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3005").await?;
    println!("serving http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
}
