//! One loaded generation: its library, the thread that runs every call into it, and the counters
//! its connections report through the host callbacks.
//!
//! **Architecture Invariant:** library code runs only on the generation thread (created here) and
//! on threads the library starts from it and joins in `shutdown`. The host never calls into the
//! library from its own threads (except the entry symbol, which returns a pointer). That is what
//! lets `dlclose` really unmap the library: thread-local destructors it registered belong to
//! threads that are gone by then.

use std::ffi::c_void;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hotswap_handler::abi::{
    ByteSlice, HandlerFunctions, HostCallbacks, InitConfig, InitResult, OwnedBuffer, log_level,
    request_outcome, status,
};
use hotswap_protocol::events::{Event, HandlerPanicked, LogLevel, LogLine};
use tokio::sync::{Notify, mpsc, oneshot};

use super::artifact::Fingerprint;
use super::events::EventSink;
use super::library::LoadedLibrary;

/// Counters the library updates through the host callbacks; also the callbacks' context.
#[derive(Debug)]
pub struct Counters {
    pub generation: u64,
    pub connections: AtomicU64,
    /// Connections handed to the generation whose serving task has not started yet (and so
    /// is not counted in `connections`): a generation with some is not idle, or shutting it
    /// down would drop them unserved.
    pub handed: AtomicU64,
    pub in_flight: AtomicU64,
    pub requests: AtomicU64,
    pub panics: AtomicU64,
    /// Requests answered 503 at the drain timeout.
    pub cut: AtomicU64,
    /// Woken whenever the last connection closes.
    pub idle: Notify,
    links: EngineLinks,
}

impl Counters {
    /// True when the generation serves no connection and has none waiting to start.
    pub fn is_idle(&self) -> bool {
        self.connections.load(Ordering::SeqCst) == 0 && self.handed.load(Ordering::SeqCst) == 0
    }

    /// A handed connection started serving (and is counted in `connections` now) or was
    /// refused.
    fn handoff_ended(&self) {
        let _ = self
            .handed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |handed| handed.checked_sub(1));
        if self.is_idle() {
            self.idle.notify_waiters();
        }
    }
}

/// Where a generation's callbacks deliver what concerns the whole engine.
#[derive(Debug, Clone)]
pub struct EngineLinks {
    pub events: EventSink,
    /// Connections the library gives back, for the current generation to serve.
    pub returned: mpsc::UnboundedSender<ReturnedConnection>,
}

/// A connection a draining generation gave back, with the bytes it had read but not processed.
#[derive(Debug)]
pub struct ReturnedConnection {
    pub socket: OwnedFd,
    pub unread: Vec<u8>,
}

/// What the generation thread is asked to do.
enum Command {
    Start { state: Vec<u8>, policy: u32, reply: oneshot::Sender<(u32, String)> },
    Connection(OwnedFd, Vec<u8>),
    ExportState { reply: oneshot::Sender<Result<Vec<u8>, String>> },
    BeginDrain { purge_after: Duration, done: oneshot::Sender<()> },
    Shutdown { timeout: Duration, reply: oneshot::Sender<(u32, String)> },
}

/// A generation of the handler.
#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    /// The file this generation loaded (its own hard link or copy of the artifact).
    pub library_file: PathBuf,
    /// The artifact it was made from, as it was when loaded.
    pub artifact_fingerprint: Option<Fingerprint>,
    pub counters: Arc<Counters>,
    pub loaded_at: Instant,
    pub sdk_version: String,
    commands: Mutex<Option<std::sync::mpsc::Sender<Command>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    library: Mutex<Option<LoadedLibrary>>,
    /// When it stopped being current.
    pub retired_at: Mutex<Option<Instant>>,
}

/// Why a generation could not start.
#[derive(Debug)]
pub enum StartError {
    /// `init` failed, panicked or timed out.
    Init(String),
    /// The app's state could not be imported (policy: reject).
    State(String),
}

