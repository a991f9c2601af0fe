//! A real rust-analyzer, driven over LSP on stdio as an editor drives it, for the run with its
//! check-on-save alongside: `initialize` with the workspace, `didOpen` of the file the benchmark
//! edits, and for each save a `didChange` with the new text and a `didSave`, which starts its
//! default check-on-save (`cargo check` with `--all-targets`, in the workspace's own target
//! directory, since rust-analyzer's `cargo.targetDir` is unset by default; the report quotes the
//! command line it ran). Its settings are its defaults: the client sends no
//! `initializationOptions`.
//!
//! The end of a check is the end of the `$/progress` that rust-analyzer reports for it (its
//! "flycheck"); the end of start-up is its `experimental/serverStatus` saying `quiescent`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Loading a cold workspace runs its build scripts and proc macros, and the first check checks
/// every dependency.
const COLD_TIMEOUT: Duration = Duration::from_secs(1800);
/// A check after a one-line change.
const CHECK_TIMEOUT: Duration = Duration::from_secs(600);

/// How to get rust-analyzer when it is missing.
pub(crate) const INSTALL_HINT: &str = "rustup component add rust-analyzer";

/// What the benchmark waits for.
#[derive(Debug)]
enum Event {
    /// A check (flycheck) began.
    CheckStarted,
    /// A check ended.
    CheckEnded,
    /// rust-analyzer has nothing left to do (workspace loaded, build scripts run, indexed).
    Quiescent,
}

/// A running rust-analyzer, killed if dropped.
#[derive(Debug)]
pub(crate) struct RustAnalyzer {
    child: tokio::process::Child,
    outgoing: mpsc::UnboundedSender<Value>,
    events: mpsc::UnboundedReceiver<Event>,
    next_id: u64,
    version: i64,
    /// The file the benchmark edits, opened in the "editor".
    document: PathBuf,
    /// When the last save was sent.
    saved_at: Instant,
    /// The command line of its check, as seen in `/proc` during the first check.
    pub(crate) check_command: Option<String>,
}

