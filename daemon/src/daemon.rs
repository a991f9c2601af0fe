//! The daemon: one task owns all state (pending saves, the running build, swaps, waiting
//! `reload`s) and reacts to messages; builds and swaps run as tasks it owns and report back.
//!
//! A save becomes a build after `debounce` of quiet; a save during a build cancels the stale
//! build once the new one is due, so the last generation always reflects the last save. Failures
//! (builds, swaps) are outcomes sent to clients; the current generation keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotswap_protocol::events::{
    AssetsChanged, BuildFinished, BuildOutcome, BuildProgress, BuildReason, BuildStarted,
    BuiltWith, Event, Severity, SwapFailed, SwapFinished, SwapStage,
};
use hotswap_protocol::jsonrpc::{ResponseError, error_code};
use hotswap_protocol::messages::{
    CancelBuildResult, ClientRequest, DidSaveResult, IgnoredPath, InitializeResult, LastBuild,
    LastCrash, LastSwap, NoParams, PROTOCOL_VERSION, RefusedSwap, ReloadOutcome, StateResult,
    StatusResult,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::builder::direct::DirectRustc;
use crate::builder::shared_deps::{self, SharedDeps};
use crate::builder::{BuildOutput, BuildPlan, BuildResult, BuildSpec};
use crate::engine::{Engine, RollbackError, SwapFailure, SwapReport};
use crate::packages::PackageSet;
use crate::subscribers::Subscribers;

/// Facts about this daemon that clients are told.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    pub workspace_root: PathBuf,
    pub package: String,
    pub endpoint: String,
    pub listen_address: String,
    pub started: Instant,
}

/// What the daemon needs to run.
#[derive(Debug)]
pub struct DaemonParts {
    pub info: DaemonInfo,
    pub engine: Engine,
    pub packages: PackageSet,
    pub build: BuildSpec,
    pub debounce: Duration,
    /// Which saves are assets: no build, pages are told at once.
    pub browser: crate::browser::BrowserFiles,
    pub subscribers: Arc<Subscribers>,
    /// Set to true to stop the whole daemon (the `shutdown` request).
    pub shutdown: watch::Sender<bool>,
}

type Reply = oneshot::Sender<Result<Value, ResponseError>>;

enum Message {
    Request {
        request: ClientRequest,
        reply: Reply,
    },
    BuildDone {
        build: u64,
        output: BuildOutput,
        /// `cargo metadata` read again, when a manifest was among the saves.
        packages: Option<Result<PackageSet, String>>,
    },
    SwapDone {
        build: Option<u64>,
        result: Result<SwapReport, SwapFailure>,
        build_ms: Option<f64>,
        cause: Instant,
    },
    RollbackDone {
        result: Result<SwapReport, RollbackError>,
        cause: Instant,
        reply: Reply,
    },
    LoadStateDone {
        result: Result<SwapReport, SwapFailure>,
        cause: Instant,
        reply: Reply,
    },
    /// The shared dependency library built (or checked) in the background, or why not.
    SharedDepsDone {
        run: u64,
        result: Result<shared_deps::Built, String>,
    },
}

/// Sends requests to the daemon task.
#[derive(Debug, Clone)]
pub struct DaemonHandle {
    sender: mpsc::Sender<Message>,
}

impl DaemonHandle {
    /// Handles one client request; `reload` answers when its build and swap are done.
    pub async fn request(&self, request: ClientRequest) -> Result<Value, ResponseError> {
        let (reply, answer) = oneshot::channel();
        if self.sender.send(Message::Request { request, reply }).await.is_err() {
            return Err(shutting_down());
        }
        answer.await.unwrap_or_else(|_| Err(shutting_down()))
    }
}

fn shutting_down() -> ResponseError {
    ResponseError::new(error_code::SHUTTING_DOWN, "the hotswap daemon is shutting down")
}

/// A build to start once `due`.
impl PendingBuild {
    /// A build with nothing saved (the start-up, a reload), due at once.
    fn now(reason: BuildReason) -> Self {
        let now = tokio::time::Instant::now();
        PendingBuild { reason, paths: Vec::new(), cause: Instant::now(), first: now, due: now }
    }
}

struct PendingBuild {
    reason: BuildReason,
    paths: Vec<PathBuf>,
    /// When the user acted (the last save, or the reload request), to report the total time.
    cause: Instant,
    /// The first save of the burst.
    first: tokio::time::Instant,
    due: tokio::time::Instant,
}

/// The longest a burst of saves can hold back its build.
const MAX_DEBOUNCE: Duration = Duration::from_millis(1000);

struct RunningBuild {
    id: u64,
    cause: Instant,
    cancel: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// Cancelled because a newer build is due: its waiters move to that build.
    superseded: bool,
}

/// A `reload` waiting for the first completed build numbered `from_build` or later.
struct Waiter {
    from_build: u64,
    reply: Reply,
}

