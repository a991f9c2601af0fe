//! Building the handler. [`run_cargo`] is the one function in hotswap that spawns cargo to build;
//! [`direct`] is the fast path that runs the rustc cargo last ran for the handler, for saves of
//! the handler's own sources.
//!
//! `cargo build --lib -p <handler> --message-format=json`, in its own target directory (so that
//! rust-analyzer's `cargo check` never holds the lock we need), in its own process group (so a
//! stale build can be killed with every rustc it started). The artifact path, the diagnostics and
//! the result come from cargo's JSON messages; cargo's status lines on stderr become progress.
//! With the fast path on, cargo runs `hotswap` as its `RUSTC_WORKSPACE_WRAPPER`
//! ([`rustc_wrapper`]), which records the handler's rustc command line.

mod cargo_inputs;
pub(crate) mod direct;
pub mod rustc_wrapper;
pub(crate) mod shared_deps;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use cargo_metadata::{Message, TargetKind};
use hotswap_protocol::events::{BuiltWith, Diagnostic};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

use crate::diagnostics;
use direct::{CaptureSetup, CargoFacts, DirectBuild, DirectOutcome, Learned};

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub cargo: PathBuf,
    pub manifest: PathBuf,
    /// The handler's package ID spec (`cargo build -p` takes it).
    pub package: String,
    /// The name of the package's library target (`lib<name>.so`), dashes as underscores.
    pub library_name: String,
    pub profile: String,
    pub features: Vec<String>,
    pub no_default_features: bool,
    pub target_dir: PathBuf,
    /// The cargo workspace root: compiler messages name files relative to it.
    pub cargo_workspace_root: PathBuf,
    /// Run rustc directly for saves of the handler's own sources (`direct_rustc` in hotswap.toml).
    pub direct_rustc: bool,
    /// Link those builds on the dependencies built once as a shared library (`shared_deps`).
    pub shared_deps: bool,
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildResult {
    /// The handler library, and whether cargo found it up to date (nothing rebuilt).
    Succeeded {
        artifact: PathBuf,
        fresh: bool,
    },
    Failed,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct BuildOutput {
    pub result: BuildResult,
    pub diagnostics: Vec<Diagnostic>,
    /// For a failure: the compiler's errors, or cargo's own error, as plain text.
    pub rendered: String,
    pub duration: Duration,
    pub built_with: BuiltWith,
    /// What the fast path learned from this build.
    pub(crate) learned: Learned,
}

/// How to build: with cargo (saying why), or with the rustc cargo last ran.
#[derive(Debug)]
pub(crate) enum BuildPlan {
    Cargo { why: String, capture: Option<CaptureSetup> },
    Rustc { build: DirectBuild, fallback: Option<CaptureSetup> },
}

/// Builds the handler as `plan` says, reporting progress, until done or until `cancel` fires (or
/// its sender is dropped). A direct build that finds it cannot do the job (the dependencies it
/// links are gone, say) builds with cargo instead.
pub(crate) async fn run(
    spec: &BuildSpec,
    plan: BuildPlan,
    mut progress: impl FnMut(ProgressLine),
    mut cancel: oneshot::Receiver<()>,
) -> BuildOutput {
    let started = Instant::now();
    match plan {
        BuildPlan::Cargo { capture, .. } => {
            run_cargo(spec, capture.as_ref(), progress, cancel, started).await
        }
        BuildPlan::Rustc { build, fallback } => {
            match direct::run(build, &mut progress, &mut cancel, started).await {
                DirectOutcome::Done(output) => output,
                DirectOutcome::NeedsCargo(why) => {
                    tracing::info!("building with cargo after all: {why}");
                    progress(ProgressLine {
                        message: format!("building with cargo: {why}"),
                        blocked: false,
                    });
                    run_cargo(spec, fallback.as_ref(), progress, cancel, started).await
                }
            }
        }
    }
}

/// A line of progress from cargo, and whether it says cargo waits for another cargo's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressLine {
    pub message: String,
    pub blocked: bool,
}

/// The status lines of cargo worth showing as progress.
fn progress_line(line: &str) -> Option<ProgressLine> {
    let line = line.trim();
    const SHOWN: [&str; 7] =
        ["Compiling", "Blocking", "Updating", "Downloading", "Downloaded", "Locking", "Adding"];
    let first_word = line.split_whitespace().next()?;
    SHOWN
        .contains(&first_word)
        .then(|| ProgressLine { message: line.to_owned(), blocked: first_word == "Blocking" })
}

/// Builds the handler with cargo, reporting progress, until done or until `cancel` fires (or
/// its sender is dropped).
pub async fn run_build(
    spec: &BuildSpec,
    progress: impl FnMut(ProgressLine),
    cancel: oneshot::Receiver<()>,
) -> BuildOutput {
    run_cargo(spec, None, progress, cancel, Instant::now()).await
}

