//! A thousand swaps: memory stays flat, and every old generation's process ends, even when the
//! handler leaks on purpose (a `static` that grows with every request, a thread that never
//! ends). (Its own test binary, so that no other test shares the process whose memory it
//! measures, or starts host processes beside it.)

use std::time::Duration;

use hotswap_protocol::events::{Event, RetireOutcome};
use hotswap_tests::artifacts::fixture_library;
use hotswap_tests::http::get;
use hotswap_tests::in_process::{InProcessEngine, host_processes, resident_kib};

/// The engine's process plus the current generation's.
fn daemon_and_current_kib(engine: &hotswap_daemon::engine::Engine) -> u64 {
    let current = engine.status().generations.first().map_or(0, |generation| generation.pid);
    resident_kib(std::process::id()) + resident_kib(current)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_swaps_keep_memory_flat_and_end_every_old_generation() {
    let libraries = [fixture_library(&[]), fixture_library(&["second"])];
    let mut running = InProcessEngine::start(|config| config.rollback_depth = 1).await;
    let (engine, address) = (running.engine.clone(), running.address);

    let swaps = 1000;
    let mut baseline = 0;
    let mut retired = 0;
    for swap in 1..=swaps {
        let report = engine
            .swap(&libraries[swap % 2])
            .await
            .unwrap_or_else(|failure| panic!("swap {swap}: {failure}"));
        // Handler code that leaks: a thread-local with a destructor, a static that grows by
        // 1 MiB, and a thread that never ends. All of it ends with the generation's process.
        for path in ["/thread-local", "/grow-static", "/spawn-thread"] {
            let response = get(address, path).await.unwrap();
            assert_eq!((response.status, response.generation()), (200, Some(report.generation)));
        }
        retired += running
            .drain_events()
            .into_iter()
            .filter(|event| matches!(event, Event::GenerationRetired(_)))
            .count();
        if swap == 50 {
            // Measure from here: allocator arenas and caches have warmed up.
            tokio::time::sleep(Duration::from_millis(500)).await;
            baseline = daemon_and_current_kib(&engine);
        }
    }
    // Every old generation ends.
    let mut killed = Vec::new();
    while retired < swaps - 1 {
        let event = running
            .wait_for_event(Duration::from_secs(60), |event| {
                matches!(event, Event::GenerationRetired(_))
            })
            .await;
        if let Event::GenerationRetired(event) = event
            && event.outcome != RetireOutcome::Ended
        {
            killed.push(event);
        }
        retired += 1;
    }
    println!("{} of {} old generations had to be killed", killed.len(), swaps - 1);
    let status = engine.status();
    assert_eq!(status.ended_generations, swaps as u64 - 1);
    assert_eq!(status.crashes, 0);
    // The current generation and the spare host are all that is left.
    let hosts = host_processes();
    assert!(hosts.len() <= 2, "host processes left: {hosts:?}");
    let growth = daemon_and_current_kib(&engine).saturating_sub(baseline);
    println!("RSS growth (engine + current generation) over {} swaps: {growth} KiB", swaps - 50);
    assert!(growth < 10 * 1024, "RSS grew by {growth} KiB over {} swaps", swaps - 50);

    running.stop().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !host_processes().is_empty() {
        assert!(std::time::Instant::now() < deadline, "hosts left: {:?}", host_processes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
