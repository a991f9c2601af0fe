//! Requests a client sends to the daemon, with their params and results.
//!
//! Each method is a unit type implementing [`Method`], which ties its wire name to its params and
//! result types; [`ClientRequest`] is the closed set of them, as the daemon receives it. Field names
//! are camelCase on the wire. Unknown fields are ignored, so a newer client may add optional ones.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{BuildOutcome, Diagnostic, GenerationState, SwapStage, SwapStages};
use crate::jsonrpc::error_code;

/// The protocol version this crate speaks, sent in `initialize`.
pub const PROTOCOL_VERSION: u32 = 1;

/// One request method: its wire name, params and result.
pub trait Method {
    const NAME: &'static str;
    type Params: Serialize + DeserializeOwned + std::fmt::Debug + Clone + PartialEq;
    type Result: Serialize + DeserializeOwned + std::fmt::Debug + Clone + PartialEq;
}

/// Params of methods that take none. On the wire: `{}`, `null`, or no `params` member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoParams {}

macro_rules! methods {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal ($params:ty) -> $result:ty; )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $variant;
            impl Method for $variant {
                const NAME: &'static str = $name;
                type Params = $params;
                type Result = $result;
            }
        )*

        /// Every request a client can send, with its params, as the daemon receives it.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ClientRequest {
            $( $(#[$doc])* $variant($params), )*
        }

        impl ClientRequest {
            /// Every method name, in protocol order.
            pub const METHODS: &'static [&'static str] = &[$($name),*];

            /// The wire name of this request's method.
            pub fn method(&self) -> &'static str {
                match self { $( ClientRequest::$variant(_) => $name, )* }
            }

            /// Builds a typed request from a method name and its params (`{}` when absent).
            /// Errors carry the JSON-RPC code and a message for the client.
            pub fn from_method_and_params(method: &str, params: Value) -> Result<Self, (i64, String)> {
                match method {
                    $( $name => serde_json::from_value(params)
                        .map(ClientRequest::$variant)
                        .map_err(|error| (error_code::INVALID_PARAMS, format!("invalid params for {}: {error}", $name))), )*
                    other => Err((error_code::METHOD_NOT_FOUND, format!(
                        "unknown method {other:?}; the methods are: {}", Self::METHODS.join(", ")
                    ))),
                }
            }

            /// The method name and params, for encoding.
            pub fn method_and_params(&self) -> (&'static str, Value) {
                match self {
                    $( ClientRequest::$variant(params) => ($name, serde_json::to_value(params).expect("params serialize")), )*
                }
            }
        }
    };
}

