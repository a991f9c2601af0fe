//! The session: the one task that owns the server's state, talks to the daemon and to the
//! editor. Handlers send it [`EditorEvent`]s; the daemon link sends it protocol events; the
//! requests it sends to the daemon run in a `JoinSet` it owns and come back as [`TaskOutcome`]s.
//! Everything the editor sees is sent from here, in the order it happened.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use hotswap_protocol::Endpoint;
use hotswap_protocol::events::{
    BuildFinished, BuildOutcome, BuildStarted, CrashRecovery, Event, LogLevel, RetireOutcome,
};
use hotswap_protocol::messages::{
    CancelBuild, CancelBuildResult, DidSave, DidSaveParams, DidSaveResult, NoParams, Reload,
    ReloadOutcome, ReloadParams, Rollback, Status, StatusResult,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_lsp_server::ls_types::{
    InitializeParams, MessageType, NumberOrString, ProgressToken, Uri,
};
use tower_lsp_server::{Cancellable, Client, OngoingProgress, Unbounded};

use crate::ServerEnvironment;
use crate::daemon_link::{
    self, AutoStartedDaemon, DaemonError, DaemonLink, QUICK_REQUEST_TIMEOUT, auto_start_log_path,
};
use crate::editor_process::process_is_running;
use crate::language_server::{CommandAnswer, folder_paths, request_failed};
use crate::lsp_conversion::{lsp_diagnostic, show_in_browser, uri_of_file_path};
use crate::published_diagnostics::{PublishedDiagnostics, diagnostics_by_file};
use crate::settings::{MessageDelivery, Settings, hotswap_section};
use crate::user_messages;
use crate::workspace_root::{nearest_workspace_root, workspace_root_of_folders};

/// The first wait before connecting again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// How long the editor may take to answer `window/showDocument`.
const SHOW_DOCUMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the editor may take to accept a progress token before the build shows none.
const PROGRESS_CREATE_TIMEOUT: Duration = Duration::from_secs(2);

/// The commands of `workspace/executeCommand`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HotswapCommand {
    Reload,
    /// Reload, dropping the state on purpose.
    ReloadFreshState,
    Rollback,
    Status,
    CancelBuild,
    /// Open the app's address in the browser (`window/showDocument` with `external`).
    OpenInBrowser,
}

impl HotswapCommand {
    pub(crate) const ALL: [HotswapCommand; 6] = [
        HotswapCommand::Reload,
        HotswapCommand::ReloadFreshState,
        HotswapCommand::Rollback,
        HotswapCommand::Status,
        HotswapCommand::CancelBuild,
        HotswapCommand::OpenInBrowser,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            HotswapCommand::Reload => "hotswap.reload",
            HotswapCommand::ReloadFreshState => "hotswap.reloadFreshState",
            HotswapCommand::Rollback => "hotswap.rollback",
            HotswapCommand::Status => "hotswap.status",
            HotswapCommand::CancelBuild => "hotswap.cancelBuild",
            HotswapCommand::OpenInBrowser => "hotswap.openInBrowser",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|command| command.name() == name)
    }
}

/// What the editor's `initialize` tells the session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EditorFacts {
    /// `workspaceFolders`, else `rootUri`, else `rootPath`.
    pub(crate) workspace_folders: Vec<PathBuf>,
    pub(crate) process_id: Option<u32>,
    /// `window.workDoneProgress`: the editor accepts server-initiated `$/progress`.
    pub(crate) supports_work_done_progress: bool,
    /// `window.showDocument.support`: the editor opens addresses the server gives it.
    pub(crate) supports_show_document: bool,
    pub(crate) initialization_options: Option<Value>,
}

impl EditorFacts {
    pub(crate) fn from_initialize_params(params: InitializeParams) -> Self {
        let mut workspace_folders = params
            .workspace_folders
            .as_ref()
            .map(|folders| folder_paths(folders.iter().map(|folder| &folder.uri)))
            .unwrap_or_default();
        if workspace_folders.is_empty() {
            #[allow(deprecated)]
            let root_uri = params.root_uri.as_ref();
            workspace_folders = folder_paths(root_uri);
        }
        #[allow(deprecated)]
        if workspace_folders.is_empty()
            && let Some(root_path) = params.root_path.as_deref()
        {
            workspace_folders.push(PathBuf::from(root_path));
        }
        let supports_work_done_progress = params
            .capabilities
            .window
            .as_ref()
            .and_then(|window| window.work_done_progress)
            .unwrap_or(false);
        let supports_show_document = params
            .capabilities
            .window
            .as_ref()
            .and_then(|window| window.show_document.as_ref())
            .is_some_and(|show| show.support);
        Self {
            workspace_folders,
            process_id: params.process_id,
            supports_work_done_progress,
            supports_show_document,
            initialization_options: params.initialization_options,
        }
    }
}

