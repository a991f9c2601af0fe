//! The language server in-process, driven over in-memory streams with raw LSP JSON-RPC, against
//! the stand-in daemon on a real socket: what an editor sees for each thing the daemon does.

use std::path::PathBuf;
use std::sync::Arc;

use hotswap_lsp::ServeEnd;
use hotswap_protocol::events::{
    BuildFinished, BuildOutcome, BuildProgress, BuildReason, BuildStarted, CrashRecovery,
    Diagnostic, Event, GenerationCrashed, HandlerPanicked, Position, Range, RelatedInformation,
    Severity, SwapFinished, SwapStage, SwapStages,
};
use hotswap_protocol::messages::{ClientRequest, LastBuild, RefusedSwap, StatusResult};
use serde_json::{Value, json};

use crate::fake_editor::FakeEditor;
use crate::stand_in_daemon::{
    Behavior, DaemonFacts, PlainAnswers, Reaction, StandInDaemon, WAIT, plain_answer,
};
use crate::test_workspace::TestWorkspace;

const LISTEN_ADDRESS: &str = "127.0.0.1:3000";

fn range(line: u32, start: u32, end: u32) -> Range {
    Range { start: Position { line, character: start }, end: Position { line, character: end } }
}

fn build_started(build: u64, paths: Vec<PathBuf>) -> Event {
    Event::BuildStarted(BuildStarted { build, reason: BuildReason::Save, paths })
}

fn build_finished(build: u64, outcome: BuildOutcome, diagnostics: Vec<Diagnostic>) -> Event {
    Event::BuildFinished(BuildFinished {
        build,
        outcome,
        duration_ms: 310.0,
        diagnostics,
        built_with: None,
    })
}

fn swap_finished(generation: u64) -> Event {
    Event::SwapFinished(SwapFinished {
        after_crash: None,
        generation,
        previous_generation: Some(generation - 1),
        rollback: false,
        swap_ms: 3.0,
        total_ms: Some(350.0),
        build_ms: Some(310.0),
        stages: SwapStages::default(),
        warnings: vec![],
    })
}

fn mismatched_types(file: PathBuf) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        code: Some("E0308".into()),
        message: "mismatched types".into(),
        file: Some(file.clone()),
        // The line holds `"é"` earlier: UTF-16 columns differ from bytes, and must pass unchanged.
        range: Some(range(4, 11, 25)),
        rendered: Some("error[E0308]: mismatched types".into()),
        related: vec![RelatedInformation {
            file,
            range: range(3, 20, 23),
            message: "expected `u32` because of return type".into(),
        }],
    }
}

fn method_is(message: &Value, method: &str) -> bool {
    message.get("method").and_then(Value::as_str) == Some(method)
}

/// Starts the stand-in daemon and an editor opened on the app; returns once they are connected.
async fn connected_editor(
    workspace: &TestWorkspace,
    options: Value,
) -> (StandInDaemon, FakeEditor) {
    let daemon = StandInDaemon::start(workspace.endpoint(), LISTEN_ADDRESS, Arc::new(PlainAnswers));
    let mut editor = FakeEditor::start(workspace.server_environment());
    editor.initialize(workspace.initialize_params(options)).await;
    editor.wait_for_message("window/logMessage", "connected to the daemon").await;
    (daemon, editor)
}

/// The params of the `$/progress` notification of `kind` for `token`.
async fn progress(editor: &mut FakeEditor, token: &Value, kind: &str) -> Value {
    editor
        .wait_for_notification("$/progress", |params| {
            &params["token"] == token && params["value"]["kind"] == kind
        })
        .await["value"]
        .clone()
}

/// The token of the `n`-th `window/workDoneProgress/create` request.
async fn progress_token(editor: &mut FakeEditor, n: usize) -> Value {
    editor
        .wait_for_count("window/workDoneProgress/create", n, |message| {
            method_is(message, "window/workDoneProgress/create") && message.get("id").is_some()
        })
        .await["params"]["token"]
        .clone()
}

