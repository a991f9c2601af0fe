//! Case 2c: a 100 MiB state moving to the next generation. The test fixture handler (dev
//! profile, as `hotswap serve` builds) keeps 90 MiB in `Bytes` blocks and 10 MiB in a `Vec<u8>`;
//! swaps with it alternate with swaps of the same build holding only its counter (the baseline),
//! under a reader (`GET /`) and a writer (`POST /counter`), each opening a connection per request.
//! Every byte and every write is checked after the swaps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::swap_cost::{stage, worker_serving};
use super::{BenchContext, progress};
use crate::engine_worker::SwapAnswer;
use crate::report::{Goal, Section, Table, milliseconds, ratio};
use crate::statistics::percentile;

const MEBIBYTES: u64 = 100;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

/// Latencies of requests sent inside any of `windows`.
fn during(samples: &[(Instant, f64)], windows: &[Window]) -> Vec<f64> {
    samples
        .iter()
        .filter(|(sent, _)| {
            windows.iter().any(|window| *sent >= window.start && *sent <= window.end)
        })
        .map(|(_, latency)| *latency)
        .collect()
}

/// When each answered request was sent, and how long it took (ms); and what failed.
type Probed = (Vec<(Instant, f64)>, Vec<String>);

/// Sends `method path` on a new connection each time until `stop`; returns (sent, ms) of every
/// 200 and the number of other answers.
fn prober(
    address: std::net::SocketAddr,
    method: &'static str,
    path: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Probed> {
    tokio::spawn(async move {
        let (mut samples, mut failures) = (Vec::new(), Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            match hotswap_tests::http::request(address, method, path, "").await {
                Ok(response) if response.status == 200 => {
                    samples.push((sent, sent.elapsed().as_secs_f64() * 1000.0));
                }
                Ok(response) => failures.push(format!("{method} {path}: {}", response.status)),
                Err(error) => failures.push(format!("{method} {path}: {error}")),
            }
        }
        (samples, failures)
    })
}

async fn call(address: std::net::SocketAddr, method: &str, path: &str) -> anyhow::Result<String> {
    let response = hotswap_tests::http::request(address, method, path, "")
        .await
        .map_err(|error| anyhow::anyhow!("{method} {path}: {error}"))?;
    anyhow::ensure!(response.status == 200, "{method} {path} answered {}", response.status);
    Ok(response.body)
}

pub(crate) async fn run(context: &mut BenchContext) -> anyhow::Result<()> {
    progress("state hand-off: building the test fixture handler (dev profile, two versions)");
    let libraries = tokio::task::spawn_blocking(|| {
        [
            hotswap_tests::artifacts::fixture_library(&[]),
            hotswap_tests::artifacts::fixture_library(&["second"]),
        ]
    })
    .await?;
    let (mut worker, staging) = worker_serving(context, "state", &libraries[0]).await?;
    let address = worker.address;

    let stop = Arc::new(AtomicBool::new(false));
    let reader = prober(address, "GET", "/", stop.clone());
    let writer = prober(address, "POST", "/counter", stop.clone());
    let (mut large, mut small) = (Vec::<SwapAnswer>::new(), Vec::<SwapAnswer>::new());
    let (mut large_windows, mut small_windows) = (Vec::new(), Vec::new());
    let rounds = context.effort.state_swaps;
    for round in 0..rounds {
        // Alternate which kind goes first, so neither always follows the other.
        let kinds = if round % 2 == 0 { [true, false] } else { [false, true] };
        for (index, with_ballast) in kinds.into_iter().enumerate() {
            let mebibytes = if with_ballast { MEBIBYTES } else { 0 };
            call(address, "POST", &format!("/ballast?mb={mebibytes}")).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let number = round * 2 + index + 1;
            let staged = stage(&libraries[number % 2], &staging, number)?;
            let start = Instant::now();
            let answer = worker.swap(&staged).await?;
            let window = Window { start, end: Instant::now() };
            let _ = std::fs::remove_file(&staged);
            anyhow::ensure!(answer.ok, "swap {number} was refused: {}", answer.message);
            if with_ballast {
                let checked = call(address, "GET", "/ballast").await?;
                anyhow::ensure!(
                    checked == format!("{} bytes, intact\n", MEBIBYTES << 20),
                    "after swap {number}: {checked}"
                );
                large.push(answer);
                large_windows.push(window);
            } else {
                small.push(answer);
                small_windows.push(window);
            }
        }
        progress(format_args!("state hand-off: round {} of {rounds}", round + 1));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let (reads, read_failures) = reader.await?;
    let (writes, write_failures) = writer.await?;
    let counter = call(address, "GET", "/counter").await?;
    let _ = worker.quit().await;
    anyhow::ensure!(
        read_failures.is_empty() && write_failures.is_empty(),
        "requests failed during the state hand-offs: {:?}",
        read_failures.iter().chain(&write_failures).take(5).collect::<Vec<_>>()
    );
    anyhow::ensure!(
        counter.trim() == writes.len().to_string(),
        "{} writes were answered 200 but the counter says {}",
        writes.len(),
        counter.trim()
    );

    let p = |values: &[f64], at: f64| percentile(values, at).unwrap_or(f64::NAN);
    let of = |answers: &[SwapAnswer], measure: fn(&SwapAnswer) -> f64| -> Vec<f64> {
        answers.iter().map(measure).collect()
    };
    let mut table = Table::new(&[
        "measure",
        "100 MiB state: p50 ms",
        "max ms",
        "counter only: p50 ms",
        "max ms",
        "ratio (p50)",
    ]);
    type Measure = fn(&SwapAnswer) -> f64;
    let rows: [(&str, Measure); 3] = [
        ("**state hand-off** (export, import, `Handler::new`)", |answer| answer.stages.state_ms),
        ("writes held (export → served by the new generation)", |answer| {
            answer.stages.writes_held_ms
        }),
        ("whole swap", |answer| answer.swap_ms),
    ];
    for (name, measure) in rows {
        let (big, baseline) = (of(&large, measure), of(&small, measure));
        table.push(vec![
            name.to_owned(),
            milliseconds(p(&big, 50.0)),
            milliseconds(p(&big, 100.0)),
            milliseconds(p(&baseline, 50.0)),
            milliseconds(p(&baseline, 100.0)),
            ratio(p(&big, 50.0) / p(&baseline, 50.0)),
        ]);
    }
    let mut requests = Table::new(&[
        "request on a new connection, sent during a swap",
        "100 MiB: requests",
        "p50 ms",
        "p99 ms",
        "max ms",
        "over 50 ms",
        "counter only: requests",
        "p50 ms",
        "max ms",
    ]);
    for (name, samples) in [("`GET /` (a read)", &reads), ("`POST /counter` (a write)", &writes)] {
        let (big, baseline) = (during(samples, &large_windows), during(samples, &small_windows));
        requests.push(vec![
            name.to_owned(),
            big.len().to_string(),
            milliseconds(p(&big, 50.0)),
            milliseconds(p(&big, 99.0)),
            milliseconds(p(&big, 100.0)),
            big.iter().filter(|latency| **latency > 50.0).count().to_string(),
            baseline.len().to_string(),
            milliseconds(p(&baseline, 50.0)),
            milliseconds(p(&baseline, 100.0)),
        ]);
    }

    let hand_off = p(&of(&large, |answer| answer.stages.state_ms), 50.0);
    context.goals.push(Goal {
        name: format!("{MEBIBYTES} MiB state moved to the next generation (p50)"),
        target: "≤ 1 s".into(),
        measured: format!("{} ms", milliseconds(hand_off)),
        met: Some(hand_off <= 1000.0),
    });
    let reads_during = p(&during(&reads, &large_windows), 99.0);
    context.goals.push(Goal {
        name: format!("reads on new connections while {MEBIBYTES} MiB moves (p99)"),
        target: "≤ 10 ms (not held)".into(),
        measured: format!("{} ms", milliseconds(reads_during)),
        met: Some(reads_during <= 10.0),
    });
    let mut section = Section::new(format!("2c. Moving a {MEBIBYTES} MiB state"));
    section.tables.push(table);
    section.tables.push(requests);
    section.notes.push(format!(
        "The test fixture handler in the dev profile (the profile `hotswap serve` builds), in the engine worker with the daemon's defaults \
         and the smoke request on. {rounds} swaps carry {MEBIBYTES} MiB ({} MiB in 1 MiB `Bytes` blocks, {} MiB in one `Vec<u8>`), \
         alternating with {rounds} swaps of the same builds carrying only a counter. After every large swap each byte was checked; after \
         all of them the counter equalled the {} writes answered 200: none was lost to a hand-off.",
        MEBIBYTES - MEBIBYTES / 10,
        MEBIBYTES / 10,
        writes.len()
    ));
    section.notes.push(
        "While the state moves, the old generation keeps answering reads; requests that can write (POST, PUT, PATCH, DELETE) wait \
         until the new generation serves them, so none is lost between the export and the new code: that wait is the \"writes held\" \
         row."
            .to_owned(),
    );
    context.sections.push(section);
    Ok(())
}
