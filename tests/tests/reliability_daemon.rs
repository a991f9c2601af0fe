//! Reliability of `hotswap serve` as a user runs it: a build that fails to link, cargo killed in
//! the middle of a build, the daemon killed with SIGKILL in the middle of a swap and started
//! again, and a generation whose thread never returns ended with its process. Each fault leaves
//! the last good generation serving (or, after SIGKILL, a clean restart).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hotswap_protocol::events::{BuildOutcome, BuiltWith, Event, Severity};
use hotswap_protocol::messages::{DidSave, DidSaveParams};
use hotswap_tests::artifacts::shared_handler_target_dir;
use hotswap_tests::binaries::{App, Daemon, wait_for_event};
use hotswap_tests::http::get;

const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Tells the daemon that `src/lib.rs` was saved.
async fn save(daemon: &Daemon, app: &App) {
    let saved = daemon
        .client()
        .await
        .request::<DidSave>(DidSaveParams { paths: vec![app.path("src/lib.rs")] })
        .await
        .unwrap();
    assert_eq!(saved.accepted.len(), 1, "{saved:?}");
}

/// Asserts that `/` answers `body` from `generation`.
async fn assert_serves(daemon: &Daemon, body: &str, generation: u64) {
    let response = get(daemon.address(), "/").await.unwrap();
    assert_eq!(
        (response.status, response.body.as_str(), response.generation()),
        (200, body, Some(generation))
    );
}

/// Processes whose parent is `parent`, with their command names.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let command = head.split_once('(').map(|(_, name)| name.to_owned()).unwrap_or_default();
        // After the command: state, then the parent's pid.
        if rest.split_whitespace().nth(1).and_then(|ppid| ppid.parse::<u32>().ok()) == Some(parent)
        {
            children.push((pid, command));
        }
    }
    children
}

