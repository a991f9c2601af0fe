//! Case 5: memory after many swaps (resident memory growth, libraries still mapped) in the
//! daemon's engine, and the CPU an idle `hotswap serve` uses, next to the same app as one binary.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::save_to_served::AppServers;
use super::swap_cost::{build_library_variant, build_library_variant_with, stage};
use super::{BenchContext, progress};
use crate::engine_worker::EngineWorker;
use crate::machine::{ProcessSample, clock_ticks_per_second};
use crate::report::{Goal, Section, Table, milliseconds};

/// Resident memory of each daemon right after its first generation served, in KiB.
pub(crate) type StartingMemory = BTreeMap<String, u64>;

/// Code a careless handler leaks with, put into `todo`'s `GET /`: 1 MiB more in a `static` at
/// each request, and a thread that never ends, started once per generation.
const LEAKING_CODE: &str = r#"

/// Leaks as careless handler code does: 1 MiB more in a `static` at each request, and a thread
/// that never ends, started by the first request of each generation.
fn leak_like_careless_code() {
    static GROWING: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
    static STRAY: std::sync::Once = std::sync::Once::new();
    GROWING.lock().expect("leak").push(vec![1u8; 1 << 20]);
    STRAY.call_once(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
        });
    });
}
"#;

/// Where the leak is called from: the start of `todo`'s `GET /`.
const SUMMARY_START: &str = "async fn summary(State(state): State<Shared>) -> String {";

/// A thousand swaps (or fewer, with `--quick`) of `todo` in the engine worker, each followed by a
/// request, with a fresh file for every swap as cargo would write it; then the same with a
/// handler that leaks memory and a thread at every generation.
pub(crate) async fn run_memory(context: &mut BenchContext) -> anyhow::Result<()> {
    measure_swaps(context, false).await?;
    measure_swaps(context, true).await
}

