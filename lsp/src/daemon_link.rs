//! The connection to a workspace's daemon, and the daemon `autoStart` starts.
//!
//! A [`DaemonLink`] is two protocol connections to the same socket: one subscribed to events,
//! one for requests. `hotswap_protocol::Client` hands out events through `&mut self`, so one
//! connection could not wait for events while requests run from other tasks.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hotswap_protocol::messages::{
    InitializeResult, LastBuild, Method, NoParams, RefusedSwap, Shutdown as ShutdownMethod, Status,
    Subscribe,
};
use hotswap_protocol::{Client, ClientError, Endpoint};
use tokio::process::{Child, Command};

use crate::editor_process::ask_process_to_stop;

/// The name the daemon's log shows for this client.
pub(crate) const CLIENT_NAME: &str = "hotswap-lsp";

/// How long connecting (both connections, `initialize`, `subscribe`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long quick requests (`didSave`, `status`, `cancelBuild`) may take to be answered.
pub(crate) const QUICK_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DaemonError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the hotswap daemon did not answer `{method}` within {} s", timeout.as_secs())]
    TimedOut { method: &'static str, timeout: Duration },
}

impl DaemonError {
    /// True when nothing listens on the workspace's socket.
    pub(crate) fn is_no_daemon(&self) -> bool {
        matches!(self, DaemonError::Client(ClientError::NoDaemon { .. }))
    }
}

/// A connected, initialized daemon.
#[derive(Debug)]
pub(crate) struct DaemonLink {
    /// Requests go here; shared with the tasks that wait for their answers.
    pub(crate) requests: Arc<Client>,
    /// Subscribed: the daemon's events arrive here.
    pub(crate) events: Client,
    /// What the daemon said about itself in `initialize`.
    pub(crate) daemon: InitializeResult,
    /// The daemon's last build when this link connected: its diagnostics are what is wrong now.
    pub(crate) last_build: Option<Box<LastBuild>>,
    /// A swap refused before this link connected (the code on disk is not what serves).
    pub(crate) refused_swap: Option<Box<RefusedSwap>>,
}

/// Connects to the daemon at `endpoint`: initializes both connections and subscribes one.
pub(crate) async fn connect(endpoint: Endpoint) -> Result<DaemonLink, DaemonError> {
    let connecting = async {
        let (events, daemon) = Client::connect_and_initialize(&endpoint, CLIENT_NAME).await?;
        events.request::<Subscribe>(NoParams {}).await?;
        let (requests, _) = Client::connect_and_initialize(&endpoint, CLIENT_NAME).await?;
        let status = requests.request::<Status>(NoParams {}).await?;
        Ok::<_, DaemonError>(DaemonLink {
            requests: Arc::new(requests),
            events,
            daemon,
            last_build: status.last_build.map(Box::new),
            refused_swap: status.refused_swap.map(Box::new),
        })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| DaemonError::TimedOut { method: "initialize", timeout: CONNECT_TIMEOUT })?
}

/// Sends one request and waits for its answer, at most `timeout` when one is given.
pub(crate) async fn request<M: Method>(
    client: Arc<Client>,
    params: M::Params,
    timeout: Option<Duration>,
) -> Result<M::Result, DaemonError> {
    match timeout {
        None => Ok(client.request::<M>(params).await?),
        Some(timeout) => tokio::time::timeout(timeout, client.request::<M>(params))
            .await
            .map_err(|_| DaemonError::TimedOut { method: M::NAME, timeout })?
            .map_err(DaemonError::from),
    }
}

/// A `hotswap serve` this server started (setting `autoStart`). It is stopped when the server
/// stops: it belongs to this editor session.
#[derive(Debug)]
pub(crate) struct AutoStartedDaemon {
    child: Child,
    /// The command as the user would type it, for messages.
    pub(crate) command_line: String,
    /// Where its stdout and stderr go.
    pub(crate) log_path: PathBuf,
}

impl AutoStartedDaemon {
    /// Starts `<hotswap_path> serve --workspace <root>` with its output in `log_path`.
    pub(crate) fn start(hotswap_path: &str, root: &Path, log_path: PathBuf) -> io::Result<Self> {
        let log = File::create(&log_path).map_err(|error| {
            io::Error::new(error.kind(), format!("cannot create {}: {error}", log_path.display()))
        })?;
        let mut command = Command::new(hotswap_path);
        command
            .arg("serve")
            .arg("--workspace")
            .arg(root)
            .current_dir(root)
            .stdin(Stdio::null())
            // Never the server's own stdout: that is the LSP channel.
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            // If the session ends without stopping it (a bug), do not leave it behind.
            .kill_on_drop(true);
        let child = command.spawn()?;
        Ok(Self {
            child,
            command_line: crate::user_messages::serve_command(hotswap_path, root),
            log_path,
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the process exits.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// The last lines it wrote, for the message when it exits by itself.
    pub(crate) fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(12)..].join("\n")
    }

    /// Stops it: asks through the protocol (`shutdown`: in-flight HTTP requests finish) when a
    /// connection is at hand, else with SIGTERM; kills it if it is still there after a while.
    pub(crate) async fn stop(mut self, requests: Option<Arc<Client>>) {
        const GRACE: Duration = Duration::from_secs(5);
        let asked = match requests {
            Some(client) => {
                request::<ShutdownMethod>(client, NoParams {}, Some(GRACE)).await.is_ok()
            }
            None => false,
        };
        if !asked && let Some(pid) = self.child.id() {
            ask_process_to_stop(pid);
        }
        if tokio::time::timeout(GRACE, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// Where the daemon that `autoStart` starts for `endpoint` writes its output: beside the socket,
/// in the directory only this user can open.
pub(crate) fn auto_start_log_path(endpoint: &Endpoint) -> PathBuf {
    endpoint.path().with_extension("autostart.log")
}