/// `rust-analyzer --version`, or `None` when it does not run (the rustup proxy without the
/// component says so and fails).
pub(crate) async fn installed_version() -> Option<String> {
    let output = tokio::process::Command::new("rust-analyzer")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

impl RustAnalyzer {
    /// Starts rust-analyzer on the workspace at `root`, opens `document` and waits until it is
    /// quiescent, then saves `document` once and waits for that check: the first check of a
    /// workspace checks every dependency, which the measured saves should not include.
    pub(crate) async fn start(
        root: &Path,
        document: &Path,
        log_path: &Path,
    ) -> anyhow::Result<Self> {
        if installed_version().await.is_none() {
            bail!("rust-analyzer is not installed; install it with `{INSTALL_HINT}`");
        }
        let log = std::fs::File::create(log_path)?;
        let mut child = tokio::process::Command::new("rust-analyzer")
            .current_dir(root)
            // Its default target directory, the workspace's own, not the benchmark's.
            .env_remove("CARGO_TARGET_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start rust-analyzer")?;
        let mut stdin = child.stdin.take().context("rust-analyzer's stdin")?;
        let stdout = child.stdout.take().context("rust-analyzer's stdout")?;
        let (outgoing, mut to_send) = mpsc::unbounded_channel::<Value>();
        let (event_sender, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = to_send.recv().await {
                let body = message.to_string();
                let frame = format!("Content-Length: {}\r\n\r\n{body}", body.len());
                if stdin.write_all(frame.as_bytes()).await.is_err() || stdin.flush().await.is_err()
                {
                    break;
                }
            }
        });
        let replies = outgoing.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout);
            let mut check_tokens = std::collections::HashSet::new();
            while let Ok(Some(message)) = read_message(&mut reader).await {
                handle_message(&message, &replies, &event_sender, &mut check_tokens);
            }
        });
        let mut analyzer = Self {
            child,
            outgoing,
            events,
            next_id: 1,
            version: 1,
            document: document.to_path_buf(),
            saved_at: Instant::now(),
            check_command: None,
        };
        analyzer.send(json!({
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "processId": std::process::id(),
                "rootUri": file_uri(root),
                "workspaceFolders": [{ "uri": file_uri(root), "name": "bench" }],
                "capabilities": {
                    "window": { "workDoneProgress": true },
                    "textDocument": { "synchronization": { "didSave": true } },
                    "experimental": { "serverStatusNotification": true },
                },
            },
        }))?;
        analyzer.notify("initialized", json!({}))?;
        let text = std::fs::read_to_string(document)
            .with_context(|| format!("cannot read {}", document.display()))?;
        analyzer.notify(
            "textDocument/didOpen",
            json!({ "textDocument": {
                "uri": file_uri(document), "languageId": "rust", "version": 1, "text": text,
            } }),
        )?;
        analyzer.wait_for(COLD_TIMEOUT, |event| matches!(event, Event::Quiescent)).await?;
        // The first check, not measured; its command line is what the report quotes.
        let pid = analyzer.child.id().context("rust-analyzer has a pid")?;
        let watcher = tokio::spawn(async move {
            loop {
                if let Some(command) = child_cargo_command(pid) {
                    return command;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        analyzer.save(&text)?;
        analyzer.wait_for_check(COLD_TIMEOUT).await?;
        if watcher.is_finished() {
            analyzer.check_command = watcher.await.ok();
        } else {
            watcher.abort();
        }
        Ok(analyzer)
    }

    fn send(&self, message: Value) -> anyhow::Result<()> {
        self.outgoing.send(message).map_err(|_| anyhow::anyhow!("rust-analyzer exited"))
    }

    fn notify(&self, method: &str, params: Value) -> anyhow::Result<()> {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }))
    }

    /// What an editor sends when the user saves the document with `text`: the change, then the
    /// save, which starts rust-analyzer's check.
    pub(crate) fn save(&mut self, text: &str) -> anyhow::Result<()> {
        // Whatever came before this save (progress of its earlier work) is not about it.
        while self.events.try_recv().is_ok() {}
        self.version += 1;
        self.saved_at = Instant::now();
        let uri = file_uri(&self.document);
        self.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": uri, "version": self.version },
                "contentChanges": [{ "text": text }],
            }),
        )?;
        self.notify("textDocument/didSave", json!({ "textDocument": { "uri": uri } }))
    }

    /// Waits until the check that the last save started has ended, and returns how long after
    /// the save it ended.
    pub(crate) async fn wait_for_check(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.wait_for(timeout, |event| matches!(event, Event::CheckStarted)).await?;
        self.wait_for(timeout.saturating_sub(started.elapsed()), |event| {
            matches!(event, Event::CheckEnded)
        })
        .await?;
        Ok(self.saved_at.elapsed())
    }

    /// [`Self::wait_for_check`] with the timeout of a check after a one-line change.
    pub(crate) async fn wait_for_change_check(&mut self) -> anyhow::Result<Duration> {
        self.wait_for_check(CHECK_TIMEOUT).await
    }

    async fn wait_for(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&Event) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if wanted(&event) => return Ok(()),
                Ok(Some(_)) => {}
                Ok(None) => bail!("rust-analyzer exited"),
                Err(_) => bail!("rust-analyzer did not answer within {timeout:?}"),
            }
        }
    }

    /// Asks rust-analyzer to exit, as an editor does, and kills it after 10 s.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let _ = self.send(json!({ "jsonrpc": "2.0", "id": id, "method": "shutdown" }));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = self.notify("exit", Value::Null);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// The command line of a `cargo` that process `parent` runs, if any (its check).
