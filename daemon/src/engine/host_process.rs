//! A generation's host process, seen from the daemon: starting it, the control channel
//! ([`hotswap_protocol::control`]), its counters page, its output, and its end.
//!
//! A host is started ahead of time (a warm spare, with nothing loaded) and becomes a generation
//! when it loads a library. Whatever happens inside it, the daemon learns it from the channel, the
//! counters page, or the process's exit status and last lines of stderr.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hotswap_protocol::control::{
    self, CONTROL_VERSION, HostCommand, HostReport, LoadCommand, LoadStage, SharedCounters,
    StatePolicy, descriptors,
};
use hotswap_protocol::events::{Event, HandlerPanicked, LogLevel, LogLine};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Interest};
use tokio::net::UnixStream;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::events::EventSink;

/// How a host process is started: a program that runs
/// [`hotswap_host::run`](../../../hotswap_host/fn.run.html) when given its arguments.
#[derive(Debug, Clone)]
pub struct HostProgram {
    pub program: PathBuf,
    pub arguments: Vec<OsString>,
    /// Where generations run (the app's root, so relative paths mean what they mean under
    /// `cargo run`); default: the daemon's working directory.
    pub working_directory: Option<PathBuf>,
    /// Set in the host's environment, on top of the daemon's.
    pub environment: Vec<(OsString, OsString)>,
}

impl HostProgram {
    /// The `hotswap` binary (or any binary that calls `hotswap_host::run_if_requested` first
    /// thing) at `program`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            arguments: vec![OsString::from("host")],
            working_directory: None,
            environment: Vec::new(),
        }
    }

    /// This very binary, which must call `hotswap_host::run_if_requested` first thing in `main`
    /// (the `hotswap` binary does).
    pub fn current_exe() -> io::Result<Self> {
        Ok(Self::new(std::env::current_exe()?))
    }
}

/// How a host process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub core_dumped: bool,
}

impl HostExit {
    fn of(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Self { code: status.code(), signal: status.signal(), core_dumped: status.core_dumped() }
    }

    /// "exited with code 1", "killed by SIGSEGV (invalid memory access)".
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("killed by {}", signal_description(signal)),
            (None, None) => "ended".to_owned(),
        }
    }
}

/// A signal's name and what it usually means.
pub fn signal_description(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV (invalid memory access)",
        libc::SIGABRT => "SIGABRT (abort)",
        libc::SIGKILL => "SIGKILL (the kernel's out-of-memory killer, or killed from outside)",
        libc::SIGBUS => "SIGBUS (bus error)",
        libc::SIGILL => "SIGILL (illegal instruction)",
        libc::SIGFPE => "SIGFPE (arithmetic error)",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGTRAP => "SIGTRAP (trap)",
        libc::SIGPIPE => "SIGPIPE (broken pipe)",
        libc::SIGHUP => "SIGHUP",
        other => return format!("signal {other}"),
    };
    name.to_owned()
}

/// A connection a draining generation gave back, with the bytes it had read but not processed.
#[derive(Debug)]
pub struct ReturnedConnection {
    pub socket: OwnedFd,
    pub unread: Vec<u8>,
}

/// Where a host delivers what concerns the whole engine, once it is a generation.
#[derive(Debug, Clone)]
pub struct HostLinks {
    pub events: EventSink,
    pub returned: mpsc::UnboundedSender<ReturnedConnection>,
}

/// A state exported by a generation: a sealed memfd that the next generation maps.
#[derive(Debug)]
pub struct StateSnapshot {
    pub file: OwnedFd,
    pub bytes: u64,
}

/// Why a command did not get its answer.
#[derive(Debug, Clone)]
pub enum HostFailure {
    /// The host answered with a refusal.
    Refused { stage: Option<LoadStage>, state: bool, message: String },
    /// The host process ended (or closed the channel) first.
    Ended,
    /// No answer in time.
    TimedOut,
}

/// What `load` reports.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub sdk_version: String,
    pub load_ms: f64,
    pub verify_ms: f64,
    pub init_ms: f64,
}

/// The last lines a host wrote, for crash reports.
#[derive(Debug, Default)]
struct OutputTail {
    lines: VecDeque<String>,
}

const TAIL_LINES: usize = 40;
const LINE_LIMIT: usize = 2000;

