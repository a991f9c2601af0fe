//! The daemon's life: one per workspace, reclaiming after SIGKILL, stopping gracefully, idling
//! without CPU, and a socket that survives bad clients.

use std::time::Duration;

use hotswap_protocol::jsonrpc::error_code;
use hotswap_protocol::messages::{NoParams, Status};
use hotswap_tests::binaries::App;
use hotswap_tests::http::get;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A raw connection to the daemon's socket, the way a script would talk to it.
struct RawClient {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl RawClient {
    async fn connect(path: &std::path::Path) -> RawClient {
        let stream = tokio::net::UnixStream::connect(path).await.unwrap();
        let (read, writer) = stream.into_split();
        RawClient { reader: BufReader::new(read), writer }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    async fn answer(&mut self) -> serde_json::Value {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line))
            .await
            .unwrap();
        assert!(read.unwrap() > 0, "the daemon closed the connection");
        serde_json::from_str(&line).unwrap()
    }

    async fn error_code(&mut self, bytes: &[u8]) -> i64 {
        self.send(bytes).await;
        let answer = self.answer().await;
        answer["error"]["code"].as_i64().unwrap_or_else(|| panic!("not an error: {answer}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_errors_and_many_clients_are_served() {
    let app = App::scaffold("socket-abuse");
    let daemon = app.serve().await;
    let socket = daemon.endpoint.path().to_path_buf();
    let mut raw = RawClient::connect(&socket).await;

    assert_eq!(
        raw.error_code(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}\n").await,
        error_code::NOT_INITIALIZED
    );
    raw.send(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\",\"params\":{\"protocolVersion\":1,\"clientName\":\"raw\"}}\n").await;
    assert_eq!(raw.answer().await["result"]["protocolVersion"], 1);
    assert_eq!(raw.error_code(b"not json at all\n").await, error_code::PARSE_ERROR);
    assert_eq!(
        raw.error_code(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"\xff\xfe\"}\n").await,
        error_code::PARSE_ERROR
    );
    assert_eq!(
        raw.error_code(b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"deploy\"}\n").await,
        error_code::METHOD_NOT_FOUND
    );
    assert_eq!(
        raw.error_code(
            b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"didSave\",\"params\":{\"paths\":7}}\n"
        )
        .await,
        error_code::INVALID_PARAMS
    );
    let deep = format!("{}{}\n", "[".repeat(5000), "]".repeat(5000));
    assert_eq!(raw.error_code(deep.as_bytes()).await, error_code::PARSE_ERROR);
    // 10 MiB on one line: refused, skipped, and the connection goes on.
    let mut huge = vec![b'x'; 10 * 1024 * 1024];
    huge.push(b'\n');
    assert_eq!(raw.error_code(&huge).await, error_code::INVALID_REQUEST);
    raw.send(b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"status\"}\n").await;
    assert_eq!(raw.answer().await["id"], 6);

    // A flood of 10,000 requests on one connection is answered in full.
    let flood: Vec<u8> = (0..10_000)
        .flat_map(|id| {
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"status\"}}\n", 100 + id)
                .into_bytes()
        })
        .collect();
    let mut writer = raw.writer;
    let sender = tokio::spawn(async move {
        writer.write_all(&flood).await.unwrap();
        writer
    });
    let mut reader = raw.reader;
    for expected in 0..10_000 {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(60), reader.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(answer["id"], 100 + expected);
    }
    drop(sender.await.unwrap());

    // Half-open connections (connect, send nothing; send half a line) do not block anyone.
    let _silent = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let mut half = tokio::net::UnixStream::connect(&socket).await.unwrap();
    half.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,").await.unwrap();

    // 200 clients at once.
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let endpoint = daemon.endpoint.clone();
        clients.spawn(async move {
            let (client, _) =
                hotswap_protocol::Client::connect_and_initialize(&endpoint, "many").await.unwrap();
            client.request::<Status>(NoParams {}).await.unwrap().pid
        });
    }
    while let Some(pid) = clients.join_next().await {
        assert_eq!(pid.unwrap(), daemon.pid());
    }
    daemon.wait_for_generation(1).await;
    assert_eq!(
        get(daemon.address(), "/").await.unwrap().status,
        200,
        "the daemon still serves HTTP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_per_workspace_and_a_killed_one_is_reclaimed() {
    let app = App::scaffold("reclaim");
    let mut daemon = app.serve().await;
    daemon.wait_for_generation(1).await;

    let second = app.hotswap(&["serve"]);
    assert!(!second.status.success());
    let message = stderr(&second);
    assert!(
        message.contains(&format!("a hotswap daemon (pid {}) already serves", daemon.pid())),
        "{message}"
    );

    let pid = daemon.pid();
    daemon.kill();
    assert!(daemon.endpoint.path().exists(), "SIGKILL leaves the socket file behind");
    let generations = std::fs::read_dir(
        hotswap_tests::artifacts::shared_handler_target_dir().join("generations"),
    )
    .unwrap()
    .flatten()
    .filter(|entry| entry.file_name().to_string_lossy().starts_with(&format!("{pid}-")))
    .count();
    assert!(generations > 0, "the killed daemon left its generation files");

    let restarted = app.serve().await;
    restarted.wait_for_generation(1).await;
    assert!(
        restarted.log().contains("reclaiming the socket of a daemon that is gone"),
        "{}",
        restarted.log()
    );
    assert_eq!(get(restarted.address(), "/").await.unwrap().body, "hello from hotswap\n");
    let left = std::fs::read_dir(
        hotswap_tests::artifacts::shared_handler_target_dir().join("generations"),
    )
    .unwrap()
    .flatten()
    .filter(|entry| entry.file_name().to_string_lossy().starts_with(&format!("{pid}-")))
    .count();
    assert_eq!(left, 0, "the killed daemon's generation files were cleaned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_finishes_in_flight_requests() {
    let app = App::scaffold("graceful-stop");
    app.edit_library(
        "(&Method::GET, \"/health\") =>",
        "(&Method::GET, \"/slow\") => {\n                hotswap_handler::tokio::time::sleep(std::time::Duration::from_millis(1500)).await;\n                text(StatusCode::OK, \"slow and done\\n\".to_owned())\n            }\n            (&Method::GET, \"/health\") =>",
    );
    let mut daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let address = daemon.address();
    let slow = tokio::spawn(get(address, "/slow"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = app.hotswap(&["stop"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let response = slow.await.unwrap().unwrap();
    assert_eq!((response.status, response.body.as_str()), (200, "slow and done\n"));
    let status = daemon.wait_for_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    assert!(!daemon.endpoint.path().exists(), "the socket is removed");
    assert!(get(address, "/").await.is_err(), "nothing listens any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_daemon_uses_no_cpu() {
    let app = App::scaffold("idle-cpu");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    // Let the swap settle, then measure 30 s of doing nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.pid())).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat (11 and 12 after the command name).
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let before = cpu();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let used_ms = (cpu() - before) * 1000 / ticks_per_second;
    assert!(used_ms < 50, "the idle daemon used {used_ms} ms of CPU in 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_request_is_answered_before_the_daemon_goes() {
    let app = App::scaffold("answered-shutdown");
    for _ in 0..3 {
        let mut daemon = app.serve().await;
        let client = daemon.client().await;
        let answer = client.request::<hotswap_protocol::messages::Shutdown>(NoParams {}).await;
        assert!(answer.is_ok(), "shutdown was not answered: {answer:?}");
        assert!(daemon.wait_for_exit(Duration::from_secs(60)).success());
    }
}
