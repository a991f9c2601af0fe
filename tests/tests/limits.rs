//! `hotswap serve` at its limits: a flood of connections that never send a byte, and a second
//! Ctrl-C while a graceful stop waits for a request. (Its own test binary: it opens tens of
//! thousands of sockets.)

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hotswap_tests::binaries::App;
use hotswap_tests::http::get;

/// Opens `count` connections to `address` that never send anything, from a process of its own
/// (a process has only so many descriptors), and reports what the server did with them.
const HOLDER: &str = r#"
import socket, sys
count, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sockets, refused = [], 0
for _ in range(count):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect((host, port))
        sockets.append(s)
    except OSError:
        refused += 1
print(f"connected {len(sockets)} refused {refused}", flush=True)
sys.stdin.readline()
closed = answered_503 = still_open = 0
for s in sockets:
    s.setblocking(False)
    try:
        data = s.recv(4096)
        if b" 503 " in data:
            answered_503 += 1
        elif data == b"":
            closed += 1
        else:
            still_open += 1
    except BlockingIOError:
        still_open += 1
    except OSError:
        closed += 1
print(f"closed {closed} answered503 {answered_503} open {still_open}", flush=True)
"#;

struct Holder {
    child: std::process::Child,
    lines: BufReader<std::process::ChildStdout>,
}

impl Holder {
    fn start(count: usize, address: std::net::SocketAddr) -> Holder {
        let mut child = Command::new("python3")
            .args(["-c", HOLDER, &count.to_string(), &address.ip().to_string()])
            .arg(address.port().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let lines = BufReader::new(child.stdout.take().unwrap());
        Holder { child, lines }
    }

    fn line(&mut self) -> Vec<u64> {
        let mut line = String::new();
        self.lines.read_line(&mut line).unwrap();
        line.split_whitespace().filter_map(|word| word.parse().ok()).collect()
    }

    fn report(&mut self) -> Vec<u64> {
        self.child.stdin.as_mut().unwrap().write_all(b"look\n").unwrap();
        let counts = self.line();
        let _ = self.child.wait();
        counts
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_silent_connections_are_closed_and_nothing_floods_or_stops() {
    let app = App::scaffold("silent-flood");
    let config = std::fs::read_to_string(app.path("hotswap.toml")).unwrap();
    std::fs::write(
        app.path("hotswap.toml"),
        config.replace(
            "[server]\n",
            "[server]\nfirst_byte_timeout_ms = 3000\nmax_connections = 10000\n",
        ),
    )
    .unwrap();
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let log_lines_before = daemon.log().lines().count();

    let started = Instant::now();
    let mut holders: Vec<Holder> =
        (0..2).map(|_| Holder::start(10_000, daemon.address())).collect();
    let mut connected = 0;
    for holder in &mut holders {
        let counts = holder.line();
        connected += counts[0];
    }
    println!("{connected} connections made in {:?}", started.elapsed());
    // The editor socket answers while HTTP holds every connection it allows.
    let asked = Instant::now();
    let status = daemon.status().await;
    assert!(asked.elapsed() < Duration::from_secs(2), "status took {:?}", asked.elapsed());
    let open: u64 = status.generations.iter().map(|generation| generation.connections).sum();
    println!("status: {open} connections open");
    assert!(open <= 10_000, "the cap holds: {open}");

    // Past the first-byte timeout, silent connections are closed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (mut closed, mut answered_503, mut still_open) = (0, 0, 0);
    for holder in &mut holders {
        let counts = holder.report();
        closed += counts[0];
        answered_503 += counts[1];
        still_open += counts[2];
    }
    println!(
        "closed {closed}, answered 503 (over the cap) {answered_503}, still open {still_open}"
    );
    assert_eq!(still_open, 0, "every silent connection was closed");
    assert!(answered_503 > 0, "connections over the cap were refused with a 503");
    assert_eq!(closed + answered_503, connected);

    let response = get(daemon.address(), "/").await.unwrap();
    assert_eq!(response.status, 200, "the server serves again: {response:?}");
    let log = daemon.log();
    let new_lines: Vec<&str> = log.lines().skip(log_lines_before).collect();
    let refusals = new_lines.iter().filter(|line| line.contains("refused")).count();
    println!("{} new log lines, {refusals} about refusals", new_lines.len());
    assert!(refusals <= 3, "throttled: {refusals} lines about refusals:\n{}", new_lines.join("\n"));
    assert!(new_lines.len() < 100, "no flood:\n{}", new_lines.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_during_a_graceful_stop_stops_at_once() {
    let app = App::scaffold("second-ctrl-c");
    app.edit_library(
        "(&Method::GET, \"/health\") =>",
        "(&Method::GET, \"/slow\") => {\n                hotswap_handler::tokio::time::sleep(std::time::Duration::from_secs(60)).await;\n                text(StatusCode::OK, \"slow\\n\".to_owned())\n            }\n            (&Method::GET, \"/health\") =>",
    );
    let config = std::fs::read_to_string(app.path("hotswap.toml")).unwrap();
    std::fs::write(
        app.path("hotswap.toml"),
        config.replace("[swap]\n", "[swap]\ndrain_timeout_ms = 60000\n"),
    )
    .unwrap();
    let mut daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let slow = tokio::spawn(get(daemon.address(), "/slow"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.status().await.generations.first().map(|generation| generation.in_flight)
        != Some(1)
    {
        assert!(Instant::now() < deadline, "the slow request did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SAFETY: kill(2) on the daemon this test started.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGINT) };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(daemon.log().contains("press Ctrl-C again"), "{}", daemon.log());
    let second = Instant::now();
    // SAFETY: as above.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGINT) };
    let status = daemon.wait_for_exit(Duration::from_secs(5));
    println!("exited {:?} after the second SIGINT: {status}", second.elapsed());
    assert!(second.elapsed() < Duration::from_secs(2));
    assert_eq!(status.code(), Some(130), "{status}");
    slow.abort();
}