impl OutputTail {
    fn push(&mut self, line: String) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

#[derive(Default)]
struct Pending {
    load: Option<oneshot::Sender<HostReport>>,
    start: Option<oneshot::Sender<HostReport>>,
    hold: Option<oneshot::Sender<HostReport>>,
    drain: Option<oneshot::Sender<()>>,
    exports: HashMap<u64, oneshot::Sender<(HostReport, Vec<OwnedFd>)>>,
    /// The channel is closed: nothing more will be answered.
    closed: bool,
}

/// What the host process and its reader task share.
struct Shared {
    generation: AtomicU64,
    pending: Mutex<Pending>,
    idle: Notify,
    /// The `received` count of the host's last `idle` report (`u64::MAX`: none yet).
    idle_received: AtomicU64,
    retiring: Mutex<Option<(bool, Option<String>)>>,
    stderr: Mutex<OutputTail>,
    links: Mutex<Option<HostLinks>>,
    /// Requests the host answered 503 itself (their thread was blocked).
    cut: AtomicU64,
}

/// One host process.
pub struct HostProcess {
    pub pid: u32,
    socket: Arc<UnixStream>,
    write_lock: tokio::sync::Mutex<()>,
    counters: SharedCounters,
    shared: Arc<Shared>,
    exit: watch::Receiver<Option<HostExit>>,
    pidfd: OwnedFd,
    next_export: AtomicU64,
    /// Connections passed to it.
    sent: AtomicU64,
}

impl std::fmt::Debug for HostProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostProcess").field("pid", &self.pid).finish_non_exhaustive()
    }
}

/// How long a new host has to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

