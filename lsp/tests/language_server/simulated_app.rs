//! A simulated app for the editor scenarios against the stand-in daemon: an HTTP server whose
//! answer is the greeting of the generation that serves, and a daemon behavior that "builds" the
//! handler source the way the real daemon would look from the editor. A source containing
//! `"not a number"` fails with rustc's E0308 at that literal (its column counted in UTF-16, as
//! the protocol says); any other source becomes a new generation that answers with the
//! `hello from ...` string of the source.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hotswap_protocol::events::{
    BuildFinished, BuildOutcome, BuildProgress, BuildReason, BuildStarted, Diagnostic, Event,
    Position, Range, RelatedInformation, Severity, SwapFinished, SwapStages,
};
use hotswap_protocol::jsonrpc::{ResponseError, error_code};
use hotswap_protocol::messages::{ClientRequest, ReloadOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::stand_in_daemon::{Behavior, DaemonFacts, Reaction, plain_answer};

/// The literal the simulated compiler rejects, as rustc would in a function returning `u32`.
const REJECTED_LITERAL: &str = "\"not a number\"";

/// An HTTP/1.1 server on 127.0.0.1 that answers every request with `body`.
pub(crate) struct SimulatedHttpServer {
    pub(crate) address: SocketAddr,
    pub(crate) body: Arc<Mutex<String>>,
    task: JoinHandle<()>,
}

impl SimulatedHttpServer {
    pub(crate) async fn start(initial_body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the simulated app");
        let address = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(initial_body.to_owned()));
        let task = tokio::spawn({
            let body = body.clone();
            async move {
                let mut connections = JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((mut stream, _)) = accepted else { return };
                            let body = body.clone();
                            connections.spawn(async move {
                                let mut request = Vec::new();
                                let mut buffer = [0u8; 1024];
                                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                                    match stream.read(&mut buffer).await {
                                        Ok(0) | Err(_) => return,
                                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                                    }
                                }
                                let body = body.lock().unwrap().clone();
                                let response = format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                    body.len()
                                );
                                let _ = stream.write_all(response.as_bytes()).await;
                                let _ = stream.shutdown().await;
                            });
                        }
                        Some(_) = connections.join_next() => {}
                    }
                }
            }
        });
        Self { address, body, task }
    }
}

impl Drop for SimulatedHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct AppState {
    builds: u64,
    generation: u64,
    /// The greeting of every generation so far, in order; the last one serves.
    generations: Vec<String>,
}

/// The daemon behavior of the simulated app.
pub(crate) struct SimulatedApp {
    source_file: PathBuf,
    http_body: Arc<Mutex<String>>,
    state: Mutex<AppState>,
}

impl SimulatedApp {
    pub(crate) fn new(source_file: PathBuf, http: &SimulatedHttpServer) -> Self {
        let initial = http.body.lock().unwrap().clone();
        Self {
            source_file,
            http_body: http.body.clone(),
            state: Mutex::new(AppState { builds: 0, generation: 1, generations: vec![initial] }),
        }
    }

    fn build(&self, reason: BuildReason, paths: Vec<PathBuf>) -> (Vec<Event>, ReloadOutcome) {
        let source = std::fs::read_to_string(&self.source_file).unwrap_or_default();
        let mut state = self.state.lock().unwrap();
        state.builds += 1;
        let build = state.builds;
        let mut events = vec![
            Event::BuildStarted(BuildStarted { build, reason, paths }),
            Event::BuildProgress(BuildProgress {
                build,
                message: "Compiling app v0.1.0".into(),
                blocked: false,
            }),
        ];
        if let Some(diagnostic) = rejected_literal_diagnostic(&source, &self.source_file) {
            let rendered = diagnostic.rendered.clone().unwrap_or_default();
            events.push(Event::BuildFinished(BuildFinished {
                build,
                outcome: BuildOutcome::Failed,
                duration_ms: 310.0,
                diagnostics: vec![diagnostic.clone()],
                built_with: None,
            }));
            return (
                events,
                ReloadOutcome::BuildFailed {
                    build_ms: 310.0,
                    diagnostics: vec![diagnostic],
                    rendered,
                },
            );
        }
        events.push(Event::BuildFinished(BuildFinished {
            build,
            outcome: BuildOutcome::Succeeded,
            duration_ms: 320.0,
            diagnostics: vec![],
            built_with: None,
        }));
        let greeting = source
            .split('"')
            .find(|part| part.starts_with("hello from "))
            .unwrap_or("no greeting in the source")
            .to_owned();
        let previous = state.generation;
        state.generation += 1;
        state.generations.push(greeting.clone());
        *self.http_body.lock().unwrap() = greeting;
        let swap = SwapFinished {
            after_crash: None,
            generation: state.generation,
            previous_generation: Some(previous),
            rollback: false,
            swap_ms: 3.0,
            total_ms: Some(380.0),
            build_ms: Some(320.0),
            stages: SwapStages::default(),
            warnings: vec![],
        };
        events.push(Event::SwapFinished(swap.clone()));
        let outcome = ReloadOutcome::Swapped {
            generation: swap.generation,
            previous_generation: swap.previous_generation,
            build_ms: swap.build_ms,
            swap_ms: swap.swap_ms,
            total_ms: 380.0,
            stages: swap.stages,
            warnings: vec![],
        };
        (events, outcome)
    }