/// Starts the daemon task. It stops when every handle is dropped or `shutdown` is set; `join` it
/// to wait for running builds to be stopped.
pub fn spawn(parts: DaemonParts, initial_build: bool) -> (DaemonHandle, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(256);
    let handle = DaemonHandle { sender: sender.clone() };
    let direct = DirectRustc::new(
        parts.build.direct_rustc,
        Some(crate::builder::direct::kept_record_path(&parts.build)),
    );
    let shared = SharedDeps::new(parts.build.shared_deps && parts.build.direct_rustc);
    let mut daemon = Daemon {
        direct,
        shared,
        fast_path_off: None,
        parts,
        messages: sender.downgrade(),
        pending: None,
        running: None,
        swaps: Vec::new(),
        waiters: Vec::new(),
        builds_started: 0,
        last_build: None,
        last_swap: None,
        refused_swap: None,
        fresh_state_requested: false,
    };
    if initial_build {
        daemon.pending = Some(PendingBuild::now(BuildReason::Initial));
        daemon.parts.engine.set_unavailable_reason(
            "the first build is running; this page answers once it is done",
        );
    }
    let task = tokio::spawn(daemon.run(receiver));
    (handle, task)
}

struct Daemon {
    parts: DaemonParts,
    /// What the fast path (rustc without cargo) knows: the rustc cargo last ran for the handler.
    direct: DirectRustc,
    /// The dependencies linked once, for the fast path to link on.
    shared: SharedDeps,
    /// Why the last build could not take the fast path at all (a rustc wrapper, the setting).
    fast_path_off: Option<String>,
    /// For build and swap tasks to report back (weak: the daemon stops when clients are gone).
    messages: mpsc::WeakSender<Message>,
    pending: Option<PendingBuild>,
    running: Option<RunningBuild>,
    swaps: Vec<JoinHandle<()>>,
    waiters: Vec<Waiter>,
    builds_started: u64,
    last_build: Option<(LastBuild, Instant)>,
    last_swap: Option<(LastSwap, Instant)>,
    /// The last swap refused, until one succeeds: the code on disk is not what serves.
    refused_swap: Option<(RefusedSwap, Instant)>,
    /// A `reload --fresh-state` waits for its build: that swap starts with a fresh state.
    fresh_state_requested: bool,
}

impl Daemon {
    async fn run(mut self, mut receiver: mpsc::Receiver<Message>) {
        let mut shutdown = self.parts.shutdown.subscribe();
        loop {
            let due = self.next_due();
            tokio::select! {
                message = receiver.recv() => match message {
                    Some(message) => self.handle(message),
                    None => break,
                },
                () = sleep_until(due) => self.start_due_build(),
                () = crate::serve::stopped(&mut shutdown) => break,
            }
        }
        if let Some(building) = self.shared.building.take() {
            building.abort();
            let _ = building.await;
        }
        if let Some(running) = self.running.take() {
            if let Some(cancel) = running.cancel {
                let _ = cancel.send(());
            }
            let _ = running.task.await;
        }
        for swap in self.swaps.drain(..) {
            let _ = swap.await;
        }
        for waiter in self.waiters.drain(..) {
            let _ = waiter.reply.send(Err(shutting_down()));
        }
    }

    /// Cargo compiled the handler: (re)builds the shared dependency library for it in the
    /// background. Until it is ready, direct builds link the dependencies in, as cargo does.
    fn build_shared_deps(&mut self, invocation: crate::builder::rustc_wrapper::Invocation) {
        if self.shared.disabled.is_some() {
            return;
        }
        // The dependencies may have changed with this build: none is used until checked.
        let run = self.shared.restart(Some(&invocation));
        let request = shared_deps::Request {
            invocation,
            spec: self.parts.build.clone(),
            workspace_root: self.parts.packages.cargo_workspace_root.clone(),
        };
        let messages = self.messages.clone();
        let first = self.shared.failed.is_none() && self.shared.built_once.is_none();
        if first {
            tracing::info!(
                "building the handler's dependencies as one shared library, in the background (once; until it is ready, saves link them in as cargo does)"
            );
        }
        self.shared.building = Some(tokio::spawn(async move {
            let result = shared_deps::build(request, move |line| {
                if first {
                    tracing::info!("shared dependency library: {line}");
                } else {
                    tracing::debug!("shared dependency library: {line}");
                }
            })
            .await;
            if let Some(messages) = messages.upgrade() {
                let _ = messages.send(Message::SharedDepsDone { run, result }).await;
            }
        }));
    }

