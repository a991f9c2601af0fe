//! One generation: a host process that loaded one build of the handler library, and what the
//! engine knows about it.
//!
//! **Architecture Invariant:** handler code runs only in the generation's host process, never in
//! the daemon. Retiring a generation is ending its process: whatever its code left behind
//! (threads, tasks, memory, descriptors) ends with it.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hotswap_protocol::control::{LoadCommand, LoadStage, StatePolicy};
use hotswap_protocol::events::{StateProblem, SwapStage};
use tokio::sync::watch;

use super::artifact::Fingerprint;
use super::host_process::{HostExit, HostFailure, HostLinks, HostProcess, Loaded, StateSnapshot};

/// A generation of the handler.
#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    /// The build it runs: a restart after a crash runs the same build in a new generation.
    pub build: u64,
    /// The file this generation loaded (its own hard link or copy of the artifact).
    pub library_file: PathBuf,
    /// The artifact it was made from, as it was when loaded.
    pub artifact_fingerprint: Option<Fingerprint>,
    pub loaded_at: Instant,
    pub sdk_version: String,
    pub host: HostProcess,
    /// When it stopped being current.
    pub retired_at: Mutex<Option<Instant>>,
    /// Set when the engine ends it on purpose (retired, refused): its exit is then no crash.
    pub ending: AtomicBool,
    /// Started without the previous generation's state (dropped on purpose, or under the
    /// `fresh` policy): a rollback then brings back the older state.
    started_fresh: AtomicBool,
}

/// Why a generation could not start, with the stage to report.
#[derive(Debug)]
pub struct StartFailure {
    pub stage: SwapStage,
    pub message: String,
    /// For a state that does not read: where, as the SDK found it.
    pub state_problem: Option<StateProblem>,
}

impl Generation {
    /// Loads `library_file` in `host` (a fresh or spare host process).
    #[allow(clippy::too_many_arguments)]
    pub async fn load(
        number: u64,
        build: u64,
        host: HostProcess,
        library_file: PathBuf,
        artifact_fingerprint: Option<Fingerprint>,
        load: LoadCommand,
        links: HostLinks,
        timeout: Duration,
    ) -> Result<(Generation, Loaded), (StartFailure, HostProcess)> {
        host.link(number, links);
        match host.load(load, timeout).await {
            Ok(loaded) => {
                let generation = Generation {
                    number,
                    build,
                    library_file,
                    artifact_fingerprint,
                    loaded_at: Instant::now(),
                    sdk_version: loaded.sdk_version.clone(),
                    host,
                    retired_at: Mutex::new(None),
                    ending: AtomicBool::new(false),
                    started_fresh: AtomicBool::new(false),
                };
                Ok((generation, loaded))
            }
            Err(failure) => {
                let (stage, message) = match failure {
                    HostFailure::Refused { stage, message, .. } => (
                        match stage {
                            Some(LoadStage::Load) => SwapStage::Load,
                            Some(LoadStage::Verify) => SwapStage::Verify,
                            _ => SwapStage::Init,
                        },
                        message,
                    ),
                    HostFailure::Ended => (
                        SwapStage::Init,
                        format!(
                            "the new generation's process {} while loading",
                            death(&host).await
                        ),
                    ),
                    HostFailure::TimedOut => (
                        SwapStage::Init,
                        format!(
                            "the handler's init did not finish within {} ms; its process is ended",
                            timeout.as_millis()
                        ),
                    ),
                };
                Err((StartFailure { stage, message, state_problem: None }, host))
            }
        }
    }

    /// Creates the app with `state` (none: its default). `Ok(Some(warning))` when the state did
    /// not import and the app started fresh.
    pub async fn start(
        &self,
        state: Option<&StateSnapshot>,
        policy: StatePolicy,
        timeout: Duration,
    ) -> Result<Option<String>, StartFailure> {
        match self.host.start(policy, state, timeout).await {
            Ok(warning) => Ok(warning),
            Err(HostFailure::Refused { state: true, message, .. }) => {
                // The SDK describes a state that does not read as JSON; older ones as text.
                let problem = serde_json::from_str::<StateProblem>(&message).ok();
                let text = problem.as_ref().map_or(message, |problem| problem.message.clone());
                Err(StartFailure { stage: SwapStage::State, message: text, state_problem: problem })
            }
            Err(HostFailure::Refused { message, .. }) => {
                Err(StartFailure { stage: SwapStage::Init, message, state_problem: None })
            }
            Err(HostFailure::Ended) => Err(StartFailure {
                stage: SwapStage::Init,
                message: format!(
                    "the new generation's process {} while the app was starting",
                    death(&self.host).await
                ),
                state_problem: None,
            }),
            Err(HostFailure::TimedOut) => Err(StartFailure {
                stage: SwapStage::Init,
                message: format!(
                    "the app did not start within {} ms (Handler::new blocks?); its process is ended",
                    timeout.as_millis()
                ),
                state_problem: None,
            }),
        }
    }

    /// Hands a connection to the generation, with bytes already read from it (empty for a new
    /// one). `false` if the generation is gone (the socket is then closed).
    pub async fn serve(&self, socket: OwnedFd, unread: &[u8]) -> bool {
        self.host.serve(socket, unread).await
    }

    /// The app's state (`Ok(None)`: it keeps none).
    pub async fn export_state(&self, timeout: Duration) -> Result<Option<StateSnapshot>, String> {
        match self.host.export_state(timeout).await {
            Ok(snapshot) => Ok(snapshot),
            Err(HostFailure::Refused { message, .. }) => Err(message),
            Err(HostFailure::Ended) => {
                Err(format!("its process {} while exporting the state", death(&self.host).await))
            }
            Err(HostFailure::TimedOut) => Err(format!(
                "exporting the state took more than {} ms (`export_timeout_ms` in the [swap] \
                     section of hotswap.toml)",
                timeout.as_millis()
            )),
        }
    }

    /// The exit of its process, once it ended.
    pub fn exit(&self) -> watch::Receiver<Option<HostExit>> {
        self.host.exit()
    }

    pub fn is_ending(&self) -> bool {
        self.ending.load(Ordering::SeqCst)
    }

    pub fn mark_ending(&self) {
        self.ending.store(true, Ordering::SeqCst);
    }

    pub fn started_fresh(&self) -> bool {
        self.started_fresh.load(Ordering::SeqCst)
    }

    pub fn mark_started_fresh(&self) {
        self.started_fresh.store(true, Ordering::SeqCst);
    }
}

/// How the process died, in the words of a crash report ("memory allocation of N bytes failed
/// (killed by SIGABRT)"), once it is gone (at most 1 s of waiting).
pub async fn death(host: &HostProcess) -> String {
    let mut exit = host.exit();
    let ended = tokio::time::timeout(Duration::from_secs(1), exit.wait_for(Option::is_some))
        .await
        .ok()
        .and_then(|exit| exit.ok().and_then(|exit| *exit));
    let Some(ended) = ended else { return "stopped answering".to_owned() };
    let words = host.last_words().await;
    let counters = host.counters();
    let report = super::crash::report(
        0,
        host.pid,
        ended,
        counters.crash.read(),
        counters.last_panics.read(),
        words,
    );
    format!("crashed: {}", report.cause)
}
