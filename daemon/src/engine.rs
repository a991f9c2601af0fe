//! The swap engine: loads handler libraries as generations, hands each accepted HTTP connection
//! to the current generation, and retires old generations once drained.
//!
//! It is usable on its own, to embed hot-swapping in another server:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use hotswap_daemon::engine::{Engine, EngineConfig, events::EventSink};
//! let engine = Engine::new(EngineConfig::new("/tmp/my-app-generations".into()), EventSink::discard())?;
//! engine.swap(std::path::Path::new("target/debug/libmy_app.so")).await.map_err(|f| anyhow::anyhow!(f.message))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! engine.serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! A swap goes through stages (each timed, each able to refuse the new generation while the
//! current one keeps serving): copy → load → verify → init → state → smoke → publish. Only state,
//! smoke and publish hold the accept loop; connections that arrive meanwhile wait in the listen
//! backlog, they are not refused.

pub mod artifact;
pub mod events;
pub mod generation;
pub mod library;
mod smoke;

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hotswap_handler::abi::{InitConfig, log_level, state_policy};
use hotswap_protocol::events::{
    Event, GenerationRetired, GenerationState, RetireOutcome, SwapStage, SwapStages,
};
use hotswap_protocol::messages::GenerationStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use artifact::{Fingerprint, GenerationFiles};
use events::EventSink;
use generation::{EngineLinks, Generation, ReturnedConnection, ShutdownResult, StartError};
use library::{LoadError, LoadedLibrary};

/// A purged connection's grace to write its 503s (mirrors the SDK's).
const PURGE_GRACE: Duration = Duration::from_secs(1);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
const SMOKE_TIMEOUT: Duration = Duration::from_secs(5);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a swap waits for the old generation to switch to draining (its thread runs only
/// short calls, so this is reached only if that thread is stuck in the library).
const BEGIN_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// What happens when the old generation's state cannot be moved into the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatePolicy {
    /// The new generation starts with `State::default()`, and the swap reports a warning.
    Fresh,
    /// The swap is refused; the old generation keeps serving with its state.
    Reject,
}

/// Settings of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where each generation's copy of the library is made (best on the artifact's file system,
    /// so a hard link is possible).
    pub generations_dir: PathBuf,
    /// How long an old generation may take to finish its requests before they are answered 503.
    pub drain_timeout: Duration,
    /// A path that must answer 2xx before a new generation is published.
    pub smoke_path: Option<String>,
    pub state_policy: StatePolicy,
    pub max_body_bytes: u64,
    pub worker_threads: u32,
    pub init_timeout: Duration,
    /// The most verbose `abi::log_level` forwarded from handler code.
    pub max_log_level: u32,
    /// How many earlier artifacts are kept for rollback.
    pub rollback_depth: usize,
}

