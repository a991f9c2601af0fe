//! Case 1: from an editor's save to the first response with the new code, for hotswap (a
//! `didSave` message, and `hotswap reload`), against the bare `cargo build` of the same change
//! (the floor) and against relink-and-restart of the same app as one binary: on hotswap's SDK
//! (`<app>-standalone`), and as a user without hotswap writes it (`<app>-axum`, built with
//! cargo's default dev profile and with the examples' profile).
//!
//! Every path starts right after the edited file is written and, except the floor, ends when a
//! client that polls `GET /` every millisecond first gets the new body. The same poller runs
//! during the floor's build too (against the daemon), so every path competes with it for CPU.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hotswap_protocol::messages::ReloadOutcome;

use super::{BenchContext, progress, rotated};
use crate::bench_workspace::BenchApp;
use crate::big_app;
use crate::daemon_process::DaemonProcess;
use crate::load_generator::poll_until_body_contains;
use crate::report::{
    Goal, Section, Table, median_and_range, milliseconds, ratio, signed_milliseconds,
};
use crate::restart_supervisor::{RestartStyle, StandaloneServer};
use crate::rust_analyzer::{self, RustAnalyzer};
use crate::statistics::{Summary, median, median_difference, median_ratio};
use crate::user_style::BuildProfile;

/// How often the client asks for the page.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(1);
const NEW_CODE_TIMEOUT: Duration = Duration::from_secs(300);

/// The servers of one app during the run.
#[derive(Debug)]
pub(crate) struct AppServers {
    pub(crate) daemon: DaemonProcess,
    /// The app as one binary on hotswap's SDK, restarted by killing it.
    pub(crate) restart_kill: StandaloneServer,
    /// The same binary, restarted with socket handoff and a graceful stop.
    pub(crate) restart_handoff: StandaloneServer,
    /// The app as an ordinary axum binary with cargo's default dev profile (kill, rebind).
    pub(crate) user_style_default_profile: StandaloneServer,
    /// The same with the examples' profile.
    pub(crate) user_style_examples_profile: StandaloneServer,
}

impl AppServers {
    pub(crate) fn restart_server(&mut self, style: RestartStyle) -> &mut StandaloneServer {
        match style {
            RestartStyle::KillAndRebind => &mut self.restart_kill,
            RestartStyle::SocketHandoffGraceful => &mut self.restart_handoff,
        }
    }

    pub(crate) fn user_style_server(&mut self, profile: BuildProfile) -> &mut StandaloneServer {
        match profile {
            BuildProfile::CargoDefault => &mut self.user_style_default_profile,
            BuildProfile::ExamplesProfile => &mut self.user_style_examples_profile,
        }
    }

    /// Stops every server.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.daemon.stop().await?;
        self.restart_kill.stop().await?;
        self.restart_handoff.stop().await?;
        self.user_style_default_profile.stop().await?;
        self.user_style_examples_profile.stop().await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SavePath {
    Floor,
    HotswapSave,
    /// The same `didSave` with the app's manifest among the saved files, which sends the build
    /// to cargo: what every save cost before the fast path, on the same daemon.
    HotswapSaveByCargo,
    HotswapReload,
    /// The binary on hotswap's SDK.
    Restart(RestartStyleKey),
    /// `cargo watch -x run`: stop the server, build, start (the binary on hotswap's SDK).
    StopBuildStart,
    /// The ordinary axum binary, killed and started again after the build.
    UserStyleRestart(BuildProfile),
    /// The ordinary axum binary, stopped, built, started.
    UserStyleStopBuildStart(BuildProfile),
}

/// `RestartStyle` as an ordered key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RestartStyleKey {
    Kill,
    Handoff,
}

impl RestartStyleKey {
    fn style(self) -> RestartStyle {
        match self {
            RestartStyleKey::Kill => RestartStyle::KillAndRebind,
            RestartStyleKey::Handoff => RestartStyle::SocketHandoffGraceful,
        }
    }
}

