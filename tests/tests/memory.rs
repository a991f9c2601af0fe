//! A thousand swaps: memory stays flat and old generations are really unmapped, even when the
//! handler touched a thread-local with a destructor. (Its own test binary, so that no other test
//! shares the process whose memory it measures.)

use std::time::Duration;

use hotswap_protocol::events::{Event, RetireOutcome};
use hotswap_tests::artifacts::fixture_library;
use hotswap_tests::http::get;
use hotswap_tests::in_process::{InProcessEngine, mapped_files_under};

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_swaps_keep_memory_flat_and_unmap_every_old_generation() {
    let libraries = [fixture_library(&[]), fixture_library(&["second"])];
    let mut running = InProcessEngine::start(|config| config.rollback_depth = 1).await;
    let (engine, address) = (running.engine.clone(), running.address);
    let generations = running.generations_dir().to_path_buf();

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
        let retired = running
            .wait_for_event(Duration::from_secs(60), |event| {
                matches!(event, Event::GenerationRetired(_))
            })
            .await;
        match retired {
            Event::GenerationRetired(retired) if retired.outcome == RetireOutcome::Unloaded => {
                unloaded += 1
            }
            Event::GenerationRetired(retired) => leaked.push(retired),
            _ => unreachable!(),
        }
    }
    assert!(leaked.is_empty(), "leaked generations: {leaked:?}");
    let status = engine.status();
    assert_eq!((status.unloaded_generations, status.leaked_generations), (swaps as u64 - 1, 0));
    // Only the current generation is still mapped.
    assert_eq!(mapped_files_under(&generations).len(), 1);
    let growth = resident_kib().saturating_sub(baseline);
    println!("RSS growth over {} swaps: {growth} KiB", swaps - 50);
    assert!(growth < 10 * 1024, "RSS grew by {growth} KiB over {} swaps", swaps - 50);

    running.stop().await;
    assert_eq!(mapped_files_under(&generations).len(), 0);
}