/// How `shutdown` went.
#[derive(Debug)]
pub enum ShutdownResult {
    /// Every thread of the library has stopped: it may be unloaded.
    Clean,
    /// Threads may still run library code: it must stay loaded.
    ThreadsLeft(String),
}

impl Generation {
    /// Starts the generation thread and runs `init` on it, waiting at most `init_timeout`.
    pub fn spawn(
        number: u64,
        library: LoadedLibrary,
        library_file: PathBuf,
        artifact_fingerprint: Option<Fingerprint>,
        config: InitConfig,
        links: EngineLinks,
        init_timeout: Duration,
    ) -> Result<Arc<Generation>, (StartError, Option<LoadedLibrary>)> {
        let counters = Arc::new(Counters {
            generation: number,
            connections: AtomicU64::new(0),
            handed: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            cut: AtomicU64::new(0),
            idle: Notify::new(),
            links,
        });
        let functions = library.functions;
        let callbacks = HostCallbacks {
            context: Arc::into_raw(counters.clone()).cast(),
            log: on_log,
            panicked: on_panic,
            connection_opened: on_connection_opened,
            connection_closed: on_connection_closed,
            request_started: on_request_started,
            request_finished: on_request_finished,
            return_connection: on_return_connection,
        };
        let (commands, receiver) = std::sync::mpsc::channel();
        let (init_reply, init_result) = std::sync::mpsc::channel();
        let context = SendCallbacks(callbacks);
        let thread = std::thread::Builder::new()
            .name(format!("hotswap-generation-{number}"))
            .spawn(move || {
                let callbacks = context;
                generation_thread(functions, config, callbacks.0, init_reply, receiver)
            });
        let thread = match thread {
            Ok(thread) => thread,
            Err(error) => {
                // SAFETY: the context was never handed to the library.
                drop(unsafe { Arc::from_raw(Arc::as_ptr(&counters)) });
                return Err((
                    StartError::Init(format!("cannot start the generation thread: {error}")),
                    Some(library),
                ));
            }
        };
        match init_result.recv_timeout(init_timeout) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                let _ = thread.join();
                // SAFETY: init failed and the thread has exited: the library holds no reference
                // to the context any more.
                drop(unsafe { Arc::from_raw(Arc::as_ptr(&counters)) });
                return Err((StartError::Init(message), Some(library)));
            }
            Err(_) => {
                // The thread is stuck inside the library: it can never be unloaded.
                library.leak();
                return Err((
                    StartError::Init(format!(
                        "the handler's init did not finish within {} ms",
                        init_timeout.as_millis()
                    )),
                    None,
                ));
            }
        }
        let sdk_version = library.sdk_version.clone();
        Ok(Arc::new(Generation {
            number,
            library_file,
            artifact_fingerprint,
            counters,
            loaded_at: Instant::now(),
            sdk_version,
            commands: Mutex::new(Some(commands)),
            thread: Mutex::new(Some(thread)),
            library: Mutex::new(Some(library)),
            retired_at: Mutex::new(None),
        }))
    }

    fn send(&self, command: Command) -> bool {
        match &*self.commands.lock().expect("commands") {
            Some(sender) => sender.send(command).is_ok(),
            None => false,
        }
    }

    /// Creates the app with `state` (exported by the previous generation; empty for none).
    /// Returns a warning when the state was dropped under the fresh-state policy.
    pub async fn start(
        &self,
        state: Vec<u8>,
        policy: u32,
        timeout: Duration,
    ) -> Result<Option<String>, StartError> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Command::Start { state, policy, reply }) {
            return Err(StartError::Init("the generation thread is gone".to_owned()));
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok((status::OK, _))) => Ok(None),
            Ok(Ok((status::STARTED_FRESH, message))) => Ok(Some(message)),
            Ok(Ok((status::FAILED, message))) => Err(StartError::State(message)),
            Ok(Ok((_, message))) => Err(StartError::Init(message)),
            Ok(Err(_)) => Err(StartError::Init(
                "the generation thread stopped while starting the app".to_owned(),
            )),
            Err(_) => Err(StartError::Init(format!(
                "the app did not start within {} ms (Handler::new blocks?)",
                timeout.as_millis()
            ))),
        }
    }

    /// Hands a connection to the generation, with bytes already read from it (empty for a new
    /// one). `false` if the generation is gone (the socket is then closed).
    pub fn serve(&self, socket: OwnedFd, unread: Vec<u8>) -> bool {
        self.counters.handed.fetch_add(1, Ordering::SeqCst);
        let sent = self.send(Command::Connection(socket, unread));
        if !sent {
            self.counters.handoff_ended();
        }
        sent
    }

    /// Asks the app for its state (empty: it keeps none).
    pub async fn export_state(&self, timeout: Duration) -> Result<Vec<u8>, String> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Command::ExportState { reply }) {
            return Err("the generation thread is gone".to_owned());
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the generation thread stopped while exporting state".to_owned()),
            Err(_) => Err(format!("exporting state took more than {} ms", timeout.as_millis())),
        }
    }

    /// Tells the generation to drain, and waits (at most `timeout`) until it has: from then on
    /// its connections read no new request, so one sent after this returns meets the next
    /// generation. (Telling without waiting let a busy generation keep serving new requests
    /// for several swaps.)
    pub async fn begin_drain(&self, purge_after: Duration, timeout: Duration) {
        let (done, drained) = oneshot::channel();
        if self.send(Command::BeginDrain { purge_after, done }) {
            let _ = tokio::time::timeout(timeout, drained).await;
        }
    }

    /// Shuts the generation down and joins its thread; then the library may be unloaded
    /// ([`Generation::unload`]) if the result is clean.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownResult {
        let (reply, answer) = oneshot::channel();
        let sent = self.send(Command::Shutdown { timeout, reply });
        // No more commands: the thread ends after shutdown (or at once if it already ended).
        self.commands.lock().expect("commands").take();
        let answer = if sent {
            tokio::time::timeout(timeout + Duration::from_secs(5), answer).await
        } else {
            Ok(Ok((status::OK, String::new())))
        };
        match answer {
            Ok(Ok((status::OK, _))) => {}
            Ok(Ok((_, message))) => return ShutdownResult::ThreadsLeft(message),
            Ok(Err(_)) => {
                return ShutdownResult::ThreadsLeft(
                    "the generation thread died during shutdown".into(),
                );
            }
            Err(_) => return ShutdownResult::ThreadsLeft("shutdown did not return in time".into()),
        }
        let thread = self.thread.lock().expect("thread").take();
        if let Some(thread) = thread {
            // The thread returns right after shutdown; joining also waits for its thread-local
            // destructors, which may be library code.
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                return ShutdownResult::ThreadsLeft("the generation thread panicked".into());
            }
        }
        ShutdownResult::Clean
    }

    /// `dlclose`s the library after a clean shutdown and reports the bytes still mapped from
    /// its file (0 when it is really gone).
    pub fn unload(&self) -> Result<u64, String> {
        let Some(library) = self.library.lock().expect("library").take() else { return Ok(0) };
        // SAFETY: the callbacks' context is no longer used: shutdown was clean and the thread joined, so the
        // library holds no reference to the counters any more.
        drop(unsafe { Arc::from_raw(Arc::as_ptr(&self.counters)) });
        library.close()?;
        Ok(super::library::mapped_bytes(&self.library_file).unwrap_or(0))
    }

    /// Keeps the library mapped forever (its threads may still run) and reports its mapped bytes.
    pub fn leak(&self) -> u64 {
        if let Some(library) = self.library.lock().expect("library").take() {
            library.leak();
        }
        super::library::mapped_bytes(&self.library_file).unwrap_or(0)
    }
}

