//! The swap engine: runs each build of the handler library as a generation in a host process of
//! its own, hands each accepted HTTP connection to the current generation, retires old
//! generations once drained (ending their process), and brings a crashed generation back.
//!
//! It is usable on its own, to embed hot-swapping in another server. Generations run in host
//! processes started from a program that calls `hotswap_host::run_if_requested()` first thing in
//! `main` (the `hotswap` binary does; an embedder's own binary can too):
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use hotswap_daemon::engine::{Engine, EngineConfig, events::EventSink};
//! let engine = Engine::new(EngineConfig::new("/tmp/my-app-generations".into())?, EventSink::discard())?;
//! engine.swap(std::path::Path::new("target/debug/libmy_app.so")).await.map_err(|f| anyhow::anyhow!(f.message))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! engine.serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! A swap goes through stages (each timed, each able to refuse the new generation while the
//! current one keeps serving): copy → load → verify → init → state → smoke → publish. Only state,
//! smoke and publish hold the accept loop; connections that arrive meanwhile wait in the listen
//! backlog, they are not refused. A host process started ahead of time (a warm spare) takes the
//! next build, so a swap does not wait for a process to start.

pub mod artifact;
pub mod crash;
pub mod events;
pub mod generation;
pub mod host_process;
mod smoke;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hotswap_protocol::control::{LoadCommand, StatePolicy as WireStatePolicy};
use hotswap_protocol::events::{
    CrashRecovery, Event, GenerationCrashed, GenerationRetired, GenerationState, LogLevel,
    RetireOutcome, StateProblem, SwapFinished, SwapStage, SwapStages,
};
use hotswap_protocol::messages::{GenerationStatus, SnapshotStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use artifact::{Fingerprint, GenerationFiles};
use events::EventSink;
use generation::Generation;
use host_process::{HostLinks, HostProcess, HostProgram, ReturnedConnection, StateSnapshot};

/// A purged connection's grace to write its 503s (mirrors the SDK's), plus a margin.
const PURGE_GRACE: Duration = Duration::from_millis(1500);
const SMOKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a retiring generation may take to stop its app before its process is ended.
const RETIRE_GRACE: Duration = Duration::from_secs(2);
/// The same, for a generation with requests stuck past the purge.
const STUCK_RETIRE_GRACE: Duration = Duration::from_millis(250);
/// How long a swap waits for the old generation to switch to draining.
const BEGIN_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a connection waits for a crashed generation to be replaced before it gets a 503.
const RECOVERY_WAIT: Duration = Duration::from_secs(15);

/// What happens when the old generation's state cannot be moved into the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatePolicy {
    /// The new generation starts with `State::default()`, and the swap reports a warning.
    Fresh,
    /// The swap is refused; the old generation keeps serving with its state.
    Reject,
}

/// When repeated crashes of one build stop its restarts.
#[derive(Debug, Clone, Copy)]
pub struct CrashLoop {
    pub crashes: usize,
    pub within: Duration,
}

/// Settings of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where each generation's copy of the library is made (best on the artifact's file system,
    /// so a hard link is possible).
    pub generations_dir: PathBuf,
    /// The program generations run in.
    pub host: HostProgram,
    /// How long an old generation may take to finish its requests before they are answered 503.
    pub drain_timeout: Duration,
    /// How long long-lived streams (WebSockets, streamed responses) stay on an old generation
    /// before they are ended cleanly.
    pub stream_drain_timeout: Duration,
    /// A path that must answer 2xx before a new generation is published.
    pub smoke_path: Option<String>,
    pub state_policy: StatePolicy,
    pub max_body_bytes: u64,
    pub worker_threads: u32,
    pub init_timeout: Duration,
    /// How long exporting the state may take; past it the swap is refused and the old
    /// generation keeps serving with its state.
    pub export_timeout: Duration,
    /// How long a swap waits for the replaced generation's writing requests to finish before
    /// exporting its state (new connections wait meanwhile).
    pub hold_timeout: Duration,
    /// The HTTP address requests held across a swap are forwarded to (default: the address
    /// [`Engine::serve`] listens on).
    pub forward_address: Option<std::net::SocketAddr>,
    /// The most verbose level of handler `tracing` records forwarded.
    pub max_log_level: LogLevel,
    /// How many earlier artifacts are kept for rollback.
    pub rollback_depth: usize,
    /// How often the current generation's state is snapshotted while it serves requests (the
    /// most a crash can lose); `None`: only at swaps.
    pub snapshot_interval: Option<Duration>,
    /// Where the last snapshot is kept on disk, for the next `hotswap serve` (`None`: memory
    /// only).
    pub snapshot_file: Option<PathBuf>,
    /// Open HTTP connections beyond which new ones are refused with a 503.
    pub max_connections: u64,
    /// A new connection that sends nothing for this long is closed.
    pub first_byte_timeout: Option<Duration>,
    pub crash_loop: CrashLoop,
}

impl EngineConfig {
    /// Defaults, with generations run by this very binary (see [`HostProgram::current_exe`]).
    pub fn new(generations_dir: PathBuf) -> io::Result<Self> {
        Ok(Self::with_host(generations_dir, HostProgram::current_exe()?))
    }

    pub fn with_host(generations_dir: PathBuf, host: HostProgram) -> Self {
        Self {
            generations_dir,
            host,
            drain_timeout: Duration::from_secs(5),
            stream_drain_timeout: Duration::from_secs(10),
            smoke_path: None,
            state_policy: StatePolicy::Reject,
            max_body_bytes: 0,
            worker_threads: 2,
            init_timeout: Duration::from_secs(10),
            export_timeout: Duration::from_secs(60),
            hold_timeout: Duration::from_secs(2),
            forward_address: None,
            max_log_level: LogLevel::Info,
            rollback_depth: 5,
            snapshot_interval: Some(Duration::from_secs(1)),
            snapshot_file: None,
            max_connections: 10_000,
            first_byte_timeout: Some(Duration::from_secs(10)),
            crash_loop: CrashLoop { crashes: 3, within: Duration::from_secs(10) },
        }
    }
}

/// A successful swap.
#[derive(Debug, Clone)]
pub struct SwapReport {
    pub generation: u64,
    pub previous_generation: Option<u64>,
    pub stages: SwapStages,
    /// From the artifact to the new generation serving.
    pub swap_ms: f64,
    pub warnings: Vec<String>,
}

/// A refused swap: the current generation keeps serving.
#[derive(Debug, Clone, thiserror::Error)]
#[error("swap to generation {generation} failed at {stage}: {message}")]
pub struct SwapFailure {
    /// The number the new generation would have had.
    pub generation: u64,
    pub stage: SwapStage,
    pub message: String,
    /// For a state that does not read as the new build's type: where, as the SDK found it.
    pub state_problem: Option<Box<StateProblem>>,
}

/// Choices for one swap.
#[derive(Debug, Clone, Default)]
pub struct SwapOptions {
    /// Start the new generation with its `State::default()`: the user dropped the state on
    /// purpose (`hotswap reload --fresh-state`). The old state is still kept for a rollback.
    pub fresh_state: bool,
}

