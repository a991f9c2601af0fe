//! A thousand swaps: memory stays flat and old generations are really unmapped, even when the
//! handler touched a thread-local with a destructor. (Its own test binary, so that no other test
//! shares the process whose memory it measures.)

use std::time::Duration;

use hotswap_daemon::engine::events::EventSink;
use hotswap_daemon::engine::{Engine, EngineConfig};
use hotswap_protocol::events::{Event, RetireOutcome};
use hotswap_tests::artifacts::fixture_library;
use hotswap_tests::http::get;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Library files from `directory` mapped into this process now.
fn mapped_generations(directory: &std::path::Path) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let prefix = directory.to_string_lossy().into_owned();
    let mut files: Vec<&str> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with(&prefix))
        .collect();
    files.sort();
    files.dedup();
    files.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_swaps_keep_memory_flat_and_unmap_every_old_generation() {
    let libraries = [fixture_library(&[]), fixture_library(&["second"])];
    let generations = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(generations.path().to_path_buf());
    config.drain_timeout = Duration::from_secs(2);
    config.rollback_depth = 1;
    let (sink, mut events) = EventSink::channel(1_000_000);
    let engine = Engine::new(config, sink).unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let engine = engine.clone();
        async move {
            engine
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
        }
    });

    let swaps = 1000;
    let mut baseline = 0;
    for swap in 1..=swaps {
        let report = engine
            .swap(&libraries[swap % 2])
            .await
            .unwrap_or_else(|failure| panic!("swap {swap}: {failure}"));
        // Run handler code that leaves a thread-local with a destructor on a generation thread.
        let response = get(address, "/thread-local").await.unwrap();
        assert_eq!((response.status, response.generation()), (200, Some(report.generation)));
        if swap == 50 {
            // Measure from here: allocator arenas and caches have warmed up.
            tokio::time::sleep(Duration::from_millis(500)).await;
            baseline = resident_kib();
        }
    }
    // Every old generation retires.
    let mut unloaded = 0;
    let mut leaked = Vec::new();
    while unloaded + leaked.len() < swaps - 1 {
        match tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("retirements arrive")
            .unwrap()
        {
            Event::GenerationRetired(retired) if retired.outcome == RetireOutcome::Unloaded => {
                unloaded += 1
            }
            Event::GenerationRetired(retired) => leaked.push(retired),
            _ => {}
        }
    }
    assert!(leaked.is_empty(), "leaked generations: {leaked:?}");
    let status = engine.status();
    assert_eq!((status.unloaded_generations, status.leaked_generations), (swaps as u64 - 1, 0));
    // Only the current generation is still mapped.
    assert_eq!(mapped_generations(generations.path()), 1);
    let growth = resident_kib().saturating_sub(baseline);
    println!("RSS growth over {} swaps: {growth} KiB", swaps - 50);
    assert!(growth < 10 * 1024, "RSS grew by {growth} KiB over {} swaps", swaps - 50);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    engine.shutdown().await;
    assert_eq!(mapped_generations(generations.path()), 0);
}