/// Host callbacks are plain data; the thread that uses them is the generation's.
struct SendCallbacks(HostCallbacks);
// SAFETY: the context is an `Arc<Counters>` (Send + Sync) and the rest are function pointers.
unsafe impl Send for SendCallbacks {}

/// Copies a library buffer into a `String` and gives the buffer back (on this thread).
fn take_message(functions: &HandlerFunctions, buffer: OwnedBuffer) -> String {
    // SAFETY: the buffer comes from the library and is freed right after.
    let text = String::from_utf8_lossy(unsafe { buffer.as_bytes() }).into_owned();
    // SAFETY: a buffer is freed once, by the library that allocated it.
    unsafe { (functions.free_buffer)(buffer) };
    text
}

fn take_bytes(functions: &HandlerFunctions, buffer: OwnedBuffer) -> Vec<u8> {
    // SAFETY: as in take_message.
    let bytes = unsafe { buffer.as_bytes() }.to_vec();
    // SAFETY: as in take_message.
    unsafe { (functions.free_buffer)(buffer) };
    bytes
}

/// The body of the generation thread: `init`, then one command at a time until `shutdown`.
fn generation_thread(
    functions: HandlerFunctions,
    config: InitConfig,
    callbacks: HostCallbacks,
    init_reply: std::sync::mpsc::Sender<Result<(), String>>,
    commands: std::sync::mpsc::Receiver<Command>,
) {
    let mut result = InitResult {
        status: status::FAILED,
        instance: std::ptr::null_mut(),
        message: OwnedBuffer::EMPTY,
    };
    // SAFETY: config and callbacks outlive the call; `result` is writable.
    unsafe { (functions.init)(&config, &callbacks, &mut result) };
    if result.status != status::OK || result.instance.is_null() {
        let message = take_message(&functions, result.message);
        let message =
            if message.is_empty() { "the handler's init failed".to_owned() } else { message };
        let _ = init_reply.send(Err(message));
        return;
    }
    let instance: *mut c_void = result.instance;
    let _ = init_reply.send(Ok(()));
    let shutdown = |timeout: Duration| {
        let mut message = OwnedBuffer::EMPTY;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: the instance came from init and is used for the last time.
        let code = unsafe { (functions.shutdown)(instance, timeout_ms, &mut message) };
        (code, take_message(&functions, message))
    };
    while let Ok(command) = commands.recv() {
        match command {
            Command::Start { state, policy, reply } => {
                let mut message = OwnedBuffer::EMPTY;
                // SAFETY: instance is live; the state bytes outlive the call.
                let code = unsafe {
                    (functions.start)(instance, ByteSlice::new(&state), policy, &mut message)
                };
                let _ = reply.send((code, take_message(&functions, message)));
            }
            Command::Connection(socket, unread) => {
                let raw = socket.into_raw_fd();
                // SAFETY: instance is live; ownership of the descriptor passes to the library, and
                // the bytes outlive the call.
                let code = unsafe {
                    (functions.serve_connection)(instance, i64::from(raw), ByteSlice::new(&unread))
                };
                if code != status::OK {
                    // SAFETY: the context is the generation's own `Arc<Counters>`.
                    unsafe { counters(callbacks.context) }.handoff_ended();
                    tracing::warn!(
                        generation = config.generation,
                        "the handler refused a connection (status {code})"
                    );
                }
            }
            Command::ExportState { reply } => {
                let mut out = OwnedBuffer::EMPTY;
                // SAFETY: instance is live; `out` is writable.
                let code = unsafe { (functions.export_state)(instance, &mut out) };
                let bytes = take_bytes(&functions, out);
                let _ = reply.send(if code == status::OK {
                    Ok(bytes)
                } else {
                    Err(String::from_utf8_lossy(&bytes).into_owned())
                });
            }
            Command::BeginDrain { purge_after, done } => {
                let purge_ms = u64::try_from(purge_after.as_millis()).unwrap_or(u64::MAX);
                // SAFETY: instance is live.
                unsafe { (functions.begin_drain)(instance, purge_ms) };
                let _ = done.send(());
            }
            Command::Shutdown { timeout, reply } => {
                let _ = reply.send(shutdown(timeout));
                return;
            }
        }
    }
    // The engine went away without a shutdown: stop the library anyway.
    shutdown(Duration::from_secs(2));
}

