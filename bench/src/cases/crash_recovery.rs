//! Case 2b: a crash of handler code to the same code serving again: the current generation's
//! process is killed (SIGKILL: any crash ends it the same way) under a prober that opens a
//! connection per request; the time from the kill to the first answer of the new generation, and
//! the state (todo items) it serves with.

use std::time::{Duration, Instant};

use super::swap_cost::{build_library_variant, stage};
use super::{BenchContext, progress};
use crate::engine_worker::EngineWorker;
use crate::report::{Goal, Section, Table, milliseconds};
use crate::statistics::percentile;

/// From one crash to the next: more than half the crash-loop rule's 10 s window.
const CRASH_INTERVAL: Duration = Duration::from_millis(5_500);

/// Items in the state that must survive each crash.
const STATE_ITEMS: usize = 100;

pub(crate) async fn run(context: &mut BenchContext) -> anyhow::Result<()> {
    let app = context.workspace.app("todo").clone();
    let library = context.bench_dir.join("swap-libraries").join("todo-crash.so");
    let target_dir = context.workspace.target_dir.clone();
    let size = build_library_variant(context, &app, &target_dir, &[], &library).await?;
    let generations = context.bench_dir.join("generations-crash");
    let staging = context.bench_dir.join("staging-crash");
    std::fs::create_dir_all(&staging)?;
    let mut worker = EngineWorker::start(&generations).await?;
    let staged = stage(&library, &staging, 0)?;
    worker.swap(&staged).await?;
    for index in 0..STATE_ITEMS {
        let body = format!("{{\"title\":\"item {index}\"}}");
        let response = hotswap_tests::http::request(worker.address, "POST", "/todos", &body)
            .await
            .map_err(|error| anyhow::anyhow!("POST /todos: {error}"))?;
        anyhow::ensure!(response.status == 201, "POST /todos answered {}", response.status);
    }
    // The snapshot taken while serving (every second by default) holds the items.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut recovery_ms = Vec::new();
    let mut lost_items = 0;
    for crash in 0..context.effort.crashes {
        let killed_at = Instant::now();
        let killed = worker.kill_current().await?;
        loop {
            if let Ok(response) = hotswap_tests::http::get(worker.address, "/todos").await
                && response.status == 200
                && response.generation().is_some_and(|generation| generation > killed)
            {
                recovery_ms.push(killed_at.elapsed().as_secs_f64() * 1000.0);
                let items: serde_json::Value =
                    serde_json::from_str(&response.body).unwrap_or_default();
                let count = items.as_array().map_or(0, Vec::len);
                lost_items += STATE_ITEMS.saturating_sub(count);
                break;
            }
            anyhow::ensure!(
                killed_at.elapsed() < Duration::from_secs(30),
                "nothing served 30 s after crash {crash}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Apart, so that the crash-loop rule (3 crashes of one build in 10 s) does not apply:
        // any three crashes then span more than 10 s.
        tokio::time::sleep(CRASH_INTERVAL.saturating_sub(killed_at.elapsed())).await;
        if crash % 10 == 9 {
            progress(format_args!("crash recovery: {} crashes", crash + 1));
        }
    }
    let _ = worker.quit().await;
    let _ = std::fs::remove_file(&staged);

    let p50 = percentile(&recovery_ms, 50.0).unwrap_or(f64::NAN);
    let mut table = Table::new(&["measure", "value"]);
    table.push(vec![
        "crashes (SIGKILL to the current generation)".into(),
        recovery_ms.len().to_string(),
    ]);
    table.push(vec![
        "**kill → the new generation answers, p50**".into(),
        format!("{} ms", milliseconds(p50)),
    ]);
    for (name, at) in [("p90", 90.0), ("max", 100.0)] {
        table.push(vec![
            name.into(),
            format!("{} ms", milliseconds(percentile(&recovery_ms, at).unwrap_or(f64::NAN))),
        ]);
    }
    table.push(vec!["todo items lost (of 100, each time)".into(), lost_items.to_string()]);
    context.goals.push(Goal {
        name: "crash to serving again (p50)".into(),
        target: "≤ 300 ms".into(),
        measured: format!("{} ms", milliseconds(p50)),
        met: Some(p50 <= 300.0),
    });
    let mut section = Section::new("2b. Crash to serving again");
    section.tables.push(table);
    section.notes.push(format!(
        "`todo` with the dev profile ({:.1} MiB), in the engine worker with the daemon's defaults: a warm spare host process takes the \
         restart, which loads the same build and imports the state snapshot ({STATE_ITEMS} items). Timed from the kill to the first \
         answer of a `GET /todos`, on a new connection per request, from the generation after the killed one; 5.5 s between crashes \
         keeps them out of the crash-loop rule (3 crashes of one build in 10 s).",
        size as f64 / 1048576.0
    ));
    context.sections.push(section);
    Ok(())
}
