//! Code that never returns can only be purged by ending its process, as Erlang does: a thread
//! that loops forever, a tokio task that spins without awaiting, a `static` that only grows, a
//! request blocked in `std::thread::sleep`. After each swap and its drain timeout the old
//! generation's process is gone, the blocked request got its 503, and memory stays flat. (Its
//! own test binary: it counts the host processes of this process.)

use std::time::{Duration, Instant};

use hotswap_tests::artifacts::fixture_library;
use hotswap_tests::http::get;
use hotswap_tests::in_process::{InProcessEngine, host_processes, resident_kib};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_that_never_returns_ends_with_its_process_swap_after_swap() {
    let drain_timeout = Duration::from_millis(500);
    let libraries = [fixture_library(&[]), fixture_library(&["second"])];
    let running = InProcessEngine::start(|config| {
        config.drain_timeout = drain_timeout;
        config.stream_drain_timeout = drain_timeout;
    })
    .await;
    running.swap(&libraries[0]).await;
    let swaps = 20;
    let mut baseline = None;
    for swap in 1..=swaps {
        let status = running.engine.status();
        let old_pid = status.generations[0].pid;
        // The engine and a fresh current generation, before this generation's leaks.
        let memory = resident_kib(std::process::id()) + resident_kib(old_pid);
        if swap == 3 {
            baseline = Some(memory);
        }
        for _ in 0..5 {
            assert_eq!(get(running.address, "/grow-static").await.unwrap().status, 200);
        }
        assert_eq!(get(running.address, "/spawn-thread").await.unwrap().status, 200);
        // A spinning task takes a core until its process ends: not every time, on 2 cores.
        if swap % 4 == 1 {
            assert_eq!(get(running.address, "/spin-task").await.unwrap().status, 200);
        }
        let blocked = tokio::spawn(get(running.address, "/sleep?ms=60000"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while running.engine.status().generations[0].in_flight != 1 {
            assert!(Instant::now() < deadline, "swap {swap}: the blocking request did not start");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let swapped_at = Instant::now();
        running.swap(&libraries[swap % 2]).await;
        let blocked = blocked.await.unwrap().unwrap();
        let answered_after = swapped_at.elapsed();
        assert_eq!(blocked.status, 503, "swap {swap}: {blocked:?}");
        assert!(
            answered_after >= drain_timeout
                && answered_after < drain_timeout + Duration::from_secs(2),
            "swap {swap}: the blocked request was answered {answered_after:?} after the swap"
        );
        // Shortly after the drain timeout, the old process is gone.
        let deadline = swapped_at + drain_timeout + Duration::from_secs(6);
        while std::path::Path::new(&format!("/proc/{old_pid}")).exists() {
            assert!(Instant::now() < deadline, "swap {swap}: the old host {old_pid} lives on");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let response = get(running.address, "/").await.unwrap();
        assert_eq!(response.generation(), Some(swap as u64 + 1), "swap {swap}");
    }
    let status = running.engine.status();
    assert_eq!((status.ended_generations, status.crashes), (swaps as u64, 0));
    let hosts = host_processes();
    assert!(hosts.len() <= 2, "only the current generation and the spare: {hosts:?}");
    let current = status.generations[0].pid;
    let memory = resident_kib(std::process::id()) + resident_kib(current);
    let baseline = baseline.expect("measured");
    let growth = memory.saturating_sub(baseline);
    println!(
        "engine + current generation: {baseline} KiB after 3 swaps, {memory} KiB after {swaps}"
    );
    assert!(growth < 10 * 1024, "memory grew by {growth} KiB over {} swaps", swaps - 3);
    running.stop().await;
}