    /// A direct build of the handler succeeded: a library the handler had errors on when it
    /// was checked is checked again; with none for its command line (the first cargo build
    /// failed, or one with other dependencies did), one is built.
    fn check_shared_deps_again(&mut self) {
        if self.shared.building.is_some() {
            return;
        }
        let Some(invocation) = self.direct.invocation() else { return };
        if self.shared.wants_build_for(&invocation) {
            self.build_shared_deps(invocation);
            return;
        }
        let Some((library, _, left)) = self.shared.unchecked.take() else { return };
        self.shared.run += 1;
        let run = self.shared.run;
        self.shared.checks_left = Some(left);
        let messages = self.messages.clone();
        self.shared.building = Some(tokio::spawn(async move {
            let result = shared_deps::check(library, &invocation).await;
            if let Some(messages) = messages.upgrade() {
                let _ = messages.send(Message::SharedDepsDone { run, result }).await;
            }
        }));
    }

    fn shared_deps_done(&mut self, run: u64, result: Result<shared_deps::Built, String>) {
        match self.shared.done(run, result) {
            None | Some(shared_deps::Outcome::Ready { first: false, .. }) => {}
            Some(shared_deps::Outcome::Ready { library, first: true }) => {
                let size = std::fs::metadata(&library.dylib).map(|file| file.len()).unwrap_or(0);
                tracing::info!(
                    "shared dependency library ready ({:.1} MiB, {:.1} s): saves of the handler's own sources now link only its code",
                    size as f64 / (1024.0 * 1024.0),
                    library.build_time.as_secs_f64()
                );
            }
            Some(shared_deps::Outcome::Waiting { why }) => tracing::info!(
                "shared dependency library built; checked again after the handler's next good build ({why})"
            ),
            Some(shared_deps::Outcome::Failed { why }) => tracing::warn!(
                "no shared dependency library ({why}); saves link the dependencies in, as cargo does"
            ),
        }
    }

