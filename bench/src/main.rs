//! `hotswap-bench`: measures hotswap against the bare `cargo build` of the same change and against
//! relink-and-restart of the same app as one binary (on hotswap's SDK, and as an ordinary axum
//! binary written the way a user without hotswap writes it), and prints a markdown report
//! (medians of alternating rounds, ratios measured side by side, the machine it ran on). See
//! BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p hotswap-bench            # the full run (~15 minutes on 2 CPUs)
//! cargo run --release -p hotswap-bench -- --quick # a few rounds, to check that it works
//! cargo run --release -p hotswap-bench -- --only state-handoff  # one case that needs no servers
//! cargo run --release -p hotswap-bench -- --only browser         # save → visible in a page (Chromium)
//! cargo run --release -p hotswap-bench -- --only save-to-served  # case 1: save → served
//! ```
//!
//! It builds what it needs (the `hotswap` binary in release, the example apps and their
//! one-binary versions under `target/hotswap-bench`), installs `wrk` with apt-get when it is
//! missing (or falls back to a built-in load generator), and writes the report to stdout and to
//! `target/hotswap-bench/report.md`. It never edits `examples/`.

mod bench_workspace;
mod big_app;
mod cases;
mod daemon_process;
mod engine_worker;
mod load_generator;
mod machine;
mod report;
mod restart_supervisor;
mod rust_analyzer;
mod statistics;
mod user_style;
mod wrk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};

use bench_workspace::{BenchApp, BenchWorkspace, cargo_program};
use cases::save_to_served::AppServers;
use cases::{BenchContext, Effort, progress};
use daemon_process::DaemonProcess;
use machine::{CpuTimes, LoadSampler, MachineDetails, ProcessSample, load_average};
use restart_supervisor::{RestartStyle, StandaloneServer};
use user_style::BuildProfile;

/// The daemon's default debounce (`[build] debounce_ms` in hotswap.toml).
const DEFAULT_DEBOUNCE_MS: u64 = 50;

const USAGE: &str = "usage: hotswap-bench [--quick] [--builtin-load] [--only CASE] [--output FILE]

Benchmarks hotswap (see BENCHMARKS.md). --quick runs a few rounds only, to check that the
benchmark works; its numbers are not worth quoting. --builtin-load uses the built-in load
generator for the dispatch case even when wrk is installed (it is the fallback when wrk cannot be
installed). --only runs one case: swap-cost, crash-recovery, state-handoff, slow-setup, memory, browser
(save → visible in a page, in headless Chromium; run scripts/browser-e2e-setup.sh once first),
save-to-served (case 1 alone, with the servers it needs). The report is printed and written to target/hotswap-bench/report.md (or
FILE).";

/// The cases `--only` can run by themselves.
const SOLO_CASES: [&str; 7] = [
    "swap-cost",
    "crash-recovery",
    "state-handoff",
    "slow-setup",
    "memory",
    "browser",
    "save-to-served",
];

