//! Security of a running `hotswap serve`: a private socket directory and socket, other users
//! refused (a client run as `nobody`, first through the directory's mode, then by the daemon's
//! own peer check), saves outside the handler's packages ignored, no message that makes the
//! daemon run a command or load a library it names, and HTTP bodies over the limit refused.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hotswap_protocol::events::Event;
use hotswap_protocol::messages::{DidSave, DidSaveParams};
use hotswap_tests::artifacts::fixture_library;
use hotswap_tests::binaries::{App, binary, wait_for_event};
use hotswap_tests::http::{get, request};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `command` run as the user `nobody`, with `setpriv` or `runuser` from util-linux (Debian's
/// `util-linux` package, always installed) or `su`, whichever exists.
fn as_nobody(program: &Path, arguments: &[&str], directory: &Path, runtime_dir: &Path) -> Output {
    let exists = |tool: &str| {
        ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|dir| Path::new(dir).join(tool).exists())
    };
    let mut command = if exists("setpriv") {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program)
            .args(arguments);
        command
    } else if exists("runuser") {
        let mut command = Command::new("runuser");
        command.args(["-u", "nobody", "--"]).arg(program).args(arguments);
        command
    } else if exists("su") {
        let line = std::iter::once(program.to_string_lossy().into_owned())
            .chain(arguments.iter().map(|argument| (*argument).to_owned()))
            .map(|word| format!("'{}'", word.replace('\'', "'\\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = Command::new("su");
        command.args(["-s", "/bin/sh", "nobody", "-c", &line]);
        command
    } else {
        panic!(
            "none of setpriv, runuser or su exists: install util-linux (apt-get install util-linux) to run this test"
        );
    };
    command
        .current_dir(directory)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("the client runs as nobody")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_users_cannot_reach_the_daemon_or_talk_to_it() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test runs a client as `nobody` and needs root (CI runs as root)");
    }
    let app = App::scaffold("other-user");
    let daemon = app.serve().await;
    let socket = daemon.endpoint.path().to_path_buf();
    let socket_dir = socket.parent().unwrap().to_path_buf();
    assert_eq!(mode(&socket_dir), 0o700, "the socket directory is private");
    assert_eq!(mode(&socket) & 0o777, 0o600, "the socket is private");
    let lock = socket.with_extension("lock");
    assert_eq!(mode(&lock) & 0o022, 0, "the lock file is writable by its owner only");

    // `nobody` may read the app and run the binary, as on a shared machine (a copy of the
    // binary: the checkout may sit in a directory only root can enter).
    let temp_root = app.directory.parent().unwrap();
    set_mode(temp_root, 0o755);
    let client = temp_root.join("hotswap");
    std::fs::copy(binary("hotswap"), &client).unwrap();
    set_mode(&client, 0o755);
    for ancestor in client.ancestors().skip(1) {
        assert!(mode(ancestor) & 0o001 != 0, "{} must be searchable by nobody", ancestor.display());
    }

    // 1. The private directory stops the connection before it reaches the daemon.
    let refused = as_nobody(&client, &["status"], &app.directory, &app.runtime_dir);
    let message = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        !refused.status.success(),
        "nobody got a status:\n{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    assert!(
        message.contains("ermission denied") || message.contains("no hotswap daemon"),
        "{message}"
    );

    // 2. Someone loosened the modes: the connection succeeds, and the daemon's own peer check
    //    refuses it.
    set_mode(&socket_dir, 0o711);
    set_mode(&socket, 0o666);
    // Several times: the daemon's answer races the client's first write.
    for attempt in 1..=10 {
        let refused = as_nobody(&client, &["status"], &app.directory, &app.runtime_dir);
        let message = String::from_utf8_lossy(&refused.stderr).into_owned();
        assert!(
            !refused.status.success(),
            "nobody got a status:\n{}",
            String::from_utf8_lossy(&refused.stdout)
        );
        assert!(
            message.contains("the client runs as uid 65534, the daemon as uid 0"),
            "attempt {attempt}: the refusal says why: {message}"
        );
    }
    assert!(daemon.log().contains("refused a client"), "the daemon logs it:\n{}", daemon.log());

    // The owner is still served, and so is HTTP.
    set_mode(&socket_dir, 0o700);
    set_mode(&socket, 0o600);
    assert_eq!(daemon.status().await.pid, daemon.pid());
    daemon.wait_for_generation(1).await;
    assert_eq!(get(daemon.address(), "/").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_outside_the_handler_are_ignored_however_they_are_spelled() {
    let app = App::scaffold("hostile-saves");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let mut events = daemon.subscriber().await;
    let outside = tempfile::tempdir().unwrap();
    let outside_file = outside.path().join("outside.rs");
    std::fs::write(&outside_file, "// not the app\n").unwrap();
    std::os::unix::fs::symlink(&outside_file, app.path("src/link-to-outside.rs")).unwrap();
    let target = hotswap_tests::artifacts::shared_handler_target_dir();
    let hostile: Vec<PathBuf> = vec![
        "/etc/passwd".into(),
        outside_file.clone(),
        // Climbing out of the app with `..`, to a file that exists and to one that does not.
        app.path(&format!("src{}", "/..".repeat(app.directory.components().count())))
            .join(outside_file.strip_prefix("/").unwrap()),
        app.path("src/../../../../../../../etc/shadow"),
        app.path("src/../../no-such-dir/lib.rs"),
        app.path("../sibling/src/lib.rs"),
        // A symbolic link inside the app to a file outside it.
        app.path("src/link-to-outside.rs"),
        // Relative, empty, NUL, very long.
        "src/lib.rs".into(),
        "".into(),
        PathBuf::from("/tmp/with\0nul.rs"),
        PathBuf::from(format!("/{}", "x/".repeat(5000))),
        // The build output, where cargo writes.
        target.join("debug/build/x.rs"),
        app.path("target/debug/x.rs"),
    ];
    let client = daemon.client().await;
    let answer = client.request::<DidSave>(DidSaveParams { paths: hostile.clone() }).await.unwrap();
    assert!(answer.accepted.is_empty(), "accepted hostile paths: {:?}", answer.accepted);
    assert_eq!(answer.ignored.len(), hostile.len(), "{answer:?}");
    for ignored in &answer.ignored {
        assert!(!ignored.reason.is_empty(), "each ignored path says why: {ignored:?}");
    }

    // A genuine save right after: its build names only that file, so nothing above started one.
    let genuine = app.path("src/lib.rs");
    let answer =
        client.request::<DidSave>(DidSaveParams { paths: vec![genuine.clone()] }).await.unwrap();
    assert_eq!(answer.accepted, vec![genuine.clone()]);
    let started =
        wait_for_event(&mut events, BUILD_TIMEOUT, |event| matches!(event, Event::BuildStarted(_)))
            .await;
    let Event::BuildStarted(started) = started else { unreachable!() };
    assert_eq!(started.paths, vec![genuine], "only the genuine save reached the build");
}

/// A raw connection to the daemon's socket.
struct RawClient {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl RawClient {
    async fn connect(path: &Path) -> RawClient {
        let (read, writer) = tokio::net::UnixStream::connect(path).await.unwrap().into_split();
        RawClient { reader: BufReader::new(read), writer }
    }

    /// Sends one line and returns the answer to it (events in between are skipped).
    async fn ask(&mut self, line: &str) -> serde_json::Value {
        self.writer.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        loop {
            let mut answer = String::new();
            let read = tokio::time::timeout(BUILD_TIMEOUT, self.reader.read_line(&mut answer))
                .await
                .expect("the daemon answers");
            assert!(read.unwrap() > 0, "the daemon closed the connection after {line}");
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
            if answer.get("id").is_some() {
                return answer;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_makes_the_daemon_run_a_command_or_load_a_library_it_names() {
    let app = App::scaffold("named-paths");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let bait = tempfile::tempdir().unwrap();
    let marker = bait.path().join("command-ran");
    // A "cargo" and a "library" the messages name. If the daemon ever ran the script or
    // loaded the library, the marker would exist, or the fixture's greeting would answer.
    let script = bait.path().join("fake-cargo");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    set_mode(&script, 0o755);
    let library = bait.path().join("libbait.so");
    std::fs::copy(fixture_library(&[]), &library).unwrap();
    let library_in_app = app.path("libbait.so");
    std::fs::copy(fixture_library(&[]), &library_in_app).unwrap();
    let shell = format!(
        "$(touch {}) `touch {}`; touch {}",
        marker.display(),
        marker.display(),
        marker.display()
    );
    let named = serde_json::json!({
        "command": shell, "cmd": [script, "-c", shell], "cargo": script, "program": script,
        "artifact": library, "library": library, "path": library, "paths": [library_in_app],
        "package": "../../etc", "manifest": "/etc/passwd", "targetDir": bait.path(), "features": [shell],
        "env": {"CARGO": script, "RUSTC": script, "LD_PRELOAD": library},
    });

    let mut raw = RawClient::connect(daemon.endpoint.path()).await;
    let answer = raw
        .ask(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": 1, "clientName": shell, "clientVersion": shell, "extra": named}})
            .to_string())
        .await;
    assert_eq!(answer["result"]["protocolVersion"], 1, "{answer}");
    for (index, method) in [
        "status",
        "subscribe",
        "didSave",
        "reload",
        "rollback",
        "cancelBuild",
        "exec",
        "load",
        "run",
        "build",
        "swap",
        "spawn",
    ]
    .into_iter()
    .enumerate()
    {
        let id = index + 2;
        let mut params = named.clone();
        if method == "didSave" {
            params["paths"] = serde_json::json!([library_in_app, script, library]);
        }
        let answer = raw.ask(&serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()).await;
        if ["exec", "load", "run", "build", "swap", "spawn"].contains(&method) {
            assert_eq!(answer["error"]["code"], -32601, "{method}: {answer}");
        }
        if method == "reload" {
            // The reload builds the app's own package with the cargo the daemon was started with.
            assert_eq!(answer["result"]["outcome"], "unchanged", "{answer}");
        }
    }
    // Every load the daemon and its generations made is of its own build's artifact, never a
    // named file.
    let mut processes = vec![daemon.pid()];
    processes.extend(daemon.status().await.generations.iter().map(|generation| generation.pid));
    for pid in processes {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        assert!(!maps.contains("libbait"), "process {pid} mapped a library a message named");
    }
    assert!(!marker.exists(), "a command named in a message ran");
    let response = get(daemon.address(), "/").await.unwrap();
    assert_eq!(response.body, "hello from hotswap\n", "the app's own code serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bodies_over_the_configured_limit_get_413() {
    let app = App::scaffold("body-limit");
    let config = std::fs::read_to_string(app.path("hotswap.toml")).unwrap();
    std::fs::write(
        app.path("hotswap.toml"),
        config.replace("[server]\n", "[server]\nmax_body_bytes = 1024\n"),
    )
    .unwrap();
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let address = daemon.address();
    let small = request(address, "POST", "/counter", &"x".repeat(1024)).await.unwrap();
    assert_eq!((small.status, small.body.as_str()), (200, "1\n"));
    let large = request(address, "POST", "/counter", &"x".repeat(1025)).await.unwrap();
    assert_eq!(large.status, 413, "{large:?}");
    let huge = request(address, "POST", "/counter", &"x".repeat(8 * 1024 * 1024)).await;
    if let Ok(huge) = huge {
        assert_eq!(huge.status, 413, "{huge:?}");
    }
    let counter = get(address, "/counter").await.unwrap();
    assert_eq!(counter.body, "1\n", "refused requests never reached the handler");
}