    /// A library built on the shared dependency library did not load: it is not used again
    /// (until `hotswap serve` restarts), and the handler is built again without it.
    fn shared_library_did_not_load(&mut self, message: &str) {
        tracing::warn!(
            "a handler library built on the shared dependency library did not load ({message}); building it again with its dependencies linked in, and not using the shared library until hotswap serve restarts"
        );
        self.shared.restart(None);
        self.shared.disabled = Some(format!(
            "a library built on it did not load ({message}); restart hotswap serve to try again"
        ));
        if self.pending.is_none() {
            self.pending = Some(PendingBuild::now(BuildReason::Reload));
        }
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Request { request, reply } => self.request(request, reply),
            Message::BuildDone { build, mut output, packages } => {
                // After a failed build (which may have changed the dependencies) the library
                // stays for command lines with the `--extern`s it was checked with.
                if let Some((invocation, true)) = output.learned.handler_recorded_by_cargo() {
                    self.build_shared_deps(invocation);
                }
                let succeeded = matches!(output.result, BuildResult::Succeeded { .. });
                self.direct.learn(std::mem::take(&mut output.learned));
                // After a good build: a library to check again, or one to build for a command
                // line that holds without a compile of the handler (a `hotswap serve` whose
                // first cargo build found it up to date starts with the last daemon's record).
                if succeeded {
                    self.check_shared_deps_again();
                }
                if let Some(packages) = packages {
                    self.packages_refreshed(packages);
                }
                self.build_done(build, output);
            }
            Message::SharedDepsDone { run, result } => self.shared_deps_done(run, result),
            Message::SwapDone { build, result, build_ms, cause } => {
                self.swap_done(build, result, build_ms, cause)
            }
            Message::RollbackDone { result, cause, reply } => {
                let outcome = match result {
                    Ok(report) => Ok(self.swapped(report, None, cause, true)),
                    Err(RollbackError::NothingToRollBack) => Err(ResponseError::new(
                        error_code::NO_PREVIOUS_GENERATION,
                        "nothing to roll back to: no earlier artifact has served since the daemon started",
                    )),
                    Err(RollbackError::Failed(failure)) => Ok(self.swap_failed(failure, None)),
                };
                let _ = reply.send(outcome.map(to_value));
            }
            Message::LoadStateDone { result, cause, reply } => {
                let outcome = match result {
                    Ok(report) => self.swapped(report, None, cause, false),
                    Err(mut failure) => {
                        // The code is not what changed: the file is what to fix.
                        if failure.stage == SwapStage::State {
                            failure.message = file_to_fix(&failure.message);
                            if let Some(problem) = failure.state_problem.as_deref_mut() {
                                problem.message = file_to_fix(&problem.message);
                            }
                        }
                        self.swap_failed(failure, None)
                    }
                };
                let _ = reply.send(Ok(to_value(outcome)));
            }
        }
        self.swaps.retain(|swap| !swap.is_finished());
    }

    fn request(&mut self, request: ClientRequest, reply: Reply) {
        let result = match request {
            ClientRequest::Initialize(params) => {
                if params.protocol_version != PROTOCOL_VERSION {
                    Err(ResponseError::new(
                        error_code::UNSUPPORTED_PROTOCOL_VERSION,
                        format!(
                            "this daemon speaks protocol version {PROTOCOL_VERSION}, the client {} speaks {}; \
                             use a client and daemon of the same hotswap release",
                            params.client_name, params.protocol_version
                        ),
                    ))
                } else {
                    tracing::debug!("client {} connected", params.client_name);
                    let info = &self.parts.info;
                    Ok(to_value(InitializeResult {
                        protocol_version: PROTOCOL_VERSION,
                        daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
                        pid: std::process::id(),
                        workspace_root: info.workspace_root.clone(),
                        package: info.package.clone(),
                        listen_address: info.listen_address.clone(),
                        generation: self.parts.engine.current_generation(),
                    }))
                }
            }
            ClientRequest::DidSave(params) => Ok(to_value(self.did_save(params.paths))),
            ClientRequest::Reload(params) => {
                self.waiters.push(Waiter { from_build: self.builds_started + 1, reply });
                if params.fresh_state {
                    self.fresh_state_requested = true;
                }
                self.schedule(BuildReason::Reload, Vec::new(), Duration::ZERO);
                return;
            }
            ClientRequest::State(NoParams {}) => {
                let engine = self.parts.engine.clone();
                // Next to the app's snapshot, in a folder of the app's own.
                let directory = match &engine.config().snapshot_file {
                    Some(snapshot) => snapshot.with_extension(""),
                    None => self.parts.build.target_dir.join("state"),
                };
                self.swaps.push(tokio::spawn(async move {
                    let _ = reply.send(current_state_file(&engine, &directory).await.map(to_value));
                }));
                return;
            }
            ClientRequest::LoadState(params) => {
                let engine = self.parts.engine.clone();
                let messages = self.messages.clone();
                let cause = Instant::now();
                self.swaps.push(tokio::spawn(async move {
                    let result = load_state_file(&engine, &params.path).await;
                    match result {
                        Ok(result) => {
                            if let Some(messages) = messages.upgrade() {
                                let _ = messages
                                    .send(Message::LoadStateDone { result, cause, reply })
                                    .await;
                            }
                        }
                        Err(error) => {
                            let _ = reply.send(Err(error));
                        }
                    }
                }));
                return;
            }
            ClientRequest::Rollback(NoParams {}) => {
                let engine = self.parts.engine.clone();
                let messages = self.messages.clone();
                let cause = Instant::now();
                self.swaps.push(tokio::spawn(async move {
                    let result = engine.rollback().await;
                    if let Some(messages) = messages.upgrade() {
                        let _ = messages.send(Message::RollbackDone { result, cause, reply }).await;
                    }
                }));
                return;
            }
            ClientRequest::Status(NoParams {}) => Ok(to_value(self.status())),
            ClientRequest::Subscribe(NoParams {}) => Err(ResponseError::new(
                error_code::INTERNAL_ERROR,
                "subscribe is handled by the connection, not the daemon",
            )),
            ClientRequest::CancelBuild(NoParams {}) => Ok(to_value(self.cancel_build())),
            ClientRequest::Shutdown(NoParams {}) => {
                tracing::info!("shutdown requested by a client");
                self.parts.shutdown.send_replace(true);
                Ok(to_value(NoParams {}))
            }
        };
        let _ = reply.send(result);
    }

    fn did_save(&mut self, paths: Vec<PathBuf>) -> DidSaveResult {
        let target_dirs =
            [self.parts.build.target_dir.as_path(), self.parts.packages.cargo_target_dir.as_path()];
        let mut accepted = Vec::new();
        let mut ignored = Vec::new();
        let mut assets = Vec::new();
        for path in paths {
            if let Some(asset) = self.parts.browser.asset(&path) {
                ignored.push(IgnoredPath { path, reason: crate::browser::ASSET_SAVED.to_owned() });
                assets.push(asset);
                continue;
            }
            match self.parts.packages.classify(&path, &target_dirs) {
                Ok(()) => accepted.push(path),
                Err(reason) => {
                    tracing::info!("ignored a save of {}: {reason}", path.display());
                    ignored.push(IgnoredPath { path, reason });
                }
            }
        }
        if !assets.is_empty() {
            tracing::info!("saved {}: no build, pages are told", describe_assets(&assets));
            self.parts.subscribers.send(&Event::AssetsChanged(AssetsChanged { files: assets }));
        }
        if !accepted.is_empty() {
            self.schedule(BuildReason::Save, accepted.clone(), self.parts.debounce);
        }
        DidSaveResult { accepted, ignored }
    }

    /// Asks for a build `after` from now, merging with one already pending: each save restarts
    /// the wait (a burst of saves becomes one build), up to [`MAX_DEBOUNCE`] after the first;
    /// a reload is due at once.
    fn schedule(&mut self, reason: BuildReason, mut paths: Vec<PathBuf>, after: Duration) {
        let now = tokio::time::Instant::now();
        match &mut self.pending {
            Some(pending) => {
                pending.paths.append(&mut paths);
                pending.paths.sort();
                pending.paths.dedup();
                pending.cause = Instant::now();
                if reason == BuildReason::Reload {
                    pending.reason = BuildReason::Reload;
                    pending.due = now;
                } else if pending.reason != BuildReason::Reload {
                    pending.due = (now + after).min(pending.first + MAX_DEBOUNCE);
                }
            }
            None => {
                self.pending = Some(PendingBuild {
                    reason,
                    paths,
                    cause: Instant::now(),
                    first: now,
                    due: now + after,
                })
            }
        }
    }

    /// When the pending build should start (or, if a build runs, when to cancel it). A running
    /// build is cancelled only for saves made since it started: a `reload` waits for it and
    /// builds after it, since nothing says the files changed meanwhile.
    fn next_due(&self) -> Option<tokio::time::Instant> {
        let pending = self.pending.as_ref()?;
        match &self.running {
            None => Some(pending.due),
            Some(running) if running.cancel.is_some() && !pending.paths.is_empty() => {
                Some(pending.due)
            }
            Some(_) => None,
        }
    }

    /// The pending build is due: cancel a stale running build first (its exit brings us back
    /// here, see [`Daemon::next_due`]), else start.
    fn start_due_build(&mut self) {
        if let Some(running) = &mut self.running {
            if let Some(cancel) = running.cancel.take() {
                tracing::info!("build {} is stale: a newer save is due; cancelling it", running.id);
                running.superseded = true;
                let _ = cancel.send(());
            }
            return;
        }
        let Some(pending) = self.pending.take() else { return };
        self.builds_started += 1;
        let id = self.builds_started;
        let paths = pending.paths;
        // A saved manifest may add or remove local packages: read them again before building, so
        // that saves after this build are judged against the new set.
        let refresh = paths.iter().any(|path| self.parts.packages.is_manifest(path)).then(|| {
            (
                self.parts.build.cargo.clone(),
                self.parts.info.workspace_root.clone(),
                self.parts.packages.handler.clone(),
            )
        });
        let plan = self.direct.plan(
            pending.reason,
            &paths,
            &self.parts.packages,
            &self.parts.build,
            self.shared.ready.clone(),
        );
        self.fast_path_off = match &plan {
            BuildPlan::Cargo { why, capture: None } => {
                Some(why.trim_start_matches("the fast path is off: ").to_owned())
            }
            _ => None,
        };
        tracing::info!(
            "build {id} of {} started ({}; {})",
            self.parts.info.package,
            match pending.reason {
                BuildReason::Initial =>
                    "start-up; the first build compiles every dependency and can take a minute"
                        .to_owned(),
                BuildReason::Reload => "reload".to_owned(),
                BuildReason::Save => format!("saved {}", describe_paths(&paths)),
            },
            match &plan {
                BuildPlan::Rustc { .. } if self.shared.ready.is_some() =>
                    "rustc directly, on the shared dependency library".to_owned(),
                BuildPlan::Rustc { .. } => "rustc directly".to_owned(),
                BuildPlan::Cargo { why, .. } => format!("cargo: {why}"),
            }
        );
        self.parts.subscribers.send(&Event::BuildStarted(BuildStarted {
            build: id,
            reason: pending.reason,
            paths,
        }));
        let (cancel, cancelled) = oneshot::channel();
        let initial = pending.reason == BuildReason::Initial;
        let spec = self.parts.build.clone();
        let subscribers = self.parts.subscribers.clone();
        let messages = self.messages.clone();
        let task = tokio::spawn(async move {
            let progress = |line: crate::builder::ProgressLine| {
                if line.blocked {
                    tracing::warn!("build {id}: {} (another cargo holds the lock)", line.message);
                } else if initial {
                    // The first build compiles every dependency: show that it moves.
                    tracing::info!("build {id}: {}", line.message);
                } else {
                    tracing::debug!("build {id}: {}", line.message);
                }
                subscribers.send(&Event::BuildProgress(BuildProgress {
                    build: id,
                    message: line.message,
                    blocked: line.blocked,
                }));
            };
            let packages = match refresh {
                Some((cargo, root, package)) => Some(
                    tokio::task::spawn_blocking(move || {
                        PackageSet::discover(&cargo, &root, Some(&package))
                    })
                    .await
                    .unwrap_or_else(|error| Err(format!("reading cargo metadata failed: {error}"))),
                ),
                None => None,
            };
            let output = crate::builder::run(&spec, plan, progress, cancelled).await;
            if let Some(messages) = messages.upgrade() {
                let _ = messages.send(Message::BuildDone { build: id, output, packages }).await;
            }
        });
        self.running = Some(RunningBuild {
            id,
            cause: pending.cause,
            cancel: Some(cancel),
            task,
            superseded: false,
        });
    }

    fn packages_refreshed(&mut self, packages: Result<PackageSet, String>) {
        match packages {
            Ok(packages) => {
                if packages.package_roots != self.parts.packages.package_roots {
                    let roots: Vec<String> = packages
                        .package_roots
                        .iter()
                        .map(|root| root.display().to_string())
                        .collect();
                    tracing::info!("the handler's packages are now: {}", roots.join(", "));
                }
                self.parts.build.library_name = packages.library_name.clone();
                self.parts.build.package = packages.handler_spec.clone();
                self.parts.packages = packages;
            }
            Err(error) => tracing::warn!("could not read the handler's packages again: {error}"),
        }
    }

    fn build_done(&mut self, build: u64, output: BuildOutput) {
        let Some(running) = self.running.take_if(|running| running.id == build) else { return };
        let build_ms = millis(output.duration);
        let errors =
            output.diagnostics.iter().filter(|d| d.severity == Severity::Error).count() as u32;
        let warnings =
            output.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count() as u32;
        let fresh_state = matches!(output.result, BuildResult::Succeeded { .. })
            && std::mem::take(&mut self.fresh_state_requested);
        // A fresh state on purpose swaps even when the build changed nothing.
        let unchanged = !fresh_state
            && match &output.result {
                BuildResult::Succeeded { artifact, .. } => {
                    let fingerprint = crate::engine::artifact::Fingerprint::of(artifact).ok();
                    fingerprint.is_some() && fingerprint == self.parts.engine.current_fingerprint()
                }
                _ => false,
            };
        let outcome = match &output.result {
            BuildResult::Succeeded { .. } if unchanged => BuildOutcome::Unchanged,
            BuildResult::Succeeded { .. } => BuildOutcome::Succeeded,
            BuildResult::Failed => BuildOutcome::Failed,
            BuildResult::Cancelled => BuildOutcome::Cancelled,
        };
        self.parts.subscribers.send(&Event::BuildFinished(BuildFinished {
            build,
            outcome,
            duration_ms: build_ms,
            diagnostics: output.diagnostics.clone(),
            built_with: Some(output.built_with),
        }));
        self.last_build = Some((
            LastBuild {
                build,
                outcome,
                duration_ms: build_ms,
                errors,
                warnings,
                finished_ago_ms: 0,
                diagnostics: output.diagnostics.clone(),
                built_with: Some(output.built_with),
            },
            Instant::now(),
        ));
        match output.result {
            BuildResult::Cancelled => {
                tracing::info!("build {build} cancelled after {build_ms:.0} ms");
                if !running.superseded {
                    self.answer_waiters(
                        build,
                        ReloadOutcome::Cancelled { reason: "cancelBuild".to_owned() },
                    );
                }
            }
            BuildResult::Failed => {
                tracing::error!(
                    "build {build} failed after {build_ms:.0} ms ({}); {}\n{}",
                    output.built_with.describe(),
                    serving_now(&self.parts.engine),
                    output.rendered.trim_end()
                );
                if self.parts.engine.current_generation().is_none() {
                    self.parts.engine.set_unavailable_reason(
                        "the handler does not build yet; fix the error shown by `hotswap status`, your editor or \
                         the daemon's log, and save",
                    );
                }
                self.answer_waiters(
                    build,
                    ReloadOutcome::BuildFailed {
                        build_ms,
                        diagnostics: output.diagnostics,
                        rendered: output.rendered,
                    },
                );
            }
            BuildResult::Succeeded { .. } if unchanged => {
                let generation = self.parts.engine.current_generation();
                tracing::info!(
                    "build {build} finished in {build_ms:.0} ms ({}): unchanged, no swap",
                    output.built_with.describe()
                );
                self.answer_waiters(build, ReloadOutcome::Unchanged { generation, build_ms });
            }
            BuildResult::Succeeded { artifact, .. } => {
                tracing::info!(
                    "build {build} finished in {build_ms:.0} ms ({})",
                    output.built_with.describe()
                );
                self.parts.browser.built(&artifact);
                let engine = self.parts.engine.clone();
                let messages = self.messages.clone();
                let cause = running.cause;
                self.swaps.push(tokio::spawn(async move {
                    let options = crate::engine::SwapOptions { fresh_state };
                    let result = engine.swap_with(&artifact, options).await;
                    if let Some(messages) = messages.upgrade() {
                        let _ = messages
                            .send(Message::SwapDone {
                                build: Some(build),
                                result,
                                build_ms: Some(build_ms),
                                cause,
                            })
                            .await;
                    }
                }));
            }
        }
    }

    fn swap_done(
        &mut self,
        build: Option<u64>,
        result: Result<SwapReport, SwapFailure>,
        build_ms: Option<f64>,
        cause: Instant,
    ) {
        let outcome = match result {
            Ok(report) => self.swapped(report, build_ms, cause, false),
            Err(failure) => self.swap_failed(failure, build),
        };
        if let Some(build) = build {
            self.answer_waiters(build, outcome);
        }
    }

    fn swapped(
        &mut self,
        report: SwapReport,
        build_ms: Option<f64>,
        cause: Instant,
        rollback: bool,
    ) -> ReloadOutcome {
        let total_ms = millis(cause.elapsed());
        for warning in &report.warnings {
            tracing::warn!("generation {}: {warning}", report.generation);
        }
        tracing::info!(
            "{} generation {} in {total_ms:.0} ms ({}swap {:.1} ms)",
            if rollback { "rolled back to" } else { "swapped to" },
            report.generation,
            build_ms.map(|ms| format!("build {ms:.0} ms, ")).unwrap_or_default(),
            report.swap_ms,
        );
        self.parts.subscribers.send(&Event::SwapFinished(SwapFinished {
            generation: report.generation,
            previous_generation: report.previous_generation,
            rollback,
            after_crash: None,
            swap_ms: report.swap_ms,
            total_ms: Some(total_ms),
            build_ms,
            stages: report.stages,
            warnings: report.warnings.clone(),
        }));
        self.refused_swap = None;
        self.last_swap = Some((
            LastSwap {
                generation: report.generation,
                swap_ms: report.swap_ms,
                total_ms: Some(total_ms),
                rollback,
                ago_ms: 0,
            },
            Instant::now(),
        ));
        ReloadOutcome::Swapped {
            generation: report.generation,
            previous_generation: report.previous_generation,
            build_ms,
            swap_ms: report.swap_ms,
            total_ms,
            stages: report.stages,
            warnings: report.warnings,
        }
    }

    fn swap_failed(&mut self, failure: SwapFailure, build: Option<u64>) -> ReloadOutcome {
        let on_shared_library = self.last_build.as_ref().is_some_and(|(last, _)| {
            Some(last.build) == build && last.built_with == Some(BuiltWith::RustcSharedDeps)
        });
        if on_shared_library && failure.stage == SwapStage::Load {
            self.shared_library_did_not_load(&failure.message);
        }
        tracing::error!(
            "generation {} refused at the {} stage: {}; {}",
            failure.generation,
            failure.stage,
            failure.message,
            serving_now(&self.parts.engine),
        );
        // A state that does not read points at its struct in the code.
        let diagnostics: Vec<_> = failure
            .state_problem
            .as_ref()
            .and_then(|problem| {
                crate::state_source::locate(problem, &self.parts.packages.package_roots)
            })
            .into_iter()
            .collect();
        self.parts.subscribers.send(&Event::SwapFailed(SwapFailed {
            generation: failure.generation,
            stage: failure.stage,
            message: failure.message.clone(),
            state: failure.state_problem.as_deref().cloned(),
            diagnostics: diagnostics.clone(),
        }));
        if self.parts.engine.current_generation().is_none() {
            self.parts.engine.set_unavailable_reason(format!(
                "the handler was built but refused at the {} stage: {}",
                failure.stage, failure.message
            ));
        }
        self.refused_swap = Some((
            RefusedSwap {
                generation: failure.generation,
                build,
                stage: failure.stage,
                message: failure.message.clone(),
                serving: self.parts.engine.current_generation(),
                ago_ms: 0,
            },
            Instant::now(),
        ));
        ReloadOutcome::SwapFailed {
            generation: failure.generation,
            stage: failure.stage,
            message: failure.message,
            diagnostics,
        }
    }

    /// Answers every `reload` that this build (or an earlier one) satisfies.
    fn answer_waiters(&mut self, build: u64, outcome: ReloadOutcome) {
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|waiter| waiter.from_build <= build);
        self.waiters = waiting;
        for waiter in ready {
            let _ = waiter.reply.send(Ok(to_value(outcome.clone())));
        }
    }

    fn cancel_build(&mut self) -> CancelBuildResult {
        self.pending = None;
        let cancelled = match &mut self.running {
            Some(running) => {
                running.superseded = false;
                running.cancel.take().map(|cancel| cancel.send(())).is_some()
            }
            None => false,
        };
        if !cancelled {
            for waiter in std::mem::take(&mut self.waiters) {
                let _ = waiter.reply.send(Ok(to_value(ReloadOutcome::Cancelled {
                    reason: "cancelBuild".to_owned(),
                })));
            }
        }
        CancelBuildResult { cancelled }
    }

    fn status(&self) -> StatusResult {
        let info = &self.parts.info;
        let engine = self.parts.engine.status();
        StatusResult {
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            workspace_root: info.workspace_root.clone(),
            package: info.package.clone(),
            endpoint: info.endpoint.clone(),
            listen_address: info.listen_address.clone(),
            uptime_ms: info.started.elapsed().as_millis() as u64,
            current_generation: engine.current_generation,
            generations: engine.generations,
            building: self.running.is_some(),
            last_build: self.last_build.as_ref().map(|(build, at)| LastBuild {
                finished_ago_ms: at.elapsed().as_millis() as u64,
                ..build.clone()
            }),
            last_swap: self.last_swap.as_ref().map(|(swap, at)| LastSwap {
                ago_ms: at.elapsed().as_millis() as u64,
                ..swap.clone()
            }),
            refused_swap: self.refused_swap.as_ref().map(|(refused, at)| RefusedSwap {
                ago_ms: at.elapsed().as_millis() as u64,
                serving: engine.current_generation,
                ..refused.clone()
            }),
            last_crash: engine
                .last_crash
                .map(|(crash, ago)| LastCrash { crash, ago_ms: ago.as_millis() as u64 }),
            snapshot: engine.snapshot,
            ended_generations: engine.ended_generations,
            crashes: engine.crashes,
            shared_deps: Some(self.shared.status(self.fast_path_off.as_deref())),
        }
    }
}

