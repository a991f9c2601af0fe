//! `hotswap-lsp`: a language server that connects any LSP editor (neovim, Helix, Zed, Emacs,
//! Sublime Text) to the hotswap daemon of the workspace.
//!
//! The editor saves a file → `textDocument/didSave` → the daemon's `didSave`; the daemon's events
//! come back as `$/progress` (builds), `textDocument/publishDiagnostics` (compiler messages) and
//! `window/showMessage` or `window/logMessage` (swaps, failures, panics). Four commands reach the
//! daemon through `workspace/executeCommand`: `hotswap.reload`, `hotswap.rollback`,
//! `hotswap.status` and `hotswap.cancelBuild`.
//!
//! How the code is laid out:
//! - [`language_server`]: the `tower-lsp-server` handlers. They only turn a message into an
//!   [`session::EditorEvent`] and put it on a channel; none of them awaits the editor.
//! - [`session`]: the one task that owns all state, talks to the daemon and to the editor, and so
//!   keeps the order of everything the editor sees.
//! - [`daemon_link`]: connecting to the daemon (and starting `hotswap serve` when asked to).
//! - [`lsp_conversion`]: protocol types to LSP types (diagnostics, URIs).
//! - [`published_diagnostics`]: which files show diagnostics, so a new build can replace them.
//! - [`user_messages`]: the sentences the user reads, as pure functions.
//! - [`settings`], [`workspace_root`], [`editor_process`]: small pure-ish helpers.
//!
//! Architecture invariant: this crate depends on `hotswap-protocol` only, never on the daemon; it
//! never runs cargo and never loads a library.

mod daemon_link;
mod editor_process;
mod language_server;
mod lsp_conversion;
mod published_diagnostics;
mod session;
mod settings;
mod user_messages;
mod workspace_root;

use std::pin::pin;
use std::time::Duration;

use hotswap_protocol::endpoint::EndpointEnvironment;
use tokio::io::{AsyncRead, AsyncWrite};
use tower_lsp_server::{LspService, Server};

use crate::language_server::HotswapLanguageServer;
use crate::session::{Session, SessionEnd};

/// The environment the server runs in: fixed by the binary, chosen by tests.
#[derive(Debug, Clone)]
pub struct ServerEnvironment {
    /// Where the sockets of the workspaces' daemons are (normally from `XDG_RUNTIME_DIR`).
    pub endpoint_environment: EndpointEnvironment,
    /// How often to check that the editor's process (`processId` of `initialize`) still runs.
    pub editor_process_poll_interval: Duration,
}

impl ServerEnvironment {
    /// The environment of this process.
    pub fn current() -> Self {
        Self {
            endpoint_environment: EndpointEnvironment::current(),
            editor_process_poll_interval: Duration::from_secs(2),
        }
    }
}

/// Why [`serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeEnd {
    /// The editor sent `exit` or closed the stream. `after_shutdown` tells whether it asked for
    /// `shutdown` first, as the protocol wants (the exit code should be 0 then, else 1).
    EditorClosed { after_shutdown: bool },
    /// The editor's process (`processId` of `initialize`) is gone while the stream stayed open.
    EditorProcessGone,
}

impl ServeEnd {
    /// The process exit code the LSP specification asks for.
    pub fn exit_code(self) -> i32 {
        match self {
            ServeEnd::EditorClosed { after_shutdown: true } => 0,
            ServeEnd::EditorClosed { after_shutdown: false } | ServeEnd::EditorProcessGone => 1,
        }
    }
}

/// Runs the language server over `input`/`output` (stdin/stdout in the binary, in-memory pipes
/// in tests) until the editor exits, closes the stream, or its process dies.
pub async fn serve<I, O>(input: I, output: O, environment: ServerEnvironment) -> ServeEnd
where
    I: AsyncRead + Unpin,
    O: AsyncWrite,
{
    let (editor_events_sender, editor_events) = tokio::sync::mpsc::unbounded_channel();
    let (service, socket) =
        LspService::build(|editor| HotswapLanguageServer::new(editor, editor_events_sender))
            .custom_method(
                "window/workDoneProgress/cancel",
                HotswapLanguageServer::work_done_progress_cancel,
            )
            .finish();
    let editor = service.inner().editor();
    let session = Session::new(editor, editor_events, environment);

    let mut session_run = pin!(session.run());
    let mut lsp_server = pin!(Server::new(input, output, socket).serve(service));
    tokio::select! {
        // The service (and with it the sender of editor events) is dropped when `serve` returns,
        // so the session sees the end of its input, stops what it started, and returns.
        () = &mut lsp_server => match session_run.await {
            SessionEnd::InputEnded { after_shutdown } => ServeEnd::EditorClosed { after_shutdown },
            SessionEnd::EditorProcessGone => ServeEnd::EditorProcessGone,
        },
        end = &mut session_run => match end {
            SessionEnd::InputEnded { after_shutdown } => ServeEnd::EditorClosed { after_shutdown },
            SessionEnd::EditorProcessGone => ServeEnd::EditorProcessGone,
        },
    }
}