impl EngineConfig {
    pub fn new(generations_dir: PathBuf) -> Self {
        Self {
            generations_dir,
            drain_timeout: Duration::from_secs(5),
            smoke_path: None,
            state_policy: StatePolicy::Fresh,
            max_body_bytes: 2 * 1024 * 1024,
            worker_threads: 2,
            init_timeout: Duration::from_secs(10),
            max_log_level: log_level::INFO,
            rollback_depth: 5,
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
    pub unloaded_generations: u64,
    pub leaked_generations: u64,
    pub leaked_bytes: u64,
}

/// An artifact that served before the current one, kept for rollback.
#[derive(Debug)]
struct HistoryEntry {
    generation: u64,
    file: PathBuf,
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
    /// The generation new connections go to. Swaps hold the write lock while moving state, so
    /// new connections wait for the hand-off instead of reaching a half-ready generation.
    current: tokio::sync::RwLock<Option<Arc<Generation>>>,
    /// The same generation as `current`, readable without waiting for a swap in progress.
    published: Mutex<Option<Arc<Generation>>>,
    draining: Mutex<Vec<Arc<Generation>>>,
    history: Mutex<Vec<HistoryEntry>>,
    /// One swap at a time.
    swap_lock: tokio::sync::Mutex<()>,
    next_generation: AtomicU64,
    retirements: Mutex<JoinSet<()>>,
    unloaded: AtomicU64,
    leaked: AtomicU64,
    leaked_bytes: AtomicU64,
    shutting_down: AtomicBool,
    /// What HTTP clients are told while no generation is loaded.
    unavailable_reason: Mutex<String>,
    /// Connections draining generations gave back, for `serve` to pass on.
    returned_sender: mpsc::UnboundedSender<ReturnedConnection>,
    returned: Mutex<Option<mpsc::UnboundedReceiver<ReturnedConnection>>>,
}

impl Engine {
    /// An engine with no generation loaded yet.
    pub fn new(config: EngineConfig, events: EventSink) -> io::Result<Self> {
        let files = GenerationFiles::new(config.generations_dir.clone())?;
        let (returned_sender, returned) = mpsc::unbounded_channel();
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
                next_generation: AtomicU64::new(1),
                retirements: Mutex::new(JoinSet::new()),
                unloaded: AtomicU64::new(0),
                leaked: AtomicU64::new(0),
                leaked_bytes: AtomicU64::new(0),
                shutting_down: AtomicBool::new(false),
                unavailable_reason: Mutex::new("no handler is loaded yet".to_owned()),
                returned_sender,
                returned: Mutex::new(Some(returned)),
            }),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// What HTTP clients are told (with a 503) while no generation is loaded.
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

    /// Loads `artifact` as a new generation and makes it current. On failure the current
    /// generation keeps serving.
    pub async fn swap(&self, artifact: &Path) -> Result<SwapReport, SwapFailure> {
        let _one_at_a_time = self.inner.swap_lock.lock().await;
        let number = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        self.check_running(number)?;
        let started = Instant::now();
        let fingerprint = Fingerprint::of(artifact).ok();
        let (file, _) = self
            .inner
            .files
            .place(artifact, number)
            .map_err(|error| failure(number, SwapStage::Copy, error.to_string()))?;
        let copy_ms = millis(started.elapsed());
        self.load(number, file, fingerprint, copy_ms, started, false).await
    }

    /// Loads the artifact that served before the current one as a new generation.
    pub async fn rollback(&self) -> Result<SwapReport, RollbackError> {
        let _one_at_a_time = self.inner.swap_lock.lock().await;
        let Some(entry) = self.inner.history.lock().expect("history").pop() else {
            return Err(RollbackError::NothingToRollBack);
        };
        let number = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        self.check_running(number)?;
        let started = Instant::now();
        let placed = self.inner.files.place(&entry.file, number);
        let (file, _) = match placed {
            Ok(placed) => placed,
            Err(error) => {
                self.inner.history.lock().expect("history").push(entry);
                return Err(failure(number, SwapStage::Copy, error.to_string()).into());
            }
        };
        let fingerprint = Fingerprint::of(&file).ok();
        let copy_ms = millis(started.elapsed());
        let result = self.load(number, file, fingerprint, copy_ms, started, true).await;
        match result {
            Ok(report) => {
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

    async fn load(
        &self,
        number: u64,
        file: PathBuf,
        fingerprint: Option<Fingerprint>,
        copy_ms: f64,
        started: Instant,
        rollback: bool,
    ) -> Result<SwapReport, SwapFailure> {
        let mut stages = SwapStages { copy_ms, ..SwapStages::default() };
        let files = &self.inner.files;

        let clock = Instant::now();
        let (library, verify_time) = match LoadedLibrary::open(&file) {
            Ok(opened) => opened,
            Err(error) => {
                files.remove(&file);
                return Err(match error {
                    LoadError::Load(message) => failure(number, SwapStage::Load, message),
                    LoadError::Verify(message) => failure(number, SwapStage::Verify, message),
                });
            }
        };
        stages.load_ms = millis(clock.elapsed().saturating_sub(verify_time));
        stages.verify_ms = millis(verify_time);

        let clock = Instant::now();
        let config = &self.inner.config;
        let init_config = InitConfig {
            generation: number,
            worker_threads: config.worker_threads,
            max_log_level: config.max_log_level,
            max_body_bytes: config.max_body_bytes,
        };
        let spawned = {
            let links = EngineLinks {
                events: self.inner.events.clone(),
                returned: self.inner.returned_sender.clone(),
            };
            let file = file.clone();
            let init_timeout = config.init_timeout;
            tokio::task::spawn_blocking(move || {
                Generation::spawn(
                    number,
                    library,
                    file,
                    fingerprint,
                    init_config,
                    links,
                    init_timeout,
                )
            })
            .await
            .expect("the init task does not panic")
        };
        let generation = match spawned {
            Ok(generation) => generation,
            Err((error, library)) => {
                match library {
                    Some(library) => {
                        let _ = library.close();
                    }
                    None => {
                        let bytes = library::mapped_bytes(&file).unwrap_or(0);
                        self.count_leak(bytes);
                        self.report_refused_leak(number, bytes, "its init never returned");
                    }
                }
                files.remove(&file);
                let (StartError::Init(message) | StartError::State(message)) = error;
                return Err(failure(number, SwapStage::Init, message));
            }
        };
        stages.init_ms = millis(clock.elapsed());

        // From here to publishing, new connections wait.
        let mut current = self.inner.current.write().await;
        let clock = Instant::now();
        let mut warnings = Vec::new();
        let previous_number = current.as_ref().map(|previous| previous.number);
        let exported = match current.clone() {
            Some(previous) => Some((previous.number, previous.export_state(EXPORT_TIMEOUT).await)),
            None => None,
        };
        let state = match exported {
            None => Vec::new(),
            Some((_, Ok(state))) => state,
            Some((previous, Err(message))) if config.state_policy == StatePolicy::Reject => {
                drop(current);
                self.dispose(generation).await;
                return Err(failure(
                    number,
                    SwapStage::State,
                    format!("generation {previous} could not export its state: {message}"),
                ));
            }
            Some((previous, Err(message))) => {
                warnings.push(format!(
                    "generation {previous} could not export its state ({message}); generation {number} starts with fresh state"
                ));
                Vec::new()
            }
        };
        let policy = match config.state_policy {
            StatePolicy::Fresh => state_policy::FRESH,
            StatePolicy::Reject => state_policy::REJECT,
        };
        // `Handler::new` runs here, while new connections wait: it gets the init timeout.
        match generation.start(state, policy, config.init_timeout).await {
            Ok(None) => {}
            Ok(Some(reason)) => warnings.push(match previous_number {
                Some(previous) => format!(
                    "the state of generation {previous} could not be imported ({reason}); generation {number} starts with fresh state"
                ),
                None => format!("the state could not be imported ({reason}); starting fresh"),
            }),
            Err(error) => {
                drop(current);
                self.dispose(generation).await;
                return Err(match error {
                    StartError::State(message) => failure(
                        number,
                        SwapStage::State,
                        format!("the state could not be imported and the policy is \"reject\": {message}"),
                    ),
                    StartError::Init(message) => failure(number, SwapStage::Init, message),
                });
            }
        }
        stages.state_ms = millis(clock.elapsed());

        if let Some(path) = &config.smoke_path {
            let clock = Instant::now();
            if let Err(message) = smoke::check(&generation, path, SMOKE_TIMEOUT).await {
                drop(current);
                self.dispose(generation).await;
                return Err(failure(number, SwapStage::Smoke, message));
            }
            stages.smoke_ms = millis(clock.elapsed());
        }

        let clock = Instant::now();
        // The old generation stops keeping connections alive before the new one is published,
        // so that a request read after the swap is read by the new code.
        if let Some(previous) = current.as_ref() {
            previous.begin_drain(config.drain_timeout, BEGIN_DRAIN_TIMEOUT).await;
        }
        *self.inner.published.lock().expect("published") = Some(generation.clone());
        let previous = current.replace(generation);
        drop(current);
        stages.publish_ms = millis(clock.elapsed());
        let swap_ms = millis(started.elapsed());

        if let Some(previous) = previous {
            if !rollback {
                self.remember(&previous);
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

    /// Keeps the artifact of a replaced generation for rollback, dropping the oldest beyond the
    /// configured depth.
    fn remember(&self, generation: &Generation) {
        let mut history = self.inner.history.lock().expect("history");
        history.push(HistoryEntry {
            generation: generation.number,
            file: generation.library_file.clone(),
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
    /// connections, then shuts it down and unloads it.
    fn retire(&self, generation: Arc<Generation>) {
        *generation.retired_at.lock().expect("retired_at") = Some(Instant::now());
        self.inner.draining.lock().expect("draining").push(generation.clone());
        let engine = self.clone();
        self.inner.retirements.lock().expect("retirements").spawn(async move {
            engine.drain_and_unload(generation).await;
        });
    }

    async fn drain_and_unload(&self, generation: Arc<Generation>) {
        let drain_timeout = self.inner.config.drain_timeout;
        let started = Instant::now();
        let deadline =
            tokio::time::Instant::now() + drain_timeout + PURGE_GRACE + Duration::from_secs(1);
        wait_until_idle(&generation, deadline).await;
        let (outcome, leaked_bytes, reason) = self.unload(&generation).await;
        self.inner
            .draining
            .lock()
            .expect("draining")
            .retain(|other| other.number != generation.number);
        let requests_cut = generation.counters.cut.load(Ordering::Relaxed);
        match outcome {
            RetireOutcome::Unloaded => tracing::info!("generation {} unloaded", generation.number),
            RetireOutcome::Leaked => tracing::warn!(
                "generation {} could not be unloaded and stays mapped ({leaked_bytes} bytes): {}",
                generation.number,
                reason.as_deref().unwrap_or("unknown reason")
            ),
        }
        if !self.in_history(&generation.library_file) {
            self.inner.files.remove(&generation.library_file);
        }
        self.inner.events.send(Event::GenerationRetired(GenerationRetired {
            generation: generation.number,
            outcome,
            leaked_bytes,
            reason,
            drain_ms: millis(started.elapsed()),
            requests_cut,
        }));
    }

    /// Shuts down and unloads a generation that never served (a refused swap).
    async fn dispose(&self, generation: Arc<Generation>) {
        let (outcome, leaked_bytes, reason) = self.unload(&generation).await;
        if outcome == RetireOutcome::Leaked {
            self.report_refused_leak(
                generation.number,
                leaked_bytes,
                reason.as_deref().unwrap_or("unknown reason"),
            );
        }
        self.inner.files.remove(&generation.library_file);
    }

    /// A refused generation that stays mapped is reported like a retired one: in the log, in
    /// `status` (counted by the caller) and as an event, never silently.
    fn report_refused_leak(&self, number: u64, leaked_bytes: u64, reason: &str) {
        tracing::warn!(
            "refused generation {number} could not be unloaded and stays mapped ({leaked_bytes} bytes): {reason}"
        );
        self.inner.events.send(Event::GenerationRetired(GenerationRetired {
            generation: number,
            outcome: RetireOutcome::Leaked,
            leaked_bytes,
            reason: Some(format!("refused at start and could not be unloaded: {reason}")),
            drain_ms: 0.0,
            requests_cut: 0,
        }));
    }

    async fn unload(&self, generation: &Generation) -> (RetireOutcome, u64, Option<String>) {
        let result = match generation.shutdown(SHUTDOWN_TIMEOUT).await {
            ShutdownResult::Clean => match generation.unload() {
                Ok(0) => (RetireOutcome::Unloaded, 0, None),
                Ok(bytes) => (
                    RetireOutcome::Leaked,
                    bytes,
                    Some("still mapped after dlclose: the library registered a thread-local destructor on \
                          a thread that is still alive, or the platform does not unload"
                        .to_owned()),
                ),
                Err(error) => (RetireOutcome::Leaked, generation.leak(), Some(format!("dlclose failed: {error}"))),
            },
            ShutdownResult::ThreadsLeft(reason) => (RetireOutcome::Leaked, generation.leak(), Some(reason)),
        };
        match result.0 {
            RetireOutcome::Unloaded => {
                self.inner.unloaded.fetch_add(1, Ordering::Relaxed);
            }
            RetireOutcome::Leaked => self.count_leak(result.1),
        }
        result
    }

    fn count_leak(&self, bytes: u64) {
        self.inner.leaked.fetch_add(1, Ordering::Relaxed);
        self.inner.leaked_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Accepts HTTP connections on `listener` and hands each to the current generation, until
    /// `shutdown` completes. Connections that draining generations give back go to the current
    /// generation too. While no generation is loaded, connections get a 503 that says why. An
    /// engine serves once: a second call fails.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let mut returned =
            self.inner.returned.lock().expect("returned").take().ok_or_else(|| {
                io::Error::new(io::ErrorKind::AlreadyExists, "the engine is already serving")
            })?;
        let mut unavailable = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let (socket, unread) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(connection) = returned.recv() => (connection.socket, connection.unread),
                accepted = listener.accept() => match accepted.and_then(|(stream, _)| stream.into_std()) {
                    Ok(stream) => (OwnedFd::from(stream), Vec::new()),
                    Err(error) => {
                        // Out of descriptors or a connection reset before accept: keep serving.
                        tracing::warn!("accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            while unavailable.try_join_next().is_some() {}
            let current = self.inner.current.read().await.clone();
            match current {
                Some(generation) => {
                    if !generation.serve(socket, unread) {
                        tracing::warn!(
                            "generation {} is gone; a connection was closed",
                            generation.number
                        );
                    }
                }
                None => {
                    let reason = self.inner.unavailable_reason.lock().expect("reason").clone();
                    let stream = std::net::TcpStream::from(socket);
                    if let Ok(stream) = tokio::net::TcpStream::from_std(stream) {
                        unavailable.spawn(answer_unavailable(stream, reason));
                    }
                }
            }
        }
        // From now on connections given back are closed: nothing serves them any more.
        drop(returned);
        unavailable.shutdown().await;
        Ok(())
    }

    /// Retires the current generation (in-flight requests finish, up to the drain timeout) and
    /// waits until every generation is unloaded. No swap happens after this.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let _no_more_swaps = self.inner.swap_lock.lock().await;
        let current = self.inner.current.write().await.take();
        self.inner.published.lock().expect("published").take();
        if let Some(current) = current {
            current.begin_drain(self.inner.config.drain_timeout, BEGIN_DRAIN_TIMEOUT).await;
            self.retire(current);
        }
        let mut retirements =
            std::mem::take(&mut *self.inner.retirements.lock().expect("retirements"));
        while retirements.join_next().await.is_some() {}
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
            let counters = &generation.counters;
            generations.push(GenerationStatus {
                generation: generation.number,
                state,
                connections: counters.connections.load(Ordering::Relaxed),
                in_flight: counters.in_flight.load(Ordering::Relaxed),
                requests: counters.requests.load(Ordering::Relaxed),
                age_ms: generation.loaded_at.elapsed().as_millis() as u64,
            });
        }
        EngineStatus {
            current_generation: current.as_ref().map(|generation| generation.number),
            generations,
            unloaded_generations: self.inner.unloaded.load(Ordering::Relaxed),
            leaked_generations: self.inner.leaked.load(Ordering::Relaxed),
            leaked_bytes: self.inner.leaked_bytes.load(Ordering::Relaxed),
        }
    }

    /// True while an earlier artifact is kept for rollback.
    pub fn can_roll_back(&self) -> bool {
        !self.inner.history.lock().expect("history").is_empty()
    }
}

async fn wait_until_idle(generation: &Generation, deadline: tokio::time::Instant) {
    let counters = &generation.counters;
    loop {
        let idle = counters.idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if counters.is_idle() {
            return;
        }
        if tokio::time::timeout_at(deadline, idle).await.is_err() {
            return;
        }
    }
}

/// Answers a connection with 503 while no generation is loaded: reads the request head (so the
/// client sees the answer, not a reset), then writes the reason.
async fn answer_unavailable(mut stream: tokio::net::TcpStream, reason: String) {
    let mut head = Vec::new();
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
    SwapFailure { generation, stage, message }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
