//! Reliability of the swap engine with real libraries: hundreds of swaps under load, and every
//! kind of broken library or misbehaving handler, each leaving the last good generation serving
//! and saying why. (The daemon-level faults are in `reliability_daemon.rs`; the summary of all of
//! them is in `RELIABILITY.md`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hotswap_daemon::engine::StatePolicy;
use hotswap_protocol::events::{Event, RetireOutcome, SwapStage};
use hotswap_tests::artifacts::fixture_library;
use hotswap_tests::http::{HttpConnection, HttpResponse, get, request};
use hotswap_tests::in_process::{InProcessEngine, host_processes, mapped_files_under};
use hotswap_tests::load::{CurrentGeneration, ResponseCheck, run_checked_load};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Asserts that `/` is answered by generation `generation` of the first fixture build.
async fn assert_first_build_serves(engine: &InProcessEngine, generation: u64, after: &str) {
    let response =
        get(engine.address, "/").await.unwrap_or_else(|error| panic!("{after}: {error}"));
    assert_eq!(
        (response.status, response.body.as_str(), response.generation()),
        (200, "first build\n", Some(generation)),
        "{after}: the last good generation must keep serving"
    );
}

fn expect_refusal(
    result: Result<hotswap_daemon::engine::SwapReport, hotswap_daemon::engine::SwapFailure>,
    what: &str,
) -> hotswap_daemon::engine::SwapFailure {
    match result {
        Ok(report) => {
            panic!("{what}: the swap must be refused, but generation {} serves", report.generation)
        }
        Err(failure) => failure,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_eight_connections_across_200_swaps_get_only_right_answers() {
    let libraries = [fixture_library(&[]), fixture_library(&["second"])];
    let mut running =
        InProcessEngine::start(|config| config.smoke_path = Some("/health".into())).await;
    let current = Arc::new(CurrentGeneration::default());
    current.set(running.swap(&libraries[0]).await);
    // State written before the load must be there after 200 swaps under load.
    for expected in 1..=5 {
        let response = request(running.address, "POST", "/counter", "").await.unwrap();
        assert_eq!(response.body, format!("{expected}\n"));
    }

    // Odd generations run the first build, even ones the second: a body from the other build
    // than the generation header says is a wrong answer.
    let check: ResponseCheck = Arc::new(|response: &HttpResponse| {
        let expected = match response.generation() {
            Some(generation) if generation % 2 == 1 => "first build\n",
            Some(_) => "second build\n",
            None => return Err(format!("no hotswap-generation header: {response:?}")),
        };
        if response.status != 200 || response.body != expected {
            return Err(format!(
                "generation {:?} answered status {} body {:?}",
                response.generation(),
                response.status,
                response.body
            ));
        }
        Ok(())
    });
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(run_checked_load(
        running.address,
        "/",
        48,
        check,
        current.clone(),
        stop.clone(),
    ));
    let swaps = 200;
    let started = Instant::now();
    for swap in 1..=swaps {
        let generation = running.swap(&libraries[swap % 2]).await;
        current.set(generation);
        // Let the load run against each generation for a moment.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    println!(
        "200 swaps in {:.1} s: {} responses, {} failures, {} retries on closed keep-alive connections, \
         {} answered in the swap window, {} generations seen",
        started.elapsed().as_secs_f64(),
        report.responses,
        report.failures.len(),
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
    assert!(report.responses > 2_000, "the load ran: {} responses", report.responses);
    // A request sent after a swap returned may meet the replaced generation only if that
    // generation read it at the very instant of the swap: a handful, never a steady share
    // (before the swap waited for the old generation to drain, it was 1.5-3 %).
    assert!(
        report.swap_window * 200 <= report.responses,
        "{} of {} responses came from the generation just replaced",
        report.swap_window,
        report.responses
    );
    assert!(
        report.generations_seen.len() > 100,
        "the load met most generations: {} of 201",
        report.generations_seen.len()
    );

    // Every replaced generation's process ends by itself, and the state is intact.
    let mut ended = 0;
    while ended < swaps {
        let event = running
            .wait_for_event(EVENT_TIMEOUT, |event| matches!(event, Event::GenerationRetired(_)))
            .await;
        let Event::GenerationRetired(retired) = event else { unreachable!() };
        assert_eq!(retired.outcome, RetireOutcome::Ended, "{retired:?}");
        assert_eq!(retired.requests_cut, 0, "no request was cut: {retired:?}");
        ended += 1;
    }
    let status = running.engine.status();
    assert_eq!((status.ended_generations, status.crashes), (200, 0));
    let counter = get(running.address, "/counter").await.unwrap();
    assert_eq!((counter.body.as_str(), counter.generation()), ("5\n", Some(201)));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_with_an_undefined_symbol_is_refused_at_load() {
    // The link of a cdylib leaves undefined symbols to the loading process; loaded lazily, the
    // first call would kill the daemon with "symbol lookup error". It must be refused instead.
    let unresolved = fixture_library(&["undefined-symbol"]);
    let running = InProcessEngine::start(|config| config.smoke_path = Some("/health".into())).await;
    running.swap(&fixture_library(&[])).await;
    let failure = expect_refusal(running.try_swap(&unresolved).await, "an undefined symbol");
    assert_eq!(failure.stage, SwapStage::Load, "{failure}");
    assert!(
        failure.message.contains("hotswap_fixture_function_that_no_library_defines"),
        "the message names the symbol: {}",
        failure.message
    );
    assert_first_build_serves(&running, 1, "an undefined symbol").await;
    let pid = running.engine.status().generations[0].pid;
    assert_eq!(
        mapped_files_under(pid, running.generations_dir()).len(),
        1,
        "generation 1 maps its own library only"
    );
    running.stop().await;
}

/// Byte offset of the library's ABI header: its magic `HOTSWAP\0`, then ABI version 2 (see
/// `handler/src/abi.rs`).
fn header_offset(bytes: &[u8]) -> usize {
    let mut needle = b"HOTSWAP\0".to_vec();
    needle.extend_from_slice(&2u32.to_le_bytes());
    bytes
        .windows(needle.len())
        .position(|window| window == needle.as_slice())
        .expect("the fixture library holds its ABI header")
}

/// The end of the last loadable segment of an ELF64 file: the bytes `dlopen` maps.
fn loadable_end(bytes: &[u8]) -> usize {
    let read = |at: usize, length: usize| {
        bytes[at..at + length].iter().rev().fold(0usize, |value, &byte| value << 8 | byte as usize)
    };
    let (table, entry_size, entries) = (read(32, 8), read(54, 2), read(56, 2));
    (0..entries)
        .map(|index| table + index * entry_size)
        .filter(|&entry| read(entry, 4) == 1)
        .map(|entry| read(entry + 8, 8) + read(entry + 32, 8))
        .max()
        .expect("the library has loadable segments")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_corrupt_libraries_are_refused() {
    let good = fixture_library(&[]);
    let bytes = std::fs::read(&good).unwrap();
    let running = InProcessEngine::start(|config| config.smoke_path = Some("/health".into())).await;
    running.swap(&good).await;
    let directory = tempfile::tempdir().unwrap();

    let mut cases: Vec<(String, Vec<u8>, &[SwapStage])> = Vec::new();
    // Cut inside the loadable segments (what follows them, symbols and debug info, is not
    // needed to run, so a cut there leaves a working library).
    let loaded = loadable_end(&bytes);
    for length in [0, 16, 64, 4096, loaded / 4, loaded / 2, loaded - 1] {
        cases.push((
            format!("truncated to {length} bytes"),
            bytes[..length].to_vec(),
            &[SwapStage::Load],
        ));
    }
    cases.push(("a text file".into(), b"this is not a library\n".repeat(100), &[SwapStage::Load]));
    let mut wrong_magic = bytes.clone();
    wrong_magic[1..4].copy_from_slice(b"XYZ");
    cases.push(("no ELF magic".into(), wrong_magic, &[SwapStage::Load]));
    let mut wrong_machine = bytes.clone();
    // e_machine (offset 18): AArch64 instead of x86-64.
    wrong_machine[18..20].copy_from_slice(&183u16.to_le_bytes());
    cases.push(("an ELF file for another machine".into(), wrong_machine, &[SwapStage::Load]));
    let mut wrong_class = bytes.clone();
    // EI_CLASS (offset 4): 32-bit.
    wrong_class[4] = 1;
    cases.push(("a 32-bit ELF header".into(), wrong_class, &[SwapStage::Load]));
    let mut program_headers_gone = bytes.clone();
    // e_phoff (offset 32) pointing past the end of the file.
    program_headers_gone[32..40].copy_from_slice(&(bytes.len() as u64 * 2).to_le_bytes());
    cases.push(("program headers past the end".into(), program_headers_gone, &[SwapStage::Load]));
    let header = header_offset(&bytes);
    let mut corrupt_header = bytes.clone();
    corrupt_header[header..header + 7].copy_from_slice(b"garbage");
    cases.push(("a corrupt ABI header (magic)".into(), corrupt_header, &[SwapStage::Verify]));
    let mut corrupt_version = bytes.clone();
    corrupt_version[header + 8..header + 12].copy_from_slice(&7u32.to_le_bytes());
    cases.push(("a corrupt ABI header (version)".into(), corrupt_version, &[SwapStage::Verify]));
    let mut corrupt_hash = bytes.clone();
    // layout_hash follows magic (8), abi_version (4) and header_size (4).
    corrupt_hash[header + 16] ^= 0xff;
    cases.push(("a corrupt ABI header (layout hash)".into(), corrupt_hash, &[SwapStage::Verify]));

    for (index, (what, contents, stages)) in cases.into_iter().enumerate() {
        let path = directory.path().join(format!("libcorrupt{index}.so"));
        std::fs::write(&path, &contents).unwrap();
        let failure = expect_refusal(running.try_swap(&path).await, &what);
        assert!(
            stages.contains(&failure.stage),
            "{what}: refused at {} ({})",
            failure.stage,
            failure.message
        );
        assert!(!failure.message.is_empty(), "{what}: the refusal says why");
        assert_first_build_serves(&running, 1, &what).await;
    }
    // Every refused library's host process ends: generation 1 and the spare are left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while host_processes().len() > 2 {
        assert!(Instant::now() < deadline, "refused hosts live on: {:?}", host_processes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_start_times_out_and_its_process_is_ended() {
    let hanging = fixture_library(&["hang-in-new"]);
    let init_timeout = Duration::from_secs(1);
    let running = InProcessEngine::start(|config| {
        config.smoke_path = Some("/health".into());
        config.init_timeout = init_timeout;
    })
    .await;
    running.swap(&fixture_library(&[])).await;
    let started = Instant::now();
    let swap = tokio::spawn({
        let engine = running.engine.clone();
        async move { engine.swap(&hanging).await }
    });
    // Meanwhile requests are answered by generation 1, within about the init timeout.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    assert_first_build_serves(&running, 1, "during a hanging start").await;
    let waited = asked.elapsed();
    assert!(
        waited < init_timeout + Duration::from_secs(2),
        "a request waited {waited:?} for a hanging start"
    );

    let failure = expect_refusal(swap.await.unwrap(), "a hanging Handler::new");
    assert_eq!(failure.stage, SwapStage::Init, "{failure}");
    assert!(
        failure.message.contains("1000 ms"),
        "the message names the timeout: {}",
        failure.message
    );
    println!("the hanging start was refused after {:?}", started.elapsed());
    assert_first_build_serves(&running, 1, "after a hanging start").await;

    // The stuck generation's process is ended: only generation 1 and the spare host are left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while host_processes().len() > 2 {
        assert!(Instant::now() < deadline, "the stuck host lives on: {:?}", host_processes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // And the engine goes on swapping.
    assert_eq!(running.swap(&fixture_library(&["second"])).await, 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_finishes_gets_503_at_the_drain_timeout_and_nothing_else_does() {
    let drain_timeout = Duration::from_millis(1500);
    let mut running = InProcessEngine::start(|config| config.drain_timeout = drain_timeout).await;
    running.swap(&fixture_library(&[])).await;
    let hanging = tokio::spawn(get(running.address, "/hang"));
    let slow = tokio::spawn(get(running.address, "/slow?ms=500"));
    // Both requests run on generation 1 before the swap.
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.engine.status().generations.first().map(|generation| generation.in_flight)
        != Some(2)
    {
        assert!(Instant::now() < deadline, "the two requests did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let swapped_at = Instant::now();
    assert_eq!(running.swap(&fixture_library(&["second"])).await, 2);

    // Until and after the drain timeout, every other request is answered normally.
    let mut others = 0;
    while swapped_at.elapsed() < drain_timeout + Duration::from_millis(500) {
        let response = get(running.address, "/").await.unwrap();
        assert_eq!((response.status, response.body.as_str()), (200, "second build\n"));
        others += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let slow = slow.await.unwrap().unwrap();
    assert_eq!((slow.status, slow.generation()), (200, Some(1)), "{slow:?}");
    let hanging = hanging.await.unwrap().unwrap();
    assert_eq!((hanging.status, hanging.generation()), (503, Some(1)), "{hanging:?}");
    assert!(hanging.body.contains("drain timeout"), "{}", hanging.body);
    let cut_after = swapped_at.elapsed();
    assert!(cut_after >= drain_timeout, "cut after {cut_after:?}, before the drain timeout");

    let event = running
        .wait_for_event(EVENT_TIMEOUT, |event| matches!(event, Event::GenerationRetired(_)))
        .await;
    let Event::GenerationRetired(retired) = event else { unreachable!() };
    assert_eq!(
        (retired.generation, retired.outcome, retired.requests_cut),
        (1, RetireOutcome::Ended, 1),
        "{retired:?}"
    );
    println!("{others} other requests answered while the hanging one waited for its 503");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_that_cannot_be_imported_starts_fresh_or_refuses_the_swap_as_configured() {
    let first = fixture_library(&[]);
    let incompatible = fixture_library(&["state-v2"]);
    for policy in [StatePolicy::Fresh, StatePolicy::Reject] {
        let running = InProcessEngine::start(|config| config.state_policy = policy).await;
        running.swap(&first).await;
        for _ in 0..3 {
            request(running.address, "POST", "/counter", "").await.unwrap();
        }
        let result = running.try_swap(&incompatible).await;
        match policy {
            StatePolicy::Fresh => {
                let report = result.expect("the fresh policy swaps");
                let warning = report.warnings.join("\n");
                assert!(warning.contains("could not be imported"), "{warning}");
                assert!(warning.contains("`owner` is missing"), "the warning says why: {warning}");
                let counter = get(running.address, "/counter").await.unwrap();
                assert_eq!((counter.body.as_str(), counter.generation()), ("0\n", Some(2)));
            }
            StatePolicy::Reject => {
                let failure = expect_refusal(result, "an incompatible state under \"reject\"");
                assert_eq!(failure.stage, SwapStage::State, "{failure}");
                assert!(failure.message.contains("`owner` is missing"), "{}", failure.message);
                let counter = get(running.address, "/counter").await.unwrap();
                assert_eq!(
                    (counter.body.as_str(), counter.generation()),
                    ("3\n", Some(1)),
                    "the old generation keeps serving with its state"
                );
                // The state is still there for a compatible build.
                request(running.address, "POST", "/counter", "").await.unwrap();
                assert_eq!(running.swap(&fixture_library(&["second"])).await, 3);
                let counter = get(running.address, "/counter").await.unwrap();
                assert_eq!((counter.body.as_str(), counter.generation()), ("4\n", Some(3)));
            }
        }
        running.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_blocking_its_thread_gets_503_at_the_drain_timeout_and_its_process_ends() {
    let drain_timeout = Duration::from_millis(1000);
    let mut running = InProcessEngine::start(|config| config.drain_timeout = drain_timeout).await;
    running.swap(&fixture_library(&[])).await;
    let old_pid = running.engine.status().generations[0].pid;
    // A request that blocks its runtime thread (the SDK's own purge never runs for it): the
    // host answers it, and ending the process ends the thread.
    let blocked = tokio::spawn(get(running.address, "/sleep?ms=60000"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.engine.status().generations.first().map(|generation| generation.in_flight)
        != Some(1)
    {
        assert!(Instant::now() < deadline, "the blocking request did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let swapped_at = Instant::now();
    assert_eq!(running.swap(&fixture_library(&["second"])).await, 2);
    let blocked = blocked.await.unwrap().unwrap();
    let answered_after = swapped_at.elapsed();
    assert_eq!((blocked.status, blocked.generation()), (503, Some(1)), "{blocked:?}");
    assert!(blocked.body.contains("drain timeout"), "{}", blocked.body);
    assert!(
        answered_after >= drain_timeout && answered_after < drain_timeout + Duration::from_secs(2),
        "the blocked request got its 503 {answered_after:?} after the swap"
    );
    let event = running
        .wait_for_event(EVENT_TIMEOUT, |event| matches!(event, Event::GenerationRetired(_)))
        .await;
    let Event::GenerationRetired(retired) = event else { unreachable!() };
    assert_eq!((retired.generation, retired.requests_cut), (1, 1), "{retired:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{old_pid}")).exists(),
        "the blocked generation's process is gone"
    );
    let response = get(running.address, "/").await.unwrap();
    assert_eq!((response.status, response.body.as_str()), (200, "second build\n"));
    running.stop().await;
}

/// Sends a chunked request of `size` body bytes on a raw connection and returns the status line.
async fn chunked_post(address: std::net::SocketAddr, path: &str, size: usize) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 1000];
    let mut sent = 0;
    while sent < size {
        let length = chunk.len().min(size - sent);
        let framed = [format!("{length:x}\r\n").as_bytes(), &chunk[..length], b"\r\n"].concat();
        // The server may answer 413 and close before the whole body is sent.
        if stream.write_all(&framed).await.is_err() {
            break;
        }
        sent += length;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_and_the_connection_and_server_go_on() {
    let limit = 64 * 1024;
    let running = InProcessEngine::start(|config| config.max_body_bytes = limit).await;
    running.swap(&fixture_library(&[])).await;
    let at_limit = "y".repeat(limit as usize);
    let echoed = request(running.address, "POST", "/echo", &at_limit).await.unwrap();
    assert_eq!((echoed.status, echoed.body.len()), (200, limit as usize));

    // Declared too large: refused before reading.
    let mut connection = HttpConnection::connect(running.address).await.unwrap();
    let refused =
        connection.request("POST", "/echo", &"y".repeat(limit as usize + 1)).await.unwrap();
    assert_eq!(refused.status, 413, "{refused:?}");
    assert!(refused.body.contains("larger than the limit"), "{}", refused.body);
    // 10 MiB declared: the same, without the server buffering it.
    let huge = request(running.address, "POST", "/echo", &"z".repeat(10 * 1024 * 1024)).await;
    if let Ok(huge) = huge {
        assert_eq!(huge.status, 413);
    }
    // Not declared (chunked): refused once the limit is passed.
    let status_line = chunked_post(running.address, "/echo", limit as usize * 4).await;
    assert!(status_line.contains("413"), "chunked over the limit: {status_line:?}");
    let status_line = chunked_post(running.address, "/echo", 1000).await;
    assert!(status_line.contains("200"), "chunked under the limit: {status_line:?}");

    assert_first_build_serves(&running, 1, "after bodies over the limit").await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_generation_never_shares_its_library_with_a_new_one() {
    // Every generation must load a file of its own, which no build can change under it. Here
    // generation 1 keeps draining (a request that never ends) while the rollback history (depth
    // 1) forgets its file and the same artifact is swapped in again.
    let (first, second) = (fixture_library(&[]), fixture_library(&["second"]));
    let mut running = InProcessEngine::start(|config| {
        config.rollback_depth = 1;
        config.drain_timeout = Duration::from_secs(3);
    })
    .await;
    running.swap(&first).await;
    let hanging = tokio::spawn(get(running.address, "/hang"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.engine.status().generations.first().map(|generation| generation.in_flight)
        != Some(1)
    {
        assert!(Instant::now() < deadline, "the hanging request did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (library, generation) in [(&second, 2), (&first, 3), (&second, 4), (&first, 5)] {
        assert_eq!(running.swap(library).await, generation);
        let pid = running.engine.status().generations[0].pid;
        let mapped = mapped_files_under(pid, running.generations_dir());
        assert!(
            mapped.len() == 1 && mapped[0].contains(&format!("-g{generation}-")),
            "generation {generation} must map a file of its own: {mapped:?}"
        );
    }
    let response = get(running.address, "/").await.unwrap();
    assert_eq!((response.body.as_str(), response.generation()), ("first build\n", Some(5)));
    assert_eq!(hanging.await.unwrap().unwrap().status, 503);
    // Generation 1 is really unloaded once drained: nothing else held its library.
    let mut retired = Vec::new();
    while retired.len() < 4 {
        let event = running
            .wait_for_event(EVENT_TIMEOUT, |event| matches!(event, Event::GenerationRetired(_)))
            .await;
        let Event::GenerationRetired(event) = event else { unreachable!() };
        retired.push((event.generation, event.outcome));
    }
    retired.sort_by_key(|(generation, _)| *generation);
    assert_eq!(
        retired,
        [1, 2, 3, 4].map(|generation| (generation, RetireOutcome::Ended)),
        "every replaced generation ends"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_state_survives_ten_swaps_under_load_and_no_write_is_lost() {
    let libraries = [fixture_library(&[]), fixture_library(&["second"])];
    let running = InProcessEngine::start(|config| config.smoke_path = Some("/health".into())).await;
    let current = Arc::new(CurrentGeneration::default());
    current.set(running.swap(&libraries[0]).await);
    let filled = request(running.address, "POST", "/ballast?mb=100", "").await.unwrap();
    assert_eq!((filled.status, filled.body.as_str()), (200, "100 MiB\n"));

    // Readers on keep-alive connections, and a writer that counts what it was told it wrote.
    let check: ResponseCheck = Arc::new(|response: &HttpResponse| {
        let expected = match response.generation() {
            Some(generation) if generation % 2 == 1 => "first build\n",
            _ => "second build\n",
        };
        if response.status != 200 || response.body != expected {
            return Err(format!("status {} body {:?}", response.status, response.body));
        }
        Ok(())
    });
    let stop = Arc::new(AtomicBool::new(false));
    let readers = tokio::spawn(run_checked_load(
        running.address,
        "/",
        16,
        check,
        current.clone(),
        stop.clone(),
    ));
    let writer = tokio::spawn({
        let (address, stop) = (running.address, stop.clone());
        async move {
            let (mut written, mut failures) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match request(address, "POST", "/counter", "").await {
                    Ok(response) if response.status == 200 => written += 1,
                    Ok(response) => {
                        failures.push(format!("{} {:?}", response.status, response.body))
                    }
                    Err(error) => failures.push(error.to_string()),
                }
            }
            (written, failures)
        }
    });

    let mut hand_offs = Vec::new();
    for swap in 1..=10 {
        let report = running
            .try_swap(&libraries[swap % 2])
            .await
            .unwrap_or_else(|failure| panic!("swap {swap} with 100 MB of state: {failure}"));
        current.set(report.generation);
        hand_offs.push((report.stages.state_ms, report.stages.writes_held_ms));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let report = readers.await.unwrap();
    let (written, write_failures) = writer.await.unwrap();
    println!("state hand-offs with 100 MB (state ms, writes held ms): {hand_offs:?}");
    println!("{} reads, {written} writes", report.responses);
    assert!(
        report.failures.is_empty(),
        "reads failed: {:?}",
        &report.failures[..report.failures.len().min(5)]
    );
    assert!(
        write_failures.is_empty(),
        "writes failed: {:?}",
        &write_failures[..write_failures.len().min(5)]
    );
    assert!(report.generations_seen.len() >= 5, "the readers met the generations");
    assert!(written > 10, "the writer ran: {written} writes");

    // Every byte of the 100 MB, and every write, in the generation serving now.
    let ballast = get(running.address, "/ballast").await.unwrap();
    assert_eq!((ballast.status, ballast.body.as_str()), (200, "104857600 bytes, intact\n"));
    let counter = get(running.address, "/counter").await.unwrap();
    assert_eq!(counter.body, format!("{written}\n"), "no write was lost to a swap");
    assert_eq!(counter.generation(), Some(11));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_export_delays_the_swap_with_progress_and_one_past_the_limit_keeps_the_old_code() {
    let libraries = [fixture_library(&[]), fixture_library(&["second"])];
    // Past `export_timeout`: refused, and the old generation keeps serving with its state.
    let running = InProcessEngine::start(|config| {
        config.export_timeout = Duration::from_secs(1);
        config.snapshot_interval = None;
    })
    .await;
    running.swap(&libraries[0]).await;
    for _ in 0..2 {
        request(running.address, "POST", "/counter", "").await.unwrap();
    }
    request(running.address, "POST", "/slow-export?ms=2500", "").await.unwrap();
    let failure = expect_refusal(running.try_swap(&libraries[1]).await, "an export past the limit");
    assert_eq!(failure.stage, SwapStage::State, "{failure}");
    assert!(
        failure.message.contains("keeps serving with it")
            && failure.message.contains("`export_timeout_ms`"),
        "{}",
        failure.message
    );
    // Its writes are no longer held, and nothing was lost.
    let counter = request(running.address, "POST", "/counter", "").await.unwrap();
    assert_eq!((counter.body.as_str(), counter.generation()), ("3\n", Some(1)));
    running.stop().await;

    // Within the limit: the swap waits for it, says so every second, and keeps the state.
    let mut running = InProcessEngine::start(|config| config.snapshot_interval = None).await;
    running.swap(&libraries[0]).await;
    request(running.address, "POST", "/counter", "").await.unwrap();
    request(running.address, "POST", "/slow-export?ms=2500", "").await.unwrap();
    let report = running.try_swap(&libraries[1]).await.expect("a slow export delays the swap");
    assert!(report.stages.state_ms >= 2500.0, "{:?}", report.stages);
    let progress: Vec<String> = running
        .drain_events()
        .into_iter()
        .filter_map(|event| match event {
            Event::Log(line) if line.message.contains("is still exporting its state") => {
                Some(line.message)
            }
            _ => None,
        })
        .collect();
    assert!(progress.len() >= 2, "progress every second: {progress:?}");
    assert!(progress[0].contains("`export_timeout_ms`"), "{progress:?}");
    let counter = get(running.address, "/counter").await.unwrap();
    assert_eq!((counter.body.as_str(), counter.generation()), ("1\n", Some(2)));
    running.stop().await;
}
