//! The axum examples as their users run them: each example copied into an app of its own,
//! `hotswap serve -w DIR` started from another directory, real cargo builds, real HTTP,
//! WebSocket and server-sent event clients. Each takes a one-line change swapped in while a
//! client keeps asking, and its feature is checked over the wire: tower-http's layers and
//! TraceLayer's spans in the logs (notes-api), static files and a 20 MB upload streamed under
//! the app's `DefaultBodyLimit` (file-drop), askama and minijinja templates (guestbook),
//! WebSockets, SSE and `ConnectInfo` across a swap (chat), SQLite rows across a swap
//! (sqlite-todo). And the guide's adoption of a plain axum binary (docs/axum.md): at most 10
//! changed lines of Rust beside the moved router code, served by hotswap and by `cargo run`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hotswap_protocol::events::{BuildOutcome, BuiltWith};
use hotswap_protocol::messages::SharedDepsStatus;
use hotswap_tests::artifacts::{repository_root, shared_handler_target_dir};
use hotswap_tests::binaries::{App, Daemon, binary};
use hotswap_tests::http::{HttpResponse, get, request};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How long a rebuild after a one-line change may take on a busy machine.
const SWAP_TIMEOUT: Duration = Duration::from_secs(300);

fn example(name: &str) -> PathBuf {
    repository_root().join("examples").join(name)
}