fn child_cargo_command(parent: u32) -> Option<String> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent's pid is the second field after the command's closing parenthesis.
        let parent_of = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|field| field.parse::<u32>().ok());
        if parent_of != Some(parent) {
            continue;
        }
        let Ok(command_line) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let arguments: Vec<String> = command_line
            .split(|byte| *byte == 0)
            .filter(|argument| !argument.is_empty())
            .map(|argument| String::from_utf8_lossy(argument).into_owned())
            .collect();
        let is_cargo = arguments.first().is_some_and(|program| {
            Path::new(program).file_name().is_some_and(|name| name == "cargo")
        });
        if is_cargo && arguments.iter().any(|argument| argument == "check") {
            let mut shown = vec!["cargo".to_owned()];
            shown.extend(arguments.into_iter().skip(1));
            return Some(shown.join(" "));
        }
    }
    None
}

/// Answers rust-analyzer's requests (progress tokens, registrations: all accepted with `null`)
/// and turns its notifications into [`Event`]s.
fn handle_message(
    message: &Value,
    replies: &mpsc::UnboundedSender<Value>,
    events: &mpsc::UnboundedSender<Event>,
    check_tokens: &mut std::collections::HashSet<String>,
) {
    let method = message.get("method").and_then(Value::as_str);
    if let (Some(_), Some(id)) = (method, message.get("id")) {
        let _ = replies.send(json!({ "jsonrpc": "2.0", "id": id, "result": null }));
        return;
    }
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    match method {
        Some("$/progress") => {
            let token = match &params["token"] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let value = &params["value"];
            match value["kind"].as_str() {
                Some("begin") => {
                    let title = value["title"].as_str().unwrap_or_default();
                    if is_check(&token, title) {
                        check_tokens.insert(token);
                        let _ = events.send(Event::CheckStarted);
                    }
                }
                Some("end") if check_tokens.remove(&token) => {
                    let _ = events.send(Event::CheckEnded);
                }
                _ => {}
            }
        }
        Some("experimental/serverStatus") if params["quiescent"].as_bool() == Some(true) => {
            let _ = events.send(Event::Quiescent);
        }
        _ => {}
    }
}

/// Whether a progress is rust-analyzer's check-on-save (its token names the "flycheck", its
/// title the command, `cargo check`).
fn is_check(token: &str, title: &str) -> bool {
    token.contains("flycheck") || title.contains("cargo check")
}

/// Reads one LSP message (`Content-Length` framing); `None` at the end of the stream.
async fn read_message(
    reader: &mut BufReader<tokio::process::ChildStdout>,
) -> anyhow::Result<Option<Value>> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length:") {
            length = Some(value.trim().parse::<usize>()?);
        }
    }
    let length = length.context("an LSP message without Content-Length")?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_told_from_other_progress() {
        assert!(is_check("rustAnalyzer/flycheck/0", "cargo check"));
        assert!(is_check("rust-analyzer/flycheck/0", ""));
        assert!(!is_check("rustAnalyzer/Indexing", "Indexing"));
        assert!(!is_check("rustAnalyzer/Building build-artifacts", "Building build-artifacts"));
    }

    #[test]
    fn requests_are_answered_and_progress_becomes_events() {
        let (replies, mut sent) = mpsc::unbounded_channel();
        let (events, mut received) = mpsc::unbounded_channel();
        let mut tokens = std::collections::HashSet::new();
        let request = json!({ "jsonrpc": "2.0", "id": 7, "method": "window/workDoneProgress/create",
                              "params": { "token": "rustAnalyzer/flycheck/0" } });
        handle_message(&request, &replies, &events, &mut tokens);
        assert_eq!(sent.try_recv().unwrap()["id"], 7);
        for kind in ["begin", "end"] {
            let progress = json!({ "jsonrpc": "2.0", "method": "$/progress", "params": {
                "token": "rustAnalyzer/flycheck/0", "value": { "kind": kind, "title": "cargo check" } } });
            handle_message(&progress, &replies, &events, &mut tokens);
        }
        assert!(matches!(received.try_recv(), Ok(Event::CheckStarted)));
        assert!(matches!(received.try_recv(), Ok(Event::CheckEnded)));
    }
}
