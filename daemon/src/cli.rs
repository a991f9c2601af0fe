//! The `hotswap` commands other than `serve`: clients of the daemon's socket, and `new`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hotswap_daemon::config::{Config, normalized};
use hotswap_daemon::scaffold::{self, ScaffoldOptions, SdkSource};
use hotswap_daemon::serve::{ServeOptions, serve};
use hotswap_protocol::endpoint::Endpoint;
use hotswap_protocol::events::{
    BuildOutcome, BuildReason, Diagnostic, Event, RetireOutcome, Severity,
};
use hotswap_protocol::messages::{
    DidSave, DidSaveParams, LoadState, LoadStateParams, NoParams, Reload, ReloadOutcome,
    ReloadParams, Rollback, Shutdown, State, Status, StatusResult, Subscribe,
};
use hotswap_protocol::{Client, ClientError};

use crate::Command;

pub(crate) async fn run(workspace: Option<PathBuf>, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { listen, target_dir, fresh_state, verbose } => {
            install_logging(verbose);
            serve(ServeOptions { workspace, listen, target_dir, fresh_state, verbose }).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::New { directory, name, sdk_path, sdk_version, target_dir, listen } => {
            new(directory, name, sdk_path, sdk_version, target_dir, listen)
        }
        Command::Init { directory, sdk_path, sdk_version, listen } => {
            init(directory, sdk_path, sdk_version, listen)
        }
        Command::Endpoint => {
            let endpoint = endpoint(workspace.as_deref())?;
            println!("{}", endpoint.path().display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload { json, fresh_state } => {
            let (mut client, _) = connect(workspace.as_deref()).await?;
            let show_progress = !json && std::io::stderr().is_terminal();
            if show_progress {
                client.request::<Subscribe>(NoParams {}).await?;
            }
            let mut events = client.take_events().expect("events not taken yet");
            let reload = client.request::<Reload>(ReloadParams { fresh_state });
            tokio::pin!(reload);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut reload => break outcome?,
                    Some(event) = events.recv(), if show_progress => {
                        if let Event::BuildProgress(progress) = event {
                            eprintln!("  {}", progress.message);
                        }
                    }
                }
            };
            Ok(print_outcome(&outcome, json, &client).await)
        }
        Command::Rollback { json } => {
            let (client, _) = connect(workspace.as_deref()).await?;
            let outcome = client.request::<Rollback>(NoParams {}).await?;
            Ok(print_outcome(&outcome, json, &client).await)
        }
        Command::Save { paths } => {
            let (client, _) = connect(workspace.as_deref()).await?;
            let current = std::env::current_dir()?;
            let paths: Vec<PathBuf> = paths.into_iter().map(|path| current.join(path)).collect();
            let saved = client.request::<DidSave>(DidSaveParams { paths }).await?;
            if !saved.accepted.is_empty() {
                println!(
                    "saved {} file{}: the daemon builds after a moment of quiet",
                    saved.accepted.len(),
                    if saved.accepted.len() == 1 { "" } else { "s" }
                );
            }
            for ignored in &saved.ignored {
                println!("ignored {}: {}", ignored.path.display(), ignored.reason);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let (client, _) = connect(workspace.as_deref()).await?;
            let status = client.request::<Status>(NoParams {}).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Events { json } => {
            let (mut client, _) = connect(workspace.as_deref()).await?;
            client.request::<Subscribe>(NoParams {}).await?;
            loop {
                tokio::select! {
                    event = client.next_event() => match event {
                        Some(event) => {
                            if json {
                                println!("{}", String::from_utf8_lossy(&hotswap_protocol::jsonrpc::encode_event(&event)));
                            } else {
                                print_event(&event);
                            }
                        }
                        None => {
                            eprintln!("the daemon stopped");
                            return Ok(ExitCode::SUCCESS);
                        }
                    },
                    _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                }
            }
        }
        Command::State { output, load, json } => {
            let (client, _) = connect(workspace.as_deref()).await?;
            match load {
                Some(file) => {
                    let path = std::path::absolute(&file)?;
                    let outcome = client.request::<LoadState>(LoadStateParams { path }).await?;
                    Ok(print_outcome(&outcome, json, &client).await)
                }
                None => {
                    let state = client.request::<State>(NoParams {}).await?;
                    let Some(path) = &state.path else {
                        eprintln!("generation {} keeps no state", state.generation);
                        return Ok(ExitCode::SUCCESS);
                    };
                    match output {
                        Some(output) => {
                            std::fs::copy(path, &output)
                                .with_context(|| format!("cannot write {}", output.display()))?;
                            eprintln!(
                                "the state of generation {} ({} bytes as it moves) is in {}; \
                                 edit it and load it with `hotswap state --load {}`",
                                state.generation,
                                state.bytes,
                                output.display(),
                                output.display()
                            );
                        }
                        None => {
                            let text = std::fs::read_to_string(path)
                                .with_context(|| format!("cannot read {}", path.display()))?;
                            println!("{}", text.trim_end());
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Stop => {
            let (client, daemon) = connect(workspace.as_deref()).await?;
            match client.request::<Shutdown>(NoParams {}).await {
                // Stopping closes every connection: the answer can lose that race.
                Ok(_) | Err(ClientError::Disconnected) => {}
                Err(error) => return Err(error.into()),
            }
            // Wait until the daemon is gone (it finishes in-flight requests first).
            let endpoint = endpoint(workspace.as_deref())?;
            drop(client);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while endpoint.path().exists() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            println!(
                "stopped the hotswap daemon (pid {}) of {}",
                daemon.pid,
                daemon.workspace_root.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Logging for `hotswap serve`: to stderr, filtered by `RUST_LOG` (default `info`, `debug` with
/// `-v`, `trace` with `-vv`). Handler lines always pass: the generation filtered them already,
/// with the same directives (see `serve::handler_log_directives`).
fn install_logging(verbose: u8) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = match verbose {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default))
        .with_target("handler", tracing::Level::TRACE);
    let format = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry().with(filter).with(format).init();
}

fn endpoint(workspace: Option<&Path>) -> anyhow::Result<Endpoint> {
    let start = match workspace {
        Some(workspace) => workspace.to_path_buf(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let config = Config::discover(&start)?;
    Ok(Endpoint::for_workspace(&config.workspace_root)?)
}

async fn connect(
    workspace: Option<&Path>,
) -> anyhow::Result<(Client, hotswap_protocol::messages::InitializeResult)> {
    let endpoint = endpoint(workspace)?;
    match Client::connect_and_initialize(&endpoint, "hotswap-cli").await {
        Ok(connected) => Ok(connected),
        Err(error @ ClientError::NoDaemon { .. }) => Err(error.into()),
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "cannot talk to the hotswap daemon of {}",
            endpoint.workspace_root().display()
        ))),
    }
}

fn sdk_source(sdk_path: Option<PathBuf>, sdk_version: Option<String>) -> anyhow::Result<SdkSource> {
    Ok(match (sdk_path, sdk_version, scaffold::checkout_handler_dir()) {
        (Some(path), _, _) => SdkSource::Path(normalized(&std::path::absolute(path)?)),
        (None, Some(version), _) => SdkSource::Version(version),
        (None, None, Some(checkout)) => SdkSource::Path(checkout),
        (None, None, None) => SdkSource::Version(env!("CARGO_PKG_VERSION").to_owned()),
    })
}

fn init(
    directory: Option<PathBuf>,
    sdk_path: Option<PathBuf>,
    sdk_version: Option<String>,
    listen: std::net::SocketAddr,
) -> anyhow::Result<ExitCode> {
    let directory = match directory {
        Some(directory) => std::path::absolute(directory)?,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let sdk = sdk_source(sdk_path, sdk_version)?;
    let done = hotswap_daemon::init::init(&directory, &sdk, &listen.to_string())
        .map_err(anyhow::Error::msg)?;
    if done.changes.is_empty() {
        println!("{} in {} is set up for hotswap already:", done.package, directory.display());
    } else {
        println!("set up {} in {} for hotswap:", done.package, directory.display());
    }
    for change in &done.changes {
        println!("  + {change}");
    }
    for already in &done.already {
        println!("  = {already}");
    }
    println!("\n{}", done.next_steps);
    Ok(ExitCode::SUCCESS)
}

fn new(
    directory: PathBuf,
    name: Option<String>,
    sdk_path: Option<PathBuf>,
    sdk_version: Option<String>,
    target_dir: Option<PathBuf>,
    listen: std::net::SocketAddr,
) -> anyhow::Result<ExitCode> {
    let sdk = sdk_source(sdk_path, sdk_version)?;
    let target_dir = match target_dir {
        Some(dir) => Some(normalized(&std::path::absolute(dir)?)),
        None if matches!(sdk, SdkSource::Path(_)) => scaffold::checkout_shared_target_dir(),
        None => None,
    };
    let made = scaffold::scaffold(&ScaffoldOptions {
        directory,
        name,
        sdk,
        target_dir,
        listen: listen.to_string(),
    })
    .map_err(anyhow::Error::msg)?;
    println!("created {} in {}", made.name, made.directory.display());
    for file in &made.files {
        println!("  {}", file.strip_prefix(&made.directory).unwrap_or(file).display());
    }
    let serves = if listen.port() == 0 {
        "on a free port (`hotswap status` shows it)".to_owned()
    } else {
        format!("http://{listen}")
    };
    println!(
        "\nnext:\n  cd {}\n  hotswap serve        # builds, then serves {serves}",
        made.directory.display()
    );
    println!("  # edit src/lib.rs, then save from your editor or run `hotswap save src/lib.rs`");
    Ok(ExitCode::SUCCESS)
}

/// Prints what a reload, rollback or state load did; asks `client` what serves when it failed.
async fn print_outcome(outcome: &ReloadOutcome, json: bool, client: &Client) -> ExitCode {
    let serving = match outcome {
        ReloadOutcome::BuildFailed { .. } | ReloadOutcome::SwapFailed { .. } if !json => {
            match client.request::<Status>(NoParams {}).await {
                Ok(status) => match status.current_generation {
                    Some(generation) => format!("generation {generation} keeps serving"),
                    None => "nothing is served yet".to_owned(),
                },
                Err(_) => "the current generation keeps serving".to_owned(),
            }
        }
        _ => String::new(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(outcome).expect("outcomes serialize"));
    }
    match outcome {
        ReloadOutcome::Swapped {
            generation,
            build_ms,
            swap_ms,
            total_ms,
            warnings,
            stages,
            ..
        } => {
            if !json {
                // Writes wait while the state moves: worth saying when a user could notice.
                let held = if stages.writes_held_ms >= 10.0 {
                    format!(", writes held {:.0} ms", stages.writes_held_ms)
                } else {
                    String::new()
                };
                match build_ms {
                    Some(build_ms) => println!(
                        "swapped to generation {generation} in {total_ms:.0} ms (build {build_ms:.0} ms, swap {swap_ms:.1} ms{held})"
                    ),
                    None => println!(
                        "swapped to generation {generation} in {total_ms:.0} ms (swap {swap_ms:.1} ms{held})"
                    ),
                }
                for warning in warnings {
                    eprintln!("warning: {warning}");
                }
            }
            ExitCode::SUCCESS
        }
        ReloadOutcome::Unchanged { generation, build_ms } => {
            if !json {
                match generation {
                    Some(generation) => {
                        println!(
                            "unchanged: generation {generation} keeps serving (build {build_ms:.0} ms)"
                        )
                    }
                    None => println!("unchanged (build {build_ms:.0} ms)"),
                }
            }
            ExitCode::SUCCESS
        }
        ReloadOutcome::BuildFailed { rendered, diagnostics, .. } => {
            if !json {
                eprint!("{rendered}");
                let errors = diagnostics
                    .iter()
                    .filter(|diagnostic| diagnostic.severity == Severity::Error)
                    .count();
                eprintln!("build failed with {errors} error{}; {serving}", plural(errors));
            }
            ExitCode::FAILURE
        }
        ReloadOutcome::SwapFailed { generation, stage, message, diagnostics } => {
            if !json {
                eprintln!("generation {generation} was refused at the {stage} stage: {message}");
                for diagnostic in diagnostics {
                    eprintln!("  {}see here", location(diagnostic));
                }
                if serving.starts_with("generation") {
                    eprintln!("{serving}, with its state");
                } else {
                    eprintln!("{serving}");
                }
            }
            ExitCode::FAILURE
        }
        ReloadOutcome::Cancelled { reason } => {
            if !json {
                eprintln!("the build was cancelled ({reason})");
            }
            ExitCode::FAILURE
        }
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

fn duration(milliseconds: u64) -> String {
    let seconds = milliseconds / 1000;
    match seconds {
        0 => format!("{milliseconds} ms"),
        1..60 => format!("{seconds} s"),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        _ => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
    }
}

fn print_status(status: &StatusResult) {
    println!(
        "hotswap {} (pid {}), up {}",
        status.daemon_version,
        status.pid,
        duration(status.uptime_ms)
    );
    println!("workspace   {} (package {})", status.workspace_root.display(), status.package);
    println!("http        http://{}", status.listen_address);
    println!("socket      {}", status.endpoint);
    match status.current_generation {
        Some(generation) => println!("serving     generation {generation}"),
        None => println!("serving     nothing now"),
    }
    for generation in &status.generations {
        println!(
            "  gen {:<4} {:<9} pid {}, {} MiB, {} connection{}, {} in flight, {} stream{}, {} request{} answered, loaded {} ago",
            generation.generation,
            match generation.state {
                hotswap_protocol::events::GenerationState::Current => "current",
                hotswap_protocol::events::GenerationState::Draining => "draining",
            },
            generation.pid,
            generation.rss_bytes / (1024 * 1024),
            generation.connections,
            plural(generation.connections as usize),
            generation.in_flight,
            generation.streams,
            plural(generation.streams as usize),
            generation.requests,
            plural(generation.requests as usize),
            duration(generation.age_ms),
        );
    }
    if let Some(refused) = &status.refused_swap {
        println!(
            "refused     {}: the swap to {} was refused at the {} stage {} ago: {}",
            match refused.serving {
                Some(serving) => format!("generation {serving} keeps serving"),
                None => "nothing serves".to_owned(),
            },
            match refused.build {
                Some(build) => format!("build {build}"),
                None => format!("generation {}", refused.generation),
            },
            refused.stage,
            duration(refused.ago_ms),
            refused.message
        );
        println!("            the code on disk is not what serves until a swap succeeds");
    }
    if status.building {
        println!("building    now");
    }
    if let Some(build) = &status.last_build {
        println!(
            "last build  #{} {} in {:.0} ms{} ({} error{}, {} warning{}), {} ago",
            build.build,
            outcome_word(build.outcome),
            build.duration_ms,
            built_with(build.built_with),
            build.errors,
            plural(build.errors as usize),
            build.warnings,
            plural(build.warnings as usize),
            duration(build.finished_ago_ms)
        );
    }
    if let Some(swap) = &status.last_swap {
        println!(
            "last swap   generation {}{} in {:.1} ms{}, {} ago",
            swap.generation,
            if swap.rollback { " (rollback)" } else { "" },
            swap.swap_ms,
            swap.total_ms
                .map(|total| format!(" ({total:.0} ms from the save)"))
                .unwrap_or_default(),
            duration(swap.ago_ms)
        );
    }
    if let Some(snapshot) = &status.snapshot {
        println!(
            "state       {} byte{} kept from generation {}, {} old (what a crash would restart with)",
            snapshot.bytes,
            plural(snapshot.bytes as usize),
            snapshot.generation,
            duration(snapshot.age_ms)
        );
    }
    if let Some(crash) = &status.last_crash {
        println!("last crash  {} ago: {}", duration(crash.ago_ms), crash.crash.message);
    }
    if let Some(shared) = &status.shared_deps {
        use hotswap_protocol::messages::SharedDepsStatus;
        match shared {
            SharedDepsStatus::Building => println!(
                "deps        being built as one shared library, in the background (until then, saves link them in)"
            ),
            SharedDepsStatus::Ready { bytes, build_ms } => println!(
                "deps        one shared library of {:.1} MiB (built in {}): saves link only the app's code",
                *bytes as f64 / (1024.0 * 1024.0),
                duration(*build_ms)
            ),
            SharedDepsStatus::Off { reason } => {
                println!("deps        linked into the handler's library, as cargo does: {reason}")
            }
        }
    }
    println!(
        "ended       {} generation{} after draining; {} crash{}",
        status.ended_generations,
        plural(status.ended_generations as usize),
        status.crashes,
        if status.crashes == 1 { "" } else { "es" }
    );
}

/// " by cargo", " by rustc directly" (nothing when the daemon did not say).
fn built_with(built_with: Option<hotswap_protocol::events::BuiltWith>) -> String {
    built_with.map(|tool| format!(" by {}", tool.describe())).unwrap_or_default()
}

fn outcome_word(outcome: BuildOutcome) -> &'static str {
    match outcome {
        BuildOutcome::Succeeded => "succeeded",
        BuildOutcome::Unchanged => "succeeded (unchanged)",
        BuildOutcome::Failed => "failed",
        BuildOutcome::Cancelled => "was cancelled",
    }
}

fn location(diagnostic: &Diagnostic) -> String {
    match (&diagnostic.file, &diagnostic.range) {
        (Some(file), Some(range)) => {
            format!("{}:{}:{}: ", file.display(), range.start.line + 1, range.start.character + 1)
        }
        (Some(file), None) => format!("{}: ", file.display()),
        _ => String::new(),
    }
}

fn print_event(event: &Event) {
    match event {
        Event::BuildStarted(started) => {
            let why = match started.reason {
                BuildReason::Initial => "start-up".to_owned(),
                BuildReason::Reload => "reload".to_owned(),
                BuildReason::Save => match started.paths.as_slice() {
                    [one] => format!("saved {}", one.display()),
                    paths => format!("saved {} files", paths.len()),
                },
            };
            println!("build {} started ({why})", started.build);
        }
        Event::BuildProgress(progress) => println!("  {}", progress.message),
        Event::BuildFinished(finished) => {
            println!(
                "build {} {} in {:.0} ms{}",
                finished.build,
                outcome_word(finished.outcome),
                finished.duration_ms,
                built_with(finished.built_with)
            );
            for diagnostic in &finished.diagnostics {
                let severity = match diagnostic.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                    Severity::Note => "note",
                    Severity::Help => "help",
                };
                let code =
                    diagnostic.code.as_ref().map(|code| format!("[{code}]")).unwrap_or_default();
                let first_line = diagnostic.message.lines().next().unwrap_or_default();
                println!("  {}{severity}{code}: {first_line}", location(diagnostic));
            }
        }
        Event::SwapFinished(swap) if swap.after_crash.is_some() => println!(
            "generation {} serves again after generation {} crashed ({}, {:.1} ms)",
            swap.generation,
            swap.after_crash.unwrap_or_default(),
            if swap.rollback { "the previous build" } else { "the same build" },
            swap.swap_ms
        ),
        Event::SwapFinished(swap) => println!(
            "{} generation {} in {:.1} ms{}",
            if swap.rollback { "rolled back to" } else { "swapped to" },
            swap.generation,
            swap.swap_ms,
            swap.total_ms
                .map(|total| format!(" ({total:.0} ms from the save)"))
                .unwrap_or_default()
        ),
        Event::SwapFailed(failed) => println!(
            "generation {} refused at the {} stage: {}",
            failed.generation, failed.stage, failed.message
        ),
        Event::GenerationRetired(retired) => println!(
            "generation {} {} after draining {:.0} ms{}{}",
            retired.generation,
            match retired.outcome {
                RetireOutcome::Ended => "ended",
                RetireOutcome::Killed => "was killed",
            },
            retired.drain_ms,
            if retired.requests_cut > 0 {
                format!(" ({} requests cut with 503)", retired.requests_cut)
            } else {
                String::new()
            },
            retired.reason.as_ref().map(|reason| format!(": {reason}")).unwrap_or_default()
        ),
        Event::GenerationCrashed(crash) => {
            println!("{}", crash.message);
            for line in &crash.last_words {
                println!("  | {line}");
            }
        }
        Event::HandlerPanicked(panic) => println!(
            "generation {} panicked{}{}: {}",
            panic.generation,
            panic.location.as_ref().map(|location| format!(" at {location}")).unwrap_or_default(),
            panic
                .request
                .as_ref()
                .map(|request| format!(" answering {request}"))
                .unwrap_or_default(),
            panic.message
        ),
        Event::Log(log) => println!(
            "{}{:?} {}: {}",
            log.generation.map(|generation| format!("[gen {generation}] ")).unwrap_or_default(),
            log.level,
            log.target,
            log.message
        ),
        Event::AssetsChanged(changed) => {
            for file in &changed.files {
                println!("asset saved: {} (no build; pages update)", file.path.display());
            }
        }
    }
}
