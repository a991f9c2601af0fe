//! The event stream a page reads (`GET /__hotswap/events`): a connection of its own to the
//! daemon's local socket, speaking the socket protocol (`protocol/README.md`: one JSON-RPC message
//! per line; `initialize`, `subscribe`, `status`), and the daemon's events turned into the few
//! Server-Sent Events the page script knows:
//!
//! | SSE event | when | data |
//! |---|---|---|
//! | `hello` | connected | `generation` (this one), `daemon` (its pid): a page that meets another daemon reloads |
//! | `reload` | `swapFinished` of another generation; on connect, when the page is of another generation than this one, or a newer one serves | `generation` |
//! | `build-failed` | `buildFinished` failed; on connect, when the last build failed | `errors: {location, message, rendered}[]`, `generation` |
//! | `build-ok` | `buildFinished` succeeded or unchanged | |
//! | `swap-failed` | `swapFailed`; on connect, a refused swap | `generation`, `stage`, `message` |
//! | `crashed` | on connect, when the page's own generation crashed (instead of `reload`) | `message` |
//! | `assets` | `assetsChanged` | `files: {path, relativePath}[]` |
//!
//! The stream ends when the daemon closes the socket (it stopped) or a second after this
//! generation begins to drain (the page reconnects to the new one and reloads).

use std::path::Path;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use crate::sdk::instance::Phase;
use crate::sdk::{Body, BoxError};

/// Comments that keep proxies and the browser from taking a quiet stream for a dead one.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long the stream stays after the generation begins to drain, for the `reload` to pass.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// Daemon lines longer than this are skipped (a build with thousands of diagnostics).
const LONGEST_LINE: usize = 16 * 1024 * 1024;

/// Which generation serves the stream, and which one rendered the page that reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context {
    pub(crate) generation: u64,
    pub(crate) page_generation: Option<u64>,
}

/// Connects to the daemon and returns the body of the event stream. `Err` when the socket does
/// not answer (the page then retries).
pub(crate) async fn connect(
    socket: &Path,
    context: Context,
    phase: watch::Receiver<Phase>,
) -> std::io::Result<Body> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (sender, receiver) = mpsc::channel(64);
    let task = tokio::spawn(follow(stream, context, phase, sender));
    Ok(Body::new(EventStream { receiver, task }))
}

/// The requests sent at once on connecting.
const OPENING: &str = concat!(
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1,"clientName":"hotswap-live-reload"}}"#,
    "\n",
    r#"{"jsonrpc":"2.0","id":2,"method":"subscribe"}"#,
    "\n",
    r#"{"jsonrpc":"2.0","id":3,"method":"status"}"#,
    "\n",
);

