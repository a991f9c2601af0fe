//! The LSP handlers: each turns one message from the editor into an [`EditorEvent`] for the
//! session and returns. None awaits a request to the editor (that would let a slow editor wedge
//! the server); only `workspace/executeCommand` waits, for the session's answer.

use std::path::PathBuf;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Result};
use tower_lsp_server::ls_types::{
    DidChangeConfigurationParams, DidChangeTextDocumentParams, DidCloseTextDocumentParams,
    DidOpenTextDocumentParams, DidSaveTextDocumentParams, ExecuteCommandOptions,
    ExecuteCommandParams, InitializeParams, InitializeResult, InitializedParams, LSPAny,
    PositionEncodingKind, SaveOptions, ServerCapabilities, ServerInfo, TextDocumentSyncCapability,
    TextDocumentSyncKind, TextDocumentSyncOptions, TextDocumentSyncSaveOptions,
    WorkDoneProgressCancelParams,
};
use tower_lsp_server::{Client, LanguageServer};

use crate::lsp_conversion::file_path_of_uri;
use crate::session::{EditorEvent, EditorFacts, HotswapCommand};

/// The `tower-lsp-server` backend.
#[derive(Debug)]
pub(crate) struct HotswapLanguageServer {
    editor: Client,
    editor_events: mpsc::UnboundedSender<EditorEvent>,
}

impl HotswapLanguageServer {
    pub(crate) fn new(editor: Client, editor_events: mpsc::UnboundedSender<EditorEvent>) -> Self {
        Self { editor, editor_events }
    }

    /// The handle the session uses to send messages to the editor.
    pub(crate) fn editor(&self) -> Client {
        self.editor.clone()
    }

    fn enqueue(&self, event: EditorEvent) {
        // The session only stops reading after the service is gone, so this cannot fail while a
        // handler runs; if it ever did, dropping the event is all there is to do.
        let _ = self.editor_events.send(event);
    }

    /// `window/workDoneProgress/cancel`: the user pressed "cancel" on a build's progress.
    pub(crate) async fn work_done_progress_cancel(&self, params: WorkDoneProgressCancelParams) {
        self.enqueue(EditorEvent::ProgressCancelled { token: params.token });
    }
}

/// What the server offers, declared statically: neovim 0.7 and 0.11 register nothing
/// dynamically, so a `save` option registered later would never make them send `didSave`.
pub(crate) fn server_capabilities() -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(PositionEncodingKind::UTF16),
        text_document_sync: Some(TextDocumentSyncCapability::Options(TextDocumentSyncOptions {
            open_close: Some(true),
            change: Some(TextDocumentSyncKind::NONE),
            will_save: None,
            will_save_wait_until: None,
            save: Some(TextDocumentSyncSaveOptions::SaveOptions(SaveOptions {
                include_text: Some(false),
            })),
        })),
        execute_command_provider: Some(ExecuteCommandOptions {
            commands: HotswapCommand::ALL.iter().map(|command| command.name().to_owned()).collect(),
            work_done_progress_options: Default::default(),
        }),
        ..ServerCapabilities::default()
    }
}

impl LanguageServer for HotswapLanguageServer {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        self.enqueue(EditorEvent::Initialize(EditorFacts::from_initialize_params(params)));
        Ok(InitializeResult {
            capabilities: server_capabilities(),
            server_info: Some(ServerInfo {
                name: "hotswap-lsp".to_owned(),
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            }),
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        self.enqueue(EditorEvent::Initialized);
    }

    async fn shutdown(&self) -> Result<()> {
        self.enqueue(EditorEvent::Shutdown);
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        if let Some(path) = file_path_of_uri(&params.text_document.uri) {
            self.enqueue(EditorEvent::Opened { path, uri: params.text_document.uri });
        }
    }

    async fn did_save(&self, params: DidSaveTextDocumentParams) {
        if let Some(path) = file_path_of_uri(&params.text_document.uri) {
            self.enqueue(EditorEvent::Saved { path, uri: params.text_document.uri });
        }
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        // Declared as no sync at all (`change: 0`), yet some clients (eglot 1.9) send changes
        // anyway. The daemon builds what is on disk at a save, so there is nothing to do.
        let _ = params;
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        // Diagnostics stay where they are (they describe the code on disk), so a closed file
        // changes nothing; the handler exists so that the default one does not log a warning.
        let _ = params;
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        self.enqueue(EditorEvent::SettingsChanged { settings: params.settings });
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<LSPAny>> {
        let Some(command) = HotswapCommand::from_name(&params.command) else {
            return Err(Error {
                code: ErrorCode::InvalidParams,
                message: format!(
                    "unknown command {:?}; hotswap-lsp has: {}",
                    params.command,
                    HotswapCommand::ALL.map(HotswapCommand::name).join(", ")
                )
                .into(),
                data: None,
            });
        };
        let (reply, answer) = oneshot::channel();
        self.enqueue(EditorEvent::Command { command, reply });
        answer
            .await
            .unwrap_or_else(|_| Err(request_failed("hotswap-lsp is shutting down".to_owned())))
    }
}

/// Paths of a list of workspace folder URIs, skipping what is not a local file.
pub(crate) fn folder_paths<'a>(
    uris: impl IntoIterator<Item = &'a tower_lsp_server::ls_types::Uri>,
) -> Vec<PathBuf> {
    uris.into_iter().filter_map(file_path_of_uri).collect()
}

/// LSP's `RequestFailed` error code: the request was valid but could not be carried out.
const REQUEST_FAILED: i64 = -32803;

/// An error answer for a command that could not be carried out, with the sentence to show.
pub(crate) fn request_failed(message: String) -> Error {
    Error { code: ErrorCode::ServerError(REQUEST_FAILED), message: message.into(), data: None }
}

/// The answer to a command: `null`, or the daemon's result as JSON.
pub(crate) type CommandAnswer = Result<Option<Value>>;
