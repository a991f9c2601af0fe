//! The fast path: saves of the handler's own sources run the rustc cargo last ran for it,
//! directly; every other save (a manifest, a feature, `build.rs`, a path dependency, a
//! configuration or toolchain file, `Cargo.lock`) builds with cargo. Real cargo, real rustc, the
//! real daemon.

use std::path::PathBuf;
use std::time::Duration;

use hotswap_protocol::Client;
use hotswap_protocol::events::{BuildFinished, BuildOutcome, BuiltWith, Event, Severity};
use hotswap_protocol::messages::{DidSave, DidSaveParams};
use hotswap_tests::artifacts::shared_handler_target_dir;
use hotswap_tests::binaries::{App, Daemon, wait_for_event};
use hotswap_tests::http::{get, request};

const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// The greeting line of the scaffold's `GET /`.
const SCAFFOLD_GREETING: &str = "\"hello from hotswap\\n\".to_owned()";

/// A served app and a client subscribed to its events. The daemon stops before the app's
/// directory is removed (fields drop in order): a daemon, or a cargo it started, never runs in a
/// directory that is gone.
struct Session {
    events: Client,
    daemon: Daemon,
    app: App,
    /// The expression `GET /` answers with now (replaced by each edit).
    greeting: String,
}

impl Session {
    async fn start(name: &str) -> Session {
        Session::serve(App::scaffold(name)).await
    }

    async fn serve(app: App) -> Session {
        let daemon = app.serve().await;
        daemon.wait_for_generation(1).await;
        let events = daemon.subscriber().await;
        Session { events, daemon, app, greeting: SCAFFOLD_GREETING.to_owned() }
    }