/// Writes the current generation's state as JSON into `directory` and says where.
async fn current_state_file(
    engine: &Engine,
    directory: &std::path::Path,
) -> Result<StateResult, ResponseError> {
    let failed = |message: String| ResponseError::new(error_code::INTERNAL_ERROR, message);
    let generation = engine.current_generation().ok_or_else(|| {
        ResponseError::new(error_code::INVALID_REQUEST, "nothing serves: there is no state to read")
    })?;
    let Some(bytes) = engine.current_state().await.map_err(failed)? else {
        return Ok(StateResult { generation, path: None, bytes: 0 });
    };
    let size = bytes.len() as u64;
    let directory = directory.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let state = hotswap_handler::state_format::envelope_to_json(&bytes)
            .map_err(|error| format!("the state cannot be read as JSON: {error}"))?;
        let document = serde_json::json!({
            "version": state.version,
            "type": state.type_name,
            "state": state.state,
        });
        std::fs::create_dir_all(&directory)
            .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
        let path = directory.join(format!("generation-{generation}.json"));
        let partial = path.with_extension("json.partial");
        let text = serde_json::to_vec_pretty(&document).map_err(|error| error.to_string())?;
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        Ok::<_, String>(StateResult { generation, path: Some(path), bytes: size })
    })
    .await
    .map_err(|error| failed(error.to_string()))?
    .map_err(failed)
}

