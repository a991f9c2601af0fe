//! Handler code that kills its own process: a stack overflow, `exit`, `abort`, a null write, a
//! panic while panicking, a failed huge allocation, and the host killed from outside. Each time,
//! under load, the daemon lives, tells its subscribers what happened, and serves the same code
//! again within a second from the last state snapshot; no connect is refused. Crashes at
//! start-up refuse the swap; a crash loop falls back to the previous build.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hotswap_protocol::events::{CrashRecovery, Event, GenerationCrashed, SwapStage};
use hotswap_tests::artifacts::fixture_library;
use hotswap_tests::http::{HttpConnection, get, request};
use hotswap_tests::in_process::InProcessEngine;

const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a crash case does, and what its report must say.
struct Case {
    name: &'static str,
    /// The route that crashes the generation; `None`: SIGKILL from outside.
    path: Option<&'static str>,
    cause: &'static [&'static str],
    request: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "infinite recursion",
        path: Some("/overflow"),
        cause: &["stack overflow", "SIGSEGV"],
        request: Some("GET /overflow"),
    },
    Case {
        name: "process::exit(1)",
        path: Some("/exit"),
        cause: &["called exit()", "exited with code 1"],
        request: Some("GET /exit"),
    },
    Case {
        name: "abort()",
        path: Some("/abort"),
        cause: &["SIGABRT"],
        request: Some("GET /abort"),
    },
    Case {
        name: "a null-pointer write",
        path: Some("/null-write"),
        cause: &["SIGSEGV", "at address 0x0"],
        request: Some("GET /null-write"),
    },
    Case {
        name: "a panic in Drop while unwinding",
        path: Some("/double-panic"),
        cause: &["SIGABRT"],
        request: Some("GET /double-panic"),
    },
    Case {
        name: "a failed huge allocation",
        path: Some("/huge-allocation"),
        cause: &["memory allocation of 70368744177664 bytes failed", "SIGABRT"],
        request: Some("GET /huge-allocation"),
    },
    Case { name: "SIGKILL from outside", path: None, cause: &["killed by SIGKILL"], request: None },
];

/// Keep-alive clients sending `GET /` until stopped, counting refused connects apart from the
/// requests a dying generation took down with it.
struct Load {
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    workers: tokio::task::JoinSet<()>,
}

impl Load {
    fn start(address: std::net::SocketAddr, connections: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicU64::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..connections {
            let (stop, refused, answered) = (stop.clone(), refused.clone(), answered.clone());
            workers.spawn(async move {
                let mut connection: Option<HttpConnection> = None;
                while !stop.load(Ordering::SeqCst) {
                    if connection.as_ref().is_none_or(|open| !open.is_open()) {
                        match HttpConnection::connect(address).await {
                            Ok(open) => connection = Some(open),
                            Err(error) => {
                                let refused_now =
                                    error.downcast_ref::<std::io::Error>().is_some_and(|error| {
                                        error.kind() == std::io::ErrorKind::ConnectionRefused
                                    });
                                if refused_now {
                                    refused.fetch_add(1, Ordering::SeqCst);
                                }
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                continue;
                            }
                        }
                    }
                    let open = connection.as_mut().expect("connected");
                    match open.get("/").await {
                        Ok(response) if response.status == 200 => {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        // A request the crashing process took with it: the client retries.
                        _ => connection = None,
                    }
                }
            });
        }
        Load { stop, refused, answered, workers }
    }

    async fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        while self.workers.join_next().await.is_some() {}
        (self.refused.load(Ordering::SeqCst), self.answered.load(Ordering::SeqCst))
    }
}

async fn crash_event(running: &mut InProcessEngine) -> GenerationCrashed {
    let event = running
        .wait_for_event(EVENT_TIMEOUT, |event| matches!(event, Event::GenerationCrashed(_)))
        .await;
    let Event::GenerationCrashed(crash) = event else { unreachable!() };
    crash
}