/// # Safety
/// `context` is the `Arc<Counters>` pointer handed to the library in `HostCallbacks`.
unsafe fn counters<'a>(context: *const c_void) -> &'a Counters {
    // SAFETY: the engine keeps the Arc alive until the generation's threads are gone.
    unsafe { &*context.cast::<Counters>() }
}

unsafe extern "C" fn on_log(
    context: *const c_void,
    level: u32,
    target: ByteSlice,
    message: ByteSlice,
) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: per the ABI, context is ours and the slices live for the call.
        let (counters, target, message) =
            unsafe { (counters(context), target.as_bytes(), message.as_bytes()) };
        let target = String::from_utf8_lossy(target).into_owned();
        let message = String::from_utf8_lossy(message).into_owned();
        let generation = counters.generation;
        let level = match level {
            log_level::ERROR => LogLevel::Error,
            log_level::WARN => LogLevel::Warn,
            log_level::INFO => LogLevel::Info,
            log_level::DEBUG => LogLevel::Debug,
            _ => LogLevel::Trace,
        };
        match level {
            LogLevel::Error => {
                tracing::error!(target: "handler", generation, "{target}: {message}")
            }
            LogLevel::Warn => tracing::warn!(target: "handler", generation, "{target}: {message}"),
            LogLevel::Info => tracing::info!(target: "handler", generation, "{target}: {message}"),
            LogLevel::Debug => {
                tracing::debug!(target: "handler", generation, "{target}: {message}")
            }
            LogLevel::Trace => {
                tracing::trace!(target: "handler", generation, "{target}: {message}")
            }
        }
        counters.links.events.send(Event::Log(LogLine {
            level,
            target,
            message,
            generation: Some(generation),
        }));
    });
}

