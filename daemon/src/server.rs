//! The socket server: accepts clients on the workspace's local socket and speaks the protocol with
//! each, passing requests to the daemon task.
//!
//! Every line is size-limited by the framer; a malformed line gets a JSON-RPC error and the
//! connection goes on. Requests of one client are answered in order, except the long ones
//! (`reload`, `rollback`), which run beside the others so that `status` never waits for a build.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hotswap_protocol::framing::{FrameError, LineReader};
use hotswap_protocol::jsonrpc::{
    ClientMessage, RequestId, ResponseError, decode_client_message, encode_error, encode_result,
    error_code,
};
use hotswap_protocol::messages::{ClientRequest, SubscribeResult};
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::tokio::Listener as _;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::daemon::DaemonHandle;
use crate::subscribers::{OutgoingLine, Subscribers};

/// More clients than this are turned away (each costs a task and buffers).
pub const MAX_CLIENTS: usize = 1024;
/// Long requests (`reload`, `rollback`) one client may have running at once.
const MAX_LONG_REQUESTS: usize = 16;
/// Lines queued for a client before responses wait and events are dropped.
const OUTGOING_QUEUE: usize = 1024;
/// How long clients get to receive what is queued for them when the daemon stops.
const CLIENT_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves clients until `shutdown` becomes true.
pub async fn serve(
    listener: Listener,
    daemon: DaemonHandle,
    subscribers: Arc<Subscribers>,
    mut shutdown: watch::Receiver<bool>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    let mut next_client = 0u64;
    loop {
        let stream = tokio::select! {
            () = crate::serve::stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!("accepting a client failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        while clients.try_join_next().is_some() {}
        if let Err(refusal) = check_peer(&stream) {
            tracing::warn!("refused a client: {refusal}");
            refuse(stream, refusal).await;
            continue;
        }
        if active.load(Ordering::SeqCst) >= MAX_CLIENTS {
            refuse(stream, format!("too many clients (the limit is {MAX_CLIENTS})")).await;
            continue;
        }
        next_client += 1;
        let client = next_client;
        let (daemon, subscribers, active) = (daemon.clone(), subscribers.clone(), active.clone());
        let stopping = shutdown.clone();
        active.fetch_add(1, Ordering::SeqCst);
        clients.spawn(async move {
            serve_client(stream, client, daemon, subscribers.clone(), stopping).await;
            subscribers.remove(client);
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    // Each client stops reading and writes what it has queued (the answer to `shutdown`
    // among it); a client that does not read its socket is cut off after a moment.
    let finished = tokio::time::timeout(CLIENT_FLUSH_TIMEOUT, async {
        while clients.join_next().await.is_some() {}
    });
    if finished.await.is_err() {
        clients.shutdown().await;
    }
}

/// Only the user who runs the daemon may talk to it (the socket's mode already says so; this
/// holds even if someone loosened it).
fn check_peer(stream: &Stream) -> Result<(), String> {
    let ours = hotswap_protocol::endpoint::current_uid();
    match hotswap_protocol::transport::peer_uid(stream) {
        Ok(Some(uid)) if uid == ours => Ok(()),
        Ok(Some(uid)) => Err(format!("the client runs as uid {uid}, the daemon as uid {ours}")),
        Ok(None) => Ok(()),
        Err(error) => Err(format!("cannot read the client's credentials: {error}")),
    }
}

async fn refuse(stream: Stream, reason: String) {
    let error =
        ResponseError::new(error_code::INVALID_REQUEST, format!("connection refused: {reason}"));
    let mut line = encode_error(None, &error);
    line.push(b'\n');
    let mut stream = stream;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(&line)).await;
}

async fn serve_client(
    stream: Stream,
    client: u64,
    daemon: DaemonHandle,
    subscribers: Arc<Subscribers>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (read_half, mut write_half) = tokio::io::split(stream);
    let (outgoing, mut queue) = mpsc::channel::<OutgoingLine>(OUTGOING_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(line) = queue.recv().await {
            let written = async {
                write_half.write_all(&line).await?;
                write_half.write_all(b"\n").await?;
                write_half.flush().await
            };
            if written.await.is_err() {
                break;
            }
        }
    });
    let mut reader = LineReader::new(read_half);
    let mut long_requests = JoinSet::new();
    let mut initialized = false;
    loop {
        let line = tokio::select! {
            biased;
            () = crate::serve::stopped(&mut shutdown) => break,
            line = reader.next_line() => line,
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) => break,
        };
        while long_requests.try_join_next().is_some() {}
        let line = match line {
            Ok(line) => line,
            Err(FrameError::TooLong { .. }) => {
                let error = ResponseError::new(
                    error_code::INVALID_REQUEST,
                    "message too long: the limit is 1 MiB per line; the line was skipped",
                );
                if send(&outgoing, encode_error(None, &error)).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let (id, request) = match decode_client_message(&line) {
            Ok(ClientMessage::Request { id, request }) => (Some(id), request),
            Ok(ClientMessage::Notification(request)) => (None, request),
            Err(error) => {
                if !error.notification
                    && send(&outgoing, encode_error(error.id.as_ref(), &error.error)).await.is_err()
                {
                    break;
                }
                continue;
            }
        };
        let is_initialize = matches!(request, ClientRequest::Initialize(_));
        if !initialized && !is_initialize {
            let error = ResponseError::new(
                error_code::NOT_INITIALIZED,
                format!("send `initialize` first (got `{}`)", request.method()),
            );
            if answer(&outgoing, id.as_ref(), Err(error)).await.is_err() {
                break;
            }
            continue;
        }
        if initialized && is_initialize {
            let error = ResponseError::new(
                error_code::ALREADY_INITIALIZED,
                "this connection is already initialized",
            );
            if answer(&outgoing, id.as_ref(), Err(error)).await.is_err() {
                break;
            }
            continue;
        }
        match request {
            ClientRequest::Subscribe(_) => {
                subscribers.add(client, outgoing.clone());
                let result =
                    serde_json::to_value(SubscribeResult { subscribed: true }).expect("serializes");
                if answer(&outgoing, id.as_ref(), Ok(result)).await.is_err() {
                    break;
                }
            }
            ClientRequest::Reload(_)
            | ClientRequest::Rollback(_)
            | ClientRequest::State(_)
            | ClientRequest::LoadState(_) => {
                if long_requests.len() >= MAX_LONG_REQUESTS {
                    let error = ResponseError::new(
                        error_code::INVALID_REQUEST,
                        format!(
                            "too many reloads at once on one connection (the limit is {MAX_LONG_REQUESTS})"
                        ),
                    );
                    if answer(&outgoing, id.as_ref(), Err(error)).await.is_err() {
                        break;
                    }
                    continue;
                }
                let (daemon, outgoing) = (daemon.clone(), outgoing.clone());
                long_requests.spawn(async move {
                    let result = daemon.request(request).await;
                    let _ = answer(&outgoing, id.as_ref(), result).await;
                });
            }
            request => {
                let result = daemon.request(request).await;
                if is_initialize && result.is_ok() {
                    initialized = true;
                }
                if answer(&outgoing, id.as_ref(), result).await.is_err() {
                    break;
                }
            }
        }
    }
    // The client hung up, or the daemon stops: pending long requests go unanswered, and what
    // is queued is written before the connection closes.
    long_requests.shutdown().await;
    subscribers.remove(client);
    drop(outgoing);
    let _ = writer.await;
}

/// Sends a response, unless the request was a notification.
async fn answer(
    outgoing: &mpsc::Sender<OutgoingLine>,
    id: Option<&RequestId>,
    result: Result<serde_json::Value, ResponseError>,
) -> Result<(), ()> {
    let Some(id) = id else { return Ok(()) };
    let line = match result {
        Ok(value) => encode_result(Some(id), &value),
        Err(error) => encode_error(Some(id), &error),
    };
    send(outgoing, line).await
}

async fn send(outgoing: &mpsc::Sender<OutgoingLine>, line: Vec<u8>) -> Result<(), ()> {
    outgoing.send(line.into()).await.map_err(|_| ())
}