async fn follow(
    stream: tokio::net::UnixStream,
    context: Context,
    mut phase: watch::Receiver<Phase>,
    events: mpsc::Sender<Bytes>,
) {
    let (reader, mut writer) = stream.into_split();
    if writer.write_all(OPENING.as_bytes()).await.is_err() {
        return;
    }
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    let mut translator = Translator { context, workspace_root: None };
    let mut keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let mut drain_deadline = None;
    loop {
        let ends = async {
            match drain_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let draining = async { phase.wait_for(|phase| *phase != Phase::Serving).await.is_ok() };
        tokio::select! {
            read = reader.read_until(b'\n', &mut line) => {
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line.len() <= LONGEST_LINE
                    && let Ok(message) = serde_json::from_slice::<Value>(&line)
                {
                    for event in translator.message(&message) {
                        if events.send(event.encode()).await.is_err() {
                            return;
                        }
                    }
                }
                line.clear();
            }
            _ = draining, if drain_deadline.is_none() => {
                drain_deadline = Some(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            () = ends => return,
            _ = keep_alive.tick() => {
                if events.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                    return;
                }
            }
            () = events.closed() => return,
        }
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BrowserEvent {
    pub(crate) name: &'static str,
    pub(crate) data: Value,
}

impl BrowserEvent {
    fn new(name: &'static str, data: Value) -> Self {
        Self { name, data }
    }

    /// `event: NAME\ndata: JSON\n\n` (JSON on one line).
    pub(crate) fn encode(&self) -> Bytes {
        Bytes::from(format!("event: {}\ndata: {}\n\n", self.name, self.data))
    }
}

/// Turns the daemon's messages into the page's events.
pub(crate) struct Translator {
    pub(crate) context: Context,
    /// From `initialize`: diagnostics are shown relative to it.
    pub(crate) workspace_root: Option<String>,
}

impl Translator {
    /// The page's events for one line from the daemon (a response or an event).
    pub(crate) fn message(&mut self, message: &Value) -> Vec<BrowserEvent> {
        if let Some(method) = message.get("method").and_then(Value::as_str) {
            let params = message.get("params").unwrap_or(&Value::Null);
            return self.event(method, params).into_iter().collect();
        }
        let Some(result) = message.get("result") else { return Vec::new() };
        match message.get("id").and_then(Value::as_u64) {
            Some(1) => {
                self.workspace_root =
                    result.get("workspaceRoot").and_then(Value::as_str).map(str::to_owned);
                vec![BrowserEvent::new(
                    "hello",
                    json!({
                        "generation": self.context.generation,
                        "daemon": result.get("pid").cloned().unwrap_or(Value::Null),
                    }),
                )]
            }
            Some(3) => self.status(result),
            _ => Vec::new(),
        }
    }

    /// What a page that connects now must show: a newer generation serves (reload), the page's
    /// own generation crashed (its message), a failed build, a refused swap.
    fn status(&self, status: &Value) -> Vec<BrowserEvent> {
        let current = status.get("currentGeneration").and_then(Value::as_u64);
        if current.is_some_and(|current| current > self.context.generation) {
            return vec![BrowserEvent::new("reload", json!({ "generation": current }))];
        }
        if let Some(page) = self.context.page_generation
            && page != self.context.generation
        {
            let crash = status.get("lastCrash").and_then(|last| last.get("crash"));
            return match crash {
                Some(crash) if crash.get("generation").and_then(Value::as_u64) == Some(page) => {
                    vec![BrowserEvent::new(
                        "crashed",
                        json!({ "message": crash.get("message").cloned().unwrap_or(Value::Null) }),
                    )]
                }
                _ => vec![BrowserEvent::new(
                    "reload",
                    json!({ "generation": self.context.generation }),
                )],
            };
        }
        let mut events = Vec::new();
        if let Some(build) = status.get("lastBuild")
            && build.get("outcome").and_then(Value::as_str) == Some("failed")
        {
            events.push(self.build_failed(build.get("diagnostics").unwrap_or(&Value::Null)));
        }
        if let Some(refused) = status.get("refusedSwap") {
            events.push(swap_failed(refused));
        }
        events
    }

    fn event(&self, method: &str, params: &Value) -> Option<BrowserEvent> {
        match method {
            "swapFinished" => {
                let generation = params.get("generation").and_then(Value::as_u64)?;
                (generation != self.context.generation)
                    .then(|| BrowserEvent::new("reload", json!({ "generation": generation })))
            }
            "buildFinished" => match params.get("outcome").and_then(Value::as_str)? {
                "failed" => {
                    Some(self.build_failed(params.get("diagnostics").unwrap_or(&Value::Null)))
                }
                "succeeded" | "unchanged" => Some(BrowserEvent::new("build-ok", json!({}))),
                _ => None,
            },
            "swapFailed" => Some(swap_failed(params)),
            "assetsChanged" => Some(BrowserEvent::new(
                "assets",
                json!({ "files": params.get("files").cloned().unwrap_or(json!([])) }),
            )),
            _ => None,
        }
    }

    /// The compiler's errors as the overlay shows them: `src/lib.rs:12:5` (from 1, relative to
    /// the workspace), the message, the rendered snippet.
    fn build_failed(&self, diagnostics: &Value) -> BrowserEvent {
        let all = diagnostics.as_array().map(Vec::as_slice).unwrap_or_default();
        let errors: Vec<Value> = all
            .iter()
            .filter(|diagnostic| {
                diagnostic.get("severity").and_then(Value::as_str) == Some("error")
            })
            .map(|diagnostic| {
                json!({
                    "location": self.location(diagnostic),
                    "message": diagnostic.get("message").cloned().unwrap_or(Value::Null),
                    "rendered": diagnostic.get("rendered").cloned().unwrap_or(Value::Null),
                })
            })
            .collect();
        BrowserEvent::new(
            "build-failed",
            json!({ "errors": errors, "generation": self.context.generation }),
        )
    }

    fn location(&self, diagnostic: &Value) -> Value {
        let Some(file) = diagnostic.get("file").and_then(Value::as_str) else { return Value::Null };
        let file = self
            .workspace_root
            .as_deref()
            .and_then(|root| file.strip_prefix(root))
            .and_then(|relative| relative.strip_prefix('/'))
            .unwrap_or(file);
        let start = diagnostic.get("range").and_then(|range| range.get("start"));
        let number = |key: &str| start.and_then(|start| start.get(key)).and_then(Value::as_u64);
        match (number("line"), number("character")) {
            (Some(line), Some(character)) => {
                Value::from(format!("{file}:{}:{}", line + 1, character + 1))
            }
            _ => Value::from(file),
        }
    }
}

fn swap_failed(params: &Value) -> BrowserEvent {
    BrowserEvent::new(
        "swap-failed",
        json!({
            "generation": params.get("generation").cloned().unwrap_or(Value::Null),
            "stage": params.get("stage").cloned().unwrap_or(Value::Null),
            "message": params.get("message").cloned().unwrap_or(Value::Null),
        }),
    )
}

/// The response body: what the task sends; the task ends with the body.
struct EventStream {
    receiver: mpsc::Receiver<Bytes>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl http_body::Body for EventStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.receiver.poll_recv(cx).map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translator_for(generation: u64, page_generation: Option<u64>) -> Translator {
        Translator {
            context: Context { generation, page_generation },
            workspace_root: Some("/home/ada/todo".to_owned()),
        }
    }

    /// The daemon's events as `protocol/vectors/messages.jsonl` pins them: the same lines the
    /// Rust and TypeScript clients are checked against.
    fn vector(name: &str) -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../protocol/vectors/messages.jsonl");
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .find(|vector| vector["name"] == name)
            .unwrap_or_else(|| panic!("no vector {name:?}"))["message"]
            .clone()
    }

    #[test]
    fn daemon_events_become_page_events() {
        let mut translator = translator_for(3, Some(3));
        let swapped = translator.message(&vector("event swapFinished"));
        assert_eq!(swapped, [BrowserEvent::new("reload", json!({ "generation": 4 }))]);
        let failed = translator.message(&vector("event buildFinished"));
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].name, "build-failed");
        assert_eq!(
            failed[0].data["errors"],
            json!([{ "location": null, "message": "linking with `cc` failed: exit status: 1", "rendered": null }]),
            "only errors, with a location when they have a file"
        );
        let assets = translator.message(&vector("event assetsChanged"));
        assert_eq!(assets[0].name, "assets");
        assert_eq!(assets[0].data["files"][0]["relativePath"], "css/site.css");
        assert!(translator.message(&vector("event log")).is_empty());

        // This generation's own swap (a page that connected during it) reloads nothing.
        let mut own = translator_for(4, Some(4));
        assert!(own.message(&vector("event swapFinished")).is_empty());
    }

    #[test]
    fn errors_name_the_file_line_and_column_from_one() {
        let translator = translator_for(2, Some(2));
        let diagnostics = json!([
            { "severity": "warning", "message": "unused" },
            {
                "severity": "error", "message": "mismatched types",
                "file": "/home/ada/todo/src/lib.rs",
                "range": { "start": { "line": 11, "character": 4 }, "end": { "line": 11, "character": 9 } },
                "rendered": "error[E0308]: mismatched types\n --> src/lib.rs:12:5\n"
            }
        ]);
        let event = translator.build_failed(&diagnostics);
        assert_eq!(event.data["errors"][0]["location"], "src/lib.rs:12:5");
        assert_eq!(event.data["errors"].as_array().unwrap().len(), 1);
        assert!(event.encode().starts_with(b"event: build-failed\ndata: {"));
        assert!(event.encode().ends_with(b"}\n\n"));
    }

    #[test]
    fn a_page_that_connects_is_told_what_it_missed() {
        let mut translator = translator_for(2, Some(2));
        let hello = translator.message(&json!({"jsonrpc": "2.0", "id": 1, "result": {
            "protocolVersion": 1, "pid": 4242, "workspaceRoot": "/w/site", "package": "site",
            "listenAddress": "127.0.0.1:3000", "daemonVersion": "0.1.0" }}));
        assert_eq!(hello, [BrowserEvent::new("hello", json!({ "generation": 2, "daemon": 4242 }))]);
        assert_eq!(translator.workspace_root.as_deref(), Some("/w/site"));

        let status = |body: Value| json!({"jsonrpc": "2.0", "id": 3, "result": body});
        let newer = translator.message(&status(json!({ "currentGeneration": 3 })));
        assert_eq!(newer, [BrowserEvent::new("reload", json!({ "generation": 3 }))]);
        let broken = translator.message(&status(json!({
            "currentGeneration": 2,
            "lastBuild": { "build": 4, "outcome": "failed", "durationMs": 1.0, "errors": 1,
                "warnings": 0, "finishedAgoMs": 5, "diagnostics": [] },
            "refusedSwap": { "generation": 3, "stage": "smoke", "message": "answered 500", "agoMs": 1 }
        })));
        let names: Vec<&str> = broken.iter().map(|event| event.name).collect();
        assert_eq!(names, ["build-failed", "swap-failed"]);
        assert_eq!(broken[1].data["stage"], "smoke");

        // A page of generation 1, which crashed, reaches generation 2.
        let mut after_crash = Translator {
            context: Context { generation: 2, page_generation: Some(1) },
            workspace_root: None,
        };
        let crashed = after_crash.message(&status(json!({
            "currentGeneration": 2,
            "lastCrash": { "agoMs": 10, "crash": { "generation": 1, "message": "generation 1 crashed: stack overflow" } }
        })));
        assert_eq!(
            crashed,
            [BrowserEvent::new(
                "crashed",
                json!({ "message": "generation 1 crashed: stack overflow" })
            )]
        );
        // A page of generation 1 that was replaced reaches generation 2: it reloads.
        let replaced = after_crash.message(&status(json!({ "currentGeneration": 2 })));
        assert_eq!(replaced, [BrowserEvent::new("reload", json!({ "generation": 2 }))]);
    }
}