/// A message from the editor, as the handlers pass it on.
#[derive(Debug)]
pub(crate) enum EditorEvent {
    Initialize(EditorFacts),
    Initialized,
    Opened { path: PathBuf, uri: Uri },
    Saved { path: PathBuf, uri: Uri },
    SettingsChanged { settings: Value },
    Command { command: HotswapCommand, reply: oneshot::Sender<CommandAnswer> },
    ProgressCancelled { token: ProgressToken },
    Shutdown,
}

/// Why the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The handlers are gone: the editor sent `exit` or closed the stream.
    InputEnded { after_shutdown: bool },
    /// The editor's process died.
    EditorProcessGone,
}

/// A finished piece of work from the session's `JoinSet`.
#[derive(Debug)]
enum TaskOutcome {
    Connected(Result<DaemonLink, DaemonError>),
    SaveForwarded(Result<DidSaveResult, DaemonError>),
    ReloadAnswered {
        command: HotswapCommand,
        result: Result<ReloadOutcome, DaemonError>,
    },
    StatusAnswered {
        result: Result<Box<StatusResult>, DaemonError>,
        reply: oneshot::Sender<CommandAnswer>,
    },
    CancelAnswered {
        result: Result<CancelBuildResult, DaemonError>,
        reply: Option<oneshot::Sender<CommandAnswer>>,
    },
    /// The editor's answer to `window/showDocument` for the app's address.
    BrowserOpened {
        url: String,
        result: Result<bool, String>,
    },
}

#[derive(Debug)]
enum DaemonState {
    /// No hotswap workspace known yet (no `hotswap.toml` found).
    NoWorkspace,
    /// Not connected; the next attempt is due at `retry_at`.
    Disconnected {
        retry_at: Instant,
    },
    /// An attempt runs in the task `task`.
    Connecting {
        task: tokio::task::Id,
    },
    Connected(DaemonLink),
}

/// One build's `$/progress` in the editor.
struct BuildProgressView {
    build: u64,
    progress: OngoingProgress<Unbounded, Cancellable>,
}

/// What woke the session up.
#[derive(Debug)]
enum Wake {
    Editor(Option<EditorEvent>),
    Daemon(Option<Event>),
    RetryDue,
    Task(Result<(tokio::task::Id, TaskOutcome), tokio::task::JoinError>),
    AutoStartedDaemonExited(io::Result<ExitStatus>),
    CheckEditorProcess,
}

pub(crate) struct Session {
    editor: Client,
    editor_events: mpsc::UnboundedReceiver<EditorEvent>,
    environment: ServerEnvironment,
    settings: Settings,
    /// Problems with the settings, told once the editor accepts messages.
    settings_problems: Vec<String>,
    initialized: bool,
    shutdown_requested: bool,
    editor_process: Option<u32>,
    supports_work_done_progress: bool,
    supports_show_document: bool,
    root: Option<PathBuf>,
    daemon: DaemonState,
    retry_delay: Duration,
    /// True once the user was told that the daemon is missing or gone, until it is back.
    outage_told: bool,
    /// Counts connections, so that progress tokens of a restarted daemon stay unique.
    link_number: u64,
    tasks: JoinSet<TaskOutcome>,
    auto_started: Option<AutoStartedDaemon>,
    /// An automatic start was tried in this outage (a failing `hotswap serve` is not restarted
    /// in a loop; the next save or command tries again).
    auto_start_tried: bool,
    /// The URI the editor uses for a file, by canonical path: diagnostics must use the same one.
    editor_uris: HashMap<PathBuf, Uri>,
    /// Saves made while a connection attempt runs, forwarded once it succeeds (the save that
    /// revealed the workspace, typically).
    saves_while_connecting: Vec<PathBuf>,
    published: PublishedDiagnostics,
    build_progress: Option<BuildProgressView>,
    serving_generation: Option<u64>,
    /// The last complete build's diagnostics, shown again with a state refusal's.
    last_build_diagnostics: Vec<hotswap_protocol::events::Diagnostic>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("root", &self.root)
            .field("daemon", &self.daemon)
            .field("serving_generation", &self.serving_generation)
            .finish_non_exhaustive()
    }
}