/// Reads a state written by `hotswap state` (or by a person) and swaps the current build in with
/// it.
async fn load_state_file(
    engine: &Engine,
    path: &std::path::Path,
) -> Result<Result<SwapReport, SwapFailure>, ResponseError> {
    let invalid = |message: String| ResponseError::new(error_code::INVALID_PARAMS, message);
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|error| invalid(format!("cannot read {}: {error}", path.display())))?;
    let document: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| invalid(format!("{} is not JSON: {error}", path.display())))?;
    // The version and type the state is for: from the file, else the current build's.
    let (version, type_name, state) = match &document {
        serde_json::Value::Object(object)
            if object.contains_key("state") && object.contains_key("version") =>
        {
            let version = object["version"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "{}: \"version\" must be a state version number",
                        path.display()
                    ))
                })?;
            let type_name = object.get("type").and_then(|name| name.as_str()).unwrap_or("State");
            (version, type_name.to_owned(), object["state"].clone())
        }
        _ => {
            let current = engine.current_state().await.map_err(invalid)?;
            let header = current
                .as_deref()
                .and_then(|bytes| hotswap_handler::abi::state_envelope::parse(bytes).ok())
                .map(|envelope| (envelope.version, envelope.type_name.to_owned()))
                .unwrap_or((1, "State".to_owned()));
            (header.0, header.1, document)
        }
    };
    let envelope =
        hotswap_handler::state_format::json_to_envelope(&state.to_string(), version, &type_name);
    let note = format!("the state is the one loaded from {}", path.display());
    Ok(engine.swap_state(envelope, note).await)
}

