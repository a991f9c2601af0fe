//! A stand-in for the hotswap daemon, made of the protocol crate's primitives (`listen`,
//! `LineReader`, `decode_client_message`, `encode_result`, `encode_event`) on a real socket.
//! It records every request, answers through a [`Behavior`] the test picks, and sends events to
//! subscribed connections when the behavior or the test says so.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hotswap_protocol::Endpoint;
use hotswap_protocol::events::{Event, SwapStages};
use hotswap_protocol::framing::{LineReader, encode_line};
use hotswap_protocol::jsonrpc::{
    ClientMessage, ResponseError, decode_client_message, encode_error, encode_event, encode_result,
};
use hotswap_protocol::messages::{
    CancelBuildResult, ClientRequest, DidSaveResult, InitializeResult, NoParams, ReloadOutcome,
    StateResult, StatusResult, SubscribeResult,
};
use hotswap_protocol::transport::listen;
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::tokio::prelude::*;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// How long a test waits for something the stand-in should receive.
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// What the stand-in answers to a request, and which events follow the answer.
#[derive(Debug)]
pub(crate) struct Reaction {
    pub(crate) answer: Result<Value, ResponseError>,
    pub(crate) events: Vec<Event>,
}

/// How the stand-in reacts; tests pick or write one.
pub(crate) trait Behavior: Send + Sync + 'static {
    fn react(&self, request: &ClientRequest, daemon: &DaemonFacts) -> Reaction {
        Reaction { answer: plain_answer(request, daemon), events: Vec::new() }
    }
}

/// Plain answers and no events: the test sends events itself with [`StandInDaemon::emit`].
#[derive(Debug)]
pub(crate) struct PlainAnswers;

impl Behavior for PlainAnswers {}

/// What the stand-in says about itself.
#[derive(Debug, Clone)]
pub(crate) struct DaemonFacts {
    pub(crate) workspace_root: PathBuf,
    pub(crate) listen_address: String,
    pub(crate) endpoint: String,
}

