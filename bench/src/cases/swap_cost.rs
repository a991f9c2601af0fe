//! Case 2: what one swap costs, stage by stage, for a ~20 MiB debug library (`todo` built with
//! full debug info for itself and its dependencies), and the pause that requests on new
//! connections see while it happens.
//!
//! The swaps run in the engine worker (the daemon's engine in a process of its own). Before each
//! pair of swaps, the library is copied to a new file, as cargo writes a new file on every build:
//! the first swap of the pair gives the generation its file with a hard link (the usual case);
//! the second swap loads the same file again, which the engine must copy (the fallback when a
//! linker rewrites a file in place). Meanwhile a client opens a new connection for every `GET /`,
//! back to back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{BenchContext, progress};
use crate::bench_workspace::BenchApp;
use crate::engine_worker::{EngineWorker, SwapAnswer};
use crate::report::{Goal, Section, Table, milliseconds};
use crate::statistics::percentile;

/// Items in the todo list whose state every swap moves.
const STATE_ITEMS: usize = 100;

/// Builds `app` with one edit into `target_dir` and copies the library to `destination`.
pub(crate) async fn build_library_variant(
    context: &mut BenchContext,
    app: &BenchApp,
    target_dir: &Path,
    cargo_arguments: &[&str],
    destination: &Path,
) -> anyhow::Result<u64> {
    build_library_variant_with(context, app, target_dir, cargo_arguments, destination, Ok).await
}

/// The same, with `change` made to the edited source before the build.
pub(crate) async fn build_library_variant_with(
    context: &mut BenchContext,
    app: &BenchApp,
    target_dir: &Path,
    cargo_arguments: &[&str],
    destination: &Path,
    change: impl FnOnce(String) -> anyhow::Result<String>,
) -> anyhow::Result<u64> {
    let number = context.next_edit_number();
    app.write_edit(number)?;
    let edited = std::fs::read_to_string(&app.source_file)?;
    std::fs::write(&app.source_file, change(edited)?)?;
    let command = context.workspace.handler_build_command(app, target_dir, cargo_arguments);
    crate::bench_workspace::run_timed(command, &app.name).await?;
    let built = context.workspace.handler_library(app, target_dir);
    if let Some(parent) = destination.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let partial = destination.with_extension("partial");
    std::fs::copy(&built, &partial)?;
    std::fs::rename(&partial, destination)?;
    app.restore()?;
    Ok(std::fs::metadata(destination)?.len())
}

/// The cargo arguments of a build with full debug info for every crate.
pub(crate) const FULL_DEBUG_INFO: [&str; 4] =
    ["--config", "profile.dev.debug=2", "--config", "profile.dev.package.\"*\".debug=2"];

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
    /// The swap hard-linked the library (else it copied it).
    linked: bool,
}