async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn describe_paths(paths: &[PathBuf]) -> String {
    match paths {
        [] => "nothing".to_owned(),
        [one] => one.display().to_string(),
        [first, rest @ ..] => format!("{} and {} more", first.display(), rest.len()),
    }
}

fn describe_assets(assets: &[hotswap_protocol::events::ChangedAsset]) -> String {
    let paths: Vec<PathBuf> = assets.iter().map(|asset| asset.path.clone()).collect();
    describe_paths(&paths)
}

fn to_value(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("protocol types serialize")
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// What serves while a build or swap failed, in words: `generation 3 keeps serving`, or
/// `nothing is served yet` before the first generation.
fn serving_now(engine: &crate::engine::Engine) -> String {
    match engine.current_generation() {
        Some(generation) => format!("generation {generation} keeps serving"),
        None => "nothing is served yet (HTTP requests get 503 until a build serves)".to_owned(),
    }
}

/// A state problem's message for a file given to `hotswap state --load`: the fixes for code
/// changes replaced by the one that applies.
fn file_to_fix(message: &str) -> String {
    let what = message.split_once(". Fix it").map_or(message, |(what, _)| what);
    let what = what.replace("the old state does not read", "the state in the file does not read");
    format!("{what}. Fix the file and load it again; the current state stays")
}