impl HostProcess {
    /// Starts a host and waits until it is ready (its counters page mapped).
    pub async fn spawn(program: &HostProgram) -> io::Result<HostProcess> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let mut command = tokio::process::Command::new(&program.program);
        command
            .args(&program.arguments)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: Ctrl-C in the daemon's terminal stops the daemon, which
            // then drains its generations, instead of killing them under their requests.
            .process_group(0);
        if let Some(directory) = &program.working_directory {
            command.current_dir(directory);
        }
        for (name, value) in &program.environment {
            command.env(name, value);
        }
        let mut child = command.spawn().map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("cannot start a host process ({}): {error}", program.program.display()),
            )
        })?;
        let pid = child.id().ok_or_else(|| io::Error::other("the host process ended at once"))?;
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid as i32).expect("a child's pid is positive"),
            rustix::process::PidfdFlags::empty(),
        )?;
        ours.set_nonblocking(true)?;
        let socket = Arc::new(UnixStream::from_std(ours)?);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            pending: Mutex::default(),
            idle: Notify::new(),
            idle_received: AtomicU64::new(u64::MAX),
            retiring: Mutex::default(),
            stderr: Mutex::default(),
            links: Mutex::default(),
            cut: AtomicU64::new(0),
        });
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(forward_output(stdout, shared.clone(), false));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_output(stderr, shared.clone(), true));
        }
        let (exit_sender, exit) = watch::channel(None);
        tokio::spawn(async move {
            let status = child.wait().await;
            let exit = match status {
                Ok(status) => HostExit::of(status),
                Err(_) => HostExit { code: None, signal: None, core_dumped: false },
            };
            exit_sender.send_replace(Some(exit));
        });
        let mut reader = FrameReader::new(socket.clone());
        let ready = tokio::time::timeout(READY_TIMEOUT, reader.next()).await;
        let counters = match ready {
            Ok(Ok(Some((HostReport::Ready { control_version, .. }, _, mut descriptors))))
                if control_version == CONTROL_VERSION =>
            {
                let descriptor = descriptors.pop().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "the host sent no counters page")
                })?;
                SharedCounters::map(std::fs::File::from(descriptor))?
            }
            Ok(Ok(Some((HostReport::Ready { control_version, .. }, _, _)))) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the host speaks control version {control_version}, this daemon \
                         {CONTROL_VERSION}: {} is from another hotswap build",
                        program.program.display()
                    ),
                ));
            }
            other => {
                let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
                let mut exit = exit.clone();
                let ended =
                    tokio::time::timeout(Duration::from_secs(2), exit.wait_for(Option::is_some))
                        .await
                        .ok()
                        .and_then(|exit| *exit.ok()?);
                tokio::time::sleep(Duration::from_millis(50)).await;
                let words =
                    shared.stderr.lock().expect("stderr").lines.iter().cloned().collect::<Vec<_>>();
                let why = match other {
                    Err(_) => "did not say it was ready within 10 s".to_owned(),
                    Ok(Err(error)) => format!("broke the control channel: {error}"),
                    _ => "did not start as a host".to_owned(),
                };
                return Err(io::Error::other(format!(
                    "the host process {} {why}{}{}",
                    program.program.display(),
                    ended.map(|exit| format!("; it {}", exit.describe())).unwrap_or_default(),
                    if words.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", words.join(" | "))
                    }
                )));
            }
        };
        tokio::spawn(read_reports(reader, shared.clone()));
        Ok(HostProcess {
            pid,
            socket,
            write_lock: tokio::sync::Mutex::new(()),
            counters,
            shared,
            exit,
            pidfd,
            next_export: AtomicU64::new(1),
            sent: AtomicU64::new(0),
        })
    }

    /// Sends one command with its descriptors.
    async fn send(
        &self,
        command: &HostCommand,
        payload: &[u8],
        attached: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        debug_assert_eq!(command.descriptors(), attached.len());
        let mut frame = Vec::with_capacity(64 + payload.len());
        control::encode_frame(command, payload, &mut frame);
        let _one_frame_at_a_time = self.write_lock.lock().await;
        let mut sent = 0;
        let mut attached = attached;
        while sent < frame.len() {
            let written = self
                .socket
                .async_io(Interest::WRITABLE, || {
                    descriptors::send(self.socket.as_fd(), &frame[sent..], attached)
                })
                .await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            sent += written;
            attached = &[];
        }
        Ok(())
    }

    /// Makes this host a generation's: where its logs, panics and returned connections go.
    pub fn link(&self, generation: u64, links: HostLinks) {
        self.shared.generation.store(generation, Ordering::SeqCst);
        *self.shared.links.lock().expect("links") = Some(links);
    }

    async fn ask(
        &self,
        command: &HostCommand,
        attached: &[BorrowedFd<'_>],
        slot: impl FnOnce(&mut Pending) -> &mut Option<oneshot::Sender<HostReport>>,
        timeout: Duration,
    ) -> Result<HostReport, HostFailure> {
        let (reply, answer) = oneshot::channel();
        {
            let mut pending = self.shared.pending.lock().expect("pending");
            if pending.closed {
                return Err(HostFailure::Ended);
            }
            *slot(&mut pending) = Some(reply);
        }
        if self.send(command, b"", attached).await.is_err() {
            return Err(HostFailure::Ended);
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(_)) => Err(HostFailure::Ended),
            Err(_) => Err(HostFailure::TimedOut),
        }
    }

    /// Loads the library and starts its runtime.
    pub async fn load(&self, load: LoadCommand, timeout: Duration) -> Result<Loaded, HostFailure> {
        let report =
            self.ask(&HostCommand::Load(load), &[], |pending| &mut pending.load, timeout).await?;
        match report {
            HostReport::Loaded { sdk_version, load_ms, verify_ms, init_ms } => {
                Ok(Loaded { sdk_version, load_ms, verify_ms, init_ms })
            }
            HostReport::LoadFailed { stage, message } => {
                Err(HostFailure::Refused { stage: Some(stage), state: false, message })
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Creates the app with `state` (none: the app's default). `Ok(Some(warning))` when the
    /// state did not import and it started fresh.
    pub async fn start(
        &self,
        policy: StatePolicy,
        state: Option<&StateSnapshot>,
        timeout: Duration,
    ) -> Result<Option<String>, HostFailure> {
        let command = HostCommand::Start { policy, with_state: state.is_some() };
        let attached: Vec<BorrowedFd<'_>> = state.iter().map(|state| state.file.as_fd()).collect();
        let report = self.ask(&command, &attached, |pending| &mut pending.start, timeout).await?;
        match report {
            HostReport::Started { warning } => Ok(warning),
            HostReport::StartFailed { state, message } => {
                Err(HostFailure::Refused { stage: None, state, message })
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Holds (`on`) the app's requests that can write, waiting at most `timeout` until none
    /// runs; returns how many still run. Releases them with `on` false.
    pub async fn hold(&self, on: bool, timeout: Duration) -> Result<u64, HostFailure> {
        let command = HostCommand::Hold { on, timeout_ms: millis_u64(timeout) };
        let report = self
            .ask(&command, &[], |pending| &mut pending.hold, timeout + Duration::from_secs(2))
            .await?;
        match report {
            HostReport::Held { writes_running } => Ok(writes_running),
            other => Err(unexpected(&other)),
        }
    }

    /// Passes a connection; false when the host is gone (the socket is then closed).
    pub async fn serve(&self, socket: OwnedFd, unread: &[u8]) -> bool {
        self.serve_or_return(socket, unread).await.is_ok()
    }

    /// Passes a connection, or gives it back when the host is gone.
    pub async fn serve_or_return(&self, socket: OwnedFd, unread: &[u8]) -> Result<(), OwnedFd> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        match self.send(&HostCommand::Connection, unread, &[socket.as_fd()]).await {
            // Our copy closes here; the host has its own.
            Ok(()) => Ok(()),
            Err(_) => {
                self.sent.fetch_sub(1, Ordering::SeqCst);
                Err(socket)
            }
        }
    }

    /// Connections it serves, and those on their way to it.
    pub fn open_connections(&self) -> u64 {
        let counters = self.counters.get();
        let sent = self.sent.load(Ordering::SeqCst);
        let received = counters.received.load(Ordering::SeqCst);
        counters.connections.load(Ordering::SeqCst) + sent.saturating_sub(received)
    }

    /// Asks for the app's state: `Ok(None)` when it keeps none.
    pub async fn export_state(
        &self,
        timeout: Duration,
    ) -> Result<Option<StateSnapshot>, HostFailure> {
        let request = self.next_export.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        {
            let mut pending = self.shared.pending.lock().expect("pending");
            if pending.closed {
                return Err(HostFailure::Ended);
            }
            pending.exports.insert(request, reply);
        }
        if self.send(&HostCommand::ExportState { request }, b"", &[]).await.is_err() {
            return Err(HostFailure::Ended);
        }
        let answer = tokio::time::timeout(timeout, answer).await;
        if answer.is_err() {
            self.shared.pending.lock().expect("pending").exports.remove(&request);
        }
        match answer {
            Ok(Ok((HostReport::StateExported { bytes: 0, .. }, _))) => Ok(None),
            Ok(Ok((HostReport::StateExported { bytes, .. }, mut attached))) => {
                match attached.pop() {
                    Some(file) => Ok(Some(StateSnapshot { file, bytes })),
                    None => Err(HostFailure::Refused {
                        stage: None,
                        state: true,
                        message: "the state came without its memfd".to_owned(),
                    }),
                }
            }
            Ok(Ok((HostReport::ExportFailed { message, .. }, _))) => {
                Err(HostFailure::Refused { stage: None, state: true, message })
            }
            Ok(Ok((other, _))) => Err(unexpected(&other)),
            Ok(Err(_)) => Err(HostFailure::Ended),
            Err(_) => Err(HostFailure::TimedOut),
        }
    }

    /// Tells the generation to drain and waits (at most `timeout`) until it has: from then on
    /// its connections read no new request.
    pub async fn begin_drain(
        &self,
        purge_after: Duration,
        streams_after: Duration,
        timeout: Duration,
    ) {
        let (done, drained) = oneshot::channel();
        {
            let mut pending = self.shared.pending.lock().expect("pending");
            if pending.closed {
                return;
            }
            pending.drain = Some(done);
        }
        let command = HostCommand::BeginDrain {
            purge_after_ms: millis_u64(purge_after),
            streams_after_ms: millis_u64(streams_after),
        };
        if self.send(&command, b"", &[]).await.is_ok() {
            let _ = tokio::time::timeout(timeout, drained).await;
        }
    }

    /// True when the host serves nothing and every connection sent to it has arrived.
    pub fn is_idle(&self) -> bool {
        let counters = self.counters.get();
        counters.connections.load(Ordering::SeqCst) == 0
            && counters.streams.load(Ordering::SeqCst) == 0
            && counters.received.load(Ordering::SeqCst) >= self.sent.load(Ordering::SeqCst)
    }

    /// Waits until the host is idle (after `begin_drain`), its process ends, or `deadline`.
    pub async fn wait_until_idle(&self, deadline: tokio::time::Instant) {
        let mut exit = self.exit.clone();
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.is_idle() || exit.borrow().is_some() {
                return;
            }
            tokio::select! {
                () = &mut idle => {}
                _ = exit.changed() => return,
                () = tokio::time::sleep_until(deadline) => return,
                // The counters page is the truth; the idle report only wakes us early.
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Ends the host: it answers what is stuck, stops the app within `grace` and exits; if it
    /// does not, SIGTERM, then SIGKILL. Returns true when it exited by itself.
    pub async fn retire(&self, grace: Duration) -> bool {
        let mut exit = self.exit.clone();
        if exit.borrow().is_some() {
            return true;
        }
        let asked =
            self.send(&HostCommand::Retire { grace_ms: millis_u64(grace) }, b"", &[]).await.is_ok();
        let limit = grace + Duration::from_secs(1);
        if asked && tokio::time::timeout(limit, exit.wait_for(Option::is_some)).await.is_ok() {
            return true;
        }
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::TERM);
        if tokio::time::timeout(Duration::from_millis(500), exit.wait_for(Option::is_some))
            .await
            .is_ok()
        {
            return false;
        }
        self.kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), exit.wait_for(Option::is_some)).await;
        false
    }

    /// SIGKILL, at once.
    pub fn kill(&self) {
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
    }

    /// How the process ended, once it has.
    pub fn exit(&self) -> watch::Receiver<Option<HostExit>> {
        self.exit.clone()
    }

    pub fn counters(&self) -> &control::HostCounters {
        self.counters.get()
    }

    /// Requests the host answered 503 itself.
    pub fn requests_cut_by_host(&self) -> u64 {
        self.shared.cut.load(Ordering::Relaxed)
    }

    /// What the host said when it retired: whether everything stopped, and what did not.
    pub fn retiring_message(&self) -> Option<(bool, Option<String>)> {
        self.shared.retiring.lock().expect("retiring").clone()
    }

    /// Resident memory of the process, from `/proc`.
    pub fn resident_bytes(&self) -> Option<u64> {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid)).ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages * u64::try_from(page).unwrap_or(4096))
    }

    /// The last lines the process wrote to stderr (after it ended: all of them have been read,
    /// within a short wait).
    pub async fn last_words(&self) -> Vec<String> {
        // The pipe may still hold the last lines when the exit is seen.
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.shared.stderr.lock().expect("stderr").lines.iter().cloned().collect()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        // A host nobody holds any more serves nothing: closing the channel makes it exit, and
        // one that is stuck in handler code is ended here.
        if self.exit.borrow().is_none() {
            self.kill();
        }
    }
}

fn unexpected(report: &HostReport) -> HostFailure {
    HostFailure::Refused {
        stage: None,
        state: false,
        message: format!("the host answered out of turn: {report:?}"),
    }
}

fn millis_u64(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Reads frames (and their descriptors) from a host.
struct FrameReader {
    socket: Arc<UnixStream>,
    buffer: BytesMut,
    descriptors: VecDeque<OwnedFd>,
}

impl FrameReader {
    fn new(socket: Arc<UnixStream>) -> Self {
        Self { socket, buffer: BytesMut::with_capacity(16 * 1024), descriptors: VecDeque::new() }
    }

    async fn next(&mut self) -> io::Result<Option<(HostReport, Bytes, Vec<OwnedFd>)>> {
        loop {
            match control::decode_frame(&mut self.buffer) {
                Ok(Some(frame)) => {
                    let report: HostReport = frame
                        .message()
                        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                    let wanted = report.descriptors();
                    if self.descriptors.len() < wanted {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a report came without its descriptor",
                        ));
                    }
                    let attached = self.descriptors.drain(..wanted).collect();
                    return Ok(Some((report, frame.payload, attached)));
                }
                Ok(None) => {}
                Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
            }
            let mut chunk = [0u8; 16 * 1024];
            let Self { socket, descriptors: queue, .. } = self;
            let read = socket
                .async_io(Interest::READABLE, || {
                    descriptors::receive(socket.as_fd(), &mut chunk, queue)
                })
                .await?;
            if read == 0 {
                return Ok(None);
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

/// Routes every report of a host until its channel closes.
async fn read_reports(mut reader: FrameReader, shared: Arc<Shared>) {
    loop {
        let next = reader.next().await;
        let Ok(Some((report, payload, mut attached))) = next else { break };
        let generation = shared.generation.load(Ordering::SeqCst);
        match report {
            HostReport::Loaded { .. } | HostReport::LoadFailed { .. } => {
                if let Some(reply) = shared.pending.lock().expect("pending").load.take() {
                    let _ = reply.send(report);
                }
            }
            HostReport::Started { .. } | HostReport::StartFailed { .. } => {
                if let Some(reply) = shared.pending.lock().expect("pending").start.take() {
                    let _ = reply.send(report);
                }
            }
            HostReport::StateExported { request, .. }
            | HostReport::ExportFailed { request, .. } => {
                let reply = shared.pending.lock().expect("pending").exports.remove(&request);
                if let Some(reply) = reply {
                    let _ = reply.send((report, attached));
                }
            }
            HostReport::Held { .. } => {
                if let Some(reply) = shared.pending.lock().expect("pending").hold.take() {
                    let _ = reply.send(report);
                }
            }
            HostReport::Draining => {
                if let Some(reply) = shared.pending.lock().expect("pending").drain.take() {
                    let _ = reply.send(());
                }
            }
            HostReport::Idle { received } => {
                shared.idle_received.store(received, Ordering::SeqCst);
                shared.idle.notify_waiters();
            }
            HostReport::ConnectionReturned => {
                let links = shared.links.lock().expect("links").clone();
                if let (Some(links), Some(socket)) = (links, attached.pop()) {
                    // If the engine stopped serving, the socket is closed here.
                    let _ = links
                        .returned
                        .send(ReturnedConnection { socket, unread: payload.to_vec() });
                }
            }
            HostReport::Log { level, target, message } => {
                log_handler_line(generation, level, &target, &message);
                if let Some(links) = shared.links.lock().expect("links").as_ref() {
                    links.events.send(Event::Log(LogLine {
                        level,
                        target,
                        message,
                        generation: Some(generation),
                    }));
                }
            }
            HostReport::Panicked { message, location, request } => {
                tracing::error!(
                    generation,
                    "handler panicked{}{}: {message}",
                    location
                        .as_deref()
                        .map(|location| format!(" at {location}"))
                        .unwrap_or_default(),
                    request
                        .as_deref()
                        .map(|request| format!(" while answering {request}"))
                        .unwrap_or_default(),
                );
                if let Some(links) = shared.links.lock().expect("links").as_ref() {
                    links.events.send(Event::HandlerPanicked(HandlerPanicked {
                        generation,
                        message,
                        location,
                        request,
                    }));
                }
            }
            HostReport::RequestsCut { count } => {
                shared.cut.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(
                    generation,
                    "generation {generation}: {count} request(s) outlived the drain timeout while \
                     their handler was blocked; answered 503"
                );
            }
            HostReport::Retiring { clean, message } => {
                *shared.retiring.lock().expect("retiring") = Some((clean, message));
            }
            HostReport::Ready { .. } => {}
        }
    }
    // The host is gone or broke the channel: nothing pending will be answered.
    let mut pending = shared.pending.lock().expect("pending");
    pending.closed = true;
    pending.load = None;
    pending.start = None;
    pending.hold = None;
    pending.drain = None;
    pending.exports.clear();
}

fn log_handler_line(generation: u64, level: LogLevel, target: &str, message: &str) {
    match level {
        LogLevel::Error => tracing::error!(target: "handler", generation, "{target}: {message}"),
        LogLevel::Warn => tracing::warn!(target: "handler", generation, "{target}: {message}"),
        LogLevel::Info => tracing::info!(target: "handler", generation, "{target}: {message}"),
        LogLevel::Debug => tracing::debug!(target: "handler", generation, "{target}: {message}"),
        LogLevel::Trace => tracing::trace!(target: "handler", generation, "{target}: {message}"),
    }
}

/// Forwards what the process prints (handler `println!`/`eprintln!`, Rust's runtime messages)
/// to the log and to subscribers, keeping stderr's last lines for a crash report.
async fn forward_output(output: impl AsyncRead + Unpin, shared: Arc<Shared>, is_stderr: bool) {
    let mut lines = BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if text.is_empty() {
            continue;
        }
        if text.len() > LINE_LIMIT {
            let mut end = LINE_LIMIT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        let generation = shared.generation.load(Ordering::SeqCst);
        let target = if is_stderr { "stderr" } else { "stdout" };
        tracing::info!(target: "handler", generation, "{target}: {text}");
        // A backtrace is logged, but kept out of the last words, which it would flood.
        if is_stderr && !super::crash::is_backtrace_line(&text) {
            shared.stderr.lock().expect("stderr").push(text.clone());
        }
        if let Some(links) = shared.links.lock().expect("links").as_ref() {
            links.events.send(Event::Log(LogLine {
                level: if is_stderr { LogLevel::Warn } else { LogLevel::Info },
                target: target.to_owned(),
                message: text,
                generation: (generation > 0).then_some(generation),
            }));
        }
    }
}
