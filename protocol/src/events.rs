//! Events: notifications the daemon sends to every client that called `subscribe`, and the data
//! types they share with results (diagnostics, swap stages).
//!
//! On the wire an event is a JSON-RPC notification: `{"jsonrpc":"2.0","method":"buildStarted",
//! "params":{...}}`. A client must ignore notifications whose method it does not know.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the daemon tells subscribers, in the order it happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "camelCase")]
pub enum Event {
    /// A build started (after saves settled, on `reload`, or at start-up).
    BuildStarted(BuildStarted),
    /// A line of build progress: the crate being compiled, or waiting for cargo's lock.
    BuildProgress(BuildProgress),
    /// A build ended, with the compiler's diagnostics (also on success: warnings).
    BuildFinished(BuildFinished),
    /// A new generation serves.
    SwapFinished(SwapFinished),
    /// A new generation was refused at `stage`; the current one keeps serving.
    SwapFailed(SwapFailed),
    /// An old generation finished draining and its process ended.
    GenerationRetired(GenerationRetired),
    /// A generation's process died (a crash in handler code, or killed from outside); says how,
    /// and what the daemon does about it.
    GenerationCrashed(GenerationCrashed),
    /// A handler panicked while answering a request (the request got a 500).
    HandlerPanicked(HandlerPanicked),
    /// A log record from the daemon or from handler code (`tracing` in the handler).
    Log(LogLine),
    /// Files the app reads at run time (under an asset directory, or a runtime template) were
    /// saved: no build starts; pages swap the stylesheets and reload for anything else.
    AssetsChanged(AssetsChanged),
}