/// Generation files left by daemon process `pid` in the shared target directory.
fn generation_files_of(pid: u32) -> Vec<PathBuf> {
    let directory = shared_handler_target_dir().join("generations");
    let Ok(entries) = std::fs::read_dir(directory) else { return Vec::new() };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&format!("{pid}-")))
        .map(|entry| entry.path())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_fails_to_link_keeps_the_old_code_and_says_why() {
    let app = App::scaffold("link-error");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let mut events = daemon.subscriber().await;
    // Compiles, then the linker cannot find the native library it asks for.
    app.edit_library(
        "fn text(",
        "#[link(name = \"hotswap_no_such_native_library\")]\nunsafe extern \"C\" {\n    fn hotswap_no_such_function() -> u32;\n}\n\n#[unsafe(no_mangle)]\npub extern \"C\" fn link_error_probe() -> u32 {\n    // SAFETY: never called; the link fails first.\n    unsafe { hotswap_no_such_function() }\n}\n\nfn text(",
    );
    save(&daemon, &app).await;
    let finished = wait_for_event(&mut events, BUILD_TIMEOUT, |event| {
        matches!(event, Event::BuildFinished(_))
    })
    .await;
    let Event::BuildFinished(finished) = finished else { unreachable!() };
    assert_eq!(finished.outcome, BuildOutcome::Failed, "{finished:?}");
    let error = finished
        .diagnostics
        .iter()
        .find(|diagnostic| diagnostic.severity == Severity::Error)
        .unwrap_or_else(|| panic!("an error diagnostic: {:?}", finished.diagnostics));
    let text = format!("{} {}", error.message, error.rendered.as_deref().unwrap_or_default());
    assert!(text.contains("linking with"), "the error is the linker's: {text}");
    assert!(text.contains("hotswap_no_such_native_library"), "it names the library: {text}");
    assert_serves(&daemon, "hello from hotswap\n", 1).await;

    let reloaded = app.hotswap(&["reload"]);
    assert!(!reloaded.status.success());
    assert!(stderr(&reloaded).contains("generation 1 keeps serving"), "{}", stderr(&reloaded));

    // Fixed: the next save swaps.
    app.edit_library("#[link(name = \"hotswap_no_such_native_library\")]", "#[link(name = \"c\")]");
    app.edit_library("hotswap_no_such_function() -> u32", "getpid() -> u32");
    app.edit_library("unsafe { hotswap_no_such_function() }", "unsafe { getpid() }");
    let fixed = app.hotswap(&["reload"]);
    assert!(fixed.status.success(), "{}", stderr(&fixed));
    assert_serves(&daemon, "hello from hotswap\n", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cargo_killed_in_the_middle_of_a_build_is_a_failed_build_that_says_so() {
    compiler_killed_in_the_middle_of_a_build("cargo-killed", "cargo").await;
}

/// The same for the fast path: rustc, run directly for a save of the handler's own sources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rustc_killed_in_the_middle_of_a_direct_build_is_a_failed_build_that_says_so() {
    compiler_killed_in_the_middle_of_a_build("rustc-killed", "rustc").await;
}

/// Kills `compiler` (`cargo`, or `rustc` run directly by the daemon) while it builds a reload.
async fn compiler_killed_in_the_middle_of_a_build(name: &str, compiler: &str) {
    let app = App::scaffold(name);
    if compiler == "cargo" {
        // Every build through cargo: the fast path would run rustc itself.
        let config = std::fs::read_to_string(app.path("hotswap.toml")).unwrap();
        let config = config.replacen("[build]\n", "[build]\ndirect_rustc = false\n", 1);
        assert!(config.contains("direct_rustc = false"), "{config}");
        std::fs::write(app.path("hotswap.toml"), config).unwrap();
    }
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let mut events = daemon.subscriber().await;
    app.edit_library("hello from hotswap\\n", "hello after cargo was killed\\n");
    // `hotswap reload` waits for the build and tells its outcome.
    let reload = {
        let (directory, runtime_dir) = (app.directory.clone(), app.runtime_dir.clone());
        std::thread::spawn(move || {
            hotswap_tests::binaries::hotswap(&directory, &runtime_dir, &["reload"])
        })
    };
    wait_for_event(&mut events, BUILD_TIMEOUT, |event| matches!(event, Event::BuildStarted(_)))
        .await;

    // SIGKILL the compiler the daemon started, as the OOM killer or a stray `pkill` would.
    let deadline = Instant::now() + Duration::from_secs(30);
    let child = loop {
        if let Some((pid, _)) =
            children_of(daemon.pid()).into_iter().find(|(_, command)| command == compiler)
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the daemon started no {compiler}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    // SAFETY: kill has no memory-safety preconditions; the pid is the daemon's compiler child.
    assert_eq!(unsafe { libc::kill(child as libc::pid_t, libc::SIGKILL) }, 0);

    let finished = wait_for_event(&mut events, BUILD_TIMEOUT, |event| {
        matches!(event, Event::BuildFinished(_))
    })
    .await;
    let Event::BuildFinished(finished) = finished else { unreachable!() };
    assert_eq!(
        finished.outcome,
        BuildOutcome::Failed,
        "a killed {compiler} is a failed build: {finished:?}"
    );
    let built_with = if compiler == "rustc" { BuiltWith::Rustc } else { BuiltWith::Cargo };
    assert_eq!(finished.built_with, Some(built_with));
    let reloaded = reload.join().unwrap();
    assert!(!reloaded.status.success());
    let message = stderr(&reloaded);
    assert!(
        message.contains("signal 9") || message.contains("SIGKILL"),
        "the outcome says {compiler} was killed: {message}"
    );
    assert!(message.contains("generation 1 keeps serving"), "{message}");
    assert_eq!(daemon.status().await.current_generation, Some(1));
    assert_serves(&daemon, "hello from hotswap\n", 1).await;

    // The next build is not disturbed by what the killed one left behind.
    let reloaded = app.hotswap(&["reload"]);
    assert!(reloaded.status.success(), "{}", stderr(&reloaded));
    assert_serves(&daemon, "hello after cargo was killed\n", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_in_the_middle_of_a_swap_restarts_clean() {
    let app = App::scaffold("killed-mid-swap");
    // Starting the app takes 3 s: long enough to kill the daemon inside the swap.
    app.edit_library(
        "App { counter: AtomicU64::new(state.counter) }",
        "std::thread::sleep(std::time::Duration::from_secs(3));\n        App { counter: AtomicU64::new(state.counter) }",
    );
    let mut daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let pid = daemon.pid();
    let mut events = daemon.subscriber().await;
    app.edit_library("hello from hotswap\\n", "hello after the crash\\n");
    save(&daemon, &app).await;
    let finished = wait_for_event(&mut events, BUILD_TIMEOUT, |event| {
        matches!(event, Event::BuildFinished(_))
    })
    .await;
    assert!(
        matches!(finished, Event::BuildFinished(ref finished) if finished.outcome == BuildOutcome::Succeeded),
        "{finished:?}"
    );
    // Generation 2's library is mapped in a host process and its app is starting: the swap is
    // under way.
    let deadline = Instant::now() + Duration::from_secs(30);
    let hosts = loop {
        let hosts: Vec<u32> = children_of(pid).into_iter().map(|(child, _)| child).collect();
        let loading = hosts.iter().any(|host| {
            std::fs::read_to_string(format!("/proc/{host}/maps"))
                .unwrap_or_default()
                .contains(&format!("/{pid}-g2-"))
        });
        if loading {
            break hosts;
        }
        assert!(Instant::now() < deadline, "generation 2 was never loaded:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(daemon.status().await.current_generation, Some(1), "the swap has not finished");
    daemon.kill();
    // (Read at once: another test's daemon starting in the shared target directory deletes the
    // files of daemons that are gone.)
    let left = generation_files_of(pid);
    assert!(daemon.endpoint.path().exists(), "SIGKILL leaves the socket behind");
    assert!(left.len() >= 2, "SIGKILL leaves the generation files behind: {left:?}");
    // Its generations end with it: nothing is left serving a dead daemon's socket.
    let deadline = Instant::now() + Duration::from_secs(10);
    while hosts.iter().any(|host| std::path::Path::new(&format!("/proc/{host}")).exists()) {
        assert!(Instant::now() < deadline, "host processes outlived the killed daemon: {hosts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let restarted = app.serve().await;
    restarted.wait_for_generation(1).await;
    assert!(
        restarted.log().contains("reclaiming the socket of a daemon that is gone"),
        "{}",
        restarted.log()
    );
    assert_serves(&restarted, "hello after the crash\n", 1).await;
    assert_eq!(
        generation_files_of(pid),
        Vec::<PathBuf>::new(),
        "the killed daemon's files were cleaned"
    );
    // The restarted daemon swaps as usual.
    let mut events = restarted.subscriber().await;
    app.edit_library("hello after the crash\\n", "hello again\\n");
    save(&restarted, &app).await;
    wait_for_event(&mut events, BUILD_TIMEOUT, |event| matches!(event, Event::SwapFinished(_)))
        .await;
    assert_serves(&restarted, "hello again\n", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_whose_thread_never_returns_is_ended_with_its_process() {
    let app = App::scaffold("never-returns");
    let config = std::fs::read_to_string(app.path("hotswap.toml")).unwrap();
    std::fs::write(
        app.path("hotswap.toml"),
        config.replace("[swap]\n", "[swap]\ndrain_timeout_ms = 500\n"),
    )
    .unwrap();
    app.edit_library(
        "(&Method::GET, \"/health\") =>",
        "(&Method::GET, \"/block\") => loop {\n                std::thread::sleep(std::time::Duration::from_secs(1));\n            },\n            (&Method::GET, \"/health\") =>",
    );
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let mut events = daemon.subscriber().await;
    let blocked = tokio::spawn(get(daemon.address(), "/block"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.status().await.generations.first().map(|generation| generation.in_flight)
        != Some(1)
    {
        assert!(Instant::now() < deadline, "the blocking request did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let old_pid = daemon.status().await.generations[0].pid;
    app.edit_library("hello from hotswap\\n", "hello from generation 2\\n");
    let reloaded = app.hotswap(&["reload"]);
    assert!(reloaded.status.success(), "{}", stderr(&reloaded));

    let retired = wait_for_event(&mut events, Duration::from_secs(60), |event| {
        matches!(event, Event::GenerationRetired(_))
    })
    .await;
    let Event::GenerationRetired(retired) = retired else { unreachable!() };
    assert_eq!((retired.generation, retired.requests_cut), (1, 1), "{retired:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{old_pid}")).exists(),
        "generation 1's process is gone, and its stuck thread with it"
    );
    let blocked = blocked.await.unwrap().unwrap();
    assert_eq!((blocked.status, blocked.generation()), (503, Some(1)), "{blocked:?}");
    let status = daemon.status().await;
    assert_eq!(status.ended_generations, 1);
    // And the CLI says so to a person.
    let shown = app.hotswap(&["status"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(
        stdout(&shown).contains("ended       1 generation"),
        "hotswap status counts it:\n{}",
        stdout(&shown)
    );
    assert_serves(&daemon, "hello from generation 2\n", 2).await;
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_stops_no_one_and_costs_bounded_memory() {
    use tokio::io::AsyncWriteExt;

    let app = App::scaffold("never-reads");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let before = resident_kib(daemon.pid());
    // A subscribed client that sends 100,000 requests and never reads an answer or an event.
    let mut stuck = tokio::net::UnixStream::connect(daemon.endpoint.path()).await.unwrap();
    stuck
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":1,\"clientName\":\"stuck\"}}\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe\"}\n")
        .await
        .unwrap();
    let flood: Vec<u8> = (0..100_000)
        .flat_map(|id| {
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"status\"}}\n", id + 2)
                .into_bytes()
        })
        .collect();
    let writer = tokio::spawn(async move {
        // Blocks once the daemon stops reading (its queue for this client is full).
        let _ = tokio::time::timeout(Duration::from_secs(120), stuck.write_all(&flood)).await;
        stuck
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Everyone else is served: status, a save that builds and swaps (events the stuck client
    // cannot take), HTTP.
    let mut events = daemon.subscriber().await;
    assert_eq!(daemon.status().await.pid, daemon.pid());
    app.edit_library("hello from hotswap\\n", "hello despite a stuck client\\n");
    save(&daemon, &app).await;
    wait_for_event(&mut events, BUILD_TIMEOUT, |event| matches!(event, Event::SwapFinished(_)))
        .await;
    assert_serves(&daemon, "hello despite a stuck client\n", 2).await;
    let during = resident_kib(daemon.pid());
    println!("daemon RSS: {before} KiB before, {during} KiB with a stuck client");
    assert!(during < before + 64 * 1024, "a stuck client cost {} KiB", during - before);

    // Hanging up frees it.
    writer.abort();
    drop(writer.await);
    assert_eq!(daemon.status().await.pid, daemon.pid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_overflow_is_reported_to_every_client_and_the_app_serves_again_with_its_state() {
    let app = App::scaffold("overflow-report");
    app.edit_library(
        "(&Method::GET, \"/health\") =>",
        "(&Method::GET, \"/deep\") => {\n                #[allow(unconditional_recursion)]\n                fn deep(n: u64) -> u64 {\n                    let frame = std::hint::black_box([n; 64]);\n                    deep(frame[1] + 1) + frame[2]\n                }\n                text(StatusCode::OK, format!(\"{}\\n\", deep(1)))\n            }\n            (&Method::GET, \"/health\") =>",
    );
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    for _ in 0..2 {
        let written =
            hotswap_tests::http::request(daemon.address(), "POST", "/counter", "").await.unwrap();
        assert_eq!(written.status, 200);
    }
    // The default snapshot interval is a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut events = daemon.subscriber().await;
    let mut printer = std::process::Command::new(hotswap_tests::binaries::binary("hotswap"))
        .arg("events")
        .current_dir(&app.directory)
        .env("XDG_RUNTIME_DIR", &app.runtime_dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let crashed_at = Instant::now();
    assert!(get(daemon.address(), "/deep").await.is_err(), "the crashing request gets no answer");
    let crash = wait_for_event(&mut events, Duration::from_secs(10), |event| {
        matches!(event, Event::GenerationCrashed(_))
    })
    .await;
    let Event::GenerationCrashed(crash) = crash else { unreachable!() };
    assert!(crash.cause.contains("stack overflow"), "{crash:?}");
    assert_eq!(crash.request.as_deref(), Some("GET /deep"), "{crash:?}");
    assert!(
        crash.last_words.iter().any(|line| line.contains("has overflowed its stack")),
        "{crash:?}"
    );
    // Serving again, with the counter, within a second.
    loop {
        if let Ok(response) = get(daemon.address(), "/counter").await {
            assert_eq!(response.body, "2\n");
            break;
        }
        assert!(crashed_at.elapsed() < Duration::from_secs(1), "not serving 1 s after the crash");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = daemon.status().await;
    assert_eq!(status.crashes, 1);
    let shown = app.hotswap(&["status"]);
    let shown = stdout(&shown);
    assert!(shown.contains("last crash") && shown.contains("stack overflow"), "{shown}");
    assert!(daemon.log().contains("has overflowed its stack"), "the daemon's log has it too");
    // `hotswap events` printed it to a person.
    // SAFETY: kill(2) on the child this test started.
    unsafe { libc::kill(printer.id() as i32, libc::SIGINT) };
    let printed = {
        use std::io::Read;
        let mut text = String::new();
        printer.stdout.take().unwrap().read_to_string(&mut text).unwrap();
        let _ = printer.wait();
        text
    };
    assert!(printed.contains("generation 1 crashed: stack overflow"), "{printed}");
    assert!(printed.contains("serves again after generation 1 crashed"), "{printed}");
}