impl SavePath {
    fn label(self) -> &'static str {
        match self {
            SavePath::Floor => "cargo build of the change (the floor)",
            SavePath::HotswapSave => "hotswap: didSave → new code served (debounce_ms = 0)",
            SavePath::HotswapSaveByCargo => {
                "hotswap: didSave with the manifest → served (built by cargo)"
            }
            SavePath::HotswapReload => "hotswap: reload → new code served",
            SavePath::Restart(style) => style.style().label(),
            SavePath::UserStyleRestart(_) => RestartStyle::KillAndRebind.label(),
            SavePath::StopBuildStart | SavePath::UserStyleStopBuildStart(_) => {
                STOP_BUILD_START_LABEL
            }
        }
    }

    /// What the path builds.
    fn built(self) -> &'static str {
        match self {
            SavePath::Floor
            | SavePath::HotswapSave
            | SavePath::HotswapSaveByCargo
            | SavePath::HotswapReload => HANDLER_LIBRARY,
            SavePath::Restart(_) | SavePath::StopBuildStart => SDK_BINARY,
            SavePath::UserStyleRestart(profile) | SavePath::UserStyleStopBuildStart(profile) => {
                profile.user_style_label()
            }
        }
    }

    fn is_restart(self) -> bool {
        matches!(
            self,
            SavePath::Restart(_)
                | SavePath::StopBuildStart
                | SavePath::UserStyleRestart(_)
                | SavePath::UserStyleStopBuildStart(_)
        )
    }
}

/// What hotswap builds: the app's handler crate as a cdylib, with the examples' profile.
pub(crate) const HANDLER_LIBRARY: &str = "handler library (cdylib), examples' profile";
/// The app and hotswap's SDK as one binary, with the examples' profile.
pub(crate) const SDK_BINARY: &str = "binary on hotswap's SDK, examples' profile";

/// How `cargo watch -x run` and bacon's `kill_then_restart` restart: the server is down while it builds.
pub(crate) const STOP_BUILD_START_LABEL: &str = "stop, build, start (cargo watch -x run)";

const PATHS: [SavePath; 11] = [
    SavePath::Floor,
    SavePath::HotswapSave,
    SavePath::HotswapSaveByCargo,
    SavePath::HotswapReload,
    SavePath::Restart(RestartStyleKey::Kill),
    SavePath::Restart(RestartStyleKey::Handoff),
    SavePath::StopBuildStart,
    SavePath::UserStyleRestart(BuildProfile::CargoDefault),
    SavePath::UserStyleStopBuildStart(BuildProfile::CargoDefault),
    SavePath::UserStyleRestart(BuildProfile::ExamplesProfile),
    SavePath::UserStyleStopBuildStart(BuildProfile::ExamplesProfile),
];

/// One measurement of a path: the whole time, and the part that cargo built (when known).
#[derive(Debug, Clone, Copy)]
struct Measured {
    total_ms: f64,
    build_ms: Option<f64>,
}

/// What the daemon said about one reload: its build and swap times.
#[derive(Debug, Default)]
struct DaemonTimes {
    build_ms: Vec<f64>,
    swap_ms: Vec<f64>,
}

