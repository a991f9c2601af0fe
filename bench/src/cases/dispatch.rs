//! Case 3: what the hot-swap machinery costs per request: the daemon serving a handler library
//! (in a generation's host process, connections passed by the daemon) against the same handler
//! compiled into one binary (`hotswap_handler::standalone`: the same runtime and the same hyper
//! serving, without dlopen, the daemon's accept loop and the host process). CPU counts the daemon
//! and its host processes together.
//!
//! With `wrk` (installed from Debian when missing); the server on CPU 0 and wrk on CPU 1 when
//! `taskset` is there, so that both servers get the same CPU budget.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::save_to_served::AppServers;
use super::{BenchContext, progress, rotated};
use crate::load_generator::start_load;
use crate::machine::{ProcessSample, clock_ticks_per_second};
use crate::report::{Goal, Section, Table, milliseconds, ratio};
use crate::statistics::{median, median_ratio, percentile};
use crate::wrk::{WrkResult, find_on_path};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Server {
    Hotswap,
    Standalone,
}

impl Server {
    fn label(self) -> &'static str {
        match self {
            Server::Hotswap => "hotswap serve (handler library)",
            Server::Standalone => "same handler as one binary (hotswap's SDK)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Load {
    Connections32,
    Connections1,
}

#[derive(Debug, Default, Clone)]
struct Results {
    requests_per_second: Vec<f64>,
    p50_ms: Vec<f64>,
    p99_ms: Vec<f64>,
    /// Server CPU time (user + system) per request, in microseconds.
    cpu_us_per_request: Vec<f64>,
    errors: u64,
}

pub(crate) async fn run(
    context: &mut BenchContext,
    servers: &BTreeMap<String, AppServers>,
    wrk: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let apps = context.workspace.apps_of_every_case();
    let duration = Duration::from_secs(context.effort.dispatch_seconds);
    let pinning = std::thread::available_parallelism().is_ok_and(|count| count.get() >= 2)
        && find_on_path("taskset").is_some();
    let mut results: BTreeMap<(String, Server, Load), Results> = BTreeMap::new();
    for round in 0..context.effort.dispatch_rounds {
        for app in &apps {
            let app_servers = &servers[&app.name];
            for server in rotated(&[Server::Hotswap, Server::Standalone], round) {
                let (address, pid) = match server {
                    Server::Hotswap => (app_servers.daemon.address, Some(app_servers.daemon.pid)),
                    Server::Standalone => {
                        (app_servers.restart_kill.address, app_servers.restart_kill.pid())
                    }
                };
                // The daemon and its generations' host processes, or the one binary.
                let family: Vec<u32> = pid
                    .map(|pid| {
                        let mut family = vec![pid];
                        family.extend(crate::machine::children_of(pid));
                        family
                    })
                    .unwrap_or_default();
                if pinning {
                    for member in &family {
                        pin_process(*member, "0");
                    }
                }
                if round == 0 {
                    // Warm-up: first connections, allocator, caches.
                    let _ = measure(
                        wrk,
                        address,
                        app.request_path,
                        Load::Connections32,
                        Duration::from_secs(1),
                    )
                    .await;
                }
                for load in [Load::Connections32, Load::Connections1] {
                    let before = pid.and_then(ProcessSample::read_family);
                    let result = measure(wrk, address, app.request_path, load, duration).await?;
                    let after = pid.and_then(ProcessSample::read_family);
                    let requests = result.requests_per_second * duration.as_secs_f64();
                    if let (Some(before), Some(after)) = (before, after)
                        && requests > 0.0
                    {
                        let cpu_seconds = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64
                            / clock_ticks_per_second();
                        results
                            .entry((app.name.clone(), server, load))
                            .or_default()
                            .cpu_us_per_request
                            .push(cpu_seconds * 1e6 / requests);
                    }
                    progress(format_args!(
                        "dispatch, round {}: {} {} {:?}: {:.0} req/s, p50 {} ms, p99 {} ms",
                        round + 1,
                        app.name,
                        server.label(),
                        load,
                        result.requests_per_second,
                        milliseconds(result.latency_p50_ms),
                        milliseconds(result.latency_p99_ms)
                    ));
                    let entry = results.entry((app.name.clone(), server, load)).or_default();
                    entry.requests_per_second.push(result.requests_per_second);
                    entry.p50_ms.push(result.latency_p50_ms);
                    entry.p99_ms.push(result.latency_p99_ms);
                    entry.errors += result.errors;
                }
                if pinning {
                    let all = format!(
                        "0-{}",
                        std::thread::available_parallelism().map_or(1, |count| count.get()) - 1
                    );
                    for member in &family {
                        pin_process(*member, &all);
                    }
                }
            }
        }
    }

    let mut table = Table::new(&[
        "app",
        "server",
        "32 connections: req/s",
        "p99 ms",
        "server CPU µs/request",
        "1 connection: req/s",
        "p50 ms",
        "p99 ms",
        "server CPU µs/request",
        "errors",
    ]);
    for app in &apps {
        for server in [Server::Hotswap, Server::Standalone] {
            let wide = results
                .get(&(app.name.clone(), server, Load::Connections32))
                .cloned()
                .unwrap_or_default();
            let single = results
                .get(&(app.name.clone(), server, Load::Connections1))
                .cloned()
                .unwrap_or_default();
            let show = |values: &[f64]| {
                median(values).map_or("–".to_owned(), |value| format!("{value:.0}"))
            };
            table.push(vec![
                app.name.clone(),
                server.label().to_owned(),
                show(&wide.requests_per_second),
                milliseconds(median(&wide.p99_ms).unwrap_or(f64::NAN)),
                median(&wide.cpu_us_per_request)
                    .map_or("–".to_owned(), |value| format!("{value:.1}")),
                show(&single.requests_per_second),
                milliseconds(median(&single.p50_ms).unwrap_or(f64::NAN)),
                milliseconds(median(&single.p99_ms).unwrap_or(f64::NAN)),
                median(&single.cpu_us_per_request)
                    .map_or("–".to_owned(), |value| format!("{value:.1}")),
                (wide.errors + single.errors).to_string(),
            ]);
        }
        let get = |server, load| {
            results.get(&(app.name.clone(), server, load)).cloned().unwrap_or_default()
        };
        let throughput = median_ratio(
            &get(Server::Hotswap, Load::Connections32).requests_per_second,
            &get(Server::Standalone, Load::Connections32).requests_per_second,
        )
        .unwrap_or(f64::NAN);
        let single = median_ratio(
            &get(Server::Hotswap, Load::Connections1).requests_per_second,
            &get(Server::Standalone, Load::Connections1).requests_per_second,
        )
        .unwrap_or(f64::NAN);
        let p99 = median_ratio(
            &get(Server::Hotswap, Load::Connections32).p99_ms,
            &get(Server::Standalone, Load::Connections32).p99_ms,
        )
        .unwrap_or(f64::NAN);
        let cpu = median_ratio(
            &get(Server::Hotswap, Load::Connections32).cpu_us_per_request,
            &get(Server::Standalone, Load::Connections32).cpu_us_per_request,
        )
        .unwrap_or(f64::NAN);
        let cpu_single = median_ratio(
            &get(Server::Hotswap, Load::Connections1).cpu_us_per_request,
            &get(Server::Standalone, Load::Connections1).cpu_us_per_request,
        )
        .unwrap_or(f64::NAN);
        table.push(vec![
            app.name.clone(),
            "**ratio hotswap ÷ binary**".to_owned(),
            ratio(throughput),
            ratio(p99),
            ratio(cpu),
            ratio(single),
            String::new(),
            String::new(),
            ratio(cpu_single),
            String::new(),
        ]);
        for (connections, requests, cpu) in [(32, throughput, cpu), (1, single, cpu_single)] {
            context.goals.push(Goal {
                name: format!(
                    "{}: dispatch, hotswap ÷ one binary ({connections} connection{})",
                    app.name,
                    if connections == 1 { "" } else { "s" }
                ),
                target: "requests/s ≥ 0.95×, CPU per request ≤ 1/0.95 = 1.05×".into(),
                measured: format!("{} requests/s, {} CPU", ratio(requests), ratio(cpu)),
                met: Some(requests >= 0.95 && cpu <= 1.0 / 0.95),
            });
        }
    }
    let mut section = Section::new("3. Dispatch overhead");
    section.tables.push(table);
    let tool = match wrk {
        Some(_) => format!(
            "`wrk -t2 -c32 -d{0}s --latency` and `wrk -t1 -c1 -d{0}s --latency`",
            duration.as_secs()
        ),
        None => format!(
            "the built-in load generator (32 and 1 connections; wrk could not be installed, or `--builtin-load` asked for it), {} s per run",
            duration.as_secs()
        ),
    };
    section.notes.push(format!(
        "{} rounds, servers alternated, {tool}{}; ratios are medians of per-round ratios (hotswap ÷ binary: above 1 is more requests/s, or more latency and CPU). \
         Both servers run the app built with the dev profile (what `hotswap serve` builds by default), 2 runtime threads each.",
        context.effort.dispatch_rounds,
        if pinning {
            "; server pinned to CPU 0 and the load generator (wrk, or this benchmark's process) to CPU 1 with taskset"
        } else {
            ""
        }
    ));
    context.sections.push(section);
    Ok(())
}

/// Sets the CPU affinity of every thread of `pid` (threads started later inherit it).
fn pin_process(pid: u32, cpus: &str) {
    let _ = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status();
}

async fn measure(
    wrk: Option<&PathBuf>,
    address: SocketAddr,
    path: &str,
    load: Load,
    duration: Duration,
) -> anyhow::Result<WrkResult> {
    let (threads, connections) = match load {
        Load::Connections32 => (2, 32),
        Load::Connections1 => (1, 1),
    };
    match wrk {
        Some(wrk) => {
            let (wrk, path) = (wrk.clone(), path.to_owned());
            tokio::task::spawn_blocking(move || {
                crate::wrk::run(&wrk, address, &path, threads, connections, duration, Some(1))
            })
            .await?
        }
        None => {
            // The load comes from this process: it gets the other CPU, as wrk would.
            let own = std::process::id();
            let pinning = find_on_path("taskset").is_some();
            if pinning {
                pin_process(own, "1");
            }
            let running = start_load(address, path, connections as usize, true);
            tokio::time::sleep(duration).await;
            let report = running.stop().await;
            if pinning {
                let all = format!(
                    "0-{}",
                    std::thread::available_parallelism().map_or(1, |count| count.get()) - 1
                );
                pin_process(own, &all);
            }
            let latencies_ms: Vec<f64> = report.latencies_us.iter().map(|us| us / 1000.0).collect();
            Ok(WrkResult {
                requests_per_second: report.answered as f64 / report.elapsed.as_secs_f64(),
                latency_p50_ms: percentile(&latencies_ms, 50.0).unwrap_or(f64::NAN),
                latency_p99_ms: percentile(&latencies_ms, 99.0).unwrap_or(f64::NAN),
                errors: report.lost(),
            })
        }
    }
}