impl Event {
    /// Every event method name.
    pub const METHODS: &'static [&'static str] = &[
        "buildStarted",
        "buildProgress",
        "buildFinished",
        "swapFinished",
        "swapFailed",
        "generationRetired",
        "generationCrashed",
        "handlerPanicked",
        "log",
        "assetsChanged",
    ];

    /// The wire name of this event.
    pub fn method(&self) -> &'static str {
        match self {
            Event::BuildStarted(_) => "buildStarted",
            Event::BuildProgress(_) => "buildProgress",
            Event::BuildFinished(_) => "buildFinished",
            Event::SwapFinished(_) => "swapFinished",
            Event::SwapFailed(_) => "swapFailed",
            Event::GenerationRetired(_) => "generationRetired",
            Event::GenerationCrashed(_) => "generationCrashed",
            Event::HandlerPanicked(_) => "handlerPanicked",
            Event::Log(_) => "log",
            Event::AssetsChanged(_) => "assetsChanged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildStarted {
    /// Numbers builds of this daemon from 1.
    pub build: u64,
    pub reason: BuildReason,
    /// The saved paths that caused it (empty for `reload` and start-up).
    #[serde(default)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BuildReason {
    Initial,
    Save,
    Reload,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildProgress {
    pub build: u64,
    /// Cargo's status line, e.g. `Compiling todo v0.1.0 (/home/me/todo)`.
    pub message: String,
    /// True while cargo waits for a lock held by another cargo (e.g. rust-analyzer).
    #[serde(default)]
    pub blocked: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildFinished {
    pub build: u64,
    pub outcome: BuildOutcome,
    pub duration_ms: f64,
    /// All diagnostics of the build, for every file; an editor replaces what it showed before.
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
    /// What compiled it: cargo, or rustc run directly (the fast path for saves of the handler's
    /// own sources). Absent from daemons before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_with: Option<BuiltWith>,
}

/// What ran a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BuiltWith {
    /// `cargo build`: for the first build, and whenever anything but the handler's own sources
    /// may have changed (a manifest, `Cargo.lock`, a build script, a path dependency...).
    Cargo,
    /// The rustc command line cargo last used for the handler crate, run again directly.
    Rustc,
    /// The same, linking only the app's code: its dependencies are in a shared library built
    /// once (`shared_deps` in hotswap.toml).
    RustcSharedDeps,
}

impl BuiltWith {
    /// "cargo", "rustc directly".
    pub fn describe(self) -> &'static str {
        match self {
            BuiltWith::Cargo => "cargo",
            BuiltWith::Rustc => "rustc directly",
            BuiltWith::RustcSharedDeps => "rustc directly, on the shared dependency library",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BuildOutcome {
    /// A new artifact: a swap follows.
    Succeeded,
    /// The artifact is the one already serving: no swap.
    Unchanged,
    Failed,
    /// A newer save superseded it, or `cancelBuild` stopped it.
    Cancelled,
}

/// A compiler message about one place in the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    pub severity: Severity,
    /// E.g. `E0308` or `unused_variables`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
    /// Absolute path of the file, when the message points into one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range>,
    /// The compiler's full text for this message, as a terminal would show it (no colour codes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered: Option<String>,
    /// Other places the message refers to (secondary spans, notes with a place).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<RelatedInformation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Error,
    Warning,
    Note,
    Help,
}

/// A range in a file, as the Language Server Protocol counts it: lines from 0, and characters
/// from 0 in UTF-16 code units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub start: Position,
    pub end: Position,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub line: u32,
    pub character: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelatedInformation {
    pub file: PathBuf,
    pub range: Range,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwapFinished {
    pub generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_generation: Option<u64>,
    /// True when this generation re-loaded an earlier artifact (`rollback`).
    #[serde(default)]
    pub rollback: bool,
    /// Set when this generation replaces one that crashed: that generation's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_crash: Option<u64>,
    /// From the artifact to the new generation serving.
    pub swap_ms: f64,
    /// From the save (or request) that caused it to the new generation serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_ms: Option<f64>,
    pub stages: SwapStages,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Milliseconds spent in each stage of a swap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwapStages {
    /// Giving the artifact a file of its own (hard link or copy).
    pub copy_ms: f64,
    /// `dlopen` and looking up the entry symbol.
    pub load_ms: f64,
    /// Checking the library's ABI header.
    pub verify_ms: f64,
    /// Starting the generation's runtime.
    pub init_ms: f64,
    /// Moving state from the old generation to the new one and creating the app with it. The
    /// old generation keeps answering reads meanwhile; requests that can write wait (see
    /// `writes_held_ms`).
    pub state_ms: f64,
    /// The smoke request, when configured.
    pub smoke_ms: f64,
    /// Making the new generation current.
    pub publish_ms: f64,
    /// How long requests that can write (POST, PUT, PATCH, DELETE) arriving during the swap
    /// waited: from the state export until the new generation served them. Reads never wait.
    #[serde(default)]
    pub writes_held_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwapFailed {
    /// The generation number the attempt would have had.
    pub generation: u64,
    pub stage: SwapStage,
    pub message: String,
    /// For a state that does not read as the new build's type: where it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateProblem>,
    /// Places in the code the refusal is about (the struct of a state that does not read), for
    /// editors to show with the build's diagnostics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

/// Why a state does not read as the new build's `State`, as the app's SDK found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateProblem {
    /// The whole explanation, with the fixes.
    pub message: String,
    /// The struct of the new state type where it failed, as written in the code.
    #[serde(rename = "struct", default, skip_serializing_if = "Option::is_none")]
    pub struct_name: Option<String>,
    /// The field concerned: missing, of another type, or no longer read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The path inside the state, e.g. `items["3f2a"].priority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Where a swap failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SwapStage {
    /// The artifact could not be given a file of its own (e.g. it was deleted).
    Copy,
    /// `dlopen` failed, or the entry symbol is missing.
    Load,
    /// The ABI header does not match this daemon.
    Verify,
    /// The handler's runtime or app failed to start, panicked or timed out.
    Init,
    /// The old generation's state could not be moved into the new one.
    State,
    /// The smoke request did not answer 2xx.
    Smoke,
    /// Publishing the generation failed (e.g. the daemon is stopping).
    Publish,
}

impl std::fmt::Display for SwapStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SwapStage::Copy => "copy",
            SwapStage::Load => "load",
            SwapStage::Verify => "verify",
            SwapStage::Init => "init",
            SwapStage::State => "state",
            SwapStage::Smoke => "smoke",
            SwapStage::Publish => "publish",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GenerationState {
    /// New connections go here.
    Current,
    /// Replaced; finishing its requests before its process ends.
    Draining,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationRetired {
    pub generation: u64,
    pub outcome: RetireOutcome,
    /// What did not stop in time, when its process had to be killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// From the swap that replaced it to the end of its process.
    pub drain_ms: f64,
    /// Requests still running at the drain timeout, answered 503.
    #[serde(default)]
    pub requests_cut: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RetireOutcome {
    /// The app stopped and the process exited; everything it held is returned.
    Ended,
    /// Something in it did not stop (a thread that never returns): the process was killed.
    /// Everything it held is returned all the same.
    Killed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationCrashed {
    pub generation: u64,
    /// The process that died.
    pub pid: u32,
    /// What happened, in one line: "stack overflow in thread 'hotswap-g3' (killed by SIGSEGV
    /// (invalid memory access))".
    pub cause: String,
    /// The signal that killed it, with what it usually means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last lines it wrote to stderr (Rust's runtime says why there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_words: Vec<String>,
    /// The request the crashing thread was running, as `METHOD /path`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    pub recovery: CrashRecovery,
    /// The whole story for a notification: what crashed, how, and what serves now.
    pub message: String,
}

/// What the daemon does after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum CrashRecovery {
    /// The same build starts again in a new process, from the last state snapshot.
    Restart {
        /// How old that snapshot is (absent: the app keeps no state).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot_age_ms: Option<u64>,
    },
    /// The build crashed during start-up or again and again: the build that served before it
    /// (generation `generation`'s) serves again.
    PreviousBuild { generation: u64 },
    /// Nothing can serve: HTTP answers 503 with the reason until the next save.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerPanicked {
    pub generation: u64,
    pub message: String,
    /// `file:line:column` of the panic, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The request whose handler panicked, as `METHOD /path`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub level: LogLevel,
    /// The module path or `tracing` target that logged it.
    pub target: String,
    pub message: String,
    /// The generation whose handler code logged it; absent for the daemon's own records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetsChanged {
    pub files: Vec<ChangedAsset>,
}

/// One saved file that the app reads at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangedAsset {
    /// Absolute path of the saved file.
    pub path: PathBuf,
    /// The path inside its asset directory (`css/site.css` for `assets/css/site.css`), or, for a
    /// runtime template, inside the handler package, with `/` between components: what a page
    /// matches against the end of its stylesheet URLs.
    pub relative_path: String,
}
