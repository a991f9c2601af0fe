//! A swap engine serving HTTP on a loopback port inside the test process, with its events, for
//! tests that drive the engine directly with real libraries.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hotswap_daemon::engine::events::EventSink;
use hotswap_daemon::engine::host_process::HostProgram;
use hotswap_daemon::engine::{Engine, EngineConfig, SwapFailure, SwapReport};
use hotswap_protocol::events::Event;
use tokio::sync::mpsc;

/// The environment variable that names the engine a host belongs to.
const ENGINE_MARKER: &str = "HOTSWAP_TEST_ENGINE";

/// An engine serving on `127.0.0.1:<free port>` until [`InProcessEngine::stop`].
#[derive(Debug)]
pub struct InProcessEngine {
    pub engine: Engine,
    pub address: SocketAddr,
    events: mpsc::Receiver<Event>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    generations: tempfile::TempDir,
}

impl InProcessEngine {
    /// Starts an engine with a 2 s drain timeout, changed by `configure`.
    pub async fn start(configure: impl FnOnce(&mut EngineConfig)) -> InProcessEngine {
        let generations = tempfile::tempdir().unwrap();
        let mut host = HostProgram::new(crate::binaries::binary("hotswap"));
        // Tells this engine's hosts from those of other engines in the same test process.
        host.environment.push((ENGINE_MARKER.into(), generations.path().as_os_str().to_owned()));
        let mut config = EngineConfig::with_host(generations.path().to_path_buf(), host);
        config.drain_timeout = Duration::from_secs(2);
        configure(&mut config);
        let (sink, events) = EventSink::channel(1_000_000);
        let engine = Engine::new(config, sink).unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let engine = engine.clone();
            async move {
                engine
                    .serve(listener, async move {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        InProcessEngine {
            engine,
            address,
            events,
            stop: Some(stop),
            server: Some(server),
            generations,
        }
    }

    /// The host processes of this engine that still live: its generations and its spare.
    pub fn host_processes(&self) -> Vec<u32> {
        let marker = [
            ENGINE_MARKER.as_bytes(),
            b"=",
            self.generations.path().as_os_str().as_encoded_bytes(),
            b"\0",
        ]
        .concat();
        host_processes()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|environ| environ.windows(marker.len()).any(|part| part == marker))
            })
            .collect()
    }

    /// The directory the engine gives each generation its own library file in.
    pub fn generations_dir(&self) -> &Path {
        self.generations.path()
    }

    pub async fn try_swap(&self, library: &Path) -> Result<SwapReport, SwapFailure> {
        self.engine.swap(library).await
    }

    /// Swaps to `library` and returns the new generation's number; panics if refused.
    pub async fn swap(&self, library: &Path) -> u64 {
        match self.engine.swap(library).await {
            Ok(report) => report.generation,
            Err(failure) => panic!("swap to {} failed: {failure}", library.display()),
        }
    }

    /// Waits up to `timeout` for the first event `matches` accepts, skipping others.
    pub async fn wait_for_event(
        &mut self,
        timeout: Duration,
        mut matches: impl FnMut(&Event) -> bool,
    ) -> Event {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if matches(&event) => return event,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the event channel closed"),
                Err(_) => panic!("no matching event within {timeout:?}"),
            }
        }
    }

    /// Every event that has arrived so far, without waiting.
    pub fn drain_events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            events.push(event);
        }
        events
    }

    /// Stops accepting, drains and unloads every generation.
    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.server.take().expect("running").await.unwrap().unwrap();
        self.engine.shutdown().await;
    }
}

/// Paths of files under `directory` that process `pid` has mapped now (empty when it is gone).
pub fn mapped_files_under(pid: u32, directory: &Path) -> Vec<String> {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { return Vec::new() };
    let prefix = directory.to_string_lossy().into_owned();
    let mut files: Vec<String> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    files.sort();
    files.dedup();
    files
}

/// The host processes this process started that still live: the generations and the spare.
pub fn host_processes() -> Vec<u32> {
    children_of(std::process::id())
        .into_iter()
        .filter(|(_, command)| command.ends_with(" host"))
        .map(|(pid, _)| pid)
        .collect()
}

/// The live (not zombie) children of `parent`, with their command lines.
pub fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return children };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or_default();
        let ppid = fields.next().and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid != Some(parent) || state == "Z" {
            continue;
        }
        let command = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " ").trim().to_owned())
            .unwrap_or_default();
        children.push((pid, command));
    }
    children
}

/// Resident memory of process `pid`, in KiB (0 when it is gone).
pub fn resident_kib(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}
