//! Case 2d: swaps to a build whose async set-up (`Handler::create`, as an app connecting its
//! database pool) takes 2 s. A reader opens a connection per `GET /` throughout: the latency of
//! the requests sent while such a swap ran, against those sent between swaps, side by side.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::swap_cost::{stage, worker_serving};
use super::{BenchContext, progress};
use crate::report::{Goal, Section, Table, milliseconds, ratio};
use crate::statistics::percentile;

pub(crate) async fn run(context: &mut BenchContext) -> anyhow::Result<()> {
    progress("slow set-up: building the test fixture handler (dev profile, quick and slow set-up)");
    let libraries = tokio::task::spawn_blocking(|| {
        [
            hotswap_tests::artifacts::fixture_library(&[]),
            hotswap_tests::artifacts::fixture_library(&["slow-create"]),
        ]
    })
    .await?;
    let (mut worker, staging) = worker_serving(context, "slow-setup", &libraries[0]).await?;
    let address = worker.address;

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut samples, mut failures) = (Vec::new(), 0usize);
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match hotswap_tests::http::get(address, "/").await {
                    Ok(response) if response.status == 200 => {
                        samples.push((sent, sent.elapsed().as_secs_f64() * 1000.0));
                    }
                    _ => failures += 1,
                }
            }
            (samples, failures)
        })
    };
    let rounds = context.effort.state_swaps.div_ceil(2);
    let mut windows = Vec::new();
    let mut setup_ms = Vec::new();
    for round in 0..rounds {
        // To the slow build, then back to the quick one, a second apart.
        for (index, library) in [&libraries[1], &libraries[0]].into_iter().enumerate() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let number = round * 2 + index + 1;
            let staged = stage(library, &staging, number)?;
            let start = Instant::now();
            let answer = worker.swap(&staged).await?;
            let end = Instant::now();
            let _ = std::fs::remove_file(&staged);
            anyhow::ensure!(answer.ok, "swap {number} was refused: {}", answer.message);
            if index == 0 {
                windows.push((start, end));
                setup_ms.push(answer.stages.state_ms);
            }
        }
        progress(format_args!("slow set-up: round {} of {rounds}", round + 1));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let (samples, failures) = reader.await?;
    let _ = worker.quit().await;
    anyhow::ensure!(failures == 0, "{failures} requests failed during the slow set-ups");

    let inside = |sent: &Instant| windows.iter().any(|(start, end)| sent >= start && sent <= end);
    let during: Vec<f64> =
        samples.iter().filter(|(sent, _)| inside(sent)).map(|(_, latency)| *latency).collect();
    let between: Vec<f64> =
        samples.iter().filter(|(sent, _)| !inside(sent)).map(|(_, latency)| *latency).collect();
    let p = |values: &[f64], at: f64| percentile(values, at).unwrap_or(f64::NAN);
    let mut table =
        Table::new(&["`GET /` on a new connection", "requests", "p50 ms", "p99 ms", "max ms"]);
    for (name, values) in
        [("sent while a 2 s set-up ran", &during), ("sent between swaps", &between)]
    {
        table.push(vec![
            name.to_owned(),
            values.len().to_string(),
            milliseconds(p(values, 50.0)),
            milliseconds(p(values, 99.0)),
            milliseconds(p(values, 100.0)),
        ]);
    }
    table.push(vec![
        "**ratio during ÷ between**".into(),
        String::new(),
        ratio(p(&during, 50.0) / p(&between, 50.0)),
        ratio(p(&during, 99.0) / p(&between, 99.0)),
        String::new(),
    ]);
    let (during_p99, between_p99) = (p(&during, 99.0), p(&between, 99.0));
    context.goals.push(Goal {
        name: "reads during a 2 s async set-up (p99), against between swaps".into(),
        target: "no worse (≤ 1 ms more)".into(),
        measured: format!("{} ms vs {} ms", milliseconds(during_p99), milliseconds(between_p99)),
        met: Some(during_p99 <= between_p99 + 1.0),
    });
    let mut section = Section::new("2d. A swap with a 2 s async set-up");
    section.tables.push(table);
    section.notes.push(format!(
        "The test fixture handler (dev profile) in the engine worker with the daemon's defaults; {rounds} swaps to its `slow-create` \
         build, whose `Handler::create` awaits 2 s (set-up measured {} ms p50), each followed by a swap back to the quick build. The \
         old generation answers every request while the new one sets up; none failed.",
        milliseconds(p(&setup_ms, 50.0))
    ));
    context.sections.push(section);
    Ok(())
}