/// Where a new generation's state comes from.
#[derive(Debug, Clone)]
enum StateChoice {
    /// The current generation's state, exported with its writing requests held.
    FromCurrent,
    /// The current generation's state is exported (and kept for a rollback), but the new one
    /// starts without it.
    FreshOnPurpose,
    /// The snapshot the engine keeps (after a crash, or when nothing serves).
    KeptSnapshot,
    /// This state, with what to say about it.
    Given { state: Option<Arc<StateSnapshot>>, note: String },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RollbackError {
    #[error("nothing to roll back to: no earlier artifact has served")]
    NothingToRollBack,
    #[error(transparent)]
    Failed(#[from] SwapFailure),
}

/// A snapshot for `status`.
#[derive(Debug, Clone, Default)]
pub struct EngineStatus {
    pub current_generation: Option<u64>,
    pub generations: Vec<GenerationStatus>,
    pub ended_generations: u64,
    pub crashes: u64,
    pub last_crash: Option<(GenerationCrashed, Duration)>,
    pub snapshot: Option<SnapshotStatus>,
}

/// An artifact that served before the current one, kept for rollback, with the state it last
/// exported.
#[derive(Debug)]
struct HistoryEntry {
    generation: u64,
    build: u64,
    file: PathBuf,
    state: Option<Arc<StateSnapshot>>,
    exported_at: Instant,
}

/// The last state the daemon holds: exported at a swap, or by the periodic snapshot.
#[derive(Debug, Clone)]
struct Snapshot {
    state: Option<Arc<StateSnapshot>>,
    generation: u64,
    taken: Instant,
    /// Set for a snapshot read from disk: the `hotswap serve` before this one left it.
    from_disk: bool,
}

/// What is written next to a snapshot on disk.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotFacts {
    generation: u64,
    /// When it was taken, in milliseconds since 1970.
    taken_unix_ms: u64,
    bytes: u64,
}

/// Whether connections can be served, as the accept loop sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Availability {
    /// A generation is current (or a swap is about to publish one).
    Serving,
    /// A crashed generation is being replaced: connections wait.
    Recovering,
    /// Nothing serves: connections get a 503 with the reason.
    Unavailable,
}

/// What a load is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadKind {
    Build,
    Rollback,
    /// The current build again, with another state.
    Reload,
    /// The same build (or the one before it) after generation `crashed` crashed.
    Recovery {
        crashed: u64,
    },
}

/// The swap engine. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: EngineConfig,
    files: GenerationFiles,
    events: EventSink,
    /// The generation a swap replaces. Swaps (and crash recoveries) hold the write lock from the
    /// state hand-off to publishing.
    current: tokio::sync::RwLock<Option<Arc<Generation>>>,
    /// The same generation as `current`, readable without waiting for a swap in progress: the
    /// one new connections go to (the old one keeps them while a swap moves the state).
    published: Mutex<Option<Arc<Generation>>>,
    draining: Mutex<Vec<Arc<Generation>>>,
    history: Mutex<Vec<HistoryEntry>>,
    /// One swap (or crash recovery) at a time.
    swap_lock: tokio::sync::Mutex<()>,
    /// Routing a connection holds it shared; publishing a new generation holds it exclusively,
    /// so that no connection is passed to a generation that has begun to drain.
    routing: tokio::sync::RwLock<()>,
    next_generation: AtomicU64,
    next_build: AtomicU64,
    /// Retirements, crash watchers, recoveries, disposals: every task the engine starts.
    tasks: Mutex<JoinSet<()>>,
    ended: AtomicU64,
    crashes: AtomicU64,
    shutting_down: AtomicBool,
    /// What HTTP clients are told while no generation serves.
    unavailable_reason: Mutex<String>,
    availability: watch::Sender<Availability>,
    /// Connections draining generations gave back, for `serve` to pass on.
    returned_sender: mpsc::UnboundedSender<ReturnedConnection>,
    returned: Mutex<Option<mpsc::UnboundedReceiver<ReturnedConnection>>>,
    /// A host process started ahead of the next swap.
    spare: Mutex<Option<tokio::task::JoinHandle<io::Result<HostProcess>>>>,
    snapshot: Mutex<Option<Snapshot>>,
    last_crash: Mutex<Option<(GenerationCrashed, Instant)>>,
    /// When each build's generations crashed, for the crash-loop rule.
    crash_times: Mutex<HashMap<u64, Vec<Instant>>>,
    refused_connections: AtomicU64,
    last_refusal_log: Mutex<Option<Instant>>,
    /// Where held requests are forwarded: the configured address, or the one `serve` listens on.
    forward_address: Mutex<Option<std::net::SocketAddr>>,
    /// A snapshot is being written to disk / a newer one waits to be.
    snapshot_writing: AtomicBool,
    snapshot_dirty: AtomicBool,
}