/// Ends a cancelled build: SIGKILL to its own process group (cargo or rustc, and every process
/// it started), then waits for it.
pub(crate) async fn end_build(child: &mut tokio::process::Child, process_group: Option<u32>) {
    if let Some(group) = process_group {
        // SAFETY: killpg only sends a signal to the build's own process group.
        unsafe { libc::killpg(group as libc::pid_t, libc::SIGKILL) };
    }
    let _ = child.wait().await;
}

/// Set once cargo's cache of what rustc said (`.rustc_info.json` in the build directory) is seen
/// to hold a failed query: cargo then asks rustc afresh at every build of this daemon.
static RUSTC_INFO_CACHE_BROKEN: AtomicBool = AtomicBool::new(false);

/// What cargo says when rustc did not answer its question about the target: rustc failed then, or
/// cargo cached such a failure (a cargo run from a directory deleted under it leaves one, and
/// every later cargo with the same rustc and wrapper reads it back).
const RUSTC_INFO_FAILED: &str = "failed to run `rustc` to learn about target-specific information";

/// Runs cargo; with `capture`, records the handler's rustc for the fast path. A failure that may
/// come from cargo's cache of rustc's answers is tried again once without that cache.
async fn run_cargo(
    spec: &BuildSpec,
    capture: Option<&CaptureSetup>,
    mut progress: impl FnMut(ProgressLine),
    mut cancel: oneshot::Receiver<()>,
    started: Instant,
) -> BuildOutput {
    let without_cache = RUSTC_INFO_CACHE_BROKEN.load(Ordering::Relaxed);
    let output =
        run_cargo_once(spec, capture, &mut progress, &mut cancel, started, without_cache).await;
    if without_cache
        || !matches!(output.result, BuildResult::Failed)
        || !output.rendered.contains(RUSTC_INFO_FAILED)
    {
        return output;
    }
    tracing::warn!(
        "cargo could not learn about rustc's target, perhaps from its cache ({}): asking rustc \
         afresh from now on (CARGO_CACHE_RUSTC_INFO=0)",
        spec.target_dir.join(".rustc_info.json").display()
    );
    RUSTC_INFO_CACHE_BROKEN.store(true, Ordering::Relaxed);
    run_cargo_once(spec, capture, &mut progress, &mut cancel, started, true).await
}

