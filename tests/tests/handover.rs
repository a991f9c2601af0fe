//! What crosses a swap on the wire: WebSockets and server-sent event streams stay with the old
//! code until they end or the stream drain timeout, then end properly (close code 1012, a clean
//! end of the stream); pipelined requests are each answered once, in order, and nothing follows
//! a `connection: close`; a request head half-received at the swap is answered once.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hotswap_tests::artifacts::{fixture_crate_library_with, fixture_library};
use hotswap_tests::http::get;
use hotswap_tests::in_process::InProcessEngine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn streams(second: bool) -> std::path::PathBuf {
    fixture_crate_library_with("streams", if second { &["second"] } else { &[] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_keeps_the_old_code_until_the_stream_drain_timeout_then_gets_close_1012() {
    let stream_drain_timeout = Duration::from_millis(1500);
    let running = InProcessEngine::start(|config| {
        config.drain_timeout = Duration::from_millis(500);
        config.stream_drain_timeout = stream_drain_timeout;
    })
    .await;
    running.swap(&streams(false)).await;
    let url = format!("ws://{}/ws", running.address);
    let (mut socket, response) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(response.status(), 101);
    socket.send(Message::text("before the swap")).await.unwrap();
    let answer = socket.next().await.unwrap().unwrap();
    assert_eq!(answer.into_text().unwrap().as_str(), "first build: before the swap");
    let old_pid = running.engine.status().generations[0].pid;

    let swap_began = Instant::now();
    running.swap(&streams(true)).await;
    // The stream drain timeout runs from within the swap, which may take a while on a loaded
    // machine: the bounds are taken from its start and from its end.
    let swap_ended = Instant::now();
    // The open socket keeps talking to the code that accepted it.
    socket.send(Message::text("after the swap")).await.unwrap();
    let answer = socket.next().await.unwrap().unwrap();
    assert_eq!(answer.into_text().unwrap().as_str(), "first build: after the swap");
    let draining = running.engine.status();
    assert_eq!(
        draining.generations.iter().find(|generation| generation.pid == old_pid).map(|g| g.streams),
        Some(1),
        "status counts the open stream: {draining:?}"
    );
    // Then the old generation ends it with a close frame, code 1012 (service restart).
    let closed = match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        Ok(Some(Ok(Message::Close(frame)))) => frame,
        Ok(Some(Ok(other))) => panic!("expected a close frame, got {other:?}"),
        Ok(Some(Err(error))) => panic!("the socket broke instead of closing: {error}"),
        Ok(None) => panic!("the socket ended without a close frame"),
        Err(_) => panic!("no close frame within 10 s"),
    };
    let (since_swap_began, since_swap_ended) = (swap_began.elapsed(), swap_ended.elapsed());
    let frame = closed.expect("a close frame with a code");
    assert_eq!(frame.code, CloseCode::Restart, "{frame:?}");
    assert!(
        since_swap_began >= stream_drain_timeout
            && since_swap_ended < stream_drain_timeout + Duration::from_secs(5),
        "closed {since_swap_began:?} after the swap began, {since_swap_ended:?} after it ended"
    );
    // A new socket meets the new code.
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    socket.send(Message::text("reconnected")).await.unwrap();
    let answer = socket.next().await.unwrap().unwrap();
    assert_eq!(answer.into_text().unwrap().as_str(), "second build: reconnected");
    // And the old generation's process ends once its stream is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{old_pid}")).exists() {
        assert!(Instant::now() < deadline, "the old host outlived its last stream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sent_event_stream_ends_cleanly_at_the_stream_drain_timeout() {
    let stream_drain_timeout = Duration::from_millis(1500);
    let running = InProcessEngine::start(|config| {
        config.drain_timeout = Duration::from_millis(500);
        config.stream_drain_timeout = stream_drain_timeout;
    })
    .await;
    running.swap(&streams(false)).await;
    let mut stream = tokio::net::TcpStream::connect(running.address).await.unwrap();
    stream
        .write_all(b"GET /events HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    // A few events from the first build.
    while String::from_utf8_lossy(&received).matches("first build tick").count() < 3 {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the stream ended early");
        received.extend_from_slice(&buffer[..read]);
    }
    let swap_began = Instant::now();
    running.swap(&streams(true)).await;
    // The stream drain timeout runs from within the swap; on a loaded machine the swap itself
    // may take a while, so the bounds are taken from its start and from its end.
    let swap_ended = Instant::now();
    // It goes on with the old code, then ends with the last chunk of a chunked body.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let read = stream.read(&mut buffer).await.unwrap();
            if read == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..read]);
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end within 10 s");
    let (since_swap_began, since_swap_ended) = (swap_began.elapsed(), swap_ended.elapsed());
    let text = String::from_utf8_lossy(&received).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(
        text.ends_with("0\r\n\r\n"),
        "the stream ends with its last chunk, not a cut: {text:?}"
    );
    assert!(!text.contains("second build"), "only the old code wrote to it");
    let events_after_swap = text.matches("first build tick").count();
    assert!(events_after_swap >= 8, "events kept coming after the swap: {text}");
    assert!(
        since_swap_began >= stream_drain_timeout
            && since_swap_ended < stream_drain_timeout + Duration::from_secs(5),
        "ended {since_swap_began:?} after the swap began, {since_swap_ended:?} after it ended"
    );
    assert_eq!(get(running.address, "/").await.unwrap().body, "second build\n");
    running.stop().await;
}

/// Reads HTTP/1.1 responses with a `content-length` from `stream` until it closes, returning each
/// as (status line, headers, body).
async fn read_responses(stream: &mut tokio::net::TcpStream) -> Vec<(String, String, String)> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => data.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await;
    let mut responses = Vec::new();
    let mut rest = &data[..];
    while let Some(end) = rest.windows(4).position(|window| window == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
        let length: usize = headers
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned)
            })
            .and_then(|length| length.trim().parse().ok())
            .unwrap_or(0);
        let body_start = end + 4;
        let body =
            String::from_utf8_lossy(&rest[body_start..(body_start + length).min(rest.len())])
                .into_owned();
        responses.push((status.to_owned(), headers.to_ascii_lowercase(), body));
        rest = &rest[(body_start + length).min(rest.len())..];
    }
    responses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_across_a_swap_are_each_answered_once_and_in_order() {
    let running = InProcessEngine::start(|_| {}).await;
    running.swap(&fixture_library(&[])).await;
    let mut stream = tokio::net::TcpStream::connect(running.address).await.unwrap();
    let mut pipeline = String::new();
    for index in 0..11 {
        let close = if index == 10 { "connection: close\r\n" } else { "" };
        // Alternating lengths tell the answers apart, so their order shows.
        let ms = if index % 2 == 0 { 100 } else { 50 };
        pipeline.push_str(&format!("GET /slow?ms={ms} HTTP/1.1\r\nhost: localhost\r\n{close}\r\n"));
    }
    stream.write_all(pipeline.as_bytes()).await.unwrap();
    // Swap while the pipeline is being answered.
    tokio::time::sleep(Duration::from_millis(250)).await;
    running.swap(&fixture_library(&["second"])).await;
    let responses = read_responses(&mut stream).await;
    assert_eq!(responses.len(), 11, "{responses:#?}");
    for (index, (status, headers, body)) in responses.iter().enumerate() {
        assert!(status.starts_with("HTTP/1.1 200"), "{index}: {status}");
        let ms = if index % 2 == 0 { 100 } else { 50 };
        assert!(body.ends_with(&format!("slept {ms} ms\n")), "{index}: {body}");
        let closes = headers.contains("connection: close");
        assert!(!closes || index == 10, "response {index} says connection: close, more followed");
    }
    let generations: Vec<&str> = responses
        .iter()
        .map(|(_, headers, _)| {
            headers
                .lines()
                .find_map(|line| line.strip_prefix("hotswap-generation: "))
                .unwrap_or("?")
        })
        .collect();
    println!("pipelined responses came from generations {generations:?}");
    let mut sorted = generations.clone();
    sorted.sort();
    assert_eq!(generations, sorted, "never back to an older generation on one connection");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_half_received_at_a_swap_is_answered_once() {
    let running = InProcessEngine::start(|_| {}).await;
    running.swap(&fixture_library(&[])).await;
    let mut stream = tokio::net::TcpStream::connect(running.address).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nhost: local").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.swap(&fixture_library(&["second"])).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(b"host\r\nconnection: close\r\n\r\n").await.unwrap();
    let responses = read_responses(&mut stream).await;
    assert_eq!(responses.len(), 1, "{responses:#?}");
    let (status, _, body) = &responses[0];
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body == "first build\n" || body == "second build\n", "{body}");
    running.stop().await;
}
