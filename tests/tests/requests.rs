//! What a handler sees of a request, as a plain axum server would show it: bodies stream as the
//! client sends them (so axum's `DefaultBodyLimit` and streamed uploads behave as usual, and
//! hotswap's own limit is off unless configured), and `ConnectInfo<SocketAddr>` holds the
//! client's address.

use std::time::Duration;

use hotswap_tests::artifacts::fixture_crate_library;
use hotswap_tests::http::{get, request};
use hotswap_tests::in_process::InProcessEngine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads from `stream` until a whole response with a `content-length` body has arrived.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(read > 0, "closed before a response: {:?}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned)
                })
                .and_then(|length| length.trim().parse::<usize>().ok());
            if length.is_some_and(|length| body.len() >= length) {
                return text;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_reaches_the_handler_while_the_client_is_still_sending_it() {
    let running = InProcessEngine::start(|_| {}).await;
    running.swap(&fixture_crate_library("streams")).await;
    let mut stream = tokio::net::TcpStream::connect(running.address).await.unwrap();
    let head =
        "POST /first-chunk HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(format!("400\r\n{}\r\n", "x".repeat(1024)).as_bytes()).await.unwrap();
    // The rest of the body is not sent yet: the answer comes from the first chunk alone.
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("first chunk: "), "{response}");
    assert!(!response.contains("first chunk: 0 bytes"), "{response}");
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_upload_streams_under_the_apps_default_body_limit() {
    let running = InProcessEngine::start(|_| {}).await;
    running.swap(&fixture_crate_library("streams")).await;
    let upload = "u".repeat(20 << 20);
    let answer = request(running.address, "POST", "/upload", &upload).await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "20971520 bytes\n"));
    // The app's own limit decides: 413 from axum's `DefaultBodyLimit`, not from hotswap.
    let answer =
        request(running.address, "POST", "/small-upload", &"u".repeat(4096)).await.unwrap();
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(!answer.body.contains("max_body_bytes"), "{answer:?}");
    running.stop().await;

    // hotswap's guard, when configured, answers for a declared length without calling the app.
    let running = InProcessEngine::start(|config| config.max_body_bytes = 1 << 20).await;
    running.swap(&fixture_crate_library("streams")).await;
    let answer = request(running.address, "POST", "/upload", &"u".repeat(2 << 20)).await.unwrap();
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("`max_body_bytes`"), "{answer:?}");
    let answer = request(running.address, "POST", "/upload", &"u".repeat(1000)).await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "1000 bytes\n"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_info_is_the_clients_address() {
    let running = InProcessEngine::start(|_| {}).await;
    running.swap(&fixture_crate_library("streams")).await;
    let mut stream = tokio::net::TcpStream::connect(running.address).await.unwrap();
    let client = stream.local_addr().unwrap();
    stream
        .write_all(b"GET /peer HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(&format!("\r\n\r\n{client}\n")), "{client} in {response}");
    // A plain request on another connection gets its own address.
    let other = get(running.address, "/peer").await.unwrap();
    assert_ne!(other.body, format!("{client}\n"));
    assert!(other.body.starts_with("127.0.0.1:"), "{other:?}");
    running.stop().await;
}
