//! The async client the CLI, the language server and the tests use to talk to a daemon.
//!
//! One task owned by the [`Client`] reads the connection: responses go to the request that waits
//! for them (matched by id), events go to [`Client::next_event`]. Requests may overlap: `reload`
//! can wait for a build while `status` answers at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::endpoint::Endpoint;
use crate::events::Event;
use crate::framing::{LineReader, encode_line};
use crate::jsonrpc::{
    DaemonMessage, RequestId, ResponseError, decode_daemon_message, encode_request,
};
use crate::messages::{
    ClientRequest, Initialize, InitializeParams, InitializeResult, Method, PROTOCOL_VERSION,
};

/// What can go wrong talking to a daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the workspace's socket.
    #[error("no hotswap daemon for {}; start one with `hotswap serve`", workspace_root.display())]
    NoDaemon { workspace_root: PathBuf },
    /// The daemon answered with a JSON-RPC error.
    #[error(transparent)]
    Rpc(#[from] ResponseError),
    /// The connection ended before the answer came.
    #[error("the hotswap daemon closed the connection")]
    Disconnected,
    /// The daemon sent something this client cannot read.
    #[error("unexpected message from the hotswap daemon: {0}")]
    Protocol(String),
    #[error("talking to the hotswap daemon failed: {0}")]
    Io(#[from] std::io::Error),
}

type Pending = Arc<Mutex<PendingRequests>>;

/// Requests waiting for their answer, and whether answers can still come.
#[derive(Default)]
struct PendingRequests {
    waiters: HashMap<RequestId, oneshot::Sender<Result<Value, ResponseError>>>,
    /// Set when the connection has ended: `Some(reason)` if the daemon said why (it refused
    /// the connection), so that a request made afterwards learns it too.
    ended: Option<Option<ResponseError>>,
}
type Writer = Arc<tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>>;

/// A connection to a daemon.
pub struct Client {
    writer: Writer,
    pending: Pending,
    next_id: AtomicI64,
    events: Option<mpsc::UnboundedReceiver<Event>>,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("next_id", &self.next_id).finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    /// Connects to the daemon of `endpoint` (without `initialize`).
    pub async fn connect(endpoint: &Endpoint) -> Result<Self, ClientError> {
        match crate::transport::connect(endpoint).await {
            Ok(stream) => Ok(Self::from_stream(stream)),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(ClientError::NoDaemon {
                    workspace_root: endpoint.workspace_root().to_path_buf(),
                })
            }
            Err(error) => Err(ClientError::Io(std::io::Error::new(
                error.kind(),
                format!("cannot connect to {}: {error}", endpoint.path().display()),
            ))),
        }
    }

    /// Connects and sends `initialize`, the usual way to start.
    pub async fn connect_and_initialize(
        endpoint: &Endpoint,
        client_name: &str,
    ) -> Result<(Self, InitializeResult), ClientError> {
        let client = Self::connect(endpoint).await?;
        let result = client.initialize(client_name).await?;
        Ok((client, result))
    }

    /// A client over any byte stream (a socket, or an in-memory pipe in tests).
    pub fn from_stream<S>(stream: S) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(stream);
        let pending: Pending = Arc::default();
        let (events_sender, events) = mpsc::unbounded_channel();
        let reader =
            tokio::spawn(read_loop(LineReader::new(read_half), pending.clone(), events_sender));
        Self {
            writer: Arc::new(tokio::sync::Mutex::new(Box::new(write_half))),
            pending,
            next_id: AtomicI64::new(1),
            events: Some(events),
            reader,
        }
    }

    /// Sends `initialize` with this crate's protocol version.
    pub async fn initialize(&self, client_name: &str) -> Result<InitializeResult, ClientError> {
        self.request::<Initialize>(InitializeParams {
            protocol_version: PROTOCOL_VERSION,
            client_name: client_name.to_owned(),
            client_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        })
        .await
    }

    /// Sends a request and waits for its answer.
    pub async fn request<M: Method>(&self, params: M::Params) -> Result<M::Result, ClientError> {
        let request = ClientRequest::from_method_and_params(
            M::NAME,
            serde_json::to_value(&params).expect("params serialize"),
        )
        .map_err(|(_, message)| ClientError::Protocol(message))?;
        let value = self.send_request(&request).await?;
        serde_json::from_value(value)
            .map_err(|error| ClientError::Protocol(format!("bad result for {}: {error}", M::NAME)))
    }

    /// Sends any request and returns its raw result.
    pub async fn send_request(&self, request: &ClientRequest) -> Result<Value, ClientError> {
        let id = RequestId::Number(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("pending map");
            match &pending.ended {
                Some(Some(reason)) => return Err(ClientError::Rpc(reason.clone())),
                Some(None) => return Err(ClientError::Disconnected),
                None => pending.waiters.insert(id.clone(), sender),
            };
        }
        if let Err(error) = self.write(&encode_request(Some(&id), request)).await {
            // A daemon that refuses the connection (another user's client, too many clients)
            // says why and closes: the write may fail before its answer is read. Prefer the
            // daemon's reason, when one arrives, to "broken pipe".
            if let Ok(Ok(Err(refusal))) =
                tokio::time::timeout(std::time::Duration::from_secs(1), receiver).await
            {
                return Err(ClientError::Rpc(refusal));
            }
            let mut pending = self.pending.lock().expect("pending map");
            pending.waiters.remove(&id);
            // The connection ended meanwhile (the read loop saw it): its reason is the answer.
            if let Some(Some(reason)) = &pending.ended {
                return Err(ClientError::Rpc(reason.clone()));
            }
            return Err(error);
        }
        match receiver.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClientError::Disconnected),
        }
    }

    /// Sends a request as a notification: the daemon acts on it and answers nothing.
    pub async fn notify(&self, request: &ClientRequest) -> Result<(), ClientError> {
        self.write(&encode_request(None, request)).await
    }

    /// The next event (after `subscribe`), or `None` once the connection is closed (or the
    /// events were taken with [`Client::take_events`]).
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.as_mut()?.recv().await
    }

    /// Takes the stream of events, to read it while requests are in flight on this client.
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<Event>> {
        self.events.take()
    }

    async fn write(&self, message: &[u8]) -> Result<(), ClientError> {
        let mut line = Vec::with_capacity(message.len() + 1);
        encode_line(message, &mut line);
        let mut writer = self.writer.lock().await;
        writer.write_all(&line).await?;
        writer.flush().await?;
        Ok(())
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: LineReader<R>,
    pending: Pending,
    events: mpsc::UnboundedSender<Event>,
) {
    // An error the daemon could not attribute to a request: when the connection then ends, it
    // is the reason (a refused connection), and every waiting request gets it.
    let mut unattributed: Option<ResponseError> = None;
    loop {
        let line = match reader.next_line().await {
            Ok(Some(Ok(line))) => line,
            // An over-long line from the daemon: skip it, the framer resynchronises.
            Ok(Some(Err(_))) => continue,
            Ok(None) | Err(_) => break,
        };
        match decode_daemon_message(&line) {
            Ok(DaemonMessage::Response { id: Some(id), result }) => {
                if let Some(waiter) = pending.lock().expect("pending map").waiters.remove(&id) {
                    let _ = waiter.send(result);
                }
            }
            Ok(DaemonMessage::Event(event)) => {
                let _ = events.send(event);
            }
            Ok(DaemonMessage::Response { id: None, result: Err(error) }) => {
                unattributed = Some(error);
            }
            // Unknown notifications come from a newer daemon; they concern no waiting request.
            Ok(
                DaemonMessage::Response { id: None, result: Ok(_) }
                | DaemonMessage::UnknownNotification { .. },
            )
            | Err(_) => {}
        }
    }
    // Every request still waiting learns that no answer will come, and why if the daemon said.
    let waiting: Vec<_> = {
        let mut pending = pending.lock().expect("pending map");
        pending.ended = Some(unattributed.clone());
        pending.waiters.drain().collect()
    };
    if let Some(reason) = unattributed {
        for (_, waiter) in waiting {
            let _ = waiter.send(Err(reason.clone()));
        }
    }
}