    fn rollback(&self) -> Result<(Vec<Event>, ReloadOutcome), ResponseError> {
        let mut state = self.state.lock().unwrap();
        let count = state.generations.len();
        if count < 2 {
            return Err(ResponseError::new(
                error_code::NO_PREVIOUS_GENERATION,
                "nothing to roll back to",
            ));
        }
        let greeting = state.generations[count - 2].clone();
        let previous = state.generation;
        state.generation += 1;
        state.generations.push(greeting.clone());
        *self.http_body.lock().unwrap() = greeting;
        let swap = SwapFinished {
            after_crash: None,
            generation: state.generation,
            previous_generation: Some(previous),
            rollback: true,
            swap_ms: 2.0,
            total_ms: None,
            build_ms: None,
            stages: SwapStages::default(),
            warnings: vec![],
        };
        let outcome = ReloadOutcome::Swapped {
            generation: swap.generation,
            previous_generation: swap.previous_generation,
            build_ms: None,
            swap_ms: 2.0,
            total_ms: 2.0,
            stages: SwapStages::default(),
            warnings: vec![],
        };
        Ok((vec![Event::SwapFinished(swap)], outcome))
    }
}

impl Behavior for SimulatedApp {
    fn react(&self, request: &ClientRequest, daemon: &DaemonFacts) -> Reaction {
        match request {
            ClientRequest::DidSave(params) => {
                let (events, _) = self.build(BuildReason::Save, params.paths.clone());
                Reaction { answer: plain_answer(request, daemon), events }
            }
            ClientRequest::Reload(_) => {
                let (events, outcome) = self.build(BuildReason::Reload, vec![]);
                Reaction { answer: Ok(serde_json::to_value(outcome).unwrap()), events }
            }
            ClientRequest::Rollback(_) => match self.rollback() {
                Ok((events, outcome)) => {
                    Reaction { answer: Ok(serde_json::to_value(outcome).unwrap()), events }
                }
                Err(error) => Reaction { answer: Err(error), events: vec![] },
            },
            _ => Reaction { answer: plain_answer(request, daemon), events: vec![] },
        }
    }
}

/// rustc's E0308 for the rejected literal, with LSP positions (lines from 0, UTF-16 columns).
fn rejected_literal_diagnostic(source: &str, file: &std::path::Path) -> Option<Diagnostic> {
    let (line_index, line) =
        source.lines().enumerate().find(|(_, line)| line.contains(REJECTED_LITERAL))?;
    let utf16_column = |byte_index: usize| line[..byte_index].encode_utf16().count() as u32;
    let literal_start = utf16_column(line.find(REJECTED_LITERAL)?);
    let literal_end = literal_start + REJECTED_LITERAL.encode_utf16().count() as u32;
    let line_number = line_index as u32;
    let range = |start, end| Range {
        start: Position { line: line_number, character: start },
        end: Position { line: line_number, character: end },
    };
    let related = line.find("u32").map(|byte_index| RelatedInformation {
        file: file.to_path_buf(),
        range: range(utf16_column(byte_index), utf16_column(byte_index) + 3),
        message: "expected `u32` because of return type".into(),
    });
    Some(Diagnostic {
        severity: Severity::Error,
        code: Some("E0308".into()),
        message: "mismatched types: expected `u32`, found `&str`".into(),
        file: Some(file.to_path_buf()),
        range: Some(range(literal_start, literal_end)),
        rendered: Some(format!(
            "error[E0308]: mismatched types\n --> {}:{}",
            file.display(),
            line_number + 1
        )),
        related: related.into_iter().collect(),
    })
}