/// The usual answer to each request.
pub(crate) fn plain_answer(
    request: &ClientRequest,
    daemon: &DaemonFacts,
) -> Result<Value, ResponseError> {
    let value = match request {
        ClientRequest::Initialize(_) => serde_json::to_value(InitializeResult {
            protocol_version: 1,
            daemon_version: "stand-in".into(),
            pid: std::process::id(),
            workspace_root: daemon.workspace_root.clone(),
            package: "app".into(),
            listen_address: daemon.listen_address.clone(),
            generation: Some(1),
        }),
        ClientRequest::DidSave(params) => {
            serde_json::to_value(DidSaveResult { accepted: params.paths.clone(), ignored: vec![] })
        }
        ClientRequest::Reload(_) => {
            serde_json::to_value(ReloadOutcome::Unchanged { generation: Some(1), build_ms: 5.0 })
        }
        ClientRequest::Rollback(_) => serde_json::to_value(ReloadOutcome::Swapped {
            generation: 2,
            previous_generation: Some(1),
            build_ms: None,
            swap_ms: 2.0,
            total_ms: 2.0,
            stages: SwapStages::default(),
            warnings: vec![],
        }),
        ClientRequest::Status(_) => serde_json::to_value(StatusResult {
            daemon_version: "stand-in".into(),
            pid: std::process::id(),
            workspace_root: daemon.workspace_root.clone(),
            package: "app".into(),
            endpoint: daemon.endpoint.clone(),
            listen_address: daemon.listen_address.clone(),
            uptime_ms: 1000,
            current_generation: Some(1),
            generations: vec![],
            building: false,
            last_build: None,
            last_swap: None,
            refused_swap: None,
            last_crash: None,
            snapshot: None,
            ended_generations: 0,
            crashes: 0,
            shared_deps: None,
        }),
        ClientRequest::Subscribe(_) => serde_json::to_value(SubscribeResult { subscribed: true }),
        ClientRequest::CancelBuild(_) => {
            serde_json::to_value(CancelBuildResult { cancelled: true })
        }
        ClientRequest::Shutdown(_) => serde_json::to_value(NoParams {}),
        ClientRequest::State(_) => {
            serde_json::to_value(StateResult { generation: 1, path: None, bytes: 0 })
        }
        ClientRequest::LoadState(_) => serde_json::to_value(ReloadOutcome::Swapped {
            generation: 2,
            previous_generation: Some(1),
            build_ms: None,
            swap_ms: 2.0,
            total_ms: 2.0,
            stages: SwapStages::default(),
            warnings: vec![],
        }),
    };
    Ok(value.expect("answers serialize"))
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub(crate) struct ReceivedRequest {
    pub(crate) request: ClientRequest,
}

struct Shared {
    facts: DaemonFacts,
    behavior: Arc<dyn Behavior>,
    received: Mutex<Vec<ReceivedRequest>>,
    /// Counts received requests, so that tests can wait for the next one.
    received_count: watch::Sender<usize>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Vec<u8>>>>,
}

impl Shared {
    fn broadcast(&self, events: &[Event]) {
        let mut subscribers = self.subscribers.lock().unwrap();
        for event in events {
            let mut line = Vec::new();
            encode_line(&encode_event(event), &mut line);
            subscribers.retain(|subscriber| subscriber.send(line.clone()).is_ok());
        }
    }
}

/// A running stand-in daemon. Dropping it (or [`StandInDaemon::stop`]) closes its socket and
/// every connection, as a daemon that exits would.
pub(crate) struct StandInDaemon {
    shared: Arc<Shared>,
    accept_loop: Option<JoinHandle<()>>,
}

impl StandInDaemon {
    pub(crate) fn start(
        endpoint: Endpoint,
        listen_address: &str,
        behavior: Arc<dyn Behavior>,
    ) -> Self {
        let listener = listen(&endpoint).expect("the stand-in daemon listens");
        let shared = Arc::new(Shared {
            facts: DaemonFacts {
                workspace_root: endpoint.workspace_root().to_path_buf(),
                listen_address: listen_address.to_owned(),
                endpoint: endpoint.path().display().to_string(),
            },
            behavior,
            received: Mutex::new(Vec::new()),
            received_count: watch::Sender::new(0),
            subscribers: Mutex::new(Vec::new()),
        });
        let accept_loop = tokio::spawn({
            let shared = shared.clone();
            async move {
                // The connections belong to this loop: aborting it closes them all.
                let mut connections = JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok(stream) = accepted else { return };
                            connections.spawn(serve_connection(stream, shared.clone()));
                        }
                        Some(_) = connections.join_next() => {}
                    }
                }
            }
        });
        Self { shared, accept_loop: Some(accept_loop) }
    }

    /// Stops listening and closes every connection; returns once the socket file is gone.
    pub(crate) async fn stop(mut self) {
        if let Some(accept_loop) = self.accept_loop.take() {
            accept_loop.abort();
            let _ = accept_loop.await;
        }
    }

    /// Sends events to every subscribed connection.
    pub(crate) fn emit(&self, events: &[Event]) {
        self.shared.broadcast(events);
    }

    pub(crate) fn received(&self) -> Vec<ReceivedRequest> {
        self.shared.received.lock().unwrap().clone()
    }

    /// How many requests of `method` arrived so far.
    pub(crate) fn count(&self, method: &str) -> usize {
        self.received().iter().filter(|received| received.request.method() == method).count()
    }

    /// Waits until `count` requests of `method` arrived; returns them.
    pub(crate) async fn wait_for_requests(&self, method: &str, count: usize) -> Vec<ClientRequest> {
        let mut changes = self.shared.received_count.subscribe();
        let matching = || -> Vec<ClientRequest> {
            self.received()
                .into_iter()
                .map(|received| received.request)
                .filter(|request| request.method() == method)
                .collect()
        };
        let waited = tokio::time::timeout(WAIT, async {
            loop {
                let found = matching();
                if found.len() >= count {
                    return found;
                }
                changes.changed().await.expect("the stand-in daemon is alive");
            }
        })
        .await;
        match waited {
            Ok(found) => found,
            Err(_) => panic!(
                "the stand-in daemon did not receive {count} `{method}` request(s) within {WAIT:?}; it received: {:?}",
                self.received()
                    .iter()
                    .map(|received| received.request.method())
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// Waits for the first `method` request.
    pub(crate) async fn wait_for_request(&self, method: &str) -> ClientRequest {
        self.wait_for_requests(method, 1).await.remove(0)
    }
}

impl Drop for StandInDaemon {
    fn drop(&mut self) {
        if let Some(accept_loop) = &self.accept_loop {
            accept_loop.abort();
        }
    }
}

async fn serve_connection(stream: Stream, shared: Arc<Shared>) {
    let (read_half, mut write_half) = tokio::io::split(stream);
    let mut lines = LineReader::new(read_half);
    let (outgoing, mut to_send) = mpsc::unbounded_channel::<Vec<u8>>();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = match line {
                    Ok(Some(Ok(line))) => line,
                    Ok(Some(Err(_))) => continue,
                    Ok(None) | Err(_) => return,
                };
                handle_line(&line, &shared, &outgoing);
            }
            Some(bytes) = to_send.recv() => {
                if write_half.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn handle_line(line: &[u8], shared: &Shared, outgoing: &mpsc::UnboundedSender<Vec<u8>>) {
    let send = |message: Vec<u8>| {
        let mut framed = Vec::new();
        encode_line(&message, &mut framed);
        let _ = outgoing.send(framed);
    };
    let (id, request) = match decode_client_message(line) {
        Ok(ClientMessage::Request { id, request }) => (Some(id), request),
        Ok(ClientMessage::Notification(request)) => (None, request),
        Err(error) => {
            if !error.notification {
                send(encode_error(error.id.as_ref(), &error.error));
            }
            return;
        }
    };
    shared.received.lock().unwrap().push(ReceivedRequest { request: request.clone() });
    let reaction = shared.behavior.react(&request, &shared.facts);
    if matches!(request, ClientRequest::Subscribe(_)) {
        shared.subscribers.lock().unwrap().push(outgoing.clone());
    }
    if let Some(id) = &id {
        match &reaction.answer {
            Ok(result) => send(encode_result(Some(id), result)),
            Err(error) => send(encode_error(Some(id), error)),
        }
    }
    shared.broadcast(&reaction.events);
    shared.received_count.send_modify(|count| *count += 1);
}