/// The example's own `hotswap.toml` without `package` and `[server]`, which
/// [`App::copy_of_crate`] writes itself (an unused port, the shared build directory).
fn own_sections(name: &str) -> String {
    let text = std::fs::read_to_string(example(name).join("hotswap.toml")).unwrap();
    let mut kept = String::new();
    let mut in_server = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_server = line.trim() == "[server]";
        }
        if !in_server && !line.starts_with("package =") {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// `hotswap serve -w DIR ARGUMENTS...`, started in a directory that is not the app's, once its
/// first generation serves. The directory is kept as long as the daemon.
async fn serve_elsewhere(
    app: &App,
    arguments: &[&str],
    environment: &[(&str, &str)],
) -> (Daemon, tempfile::TempDir) {
    let elsewhere = tempfile::tempdir().unwrap();
    let directory = app.directory.to_str().unwrap();
    let mut all = vec!["-w", directory];
    all.extend_from_slice(arguments);
    let daemon = app.serve_from(elsewhere.path(), &all, environment).await;
    daemon.wait_for_generation(1).await;
    (daemon, elsewhere)
}

/// The number of builds the daemon started so far.
async fn builds_started(daemon: &Daemon) -> u64 {
    daemon.status().await.last_build.map_or(0, |build| build.build)
}

/// Replaces `old` with `new` in the app's file `relative` (a new file, as editors write) and
/// tells the daemon with `hotswap save`, as an editor would.
fn edit_and_save(app: &App, relative: &str, old: &str, new: &str) {
    let path = app.path(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(old), "{relative} does not contain {old:?}");
    std::fs::write(&path, text.replacen(old, new, 1)).unwrap();
    let saved = app.hotswap(&["save", relative]);
    assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
}

/// Waits until `generation` serves; a failed build after `builds_before` fails the test with
/// the log.
async fn wait_for_swap(daemon: &Daemon, generation: u64, builds_before: u64) {
    let deadline = Instant::now() + SWAP_TIMEOUT;
    loop {
        let status = daemon.status().await;
        if status.current_generation >= Some(generation) {
            return;
        }
        if let Some(build) = &status.last_build
            && build.build > builds_before
            && build.outcome == BuildOutcome::Failed
        {
            panic!("the build after the change failed:\n{}", daemon.log());
        }
        if let Some(refused) = &status.refused_swap {
            panic!("the swap was refused: {refused:?}\n{}", daemon.log());
        }
        assert!(Instant::now() < deadline, "no generation {generation}:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes a one-line change to `relative` and saves it while a client keeps asking `GET path`,
/// until the new code serves: every answer is a 200, from the old code or the new. Returns the
/// last answer (the new code's).
async fn swap_under_requests(
    app: &App,
    daemon: &Daemon,
    relative: &str,
    (old, new): (&str, &str),
    path: &'static str,
) -> HttpResponse {
    let serving = daemon.status().await.current_generation.expect("a generation serves");
    let builds = builds_started(daemon).await;
    let address = daemon.address();
    let stop = Arc::new(AtomicBool::new(false));
    let asking = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                answers.push(get(address, path).await.expect("every request is answered"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answers
        }
    });
    edit_and_save(app, relative, old, new);
    wait_for_swap(daemon, serving + 1, builds).await;
    // A few more answers from the new code.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = asking.await.unwrap();
    let failed: Vec<_> = answers.iter().filter(|answer| answer.status != 200).collect();
    assert!(failed.is_empty(), "answers during the swap that were not 200: {failed:?}");
    let generations: Vec<_> = answers.iter().map(HttpResponse::generation).collect();
    assert_eq!(generations.first(), Some(&Some(serving)), "{generations:?}");
    assert_eq!(generations.last(), Some(&Some(serving + 1)), "{generations:?}");
    answers.last().unwrap().clone()
}

/// A request on a connection of its own with any body; the response's head, and its body read
/// to the end.
async fn exchange<B>(
    address: SocketAddr,
    request: http::Request<B>,
) -> (http::response::Parts, Bytes)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (response, _connection) = open(address, request).await;
    let (parts, body) = response.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

/// Ends the task that drives a client connection.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A request on a connection of its own; the response with its body still to read, and the
/// connection (kept open as long as the guard lives).
async fn open<B>(
    address: SocketAddr,
    request: http::Request<B>,
) -> (http::Response<hyper::body::Incoming>, AbortOnDrop)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender.send_request(request).await.unwrap();
    (response, driver)
}

fn with_body(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Request<Full<Bytes>> {
    let mut builder = http::Request::builder().method(method).uri(path).header("host", "localhost");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::copy_from_slice(body.as_bytes()))).unwrap()
}

/// `bytes` bytes of a repeating pattern, sent as a chunked body in 64 KiB chunks: the server
/// cannot know the size before it has read it all.
fn streamed_upload(
    path: &str,
    bytes: usize,
) -> http::Request<StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>>> {
    const CHUNK: usize = 64 * 1024;
    let pattern: Bytes = (0..CHUNK).map(|index| (index % 251) as u8).collect::<Vec<_>>().into();
    let chunks = (0..bytes.div_ceil(CHUNK)).map(move |index| {
        let length = CHUNK.min(bytes - index * CHUNK);
        Ok(Frame::data(pattern.slice(..length)))
    });
    http::Request::builder()
        .method("PUT")
        .uri(path)
        .header("host", "localhost")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap()
}

/// Waits until `text` shows in `hotswap serve`'s log.
async fn wait_for_log(daemon: &Daemon, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = daemon.log();
        if log.contains(text) {
            return log;
        }
        assert!(Instant::now() < deadline, "{text:?} is not in the log:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_api_runs_its_tower_http_layers_and_logs_trace_layer_spans_under_rust_log() {
    // The example asks for TraceLayer's debug lines in `[log] filter`; here RUST_LOG does.
    let sections = own_sections("notes-api").replace("info,tower_http=debug", "warn");
    let app = App::copy_of_crate(&example("notes-api"), "examples-notes-api", &sections);
    // The swap at the end is built on the shared dependency library: TraceLayer logs through it.
    let environment = [("RUST_LOG", "tower_http=debug"), ("HOTSWAP_SHARED_DEPS", "1")];
    let (daemon, _elsewhere) = serve_elsewhere(&app, &[], &environment).await;
    let address = daemon.address();
    let directory = app.directory.to_str().unwrap().to_owned();
    let mut events = Command::new(binary("hotswap"))
        .args(["-w", &directory, "events"])
        .env("XDG_RUNTIME_DIR", &app.runtime_dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(app.runtime_dir.join("events.log")).unwrap())
        .spawn()
        .unwrap();
    // Writes need the bearer token (ValidateRequestHeaderLayer). The note is long enough for
    // CompressionLayer, which leaves bodies under 32 bytes alone.
    let note = r#"{"text": "buy milk, eggs, flour and a birthday candle"}"#;
    let json = ("content-type", "application/json");
    let refused = request(address, "POST", "/notes", note).await.unwrap();
    assert_eq!(refused.status, 401, "{refused:?}");
    let (created, _) = exchange(
        address,
        with_body("POST", "/notes", &[json, ("authorization", "Bearer let-me-in")], note),
    )
    .await;
    assert_eq!(created.status, 201);

    // Compression for clients that take it, and the timeout's 408.
    let (listed, body) =
        exchange(address, with_body("GET", "/notes", &[("accept-encoding", "gzip")], "")).await;
    assert_eq!(listed.headers.get("content-encoding").unwrap(), "gzip");
    assert_eq!(&body[..2], [0x1f, 0x8b]);
    let started = Instant::now();
    let slow = get(address, "/slow?ms=5000").await.unwrap();
    assert_eq!(slow.status, 408, "{slow:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());

    // TraceLayer's span, with its fields, in serve's log and in `hotswap events`.
    let span = "request{method=GET uri=/notes version=HTTP/1.1}";
    let log = wait_for_log(&daemon, span).await;
    assert!(log.contains("started processing request"), "{log}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let printed = loop {
        let _ = get(address, "/notes").await.unwrap();
        let printed = std::fs::read_to_string(app.runtime_dir.join("events.log")).unwrap();
        if printed.contains(span) || Instant::now() > deadline {
            break printed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let line = printed.lines().find(|line| line.contains(span)).unwrap_or_else(|| {
        panic!("no TraceLayer span in `hotswap events`:\n{printed}");
    });
    assert!(line.starts_with("[gen 1] Debug tower_http::trace::"), "{line}");

    // A one-line change, swapped under requests; the notes survive it.
    wait_for_shared_deps(&daemon).await;
    let last = swap_under_requests(
        &app,
        &daemon,
        "src/lib.rs",
        (r#"const TITLE: &str = "notes";"#, r#"const TITLE: &str = "my notes";"#),
        "/",
    )
    .await;
    assert_eq!(last.body, "my notes: 1 notes\n");
    let built = daemon.status().await.last_build.unwrap();
    assert_eq!(built.built_with, Some(BuiltWith::RustcSharedDeps), "{}", daemon.log());
    // The new code's spans, from the SDK and tower-http in the shared library.
    let deadline = Instant::now() + Duration::from_secs(10);
    let printed = loop {
        let _ = get(address, "/notes").await.unwrap();
        let printed = std::fs::read_to_string(app.runtime_dir.join("events.log")).unwrap();
        if printed.lines().any(|line| line.starts_with("[gen 2] ") && line.contains(span))
            || Instant::now() > deadline
        {
            break printed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = events.kill();
    let _ = events.wait();
    let line = printed
        .lines()
        .find(|line| line.starts_with("[gen 2] ") && line.contains(span))
        .unwrap_or_else(|| panic!("no span of generation 2 in `hotswap events`:\n{printed}"));
    assert!(line.starts_with("[gen 2] Debug tower_http::trace::"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_drop_serves_static_files_and_streams_a_20_mb_upload_under_its_body_limit() {
    let sections = own_sections("file-drop");
    let app = App::copy_of_crate(&example("file-drop"), "examples-file-drop", &sections);
    let (daemon, elsewhere) = serve_elsewhere(&app, &[], &[]).await;
    let address = daemon.address();

    // `ServeDir::new("assets")` finds the app's assets although serve runs elsewhere.
    let page = get(address, "/").await.unwrap();
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("<h1>File drop</h1>"), "{}", page.body);
    let style = get(address, "/style.css").await.unwrap();
    assert_eq!(style.headers.get("content-type").unwrap(), "text/css");

    // 20 MB, chunked, under the route's DefaultBodyLimit of 20 MiB: streamed to disk.
    const UPLOAD: usize = 20_000_000;
    let started = Instant::now();
    let (stored, body) = exchange(address, streamed_upload("/upload/big.bin", UPLOAD)).await;
    let took = started.elapsed();
    assert_eq!(stored.status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, format!("stored {UPLOAD} bytes at /files/big.bin\n"));
    let on_disk = app.path("uploads/big.bin");
    assert_eq!(std::fs::metadata(&on_disk).unwrap().len(), UPLOAD as u64);
    assert!(!elsewhere.path().join("uploads").exists(), "relative to the app, not to serve");
    let (fetched, body) = exchange(address, with_body("GET", "/files/big.bin", &[], "")).await;
    assert_eq!((fetched.status.as_u16(), body.len()), (200, UPLOAD));
    assert_eq!(body[..251], (0..251).map(|index| index as u8).collect::<Vec<_>>()[..]);
    eprintln!("a 20 MB streamed upload took {took:?}");

    // Past the limit: 413 from the app, and no file left.
    let (refused, body) = exchange(address, streamed_upload("/upload/huge.bin", 22_000_000)).await;
    assert_eq!(refused.status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(!app.path("uploads/huge.bin").exists());
    assert!(!app.path("uploads/.huge.bin.partial").exists());

    let last = swap_under_requests(
        &app,
        &daemon,
        "src/lib.rs",
        (r#"const TITLE: &str = "file drop";"#, r#"const TITLE: &str = "file drop box";"#),
        "/stats",
    )
    .await;
    assert_eq!(last.body, format!("file drop box: 1 files, {UPLOAD} bytes\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guestbook_rebuilds_for_askama_and_serves_a_saved_minijinja_page_without_a_build() {
    let sections = own_sections("guestbook");
    assert!(sections.contains("runtime_templates = [\"pages/**/*.html\"]"), "{sections}");
    let app = App::copy_of_crate(&example("guestbook"), "examples-guestbook", &sections);
    // On the shared dependency library: askama's derive expands against its askama.
    let (daemon, _elsewhere) = serve_elsewhere(&app, &[], &[("HOTSWAP_SHARED_DEPS", "1")]).await;
    let address = daemon.address();
    wait_for_shared_deps(&daemon).await;

    let form = ("content-type", "application/x-www-form-urlencoded");
    let (signed, _) =
        exchange(address, with_body("POST", "/sign", &[form], "name=Ada&message=Hello")).await;
    assert_eq!(signed.status, 303);
    let page = get(address, "/").await.unwrap();
    assert!(page.body.contains("<li><b>Ada</b>: Hello</li>"), "{}", page.body);
    let about = get(address, "/about").await.unwrap();
    assert!(about.body.contains("1 entry so far."), "{}", about.body);

    // askama's template is compiled in: its save builds and swaps, under requests, and the
    // entries survive.
    let last = swap_under_requests(
        &app,
        &daemon,
        "templates/guestbook.html",
        ("About this guestbook", "More about this guestbook"),
        "/",
    )
    .await;
    assert!(last.body.contains("More about this guestbook"), "{}", last.body);
    assert!(last.body.contains("<li><b>Ada</b>: Hello</li>"), "{}", last.body);
    let built = daemon.status().await.last_build.unwrap();
    assert_eq!(built.built_with, Some(BuiltWith::RustcSharedDeps), "{}", daemon.log());

    // minijinja reads pages/ at run time: the next request shows the saved page, no build.
    let builds = builds_started(&daemon).await;
    edit_and_save(&app, "pages/about.html", "so far.", "so far, and counting.");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let about = get(address, "/about").await.unwrap();
        if about.body.contains("1 entry so far, and counting.") {
            assert_eq!(about.generation(), Some(2));
            break;
        }
        assert!(Instant::now() < deadline, "the saved page does not show: {}", about.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(builds_started(&daemon).await, builds, "a runtime template starts no build");
    assert_eq!(daemon.status().await.current_generation, Some(2));
}

/// A WebSocket to the chat on a connection whose local address the test knows.
async fn chat_socket(
    address: SocketAddr,
) -> (tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, SocketAddr) {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let local = stream.local_addr().unwrap();
    let url = format!("ws://{address}/ws");
    let (socket, response) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(response.status(), 101);
    (socket, local)
}

async fn next_text(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> String {
    match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Server-sent events as they come: `(event, data)` pairs.
struct EventStream {
    body: hyper::body::Incoming,
    pending: String,
    _connection: AbortOnDrop,
}

impl EventStream {
    /// The next event, or `None` when the stream ended.
    async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let field = |name: &str| {
                    block.lines().find_map(|line| line.strip_prefix(name)).map(str::to_owned)
                };
                // Comments (`:` keep-alives) have no data.
                if let Some(data) = field("data: ") {
                    return Some((field("event: ").unwrap_or_default(), data));
                }
                continue;
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("an event within 10 s");
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
                Some(Err(error)) => panic!("the event stream broke: {error}"),
                None => return None,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_talks_over_websockets_and_sse_with_connect_info_and_keeps_them_until_the_drain() {
    let sections = own_sections("chat");
    assert!(sections.contains("stream_drain_timeout_ms = 3000"), "{sections}");
    let app = App::copy_of_crate(&example("chat"), "examples-chat", &sections);
    let (daemon, _elsewhere) = serve_elsewhere(&app, &[], &[]).await;
    let address = daemon.address();

    // ConnectInfo: the WebSocket is greeted with its own address.
    let (mut socket, socket_address) = chat_socket(address).await;
    assert_eq!(next_text(&mut socket).await, format!("welcome to the chat, {socket_address}"));

    // An event stream, opened with its own address too.
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let listener_address = stream.local_addr().unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender.send_request(with_body("GET", "/events", &[], "")).await.unwrap();
    assert_eq!(response.headers().get("content-type").unwrap(), "text/event-stream");
    let mut events =
        EventStream { body: response.into_body(), pending: String::new(), _connection: driver };
    assert_eq!(events.next().await, Some(("open".to_owned(), listener_address.to_string())));

    // A line said over HTTP reaches both, from the sayer's address.
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let sayer_address = stream.local_addr().unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let said = sender.send_request(with_body("POST", "/say", &[], "hello over http")).await;
    assert_eq!(said.unwrap().status(), 200);
    let line = format!("{sayer_address}: hello over http");
    assert_eq!(next_text(&mut socket).await, line);
    assert_eq!(events.next().await, Some(("line".to_owned(), line)));
    // And one said over the WebSocket.
    socket.send(Message::text("hello over the socket")).await.unwrap();
    let line = format!("{socket_address}: hello over the socket");
    assert_eq!(next_text(&mut socket).await, line);
    assert_eq!(events.next().await, Some(("line".to_owned(), line)));
    let who = get(address, "/who").await.unwrap().body;
    assert!(who.contains(&format!("{socket_address} websocket\n")), "{who}");
    assert!(who.contains(&format!("{listener_address} events\n")), "{who}");

    let last = swap_under_requests(
        &app,
        &daemon,
        "src/lib.rs",
        (
            r#"const WELCOME: &str = "welcome to the chat";"#,
            r#"const WELCOME: &str = "welcome to the chat room";"#,
        ),
        "/",
    )
    .await;
    let swapped_at = Instant::now();
    assert_eq!(last.body, "welcome to the chat room\n");

    // The open WebSocket stays with the code that accepted it, until the stream drain timeout.
    socket.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, format!("{socket_address}: still here"));
    assert_eq!(events.next().await.map(|(event, _)| event), Some("line".to_owned()));
    // A new one meets the new code; the history came across.
    let (mut new_socket, new_address) = chat_socket(address).await;
    assert_eq!(
        next_text(&mut new_socket).await,
        format!("welcome to the chat room, {new_address}")
    );
    let history = get(address, "/history").await.unwrap().body;
    assert!(history.contains(&format!("{sayer_address}: hello over http")), "{history}");

    // Then the old socket gets close code 1012 and the old event stream ends cleanly.
    let closed = match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        Ok(Some(Ok(Message::Close(frame)))) => frame.expect("a close frame with a code"),
        other => panic!("expected a close frame, got {other:?}"),
    };
    assert_eq!(closed.code, CloseCode::Restart, "{closed:?}");
    assert!(swapped_at.elapsed() < Duration::from_secs(8), "{:?}", swapped_at.elapsed());
    assert_eq!(events.next().await, None, "the old event stream ends");
    new_socket.send(Message::text("after the swap")).await.unwrap();
    assert_eq!(next_text(&mut new_socket).await, format!("{new_address}: after the swap"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_todo_keeps_its_rows_in_a_file_next_to_the_app_across_a_swap() {
    let sections = own_sections("sqlite-todo");
    let app = App::copy_of_crate(&example("sqlite-todo"), "examples-sqlite-todo", &sections);
    // On the shared dependency library (axum, rusqlite with SQLite's C code, serde...), as
    // `hotswap serve` builds by default once it is ready.
    let (daemon, elsewhere) = serve_elsewhere(&app, &[], &[("HOTSWAP_SHARED_DEPS", "1")]).await;
    let address = daemon.address();
    wait_for_shared_deps(&daemon).await;

    for title in ["water the plants", "call the plumber"] {
        let body = format!("{{\"title\": \"{title}\"}}");
        let created = request(address, "POST", "/todos", &body).await.unwrap();
        assert_eq!(created.status, 201, "{created:?}");
    }
    let done = request(address, "PATCH", "/todos/1", r#"{"done": true}"#).await.unwrap();
    assert_eq!(done.status, 200, "{done:?}");
    assert!(app.path("data/todos.db").is_file(), "the database is in the app's directory");
    assert!(!elsewhere.path().join("data").exists());

    let last = swap_under_requests(
        &app,
        &daemon,
        "src/lib.rs",
        (r#"const TITLE: &str = "todos";"#, r#"const TITLE: &str = "my todos";"#),
        "/",
    )
    .await;
    assert_eq!(last.body, "my todos: 2, 1 open\n");
    let built = daemon.status().await.last_build.unwrap();
    assert_eq!(built.built_with, Some(BuiltWith::RustcSharedDeps), "{}", daemon.log());
    let listed = get(address, "/todos").await.unwrap();
    assert_eq!(
        listed.body,
        r#"[{"id":1,"title":"water the plants","done":true},{"id":2,"title":"call the plumber","done":false}]"#
    );
    assert_eq!(listed.generation(), Some(2));
}

/// Waits until the daemon's shared dependency library is ready.
async fn wait_for_shared_deps(daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        match daemon.status().await.shared_deps {
            Some(SharedDepsStatus::Ready { .. }) => return,
            Some(SharedDepsStatus::Off { reason }) if !reason.contains("no cargo build") => {
                panic!("no shared dependency library: {reason}\n{}", daemon.log())
            }
            _ => {}
        }
        assert!(Instant::now() < deadline, "no shared library in 15 min:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A code block of docs/axum.md: the one after the line `<!-- adoption: NAME -->`.
fn guide_block(guide: &str, name: &str) -> String {
    let marker = format!("<!-- adoption: {name} -->");
    let after =
        &guide[guide.find(&marker).unwrap_or_else(|| panic!("no {marker}")) + marker.len()..];
    let start = after.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let length = after[start..].find("\n```").expect("the end of the block");
    format!("{}\n", &after[start..start + length])
}

/// The lines of Rust that count: not blank, not comments, without indentation.
fn code_lines(source: &str) -> Vec<String> {
    source
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .map(str::to_owned)
        .collect()
}

/// `lines` without those from the line containing `from` to the next line containing `to`.
fn without_block(lines: &[String], from: &str, to: &str) -> Vec<String> {
    let start = lines.iter().position(|line| line.contains(from)).expect("the block starts");
    let end = start + lines[start..].iter().position(|line| line.contains(to)).expect("it ends");
    lines[..start].iter().chain(&lines[end + 1..]).cloned().collect()
}

/// Lines of `a` that `b` does not have (as many times as `a` has them more often).
fn missing_from(a: &[String], b: &[String]) -> Vec<String> {
    let mut left = b.to_vec();
    a.iter()
        .filter(|line| match left.iter().position(|other| other == *line) {
            Some(index) => {
                left.swap_remove(index);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_adoption_changes_at_most_10_lines_and_serves_with_hotswap_and_cargo_run() {
    let guide = std::fs::read_to_string(repository_root().join("docs/axum.md")).unwrap();
    let before = guide_block(&guide, "before src/main.rs");
    let after_lib = guide_block(&guide, "after src/lib.rs");
    let after_main = guide_block(&guide, "after src/main.rs");

    // The router code moves into `app()`: its lines are left out on both sides (the function's
    // own first and last lines count). Every other line added or removed counts, an edited line
    // twice.
    let before_lines = without_block(&code_lines(&before), "let app = Router::new()", ";");
    let mut after_lines =
        without_block(&code_lines(&after_lib), "Router::new()", "with_state(state)");
    after_lines.extend(code_lines(&after_main));
    let added = missing_from(&after_lines, &before_lines);
    let removed = missing_from(&before_lines, &after_lines);
    assert!(
        added.len() + removed.len() <= 10,
        "the adoption changes {} lines:\nadded {added:#?}\nremoved {removed:#?}",
        added.len() + removed.len()
    );
    let counted = format!("{} changed lines of Rust", added.len() + removed.len());
    assert!(
        guide.contains(&counted),
        "the guide says how many: {counted:?}\n{added:#?}\n{removed:#?}"
    );

    // The plain binary, as its user has it: a todo list with TraceLayer and static files.
    let temp = tempfile::tempdir().unwrap();
    let directory = temp.path().join("todo-shop");
    std::fs::create_dir_all(directory.join("src")).unwrap();
    std::fs::create_dir_all(directory.join("assets")).unwrap();
    std::fs::write(directory.join("Cargo.toml"), guide_block_toml(&guide)).unwrap();
    std::fs::write(directory.join("src/main.rs"), &before).unwrap();
    std::fs::write(directory.join("assets/index.html"), "<h1>todo shop</h1>\n").unwrap();
    std::fs::copy(repository_root().join("examples/Cargo.lock"), directory.join("Cargo.lock"))
        .unwrap();
    let app = App::existing(directory.clone(), temp);

    // `hotswap init`, then the guide's code.
    let initialized = app.hotswap(&["init", "--listen", "127.0.0.1:0"]);
    assert!(initialized.status.success(), "{}", String::from_utf8_lossy(&initialized.stderr));
    std::fs::write(directory.join("src/lib.rs"), &after_lib).unwrap();
    std::fs::write(directory.join("src/main.rs"), &after_main).unwrap();
    let target = shared_handler_target_dir();
    let mut config = std::fs::read_to_string(directory.join("hotswap.toml")).unwrap();
    config.push_str(&format!("\n[build]\ntarget_dir = {:?}\n", target.display().to_string()));
    std::fs::write(directory.join("hotswap.toml"), config).unwrap();

    let (daemon, _elsewhere) = serve_elsewhere(&app, &["-v"], &[]).await;
    let address = daemon.address();
    let created = request(address, "POST", "/todos", r#"{"title": "ship it"}"#).await.unwrap();
    assert_eq!(created.status, 201, "{created:?}");
    assert!(get(address, "/").await.unwrap().body.contains("todo shop"), "ServeDir finds assets/");
    wait_for_log(&daemon, "request{method=POST uri=/todos version=HTTP/1.1}").await;
    let last = swap_under_requests(
        &app,
        &daemon,
        "src/lib.rs",
        (
            "let todo = Todo { id, title: new.title, done: false };",
            "let todo = Todo { id, title: new.title.to_uppercase(), done: false };",
        ),
        "/todos",
    )
    .await;
    assert_eq!(last.body, r#"[{"id":1,"title":"ship it","done":false}]"#, "the state survived");
    let created = request(address, "POST", "/todos", r#"{"title": "ship it"}"#).await.unwrap();
    assert!(created.body.contains("SHIP IT"), "{created:?}");
    drop(daemon);

    // `cargo run` serves the same app as before, without hotswap.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--quiet", "--bin", "todo-shop", "--target-dir"])
        .arg(&target)
        .current_dir(&directory)
        .status()
        .unwrap();
    assert!(built.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(target.join("debug/todo-shop"))
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .current_dir(&directory)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let created = loop {
        match request(address, "POST", "/todos", r#"{"title": "ship it"}"#).await {
            Ok(answer) => break answer,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(error) => panic!("the plain binary does not answer: {error}"),
        }
    };
    let page = get(address, "/").await;
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(created.body, r#"{"id":1,"title":"SHIP IT","done":false}"#);
    assert!(created.generation().is_none(), "no hotswap in the plain binary");
    assert!(page.unwrap().body.contains("todo shop"));
}

/// The `Cargo.toml` of the guide's plain binary: the block after `<!-- adoption: before
/// Cargo.toml -->`.
fn guide_block_toml(guide: &str) -> String {
    let marker = "<!-- adoption: before Cargo.toml -->";
    let after = &guide[guide.find(marker).expect("the guide has the manifest") + marker.len()..];
    let start = after.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let length = after[start..].find("\n```").expect("the end of the block");
    format!("{}\n\n[workspace]\n", &after[start..start + length])
}