async fn measure_swaps(context: &mut BenchContext, leaking: bool) -> anyhow::Result<()> {
    let app = context.workspace.app("todo").clone();
    let libraries_dir = context.bench_dir.join("swap-libraries");
    let target_dir = context.workspace.target_dir.clone();
    let kind = if leaking { "leaking" } else { "memory" };
    let variants = [
        libraries_dir.join(format!("todo-{kind}-a.so")),
        libraries_dir.join(format!("todo-{kind}-b.so")),
    ];
    let mut size = 0;
    for variant in &variants {
        size = if leaking {
            build_library_variant_with(context, &app, &target_dir, &[], variant, |source| {
                anyhow::ensure!(source.contains(SUMMARY_START), "todo has no `{SUMMARY_START}`");
                Ok(source.replace(
                    SUMMARY_START,
                    &format!("{SUMMARY_START}\n    leak_like_careless_code();"),
                ) + LEAKING_CODE)
            })
            .await?
        } else {
            build_library_variant(context, &app, &target_dir, &[], variant).await?
        };
    }
    let generations = context.bench_dir.join(format!("generations-{kind}"));
    let staging = context.bench_dir.join(format!("staging-{kind}"));
    std::fs::create_dir_all(&staging)?;
    let mut worker = EngineWorker::start(&generations).await?;
    let swaps = context.effort.memory_swaps;
    let baseline_at = 50.min(swaps / 2).max(1);
    let mut baseline = None;
    let started = Instant::now();
    for swap in 1..=swaps {
        let staged = stage(&variants[swap % 2], &staging, swap)?;
        let answer = worker.swap(&staged).await?;
        let _ = std::fs::remove_file(&staged);
        let response = hotswap_tests::http::get(worker.address, "/")
            .await
            .map_err(|error| anyhow::anyhow!("GET / after swap {swap}: {error}"))?;
        anyhow::ensure!(
            response.status == 200,
            "GET / after swap {swap} answered {}",
            response.status
        );
        anyhow::ensure!(
            response.generation() == Some(answer.generation),
            "swap {swap} is not serving"
        );
        if swap == baseline_at {
            // Measure from here: allocator arenas and caches have warmed up.
            tokio::time::sleep(Duration::from_millis(500)).await;
            baseline = Some(worker.memory().await?);
        }
        if swap % 200 == 0 {
            progress(format_args!("{kind}: {swap} swaps"));
        }
    }
    let swapping = started.elapsed();
    let after = worker.wait_retired(swaps as u64 - 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after =
        EngineWorkerMemory { answer: after, resident_kib: worker.memory().await?.resident_kib };
    let shut_down = worker.quit().await?;
    let baseline = baseline.expect("measured at baseline_at");

    let growth = after.resident_kib as f64 - baseline.resident_kib as f64;
    let mut table = Table::new(&["measure", "value"]);
    table.push(vec![
        "library".into(),
        format!(
            "todo{}, dev profile, {:.1} MiB",
            if leaking { " leaking 1 MiB per request and a thread per generation" } else { "" },
            size as f64 / 1048576.0
        ),
    ]);
    table.push(vec!["swaps (each followed by a GET)".into(), swaps.to_string()]);
    table.push(vec![
        "time for all swaps".into(),
        format!(
            "{:.1} s ({} ms per swap and request)",
            swapping.as_secs_f64(),
            milliseconds(swapping.as_secs_f64() * 1000.0 / swaps as f64)
        ),
    ]);
    table.push(vec![
        format!("resident memory after swap {baseline_at}"),
        format!("{} KiB", baseline.resident_kib),
    ]);
    table.push(vec![
        format!("resident memory after swap {swaps}, old generations retired"),
        format!("{} KiB", after.resident_kib),
    ]);
    table.push(vec![
        "**growth**".into(),
        format!("{growth:+.0} KiB over {} swaps", swaps - baseline_at),
    ]);
    table.push(vec![
        "generations ended / crashed".into(),
        format!("{} / {}", after.answer.ended_generations, after.answer.crashes),
    ]);
    table.push(vec![
        "host processes alive (the current generation's and the spare: 2)".into(),
        after.answer.host_processes.to_string(),
    ]);
    table.push(vec![
        "host processes alive after the engine shut down".into(),
        shut_down.host_processes.to_string(),
    ]);
    table.push(vec!["threads after the swaps".into(), after.answer.threads.to_string()]);
    context.goals.push(Goal {
        name: if leaking {
            format!("memory after {swaps} swaps of a handler leaking memory and a thread")
        } else {
            format!("memory after {swaps} swaps")
        },
        target: "flat (engine + current generation); only the current and the spare host alive"
            .into(),
        measured: format!("{growth:+.0} KiB, {} host processes alive", after.answer.host_processes),
        met: Some(after.answer.host_processes <= 2 && growth < 10.0 * 1024.0),
    });
    let mut section = Section::new(if leaking {
        format!("5a. Memory after {swaps} swaps of a leaking handler")
    } else {
        format!("5a. Memory after {swaps} swaps")
    });
    section.tables.push(table);
    section.notes.push(if leaking {
        "The same, with `todo`'s `GET /` changed to leak as careless code does: it pushes 1 MiB into a `static` at every request and its first request starts a \
         `std::thread::spawn` loop that never ends. Each generation's leak ends with its process."
            .to_owned()
    } else {
        "The daemon's engine in a process of its own (the benchmark's engine worker), with the daemon's default settings and the smoke request; \
         resident memory is the engine's process and the current generation's host process together; \
         every swap loads a fresh copy of one of two builds, as cargo writes a new file on each build. \"Flat\" is read as under 10 MiB of growth."
            .to_owned()
    });
    context.sections.push(section);
    Ok(())
}

#[derive(Debug)]
struct EngineWorkerMemory {
    answer: crate::engine_worker::MemoryAnswer,
    resident_kib: u64,
}

/// CPU time and wake-ups of the idle servers of `app_name` over `effort.idle_seconds`, and the
/// daemons' resident memory now against when they started.
pub(crate) async fn run_idle(
    context: &mut BenchContext,
    servers: &BTreeMap<String, AppServers>,
    starting_memory: &StartingMemory,
    swaps_per_daemon: &BTreeMap<String, u64>,
) -> anyhow::Result<()> {
    let seconds = context.effort.idle_seconds;
    let mut processes: Vec<(String, u32)> = Vec::new();
    for (app, app_servers) in servers {
        processes.push((format!("{app}: hotswap serve"), app_servers.daemon.pid));
        if let Some(pid) = app_servers.restart_kill.pid() {
            processes.push((format!("{app}: same handler as one binary (hotswap's SDK)"), pid));
        }
    }
    progress(format_args!("idle: measuring {} idle servers for {seconds} s", processes.len()));
    // A daemon counts with its generations' host processes (and the spare).
    let before: Vec<Option<ProcessSample>> =
        processes.iter().map(|(_, pid)| ProcessSample::read_family(*pid)).collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ticks = clock_ticks_per_second();
    let mut table = Table::new(&[
        "process",
        "CPU over the idle period",
        "wake-ups per second",
        "threads",
        "resident memory",
    ]);
    for ((name, pid), before) in processes.iter().zip(before) {
        let (Some(before), Some(after)) = (before, ProcessSample::read_family(*pid)) else {
            continue;
        };
        let cpu_ms = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / ticks * 1000.0;
        let wakeups =
            after.context_switches.saturating_sub(before.context_switches) as f64 / elapsed;
        table.push(vec![
            name.clone(),
            format!(
                "{cpu_ms:.0} ms in {elapsed:.0} s ({:.3} %)",
                cpu_ms / (elapsed * 1000.0) * 100.0
            ),
            format!("{wakeups:.1}"),
            after.threads.to_string(),
            format!("{} KiB", after.resident_kib),
        ]);
        if name.ends_with("hotswap serve") {
            context.goals.push(Goal {
                name: format!("idle CPU of {name}"),
                target: "≈ 0 (not stated)".into(),
                measured: format!("{:.3} % of a CPU", cpu_ms / (elapsed * 1000.0) * 100.0),
                met: None,
            });
        }
    }
    let mut memory = Table::new(&[
        "daemon",
        "swaps served",
        "resident memory after the first generation",
        "now",
    ]);
    for (app, app_servers) in servers {
        let now = ProcessSample::read_family(app_servers.daemon.pid)
            .map_or(0, |sample| sample.resident_kib);
        memory.push(vec![
            format!("{app}: hotswap serve"),
            swaps_per_daemon.get(app).copied().unwrap_or(0).to_string(),
            format!("{} KiB", starting_memory.get(app).copied().unwrap_or(0)),
            format!("{now} KiB"),
        ]);
    }
    let mut section = Section::new(format!("5b. Idle servers ({seconds} s)"));
    section.tables.push(table);
    section.tables.push(memory);
    section.notes.push(
        "CPU is user + system time from /proc/PID/stat (10 ms ticks); wake-ups are the context switches of all the process's threads; \
         a hotswap serve counts with its children (the current generation's host process and the spare). \
         The daemons had served every change of this run before the idle period; nothing sent them requests during it."
            .to_owned(),
    );
    context.sections.push(section);
    Ok(())
}