async fn daemon_wake(daemon: &mut DaemonState) -> Wake {
    match daemon {
        DaemonState::Connected(link) => Wake::Daemon(link.events.next_event().await),
        DaemonState::Disconnected { retry_at } => {
            tokio::time::sleep_until(*retry_at).await;
            Wake::RetryDue
        }
        DaemonState::NoWorkspace | DaemonState::Connecting { .. } => std::future::pending().await,
    }
}

async fn auto_started_exit(daemon: &mut Option<AutoStartedDaemon>) -> io::Result<ExitStatus> {
    match daemon {
        Some(daemon) => daemon.wait().await,
        None => std::future::pending().await,
    }
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

impl Session {
    pub(crate) fn new(
        editor: Client,
        editor_events: mpsc::UnboundedReceiver<EditorEvent>,
        environment: ServerEnvironment,
    ) -> Self {
        Self {
            editor,
            editor_events,
            environment,
            settings: Settings::default(),
            settings_problems: Vec::new(),
            initialized: false,
            shutdown_requested: false,
            editor_process: None,
            supports_work_done_progress: false,
            supports_show_document: false,
            root: None,
            daemon: DaemonState::NoWorkspace,
            retry_delay: RETRY_FIRST,
            outage_told: false,
            link_number: 0,
            tasks: JoinSet::new(),
            auto_started: None,
            auto_start_tried: false,
            editor_uris: HashMap::new(),
            saves_while_connecting: Vec::new(),
            published: PublishedDiagnostics::default(),
            build_progress: None,
            serving_generation: None,
            last_build_diagnostics: Vec::new(),
        }
    }

    pub(crate) async fn run(mut self) -> SessionEnd {
        let mut editor_process_check =
            tokio::time::interval(self.environment.editor_process_poll_interval);
        editor_process_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            let wake = tokio::select! {
                event = self.editor_events.recv() => Wake::Editor(event),
                wake = daemon_wake(&mut self.daemon) => wake,
                Some(done) = self.tasks.join_next_with_id() => Wake::Task(done),
                status = auto_started_exit(&mut self.auto_started) => Wake::AutoStartedDaemonExited(status),
                _ = editor_process_check.tick(), if self.editor_process.is_some() => Wake::CheckEditorProcess,
            };
            if !matches!(wake, Wake::CheckEditorProcess) {
                tracing::debug!("session: {wake:?}");
            }
            match wake {
                Wake::Editor(None) => {
                    break SessionEnd::InputEnded { after_shutdown: self.shutdown_requested };
                }
                Wake::Editor(Some(event)) => self.on_editor_event(event).await,
                Wake::Daemon(Some(event)) => self.on_daemon_event(event).await,
                Wake::Daemon(None) => self.on_daemon_gone().await,
                Wake::RetryDue => self.start_connecting(),
                Wake::Task(Ok((_, outcome))) => self.on_task_outcome(outcome).await,
                Wake::Task(Err(error)) => self.on_task_failed(error).await,
                Wake::AutoStartedDaemonExited(status) => {
                    self.on_auto_started_daemon_exited(status).await
                }
                Wake::CheckEditorProcess => {
                    if let Some(pid) = self.editor_process
                        && !process_is_running(pid)
                    {
                        tracing::info!("the editor's process {pid} is gone; stopping");
                        break SessionEnd::EditorProcessGone;
                    }
                }
            }
        };
        self.finish().await;
        end
    }

    /// Ends what the session started: the build's progress, running requests, and the daemon
    /// that `autoStart` started.
    async fn finish(mut self) {
        if let Some(view) = self.build_progress.take() {
            view.progress.finish().await;
        }
        self.tasks.shutdown().await;
        if let Some(daemon) = self.auto_started.take() {
            let requests = match &self.daemon {
                DaemonState::Connected(link) => Some(link.requests.clone()),
                _ => None,
            };
            daemon.stop(requests).await;
        }
    }

    // Talking to the editor.

    async fn log(&self, kind: MessageType, text: &str) {
        self.editor.log_message(kind, text).await;
    }

    /// Swaps, failures and panics: shown or only logged, as the `messages` setting says.
    async fn tell(&self, kind: MessageType, text: &str) {
        self.log(kind, text).await;
        if self.settings.messages == MessageDelivery::ShowMessage {
            self.editor.show_message(kind, text).await;
        }
    }

    /// The daemon's whereabouts (missing, back, cannot start): always shown.
    async fn announce(&self, kind: MessageType, text: &str) {
        self.log(kind, text).await;
        self.editor.show_message(kind, text).await;
    }

    fn editor_uri(&self, path: &Path) -> Option<Uri> {
        self.editor_uris.get(&canonical(path)).cloned().or_else(|| uri_of_file_path(path))
    }

    // The editor's messages.

    async fn on_editor_event(&mut self, event: EditorEvent) {
        match event {
            EditorEvent::Initialize(facts) => {
                if let Some(options) = &facts.initialization_options {
                    self.settings_problems = self.settings.apply(options);
                }
                self.editor_process = facts.process_id;
                self.supports_work_done_progress = facts.supports_work_done_progress;
                self.supports_show_document = facts.supports_show_document;
                self.root = workspace_root_of_folders(&facts.workspace_folders);
            }
            EditorEvent::Initialized => {
                self.initialized = true;
                for problem in std::mem::take(&mut self.settings_problems) {
                    self.announce(MessageType::WARNING, &problem).await;
                }
                if self.root.is_some() {
                    self.start_connecting();
                }
            }
            EditorEvent::Opened { path, uri } => {
                self.remember_file(&path, uri);
            }
            EditorEvent::Saved { path, uri } => {
                self.remember_file(&path, uri);
                self.forward_save(path).await;
            }
            EditorEvent::SettingsChanged { settings } => {
                if let Some(section) = hotswap_section(&settings) {
                    let problems = self.settings.apply(&Value::Object(section.clone()));
                    for problem in problems {
                        self.announce(MessageType::WARNING, &problem).await;
                    }
                    if !self.settings.diagnostics {
                        self.clear_all_diagnostics().await;
                    }
                }
            }
            EditorEvent::Command { command, reply } => self.run_command(command, reply).await,
            EditorEvent::ProgressCancelled { token } => {
                let Some(view) = &self.build_progress else { return };
                if view.progress.token() != &token {
                    return;
                }
                let build = view.build;
                self.log(MessageType::INFO, &format!("hotswap: cancelling build {build}")).await;
                if let DaemonState::Connected(link) = &self.daemon {
                    let requests = link.requests.clone();
                    self.tasks.spawn(async move {
                        let result = daemon_link::request::<CancelBuild>(
                            requests,
                            NoParams {},
                            Some(QUICK_REQUEST_TIMEOUT),
                        )
                        .await;
                        TaskOutcome::CancelAnswered { result, reply: None }
                    });
                }
            }
            EditorEvent::Shutdown => self.shutdown_requested = true,
        }
    }

    /// Remembers the editor's URI for a file, and finds the workspace from it if none is known.
    fn remember_file(&mut self, path: &Path, uri: Uri) {
        self.editor_uris.insert(canonical(path), uri);
        if self.root.is_none()
            && let Some(root) = nearest_workspace_root(path)
        {
            self.root = Some(root);
            if self.initialized {
                self.start_connecting();
            }
        }
    }

    async fn forward_save(&mut self, path: PathBuf) {
        match &self.daemon {
            DaemonState::Connected(link) => {
                let requests = link.requests.clone();
                let params = DidSaveParams { paths: vec![canonical(&path)] };
                self.tasks.spawn(async move {
                    let result = daemon_link::request::<DidSave>(
                        requests,
                        params,
                        Some(QUICK_REQUEST_TIMEOUT),
                    )
                    .await;
                    TaskOutcome::SaveForwarded(result)
                });
            }
            DaemonState::NoWorkspace => {
                self.log(MessageType::INFO, &user_messages::no_workspace()).await;
            }
            DaemonState::Connecting { .. } => self.saves_while_connecting.push(path),
            DaemonState::Disconnected { .. } => {
                self.log(MessageType::INFO, &user_messages::save_not_forwarded(&path)).await;
                // A save is a good moment to look again (the user may just have started the
                // daemon), and to try an automatic start again after a failed one.
                self.auto_start_tried = false;
                self.start_connecting();
            }
        }
    }

    async fn run_command(
        &mut self,
        command: HotswapCommand,
        reply: oneshot::Sender<CommandAnswer>,
    ) {
        let requests = match (&self.daemon, &self.root) {
            (DaemonState::Connected(link), _) => link.requests.clone(),
            (_, None) => {
                let _ = reply.send(Err(request_failed(user_messages::no_workspace())));
                return;
            }
            (_, Some(root)) => {
                let message = user_messages::no_daemon(root, &self.settings.hotswap_path);
                let _ = reply.send(Err(request_failed(message)));
                self.auto_start_tried = false;
                if matches!(self.daemon, DaemonState::Disconnected { .. }) {
                    self.start_connecting();
                }
                return;
            }
        };
        match command {
            HotswapCommand::Reload
            | HotswapCommand::ReloadFreshState
            | HotswapCommand::Rollback => {
                // A build can take long; the answer is the outcome's events (progress, messages),
                // so the editor gets its answer now and never waits for cargo.
                let _ = reply.send(Ok(None));
                self.tasks.spawn(async move {
                    let result = match command {
                        HotswapCommand::Rollback => {
                            daemon_link::request::<Rollback>(requests, NoParams {}, None).await
                        }
                        _ => {
                            let fresh_state = command == HotswapCommand::ReloadFreshState;
                            let params = ReloadParams { fresh_state };
                            daemon_link::request::<Reload>(requests, params, None).await
                        }
                    };
                    TaskOutcome::ReloadAnswered { command, result }
                });
            }
            HotswapCommand::Status => {
                self.tasks.spawn(async move {
                    let result = daemon_link::request::<Status>(
                        requests,
                        NoParams {},
                        Some(QUICK_REQUEST_TIMEOUT),
                    )
                    .await
                    .map(Box::new);
                    TaskOutcome::StatusAnswered { result, reply }
                });
            }
            HotswapCommand::OpenInBrowser => {
                let DaemonState::Connected(link) = &self.daemon else { return };
                let url = user_messages::browser_url(&link.daemon.listen_address);
                let _ = reply.send(Ok(Some(serde_json::json!({ "url": url }))));
                if !self.supports_show_document {
                    self.tell(MessageType::INFO, &user_messages::open_in_browser_yourself(&url))
                        .await;
                    return;
                }
                let Some(params) = show_in_browser(&url) else { return };
                let editor = self.editor.clone();
                // The editor answers when the browser was asked; in a task, so that the session
                // never waits for the editor.
                self.tasks.spawn(async move {
                    let result =
                        tokio::time::timeout(SHOW_DOCUMENT_TIMEOUT, editor.show_document(params))
                            .await
                            .map_err(|_| "the editor did not answer".to_owned())
                            .and_then(|answer| answer.map_err(|error| error.message.into_owned()));
                    TaskOutcome::BrowserOpened { url, result }
                });
            }
            HotswapCommand::CancelBuild => {
                self.tasks.spawn(async move {
                    let result = daemon_link::request::<CancelBuild>(
                        requests,
                        NoParams {},
                        Some(QUICK_REQUEST_TIMEOUT),
                    )
                    .await;
                    TaskOutcome::CancelAnswered { result, reply: Some(reply) }
                });
            }
        }
    }

    // Connecting.

    fn endpoint(&self, root: &Path) -> io::Result<Endpoint> {
        let canonical_root = root.canonicalize()?;
        Ok(Endpoint::derive(&canonical_root, &self.environment.endpoint_environment))
    }

    fn start_connecting(&mut self) {
        let Some(root) = &self.root else { return };
        if matches!(self.daemon, DaemonState::Connecting { .. } | DaemonState::Connected(_)) {
            return;
        }
        let endpoint = self.endpoint(root);
        let handle = self.tasks.spawn(async move {
            let result = match endpoint {
                Ok(endpoint) => daemon_link::connect(endpoint).await,
                Err(error) => Err(DaemonError::Client(error.into())),
            };
            TaskOutcome::Connected(result)
        });
        self.daemon = DaemonState::Connecting { task: handle.id() };
    }

    fn retry_later(&mut self) {
        self.daemon = DaemonState::Disconnected { retry_at: Instant::now() + self.retry_delay };
        self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
    }

    async fn on_connected(&mut self, link: DaemonLink) {
        self.link_number += 1;
        self.retry_delay = RETRY_FIRST;
        self.auto_start_tried = false;
        self.serving_generation = link.daemon.generation;
        let text = user_messages::connected(
            &link.daemon.workspace_root,
            &link.daemon.listen_address,
            link.daemon.generation,
        );
        let last_build = link.last_build.clone();
        let refused_swap = link.refused_swap.clone();
        self.daemon = DaemonState::Connected(link);
        // What is wrong now, even if the failing build happened before this editor connected.
        if let Some(last) =
            last_build.map(|last| *last).filter(|last| last.outcome != BuildOutcome::Cancelled)
        {
            let finished = BuildFinished {
                build: last.build,
                outcome: last.outcome,
                duration_ms: last.duration_ms,
                diagnostics: last.diagnostics,
                built_with: last.built_with,
            };
            self.publish_diagnostics(&finished).await;
        }
        if std::mem::take(&mut self.outage_told) {
            self.announce(MessageType::INFO, &text).await;
        } else {
            self.log(MessageType::INFO, &text).await;
        }
        // Until a swap succeeds, what serves is not the code on disk: say so.
        if let Some(refused) = refused_swap {
            self.tell(MessageType::WARNING, &user_messages::refused_swap(&refused)).await;
        }
        for path in std::mem::take(&mut self.saves_while_connecting) {
            self.forward_save(path).await;
        }
    }

    async fn on_connect_failed(&mut self, error: DaemonError) {
        self.retry_later();
        // The daemon builds what is on disk when it starts: these saves need no forwarding.
        for path in std::mem::take(&mut self.saves_while_connecting) {
            self.log(MessageType::INFO, &user_messages::save_not_forwarded(&path)).await;
        }
        let Some(root) = self.root.clone() else { return };
        if error.is_no_daemon() {
            if self.settings.auto_start && self.auto_started.is_none() && !self.auto_start_tried {
                self.auto_start(&root).await;
            } else if self.auto_started.is_none() && !self.outage_told {
                self.outage_told = true;
                let text = user_messages::no_daemon(&root, &self.settings.hotswap_path);
                self.announce(MessageType::WARNING, &text).await;
            }
        } else if !self.outage_told {
            self.outage_told = true;
            let text = user_messages::cannot_connect(&root, &error.to_string());
            self.announce(MessageType::ERROR, &text).await;
        }
    }

    async fn auto_start(&mut self, root: &Path) {
        self.auto_start_tried = true;
        let command_line = user_messages::serve_command(&self.settings.hotswap_path, root);
        let started = self.endpoint(root).and_then(|endpoint| {
            endpoint.prepare_directory()?;
            AutoStartedDaemon::start(
                &self.settings.hotswap_path,
                root,
                auto_start_log_path(&endpoint),
            )
        });
        match started {
            Ok(daemon) => {
                let text = user_messages::auto_starting(
                    &daemon.command_line,
                    daemon.pid(),
                    &daemon.log_path,
                );
                self.auto_started = Some(daemon);
                self.announce(MessageType::INFO, &text).await;
            }
            Err(error) => {
                self.outage_told = true;
                let text = user_messages::auto_start_failed(&command_line, &error.to_string());
                self.announce(MessageType::ERROR, &text).await;
            }
        }
    }

    async fn on_auto_started_daemon_exited(&mut self, status: io::Result<ExitStatus>) {
        let Some(daemon) = self.auto_started.take() else { return };
        let status = match status {
            Ok(status) => status.to_string(),
            Err(error) => format!("waiting for it failed: {error}"),
        };
        let text = user_messages::auto_started_daemon_exited(
            &daemon.command_line,
            &status,
            &daemon.output_tail(),
        );
        self.outage_told = true;
        self.announce(MessageType::ERROR, &text).await;
    }

    async fn on_daemon_gone(&mut self) {
        if let Some(view) = self.build_progress.take() {
            view.progress.finish_with_message("the daemon stopped").await;
        }
        self.retry_delay = RETRY_FIRST;
        self.retry_later();
        if let Some(root) = self.root.clone()
            && !self.shutdown_requested
        {
            self.outage_told = true;
            self.announce(MessageType::WARNING, &user_messages::daemon_went_away(&root)).await;
        }
    }

    // Work that finished.

    async fn on_task_outcome(&mut self, outcome: TaskOutcome) {
        match outcome {
            TaskOutcome::Connected(Ok(link)) => self.on_connected(link).await,
            TaskOutcome::Connected(Err(error)) => self.on_connect_failed(error).await,
            TaskOutcome::SaveForwarded(Ok(result)) => {
                if let Some(text) = user_messages::saves_ignored(&result, self.root.as_deref()) {
                    self.log(MessageType::INFO, &text).await;
                }
            }
            TaskOutcome::SaveForwarded(Err(error)) => {
                self.tell(
                    MessageType::ERROR,
                    &user_messages::command_failed("forwarding the save", &error.to_string()),
                )
                .await;
            }
            TaskOutcome::ReloadAnswered { command, result } => match result {
                Ok(outcome) => {
                    self.log(
                        MessageType::INFO,
                        &user_messages::reload_outcome(command.name(), &outcome),
                    )
                    .await;
                }
                Err(error) => {
                    self.tell(
                        MessageType::ERROR,
                        &user_messages::command_failed(command.name(), &error.to_string()),
                    )
                    .await;
                }
            },
            TaskOutcome::StatusAnswered { result, reply } => match result {
                Ok(status) => {
                    self.tell(MessageType::INFO, &user_messages::status_summary(&status)).await;
                    let _ = reply.send(Ok(serde_json::to_value(&status).ok()));
                }
                Err(error) => {
                    let _ = reply.send(Err(request_failed(error.to_string())));
                }
            },
            TaskOutcome::CancelAnswered { result, reply } => {
                let answer = match result {
                    Ok(cancelled) => Ok(serde_json::to_value(cancelled).ok()),
                    Err(error) => Err(request_failed(error.to_string())),
                };
                if let Err(error) = &answer {
                    self.log(
                        MessageType::WARNING,
                        &user_messages::command_failed("cancelBuild", &error.message),
                    )
                    .await;
                }
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
            TaskOutcome::BrowserOpened { url, result } => {
                self.on_browser_opened(&url, result).await;
            }
        }
    }

    async fn on_browser_opened(&mut self, url: &str, result: Result<bool, String>) {
        match result {
            Ok(true) => self.log(MessageType::INFO, &user_messages::opened_in_browser(url)).await,
            Ok(false) => {
                let why = "the editor could not open it";
                self.tell(MessageType::WARNING, &user_messages::browser_not_opened(url, why)).await;
            }
            Err(why) => {
                self.tell(MessageType::WARNING, &user_messages::browser_not_opened(url, &why))
                    .await;
            }
        }
    }

    async fn on_task_failed(&mut self, error: tokio::task::JoinError) {
        tracing::error!("a hotswap-lsp task failed: {error}");
        if let DaemonState::Connecting { task } = self.daemon
            && task == error.id()
        {
            self.retry_later();
        }
    }

    // The daemon's events.

    async fn on_daemon_event(&mut self, event: Event) {
        match event {
            Event::BuildStarted(event) => self.begin_build_progress(&event).await,
            Event::BuildProgress(event) => {
                if let Some(view) = &self.build_progress
                    && view.build == event.build
                {
                    view.progress
                        .report_with_message(user_messages::build_progress(&event), None)
                        .await;
                }
            }
            Event::BuildFinished(event) => self.on_build_finished(event).await,
            Event::SwapFinished(event) => {
                self.serving_generation = Some(event.generation);
                if let Some(view) = self.build_progress.take() {
                    view.progress
                        .finish_with_message(user_messages::swap_finished_progress(&event))
                        .await;
                }
                self.tell(MessageType::INFO, &user_messages::swap_finished(&event)).await;
            }
            Event::SwapFailed(event) => {
                if !event.diagnostics.is_empty() {
                    // The struct a state does not fit, beside the build's own diagnostics.
                    let mut diagnostics = self.last_build_diagnostics.clone();
                    diagnostics.extend(event.diagnostics.iter().cloned());
                    let shown = BuildFinished {
                        build: 0,
                        outcome: BuildOutcome::Succeeded,
                        duration_ms: 0.0,
                        diagnostics,
                        built_with: None,
                    };
                    self.publish_diagnostics(&shown).await;
                }
                if let Some(view) = self.build_progress.take() {
                    view.progress
                        .finish_with_message(user_messages::swap_failed_progress(&event))
                        .await;
                }
                self.tell(
                    MessageType::ERROR,
                    &user_messages::swap_failed(&event, self.serving_generation),
                )
                .await;
            }
            Event::GenerationRetired(event) => {
                let kind = match event.outcome {
                    RetireOutcome::Ended => MessageType::LOG,
                    RetireOutcome::Killed => MessageType::WARNING,
                };
                self.log(kind, &user_messages::generation_retired(&event)).await;
            }
            Event::GenerationCrashed(event) => {
                if event.recovery == CrashRecovery::None {
                    self.serving_generation = None;
                }
                self.tell(MessageType::ERROR, &user_messages::generation_crashed(&event)).await;
            }
            Event::HandlerPanicked(event) => {
                self.tell(MessageType::WARNING, &user_messages::handler_panicked(&event)).await;
            }
            Event::Log(line) => {
                let kind = match line.level {
                    LogLevel::Error => MessageType::ERROR,
                    LogLevel::Warn => MessageType::WARNING,
                    LogLevel::Info => MessageType::INFO,
                    LogLevel::Debug | LogLevel::Trace => return,
                };
                let source = match line.generation {
                    Some(generation) => format!("generation {generation}"),
                    None => "daemon".to_owned(),
                };
                self.log(kind, &format!("hotswap {source} {}: {}", line.target, line.message))
                    .await;
            }
            Event::AssetsChanged(event) => {
                self.log(MessageType::LOG, &user_messages::assets_changed(&event)).await;
            }
        }
    }

    async fn begin_build_progress(&mut self, event: &BuildStarted) {
        if let Some(view) = self.build_progress.take() {
            view.progress.finish_with_message("superseded by a newer build").await;
        }
        if !self.supports_work_done_progress {
            return;
        }
        let token =
            NumberOrString::String(format!("hotswap/build/{}/{}", self.link_number, event.build));
        // The spec forbids using a token the editor did not accept. This waits for the editor,
        // but in the session, never in a handler, and not for long.
        let created = tokio::time::timeout(
            PROGRESS_CREATE_TIMEOUT,
            self.editor.create_work_done_progress(token.clone()),
        )
        .await;
        if !matches!(created, Ok(Ok(()))) {
            return;
        }
        let progress = self
            .editor
            .progress(token, user_messages::build_title())
            .with_message(user_messages::build_started(event, self.root.as_deref()))
            .with_cancel_button()
            .begin()
            .await;
        self.build_progress = Some(BuildProgressView { build: event.build, progress });
    }

    async fn on_build_finished(&mut self, event: BuildFinished) {
        // A cancelled build's diagnostics are incomplete: keep showing the last complete set.
        if event.outcome != BuildOutcome::Cancelled {
            self.last_build_diagnostics = event.diagnostics.clone();
            self.publish_diagnostics(&event).await;
        }
        if let Some(view) = self.build_progress.take() {
            if view.build != event.build {
                self.build_progress = Some(view);
            } else if event.outcome == BuildOutcome::Succeeded {
                // The swap follows; its event ends the progress.
                view.progress
                    .report_with_message(user_messages::build_finished_progress(&event), None)
                    .await;
                self.build_progress = Some(view);
            } else {
                view.progress
                    .finish_with_message(user_messages::build_finished_progress(&event))
                    .await;
            }
        }
        match event.outcome {
            BuildOutcome::Failed => {
                if let Some(text) = user_messages::build_failed(
                    &event,
                    self.serving_generation,
                    self.root.as_deref(),
                ) {
                    self.tell(MessageType::ERROR, &text).await;
                }
            }
            BuildOutcome::Unchanged | BuildOutcome::Cancelled => {
                self.log(
                    MessageType::INFO,
                    &format!("hotswap: {}", user_messages::build_finished_progress(&event)),
                )
                .await;
            }
            BuildOutcome::Succeeded => {}
        }
    }

    async fn publish_diagnostics(&mut self, event: &BuildFinished) {
        if !self.settings.diagnostics {
            return;
        }
        let by_file = diagnostics_by_file(&event.diagnostics);
        let cleared = self.published.replace(by_file.keys().cloned().collect::<BTreeSet<_>>());
        let uri_of = |path: &Path| self.editor_uri(path);
        for (file, diagnostics) in &by_file {
            let Some(uri) = self.editor_uri(file) else { continue };
            let diagnostics =
                diagnostics.iter().map(|diagnostic| lsp_diagnostic(diagnostic, &uri_of)).collect();
            self.editor.publish_diagnostics(uri, diagnostics, None).await;
        }
        for file in cleared {
            if let Some(uri) = self.editor_uri(&file) {
                self.editor.publish_diagnostics(uri, Vec::new(), None).await;
            }
        }
    }

    async fn clear_all_diagnostics(&mut self) {
        for file in self.published.clear_all() {
            if let Some(uri) = self.editor_uri(&file) {
                self.editor.publish_diagnostics(uri, Vec::new(), None).await;
            }
        }
    }
}