#[tokio::test]
async fn capabilities_declare_open_close_and_save_sync_and_the_commands_statically() {
    let workspace = TestWorkspace::new();
    let mut editor = FakeEditor::start(workspace.server_environment());
    let result = editor.initialize(workspace.initialize_params(json!({}))).await;
    let capabilities = &result["capabilities"];
    assert_eq!(
        capabilities["textDocumentSync"],
        json!({"openClose": true, "change": 0, "save": {"includeText": false}})
    );
    assert_eq!(
        capabilities["executeCommandProvider"]["commands"],
        json!([
            "hotswap.reload",
            "hotswap.reloadFreshState",
            "hotswap.rollback",
            "hotswap.status",
            "hotswap.cancelBuild",
            "hotswap.openInBrowser"
        ])
    );
    assert_eq!(capabilities["positionEncoding"], "utf-16");
    assert_eq!(result["serverInfo"]["name"], "hotswap-lsp");
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[tokio::test]
async fn a_save_is_forwarded_and_the_build_shows_as_progress_diagnostics_and_messages() {
    let workspace = TestWorkspace::new();
    let (daemon, mut editor) = connected_editor(&workspace, json!({})).await;
    let lib = workspace.path("src/lib.rs");
    let lib_uri = workspace.uri("src/lib.rs");

    editor.did_save(&lib_uri).await;
    let ClientRequest::DidSave(save) = daemon.wait_for_request("didSave").await else {
        unreachable!()
    };
    assert_eq!(save.paths, vec![lib.clone()]);

    // A failed build: progress from begin to end, the diagnostic, and a message.
    daemon.emit(&[
        build_started(1, vec![lib.clone()]),
        Event::BuildProgress(BuildProgress {
            build: 1,
            message: "Compiling app v0.1.0".into(),
            blocked: false,
        }),
        build_finished(1, BuildOutcome::Failed, vec![mismatched_types(lib.clone())]),
    ]);
    let token = progress_token(&mut editor, 1).await;
    let begin = progress(&mut editor, &token, "begin").await;
    assert_eq!(begin["title"], "hotswap build");
    assert_eq!(begin["cancellable"], true);
    assert_eq!(begin["message"], "src/lib.rs saved");
    let report = progress(&mut editor, &token, "report").await;
    assert_eq!(report["message"], "Compiling app v0.1.0");
    let end = progress(&mut editor, &token, "end").await;
    assert_eq!(end["message"], "build failed in 310 ms: 1 error");

    let published = editor
        .wait_for_notification("textDocument/publishDiagnostics", |params| {
            params["uri"] == lib_uri.as_str()
        })
        .await;
    let diagnostic = &published["diagnostics"][0];
    assert_eq!(published["diagnostics"].as_array().unwrap().len(), 1);
    assert_eq!(diagnostic["source"], "hotswap");
    assert_eq!(diagnostic["severity"], 1);
    assert_eq!(diagnostic["code"], "E0308");
    assert_eq!(diagnostic["message"], "mismatched types");
    assert_eq!(
        diagnostic["range"],
        json!({"start": {"line": 4, "character": 11}, "end": {"line": 4, "character": 25}})
    );
    assert_eq!(diagnostic["relatedInformation"][0]["location"]["uri"], lib_uri.as_str());
    assert_eq!(
        diagnostic["relatedInformation"][0]["message"],
        "expected `u32` because of return type"
    );
    let failure = editor.wait_for_message("window/showMessage", "build 1 failed").await;
    assert_eq!(failure["type"], 1, "an error message");
    assert_eq!(
        failure["message"],
        "hotswap: build 1 failed (1 error): src/lib.rs:5:12: mismatched types; generation 1 keeps serving"
    );

    // The fixed build clears the file's diagnostics, swaps, and ends its progress with the swap.
    daemon.emit(&[
        build_started(2, vec![lib.clone()]),
        build_finished(2, BuildOutcome::Succeeded, vec![]),
        swap_finished(2),
    ]);
    let cleared = editor
        .wait_for_notification("textDocument/publishDiagnostics", |params| {
            params["uri"] == lib_uri.as_str() && params["diagnostics"] == json!([])
        })
        .await;
    assert_eq!(cleared["diagnostics"], json!([]));
    let token = progress_token(&mut editor, 2).await;
    let end = progress(&mut editor, &token, "end").await;
    assert_eq!(end["message"], "generation 2 serves (3 ms)");
    let swapped =
        editor.wait_for_message("window/showMessage", "generation 2 serves the new code").await;
    assert_eq!(swapped["type"], 3, "an info message");

    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[tokio::test]
async fn open_in_browser_asks_the_editor_to_show_the_apps_address_externally() {
    let workspace = TestWorkspace::new();
    let (_daemon, mut editor) = connected_editor(&workspace, json!({})).await;
    let response = editor.execute_command("hotswap.openInBrowser").await;
    assert_eq!(response["result"], json!({"url": "http://127.0.0.1:3000/"}), "{response}");
    let request = editor
        .wait_for("a window/showDocument request", |message| {
            method_is(message, "window/showDocument") && message.get("id").is_some()
        })
        .await;
    assert_eq!(
        request["params"],
        json!({"uri": "http://127.0.0.1:3000/", "external": true, "takeFocus": true})
    );
    editor
        .wait_for_message("window/logMessage", "opened http://127.0.0.1:3000/ in the browser")
        .await;
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[tokio::test]
async fn open_in_browser_in_an_editor_without_show_document_tells_the_address() {
    let workspace = TestWorkspace::new();
    let _daemon =
        StandInDaemon::start(workspace.endpoint(), LISTEN_ADDRESS, Arc::new(PlainAnswers));
    let mut editor = FakeEditor::start(workspace.server_environment());
    let mut params = workspace.initialize_params(json!({}));
    params["capabilities"] = json!({"window": {"workDoneProgress": true}});
    editor.initialize(params).await;
    editor.wait_for_message("window/logMessage", "connected to the daemon").await;
    let response = editor.execute_command("hotswap.openInBrowser").await;
    assert_eq!(response["result"]["url"], "http://127.0.0.1:3000/", "{response}");
    editor
        .wait_for_message("window/showMessage", "the app serves http://127.0.0.1:3000/; open it")
        .await;
    assert!(!editor.received().iter().any(|message| method_is(message, "window/showDocument")));
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[tokio::test]
async fn commands_reach_the_daemon_and_status_and_cancel_answer_with_its_result() {
    let workspace = TestWorkspace::new();
    let (daemon, mut editor) = connected_editor(&workspace, json!({})).await;

    let response = editor.execute_command("hotswap.reload").await;
    assert_eq!(response["result"], Value::Null, "{response}");
    daemon.wait_for_request("reload").await;

    let response = editor.execute_command("hotswap.rollback").await;
    assert_eq!(response["result"], Value::Null, "{response}");
    daemon.wait_for_request("rollback").await;

    let response = editor.execute_command("hotswap.status").await;
    assert_eq!(response["result"]["currentGeneration"], 1, "{response}");
    assert_eq!(response["result"]["listenAddress"], LISTEN_ADDRESS);
    editor
        .wait_for_message("window/showMessage", "generation 1 serves http://127.0.0.1:3000")
        .await;

    let response = editor.execute_command("hotswap.cancelBuild").await;
    assert_eq!(response["result"], json!({"cancelled": true}), "{response}");
    daemon.wait_for_request("cancelBuild").await;

    let response = editor.execute_command("hotswap.deploy").await;
    assert_eq!(response["error"]["code"], -32602, "{response}");
    assert!(
        response["error"]["message"].as_str().unwrap().contains("hotswap.rollback"),
        "{response}"
    );

    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[tokio::test]
async fn cancelling_the_build_progress_cancels_the_build() {
    let workspace = TestWorkspace::new();
    let (daemon, mut editor) = connected_editor(&workspace, json!({})).await;
    daemon.emit(&[build_started(7, vec![])]);
    let token = progress_token(&mut editor, 1).await;
    progress(&mut editor, &token, "begin").await;
    editor.notify("window/workDoneProgress/cancel", json!({"token": token})).await;
    daemon.wait_for_request("cancelBuild").await;
    daemon.emit(&[build_finished(7, BuildOutcome::Cancelled, vec![])]);
    let end = progress(&mut editor, &token, "end").await;
    assert_eq!(end["message"], "build cancelled");
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[tokio::test]
async fn without_a_daemon_one_clear_message_then_the_server_connects_when_it_appears_and_again_after_it_restarts()
 {
    let workspace = TestWorkspace::new();
    let lib_uri = workspace.uri("src/lib.rs");
    let mut editor = FakeEditor::start(workspace.server_environment());
    editor.initialize(workspace.initialize_params(json!({}))).await;

    let message = editor.wait_for_message("window/showMessage", "no daemon runs for").await;
    let expected_command = format!("`hotswap serve --workspace {}`", workspace.root.display());
    assert!(message["message"].as_str().unwrap().contains(&expected_command), "{message}");
    assert_eq!(message["type"], 2, "a warning");

    // Saves and commands meanwhile say what is missing, without repeating the message.
    editor.did_save(&lib_uri).await;
    editor.wait_for_message("window/logMessage", "saved, but no daemon runs; not rebuilt").await;
    let response = editor.execute_command("hotswap.reload").await;
    assert!(
        response["error"]["message"].as_str().unwrap().contains(&expected_command),
        "{response}"
    );

    // The daemon appears: the server finds it by itself and says so.
    let daemon = StandInDaemon::start(workspace.endpoint(), LISTEN_ADDRESS, Arc::new(PlainAnswers));
    editor.wait_for_message("window/showMessage", "connected to the daemon").await;
    let no_daemon_messages = editor
        .notifications("window/showMessage")
        .iter()
        .filter(|params| params["message"].as_str().unwrap().contains("no daemon runs for"))
        .count();
    assert_eq!(no_daemon_messages, 1, "one message per outage: {:#?}", editor.received());
    editor.did_save(&lib_uri).await;
    daemon.wait_for_request("didSave").await;

    // It stops: the user hears it once; it comes back: the server reconnects.
    daemon.stop().await;
    editor.wait_for_message("window/showMessage", "stopped; saves are forwarded again").await;
    let daemon = StandInDaemon::start(workspace.endpoint(), LISTEN_ADDRESS, Arc::new(PlainAnswers));
    editor
        .wait_for_count("a second connected message", 2, |message| {
            method_is(message, "window/showMessage")
                && message["params"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("connected to the daemon")
        })
        .await;
    editor.did_save(&lib_uri).await;
    daemon.wait_for_request("didSave").await;

    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[tokio::test]
async fn without_workspace_folders_the_saved_files_nearest_hotswap_toml_is_the_workspace() {
    let workspace = TestWorkspace::new();
    let daemon = StandInDaemon::start(workspace.endpoint(), LISTEN_ADDRESS, Arc::new(PlainAnswers));
    let mut editor = FakeEditor::start(workspace.server_environment());
    editor
        .initialize(json!({"processId": null, "rootUri": null, "workspaceFolders": null, "capabilities": {}}))
        .await;
    editor.did_save(&workspace.uri("src/lib.rs")).await;
    let ClientRequest::DidSave(save) = daemon.wait_for_request("didSave").await else {
        unreachable!()
    };
    assert_eq!(save.paths, vec![workspace.path("src/lib.rs")]);
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[tokio::test]
async fn diagnostics_can_be_switched_off() {
    let workspace = TestWorkspace::new();
    let (daemon, mut editor) = connected_editor(&workspace, json!({"diagnostics": false})).await;
    let lib = workspace.path("src/lib.rs");
    daemon.emit(&[
        build_started(1, vec![lib.clone()]),
        build_finished(1, BuildOutcome::Failed, vec![mismatched_types(lib)]),
        build_started(2, vec![]),
        build_finished(2, BuildOutcome::Succeeded, vec![]),
        swap_finished(2),
    ]);
    // The session handles events in order: had it published, that would have come before this.
    editor.wait_for_message("window/showMessage", "generation 2 serves").await;
    assert_eq!(editor.notifications("textDocument/publishDiagnostics"), Vec::<Value>::new());
    editor.wait_for_message("window/showMessage", "build 1 failed").await;
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[tokio::test]
async fn the_messages_setting_sends_swaps_and_panics_to_the_log_and_a_configuration_change_switches_it_back()
 {
    let workspace = TestWorkspace::new();
    let (daemon, mut editor) =
        connected_editor(&workspace, json!({"messages": "logMessage"})).await;
    daemon.emit(&[
        swap_finished(2),
        Event::HandlerPanicked(HandlerPanicked {
            request: None,
            generation: 2,
            message: "index out of bounds".into(),
            location: Some("src/lib.rs:9:5".into()),
        }),
    ]);
    editor.wait_for_message("window/logMessage", "generation 2 serves the new code").await;
    let panic = editor.wait_for_message("window/logMessage", "panicked at src/lib.rs:9:5").await;
    assert_eq!(panic["type"], 2);
    let shown: Vec<Value> = editor.notifications("window/showMessage");
    assert!(
        shown.iter().all(|params| !params["message"].as_str().unwrap().contains("generation 2")),
        "swaps and panics must only be logged: {shown:#?}"
    );

    editor
        .notify(
            "workspace/didChangeConfiguration",
            json!({"settings": {"hotswap": {"messages": "showMessage"}}}),
        )
        .await;
    daemon.emit(&[swap_finished(3)]);
    editor.wait_for_message("window/showMessage", "generation 3 serves the new code").await;
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[tokio::test]
async fn a_wrong_setting_is_reported_and_the_others_apply() {
    let workspace = TestWorkspace::new();
    let (daemon, mut editor) =
        connected_editor(&workspace, json!({"autostart": true, "messages": "logMessage"})).await;
    editor
        .wait_for_message("window/showMessage", "unknown hotswap-lsp setting \"autostart\"")
        .await;
    daemon.emit(&[swap_finished(2)]);
    editor.wait_for_message("window/logMessage", "generation 2 serves").await;
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

/// Writes an executable shell script standing in for the `hotswap` command.
fn fake_hotswap_command(workspace: &TestWorkspace, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = workspace.runtime_dir.join("fake-hotswap");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn auto_start_runs_hotswap_serve_for_the_workspace_and_reports_when_it_exits() {
    let workspace = TestWorkspace::new();
    let command =
        fake_hotswap_command(&workspace, "echo \"fake hotswap was run with: $*\" >&2\nexit 3");
    let mut editor = FakeEditor::start(workspace.server_environment());
    editor
        .initialize(workspace.initialize_params(json!({"autoStart": true, "hotswapPath": command})))
        .await;
    let serve = format!("{} serve --workspace {}", command.display(), workspace.root.display());
    editor.wait_for_message("window/showMessage", &format!("started `{serve}`")).await;
    let exited = editor.wait_for_message("window/showMessage", "exited (exit status: 3)").await;
    let expected_output =
        format!("fake hotswap was run with: serve --workspace {}", workspace.root.display());
    assert!(exited["message"].as_str().unwrap().contains(&expected_output), "{exited}");
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_daemon_started_by_auto_start_stops_with_the_editor() {
    let workspace = TestWorkspace::new();
    let command = fake_hotswap_command(&workspace, "exec tail -f /dev/null");
    let mut editor = FakeEditor::start(workspace.server_environment());
    editor
        .initialize(workspace.initialize_params(json!({"autoStart": true, "hotswapPath": command})))
        .await;
    let started = editor.wait_for_message("window/showMessage", "started `").await;
    let text = started["message"].as_str().unwrap();
    let pid: u32 = text
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the daemon runs: {text}");
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the daemon was stopped and reaped"
    );
}

#[tokio::test]
async fn the_server_stops_when_the_editor_process_dies() {
    let workspace = TestWorkspace::new();
    let mut stand_in_editor_process = std::process::Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("start a process to stand for the editor");
    let mut editor = FakeEditor::start(workspace.server_environment());
    let mut params = workspace.initialize_params(json!({}));
    params["processId"] = json!(stand_in_editor_process.id());
    editor.initialize(params).await;
    stand_in_editor_process.kill().unwrap();
    stand_in_editor_process.wait().unwrap();
    assert_eq!(editor.server_end(WAIT).await, ServeEnd::EditorProcessGone);
}

#[tokio::test]
async fn the_server_stops_when_the_editor_closes_the_stream_without_exit() {
    let workspace = TestWorkspace::new();
    let mut editor = FakeEditor::start(workspace.server_environment());
    editor.initialize(workspace.initialize_params(json!({}))).await;
    editor.close_input().await;
    assert_eq!(editor.server_end(WAIT).await, ServeEnd::EditorClosed { after_shutdown: false });
}

/// A daemon whose last build failed before the editor connected.
struct FailedBeforeConnecting {
    file: PathBuf,
}

impl Behavior for FailedBeforeConnecting {
    fn react(&self, request: &ClientRequest, daemon: &DaemonFacts) -> Reaction {
        let mut answer = plain_answer(request, daemon);
        if let (ClientRequest::Status(_), Ok(value)) = (request, &answer) {
            let mut status: StatusResult = serde_json::from_value(value.clone()).unwrap();
            status.last_build = Some(LastBuild {
                build: 4,
                outcome: BuildOutcome::Failed,
                duration_ms: 300.0,
                errors: 1,
                warnings: 0,
                finished_ago_ms: 10,
                diagnostics: vec![mismatched_types(self.file.clone())],
                built_with: None,
            });
            answer = Ok(serde_json::to_value(status).unwrap());
        }
        Reaction { answer, events: Vec::new() }
    }
}

#[tokio::test]
async fn an_editor_that_connects_after_a_failed_build_shows_its_errors() {
    let workspace = TestWorkspace::new();
    let lib_uri = workspace.uri("src/lib.rs");
    let behavior = FailedBeforeConnecting { file: workspace.path("src/lib.rs") };
    let _daemon = StandInDaemon::start(workspace.endpoint(), LISTEN_ADDRESS, Arc::new(behavior));
    let mut editor = FakeEditor::start(workspace.server_environment());
    editor.initialize(workspace.initialize_params(json!({}))).await;
    let published = editor
        .wait_for_notification("textDocument/publishDiagnostics", |params| {
            params["uri"] == lib_uri.as_str()
        })
        .await;
    assert_eq!(published["diagnostics"][0]["code"], "E0308");
    assert_eq!(published["diagnostics"][0]["source"], "hotswap");
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[tokio::test]
async fn a_crash_is_shown_to_the_editor_with_how_it_died_and_what_serves_now() {
    let workspace = TestWorkspace::new();
    let (daemon, mut editor) = connected_editor(&workspace, json!({})).await;
    daemon.emit(&[Event::GenerationCrashed(GenerationCrashed {
        generation: 4,
        pid: 4321,
        cause: "stack overflow in thread 'hotswap-g4' (killed by SIGSEGV)".into(),
        signal: Some("SIGSEGV (invalid memory access)".into()),
        exit_code: None,
        last_words: vec!["thread 'hotswap-g4' has overflowed its stack".into()],
        request: Some("GET /deep".into()),
        recovery: CrashRecovery::Restart { snapshot_age_ms: Some(400) },
        message: "generation 4 crashed: stack overflow in thread 'hotswap-g4' (killed by SIGSEGV) \
                  while running GET /deep; the same build starts again from the state snapshot of \
                  0.4 s ago"
            .into(),
    })]);
    let shown = editor.wait_for_message("window/showMessage", "generation 4 crashed").await;
    assert_eq!(shown["type"], 1, "an error: {shown}");
    let text = shown["message"].as_str().unwrap();
    assert!(text.contains("stack overflow") && text.contains("GET /deep"), "{text}");
    assert!(text.contains("starts again"), "{text}");
    assert!(text.contains("has overflowed its stack"), "the last words: {text}");
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

/// A stand-in whose last swap was refused before the editor connected.
struct RefusedBeforeConnecting;

impl Behavior for RefusedBeforeConnecting {
    fn react(&self, request: &ClientRequest, daemon: &DaemonFacts) -> Reaction {
        let mut answer = plain_answer(request, daemon);
        if let (ClientRequest::Status(_), Ok(value)) = (request, &answer) {
            let mut status: StatusResult = serde_json::from_value(value.clone()).unwrap();
            status.refused_swap = Some(RefusedSwap {
                generation: 4,
                build: Some(6),
                stage: SwapStage::State,
                message: "missing field `priority`".into(),
                serving: Some(3),
                ago_ms: 2000,
            });
            answer = Ok(serde_json::to_value(status).unwrap());
        }
        Reaction { answer, events: Vec::new() }
    }
}

#[tokio::test]
async fn an_editor_that_connects_after_a_refused_swap_is_told_the_code_on_disk_is_not_served() {
    let workspace = TestWorkspace::new();
    let _daemon = StandInDaemon::start(
        workspace.endpoint(),
        LISTEN_ADDRESS,
        Arc::new(RefusedBeforeConnecting),
    );
    let mut editor = FakeEditor::start(workspace.server_environment());
    editor.initialize(workspace.initialize_params(json!({}))).await;
    let shown = editor.wait_for_message("window/showMessage", "generation 3 keeps serving").await;
    let text = shown["message"].as_str().unwrap();
    assert!(text.contains("build 6 was refused at the state stage"), "{text}");
    assert!(text.contains("not what serves"), "{text}");
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}

#[tokio::test]
async fn a_state_that_does_not_fit_shows_as_a_diagnostic_at_its_field_beside_the_builds() {
    let workspace = TestWorkspace::new();
    let (daemon, mut editor) = connected_editor(&workspace, json!({})).await;
    let lib = workspace.path("src/lib.rs");
    let lib_uri = workspace.uri("src/lib.rs");
    let warning = Diagnostic {
        severity: Severity::Warning,
        code: Some("unused_variables".into()),
        message: "unused variable: `x`".into(),
        file: Some(lib.clone()),
        range: Some(range(9, 8, 9)),
        rendered: None,
        related: vec![],
    };
    let message = "the old state does not read as this build's `Todos`: `items[\"bread\"].priority` \
                   is missing: the old values have no `priority`, a new field in `Todo` without a \
                   default. Fix it one of these ways: add `#[serde(default)]` to `priority` in \
                   `Todo` (the old values get the default), or bump `STATE_VERSION` and build the \
                   new state from the old one in `migrate_state`, or drop the state on purpose \
                   with `hotswap reload --fresh-state`";
    let at_field = Diagnostic {
        severity: Severity::Error,
        code: Some("hotswap::state".into()),
        message: message.into(),
        file: Some(lib.clone()),
        range: Some(range(13, 4, 12)),
        rendered: None,
        related: vec![],
    };
    daemon.emit(&[
        build_started(2, vec![lib.clone()]),
        build_finished(2, BuildOutcome::Succeeded, vec![warning]),
        Event::SwapFailed(hotswap_protocol::events::SwapFailed {
            generation: 2,
            stage: SwapStage::State,
            message: message.into(),
            state: Some(hotswap_protocol::events::StateProblem {
                message: message.into(),
                struct_name: Some("Todo".into()),
                field: Some("priority".into()),
                path: Some("items[\"bread\"].priority".into()),
            }),
            diagnostics: vec![at_field],
        }),
    ]);
    let published = editor
        .wait_for_notification("textDocument/publishDiagnostics", |params| {
            params["uri"] == lib_uri.as_str()
                && params["diagnostics"].as_array().unwrap().len() == 2
        })
        .await;
    let diagnostics = published["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics[0]["code"], "unused_variables", "the build's warning stays");
    let state = &diagnostics[1];
    assert_eq!(state["code"], "hotswap::state");
    assert_eq!(state["severity"], 1);
    assert_eq!(state["source"], "hotswap");
    assert_eq!(
        state["range"],
        json!({"start": {"line": 13, "character": 4}, "end": {"line": 13, "character": 12}})
    );
    assert!(state["message"].as_str().unwrap().contains("#[serde(default)]"), "{state}");
    let shown = editor.wait_for_message("window/showMessage", "the new code was not loaded").await;
    assert_eq!(shown["type"], 1, "an error");
    let text = shown["message"].as_str().unwrap();
    assert!(text.contains("stage state") && text.contains("--fresh-state"), "{text}");

    // The fix builds and swaps: the diagnostic goes.
    daemon.emit(&[
        build_started(3, vec![lib.clone()]),
        build_finished(3, BuildOutcome::Succeeded, vec![]),
        swap_finished(3),
    ]);
    editor
        .wait_for_notification("textDocument/publishDiagnostics", |params| {
            params["uri"] == lib_uri.as_str() && params["diagnostics"] == json!([])
        })
        .await;
    assert_eq!(editor.quit().await, ServeEnd::EditorClosed { after_shutdown: true });
}