    /// Makes `GET /` answer with `expression` (a `String`), in `src/lib.rs`, without saving.
    fn set_greeting(&mut self, expression: &str) {
        self.app.edit_library(&self.greeting, expression);
        self.greeting = expression.to_owned();
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.app.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Tells the daemon `relative` paths were saved and waits for that build (and its swap).
    async fn save(&mut self, relative: &[&str]) -> BuildFinished {
        let paths: Vec<PathBuf> = relative.iter().map(|path| self.app.path(path)).collect();
        let client = self.daemon.client().await;
        let answer = client.request::<DidSave>(DidSaveParams { paths }).await.unwrap();
        assert!(answer.ignored.is_empty(), "ignored saves: {:?}", answer.ignored);
        let started = wait_for_event(&mut self.events, BUILD_TIMEOUT, |event| {
            matches!(event, Event::BuildStarted(_))
        })
        .await;
        let Event::BuildStarted(started) = started else { unreachable!() };
        self.wait_for_build(started.build).await
    }

    /// Waits for build `build` to finish, and for its swap when it succeeded.
    async fn wait_for_build(&mut self, build: u64) -> BuildFinished {
        let finished = wait_for_event(
            &mut self.events,
            BUILD_TIMEOUT,
            |event| matches!(event, Event::BuildFinished(finished) if finished.build == build),
        )
        .await;
        let Event::BuildFinished(finished) = finished else { unreachable!() };
        if finished.outcome == BuildOutcome::Succeeded {
            let swapped = wait_for_event(&mut self.events, BUILD_TIMEOUT, |event| {
                matches!(event, Event::SwapFinished(_) | Event::SwapFailed(_))
            })
            .await;
            assert!(
                matches!(swapped, Event::SwapFinished(_)),
                "{swapped:?}\n{}",
                self.daemon.log()
            );
        }
        finished
    }

    /// Saves, and checks what built it and that it swapped.
    async fn save_and_swap(&mut self, relative: &[&str], expected: BuiltWith) -> BuildFinished {
        let finished = self.save(relative).await;
        assert_eq!(
            (finished.outcome, finished.built_with),
            (BuildOutcome::Succeeded, Some(expected)),
            "saving {relative:?}: {:?}\n{}",
            finished.diagnostics,
            self.daemon.log()
        );
        finished
    }

    async fn body(&self, path: &str) -> String {
        get(self.daemon.address(), path).await.unwrap().body
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_only_saves_run_rustc_directly_and_serve_what_cargo_builds() {
    let mut session = Session::start("direct-rustc").await;
    let address = session.daemon.address();
    for expected in ["1\n", "2\n"] {
        assert_eq!(request(address, "POST", "/counter", "").await.unwrap().body, expected);
    }

    // A save of src/lib.rs: rustc directly, and the new code serves with the counter kept.
    session.set_greeting("\"hello from rustc\\n\".to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;
    let library = shared_handler_target_dir().join("debug/libdirect_rustc.so");
    let by_rustc = std::fs::read(&library).unwrap();
    let paths = ["/", "/counter", "/health", "/nowhere"];
    let mut answers = Vec::new();
    for path in paths {
        let response = get(address, path).await.unwrap();
        answers.push((response.status, response.body));
    }
    assert_eq!(answers[0].1, "hello from rustc\n");
    assert_eq!(answers[1].1, "2\n", "the counter survives the swap");
    let status = session.app.hotswap(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("by rustc directly"), "{status}");
    assert!(session.daemon.log().contains("rustc directly"), "{}", session.daemon.log());

    // The same source built by cargo (a manifest save sends it there): the same library, byte
    // for byte, and the same answers.
    session.save_and_swap(&["Cargo.toml"], BuiltWith::Cargo).await;
    assert!(std::fs::read(&library).unwrap() == by_rustc, "cargo built another library");
    for (path, answer) in paths.iter().zip(&answers) {
        let response = get(address, path).await.unwrap();
        assert_eq!(&(response.status, response.body), answer, "GET {path}");
    }

    // A compile error: the same diagnostics through rustc directly as through cargo, and the
    // old code keeps serving.
    session.app.edit_library(
        "let value = self.counter.fetch_add(1, Ordering::SeqCst) + 1;",
        "let value: u64 = \"not a number\";",
    );
    let direct = session.save(&["src/lib.rs"]).await;
    assert_eq!((direct.outcome, direct.built_with), (BuildOutcome::Failed, Some(BuiltWith::Rustc)));
    let error = direct.diagnostics.iter().find(|d| d.severity == Severity::Error).unwrap();
    assert_eq!(error.code.as_deref(), Some("E0308"));
    assert!(error.rendered.as_deref().unwrap().starts_with("error[E0308]: mismatched types\n"));
    let by_cargo = session.save(&["src/lib.rs", "Cargo.toml"]).await;
    assert_eq!(
        (by_cargo.outcome, by_cargo.built_with),
        (BuildOutcome::Failed, Some(BuiltWith::Cargo))
    );
    assert_eq!(direct.diagnostics, by_cargo.diagnostics);
    let response = get(address, "/").await.unwrap();
    assert_eq!((response.body.as_str(), response.generation()), ("hello from rustc\n", Some(3)));

    // Fixed: rustc directly again (a failed cargo build of the handler still recorded its rustc).
    session.app.edit_library(
        "let value: u64 = \"not a number\";",
        "let value = self.counter.fetch_add(1, Ordering::SeqCst) + 1;",
    );
    session.set_greeting("\"hello again\\n\".to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;
    assert_eq!(session.body("/").await, "hello again\n");

    // A save that changes nothing: unchanged, no rustc, no swap.
    let text = std::fs::read_to_string(session.app.path("src/lib.rs")).unwrap();
    std::fs::write(session.app.path("src/lib.rs"), text).unwrap();
    let unchanged = session.save(&["src/lib.rs"]).await;
    assert_eq!(
        (unchanged.outcome, unchanged.built_with),
        (BuildOutcome::Unchanged, Some(BuiltWith::Rustc))
    );
    let reloaded = session.app.hotswap(&["reload"]);
    assert!(
        String::from_utf8_lossy(&reloaded.stdout)
            .starts_with("unchanged: generation 4 keeps serving"),
        "{}",
        String::from_utf8_lossy(&reloaded.stdout)
    );

    // A save during a direct build cancels it, as it cancels cargo: the last save serves.
    session.app.edit_library(
        "hotswap_handler::export_handler!(App);",
        "hotswap_handler::export_handler!(App);\n\n\
         /// Slow to compile on purpose (a couple of seconds of constant evaluation).\n\
         #[allow(long_running_const_eval)]\n\
         const SLOW: u64 = {\n    let mut i = 0u64;\n    while i < 1_000_000 {\n        i += 1;\n    }\n    i\n};\n\
         #[unsafe(no_mangle)]\npub static SLOW_VALUE: u64 = SLOW;\n",
    );
    let client = session.daemon.client().await;
    let paths = vec![session.app.path("src/lib.rs")];
    client.request::<DidSave>(DidSaveParams { paths: paths.clone() }).await.unwrap();
    let progress = wait_for_event(&mut session.events, BUILD_TIMEOUT, |event| {
        matches!(event, Event::BuildProgress(progress) if progress.message.contains("rustc directly"))
    })
    .await;
    let Event::BuildProgress(progress) = progress else { unreachable!() };
    session.set_greeting("\"hello after the cancel\\n\".to_owned()");
    client.request::<DidSave>(DidSaveParams { paths }).await.unwrap();
    let stale = session.wait_for_build(progress.build).await;
    assert_eq!(
        (stale.outcome, stale.built_with),
        (BuildOutcome::Cancelled, Some(BuiltWith::Rustc))
    );
    let last = session.wait_for_build(progress.build + 1).await;
    assert_eq!((last.outcome, last.built_with), (BuildOutcome::Succeeded, Some(BuiltWith::Rustc)));
    assert_eq!(session.body("/").await, "hello after the cancel\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_save_builds_with_cargo() {
    let mut session = Session::start("direct-fallbacks").await;
    session.set_greeting("\"fast 1\\n\".to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;

    // A feature in the manifest, on and then off.
    let manifest = std::fs::read_to_string(session.app.path("Cargo.toml")).unwrap();
    let with_features = |default: &str| {
        manifest.replace(
            "[dependencies]",
            &format!("[features]\ndefault = [{default}]\nloud = []\n\n[dependencies]"),
        )
    };
    session.write("Cargo.toml", &with_features("\"loud\""));
    session.set_greeting(
        "format!(\"{}\\n\", if cfg!(feature = \"loud\") { \"LOUD\" } else { \"quiet\" })",
    );
    session.save_and_swap(&["Cargo.toml", "src/lib.rs"], BuiltWith::Cargo).await;
    assert_eq!(session.body("/").await, "LOUD\n");
    session.write("Cargo.toml", &with_features(""));
    session.save_and_swap(&["Cargo.toml"], BuiltWith::Cargo).await;
    assert_eq!(session.body("/").await, "quiet\n");
    // The handler's next save uses the command line of that build: the feature stays off.
    session.set_greeting(
        "format!(\"{} 2\\n\", if cfg!(feature = \"loud\") { \"LOUD\" } else { \"quiet\" })",
    );
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;
    assert_eq!(session.body("/").await, "quiet 2\n");

    // A path dependency: added (manifests), its source saved, its source changed without a save.
    let greeting_library = |text: &str| {
        format!(
            "pub const VERSION: &str = env!(\"CARGO_PKG_VERSION\");\n\
             pub fn greeting() -> &'static str {{ \"{text}\" }}\n"
        )
    };
    let greeting_manifest = |version: &str| {
        format!("[package]\nname = \"greeting\"\nversion = \"{version}\"\nedition = \"2024\"\n")
    };
    session.write("greeting/Cargo.toml", &greeting_manifest("0.1.0"));
    session.write("greeting/src/lib.rs", &greeting_library("greeting v1"));
    let manifest = with_features("");
    let with_greeting = |requirement: &str| {
        manifest.replace(
            "[dependencies]\n",
            &format!("[dependencies]\ngreeting = {{ path = \"greeting\", version = \"{requirement}\" }}\n"),
        )
    };
    session.write("Cargo.toml", &with_greeting("0.1"));
    session.set_greeting("format!(\"{} {}\\n\", greeting::greeting(), greeting::VERSION)");
    session
        .save_and_swap(
            &["greeting/Cargo.toml", "greeting/src/lib.rs", "Cargo.toml", "src/lib.rs"],
            BuiltWith::Cargo,
        )
        .await;
    assert_eq!(session.body("/").await, "greeting v1 0.1.0\n");
    session.write("greeting/src/lib.rs", &greeting_library("greeting v2"));
    session.save_and_swap(&["greeting/src/lib.rs"], BuiltWith::Cargo).await;
    assert_eq!(session.body("/").await, "greeting v2 0.1.0\n");
    // Changed outside the editor (a checkout, say), then a save of the handler alone.
    session.write("greeting/src/lib.rs", &greeting_library("greeting v3"));
    session.set_greeting("format!(\"{} {}!\\n\", greeting::greeting(), greeting::VERSION)");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Cargo).await;
    assert_eq!(session.body("/").await, "greeting v3 0.1.0!\n");

    // The dependency's version changes (Cargo.lock with it); later handler saves link the new one.
    session.write("greeting/Cargo.toml", &greeting_manifest("0.2.0"));
    session.write("Cargo.toml", &with_greeting("0.2"));
    session.save_and_swap(&["greeting/Cargo.toml", "Cargo.toml"], BuiltWith::Cargo).await;
    assert_eq!(session.body("/").await, "greeting v3 0.2.0!\n");
    let lock = std::fs::read_to_string(session.app.path("Cargo.lock")).unwrap();
    assert!(lock.contains("name = \"greeting\"\nversion = \"0.2.0\""), "{lock}");
    session.set_greeting("format!(\"{} {}?\\n\", greeting::greeting(), greeting::VERSION)");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;
    assert_eq!(session.body("/").await, "greeting v3 0.2.0?\n");

    // A build script: adding it, then saves of the handler (it watches only itself), then it.
    let build_script = |text: &str| {
        format!(
            "fn main() {{\n    println!(\"cargo::rustc-env=BUILT_BY={text}\");\n    \
             println!(\"cargo::rerun-if-changed=build.rs\");\n}}\n"
        )
    };
    session.write("build.rs", &build_script("build script v1"));
    session.set_greeting("format!(\"{}\\n\", env!(\"BUILT_BY\"))");
    session.save_and_swap(&["build.rs", "src/lib.rs"], BuiltWith::Cargo).await;
    assert_eq!(session.body("/").await, "build script v1\n");
    session.set_greeting("format!(\"{}, again\\n\", env!(\"BUILT_BY\"))");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;
    assert_eq!(session.body("/").await, "build script v1, again\n");
    session.write("build.rs", &build_script("build script v2"));
    session.save_and_swap(&["build.rs"], BuiltWith::Cargo).await;
    assert_eq!(session.body("/").await, "build script v2, again\n");

    // Cargo's configuration: saved, then changed without a save.
    session.write(".cargo/config.toml", "[env]\nPUNCTUATION = \"!\"\n");
    session.set_greeting("format!(\"config{}\\n\", env!(\"PUNCTUATION\"))");
    session.save_and_swap(&[".cargo/config.toml", "src/lib.rs"], BuiltWith::Cargo).await;
    assert_eq!(session.body("/").await, "config!\n");
    session.set_greeting("format!(\"config {}\\n\", env!(\"PUNCTUATION\"))");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;
    assert_eq!(session.body("/").await, "config !\n");
    session.write(".cargo/config.toml", "[env]\nPUNCTUATION = \"?\"\n");
    session.set_greeting("format!(\"config: {}\\n\", env!(\"PUNCTUATION\"))");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Cargo).await;
    assert_eq!(session.body("/").await, "config: ?\n");

    // A toolchain file (naming the toolchain in use): cargo, which finds the handler up to date.
    // What cargo reads changed since it last compiled the handler, so the next save of the
    // handler goes through cargo too, and the one after is fast again.
    let sysroot =
        std::process::Command::new("rustc").args(["--print", "sysroot"]).output().unwrap();
    let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout).unwrap().trim());
    let toolchain = sysroot.file_name().unwrap().to_string_lossy().into_owned();
    session.write("rust-toolchain.toml", &format!("[toolchain]\nchannel = \"{toolchain}\"\n"));
    let finished = session.save(&["rust-toolchain.toml"]).await;
    assert_eq!(finished.built_with, Some(BuiltWith::Cargo));
    assert!(
        matches!(finished.outcome, BuildOutcome::Unchanged | BuildOutcome::Succeeded),
        "{finished:?}\n{}",
        session.daemon.log()
    );
    session.set_greeting("\"after the toolchain file\\n\".to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Cargo).await;
    session.set_greeting("\"fast again\\n\".to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;
    assert_eq!(session.body("/").await, "fast again\n");
}

/// An app whose package name is also the name of one of its dependencies (here `bytes`, which
/// the SDK depends on): `cargo build -p bytes` would be ambiguous; the daemon names the package
/// by its ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_named_like_a_dependency_builds_and_swaps() {
    let mut session = Session::start("bytes").await;
    assert_eq!(session.body("/").await, "hello from hotswap\n");
    session.set_greeting("\"hello from bytes\\n\".to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;
    assert_eq!(session.body("/").await, "hello from bytes\n");
    session.save_and_swap(&["Cargo.toml"], BuiltWith::Cargo).await;
    drop(session.events);
    drop(session.daemon);

    // Named as `name@version` in hotswap.toml.
    let config_path = session.app.path("hotswap.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let config = config.replace("package = \"bytes\"", "package = \"bytes@0.1.0\"");
    assert!(config.contains("package = \"bytes@0.1.0\""), "{config}");
    std::fs::write(&config_path, config).unwrap();
    let daemon = session.app.serve().await;
    daemon.wait_for_generation(1).await;
    assert_eq!(get(daemon.address(), "/").await.unwrap().body, "hello from bytes\n");
    let status = daemon.status().await;
    assert_eq!(status.package, "bytes");
}

/// Live reload tells an asset from a file the code includes by the dep-info next to the library;
/// a file a build by rustc directly begins to read (`include_str!`) builds when saved from then
/// on, as after a cargo build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_a_direct_build_includes_is_no_longer_an_asset() {
    let app = App::scaffold("direct-assets");
    std::fs::create_dir_all(app.path("assets")).unwrap();
    std::fs::write(app.path("assets/greeting.txt"), "from the file v1\n").unwrap();
    let mut session = Session::serve(app).await;
    let client = session.daemon.client().await;
    let paths = vec![session.app.path("assets/greeting.txt")];
    let answer = client.request::<DidSave>(DidSaveParams { paths: paths.clone() }).await.unwrap();
    assert!(answer.accepted.is_empty(), "an asset starts no build: {answer:?}");

    session.set_greeting("include_str!(\"../assets/greeting.txt\").to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;
    assert_eq!(session.body("/").await, "from the file v1\n");
    session.write("assets/greeting.txt", "from the file v2\n");
    session.save_and_swap(&["assets/greeting.txt"], BuiltWith::Rustc).await;
    assert_eq!(session.body("/").await, "from the file v2\n");
}

impl Session {
    /// Stops this daemon (`hotswap stop`), runs `meanwhile`, and serves the app with a new one.
    async fn restart_daemon(&mut self, meanwhile: impl FnOnce(&Session)) {
        let stopped = self.app.hotswap(&["stop"]);
        assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
        self.daemon.wait_for_exit(Duration::from_secs(30));
        meanwhile(self);
        self.daemon = self.app.serve().await;
        self.daemon.wait_for_generation(1).await;
        self.events = self.daemon.subscriber().await;
    }
}

/// A `hotswap serve` whose first cargo build finds the handler up to date starts with the rustc
/// the last daemon recorded: its first save is a direct build. Not when something cargo decides
/// with changed while no daemon ran: that save goes through cargo, which records it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_daemon_starts_with_the_rustc_the_last_one_recorded() {
    let mut session = Session::start("kept-record").await;
    session.restart_daemon(|_| {}).await;
    let status = session.app.hotswap(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("by cargo"), "the second daemon's first build: {status}");
    session.set_greeting("\"served by the second daemon\\n\".to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;
    assert_eq!(session.body("/").await, "served by the second daemon\n");

    // The next start-up build compiles the handler (cargo did not see that direct build) and
    // records it. Then cargo's configuration changes while no daemon runs, in a way that does
    // not change the build (cargo finds the handler up to date): the record may not hold.
    session.restart_daemon(|_| {}).await;
    session
        .restart_daemon(|session| session.write(".cargo/config.toml", "[term]\nquiet = false\n"))
        .await;
    session.set_greeting("\"after the configuration changed\\n\".to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Cargo).await;
    let log = session.daemon.log();
    assert!(log.contains("what cargo reads changed since it last did"), "{log}");
    assert_eq!(session.body("/").await, "after the configuration changed\n");
    session.set_greeting("\"and fast again\\n\".to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;
    assert_eq!(session.body("/").await, "and fast again\n");
}

/// Waits until the daemon's log says its shared dependency library is ready.
async fn wait_for_shared_library(daemon: &Daemon) {
    let deadline = std::time::Instant::now() + Duration::from_secs(900);
    while !daemon.log().contains("shared dependency library ready") {
        let log = daemon.log();
        assert!(!log.contains("no shared dependency library"), "{log}");
        assert!(std::time::Instant::now() < deadline, "no shared library in 15 min:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The shared libraries the current generation's process has mapped.
async fn mapped_shared_libraries(daemon: &Daemon) -> Vec<String> {
    let status = daemon.status().await;
    let current = status.current_generation.unwrap();
    let generation = status.generations.iter().find(|g| g.generation == current).unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", generation.pid)).unwrap();
    let mut libraries: Vec<String> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.contains(".so"))
        .map(|path| path.rsplit('/').next().unwrap().to_owned())
        .collect();
    libraries.sort();
    libraries.dedup();
    libraries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_dependencies_linked_once_a_save_links_only_the_app_s_code() {
    let app = App::scaffold("shared-deps");
    app.edit_library(
        "_ => text(StatusCode::NOT_FOUND",
        "(&Method::GET, \"/panic\") => panic!(\"a panic on the shared library\"),\n            \
         (&Method::GET, \"/deep\") => {\n                \
         #[allow(unconditional_recursion)]\n                \
         fn deep(n: u64) -> u64 {\n                    \
         let frame = std::hint::black_box([n; 64]);\n                    \
         deep(frame[1] + 1) + frame[2]\n                }\n                \
         text(StatusCode::OK, format!(\"{}\\n\", deep(1)))\n            }\n            \
         _ => text(StatusCode::NOT_FOUND",
    );
    let daemon = app.serve_from(&app.directory, &[], &[("HOTSWAP_SHARED_DEPS", "1")]).await;
    daemon.wait_for_generation(1).await;
    let events = daemon.subscriber().await;
    let mut session = Session { events, daemon, app, greeting: SCAFFOLD_GREETING.to_owned() };
    let address = session.daemon.address();
    let library = shared_handler_target_dir().join("debug/libshared_deps.so");
    let linked_in = std::fs::metadata(&library).unwrap().len();
    assert_eq!(request(address, "POST", "/counter", "").await.unwrap().body, "1\n");
    wait_for_shared_library(&session.daemon).await;

    // A save of the handler's own code: rustc on the shared library, and the new code serves
    // with the counter kept.
    session.set_greeting("\"hello from the shared library\\n\".to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::RustcSharedDeps).await;
    assert_eq!(session.body("/").await, "hello from the shared library\n");
    assert_eq!(session.body("/counter").await, "1\n", "the counter survives the swap");
    let on_shared = std::fs::metadata(&library).unwrap().len();
    assert!(
        on_shared * 3 < linked_in,
        "the library carries only the app's code: {on_shared} bytes against {linked_in}"
    );
    let mapped = mapped_shared_libraries(&session.daemon).await;
    assert!(mapped.iter().any(|name| name.starts_with("libhotswap_shared_deps_")), "{mapped:?}");
    assert!(mapped.iter().any(|name| name.starts_with("libstd-")), "{mapped:?}");
    let status = session.app.hotswap(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("by rustc directly, on the shared dependency library"), "{status}");
    assert!(status.contains("saves link only the app's code"), "{status}");

    // A panic in handler code on the shared library: a 500, its message in the log, and the
    // same process serves on.
    let panicked = get(address, "/panic").await.unwrap();
    assert_eq!(panicked.status, 500);
    assert_eq!(request(address, "POST", "/counter", "").await.unwrap().body, "2\n");
    let log = session.daemon.log();
    assert!(log.contains("a panic on the shared library"), "{log}");

    // A stack overflow kills the generation's process: told as one, and the same code serves
    // again with the state of the last snapshot.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(get(address, "/deep").await.is_err(), "the crashing request gets no answer");
    let crash = wait_for_event(&mut session.events, Duration::from_secs(10), |event| {
        matches!(event, Event::GenerationCrashed(_))
    })
    .await;
    let Event::GenerationCrashed(crash) = crash else { unreachable!() };
    assert!(crash.cause.contains("stack overflow"), "{crash:?}");
    assert!(
        crash.last_words.iter().any(|line| line.contains("has overflowed its stack")),
        "{crash:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let counter = loop {
        if let Ok(response) = get(address, "/counter").await {
            break response.body;
        }
        assert!(std::time::Instant::now() < deadline, "not serving 5 s after the crash");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(counter, "2\n");
    assert_eq!(session.body("/").await, "hello from the shared library\n");

    // A manifest save: cargo builds the library with its dependencies linked in, and the shared
    // library is checked again; then the handler's saves link on it again.
    session.save_and_swap(&["Cargo.toml"], BuiltWith::Cargo).await;
    assert_eq!(session.body("/counter").await, "2\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    for round in 1.. {
        session.set_greeting(&format!("\"again {round}\\n\".to_owned()"));
        let finished = session.save(&["src/lib.rs"]).await;
        assert_eq!(finished.outcome, BuildOutcome::Succeeded, "{:?}", finished.diagnostics);
        if finished.built_with == Some(BuiltWith::RustcSharedDeps) {
            break;
        }
        // Until it is checked again, saves link the dependencies in.
        assert_eq!(finished.built_with, Some(BuiltWith::Rustc));
        assert!(std::time::Instant::now() < deadline, "{}", session.daemon.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(session.body("/").await.starts_with("again "));
    assert_eq!(session.body("/counter").await, "2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_first_build_that_failed_the_shared_library_comes_with_the_fix() {
    let app = App::scaffold("shared-deps-late");
    app.edit_library(SCAFFOLD_GREETING, "\"not a String\"");
    let daemon = app.serve_from(&app.directory, &[], &[("HOTSWAP_SHARED_DEPS", "1")]).await;
    let events = daemon.subscriber().await;
    let mut session = Session { events, daemon, app, greeting: "\"not a String\"".to_owned() };
    // The first build (cargo) fails: nothing serves, no shared library is built.
    let deadline = std::time::Instant::now() + BUILD_TIMEOUT;
    while session.daemon.status().await.last_build.is_none() {
        assert!(std::time::Instant::now() < deadline, "{}", session.daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(session.daemon.status().await.last_build.unwrap().outcome, BuildOutcome::Failed);
    // Fixed: rustc directly, with the dependencies linked in; then the shared library is built
    // for it, and the next save links on it.
    session.set_greeting("\"fixed\\n\".to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::Rustc).await;
    assert_eq!(session.body("/").await, "fixed\n");
    wait_for_shared_library(&session.daemon).await;
    session.set_greeting("\"fixed, on the shared library\\n\".to_owned()");
    session.save_and_swap(&["src/lib.rs"], BuiltWith::RustcSharedDeps).await;
    assert_eq!(session.body("/").await, "fixed, on the shared library\n");
}