pub(crate) async fn run(context: &mut BenchContext) -> anyhow::Result<()> {
    let app = context.workspace.app("todo").clone();
    let libraries_dir = context.bench_dir.join("swap-libraries");
    let target_dir = context.workspace.debuginfo_target_dir.clone();
    progress(
        "swap cost: building todo with full debug info (twice, two versions; the first time builds every dependency)",
    );
    let variants =
        [libraries_dir.join("todo-debuginfo-a.so"), libraries_dir.join("todo-debuginfo-b.so")];
    let mut size = 0;
    for variant in &variants {
        size = build_library_variant(context, &app, &target_dir, &FULL_DEBUG_INFO, variant).await?;
    }
    let generations = context.bench_dir.join("generations-swap-cost");
    let staging = context.bench_dir.join("staging-swap-cost");
    std::fs::create_dir_all(&staging)?;
    let mut worker = EngineWorker::start(&generations).await?;
    let first = stage(&variants[0], &staging, 0)?;
    worker.swap(&first).await?;
    let _ = std::fs::remove_file(&first);
    for index in 0..STATE_ITEMS {
        let body = format!("{{\"title\":\"item {index}\"}}");
        let response = hotswap_tests::http::request(worker.address, "POST", "/todos", &body)
            .await
            .map_err(|error| anyhow::anyhow!("POST /todos: {error}"))?;
        anyhow::ensure!(response.status == 201, "POST /todos answered {}", response.status);
    }

    // The client: a new connection per request, from now until the swaps are done.
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (stop, address) = (stop.clone(), worker.address);
        tokio::spawn(async move {
            let mut samples: Vec<(Instant, f64)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                if let Ok(response) = hotswap_tests::http::get(address, "/").await
                    && response.status == 200
                {
                    samples.push((sent, sent.elapsed().as_secs_f64() * 1000.0));
                }
            }
            samples
        })
    };

    let mut linked = Vec::new();
    let mut copied = Vec::new();
    let mut windows = Vec::new();
    for pair in 0..context.effort.swap_pairs {
        let staged = stage(&variants[(pair + 1) % 2], &staging, pair + 1)?;
        for (answers, kind_is_link) in [(&mut linked, true), (&mut copied, false)] {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let start = Instant::now();
            let answer = worker.swap(&staged).await?;
            windows.push(Window { start, end: Instant::now(), linked: kind_is_link });
            answers.push(answer);
        }
        let _ = std::fs::remove_file(&staged);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let samples = prober.await?;
    let _ = worker.quit().await;

    let window_of =
        |sent: &Instant| windows.iter().find(|window| *sent >= window.start && *sent <= window.end);
    let sent_during = |linked: Option<bool>| -> Vec<f64> {
        samples
            .iter()
            .filter(|(sent, _)| {
                window_of(sent)
                    .is_some_and(|window| linked.is_none_or(|linked| window.linked == linked))
            })
            .map(|(_, latency)| *latency)
            .collect()
    };
    let during = sent_during(None);
    let during_linked = sent_during(Some(true));
    let during_copied = sent_during(Some(false));
    let outside: Vec<f64> = samples
        .iter()
        .filter(|(sent, _)| window_of(sent).is_none())
        .map(|(_, latency)| *latency)
        .collect();
    // Where in their swap the slowest requests were sent: what held them.
    let mut slowest: Vec<(f64, f64, f64, bool)> = samples
        .iter()
        .filter_map(|(sent, latency)| {
            let window = window_of(sent)?;
            let into = sent.duration_since(window.start).as_secs_f64() * 1000.0;
            let length = window.end.duration_since(window.start).as_secs_f64() * 1000.0;
            Some((*latency, into, length, window.linked))
        })
        .collect();
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    let slowest_of = |linked: bool| -> String {
        let slowest: Vec<String> = slowest
            .iter()
            .filter(|sample| sample.3 == linked)
            .take(5)
            .map(|(latency, into, length, _)| {
                format!(
                    "{} ms, sent {} ms into a {} ms swap",
                    milliseconds(*latency),
                    milliseconds(*into),
                    milliseconds(*length)
                )
            })
            .collect();
        if slowest.is_empty() { "none".to_owned() } else { slowest.join("; ") }
    };

    let mut stages_table =
        Table::new(&["stage", "hard link: p50 ms", "p99 ms", "copy: p50 ms", "p99 ms"]);
    type StageOf = fn(&SwapAnswer) -> f64;
    let rows: [(&str, StageOf); 9] = [
        ("copy (hard link or copy)", |answer| answer.stages.copy_ms),
        ("load (dlopen)", |answer| answer.stages.load_ms),
        ("verify (ABI header)", |answer| answer.stages.verify_ms),
        ("init (runtime)", |answer| answer.stages.init_ms),
        ("state hand-off", |answer| answer.stages.state_ms),
        ("smoke request", |answer| answer.stages.smoke_ms),
        ("publish", |answer| answer.stages.publish_ms),
        ("**whole swap**", |answer| answer.swap_ms),
        ("writes held (export → served by the new generation)", |answer| {
            answer.stages.writes_held_ms
        }),
    ];
    let cell = |answers: &[SwapAnswer], stage: StageOf, at: f64| {
        let values: Vec<f64> = answers.iter().map(stage).collect();
        milliseconds(percentile(&values, at).unwrap_or(f64::NAN))
    };
    for (name, stage) in rows {
        stages_table.push(vec![
            name.to_owned(),
            cell(&linked, stage, 50.0),
            cell(&linked, stage, 99.0),
            cell(&copied, stage, 50.0),
            cell(&copied, stage, 99.0),
        ]);
    }
    let mut pause_table =
        Table::new(&["GET / on a new connection", "requests", "p50 ms", "p99 ms", "max ms"]);
    for (name, values) in [
        ("sent while a swap ran (hard link)", &during_linked),
        ("sent while a swap ran (copy)", &during_copied),
        ("sent while a swap ran (either)", &during),
        ("sent between swaps", &outside),
    ] {
        pause_table.push(vec![
            name.to_owned(),
            values.len().to_string(),
            milliseconds(percentile(values, 50.0).unwrap_or(f64::NAN)),
            milliseconds(percentile(values, 99.0).unwrap_or(f64::NAN)),
            milliseconds(percentile(values, 100.0).unwrap_or(f64::NAN)),
        ]);
    }

    let whole: Vec<f64> = linked.iter().map(|answer| answer.swap_ms).collect();
    let whole_p50 = percentile(&whole, 50.0).unwrap_or(f64::NAN);
    context.goals.push(Goal {
        name: format!(
            "whole swap of a {:.1} MiB debug library (hard link, p50)",
            size as f64 / 1048576.0
        ),
        target: "≤ 5 ms".into(),
        measured: format!("{} ms", milliseconds(whole_p50)),
        met: Some(whole_p50 <= 5.0),
    });
    let p99 = |values: &[f64]| percentile(values, 99.0).unwrap_or(f64::NAN);
    let pause_p99 = p99(&during_linked);
    context.goals.push(Goal {
        name: "latency of new requests during a swap (p99, hard link)".into(),
        target: "≤ 2 ms".into(),
        measured: format!(
            "{} ms (copy swaps: {} ms; either: {} ms; between swaps: {} ms)",
            milliseconds(pause_p99),
            milliseconds(p99(&during_copied)),
            milliseconds(p99(&during)),
            milliseconds(p99(&outside))
        ),
        met: Some(pause_p99 <= 2.0),
    });

    let mut section = Section::new(format!(
        "2. Swap cost by stage ({:.1} MiB debug library)",
        size as f64 / 1048576.0
    ));
    section.tables.push(stages_table);
    section.tables.push(pause_table);
    section.notes.push(format!(
        "`todo` built with `{}` ({} bytes), {} swaps of each kind, alternating two versions, each swap moving a state of {STATE_ITEMS} items, \
         with the smoke request `GET /health` on (as in the example's hotswap.toml). p99 of so few swaps is close to their maximum.",
        FULL_DEBUG_INFO.join(" "),
        size,
        context.effort.swap_pairs
    ));
    section.notes.push(
        "New connections keep going to the old generation until the new one is published; while the state moves, requests that can \
         write wait (the \"writes held\" row) and reads are answered. The pause table is what a client opening a connection for each \
         `GET /` saw, during swaps (of each kind) and between them. A copy swap copies the library first (the fallback when a \
         linker rewrote the file in place; cargo's writes a new file): the copy runs off the engine's threads, but takes a CPU for \
         tens of milliseconds on this 2-CPU machine."
            .to_owned(),
    );
    section.notes.push(format!(
        "The slowest requests sent during hard-link swaps: {}. During copy swaps: {}.",
        slowest_of(true),
        slowest_of(false)
    ));
    context.sections.push(section);
    Ok(())
}

/// An engine worker with directories of its own under the bench directory (named after `case`),
/// serving a staged copy of `library`; returns it with its staging directory.
pub(crate) async fn worker_serving(
    context: &BenchContext,
    case: &str,
    library: &Path,
) -> anyhow::Result<(EngineWorker, PathBuf)> {
    let generations = context.bench_dir.join(format!("generations-{case}"));
    let staging = context.bench_dir.join(format!("staging-{case}"));
    std::fs::create_dir_all(&staging)?;
    let mut worker = EngineWorker::start(&generations).await?;
    let first = stage(library, &staging, 0)?;
    worker.swap(&first).await?;
    let _ = std::fs::remove_file(&first);
    Ok((worker, staging))
}

/// A copy of `library` in a new file (a new inode), as a fresh build would write it.
pub(crate) fn stage(library: &Path, staging: &Path, number: usize) -> anyhow::Result<PathBuf> {
    let file_name = library
        .file_name()
        .map_or_else(|| "library.so".into(), |name| name.to_string_lossy().into_owned());
    let staged = staging.join(format!("{number}-{file_name}"));
    let _ = std::fs::remove_file(&staged);
    std::fs::copy(library, &staged)?;
    Ok(staged)
}