/// Measures every path of every app, `effort.save_rounds` times, in rotating order.
pub(crate) async fn run(
    context: &mut BenchContext,
    servers: &mut BTreeMap<String, AppServers>,
) -> anyhow::Result<()> {
    let apps = context.workspace.apps.clone();
    let mut samples: BTreeMap<(String, SavePath), Vec<Measured>> = BTreeMap::new();
    let mut daemon_times: BTreeMap<String, DaemonTimes> = BTreeMap::new();
    // A warm-up round, not counted: first builds after start-up, caches, connections.
    for app in &apps {
        let app_servers = servers.get_mut(&app.name).expect("servers of every app");
        for path in PATHS {
            let number = context.next_edit_number();
            measure(context, app, app_servers, path, number, None).await?;
        }
        // The warm-up's saves built the handler with cargo: its shared dependency library is
        // ready before the measured rounds.
        app_servers.daemon.wait_for_shared_deps().await?;
    }
    for round in 0..context.effort.save_rounds {
        for app in &apps {
            let app_servers = servers.get_mut(&app.name).expect("servers of every app");
            for path in rotated(&PATHS, round + app.name.len()) {
                let number = context.next_edit_number();
                let (measured, reload) =
                    measure(context, app, app_servers, path, number, None).await?;
                progress(format_args!(
                    "save → served, round {}: {} {} ({}): {} ms",
                    round + 1,
                    app.name,
                    path.label(),
                    path.built(),
                    milliseconds(measured.total_ms)
                ));
                samples.entry((app.name.clone(), path)).or_default().push(measured);
                if let Some(ReloadOutcome::Swapped { build_ms, swap_ms, .. }) = reload {
                    let times = daemon_times.entry(app.name.clone()).or_default();
                    times.build_ms.push(build_ms.unwrap_or(f64::NAN));
                    times.swap_ms.push(swap_ms);
                }
                // Let the old generation retire and the machine settle.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }

    let mut table = Table::new(&[
        "app",
        "path",
        "what is rebuilt",
        "median ms (min–max)",
        "of which cargo build, ms",
        "after the build, ms",
        "vs floor",
        "restart ÷ hotswap save",
    ]);
    let mut section = Section::new("1. Save → new code served");
    for app in &apps {
        let measured =
            |path: SavePath| samples.get(&(app.name.clone(), path)).cloned().unwrap_or_default();
        let totals = |path: SavePath| -> Vec<f64> {
            measured(path).iter().map(|sample| sample.total_ms).collect()
        };
        let floor = totals(SavePath::Floor);
        let save = totals(SavePath::HotswapSave);
        for path in PATHS {
            let values = totals(path);
            let builds: Vec<f64> =
                measured(path).iter().map(|sample| sample.build_ms.unwrap_or(f64::NAN)).collect();
            let afterwards: Vec<f64> =
                values.iter().zip(&builds).map(|(total, build)| total - build).collect();
            let versus_floor = match path {
                SavePath::Floor => String::new(),
                _ => format!(
                    "{} ({} ms)",
                    ratio(median_ratio(&values, &floor).unwrap_or(f64::NAN)),
                    signed_milliseconds(median_difference(&values, &floor).unwrap_or(f64::NAN))
                ),
            };
            let versus_save = if path.is_restart() {
                ratio(median_ratio(&values, &save).unwrap_or(f64::NAN))
            } else {
                String::new()
            };
            let (build_column, after_column) = match path {
                SavePath::Floor => (String::new(), String::new()),
                _ => (
                    milliseconds(median(&builds).unwrap_or(f64::NAN)),
                    milliseconds(median(&afterwards).unwrap_or(f64::NAN)),
                ),
            };
            table.push(vec![
                app.name.clone(),
                path.label().to_owned(),
                path.built().to_owned(),
                median_and_range(Summary::of(&values)),
                build_column,
                after_column,
                versus_floor,
                versus_save,
            ]);
        }
        let overhead_ratio = median_ratio(&save, &floor).unwrap_or(f64::NAN);
        let overhead_ms = median_difference(&save, &floor).unwrap_or(f64::NAN);
        let by_cargo = totals(SavePath::HotswapSaveByCargo);
        let fast_path_ratio = median_ratio(&save, &by_cargo).unwrap_or(f64::NAN);
        let by_cargo_ratio = median_ratio(&by_cargo, &floor).unwrap_or(f64::NAN);
        context.goals.push(Goal {
            name: format!("{}: save → served ÷ cargo build", app.name),
            target: "≤ 0.6".into(),
            measured: format!(
                "{} ({} ms; the same save built by cargo: {})",
                ratio(overhead_ratio),
                signed_milliseconds(overhead_ms),
                ratio(by_cargo_ratio)
            ),
            met: Some(overhead_ratio <= 0.6),
        });
        context.goals.push(Goal {
            name: format!("{}: save → served, rustc directly ÷ built by cargo", app.name),
            target: "< 1".into(),
            measured: ratio(fast_path_ratio),
            met: Some(fast_path_ratio < 1.0),
        });
        let speedup = |path: SavePath| median_ratio(&totals(path), &save).unwrap_or(f64::NAN);
        let user_default = speedup(SavePath::UserStyleRestart(BuildProfile::CargoDefault));
        context.goals.push(Goal {
            name: format!(
                "{}: relink + restart ÷ hotswap save (axum binary, cargo's default dev profile)",
                app.name
            ),
            target: "≥ 3×".into(),
            measured: format!(
                "{} (axum binary, examples' profile: {}; binary on hotswap's SDK: {})",
                ratio(user_default),
                ratio(speedup(SavePath::UserStyleRestart(BuildProfile::ExamplesProfile))),
                ratio(speedup(SavePath::Restart(RestartStyleKey::Kill)))
            ),
            met: Some(user_default >= 3.0),
        });
        if let Some(times) = daemon_times.get(&app.name) {
            let build = median(&times.build_ms).unwrap_or(f64::NAN);
            section.notes.push(format!(
                "{}: on the reload path the daemon reported a median build of {} ms and a median swap of {} ms.",
                app.name,
                milliseconds(build),
                milliseconds(median(&times.swap_ms).unwrap_or(f64::NAN)),
            ));
            let served = median(&totals(SavePath::HotswapReload)).unwrap_or(f64::NAN);
            let floor_median = median(&floor).unwrap_or(f64::NAN);
            if overhead_ratio > 0.6 && build.is_finite() && served.is_finite() {
                let rest = served - build;
                // What rustc may take for a target; out of reach when the rest alone exceeds it.
                let budget = |target: f64| {
                    let left = target - rest;
                    if left > 0.0 {
                        format!("at most {} ms", milliseconds(left))
                    } else {
                        "less than nothing (the swap alone takes longer)".to_owned()
                    }
                };
                section.notes.push(format!(
                    "{}: what limits it: of the {} ms from `reload` to the new code served, {} ms ({:.0} %) is the build, which on the fast path \
                     is rustc compiling the app's own crate alone (no cargo, the dependencies linked once); the rest, {} ms, is the swap and the \
                     client's next poll. 0.6× the floor ({} ms) would need that rustc to take {}; 3× sooner than the axum \
                     binary's restart, {}.",
                    app.name,
                    milliseconds(served),
                    milliseconds(build),
                    100.0 * build / served,
                    milliseconds(rest),
                    milliseconds(floor_median),
                    budget(0.6 * floor_median),
                    budget(
                        median(&totals(SavePath::UserStyleRestart(BuildProfile::CargoDefault)))
                            .unwrap_or(f64::NAN)
                            / 3.0
                    ),
                ));
            }
        }
        section.notes.push(artifact_sizes(context, app));
    }
    section.tables.push(table);
    section.notes.push(format!(
        "{} rounds after one warm-up round; in each round every path of every app ran once, in an order rotated from round to round. \
         Ratios and differences are medians of per-round ratios (each path against the floor measured in the same round). \
         \"After the build\" is the median of each change's time less its cargo build: the swap, or the restart, and the client's next poll.",
        context.effort.save_rounds
    ));
    section.notes.push(format!(
        "The end of each path is the first response with the new body to a client polling every {} ms; the same client polls during the floor's build. \
         Relink + restart builds the app's binary while the old server keeps serving; \
         \"stop, build, start\" is what `cargo watch -x run` and bacon's `kill_then_restart` do by default. No watcher debounce is added (cargo-watch's default is 0.5 s).",
        POLL_INTERVAL.as_millis()
    ));
    section.notes.push(
        "What is rebuilt: the floor and hotswap build the app's handler crate as a cdylib, as the daemon does; the binary on hotswap's SDK includes the same \
         `src/lib.rs` and serves it with `hotswap_handler::standalone`; the axum binary is the app as a user without hotswap writes it: `#[tokio::main]`, axum with its default features, \
         tokio \"full\", `axum::serve` (todo and tracker generated from their src/lib.rs, hello written with the same routes and bodies; each checked at start-up \
         to answer the same requests with the same status and body), built with cargo's default dev profile (full debug info for every crate) and with the \
         examples' profile (`debug = \"line-tables-only\"`, dependencies without debug info), which the cdylib and the binary on hotswap's SDK use. \
         Every binary is restarted by the same supervisor."
            .to_owned(),
    );
    section.notes.push(big_app::description());
    context.sections.push(section);
    run_with_rust_analyzer(context, servers, &samples).await
}

/// The paths measured again with rust-analyzer checking alongside.
const RUST_ANALYZER_PATHS: [SavePath; 3] = [
    SavePath::Floor,
    SavePath::HotswapSave,
    SavePath::UserStyleRestart(BuildProfile::CargoDefault),
];

/// Case 1e: the big app's floor, hotswap save and relink + restart of the axum binary again, each
/// save also sent to a real rust-analyzer (one on the workspace the edited file belongs to: the
/// benchmark's apps for the floor and hotswap, the axum binaries' for the restart), whose default
/// check-on-save then runs alongside on the same CPUs. Each save waits for the previous check to
/// end. `case_1` holds the same paths measured without rust-analyzer, for comparison.
async fn run_with_rust_analyzer(
    context: &mut BenchContext,
    servers: &mut BTreeMap<String, AppServers>,
    case_1: &BTreeMap<(String, SavePath), Vec<Measured>>,
) -> anyhow::Result<()> {
    let mut section = Section::new(format!(
        "1e. Save → new code served with rust-analyzer's check-on-save alongside ({})",
        big_app::NAME
    ));
    let Some(version) = rust_analyzer::installed_version().await else {
        section.notes.push(format!(
            "Not measured: rust-analyzer is not installed (install it with `{}`).",
            rust_analyzer::INSTALL_HINT
        ));
        context.sections.push(section);
        return Ok(());
    };
    let app = context.workspace.app(big_app::NAME).clone();
    let app_servers = servers.get_mut(&app.name).expect("servers of every app");
    app.restore()?;
    progress(format_args!(
        "rust-analyzer alongside: starting {version} on {} and on {} (the first check checks every dependency)",
        context.workspace.root.display(),
        context.workspace.user_style.root.display()
    ));
    let mut for_hotswap = RustAnalyzer::start(
        &context.workspace.root,
        &app.source_file,
        &context.log_path("rust-analyzer-apps.log"),
    )
    .await?;
    let mut for_user_style = RustAnalyzer::start(
        &context.workspace.user_style.root,
        &app.user_style.source_file,
        &context.log_path("rust-analyzer-user-apps.log"),
    )
    .await?;
    let mut samples: BTreeMap<SavePath, Vec<f64>> = BTreeMap::new();
    let mut checks: BTreeMap<SavePath, Vec<f64>> = BTreeMap::new();
    // A warm-up round, not counted, then the measured ones.
    for round in 0..=context.effort.rust_analyzer_rounds {
        for path in rotated(&RUST_ANALYZER_PATHS, round) {
            let analyzer = match path {
                SavePath::UserStyleRestart(_) => &mut for_user_style,
                _ => &mut for_hotswap,
            };
            let number = context.next_edit_number();
            let (measured, _) =
                measure(context, &app, app_servers, path, number, Some(&mut *analyzer)).await?;
            let check = analyzer.wait_for_change_check().await?;
            let check_ms = check.as_secs_f64() * 1000.0;
            if round == 0 {
                continue;
            }
            progress(format_args!(
                "rust-analyzer alongside, round {round}: {} {} ({}): {} ms, its check {} ms",
                app.name,
                path.label(),
                path.built(),
                milliseconds(measured.total_ms),
                milliseconds(check_ms)
            ));
            samples.entry(path).or_default().push(measured.total_ms);
            checks.entry(path).or_default().push(check_ms);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let shown = |analyzer: &RustAnalyzer| {
        analyzer.check_command.as_ref().map_or_else(
            || "(not seen)".to_owned(),
            |command| {
                format!(
                    "`{}`",
                    command
                        .replace(
                            &context.workspace.user_style.root.display().to_string(),
                            "user-apps"
                        )
                        .replace(&context.workspace.root.display().to_string(), "apps")
                )
            },
        )
    };
    let commands = (shown(&for_hotswap), shown(&for_user_style));
    for_hotswap.stop().await?;
    for_user_style.stop().await?;
    app.restore()?;

    let mut table = Table::new(&[
        "app",
        "path (rust-analyzer checking alongside)",
        "what is rebuilt",
        "median ms (min–max)",
        "vs floor",
        "restart ÷ hotswap save",
        "vs the same path without rust-analyzer",
        "rust-analyzer's check, ms",
    ]);
    let values = |path: SavePath| samples.get(&path).cloned().unwrap_or_default();
    let floor = values(SavePath::Floor);
    let save = values(SavePath::HotswapSave);
    for path in RUST_ANALYZER_PATHS {
        let measured = values(path);
        let without: Vec<f64> = case_1
            .get(&(app.name.clone(), path))
            .map(|samples| samples.iter().map(|sample| sample.total_ms).collect())
            .unwrap_or_default();
        let versus_floor = match path {
            SavePath::Floor => String::new(),
            _ => format!(
                "{} ({} ms)",
                ratio(median_ratio(&measured, &floor).unwrap_or(f64::NAN)),
                signed_milliseconds(median_difference(&measured, &floor).unwrap_or(f64::NAN))
            ),
        };
        let versus_save = if path.is_restart() {
            ratio(median_ratio(&measured, &save).unwrap_or(f64::NAN))
        } else {
            String::new()
        };
        let versus_without =
            ratio(median(&measured).unwrap_or(f64::NAN) / median(&without).unwrap_or(f64::NAN));
        table.push(vec![
            app.name.clone(),
            path.label().to_owned(),
            path.built().to_owned(),
            median_and_range(Summary::of(&measured)),
            versus_floor,
            versus_save,
            versus_without,
            median_and_range(Summary::of(&checks.get(&path).cloned().unwrap_or_default())),
        ]);
    }
    section.tables.push(table);
    section.notes.push(format!(
        "{} rounds after one warm-up round, after the rounds of case 1, with {version} (its default settings: the client sends no initializationOptions). \
         Each save is also sent to a real rust-analyzer over LSP on stdio, as an editor sends it (`didChange` with the new text, then `didSave`), at the instant \
         the path starts; its default check-on-save then runs `cargo check` (on the package of the saved file, or on the whole workspace when the file belongs to \
         more than one crate, as tracker/src/lib.rs does: tracker-standalone includes it), and both share the machine's CPUs. \
         One rust-analyzer works on the benchmark's apps workspace (the floor's and hotswap's edit, in tracker/src/lib.rs), where it ran {}; \
         another on the axum binaries' workspace (the restart's edit, in tracker-axum/src/main.rs), where it ran {} (as seen in /proc during its first check). \
         The next save waits until the check has ended. \"rust-analyzer's check\" is from the save to the end of its check (the end of its `$/progress`).",
        context.effort.rust_analyzer_rounds, commands.0, commands.1
    ));
    section.notes.push(
        "rust-analyzer's check runs in the workspace's own target directory (its `cargo.targetDir` is unset by default), the one the floor's `cargo build` and \
         the axum binary's build use too. Cargo lets one command at a time build in a target directory (\"Blocking waiting for file lock on build directory\"): \
         that build and the check take turns, and the time of whichever waits includes the other's. hotswap's save here is built by rustc directly, which takes no cargo lock; \
         the daemon shares the target directory only because the benchmark points it there (its default is `target/hotswap`). \
         \"vs the same path without rust-analyzer\" divides this median by the median of the same path in table 1 (measured minutes apart, not side by side)."
            .to_owned(),
    );
    context.sections.push(section);
    Ok(())
}

/// The sizes of what each path builds for `app`, as a note.
fn artifact_sizes(context: &BenchContext, app: &BenchApp) -> String {
    let workspace = &context.workspace;
    let size = |path: std::path::PathBuf| {
        std::fs::metadata(&path).map_or_else(
            |_| "–".to_owned(),
            |metadata| format!("{:.1} MiB", metadata.len() as f64 / (1024.0 * 1024.0)),
        )
    };
    format!(
        "{}: sizes of what the builds write: handler library {}, binary on hotswap's SDK {}, axum binary {} (cargo's default dev profile) and {} (examples' profile).",
        app.name,
        size(workspace.handler_library(app, &workspace.target_dir)),
        size(workspace.standalone_binary(app)),
        size(workspace.user_style_binary(app, BuildProfile::CargoDefault)),
        size(workspace.user_style_binary(app, BuildProfile::ExamplesProfile)),
    )
}

/// Measures one change of `app` by `path`. With `alongside`, rust-analyzer gets the same save
/// (a `didChange` with the new text and a `didSave`) at the instant the path starts.
async fn measure(
    context: &BenchContext,
    app: &BenchApp,
    servers: &mut AppServers,
    path: SavePath,
    number: u64,
    alongside: Option<&mut RustAnalyzer>,
) -> anyhow::Result<(Measured, Option<ReloadOutcome>)> {
    let workspace = &context.workspace;
    if path == SavePath::Floor {
        // Cargo keeps what it learns of rustc (`rustc -vV`, the target's settings) in the target
        // directory, for one rustc wrapper at a time: after the daemon's cargo, which runs with
        // `hotswap` as its wrapper, a bare cargo asks rustc again (50 ms to 70 ms here). Not
        // measured: the floor is a bare cargo build after a bare cargo build, as without hotswap.
        workspace.build_handler(app).await?;
    }
    let marker = match path {
        SavePath::UserStyleRestart(_) | SavePath::UserStyleStopBuildStart(_) => {
            app.write_user_style_edit(number)?
        }
        _ => app.write_edit(number)?,
    };
    if let Some(analyzer) = alongside {
        let edited = match path {
            SavePath::UserStyleRestart(_) | SavePath::UserStyleStopBuildStart(_) => {
                &app.user_style.source_file
            }
            _ => &app.source_file,
        };
        analyzer.save(&std::fs::read_to_string(edited)?)?;
    }
    let started = Instant::now();
    let poll = |address| {
        let (marker, request_path) = (marker.clone(), app.request_path);
        tokio::spawn(async move {
            poll_until_body_contains(
                address,
                request_path,
                &marker,
                POLL_INTERVAL,
                NEW_CODE_TIMEOUT,
            )
            .await
        })
    };
    let milliseconds_of = |duration: Duration| duration.as_secs_f64() * 1000.0;
    match path {
        SavePath::Floor => {
            // The same client load as the other paths, against the daemon (which keeps the old code).
            let poller = poll(servers.daemon.address);
            let built = workspace.build_handler(app).await;
            poller.abort();
            let built = milliseconds_of(built?);
            Ok((Measured { total_ms: built, build_ms: Some(built) }, None))
        }
        SavePath::HotswapSave => {
            let poller = poll(servers.daemon.address);
            servers.daemon.did_save(&app.source_file).await?;
            let served = poller.await??;
            Ok((Measured { total_ms: millis_between(started, served), build_ms: None }, None))
        }
        SavePath::HotswapSaveByCargo => {
            let poller = poll(servers.daemon.address);
            let manifest = app.directory.join("Cargo.toml");
            servers.daemon.did_save_all(&[&app.source_file, &manifest]).await?;
            let served = poller.await??;
            // Cargo compiled the handler: the daemon checks its shared dependency library
            // again before the next save links on it (not part of this round's time).
            servers.daemon.wait_for_shared_deps().await?;
            Ok((Measured { total_ms: millis_between(started, served), build_ms: None }, None))
        }
        SavePath::HotswapReload => {
            let poller = poll(servers.daemon.address);
            let outcome = servers.daemon.reload().await?;
            let ReloadOutcome::Swapped { build_ms, .. } = outcome else {
                anyhow::bail!("reload of {} did not swap: {outcome:?}", app.name);
            };
            let served = poller.await??;
            Ok((Measured { total_ms: millis_between(started, served), build_ms }, Some(outcome)))
        }
        SavePath::Restart(style) => {
            let server = servers.restart_server(style.style());
            let poller = poll(server.address);
            let built = workspace.build_standalone(app).await?;
            server.restart().await?;
            let served = poller.await??;
            let total_ms = millis_between(started, served);
            Ok((Measured { total_ms, build_ms: Some(milliseconds_of(built)) }, None))
        }
        SavePath::StopBuildStart => {
            let server = &mut servers.restart_kill;
            let poller = poll(server.address);
            server.terminate().await?;
            let built = workspace.build_standalone(app).await?;
            server.spawn()?;
            let served = poller.await??;
            let total_ms = millis_between(started, served);
            Ok((Measured { total_ms, build_ms: Some(milliseconds_of(built)) }, None))
        }
        SavePath::UserStyleRestart(profile) => {
            let server = servers.user_style_server(profile);
            let poller = poll(server.address);
            let built = workspace.build_user_style(app, profile).await?;
            server.restart().await?;
            let served = poller.await??;
            let total_ms = millis_between(started, served);
            Ok((Measured { total_ms, build_ms: Some(milliseconds_of(built)) }, None))
        }
        SavePath::UserStyleStopBuildStart(profile) => {
            let server = servers.user_style_server(profile);
            let poller = poll(server.address);
            server.terminate().await?;
            let built = workspace.build_user_style(app, profile).await?;
            server.spawn()?;
            let served = poller.await??;
            let total_ms = millis_between(started, served);
            Ok((Measured { total_ms, build_ms: Some(milliseconds_of(built)) }, None))
        }
    }
}

pub(crate) fn millis_between(earlier: Instant, later: Instant) -> f64 {
    later.saturating_duration_since(earlier).as_secs_f64() * 1000.0
}

/// The same saves with the daemon's default debounce (a separate phase: the daemon restarted with
/// `debounce_ms = 50`).
pub(crate) async fn run_with_default_debounce(
    context: &mut BenchContext,
    servers: &mut BTreeMap<String, AppServers>,
    debounce_ms: u64,
) -> anyhow::Result<()> {
    let apps = context.workspace.apps.clone();
    let mut table = Table::new(&["app", "path", "median ms (min–max)"]);
    for app in &apps {
        let app_servers = servers.get_mut(&app.name).expect("servers of every app");
        let mut values = Vec::new();
        // Warm-up: the first build of a freshly started daemon.
        let number = context.next_edit_number();
        measure(context, app, app_servers, SavePath::HotswapSave, number, None).await?;
        for _ in 0..context.effort.debounce_saves {
            let number = context.next_edit_number();
            let (measured, _) =
                measure(context, app, app_servers, SavePath::HotswapSave, number, None).await?;
            let elapsed = measured.total_ms;
            progress(format_args!(
                "save → served with debounce_ms = {debounce_ms}: {} {} ms",
                app.name,
                milliseconds(elapsed)
            ));
            values.push(elapsed);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        table.push(vec![
            app.name.clone(),
            format!("hotswap: didSave → new code served (default debounce_ms = {debounce_ms})"),
            median_and_range(Summary::of(&values)),
        ]);
    }
    let mut section = Section::new(format!(
        "1b. Save → new code served with the default debounce ({debounce_ms} ms)"
    ));
    section.tables.push(table);
    section.notes.push(format!(
        "{} saves per app after one warm-up save, in a separate phase after the alternating rounds above (the daemon restarted with its default `debounce_ms = {debounce_ms}`): \
         what an editor user gets out of the box. The debounce is quiet time the daemon waits for after a save, so that a burst of saves makes one build.",
        context.effort.debounce_saves
    ));
    context.sections.push(section);
    Ok(())
}