impl Engine {
    /// An engine with no generation loaded yet.
    pub fn new(config: EngineConfig, events: EventSink) -> io::Result<Self> {
        let files = GenerationFiles::new(config.generations_dir.clone())?;
        let (returned_sender, returned) = mpsc::unbounded_channel();
        let (availability, _) = watch::channel(Availability::Unavailable);
        let forward_address = config.forward_address;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                files,
                events,
                current: tokio::sync::RwLock::new(None),
                published: Mutex::new(None),
                draining: Mutex::default(),
                history: Mutex::default(),
                swap_lock: tokio::sync::Mutex::new(()),
                routing: tokio::sync::RwLock::new(()),
                next_generation: AtomicU64::new(1),
                next_build: AtomicU64::new(1),
                tasks: Mutex::new(JoinSet::new()),
                ended: AtomicU64::new(0),
                crashes: AtomicU64::new(0),
                shutting_down: AtomicBool::new(false),
                unavailable_reason: Mutex::new("no handler is loaded yet".to_owned()),
                availability,
                returned_sender,
                returned: Mutex::new(Some(returned)),
                spare: Mutex::new(None),
                snapshot: Mutex::new(None),
                last_crash: Mutex::new(None),
                crash_times: Mutex::default(),
                refused_connections: AtomicU64::new(0),
                last_refusal_log: Mutex::new(None),
                forward_address: Mutex::new(forward_address),
                snapshot_writing: AtomicBool::new(false),
                snapshot_dirty: AtomicBool::new(false),
            }),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    fn forward_address(&self) -> Option<std::net::SocketAddr> {
        *self.inner.forward_address.lock().expect("forward address")
    }

    /// What HTTP clients are told (with a 503) while no generation serves.
    pub fn set_unavailable_reason(&self, reason: impl Into<String>) {
        *self.inner.unavailable_reason.lock().expect("reason") = reason.into();
    }

    fn published(&self) -> Option<Arc<Generation>> {
        self.inner.published.lock().expect("published").clone()
    }

    /// The number of the generation new connections go to.
    pub fn current_generation(&self) -> Option<u64> {
        self.published().map(|generation| generation.number)
    }

    /// The fingerprint of the artifact the current generation was loaded from: a build that
    /// leaves the artifact with this fingerprint changed nothing.
    pub fn current_fingerprint(&self) -> Option<Fingerprint> {
        self.published().and_then(|generation| generation.artifact_fingerprint)
    }

    /// The pids of every host process serving now (current and draining).
    pub fn host_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.published().iter().map(|g| g.host.pid).collect();
        pids.extend(self.inner.draining.lock().expect("draining").iter().map(|g| g.host.pid));
        pids
    }

    fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.inner.tasks.lock().expect("tasks");
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Starts a host process for the next swap, in the background.
    fn prepare_spare(&self) {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let program = self.inner.config.host.clone();
        let handle = tokio::spawn(async move { HostProcess::spawn(&program).await });
        if let Some(previous) = self.inner.spare.lock().expect("spare").replace(handle) {
            previous.abort();
        }
    }

    /// The spare host, or a new one when there is none (or it died).
    async fn take_host(&self) -> io::Result<HostProcess> {
        let spare = self.inner.spare.lock().expect("spare").take();
        if let Some(spare) = spare
            && let Ok(Ok(host)) = spare.await
            && host.exit().borrow().is_none()
        {
            return Ok(host);
        }
        HostProcess::spawn(&self.inner.config.host).await
    }

    /// Loads `artifact` as a new generation and makes it current. On failure the current
    /// generation keeps serving.
    pub async fn swap(&self, artifact: &Path) -> Result<SwapReport, SwapFailure> {
        self.swap_with(artifact, SwapOptions::default()).await
    }

    /// [`Engine::swap`] with choices.
    pub async fn swap_with(
        &self,
        artifact: &Path,
        options: SwapOptions,
    ) -> Result<SwapReport, SwapFailure> {
        let _one_at_a_time = self.inner.swap_lock.lock().await;
        let number = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        self.check_running(number)?;
        let started = Instant::now();
        let fingerprint = Fingerprint::of(artifact).ok();
        let file = self
            .place(artifact, number)
            .await
            .map_err(|error| failure(number, SwapStage::Copy, error.to_string()))?;
        let copy_ms = millis(started.elapsed());
        let build = self.inner.next_build.fetch_add(1, Ordering::Relaxed);
        let state = if options.fresh_state {
            StateChoice::FreshOnPurpose
        } else {
            StateChoice::FromCurrent
        };
        self.load(number, build, file, fingerprint, copy_ms, started, LoadKind::Build, state).await
    }

    /// Gives generation `number` a file of its own for `artifact`, off the runtime's threads: a
    /// copy of a large library takes tens of milliseconds, which new connections must not wait
    /// for.
    async fn place(&self, artifact: &Path, number: u64) -> std::io::Result<PathBuf> {
        let (engine, artifact) = (self.clone(), artifact.to_path_buf());
        tokio::task::spawn_blocking(move || engine.inner.files.place(&artifact, number))
            .await
            .map_err(std::io::Error::other)?
            .map(|(file, _)| file)
    }

    /// Starts the current build again as a new generation with `state` (a state envelope, e.g.
    /// JSON from `hotswap state --load`) instead of the current state. Refused, keeping the
    /// current generation and its state, when the state does not read as the build's type.
    pub async fn swap_state(
        &self,
        state: Vec<u8>,
        note: String,
    ) -> Result<SwapReport, SwapFailure> {
        let _one_at_a_time = self.inner.swap_lock.lock().await;
        let number = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        self.check_running(number)?;
        let Some(current) = self.published() else {
            return Err(failure(
                number,
                SwapStage::State,
                "nothing serves: a state can only be loaded into a running app".to_owned(),
            ));
        };
        let state = memfd_state(&state).map_err(|error| {
            failure(number, SwapStage::State, format!("cannot pass the state on: {error}"))
        })?;
        let entry = HistoryEntry {
            generation: current.number,
            build: current.build,
            file: current.library_file.clone(),
            state: None,
            exported_at: Instant::now(),
        };
        let choice = StateChoice::Given { state: Some(Arc::new(state)), note };
        self.load_history_entry(number, &entry, LoadKind::Reload, choice).await
    }

    /// The current generation's state as exported now (an envelope; `None`: it keeps none).
    pub async fn current_state(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(current) = self.published() else {
            return Err("nothing serves: there is no state to read".to_owned());
        };
        let exported = current.export_state(self.inner.config.export_timeout).await?;
        exported.map(|state| read_memfd(&state.file)).transpose().map_err(|error| error.to_string())
    }

    /// Loads the artifact that served before the current one as a new generation. Its state is
    /// the current one when that reads as the older build's type, else the state the older
    /// generation last exported (always that one when the current generation was started with a
    /// fresh state on purpose); the report says which.
    pub async fn rollback(&self) -> Result<SwapReport, RollbackError> {
        let _one_at_a_time = self.inner.swap_lock.lock().await;
        let Some(entry) = self.inner.history.lock().expect("history").pop() else {
            return Err(RollbackError::NothingToRollBack);
        };
        let number = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        self.check_running(number)?;
        let own_state = || StateChoice::Given {
            state: entry.state.clone(),
            note: format!(
                "the state is the one generation {} last exported, {} ago",
                entry.generation,
                age(entry.exported_at.elapsed())
            ),
        };
        let current_started_fresh = self.published().is_some_and(|current| current.started_fresh());
        let first = if current_started_fresh { own_state() } else { StateChoice::FromCurrent };
        let mut result =
            self.load_history_entry(number, &entry, LoadKind::Rollback, first.clone()).await;
        if let Err(refused) = &result
            && refused.stage == SwapStage::State
            && matches!(first, StateChoice::FromCurrent)
        {
            // The current state does not read as the older build's type: its own last state.
            let retry = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
            let why = refused.message.clone();
            result = self.load_history_entry(retry, &entry, LoadKind::Rollback, own_state()).await;
            if let Ok(report) = &mut result {
                report.warnings.push(format!(
                    "the current state does not read as generation {}'s type ({why})",
                    entry.generation
                ));
            }
        }
        match result {
            Ok(mut report) => {
                if matches!(first, StateChoice::FromCurrent) && report.warnings.is_empty() {
                    report.warnings.push(format!(
                        "the state is the current one, carried back to generation {}'s build",
                        entry.generation
                    ));
                }
                tracing::info!("rolled back to the artifact of generation {}", entry.generation);
                self.inner.files.remove(&entry.file);
                Ok(report)
            }
            Err(error) => {
                self.inner.history.lock().expect("history").push(entry);
                Err(error.into())
            }
        }
    }

    async fn load_history_entry(
        &self,
        number: u64,
        entry: &HistoryEntry,
        kind: LoadKind,
        state: StateChoice,
    ) -> Result<SwapReport, SwapFailure> {
        let started = Instant::now();
        let file = self
            .place(&entry.file, number)
            .await
            .map_err(|error| failure(number, SwapStage::Copy, error.to_string()))?;
        let fingerprint = Fingerprint::of(&file).ok();
        let copy_ms = millis(started.elapsed());
        self.load(number, entry.build, file, fingerprint, copy_ms, started, kind, state).await
    }

    fn check_running(&self, number: u64) -> Result<(), SwapFailure> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(failure(
                number,
                SwapStage::Publish,
                "the daemon is shutting down".to_owned(),
            ));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn load(
        &self,
        number: u64,
        build: u64,
        file: PathBuf,
        fingerprint: Option<Fingerprint>,
        copy_ms: f64,
        started: Instant,
        kind: LoadKind,
        state_choice: StateChoice,
    ) -> Result<SwapReport, SwapFailure> {
        let mut stages = SwapStages { copy_ms, ..SwapStages::default() };
        let config = &self.inner.config;
        let files = &self.inner.files;

        let host = match self.take_host().await {
            Ok(host) => host,
            Err(error) => {
                files.remove(&file);
                return Err(failure(number, SwapStage::Load, error.to_string()));
            }
        };
        // The next swap gets a host started when this one is over, whatever its outcome: started
        // now, it would take a CPU from this swap.
        let _next_spare = SpareAfterwards(self);
        let load = LoadCommand {
            library: file.clone(),
            generation: number,
            worker_threads: config.worker_threads,
            max_log_level: config.max_log_level,
            max_body_bytes: config.max_body_bytes,
            first_byte_timeout_ms: config
                .first_byte_timeout
                .map_or(0, |limit| u64::try_from(limit.as_millis()).unwrap_or(u64::MAX)),
            forward_address: self.forward_address().map(|address| address.to_string()),
        };
        let links = HostLinks {
            events: self.inner.events.clone(),
            returned: self.inner.returned_sender.clone(),
        };
        let loaded = Generation::load(
            number,
            build,
            host,
            file.clone(),
            fingerprint,
            load,
            links,
            config.init_timeout,
        )
        .await;
        let generation = match loaded {
            Ok((generation, loaded)) => {
                stages.load_ms = loaded.load_ms;
                stages.verify_ms = loaded.verify_ms;
                stages.init_ms = loaded.init_ms;
                Arc::new(generation)
            }
            Err((start_failure, host)) => {
                self.end_refused_host(host);
                files.remove(&file);
                return Err(failure(number, start_failure.stage, start_failure.message));
            }
        };

        // From here to publishing, no other change of generation (a crash recovery holds the
        // swap lock too). New connections still go to the old generation: it answers reads, and
        // holds writes until the new generation serves them.
        let mut current = self.inner.current.write().await;
        let clock = Instant::now();
        let mut warnings = Vec::new();
        let previous_number = current.as_ref().map(|previous| previous.number);
        let policy = match config.state_policy {
            StatePolicy::Fresh => WireStatePolicy::Fresh,
            StatePolicy::Reject => WireStatePolicy::Reject,
        };
        let exports_current =
            matches!(state_choice, StateChoice::FromCurrent | StateChoice::FreshOnPurpose);
        // What the replaced generation exported, kept with its artifact for a rollback.
        let mut exported: Option<Option<Arc<StateSnapshot>>> = None;
        let held = if exports_current { current.clone() } else { None };
        let hold_started = Instant::now();
        let state = match (&state_choice, held.clone()) {
            (StateChoice::FromCurrent | StateChoice::FreshOnPurpose, Some(previous)) => {
                // Requests that could write wait until the state is in the new generation (and
                // then go to it): no write is lost to the export.
                match previous.host.hold(true, config.hold_timeout).await {
                    Ok(0) => {}
                    Ok(running) => warnings.push(format!(
                        "{running} request(s) that can write (POST, PUT, PATCH, DELETE) were still \
                         running on generation {} after {} ms when its state was exported; \
                         what they write from then on is not in generation {number}",
                        previous.number,
                        config.hold_timeout.as_millis()
                    )),
                    Err(_) => {}
                }
                let export_started = Instant::now();
                match self.export_with_progress(&previous, number).await {
                    Ok(state) => {
                        let state = state.map(Arc::new);
                        self.keep_snapshot(state.clone(), previous.number, export_started);
                        exported = Some(state.clone());
                        if matches!(state_choice, StateChoice::FreshOnPurpose) {
                            warnings.push(format!(
                                "generation {number} starts with a fresh state, as asked; the state of generation {} is kept for `hotswap rollback`",
                                previous.number
                            ));
                            None
                        } else {
                            state
                        }
                    }
                    Err(message) => {
                        self.release(&previous).await;
                        drop(current);
                        self.dispose(generation);
                        return Err(failure(
                            number,
                            SwapStage::State,
                            format!(
                                "the state of generation {} could not be exported, so generation {} keeps serving with it: {message}",
                                previous.number, previous.number
                            ),
                        ));
                    }
                }
            }
            (StateChoice::Given { state, note }, _) => {
                warnings.push(note.clone());
                state.clone()
            }
            // Nothing serves (the first generation, or after crashes): the kept snapshot.
            _ => {
                let snapshot = self.inner.snapshot.lock().expect("snapshot").clone();
                match snapshot {
                    Some(snapshot) => {
                        if snapshot.state.is_some() {
                            warnings.push(if snapshot.from_disk {
                                format!(
                                    "started from the state the last `hotswap serve` left on disk, taken {} ago (its generation {})",
                                    age(snapshot.taken.elapsed()),
                                    snapshot.generation
                                )
                            } else {
                                format!(
                                    "started from the state snapshot of {} ago (generation {})",
                                    age(snapshot.taken.elapsed()),
                                    snapshot.generation
                                )
                            });
                        }
                        snapshot.state
                    }
                    None => None,
                }
            }
        };
        if matches!(state_choice, StateChoice::FreshOnPurpose) {
            generation.mark_started_fresh();
        }
        // `Handler::new` runs here, with the state: it gets the init timeout.
        match generation.start(state.as_deref(), policy, config.init_timeout).await {
            Ok(None) => {}
            Ok(Some(reason)) => {
                generation.mark_started_fresh();
                warnings.push(match previous_number {
                    Some(previous) => format!(
                        "the state of generation {previous} could not be imported ({reason}); generation {number} starts with fresh state"
                    ),
                    None => format!("the state could not be imported ({reason}); starting fresh"),
                })
            }
            Err(start_failure) => {
                if let Some(previous) = &held {
                    self.release(previous).await;
                }
                drop(current);
                self.dispose(generation);
                return Err(SwapFailure {
                    generation: number,
                    stage: start_failure.stage,
                    message: start_failure.message,
                    state_problem: start_failure.state_problem.map(Box::new),
                });
            }
        }
        stages.state_ms = millis(clock.elapsed());

        if let Some(path) = &config.smoke_path {
            let clock = Instant::now();
            if let Err(message) = smoke::check(&generation, path, SMOKE_TIMEOUT).await {
                if let Some(previous) = &held {
                    self.release(previous).await;
                }
                drop(current);
                self.dispose(generation);
                let message = format!(
                    "{message} (the smoke request: `smoke_path = \"{path}\"` in the [swap] section \
                     of hotswap.toml; point it at a path that answers 2xx, or remove it)"
                );
                return Err(failure(number, SwapStage::Smoke, message));
            }
            stages.smoke_ms = millis(clock.elapsed());
        }

        let clock = Instant::now();
        // New connections wait from here until the new generation is published (a few ms).
        let routing = self.inner.routing.write().await;
        // The old generation stops keeping connections alive before the new one is published,
        // so that a request read after the swap is read by the new code.
        if let Some(previous) = current.as_ref() {
            previous
                .host
                .begin_drain(config.drain_timeout, config.stream_drain_timeout, BEGIN_DRAIN_TIMEOUT)
                .await;
        }
        *self.inner.published.lock().expect("published") = Some(generation.clone());
        let previous = current.replace(generation.clone());
        drop(current);
        drop(routing);
        self.inner.availability.send_replace(Availability::Serving);
        stages.publish_ms = millis(clock.elapsed());
        if held.is_some() {
            stages.writes_held_ms = millis(hold_started.elapsed());
        }
        let swap_ms = millis(started.elapsed());
        self.watch_for_crash(generation);

        if let Some(previous) = previous {
            if matches!(kind, LoadKind::Build | LoadKind::Reload) {
                self.remember(&previous, exported.flatten());
            }
            self.retire(previous);
        }
        Ok(SwapReport {
            generation: number,
            previous_generation: previous_number,
            stages,
            swap_ms,
            warnings,
        })
    }

    /// Keeps `state` as the snapshot a crash restarts from. `taken` is when its export began:
    /// every request answered before then is in it (one answered during the export may be).
    fn keep_snapshot(&self, state: Option<Arc<StateSnapshot>>, generation: u64, taken: Instant) {
        *self.inner.snapshot.lock().expect("snapshot") =
            Some(Snapshot { state, generation, taken, from_disk: false });
        self.persist_snapshot();
    }

    /// Writes the kept snapshot to disk in the background (one write at a time; a newer
    /// snapshot taken meanwhile is written after it), so that the next `hotswap serve` starts
    /// from it, even after this one was killed.
    fn persist_snapshot(&self) {
        if self.inner.config.snapshot_file.is_none() {
            return;
        }
        self.inner.snapshot_dirty.store(true, Ordering::SeqCst);
        if self.inner.snapshot_writing.swap(true, Ordering::SeqCst) {
            return;
        }
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            while engine.inner.snapshot_dirty.swap(false, Ordering::SeqCst) {
                if let Err(error) = engine.write_snapshot() {
                    tracing::warn!("the state snapshot could not be written to disk: {error}");
                }
            }
            engine.inner.snapshot_writing.store(false, Ordering::SeqCst);
        });
    }

    fn write_snapshot(&self) -> io::Result<()> {
        let Some(path) = &self.inner.config.snapshot_file else { return Ok(()) };
        let snapshot = self.inner.snapshot.lock().expect("snapshot").clone();
        let Some(snapshot) = snapshot else { return Ok(()) };
        let facts_path = path.with_extension("json");
        let Some(state) = &snapshot.state else {
            // The app keeps no state now: nothing to bring back.
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(&facts_path);
            return Ok(());
        };
        if let Some(directory) = path.parent() {
            std::fs::create_dir_all(directory)?;
        }
        let partial = path.with_extension("partial");
        {
            use std::io::Seek as _;
            let mut source = std::fs::File::from(state.file.try_clone()?);
            source.rewind()?;
            let mut target = std::fs::File::create(&partial)?;
            // copy_file_range: the kernel copies, the state never passes through this process.
            std::io::copy(&mut source, &mut target)?;
            target.sync_data()?;
        }
        std::fs::rename(&partial, path)?;
        let taken = std::time::SystemTime::now()
            .checked_sub(snapshot.taken.elapsed())
            .unwrap_or_else(std::time::SystemTime::now);
        let facts = SnapshotFacts {
            generation: snapshot.generation,
            taken_unix_ms: taken
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
            bytes: state.bytes,
        };
        std::fs::write(&facts_path, serde_json::to_vec(&facts).map_err(io::Error::other)?)?;
        Ok(())
    }

    /// Reads the snapshot a previous `hotswap serve` left on disk: the first generation starts
    /// from it. Returns how old it is, or `None` when there is none.
    pub fn restore_snapshot_from_disk(&self) -> io::Result<Option<(Duration, u64)>> {
        let Some(path) = &self.inner.config.snapshot_file else { return Ok(None) };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let facts: Option<SnapshotFacts> = std::fs::read(path.with_extension("json"))
            .ok()
            .and_then(|text| serde_json::from_slice(&text).ok());
        let age_of = facts
            .as_ref()
            .and_then(|facts| {
                let taken = std::time::UNIX_EPOCH + Duration::from_millis(facts.taken_unix_ms);
                std::time::SystemTime::now().duration_since(taken).ok()
            })
            .unwrap_or_default();
        let state = memfd_state(&bytes)?;
        let taken = Instant::now().checked_sub(age_of).unwrap_or_else(Instant::now);
        let size = state.bytes;
        *self.inner.snapshot.lock().expect("snapshot") = Some(Snapshot {
            state: Some(Arc::new(state)),
            generation: facts.map_or(0, |facts| facts.generation),
            taken,
            from_disk: true,
        });
        Ok(Some((age_of, size)))
    }

    /// Forgets the snapshot on disk (`hotswap serve --fresh-state`).
    pub fn discard_snapshot_on_disk(&self) {
        if let Some(path) = &self.inner.config.snapshot_file {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(path.with_extension("json"));
        }
    }

    /// Lets the replaced generation's writing requests run again (a refused swap).
    async fn release(&self, generation: &Generation) {
        let _ = generation.host.hold(false, Duration::ZERO).await;
    }

    /// Exports `generation`'s state, saying every second that it is still at it (a large state
    /// takes a while; new connections wait meanwhile).
    async fn export_with_progress(
        &self,
        generation: &Generation,
        next: u64,
    ) -> Result<Option<StateSnapshot>, String> {
        let export = generation.export_state(self.inner.config.export_timeout);
        tokio::pin!(export);
        let started = Instant::now();
        loop {
            tokio::select! {
                result = &mut export => return result,
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    let message = format!(
                        "generation {} is still exporting its state for generation {next} ({:.0} s; the limit is `export_timeout_ms`, {} s)",
                        generation.number,
                        started.elapsed().as_secs_f64(),
                        self.inner.config.export_timeout.as_secs()
                    );
                    tracing::info!("{message}");
                    self.inner.events.send(Event::Log(hotswap_protocol::events::LogLine {
                        level: LogLevel::Info,
                        target: "hotswap".to_owned(),
                        message,
                        generation: None,
                    }));
                }
            }
        }
    }

    /// Keeps the artifact of a replaced generation for rollback, with the state it exported,
    /// dropping the oldest beyond the configured depth.
    fn remember(&self, generation: &Generation, state: Option<Arc<StateSnapshot>>) {
        let mut history = self.inner.history.lock().expect("history");
        history.push(HistoryEntry {
            generation: generation.number,
            build: generation.build,
            file: generation.library_file.clone(),
            state,
            exported_at: Instant::now(),
        });
        while history.len() > self.inner.config.rollback_depth {
            let oldest = history.remove(0);
            self.inner.files.remove(&oldest.file);
        }
    }

    fn in_history(&self, file: &Path) -> bool {
        self.inner.history.lock().expect("history").iter().any(|entry| entry.file == file)
    }

    /// Waits in the background for `generation` (already told to drain) to finish its
    /// connections, then ends its process.
    fn retire(&self, generation: Arc<Generation>) {
        *generation.retired_at.lock().expect("retired_at") = Some(Instant::now());
        self.inner.draining.lock().expect("draining").push(generation.clone());
        let engine = self.clone();
        self.spawn_task(async move { engine.drain_and_end(generation).await });
    }

    async fn drain_and_end(&self, generation: Arc<Generation>) {
        let config = &self.inner.config;
        let started = Instant::now();
        let now = tokio::time::Instant::now();
        // Requests first: once the purge has answered them, only streams keep it alive.
        generation.host.wait_until_idle(now + config.drain_timeout + PURGE_GRACE).await;
        if generation.host.counters().streams.load(Ordering::SeqCst) > 0 {
            generation.host.wait_until_idle(now + config.stream_drain_timeout + PURGE_GRACE).await;
        }
        let ended = generation.exit().borrow().is_some();
        if ended && !generation.is_ending() {
            // It crashed while draining; its crash watcher reports it.
            self.forget_draining(&generation);
            return;
        }
        generation.mark_ending();
        // Requests still running after the purge are stuck in a blocking call: waiting for the
        // app to stop would only wait for them.
        let stuck = generation.host.counters().in_flight.load(Ordering::SeqCst) > 0;
        let grace = if stuck { STUCK_RETIRE_GRACE } else { RETIRE_GRACE };
        let exited_by_itself = generation.host.retire(grace).await;
        self.forget_draining(&generation);
        let counters = generation.host.counters();
        let requests_cut =
            counters.cut.load(Ordering::Relaxed).max(generation.host.requests_cut_by_host());
        let (outcome, reason) = match (exited_by_itself, generation.host.retiring_message()) {
            (true, Some((true, _)) | None) => (RetireOutcome::Ended, None),
            (true, Some((false, message))) => (RetireOutcome::Ended, message),
            (false, message) => (
                RetireOutcome::Killed,
                Some(message.and_then(|(_, message)| message).unwrap_or_else(|| {
                    "it did not stop within its grace (a thread that never returns?)".to_owned()
                })),
            ),
        };
        self.inner.ended.fetch_add(1, Ordering::Relaxed);
        match (&outcome, &reason) {
            (RetireOutcome::Killed, Some(reason)) => tracing::warn!(
                "generation {} was ended with SIGKILL: {reason}; its memory is returned",
                generation.number
            ),
            (_, Some(reason)) => {
                tracing::info!("generation {} ended ({reason})", generation.number)
            }
            _ => tracing::info!("generation {} ended", generation.number),
        }
        if !self.in_history(&generation.library_file) {
            self.inner.files.remove(&generation.library_file);
        }
        self.inner.events.send(Event::GenerationRetired(GenerationRetired {
            generation: generation.number,
            outcome,
            reason,
            drain_ms: millis(started.elapsed()),
            requests_cut,
        }));
    }

    fn forget_draining(&self, generation: &Generation) {
        self.inner
            .draining
            .lock()
            .expect("draining")
            .retain(|other| other.number != generation.number);
    }

    /// Ends a generation that never served (a refused swap), in the background.
    fn dispose(&self, generation: Arc<Generation>) {
        generation.mark_ending();
        let engine = self.clone();
        self.spawn_task(async move {
            generation.host.retire(Duration::from_millis(500)).await;
            engine.inner.files.remove(&generation.library_file);
        });
    }

    /// Ends a host whose library was refused, in the background.
    fn end_refused_host(&self, host: HostProcess) {
        self.spawn_task(async move {
            host.retire(Duration::from_millis(500)).await;
        });
    }

    /// Waits for the generation's process to end; an end the engine did not ask for is a crash.
    fn watch_for_crash(&self, generation: Arc<Generation>) {
        let engine = self.clone();
        self.spawn_task(async move {
            let mut exit = generation.exit();
            let Ok(exit) = exit.wait_for(Option::is_some).await.map(|exit| *exit) else { return };
            let Some(exit) = exit else { return };
            if generation.is_ending() {
                return;
            }
            engine.crashed(generation, exit).await;
        });
    }

    /// A generation's process died by itself: say how, and serve again.
    async fn crashed(&self, generation: Arc<Generation>, exit: host_process::HostExit) {
        let facts = generation.host.counters().crash.read();
        let panics = generation.host.counters().last_panics.read();
        let words = generation.host.last_words().await;
        let report =
            crash::report(generation.number, generation.host.pid, exit, facts, panics, words);
        self.inner.crashes.fetch_add(1, Ordering::Relaxed);
        let is_current = self.current_generation() == Some(generation.number);
        if !is_current || self.inner.shutting_down.load(Ordering::SeqCst) {
            self.forget_draining(&generation);
            let serving = self.current_generation();
            let message = match serving {
                Some(serving) => {
                    format!("{} while draining; generation {serving} serves", report.summary())
                }
                None => report.summary(),
            };
            tracing::error!("{message}");
            self.announce_crash(&report, CrashRecovery::None, message);
            if !self.in_history(&generation.library_file) {
                self.inner.files.remove(&generation.library_file);
            }
            return;
        }
        // Connections wait from now on, instead of meeting a dead process.
        self.inner.availability.send_replace(Availability::Recovering);
        let engine = self.clone();
        self.spawn_task(async move { engine.recover(generation, report).await });
    }

    async fn recover(&self, crashed: Arc<Generation>, report: crash::CrashReport) {
        let _one_at_a_time = self.inner.swap_lock.lock().await;
        {
            let mut current = self.inner.current.write().await;
            if current.as_ref().map(|current| current.number) == Some(crashed.number) {
                current.take();
                self.inner.published.lock().expect("published").take();
            } else {
                // A swap replaced it meanwhile.
                self.inner.availability.send_replace(Availability::Serving);
                return;
            }
        }
        let crash_loop = self.inner.config.crash_loop;
        let recent = {
            let mut times = self.inner.crash_times.lock().expect("crash times");
            let times = times.entry(crashed.build).or_default();
            times.push(Instant::now());
            times.retain(|at| at.elapsed() <= crash_loop.within);
            times.len()
        };
        let snapshot_age = self
            .inner
            .snapshot
            .lock()
            .expect("snapshot")
            .as_ref()
            .filter(|snapshot| snapshot.state.is_some())
            .map(|snapshot| snapshot.taken.elapsed());
        let from_snapshot = match snapshot_age {
            Some(age_of) => format!("from the state snapshot of {} ago", age(age_of)),
            None => "with its default state (no state snapshot)".to_owned(),
        };
        let crash_loop_hit = recent >= crash_loop.crashes;
        let mut attempt_restart = !crash_loop_hit;
        if attempt_restart {
            let message =
                format!("{}; the same build starts again {from_snapshot}", report.summary());
            tracing::error!("{message}");
            self.announce_crash(
                &report,
                CrashRecovery::Restart {
                    snapshot_age_ms: snapshot_age.map(|age| age.as_millis() as u64),
                },
                message,
            );
        }
        let mut restart_failure = None;
        if attempt_restart {
            let number = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
            let entry = HistoryEntry {
                generation: crashed.number,
                build: crashed.build,
                file: crashed.library_file.clone(),
                state: None,
                exported_at: Instant::now(),
            };
            match self
                .load_history_entry(
                    number,
                    &entry,
                    LoadKind::Recovery { crashed: crashed.number },
                    StateChoice::KeptSnapshot,
                )
                .await
            {
                Ok(swap) => {
                    self.announce_recovery(&swap, crashed.number, false);
                    self.forget_crashed_file(&crashed);
                    return;
                }
                Err(failure) => {
                    tracing::error!(
                        "restarting generation {}'s build failed at the {} stage: {}",
                        crashed.number,
                        failure.stage,
                        failure.message
                    );
                    restart_failure = Some(failure);
                    attempt_restart = false;
                }
            }
        }
        debug_assert!(!attempt_restart);
        let why = match (&restart_failure, crash_loop_hit) {
            (Some(failure), _) => format!(
                "{}; starting the same build again failed at the {} stage: {}",
                report.summary(),
                failure.stage,
                failure.message
            ),
            (None, true) => format!(
                "{} ({recent} crashes of this build in {} s)",
                report.summary(),
                crash_loop.within.as_secs()
            ),
            (None, false) => report.summary(),
        };
        // The build that served before this one, if there is one.
        let previous = self.inner.history.lock().expect("history").pop();
        let Some(entry) = previous else {
            let message = format!("{why}; nothing serves until the next save");
            tracing::error!("{message}");
            self.announce_crash(&report, CrashRecovery::None, message.clone());
            self.set_unavailable_reason(message);
            self.inner.availability.send_replace(Availability::Unavailable);
            self.forget_crashed_file(&crashed);
            return;
        };
        let message = format!(
            "{why}; the previous build (generation {}'s) serves again {from_snapshot}",
            entry.generation
        );
        tracing::error!("{message}");
        self.announce_crash(
            &report,
            CrashRecovery::PreviousBuild { generation: entry.generation },
            message,
        );
        let number = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        match self
            .load_history_entry(
                number,
                &entry,
                LoadKind::Recovery { crashed: crashed.number },
                StateChoice::KeptSnapshot,
            )
            .await
        {
            Ok(swap) => {
                self.inner.files.remove(&entry.file);
                self.announce_recovery(&swap, crashed.number, true);
            }
            Err(failure) => {
                let message = format!(
                    "{why}; the previous build could not serve either (refused at the {} stage: \
                     {}); nothing serves until the next save",
                    failure.stage, failure.message
                );
                tracing::error!("{message}");
                self.inner.history.lock().expect("history").push(entry);
                self.announce_crash(&report, CrashRecovery::None, message.clone());
                self.set_unavailable_reason(message);
                self.inner.availability.send_replace(Availability::Unavailable);
            }
        }
        self.forget_crashed_file(&crashed);
    }

    fn forget_crashed_file(&self, crashed: &Generation) {
        if !self.in_history(&crashed.library_file) {
            self.inner.files.remove(&crashed.library_file);
        }
    }

    fn announce_crash(
        &self,
        report: &crash::CrashReport,
        recovery: CrashRecovery,
        message: String,
    ) {
        let event = GenerationCrashed {
            generation: report.generation,
            pid: report.pid,
            cause: report.cause.clone(),
            signal: report.signal.clone(),
            exit_code: report.exit_code,
            last_words: report.last_words.clone(),
            request: report.request.clone(),
            recovery,
            message,
        };
        *self.inner.last_crash.lock().expect("last crash") = Some((event.clone(), Instant::now()));
        self.inner.events.send(Event::GenerationCrashed(event));
    }

    fn announce_recovery(&self, swap: &SwapReport, crashed: u64, previous_build: bool) {
        tracing::info!(
            "generation {} serves again after generation {crashed} crashed ({}; {:.1} ms)",
            swap.generation,
            if previous_build { "the previous build" } else { "the same build" },
            swap.swap_ms
        );
        self.inner.events.send(Event::SwapFinished(SwapFinished {
            generation: swap.generation,
            previous_generation: Some(crashed),
            rollback: previous_build,
            after_crash: Some(crashed),
            swap_ms: swap.swap_ms,
            total_ms: None,
            build_ms: None,
            stages: swap.stages,
            warnings: swap.warnings.clone(),
        }));
    }

    /// Accepts HTTP connections on `listener` and hands each to the current generation, until
    /// `shutdown` completes. Connections that draining generations give back go to the current
    /// generation too. While a crashed generation is being replaced, connections wait; while
    /// nothing serves, they get a 503 that says why. An engine serves once: a second call fails.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let mut returned =
            self.inner.returned.lock().expect("returned").take().ok_or_else(|| {
                io::Error::new(io::ErrorKind::AlreadyExists, "the engine is already serving")
            })?;
        {
            let mut forward = self.inner.forward_address.lock().expect("forward address");
            if forward.is_none() {
                *forward = listener.local_addr().ok();
            }
        }
        if self.inner.spare.lock().expect("spare").is_none() {
            self.prepare_spare();
        }
        let snapshots = self.inner.config.snapshot_interval.map(|interval| {
            let engine = self.clone();
            tokio::spawn(async move { engine.take_snapshots(interval).await })
        });
        let mut waiting = JoinSet::new();
        let mut accept_errors = Throttle::default();
        tokio::pin!(shutdown);
        loop {
            let (socket, unread) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(connection) = returned.recv() => (connection.socket, connection.unread),
                accepted = listener.accept() => match accepted.and_then(|(stream, _)| stream.into_std()) {
                    Ok(stream) => {
                        let socket = OwnedFd::from(stream);
                        if self.too_many_connections() {
                            self.refuse(socket);
                            continue;
                        }
                        (socket, Vec::new())
                    }
                    Err(error) => {
                        // Out of descriptors, or a connection reset before accept: keep serving,
                        // and say so once in a while, not at every try.
                        if accept_errors.ready(Duration::from_secs(10)) {
                            tracing::warn!(
                                "accepting HTTP connections failed ({error}); retrying (said at most every 10 s)"
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            while waiting.try_join_next().is_some() {}
            if let Err((socket, unread)) = self.route(socket, unread).await {
                let engine = self.clone();
                waiting.spawn(async move { engine.route_when_available(socket, unread).await });
            }
        }
        if let Some(snapshots) = snapshots {
            snapshots.abort();
        }
        // From now on connections given back are closed: nothing serves them any more.
        drop(returned);
        waiting.shutdown().await;
        Ok(())
    }

    /// Passes a connection to the current generation; gives it back when there is none (or it
    /// just died).
    async fn route(&self, socket: OwnedFd, unread: Vec<u8>) -> Result<(), (OwnedFd, Vec<u8>)> {
        // The published generation, not the swap's `current`: a swap moving a large state holds
        // that, and new connections must not wait for it; only publishing stops them briefly.
        let _routing = self.inner.routing.read().await;
        match self.published() {
            Some(generation) => match generation.host.serve_or_return(socket, &unread).await {
                Ok(()) => Ok(()),
                Err(socket) => Err((socket, unread)),
            },
            None => Err((socket, unread)),
        }
    }

    /// Waits (for a crash recovery) until a generation serves, then passes the connection; a
    /// 503 with the reason when nothing will.
    async fn route_when_available(&self, mut socket: OwnedFd, mut unread: Vec<u8>) {
        let mut availability = self.inner.availability.subscribe();
        let deadline = tokio::time::Instant::now() + RECOVERY_WAIT;
        loop {
            let state = availability.borrow_and_update().clone();
            match state {
                Availability::Serving => match self.route(socket, unread).await {
                    Ok(()) => return,
                    Err((back, bytes)) => {
                        (socket, unread) = (back, bytes);
                        // Published but gone already (a crash being noticed): wait for news.
                        if tokio::time::timeout_at(deadline, availability.changed()).await.is_err()
                        {
                            break;
                        }
                    }
                },
                Availability::Recovering => {
                    if tokio::time::timeout_at(deadline, availability.changed()).await.is_err() {
                        break;
                    }
                }
                Availability::Unavailable => break,
            }
        }
        let reason = self.inner.unavailable_reason.lock().expect("reason").clone();
        let stream = std::net::TcpStream::from(socket);
        if stream.set_nonblocking(true).is_ok()
            && let Ok(stream) = tokio::net::TcpStream::from_std(stream)
        {
            answer_unavailable(stream, unread, reason).await;
        }
    }

    /// True when the open HTTP connections reach `max_connections`.
    fn too_many_connections(&self) -> bool {
        let mut open = 0;
        if let Some(current) = self.published() {
            open += current.host.open_connections();
        }
        for generation in self.inner.draining.lock().expect("draining").iter() {
            open += generation.host.open_connections();
        }
        open >= self.inner.config.max_connections
    }

    /// Closes a connection over the limit with a 503, and says so in one line every 10 s.
    fn refuse(&self, socket: OwnedFd) {
        let refused = self.inner.refused_connections.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut last = self.inner.last_refusal_log.lock().expect("refusal log");
            if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                *last = Some(Instant::now());
                tracing::warn!(
                    "{refused} HTTP connection(s) refused so far: {} are open, the limit \
                     (`max_connections` in the [server] section of hotswap.toml) (said at most every 10 s)",
                    self.inner.config.max_connections
                );
                self.inner.events.send(Event::Log(hotswap_protocol::events::LogLine {
                    level: LogLevel::Warn,
                    target: "hotswap".to_owned(),
                    message: format!(
                        "{refused} HTTP connection(s) refused so far: the limit of {} open connections is reached",
                        self.inner.config.max_connections
                    ),
                    generation: None,
                }));
            }
        }
        let body = "hotswap: too many open connections; retry later\n";
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let stream = std::net::TcpStream::from(socket);
        let _ = stream.set_nonblocking(true);
        let _ = std::io::Write::write(&mut &stream, response.as_bytes());
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }

    /// Snapshots the current generation's state every `interval` while it serves requests.
    async fn take_snapshots(&self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen: Option<(u64, u64)> = None;
        let mut next_allowed = tokio::time::Instant::now();
        loop {
            ticker.tick().await;
            let Some(current) = self.published() else { continue };
            let requests = current.host.counters().requests.load(Ordering::Relaxed);
            let taken_at_swap = self
                .inner
                .snapshot
                .lock()
                .expect("snapshot")
                .as_ref()
                .is_some_and(|snapshot| snapshot.generation >= current.number);
            if seen == Some((current.number, requests))
                || (requests == 0 && taken_at_swap)
                || tokio::time::Instant::now() < next_allowed
            {
                continue;
            }
            // Never beside a swap: it moves the state itself.
            let Ok(_no_swap) = self.inner.swap_lock.try_lock() else { continue };
            let clock = Instant::now();
            match current.export_state(self.inner.config.export_timeout).await {
                Ok(state) => {
                    self.keep_snapshot(state.map(Arc::new), current.number, clock);
                    seen = Some((current.number, requests));
                }
                Err(message) => tracing::debug!("state snapshot skipped: {message}"),
            }
            // A slow export (a large state) is not repeated more than a tenth of the time.
            next_allowed = tokio::time::Instant::now() + clock.elapsed() * 10;
        }
    }

    /// Retires the current generation (in-flight requests finish, up to the drain timeout) and
    /// waits until every generation's process has ended. No swap happens after this.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let _no_more_swaps = self.inner.swap_lock.lock().await;
        let current = self.inner.current.write().await.take();
        self.inner.published.lock().expect("published").take();
        let spare = self.inner.spare.lock().expect("spare").take();
        if let Some(spare) = spare {
            spare.abort();
            // A spare that was ready exits when its channel closes (the host is dropped).
            let _ = spare.await;
        }
        if let Some(current) = current {
            let config = &self.inner.config;
            // The last state, for the next `hotswap serve` (written before the drain: what the
            // requests still running write after this is lost with the process).
            if config.snapshot_file.is_some() {
                match current.export_state(config.export_timeout).await {
                    Ok(state) => {
                        *self.inner.snapshot.lock().expect("snapshot") = Some(Snapshot {
                            state: state.map(Arc::new),
                            generation: current.number,
                            taken: Instant::now(),
                            from_disk: false,
                        });
                        let engine = self.clone();
                        let written =
                            tokio::task::spawn_blocking(move || engine.write_snapshot()).await;
                        if let Ok(Err(error)) = written {
                            tracing::warn!("the last state could not be written to disk: {error}");
                        }
                    }
                    Err(message) => tracing::warn!(
                        "the last state of generation {} could not be saved: {message}",
                        current.number
                    ),
                }
            }
            current
                .host
                .begin_drain(config.drain_timeout, config.stream_drain_timeout, BEGIN_DRAIN_TIMEOUT)
                .await;
            self.retire(current);
        }
        loop {
            let next = {
                let mut tasks = self.inner.tasks.lock().expect("tasks");
                if tasks.is_empty() {
                    break;
                }
                std::mem::take(&mut *tasks)
            };
            let mut next = next;
            // Crash watchers of ended generations end by themselves; retirements end the rest.
            while next.join_next().await.is_some() {}
        }
        for entry in self.inner.history.lock().expect("history").drain(..) {
            self.inner.files.remove(&entry.file);
        }
    }

    /// A snapshot of the generations and totals; never waits for a swap in progress.
    pub fn status(&self) -> EngineStatus {
        let current = self.published();
        let draining = self.inner.draining.lock().expect("draining").clone();
        let mut generations = Vec::new();
        for (generation, state) in current
            .iter()
            .map(|generation| (generation, GenerationState::Current))
            .chain(draining.iter().map(|generation| (generation, GenerationState::Draining)))
        {
            let counters = generation.host.counters();
            generations.push(GenerationStatus {
                generation: generation.number,
                state,
                connections: counters.connections.load(Ordering::Relaxed),
                in_flight: counters.in_flight.load(Ordering::Relaxed),
                requests: counters.requests.load(Ordering::Relaxed),
                age_ms: generation.loaded_at.elapsed().as_millis() as u64,
                pid: generation.host.pid,
                rss_bytes: generation.host.resident_bytes().unwrap_or(0),
                streams: counters.streams.load(Ordering::Relaxed),
            });
        }
        let snapshot =
            self.inner.snapshot.lock().expect("snapshot").as_ref().and_then(|snapshot| {
                snapshot.state.as_ref().map(|state| SnapshotStatus {
                    generation: snapshot.generation,
                    bytes: state.bytes,
                    age_ms: snapshot.taken.elapsed().as_millis() as u64,
                })
            });
        EngineStatus {
            current_generation: current.as_ref().map(|generation| generation.number),
            generations,
            ended_generations: self.inner.ended.load(Ordering::Relaxed),
            crashes: self.inner.crashes.load(Ordering::Relaxed),
            last_crash: self
                .inner
                .last_crash
                .lock()
                .expect("last crash")
                .as_ref()
                .map(|(crash, at)| (crash.clone(), at.elapsed())),
            snapshot,
        }
    }

    /// True while an earlier artifact is kept for rollback.
    pub fn can_roll_back(&self) -> bool {
        !self.inner.history.lock().expect("history").is_empty()
    }
}