fn main() -> anyhow::Result<()> {
    // The engine worker's generations run in host processes started from this binary.
    hotswap_host::run_if_requested();
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if arguments.first().map(String::as_str) == Some("engine-worker") {
        let directory = arguments.get(1).context("engine-worker GENERATIONS_DIR")?;
        return tokio::runtime::Runtime::new()?
            .block_on(engine_worker::run_worker(PathBuf::from(directory)));
    }
    let mut effort = Effort::FULL;
    let mut output = None;
    let mut builtin_load = false;
    let mut only = None;
    let mut remaining = arguments.iter();
    while let Some(argument) = remaining.next() {
        match argument.as_str() {
            "--quick" => effort = Effort::QUICK,
            "--builtin-load" => builtin_load = true,
            "--only" => {
                let case = remaining.next().context("--only CASE")?;
                if !SOLO_CASES.contains(&case.as_str()) {
                    bail!("no case {case:?} runs alone; these do: {}", SOLO_CASES.join(", "));
                }
                only = Some(case.clone());
            }
            "--output" => output = Some(PathBuf::from(remaining.next().context("--output FILE")?)),
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let shown_arguments =
        if arguments.is_empty() { String::new() } else { format!(" -- {}", arguments.join(" ")) };
    runtime.block_on(run(effort, output, builtin_load, only.as_deref(), &shown_arguments))
}

async fn run(
    effort: Effort,
    output: Option<PathBuf>,
    builtin_load: bool,
    only: Option<&str>,
    shown_arguments: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let machine = MachineDetails::read();
    let load_at_start = load_average();
    let cpu_at_start = CpuTimes::read();
    let load_sampler = LoadSampler::start(std::time::Duration::from_secs(5));
    let repository = hotswap_tests::artifacts::repository_root();
    // Read before anything is built: the commit measured, even if someone commits meanwhile.
    let commit = repository_commit(&repository);
    let bench_dir = hotswap_tests::artifacts::cargo_target_dir().join("hotswap-bench");
    std::fs::create_dir_all(bench_dir.join("logs"))?;
    let workspace = BenchWorkspace::prepare(&repository, &bench_dir)?;
    let hotswap_binary = build_hotswap(&repository).await?;
    let mut context = BenchContext::new(effort, workspace, bench_dir.clone(), hotswap_binary);

    let result = match only {
        Some(case) => run_solo_case(&mut context, case).await,
        None => run_cases(&mut context, builtin_load).await,
    };
    for app in &context.workspace.apps {
        app.restore()?;
        app.write_hotswap_toml(0)?;
    }
    // A case that fails still leaves the report of those that finished (a full run is long).
    if let Err(error) = &result {
        progress(format_args!("the run stopped early: {error:#}"));
    }

    let (busy, stolen) = CpuTimes::read().shares_since(&cpu_at_start);
    let loads = load_sampler.samples();
    let mut text = String::new();
    text.push_str(&format!(
        "Measured by `cargo run --release -p hotswap-bench{shown_arguments}` at commit {} on {} in {:.0} min.\n\n",
        commit,
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        started.elapsed().as_secs_f64() / 60.0
    ));
    text.push_str(&format!(
        "- Machine: {}, {} CPUs, {:.0} GiB, Linux {}, {}, {}.\n",
        machine.cpu_model,
        machine.cpus,
        machine.memory_gib,
        machine.kernel,
        machine.glibc,
        machine.rustc
    ));
    text.push_str(&format!(
        "- Noise: the 1-minute load average was {load_at_start:.2} at the start, {:.2} at the end, {:.2} in the median and {:.2} at most \
         of {} samples taken every 5 s (with {} CPUs, above {} means processes waited for a CPU); the CPUs were busy {:.0} % of the run \
         (this benchmark and other users' work) and {:.1} % of CPU time was stolen by the hypervisor.\n\n",
        load_average(),
        statistics::median(&loads).unwrap_or(f64::NAN),
        loads.iter().copied().fold(f64::NAN, f64::max),
        loads.len(),
        machine.cpus,
        machine.cpus,
        busy * 100.0,
        stolen * 100.0
    ));
    if let Err(error) = &result {
        text.push_str(&format!(
            "**This run stopped early**: {error:#}. The sections below are those of the cases that \
             finished.\n\n"
        ));
    }
    text.push_str("### Goals\n\n");
    text.push_str(&report::goals_table(&context.goals).to_markdown());
    text.push('\n');
    context.sections.sort_by(|left, right| left.title.cmp(&right.title));
    for section in &context.sections {
        text.push_str(&section.to_markdown());
    }
    let output = output.unwrap_or_else(|| bench_dir.join("report.md"));
    std::fs::write(&output, &text).with_context(|| format!("cannot write {}", output.display()))?;
    println!("{text}");
    progress(format_args!("report written to {}", output.display()));
    result
}

async fn run_solo_case(context: &mut BenchContext, case: &str) -> anyhow::Result<()> {
    match case {
        "swap-cost" => cases::swap_cost::run(context).await,
        "crash-recovery" => cases::crash_recovery::run(context).await,
        "state-handoff" => cases::state_handoff::run(context).await,
        "slow-setup" => cases::slow_setup::run(context).await,
        "memory" => cases::memory_and_idle::run_memory(context).await,
        "browser" => cases::browser_follows_save::run(context).await,
        "save-to-served" => run_save_to_served(context).await,
        other => bail!("no case {other:?} runs alone; these do: {}", SOLO_CASES.join(", ")),
    }
}

/// Case 1 alone (save → new code served): the apps and their binaries built, every server
/// started, the case run, the servers stopped.
async fn run_save_to_served(context: &mut BenchContext) -> anyhow::Result<()> {
    build_apps(context).await?;
    let mut servers = start_servers(context).await?;
    check_user_style_apps(context, &servers).await?;
    cases::save_to_served::run(context, &mut servers).await?;
    for (_, app_servers) in servers {
        app_servers.stop().await?;
    }
    Ok(())
}

/// Builds every app's handler, its binary on hotswap's SDK and its axum binary in each profile.
async fn build_apps(context: &mut BenchContext) -> anyhow::Result<()> {
    let apps = context.workspace.apps.clone();
    for app in &apps {
        app.restore()?;
        app.write_hotswap_toml(0)?;
        progress(format_args!(
            "building {}, {} and {} (the first time builds every dependency)",
            app.name, app.standalone_package, app.user_style.package
        ));
        context.workspace.build_handler(app).await?;
        context.workspace.build_standalone(app).await?;
        for profile in BuildProfile::ALL {
            context.workspace.build_user_style(app, profile).await?;
        }
    }
    Ok(())
}

async fn run_cases(context: &mut BenchContext, builtin_load: bool) -> anyhow::Result<()> {
    build_apps(context).await?;
    let wrk =
        if builtin_load { None } else { tokio::task::spawn_blocking(wrk::find_or_install).await? };

    let mut servers = start_servers(context).await?;
    check_user_style_apps(context, &servers).await?;
    let mut starting_memory = BTreeMap::new();
    for (app, app_servers) in &servers {
        let resident = ProcessSample::read_family(app_servers.daemon.pid)
            .map_or(0, |sample| sample.resident_kib);
        starting_memory.insert(app.clone(), resident);
    }
    cases::save_to_served::run(context, &mut servers).await?;
    // The big app is measured by case 1 only.
    for app in &context.workspace.apps {
        if !app.in_every_case
            && let Some(app_servers) = servers.remove(&app.name)
        {
            app_servers.stop().await?;
            starting_memory.remove(&app.name);
        }
    }
    cases::change_under_load::run(context, &mut servers).await?;
    cases::dispatch::run(context, &servers, wrk.as_ref()).await?;
    let mut swaps_per_daemon = BTreeMap::new();
    for (app, app_servers) in &servers {
        let status = app_servers.daemon.status().await?;
        swaps_per_daemon
            .insert(app.clone(), status.current_generation.unwrap_or(1).saturating_sub(1));
    }
    cases::memory_and_idle::run_idle(context, &servers, &starting_memory, &swaps_per_daemon)
        .await?;

    // The default debounce: the daemons again, with hotswap.toml as users have it.
    let mut restarted = BTreeMap::new();
    for (app_name, app_servers) in std::mem::take(&mut servers) {
        let AppServers {
            daemon,
            restart_kill,
            restart_handoff,
            user_style_default_profile,
            user_style_examples_profile,
        } = app_servers;
        daemon.stop().await?;
        context.workspace.app(&app_name).write_hotswap_toml(DEFAULT_DEBOUNCE_MS)?;
        let daemon = start_daemon(context, &app_name, "debounce").await?;
        restarted.insert(
            app_name,
            AppServers {
                daemon,
                restart_kill,
                restart_handoff,
                user_style_default_profile,
                user_style_examples_profile,
            },
        );
    }
    servers = restarted;
    cases::save_to_served::run_with_default_debounce(context, &mut servers, DEFAULT_DEBOUNCE_MS)
        .await?;
    for (_, app_servers) in std::mem::take(&mut servers) {
        app_servers.stop().await?;
    }

    cases::build_variants::run(context).await?;
    cases::swap_cost::run(context).await?;
    cases::crash_recovery::run(context).await?;
    cases::state_handoff::run(context).await?;
    cases::slow_setup::run(context).await?;
    cases::memory_and_idle::run_memory(context).await?;
    cases::browser_follows_save::run(context).await?;
    Ok(())
}

async fn start_daemon(
    context: &BenchContext,
    app_name: &str,
    label: &str,
) -> anyhow::Result<DaemonProcess> {
    let app = context.workspace.app(app_name);
    progress(format_args!("starting hotswap serve for {app_name}"));
    DaemonProcess::start(
        &context.hotswap_binary,
        &app.directory,
        &context.log_path(&format!("{app_name}-serve-{label}.log")),
    )
    .await
}

async fn start_servers(context: &BenchContext) -> anyhow::Result<BTreeMap<String, AppServers>> {
    let mut servers = BTreeMap::new();
    for app in &context.workspace.apps {
        let daemon = start_daemon(context, &app.name, "main").await?;
        let binary = context.workspace.standalone_binary(app);
        let restart_kill = StandaloneServer::start(
            &binary,
            RestartStyle::KillAndRebind,
            &context.log_path(&format!("{}-standalone-kill.log", app.name)),
        )
        .await?;
        let restart_handoff = StandaloneServer::start(
            &binary,
            RestartStyle::SocketHandoffGraceful,
            &context.log_path(&format!("{}-standalone-handoff.log", app.name)),
        )
        .await?;
        let user_style_default_profile =
            start_user_style(context, app, BuildProfile::CargoDefault).await?;
        let user_style_examples_profile =
            start_user_style(context, app, BuildProfile::ExamplesProfile).await?;
        servers.insert(
            app.name.clone(),
            AppServers {
                daemon,
                restart_kill,
                restart_handoff,
                user_style_default_profile,
                user_style_examples_profile,
            },
        );
    }
    Ok(servers)
}

/// Starts the app as an ordinary axum binary, restarted by killing it (it installs no handler).
async fn start_user_style(
    context: &BenchContext,
    app: &BenchApp,
    profile: BuildProfile,
) -> anyhow::Result<StandaloneServer> {
    StandaloneServer::start(
        &context.workspace.user_style_binary(app, profile),
        RestartStyle::KillAndRebind,
        &context.log_path(&format!("{}-{}.log", app.user_style.package, profile.slug())),
    )
    .await
}

/// Checks that every user-style app answers the app's requests as the app does when served by
/// hotswap's SDK (the same `src/lib.rs` as the daemon's), with either profile. Each pair of
/// servers has just started, so both begin with the same (empty) state.
async fn check_user_style_apps(
    context: &BenchContext,
    servers: &BTreeMap<String, AppServers>,
) -> anyhow::Result<()> {
    for app in &context.workspace.apps {
        let app_servers = &servers[&app.name];
        for (reference, user_style) in [
            (&app_servers.restart_kill, &app_servers.user_style_default_profile),
            (&app_servers.restart_handoff, &app_servers.user_style_examples_profile),
        ] {
            user_style::check_same_responses(
                &app.name,
                reference.address,
                user_style.address,
                app.checked_requests,
            )
            .await?;
        }
        progress(format_args!(
            "{} answers {} requests as {} does",
            app.user_style.package,
            app.checked_requests.len(),
            app.standalone_package
        ));
    }
    Ok(())
}

/// Builds the `hotswap` binary in release (as `cargo install` would) and returns its path.
async fn build_hotswap(repository: &Path) -> anyhow::Result<PathBuf> {
    progress("building the hotswap binary (release)");
    let mut command = tokio::process::Command::new(cargo_program());
    command
        .args(["build", "--release", "--quiet", "-p", "hotswap-daemon", "--bin", "hotswap"])
        .current_dir(repository)
        .stdin(std::process::Stdio::null());
    let status = command.status().await.context("cannot run cargo")?;
    if !status.success() {
        bail!("building the hotswap binary failed");
    }
    let binary = hotswap_tests::artifacts::cargo_target_dir().join("release").join("hotswap");
    if !binary.is_file() {
        bail!("{} was not built", binary.display());
    }
    Ok(binary)
}

/// The repository's commit, and whether the working tree had uncommitted changes to tracked files.
fn repository_commit(repository: &Path) -> String {
    let directory = repository.display().to_string();
    let commit = command_output("git", &["-C", &directory, "rev-parse", "--short", "HEAD"]);
    let changes =
        command_output("git", &["-C", &directory, "status", "--porcelain", "--untracked-files=no"]);
    match (commit.is_empty(), changes.is_empty()) {
        (true, _) => "unknown (not a git checkout)".to_owned(),
        (false, true) => commit,
        (false, false) => format!("{commit} with uncommitted changes"),
    }
}

fn command_output(program: &str, arguments: &[&str]) -> String {
    std::process::Command::new(program)
        .args(arguments)
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default()
}
