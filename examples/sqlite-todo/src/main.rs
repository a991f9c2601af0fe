//! The to-do list without hotswap, as it runs in production: `cargo run -p sqlite-todo` in
//! `examples/sqlite-todo` (`data/todos.db` is a relative path). The same `app()` that hotswap
//! swaps, served by `axum::serve`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = sqlite_todo::app().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3006").await?;
    println!("serving http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
