//! The swap engine with real handler libraries: real cargo builds, real host processes, real
//! HTTP.

use std::time::Duration;

use hotswap_protocol::events::{Event, RetireOutcome, SwapStage};
use hotswap_tests::artifacts::{
    example_library, fixture_crate_library, fixture_crate_library_with, fixture_library,
};
use hotswap_tests::http::{HttpConnection, get, request};
use hotswap_tests::in_process::InProcessEngine as Running;

const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_handler_and_swaps_to_new_code() {
    let first = fixture_library(&[]);
    let second = fixture_library(&["second"]);
    let mut running = Running::start(|_| {}).await;

    // Before any generation, clients get a 503 that says why.
    let response = get(running.address, "/").await.unwrap();
    assert_eq!(response.status, 503);
    assert!(response.body.contains("no handler is loaded yet"), "{}", response.body);

    assert_eq!(running.swap(&first).await, 1);
    let response = get(running.address, "/").await.unwrap();
    assert_eq!(
        (response.status, response.body.as_str(), response.generation()),
        (200, "first build\n", Some(1))
    );

    let first_pid = running.engine.status().generations[0].pid;

    // A request running on generation 1 during the swap finishes on generation 1; its
    // connection then moves to generation 2 at the request boundary, without being closed.
    let address = running.address;
    let slow = tokio::spawn(async move {
        let mut connection = HttpConnection::connect(address).await.unwrap();
        let slow = connection.get("/slow?ms=1500").await.unwrap();
        let next = connection.get("/").await.unwrap();
        (slow, next)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(running.swap(&second).await, 2);
    let response = get(running.address, "/").await.unwrap();
    assert_eq!((response.body.as_str(), response.generation()), ("second build\n", Some(2)));
    let (slow, next) = slow.await.unwrap();
    assert_eq!(
        (slow.status, slow.body.as_str(), slow.generation()),
        (200, "first build\nslept 1500 ms\n", Some(1))
    );
    assert!(!slow.closes_connection(), "no connection: close on a handover");
    assert_eq!((next.body.as_str(), next.generation()), ("second build\n", Some(2)));

    // Generation 1 drains and its process ends.
    let retired = running
        .wait_for_event(EVENT_TIMEOUT, |event| matches!(event, Event::GenerationRetired(_)))
        .await;
    let Event::GenerationRetired(retired) = retired else { unreachable!() };
    assert_eq!((retired.generation, retired.outcome), (1, RetireOutcome::Ended));
    assert!(!std::path::Path::new(&format!("/proc/{first_pid}")).exists(), "its process is gone");
    let status = running.engine.status();
    assert_eq!(status.current_generation, Some(2));
    assert_eq!(status.ended_generations, 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_moves_to_the_new_generation() {
    let first = fixture_library(&[]);
    let second = fixture_library(&["second"]);
    let mut running = Running::start(|_| {}).await;
    running.swap(&first).await;
    let mut connection = HttpConnection::connect(running.address).await.unwrap();
    assert_eq!(connection.get("/").await.unwrap().generation(), Some(1));
    running.swap(&second).await;
    // The old generation gives the idle connection back and the new one serves it: the same
    // connection, the new code, nothing closed under the client.
    let retired = running
        .wait_for_event(EVENT_TIMEOUT, |event| matches!(event, Event::GenerationRetired(_)))
        .await;
    assert!(
        matches!(retired, Event::GenerationRetired(ref retired) if retired.outcome == RetireOutcome::Ended)
    );
    assert!(connection.is_open());
    let response = connection.get("/").await.unwrap();
    assert_eq!((response.body.as_str(), response.generation()), ("second build\n", Some(2)));
    assert!(!response.closes_connection());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_swaps() {
    let todo = example_library("todo");
    let running = Running::start(|config| config.smoke_path = Some("/health".into())).await;
    running.swap(&todo).await;
    for title in ["write the engine", "test it"] {
        let body = format!(r#"{{"title":"{title}"}}"#);
        let created = request(running.address, "POST", "/todos", &body).await.unwrap();
        assert_eq!(created.status, 201, "{}", created.body);
    }
    for _ in 0..10 {
        running.swap(&todo).await;
    }
    let listed = get(running.address, "/todos").await.unwrap();
    assert_eq!(listed.generation(), Some(11));
    let items: serde_json::Value = serde_json::from_str(&listed.body).unwrap();
    let titles: Vec<_> =
        items.as_array().unwrap().iter().map(|item| item["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["write the engine", "test it"]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_and_the_engine_goes_on() {
    let first = fixture_library(&[]);
    let mut running = Running::start(|_| {}).await;
    running.swap(&first).await;
    let response = get(running.address, "/panic").await.unwrap();
    assert_eq!(response.status, 500);
    let panicked = running
        .wait_for_event(EVENT_TIMEOUT, |event| matches!(event, Event::HandlerPanicked(_)))
        .await;
    let Event::HandlerPanicked(panicked) = panicked else { unreachable!() };
    assert_eq!(panicked.message, "the fixture panics on /panic");
    assert!(panicked.location.unwrap().contains("src/lib.rs"));
    let response = get(running.address, "/").await.unwrap();
    assert_eq!((response.status, response.body.as_str()), (200, "first build\n"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_libraries_are_refused_and_the_old_generation_keeps_serving() {
    let good = fixture_library(&[]);
    let running = Running::start(|config| {
        config.smoke_path = Some("/health".into());
        config.init_timeout = Duration::from_secs(2);
    })
    .await;
    running.swap(&good).await;
    let cases: Vec<(std::path::PathBuf, SwapStage, &str)> = vec![
        (fixture_crate_library("wrong-abi"), SwapStage::Verify, "ABI version 99"),
        (fixture_crate_library("no-export"), SwapStage::Load, "no `hotswap_handler_entry` symbol"),
        (fixture_library(&["panic-in-new"]), SwapStage::Init, "the fixture panics in Handler::new"),
        (fixture_library(&["unhealthy"]), SwapStage::Smoke, "GET /health answered 500"),
        (running.address.to_string().into(), SwapStage::Copy, "is gone"),
    ];
    for (library, stage, reason) in cases {
        let failure = running.engine.swap(&library).await.expect_err("the swap must be refused");
        assert_eq!(failure.stage, stage, "{}: {failure}", library.display());
        assert!(failure.message.contains(reason), "{}: {}", library.display(), failure.message);
        let response = get(running.address, "/").await.unwrap();
        assert_eq!((response.body.as_str(), response.generation()), ("first build\n", Some(1)));
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_load_across_100_swaps_loses_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use hotswap_tests::load::{CurrentGeneration, run_load};

    let libraries = [fixture_library(&[]), fixture_library(&["second"])];
    let running = Running::start(|config| config.smoke_path = Some("/health".into())).await;
    let current = Arc::new(CurrentGeneration::default());
    current.set(running.swap(&libraries[0]).await);
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(run_load(
        running.address,
        "/",
        32,
        &["first build\n", "second build\n"],
        current.clone(),
        stop.clone(),
    ));
    for swap in 1..=100 {
        let generation = running.swap(&libraries[swap % 2]).await;
        current.set(generation);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    println!(
        "{} responses, {} retries on closed keep-alive connections, {} in the swap window, {} generations seen",
        report.responses,
        report.retries,
        report.swap_window,
        report.generations_seen.len()
    );
    assert!(
        report.failures.is_empty(),
        "{} failures, e.g. {:?}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(5)]
    );
    assert!(
        report.generations_seen.len() > 50,
        "the load saw most generations: {:?}",
        report.generations_seen
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_tracing_reaches_the_host_with_its_generation() {
    let todo = example_library("todo");
    let mut running = Running::start(|_| {}).await;
    let generation = running.swap(&todo).await;
    let created =
        request(running.address, "POST", "/todos", r#"{"title":"log me"}"#).await.unwrap();
    assert_eq!(created.status, 201);
    let logged = running
        .wait_for_event(
            EVENT_TIMEOUT,
            |event| matches!(event, Event::Log(line) if line.generation.is_some()),
        )
        .await;
    let Event::Log(line) = logged else { unreachable!() };
    assert_eq!(line.generation, Some(generation));
    assert_eq!(line.target, "todo");
    assert_eq!(line.message, "created an item id=1");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_serves_the_previous_artifact_again() {
    let first = fixture_library(&[]);
    let second = fixture_library(&["second"]);
    let running = Running::start(|_| {}).await;
    assert!(matches!(
        running.engine.rollback().await,
        Err(hotswap_daemon::engine::RollbackError::NothingToRollBack)
    ));
    running.swap(&first).await;
    running.swap(&second).await;
    assert_eq!(get(running.address, "/").await.unwrap().body, "second build\n");
    let report = running.engine.rollback().await.unwrap();
    assert_eq!(report.generation, 3);
    let response = get(running.address, "/").await.unwrap();
    assert_eq!((response.body.as_str(), response.generation()), ("first build\n", Some(3)));
    // Nothing older is left: a second rollback has nowhere to go.
    assert!(matches!(
        running.engine.rollback().await,
        Err(hotswap_daemon::engine::RollbackError::NothingToRollBack)
    ));
    running.stop().await;
}

/// The `Log` events of handler code from target `fixture` that have arrived.
fn fixture_lines(running: &mut Running) -> Vec<hotswap_protocol::events::LogLine> {
    running
        .drain_events()
        .into_iter()
        .filter_map(|event| match event {
            Event::Log(line) if line.target == "fixture" => Some(line),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_tracing_follows_the_users_filter_with_spans_and_fields() {
    use hotswap_protocol::events::LogLevel;
    let fixture = fixture_library(&[]);
    // As `RUST_LOG=info,fixture=debug hotswap serve` passes it.
    let mut running = Running::start(|config| {
        config.host.environment.push(("HOTSWAP_LOG".into(), "info,fixture=debug".into()));
    })
    .await;
    let generation = running.swap(&fixture).await;
    assert_eq!(get(running.address, "/traced").await.unwrap().body, "traced\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = fixture_lines(&mut running);
    let shown: Vec<(LogLevel, &str)> =
        lines.iter().map(|line| (line.level, line.message.as_str())).collect();
    assert_eq!(
        shown,
        [
            (LogLevel::Info, r#"job{id=7 kind="report"}: working on it step=1"#),
            (LogLevel::Debug, r#"job{id=7 kind="report"}: looking closer detail="every row""#),
        ],
        "each line with its span and fields"
    );
    assert!(lines.iter().all(|line| line.generation == Some(generation)));

    // `println!` and `eprintln!` reach the events too, tagged with the generation.
    assert_eq!(get(running.address, "/print").await.unwrap().body, "printed\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut printed = Vec::new();
    while printed.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "printed lines: {printed:?}");
        printed.extend(running.drain_events().into_iter().filter_map(|event| match event {
            Event::Log(line) if line.message.starts_with("printed to") => {
                Some((line.target, line.message, line.generation))
            }
            _ => None,
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    printed.sort();
    let tagged =
        |target: &str, message: &str| (target.to_owned(), message.to_owned(), Some(generation));
    assert_eq!(
        printed,
        [
            tagged("stderr", "printed to stderr by first build"),
            tagged("stdout", "printed to stdout by first build"),
        ]
    );
    running.stop().await;

    // `warn`: neither line; the default: info only.
    for (directives, expected) in [(Some("warn"), 0), (None, 1)] {
        let mut running = Running::start(|config| {
            if let Some(directives) = directives {
                config.host.environment.push(("HOTSWAP_LOG".into(), directives.into()));
            }
        })
        .await;
        running.swap(&fixture).await;
        get(running.address, "/traced").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let lines = fixture_lines(&mut running);
        assert_eq!(lines.len(), expected, "{directives:?}: {lines:?}");
        running.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_set_up_runs_while_the_old_generation_answers_and_a_failing_one_keeps_it() {
    let running = std::sync::Arc::new(Running::start(|_| {}).await);
    running.swap(&fixture_library(&[])).await;
    let slow = fixture_library(&["slow-create"]);
    let swap = tokio::spawn({
        let running = running.clone();
        async move { running.try_swap(&slow).await }
    });
    // Meanwhile (two seconds of set-up), every request is answered by the old generation.
    let started = std::time::Instant::now();
    let mut answered = 0;
    while !swap.is_finished() {
        let response = get(running.address, "/").await.unwrap();
        if swap.is_finished() {
            break;
        }
        assert_eq!((response.status, response.body.as_str()), (200, "first build\n"));
        assert_eq!(response.generation(), Some(1));
        answered += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = swap.await.unwrap().expect("the slow set-up swaps");
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(answered >= 20, "the old generation answered during the set-up: {answered}");
    assert_eq!(get(running.address, "/").await.unwrap().generation(), Some(report.generation));

    // An error from the set-up refuses the swap with its words; the last good code serves on.
    let failure = running
        .try_swap(&fixture_library(&["failing-create"]))
        .await
        .expect_err("a failing set-up is refused");
    assert_eq!(failure.stage, SwapStage::Init, "{failure}");
    assert!(
        failure
            .message
            .contains("the app's set-up failed: the database at db.invalid:5432 does not answer"),
        "{}",
        failure.message
    );
    assert_eq!(get(running.address, "/").await.unwrap().generation(), Some(report.generation));
    std::sync::Arc::try_unwrap(running).expect("no other owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_without_state_keeps_answering_writes_while_the_next_generation_sets_up() {
    // Its data lives elsewhere (a database): no write can be lost to the export, so none waits.
    let running = std::sync::Arc::new(Running::start(|_| {}).await);
    running.swap(&fixture_crate_library("streams")).await;
    let slow = fixture_crate_library_with("streams", &["slow-create"]);
    let swap = tokio::spawn({
        let running = running.clone();
        async move { running.try_swap(&slow).await }
    });
    let mut answered = 0;
    while !swap.is_finished() {
        let response = request(running.address, "POST", "/small-upload", "a write").await.unwrap();
        if swap.is_finished() {
            break;
        }
        assert_eq!((response.status, response.body.as_str()), (200, "7 bytes\n"), "{response:?}");
        assert_eq!(response.generation(), Some(1), "the old generation answers the write");
        answered += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = swap.await.unwrap().expect("the slow set-up swaps");
    assert!(answered >= 20, "writes answered during the set-up: {answered}");
    let response = request(running.address, "POST", "/small-upload", "a write").await.unwrap();
    assert_eq!(response.generation(), Some(report.generation));
    std::sync::Arc::try_unwrap(running).expect("no other owner").stop().await;
}