async fn run_cargo_once(
    spec: &BuildSpec,
    capture: Option<&CaptureSetup>,
    progress: &mut impl FnMut(ProgressLine),
    cancel: &mut oneshot::Receiver<()>,
    started: Instant,
    without_rustc_info_cache: bool,
) -> BuildOutput {
    let failed = |rendered: String| BuildOutput {
        result: BuildResult::Failed,
        diagnostics: Vec::new(),
        rendered,
        duration: started.elapsed(),
        built_with: BuiltWith::Cargo,
        learned: Learned::Nothing,
    };
    let mut command = tokio::process::Command::new(&spec.cargo);
    command
        .args(["build", "--lib", "--message-format=json", "--color=never", "--manifest-path"])
        .arg(&spec.manifest)
        .arg("-p")
        .arg(&spec.package)
        .arg("--profile")
        .arg(&spec.profile)
        .arg("--target-dir")
        .arg(&spec.target_dir);
    if !spec.features.is_empty() {
        command.arg("--features").arg(spec.features.join(","));
    }
    if spec.no_default_features {
        command.arg("--no-default-features");
    }
    let before = capture.map(|capture| {
        command.envs(capture.environment());
        capture.begin()
    });
    let cargo_started = SystemTime::now();
    let mut facts = CargoFacts::default();
    // Cargo reads its configuration (`.cargo/config.toml`) from the directory it runs in: the
    // app's, as for `cargo build` there, wherever `hotswap serve` was started.
    if let Some(directory) = spec.manifest.parent() {
        command.current_dir(directory);
    }
    if without_rustc_info_cache {
        command.env("CARGO_CACHE_RUSTC_INFO", "0");
    }
    command
        .env("CARGO_TERM_PROGRESS_WHEN", "never")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return failed(format!(
                "cannot run `{}`: it is not installed or not on PATH (hotswap needs cargo)\n",
                spec.cargo.display()
            ));
        }
        Err(error) => return failed(format!("cannot run `{}`: {error}\n", spec.cargo.display())),
    };
    let process_group = child.id();
    let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
    let (mut stdout_open, mut stderr_open) = (true, true);
    let mut artifact = None;
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let mut cargo_errors = Vec::new();
    let mut success = None;
    while stdout_open || stderr_open {
        tokio::select! {
            _ = &mut *cancel => {
                end_build(&mut child, process_group).await;
                return BuildOutput {
                    result: BuildResult::Cancelled,
                    diagnostics: Vec::new(),
                    rendered: String::new(),
                    duration: started.elapsed(),
                    built_with: BuiltWith::Cargo,
                    learned: Learned::Nothing,
                };
            }
            line = stdout.next_line(), if stdout_open => match line {
                Ok(Some(line)) => match serde_json::from_str::<Message>(&line) {
                    Ok(Message::CompilerArtifact(built)) => {
                        if let Some(capture) = capture {
                            facts.artifact(&built, capture.handler_id());
                        }
                        if built.target.kind.contains(&TargetKind::CDyLib) && built.target.name.replace('-', "_") == spec.library_name {
                            let library = built.filenames.iter().find(|file| file.as_str().ends_with(std::env::consts::DLL_SUFFIX));
                            if let Some(library) = library {
                                artifact = Some((library.clone().into_std_path_buf(), built.fresh));
                            }
                        }
                    }
                    Ok(Message::BuildScriptExecuted(executed)) => facts.build_script(&executed),
                    Ok(Message::CompilerMessage(message)) => {
                        if let Some(diagnostic) = diagnostics::from_cargo(&message.message, &spec.cargo_workspace_root)
                            && !diagnostics.contains(&diagnostic)
                        {
                            diagnostics.push(diagnostic);
                        }
                    }
                    Ok(Message::BuildFinished(finished)) => success = Some(finished.success),
                    _ => {}
                },
                _ => stdout_open = false,
            },
            line = stderr.next_line(), if stderr_open => match line {
                Ok(Some(line)) => {
                    if let Some(line) = progress_line(&line) {
                        progress(line);
                    } else if !line.trim().is_empty() && cargo_errors.len() < 200 {
                        cargo_errors.push(line);
                    }
                }
                _ => stderr_open = false,
            },
        }
    }
    let status = child.wait().await;
    let succeeded =
        success.unwrap_or(false) && status.as_ref().is_ok_and(|status| status.success());
    let learned = match (capture, before) {
        (Some(capture), Some(before)) => {
            let capture = capture.clone();
            let library = artifact.as_ref().map(|(library, _)| library.clone());
            let handler_fresh = artifact.as_ref().is_some_and(|(_, fresh)| *fresh);
            tokio::task::spawn_blocking(move || {
                direct::after_cargo(
                    &capture,
                    &facts,
                    before,
                    cargo_started,
                    (succeeded, handler_fresh),
                    library.as_deref(),
                )
            })
            .await
            .map_or(Learned::Nothing, |learned| Learned::Cargo(std::sync::Arc::new(learned)))
        }
        _ => Learned::Nothing,
    };
    let duration = started.elapsed();
    match (succeeded, artifact) {
        (true, Some((artifact, fresh))) => BuildOutput {
            result: BuildResult::Succeeded { artifact, fresh },
            diagnostics,
            rendered: String::new(),
            duration,
            built_with: BuiltWith::Cargo,
            learned,
        },
        (true, None) => BuildOutput {
            result: BuildResult::Failed,
            diagnostics,
            rendered: format!(
                "cargo built package `{}` but produced no cdylib: is `crate-type = [\"cdylib\"]` set in its [lib]?\n",
                spec.package
            ),
            duration,
            built_with: BuiltWith::Cargo,
            learned,
        },
        (false, _) => {
            let mut rendered = diagnostics::render_errors(&diagnostics);
            if rendered.is_empty() {
                // Not a compiler error (a manifest error, a missing dependency...): cargo's own words.
                let first_error =
                    cargo_errors.iter().position(|line| line.trim_start().starts_with("error"));
                let lines = first_error.map_or(&cargo_errors[..], |index| &cargo_errors[index..]);
                rendered = lines.join("\n");
                rendered.push('\n');
            }
            if rendered.trim().is_empty() {
                // cargo said nothing: it was killed (by a signal, the OOM killer) or crashed.
                rendered = match &status {
                    Ok(status) => format!(
                        "cargo stopped without reporting an error ({status}); save again or run `hotswap reload` to retry\n"
                    ),
                    Err(error) => format!("cargo could not be waited for: {error}\n"),
                };
            }
            BuildOutput {
                result: BuildResult::Failed,
                diagnostics,
                rendered,
                duration,
                built_with: BuiltWith::Cargo,
                learned,
            }
        }
    }
}

/// The cargo to run: `$CARGO` when set (as under `cargo run`), else `cargo` from PATH.
pub fn cargo_program() -> PathBuf {
    std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("cargo"))
}

/// The directory hotswap builds in by default: a `hotswap` folder in cargo's target directory.
pub fn default_target_dir(cargo_target_dir: &Path) -> PathBuf {
    cargo_target_dir.join("hotswap")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_progress_and_lock_waits() {
        assert_eq!(
            progress_line("   Compiling todo v0.1.0 (/w/todo)"),
            Some(ProgressLine {
                message: "Compiling todo v0.1.0 (/w/todo)".into(),
                blocked: false
            })
        );
        assert_eq!(
            progress_line("    Blocking waiting for file lock on build directory"),
            Some(ProgressLine {
                message: "Blocking waiting for file lock on build directory".into(),
                blocked: true
            })
        );
        assert_eq!(progress_line("error: could not compile `todo`"), None);
        assert_eq!(progress_line(""), None);
    }
}