/// Lets something happen at most once per period.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn ready(&mut self, period: Duration) -> bool {
        if self.last.is_some_and(|last| last.elapsed() < period) {
            return false;
        }
        self.last = Some(Instant::now());
        true
    }
}

/// Starts the spare host for the next swap when dropped.
struct SpareAfterwards<'e>(&'e Engine);

impl Drop for SpareAfterwards<'_> {
    fn drop(&mut self) {
        self.0.prepare_spare();
    }
}

/// Answers a connection with 503 while nothing serves: reads the request head (so the client
/// sees the answer, not a reset), then writes the reason.
async fn answer_unavailable(mut stream: tokio::net::TcpStream, unread: Vec<u8>, reason: String) {
    let mut head = unread;
    let mut buffer = [0u8; 4096];
    let read_head = async {
        while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 64 * 1024 {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => head.extend_from_slice(&buffer[..read]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read_head).await;
    let body = format!("hotswap: {reason}\n");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn failure(generation: u64, stage: SwapStage, message: String) -> SwapFailure {
    SwapFailure { generation, stage, message, state_problem: None }
}

/// A state in a sealed memfd, as hosts receive it.
fn memfd_state(bytes: &[u8]) -> io::Result<StateSnapshot> {
    use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, memfd_create};
    use std::io::Write as _;
    let descriptor =
        memfd_create("hotswap-state", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut file = std::fs::File::from(descriptor);
    file.write_all(bytes)?;
    fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(StateSnapshot { file: OwnedFd::from(file), bytes: bytes.len() as u64 })
}

/// The bytes of a state memfd.
fn read_memfd(file: &OwnedFd) -> io::Result<Vec<u8>> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::from(file.try_clone()?);
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// "0.4 s", "12 s", "3 min".
fn age(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{:.0} min", seconds / 60.0)
    }
}