methods! {
    /// The first message on every connection: agrees on the protocol version.
    Initialize = "initialize" (InitializeParams) -> InitializeResult;
    /// Files were saved. The daemon builds (after ≈50 ms of quiet) if any is in the handler's
    /// packages, and answers at once with which paths it took and which it ignored.
    DidSave = "didSave" (DidSaveParams) -> DidSaveResult;
    /// Build and swap now; answers when the new generation serves (or why it does not).
    Reload = "reload" (ReloadParams) -> ReloadOutcome;
    /// Load the artifact that served before the current one again, as a new generation.
    Rollback = "rollback" (NoParams) -> ReloadOutcome;
    /// What the daemon is serving and doing.
    Status = "status" (NoParams) -> StatusResult;
    /// Receive events on this connection from now on.
    Subscribe = "subscribe" (NoParams) -> SubscribeResult;
    /// Stop the build in progress, if any.
    CancelBuild = "cancelBuild" (NoParams) -> CancelBuildResult;
    /// Stop the daemon: finish in-flight HTTP requests, end every generation, exit.
    Shutdown = "shutdown" (NoParams) -> NoParams;
    /// The current generation's state as JSON, written to a file the answer names.
    State = "state" (NoParams) -> StateResult;
    /// Serve the current build again with the state in a JSON file (as `state` writes it), through
    /// the same checks as a swap: a state that does not read is refused and the old one kept.
    LoadState = "loadState" (LoadStateParams) -> ReloadOutcome;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadParams {
    /// Start the new generation with its default state: drop the current state on purpose
    /// (it is kept for `rollback`). The swap happens even when the build changed nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fresh_state: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadStateParams {
    /// A JSON file: `{"version": N, "type": "...", "state": ...}` as `state` writes it, or the
    /// bare state (then read as the current build's state version).
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateResult {
    /// The generation whose state it is.
    pub generation: u64,
    /// The file holding `{"version": N, "type": "...", "state": ...}`; absent when the app keeps
    /// no state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Size of the state as it moves between generations.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    /// Must equal the daemon's [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// Who is connecting, for the daemon's log: `"hotswap-cli"`, `"vscode"`, `"hotswap-lsp"`.
    pub client_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResult {
    pub protocol_version: u32,
    pub daemon_version: String,
    pub pid: u32,
    /// The canonical workspace root (the directory holding `hotswap.toml`).
    pub workspace_root: PathBuf,
    /// The handler package the daemon builds.
    pub package: String,
    /// The HTTP address the app is served on, e.g. `127.0.0.1:3000`.
    pub listen_address: String,
    /// The generation serving now, if one is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DidSaveParams {
    /// Absolute paths of the saved files.
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DidSaveResult {
    /// Paths inside the handler's packages: a build follows.
    pub accepted: Vec<PathBuf>,
    /// Paths that cause no build, each with why.
    pub ignored: Vec<IgnoredPath>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoredPath {
    pub path: PathBuf,
    /// E.g. `"outside the handler's packages"`.
    pub reason: String,
}

/// How a `reload` or `rollback` ended. Failures are outcomes, not JSON-RPC errors: a broken build
/// is normal work for this tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum ReloadOutcome {
    /// A new generation serves.
    #[serde(rename_all = "camelCase")]
    Swapped {
        generation: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_generation: Option<u64>,
        /// Build time; absent for a rollback, which builds nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        build_ms: Option<f64>,
        /// From the artifact to the new generation serving.
        swap_ms: f64,
        /// From the request (or the last save) to the new generation serving.
        total_ms: f64,
        stages: SwapStages,
        /// Things the user should know that did not stop the swap (e.g. state started fresh).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    },
    /// The build produced the artifact that already serves: nothing to swap.
    #[serde(rename_all = "camelCase")]
    Unchanged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u64>,
        build_ms: f64,
    },
    /// The build failed; the current generation keeps serving.
    #[serde(rename_all = "camelCase")]
    BuildFailed {
        build_ms: f64,
        diagnostics: Vec<Diagnostic>,
        /// The compiler's errors as a human would read them in a terminal, plain text.
        rendered: String,
    },
    /// The build succeeded but the new generation was refused; the current one keeps serving.
    #[serde(rename_all = "camelCase")]
    SwapFailed {
        /// The generation number the attempt would have had.
        generation: u64,
        stage: SwapStage,
        message: String,
        /// Places in the code the refusal is about (the struct of a state that does not read).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        diagnostics: Vec<Diagnostic>,
    },
    /// The build was cancelled (`cancelBuild`, or the daemon is stopping).
    #[serde(rename_all = "camelCase")]
    Cancelled { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResult {
    pub daemon_version: String,
    pub pid: u32,
    pub workspace_root: PathBuf,
    pub package: String,
    /// The socket path (or pipe name) clients connect to.
    pub endpoint: String,
    pub listen_address: String,
    pub uptime_ms: u64,
    /// The generation new connections go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_generation: Option<u64>,
    /// Every loaded generation: the current one and those still draining.
    pub generations: Vec<GenerationStatus>,
    /// A build is running now.
    pub building: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_build: Option<LastBuild>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_swap: Option<LastSwap>,
    /// Set while the code on disk is not what serves: the last swap was refused, and none
    /// succeeded since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_swap: Option<RefusedSwap>,
    /// The last crash of a generation, while it is the latest news.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_crash: Option<LastCrash>,
    /// The state the daemon keeps for a crash or a restart, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotStatus>,
    /// Generations whose process ended after draining, so far.
    pub ended_generations: u64,
    /// Generations that crashed, so far.
    #[serde(default)]
    pub crashes: u64,
    /// The handler's dependencies as one shared library that direct builds link on: being
    /// built, ready, or not used and why. Absent from daemons before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_deps: Option<SharedDepsStatus>,
}

/// The shared dependency library (`shared_deps` in hotswap.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum SharedDepsStatus {
    /// Being built in the background (after a cargo build compiled the handler).
    Building,
    /// Ready: saves of the handler's own sources link on it.
    #[serde(rename_all = "camelCase")]
    Ready { bytes: u64, build_ms: u64 },
    /// Not used: saves link the dependencies into the handler's library, as cargo does.
    #[serde(rename_all = "camelCase")]
    Off { reason: String },
}

/// A swap that was refused: the generation that keeps serving, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedSwap {
    /// The generation number the refused attempt would have had.
    pub generation: u64,
    /// The build it came from, when a build made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<u64>,
    pub stage: SwapStage,
    pub message: String,
    /// The generation that keeps serving (none: nothing serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<u64>,
    pub ago_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastCrash {
    pub crash: crate::events::GenerationCrashed,
    pub ago_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// The generation that exported it.
    pub generation: u64,
    pub bytes: u64,
    pub age_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationStatus {
    pub generation: u64,
    pub state: GenerationState,
    /// Open HTTP connections served by this generation.
    pub connections: u64,
    /// Requests being answered by this generation now.
    pub in_flight: u64,
    /// Requests answered by this generation so far.
    pub requests: u64,
    pub age_ms: u64,
    /// Its host process.
    #[serde(default)]
    pub pid: u32,
    /// Resident memory of its process.
    #[serde(default)]
    pub rss_bytes: u64,
    /// Open long-lived streams (WebSockets, streamed responses).
    #[serde(default)]
    pub streams: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastBuild {
    pub build: u64,
    pub outcome: BuildOutcome,
    pub duration_ms: f64,
    pub errors: u32,
    pub warnings: u32,
    pub finished_ago_ms: u64,
    /// The build's diagnostics, as `buildFinished` carried them: a client that connects later
    /// can show what is wrong now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
    /// What compiled it (cargo, or rustc directly), as `buildFinished` said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_with: Option<crate::events::BuiltWith>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastSwap {
    pub generation: u64,
    pub swap_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
    pub rollback: bool,
    pub ago_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeResult {
    pub subscribed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelBuildResult {
    /// False when no build was running.
    pub cancelled: bool,
}
