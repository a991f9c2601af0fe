//! The `hotswap` binary as a user runs it: `hotswap new`, `hotswap serve`, saves, reloads,
//! broken builds, and the socket protocol spoken by a plain client.

use std::time::Duration;

use hotswap_protocol::events::{BuildOutcome, Event, Severity};
use hotswap_protocol::messages::{DidSave, DidSaveParams};
use hotswap_tests::binaries::{App, wait_for_event};
use hotswap_tests::http::{get, request};

const SWAP_TIMEOUT: Duration = Duration::from_secs(300);

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_and_reload_serve_the_new_code_and_keep_the_counter() {
    let app = App::scaffold("swap-on-save");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let address = daemon.address();
    assert_eq!(get(address, "/").await.unwrap().body, "hello from hotswap\n");
    for expected in ["1\n", "2\n"] {
        assert_eq!(request(address, "POST", "/counter", "").await.unwrap().body, expected);
    }

    // A save through the CLI (as a shell hook would send it).
    let mut events = daemon.subscriber().await;
    app.edit_library("hello from hotswap\\n", "hello from hotswap, saved\\n");
    let saved = app.hotswap(&["save", "src/lib.rs"]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    assert!(stdout(&saved).contains("saved 1 file"), "{}", stdout(&saved));
    let swapped =
        wait_for_event(&mut events, SWAP_TIMEOUT, |event| matches!(event, Event::SwapFinished(_)))
            .await;
    let Event::SwapFinished(swapped) = swapped else { unreachable!() };
    assert_eq!(swapped.generation, 2);
    let response = get(address, "/").await.unwrap();
    assert_eq!(
        (response.body.as_str(), response.generation()),
        ("hello from hotswap, saved\n", Some(2))
    );
    assert_eq!(
        get(address, "/counter").await.unwrap().body,
        "2\n",
        "the counter survives the swap"
    );

    // `hotswap reload` builds, swaps, and says how long it took.
    app.edit_library("hello from hotswap, saved\\n", "hello from hotswap, reloaded\\n");
    let reloaded = app.hotswap(&["reload"]);
    assert!(reloaded.status.success(), "{}", stderr(&reloaded));
    let line = stdout(&reloaded);
    assert!(line.starts_with("swapped to generation 3 in "), "{line}");
    assert!(
        line.contains(" ms (build ")
            && line.contains(" ms, swap ")
            && line.trim_end().ends_with(" ms)"),
        "{line}"
    );
    assert_eq!(get(address, "/").await.unwrap().body, "hello from hotswap, reloaded\n");
    assert_eq!(get(address, "/counter").await.unwrap().body, "2\n");

    // Nothing changed: no swap.
    let again = app.hotswap(&["reload"]);
    assert!(
        stdout(&again).starts_with("unchanged: generation 3 keeps serving"),
        "{}",
        stdout(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_save_keeps_the_old_code_and_reports_the_error() {
    let app = App::scaffold("broken-build");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let address = daemon.address();
    let mut events = daemon.subscriber().await;

    app.edit_library(
        "let value = self.counter.fetch_add(1, Ordering::SeqCst) + 1;",
        "let value: u64 = \"not a number\";",
    );
    let client = daemon.client().await;
    client.request::<DidSave>(DidSaveParams { paths: vec![app.path("src/lib.rs")] }).await.unwrap();
    let finished =
        wait_for_event(&mut events, SWAP_TIMEOUT, |event| matches!(event, Event::BuildFinished(_)))
            .await;
    let Event::BuildFinished(finished) = finished else { unreachable!() };
    assert_eq!(finished.outcome, BuildOutcome::Failed);
    let error = finished
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
        .expect("an error diagnostic");
    assert_eq!(error.code.as_deref(), Some("E0308"));
    assert_eq!(
        error.file.as_deref(),
        Some(app.path("src/lib.rs").canonicalize().unwrap().as_path())
    );
    let line = error.range.expect("a range").start.line;
    let text = std::fs::read_to_string(app.path("src/lib.rs")).unwrap();
    assert!(
        text.lines().nth(line as usize).unwrap().contains("not a number"),
        "the range points at the error"
    );

    // The old code keeps serving.
    let response = get(address, "/").await.unwrap();
    assert_eq!((response.status, response.generation()), (200, Some(1)));

    // The CLI shows the compiler's error with file and line, and fails.
    let reloaded = app.hotswap(&["reload"]);
    assert!(!reloaded.status.success());
    let message = stderr(&reloaded);
    assert!(message.contains("error[E0308]: mismatched types"), "{message}");
    assert!(message.contains(&format!("src/lib.rs:{}", line + 1)), "{message}");
    assert!(message.contains("generation 1 keeps serving"), "{message}");

    // Fixing it swaps. (Put back exactly as it was, the source is the one generation 1 was built
    // from: that is "unchanged", and generation 1 keeps serving.)
    app.edit_library(
        "let value: u64 = \"not a number\";",
        "let value = self.counter.fetch_add(1, Ordering::SeqCst) + 1; // fixed",
    );
    let fixed = app.hotswap(&["reload"]);
    assert!(fixed.status.success(), "{}", stderr(&fixed));
    assert_eq!(get(address, "/").await.unwrap().generation(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_quick_saves_build_at_most_twice_and_end_on_the_last_content() {
    let app = App::scaffold("quick-saves");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let mut events = daemon.subscriber().await;
    let client = daemon.client().await;
    let mut previous = "hello from hotswap\\n".to_owned();
    for save in 1..=10 {
        let next = format!("save number {save}\\n");
        app.edit_library(&previous, &next);
        previous = next;
        client
            .request::<DidSave>(DidSaveParams { paths: vec![app.path("src/lib.rs")] })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut builds = 0;
    let swapped = wait_for_event(&mut events, SWAP_TIMEOUT, |event| {
        if matches!(event, Event::BuildStarted(_)) {
            builds += 1;
        }
        matches!(event, Event::SwapFinished(_))
    })
    .await;
    assert!(builds <= 2, "{builds} builds for 10 quick saves");
    let Event::SwapFinished(swapped) = swapped else { unreachable!() };
    assert_eq!(get(daemon.address(), "/").await.unwrap().body, "save number 10\n");
    assert_eq!(swapped.generation, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_outside_the_handler_are_ignored_and_say_so() {
    let app = App::scaffold("outside-saves");
    let daemon = app.serve().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().join("notes.rs");
    std::fs::write(&outside, "// not part of the app\n").unwrap();
    let saved = app.hotswap(&["save", outside.to_str().unwrap()]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    assert_eq!(
        stdout(&saved).trim(),
        format!("ignored {}: outside the handler's packages", outside.display())
    );
    let config = app.hotswap(&["save", "hotswap.toml"]);
    assert!(
        stdout(&config).contains("take effect when `hotswap serve` restarts"),
        "{}",
        stdout(&config)
    );
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_messages_without_a_daemon_or_a_workspace() {
    let app = App::scaffold("no-daemon");
    let status = app.hotswap(&["status"]);
    assert!(!status.status.success());
    let expected = format!(
        "error: no hotswap daemon for {}; start one with `hotswap serve`",
        app.directory.canonicalize().unwrap().display()
    );
    assert_eq!(stderr(&status).trim(), expected);

    let empty = tempfile::tempdir().unwrap();
    let reload = hotswap_tests::binaries::hotswap(empty.path(), &app.runtime_dir, &["reload"]);
    assert!(!reload.status.success());
    assert!(stderr(&reload).contains("no hotswap.toml in"), "{}", stderr(&reload));
    assert!(stderr(&reload).contains("hotswap new"), "{}", stderr(&reload));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_cargos_lock_shows_as_progress_not_a_silent_hang() {
    let app = App::scaffold("locked-build");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let mut events = daemon.subscriber().await;
    // Another cargo (rust-analyzer, a terminal) holds the build directory's lock.
    let lock_path = hotswap_tests::artifacts::shared_handler_target_dir().join("debug/.cargo-lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    lock.lock().unwrap();
    app.edit_library("hello from hotswap\\n", "hello after the lock\\n");
    let reload = {
        let directory = app.directory.clone();
        let runtime_dir = app.runtime_dir.clone();
        tokio::task::spawn_blocking(move || {
            hotswap_tests::binaries::hotswap(&directory, &runtime_dir, &["reload"])
        })
    };
    let blocked = wait_for_event(
        &mut events,
        SWAP_TIMEOUT,
        |event| matches!(event, Event::BuildProgress(p) if p.blocked),
    )
    .await;
    let Event::BuildProgress(blocked) = blocked else { unreachable!() };
    assert!(blocked.message.contains("Blocking waiting for file lock"), "{}", blocked.message);
    assert!(daemon.status().await.building, "status says a build is running");
    lock.unlock().unwrap();
    let reloaded = reload.await.unwrap();
    assert!(reloaded.status.success(), "{}", stderr(&reloaded));
    assert_eq!(get(daemon.address(), "/").await.unwrap().body, "hello after the lock\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_cargo_says_so() {
    let app = App::scaffold("no-cargo");
    let output = std::process::Command::new(hotswap_tests::binaries::binary("hotswap"))
        .arg("serve")
        .current_dir(&app.directory)
        .env("XDG_RUNTIME_DIR", &app.runtime_dir)
        .env("PATH", "/usr/bin:/bin")
        .env_remove("CARGO")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("cannot run `cargo`: it is not installed or not on PATH"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_path_dependency_joins_the_handlers_packages() {
    let app = App::scaffold("grows-a-dependency");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let mut events = daemon.subscriber().await;
    let client = daemon.client().await;

    // A local crate the handler does not use yet: saving it builds nothing.
    let shared = app.directory.parent().unwrap().join("greetings");
    std::fs::create_dir_all(shared.join("src")).unwrap();
    std::fs::write(
        shared.join("Cargo.toml"),
        "[package]\nname = \"greetings\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        shared.join("src/lib.rs"),
        "pub fn greeting() -> &'static str {\n    \"hello from a path dependency\\n\"\n}\n",
    )
    .unwrap();
    let saved = client
        .request::<DidSave>(DidSaveParams { paths: vec![shared.join("src/lib.rs")] })
        .await
        .unwrap();
    assert_eq!(saved.ignored.len(), 1, "{saved:?}");

    // The handler starts to depend on it: the manifest's save makes its package part of the set.
    let manifest = std::fs::read_to_string(app.path("Cargo.toml")).unwrap();
    let manifest = manifest
        .replace("[dependencies]\n", "[dependencies]\ngreetings = { path = \"../greetings\" }\n");
    std::fs::write(app.path("Cargo.toml"), manifest).unwrap();
    app.edit_library(
        "text(StatusCode::OK, \"hello from hotswap\\n\".to_owned())",
        "text(StatusCode::OK, greetings::greeting().to_owned())",
    );
    client
        .request::<DidSave>(DidSaveParams {
            paths: vec![app.path("Cargo.toml"), app.path("src/lib.rs")],
        })
        .await
        .unwrap();
    wait_for_event(&mut events, SWAP_TIMEOUT, |event| matches!(event, Event::SwapFinished(_)))
        .await;
    assert_eq!(get(daemon.address(), "/").await.unwrap().body, "hello from a path dependency\n");

    // Now a save in the dependency builds and swaps.
    std::fs::write(
        shared.join("src/lib.rs"),
        "pub fn greeting() -> &'static str {\n    \"changed in the dependency\\n\"\n}\n",
    )
    .unwrap();
    let saved = client
        .request::<DidSave>(DidSaveParams { paths: vec![shared.join("src/lib.rs")] })
        .await
        .unwrap();
    assert_eq!((saved.accepted.len(), saved.ignored.len()), (1, 0), "{saved:?}");
    wait_for_event(&mut events, SWAP_TIMEOUT, |event| matches!(event, Event::SwapFinished(_)))
        .await;
    assert_eq!(get(daemon.address(), "/").await.unwrap().body, "changed in the dependency\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_build_refused_by_the_smoke_request_names_smoke_path_and_says_nothing_serves_yet() {
    let app = App::scaffold("smoke-refused");
    let config = std::fs::read_to_string(app.path("hotswap.toml")).unwrap();
    assert!(config.contains("smoke_path = \"/health\""), "{config}");
    std::fs::write(app.path("hotswap.toml"), config.replace("\"/health\"", "\"/ready\"")).unwrap();
    let daemon = app.serve().await;
    let mut events = daemon.subscriber().await;
    // The first build may already be refused: the status says so either way.
    let deadline = std::time::Instant::now() + SWAP_TIMEOUT;
    let refused = loop {
        if let Some(refused) = daemon.status().await.refused_swap {
            break refused;
        }
        assert!(std::time::Instant::now() < deadline, "no refused swap:\n{}", daemon.log());
        let _ = tokio::time::timeout(Duration::from_millis(200), events.next_event()).await;
    };
    assert_eq!(refused.serving, None);
    assert!(refused.message.contains("GET /ready answered 404"), "{}", refused.message);
    assert!(refused.message.contains("`smoke_path = \"/ready\"`"), "{}", refused.message);
    let log = daemon.log();
    assert!(log.contains("nothing is served yet"), "{log}");
    assert!(!log.contains("generation none"), "{log}");
    let response = get(daemon.address(), "/").await.unwrap();
    assert_eq!(response.status, 503);
    assert!(response.body.contains("smoke_path"), "{}", response.body);

    let reloaded = app.hotswap(&["reload"]);
    assert!(!reloaded.status.success());
    let text = stderr(&reloaded);
    assert!(text.contains("refused at the smoke stage"), "{text}");
    assert!(text.trim_end().ends_with("nothing is served yet"), "{text}");
}

/// An ordinary axum binary, as a user has it before hotswap.
const AXUM_BINARY_MAIN: &str = r#"use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::get;

#[derive(Clone, Default)]
struct AppState {
    visits: Arc<Mutex<u64>>,
}

async fn index(State(state): State<AppState>) -> String {
    let mut visits = state.visits.lock().unwrap();
    *visits += 1;
    format!("visit {visits}\n")
}

#[tokio::main]
async fn main() {
    let state = AppState::default();
    let app = Router::new().route("/", get(index)).with_state(state);
    let address = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_axum_binary_adopts_hotswap_with_init_and_keeps_running_without_it() {
    let temp = tempfile::tempdir().unwrap();
    let directory = temp.path().join("visits-shop");
    std::fs::create_dir_all(directory.join("src")).unwrap();
    std::fs::write(
        directory.join("Cargo.toml"),
        "[package]\nname = \"visits-shop\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [dependencies]\naxum = \"0.8.9\"\ntokio = { version = \"1\", features = [\"macros\", \"rt-multi-thread\", \"net\"] }\n\n\
         [workspace]\n",
    )
    .unwrap();
    std::fs::write(directory.join("src/main.rs"), AXUM_BINARY_MAIN).unwrap();
    let examples_lock = hotswap_tests::artifacts::repository_root().join("examples/Cargo.lock");
    std::fs::copy(examples_lock, directory.join("Cargo.lock")).unwrap();
    let app = App::existing(directory.clone(), temp);

    let initialized = app.hotswap(&["init", "--listen", "127.0.0.1:0"]);
    assert!(initialized.status.success(), "{}", stderr(&initialized));
    let told = stdout(&initialized);
    assert!(told.starts_with("set up visits-shop in "), "{told}");
    assert!(told.contains("+ Cargo.toml: [lib] crate-type = [\"cdylib\", \"rlib\"]"), "{told}");
    assert!(told.contains("features = [\"axum\"]"), "{told}");
    assert!(told.contains("visits_shop::app(AppState::default()).await"), "{told}");
    assert!(told.contains("hotswap_handler::export_router!(app, AppState);"), "{told}");

    // What the output says to do: the router into src/lib.rs, main.rs calling it.
    let lib = AXUM_BINARY_MAIN
        .replace("use axum::routing::get;\n", "use axum::routing::get;\nuse serde::{Deserialize, Serialize};\n")
        .replace("#[derive(Clone, Default)]\nstruct AppState", "#[derive(Clone, Default, Serialize, Deserialize)]\npub struct AppState")
        .replace(
            &AXUM_BINARY_MAIN[AXUM_BINARY_MAIN.find("#[tokio::main]").unwrap()..],
            "pub async fn app(state: AppState) -> Router {\n    Router::new().route(\"/\", get(index)).with_state(state)\n}\n\nhotswap_handler::export_router!(app, AppState);\n",
        );
    std::fs::write(directory.join("src/lib.rs"), &lib).unwrap();
    std::fs::write(
        directory.join("src/main.rs"),
        "#[tokio::main]\nasync fn main() {\n    let app = visits_shop::app(visits_shop::AppState::default()).await;\n    \
         let address = std::env::var(\"LISTEN\").unwrap_or_else(|_| \"127.0.0.1:3000\".to_owned());\n    \
         let listener = tokio::net::TcpListener::bind(address).await.unwrap();\n    axum::serve(listener, app).await.unwrap();\n}\n",
    )
    .unwrap();
    // Shares the tests' build directory.
    let target = hotswap_tests::artifacts::shared_handler_target_dir();
    let mut config = std::fs::read_to_string(directory.join("hotswap.toml")).unwrap();
    config.push_str(&format!("\n[build]\ntarget_dir = {:?}\n", target.display().to_string()));
    std::fs::write(directory.join("hotswap.toml"), config).unwrap();

    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    assert_eq!(get(daemon.address(), "/").await.unwrap().body, "visit 1\n");
    app.edit_library("format!(\"visit {visits}\\n\")", "format!(\"visit number {visits}\\n\")");
    let reloaded = app.hotswap(&["reload"]);
    assert!(reloaded.status.success(), "{}", stderr(&reloaded));
    let response = get(daemon.address(), "/").await.unwrap();
    assert_eq!((response.body.as_str(), response.generation()), ("visit number 2\n", Some(2)));
    drop(daemon);

    // `cargo run` serves the same app without hotswap.
    let built =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--quiet", "--bin", "visits-shop", "--target-dir"])
            .arg(&target)
            .current_dir(&directory)
            .status()
            .unwrap();
    assert!(built.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new(target.join("debug/visits-shop"))
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let answer = loop {
        match get(address, "/").await {
            Ok(answer) => break answer,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("the plain binary does not answer: {error}"),
        }
    };
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(answer.body, "visit number 1\n");
    assert!(answer.generation().is_none(), "no hotswap in the plain binary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rustc_query_in_cargos_cache_is_asked_again_and_the_app_serves() {
    // Cargo keeps what rustc answered in the build directory, failures too (a cargo whose
    // directory was deleted under it leaves one), and reads it back at every later build. Here a
    // cargo gives that answer until it is run without its cache, as real cargo would.
    let app = App::scaffold("stale-rustc-info");
    let real_cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let script = app.runtime_dir.join("cargo-with-a-stale-cache");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = build ] && [ \"$CARGO_CACHE_RUSTC_INFO\" != 0 ]; then\n  echo 'error: failed to run `rustc` to learn about target-specific information' >&2\n  echo 'Caused by:' >&2\n  echo '  error: Current directory is invalid: No such file or directory (os error 2)' >&2\n  exit 101\nfi\nexec {real_cargo:?} \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let daemon = app.serve_from(&app.directory, &[], &[("CARGO", script.to_str().unwrap())]).await;
    daemon.wait_for_generation(1).await;
    let log = daemon.log();
    assert!(
        log.contains("asking rustc afresh from now on (CARGO_CACHE_RUSTC_INFO=0)"),
        "the log says what happened: {log}"
    );
    let response = get(daemon.address(), "/").await.unwrap();
    assert_eq!(response.status, 200, "{response:?}");
}