/// Polls `GET /` until it answers 200, returning how long that took.
async fn serving_again(address: std::net::SocketAddr, since: Instant) -> Duration {
    loop {
        if let Ok(response) = get(address, "/").await
            && response.status == 200
        {
            assert_eq!(response.body, "first build\n", "the same code serves again");
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(10), "nothing serves 10 s after the crash");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_of_handler_code_is_contained_and_the_same_code_serves_again() {
    let mut running = InProcessEngine::start(|config| {
        config.snapshot_interval = Some(Duration::from_millis(100));
        // Seven crashes of one build in a row: not a crash loop for this test.
        config.crash_loop.crashes = 100;
    })
    .await;
    running.swap(&fixture_library(&[])).await;
    let load = Load::start(running.address, 32);
    let mut counter = 0;
    for case in CASES {
        // State written before the crash, snapshotted within 100 ms, survives it.
        for _ in 0..3 {
            counter += 1;
            let written = request(running.address, "POST", "/counter", "").await.unwrap();
            assert_eq!(written.body, format!("{counter}\n"), "{}", case.name);
        }
        wait_for_snapshot_after(&running, Instant::now()).await;
        let before = running.engine.status();
        let (generation, pid) = (before.current_generation.unwrap(), before.generations[0].pid);
        let crashed_at = Instant::now();
        match case.path {
            Some(path) => {
                let answer = get(running.address, path).await;
                assert!(answer.is_err(), "{}: the crashing request gets no answer", case.name);
            }
            None => {
                // SAFETY: kill(2) on the generation's own host process.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        let crash = crash_event(&mut running).await;
        let told_after = crashed_at.elapsed();
        assert_eq!((crash.generation, crash.pid), (generation, pid), "{}", case.name);
        for words in case.cause {
            assert!(crash.cause.contains(words), "{}: {crash:?}", case.name);
        }
        assert_eq!(crash.request.as_deref(), case.request, "{}: {crash:?}", case.name);
        assert!(
            matches!(crash.recovery, CrashRecovery::Restart { snapshot_age_ms: Some(_) }),
            "{}: {crash:?}",
            case.name
        );
        assert!(told_after < Duration::from_secs(1), "{}: told after {told_after:?}", case.name);
        let serving_after = serving_again(running.address, crashed_at).await;
        println!(
            "{}: told after {told_after:?}, serving again after {serving_after:?}\n  {}\n  last words: {:?}",
            case.name, crash.message, crash.last_words
        );
        assert!(serving_after < Duration::from_secs(1), "{}: {serving_after:?}", case.name);
        let value = get(running.address, "/counter").await.unwrap();
        assert_eq!(value.body, format!("{counter}\n"), "{}: the state survives", case.name);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "{}", case.name);
    }
    let (refused, answered) = load.stop().await;
    println!("{answered} requests answered under load across {} crashes", CASES.len());
    assert_eq!(refused, 0, "no connect is refused");
    assert!(answered > 1000, "the load ran: {answered}");
    assert_eq!(running.engine.status().crashes, CASES.len() as u64);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_start_up_refuses_the_swap_and_the_old_generation_serves_on() {
    let running = InProcessEngine::start(|_| {}).await;
    running.swap(&fixture_library(&[])).await;
    request(running.address, "POST", "/counter", "").await.unwrap();
    for (features, words) in [
        (["abort-in-new"], "SIGABRT"),
        (["huge-allocation-in-new"], "memory allocation of 70368744177664 bytes failed"),
    ] {
        let failure =
            running.try_swap(&fixture_library(&features)).await.expect_err("a crash refuses it");
        assert_eq!(failure.stage, SwapStage::Init, "{failure}");
        assert!(failure.message.contains(words), "{features:?}: {}", failure.message);
        let counter = get(running.address, "/counter").await.unwrap();
        assert_eq!((counter.body.as_str(), counter.generation()), ("1\n", Some(1)));
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_falls_back_to_the_previous_build() {
    let mut running = InProcessEngine::start(|config| {
        config.snapshot_interval = Some(Duration::from_millis(100));
    })
    .await;
    running.swap(&fixture_library(&[])).await;
    assert_eq!(running.swap(&fixture_library(&["second"])).await, 2);
    request(running.address, "POST", "/counter", "").await.unwrap();
    wait_for_snapshot_after(&running, Instant::now()).await;
    // The second build crashes three times in a row: the first two restart it, the third
    // brings the first build back.
    let mut recoveries = Vec::new();
    for _ in 0..3 {
        let _ = get(running.address, "/abort").await;
        let crash = crash_event(&mut running).await;
        recoveries.push(crash.recovery.clone());
        let since = Instant::now();
        loop {
            if get(running.address, "/").await.is_ok_and(|response| response.status == 200) {
                break;
            }
            assert!(since.elapsed() < Duration::from_secs(10), "nothing serves after {crash:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if matches!(crash.recovery, CrashRecovery::PreviousBuild { .. }) {
            assert!(crash.message.contains("3 crashes of this build"), "{}", crash.message);
            assert!(crash.message.contains("previous build"), "{}", crash.message);
        }
    }
    assert!(matches!(recoveries[0], CrashRecovery::Restart { .. }), "{recoveries:?}");
    assert!(matches!(recoveries[1], CrashRecovery::Restart { .. }), "{recoveries:?}");
    assert!(
        matches!(recoveries[2], CrashRecovery::PreviousBuild { generation: 1 }),
        "{recoveries:?}"
    );
    let response = get(running.address, "/").await.unwrap();
    assert_eq!(response.body, "first build\n", "the previous build serves");
    let counter = get(running.address, "/counter").await.unwrap();
    assert_eq!(counter.body, "1\n", "with the state");
    let swapped = running
        .drain_events()
        .into_iter()
        .filter_map(|event| match event {
            Event::SwapFinished(swap) => swap.after_crash,
            _ => None,
        })
        .count();
    assert!(swapped >= 1, "recoveries are announced as swaps");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_no_build_to_fall_back_to_answers_503_with_the_reason_until_the_next_swap() {
    let mut running = InProcessEngine::start(|config| config.crash_loop.crashes = 1).await;
    running.swap(&fixture_library(&[])).await;
    let _ = get(running.address, "/exit").await;
    let crash = crash_event(&mut running).await;
    assert_eq!(crash.recovery, CrashRecovery::None, "{crash:?}");
    assert!(crash.message.contains("nothing serves until the next save"), "{}", crash.message);
    let response = get(running.address, "/").await.unwrap();
    assert_eq!(response.status, 503);
    assert!(response.body.contains("called exit()"), "the 503 says why: {}", response.body);
    // The next swap serves again.
    assert_eq!(running.swap(&fixture_library(&["second"])).await, 2);
    assert_eq!(get(running.address, "/").await.unwrap().body, "second build\n");
    running.stop().await;
}

/// Waits until the engine's state snapshot was taken after `written` (the periodic snapshot runs
/// less often while the machine is busy).
async fn wait_for_snapshot_after(running: &InProcessEngine, written: Instant) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let taken_after = running.engine.status().snapshot.is_some_and(|snapshot| {
            // `age_ms` is rounded down: one more millisecond makes "taken after" certain.
            Duration::from_millis(snapshot.age_ms + 1) <= written.elapsed()
        });
        if taken_after {
            return;
        }
        assert!(Instant::now() < deadline, "no state snapshot within 10 s of the writes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