unsafe extern "C" fn on_panic(context: *const c_void, message: ByteSlice, location: ByteSlice) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: as in on_log.
        let (counters, message, location) =
            unsafe { (counters(context), message.as_bytes(), location.as_bytes()) };
        let message = String::from_utf8_lossy(message).into_owned();
        let location = String::from_utf8_lossy(location).into_owned();
        counters.panics.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            generation = counters.generation,
            "handler panicked at {location}: {message}"
        );
        counters.links.events.send(Event::HandlerPanicked(HandlerPanicked {
            generation: counters.generation,
            message,
            location: (!location.is_empty()).then_some(location),
        }));
    });
}

unsafe extern "C" fn on_connection_opened(context: *const c_void) {
    // SAFETY: as in on_log.
    let counters = unsafe { counters(context) };
    counters.connections.fetch_add(1, Ordering::SeqCst);
    counters.handoff_ended();
}

unsafe extern "C" fn on_connection_closed(context: *const c_void) {
    // SAFETY: as in on_log.
    let counters = unsafe { counters(context) };
    counters.connections.fetch_sub(1, Ordering::SeqCst);
    if counters.is_idle() {
        counters.idle.notify_waiters();
    }
}

unsafe extern "C" fn on_return_connection(context: *const c_void, socket: i64, unread: ByteSlice) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: per the ABI, context is ours, the socket's ownership passes to us, and the
        // bytes live for the call.
        let (counters, socket, unread) = unsafe {
            (
                counters(context),
                OwnedFd::from_raw_fd(socket as std::os::fd::RawFd),
                unread.as_bytes().to_vec(),
            )
        };
        // If the engine stopped serving, the socket is closed here.
        let _ = counters.links.returned.send(ReturnedConnection { socket, unread });
    });
}

unsafe extern "C" fn on_request_started(context: *const c_void) {
    // SAFETY: as in on_log.
    unsafe { counters(context) }.in_flight.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn on_request_finished(context: *const c_void, outcome: u32) {
    // SAFETY: as in on_log.
    let counters = unsafe { counters(context) };
    counters.in_flight.fetch_sub(1, Ordering::SeqCst);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    if outcome == request_outcome::CUT {
        counters.cut.fetch_add(1, Ordering::Relaxed);
    }
}
