//! The host process of one hotswap generation.
//!
//! The daemon starts it (the `hotswap` binary run as `hotswap host`, with a control socket as its
//! standard input) ahead of time; when a build is ready, the daemon tells it to load the handler
//! library, start the app with the previous generation's state, and serve the connections it
//! passes. Whatever the handler code does to this process (a stack overflow, `abort`, `exit`, a
//! thread that never ends, memory that is never freed) ends with it: the daemon, its listening
//! socket, the other generations and the state snapshots live elsewhere. Purging old code is
//! ending its process, as Erlang does.
//!
//! The host speaks [`hotswap_protocol::control`] with the daemon and [`hotswap_handler::abi`]
//! with the library, and nothing else of hotswap.
//!
//! An embedder of `hotswap_daemon::engine` runs hosts from its own binary by calling
//! [`run_if_requested`] first thing in `main`.

mod callbacks;
mod channel;
mod fatal;
mod library;
mod requests;

use std::ffi::c_void;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hotswap_handler::abi::{
    ByteSlice, HandlerFunctions, InitConfig, InitResult, OwnedBuffer, log_level, state_policy,
    status,
};
use hotswap_protocol::control::{
    CONTROL_VERSION, HostCommand, HostReport, LoadCommand, LoadStage, SharedCounters, StatePolicy,
};
use hotswap_protocol::events::LogLevel;

use callbacks::HostState;
use channel::{CommandReader, Received, ReportSender};
use library::{LoadError, LoadedLibrary};

/// The argument that makes the `hotswap` binary (or an embedder's) run as a host.
pub const HOST_ARGUMENT: &str = "host";

/// How long the exporter of a state snapshot may still run when the host is told to retire.
const EXPORT_WAIT_AT_RETIRE: Duration = Duration::from_secs(2);

/// Runs as a host and never returns, if this process was started as one (its first argument is
/// [`HOST_ARGUMENT`] and its standard input is a socket); returns otherwise.
pub fn run_if_requested() {
    if std::env::args_os().nth(1).is_some_and(|argument| argument == HOST_ARGUMENT) {
        run();
    }
}

/// Runs the host on the control socket that is this process's standard input, until the daemon
/// retires it or goes away. Never returns: the process exits with `_exit`, so no destructor or
/// `atexit` hook of the handler library runs after its generation is over.
pub fn run() -> ! {
    let code = match serve() {
        Ok(()) => 0,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "hotswap host: {error} (this command is started by `hotswap serve`, not by hand)"
            );
            70
        }
    };
    let _ = std::io::stderr().flush();
    let _ = std::io::stdout().flush();
    // SAFETY: ends the process at once; nothing of ours needs to run any more.
    unsafe { libc::_exit(code) }
}

fn serve() -> std::io::Result<()> {
    let control = take_control_socket()?;
    let counters = SharedCounters::create()?;
    let counters_descriptor = OwnedFd::from(counters.file().try_clone()?);
    let (reports, _writer) = ReportSender::start(control.try_clone()?)?;
    let state: &'static HostState = Box::leak(Box::new(HostState::new(counters, reports.clone())));
    fatal::install(&state.counters.get().crash);
    let exporter = Exporter::start()?;
    reports.send(
        &HostReport::Ready { pid: std::process::id(), control_version: CONTROL_VERSION },
        b"",
        vec![counters_descriptor],
    );
    let mut reader = CommandReader::new(control);
    let mut generation = Generation { state, loaded: None, exporter, holder: None };
    while let Some(received) = reader.next()? {
        generation.handle(received);
    }
    // The daemon is gone: so is everything this process served for.
    Ok(())
}

/// Moves the control socket off standard input (so that handler code reading stdin reads
/// nothing rather than the control channel) and checks that it is a socket.
fn take_control_socket() -> std::io::Result<UnixStream> {
    // SAFETY: descriptor 0 is ours; dup gives a new descriptor we own.
    let duplicate = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
    if duplicate < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `duplicate` is a fresh descriptor owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(duplicate) };
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: replaces descriptor 0 with /dev/null; both descriptors are valid.
    unsafe { libc::dup2(null.as_raw_fd(), 0) };
    let socket = UnixStream::from(socket);
    if socket.peer_addr().is_err() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "standard input is not the daemon's control socket",
        ));
    }
    Ok(socket)
}

/// The loaded library and its instance.
struct Loaded {
    functions: HandlerFunctions,
    instance: *mut c_void,
    generation: u64,
    started: bool,
}

struct Generation {
    state: &'static HostState,
    loaded: Option<Loaded>,
    exporter: Exporter,
    /// The thread waiting for writing requests to finish (`Hold`).
    holder: Option<std::thread::JoinHandle<()>>,
}

/// An instance pointer that may go to the exporter thread: the ABI allows `export_state` beside
/// the other calls.
#[derive(Clone, Copy)]
struct SendInstance(*mut c_void);
// SAFETY: see above; the SDK synchronises what export_state shares with the rest.
unsafe impl Send for SendInstance {}

impl Generation {
    fn handle(&mut self, received: Received) {
        let Received { command, payload, mut descriptors } = received;
        let reports = &self.state.reports;
        match command {
            HostCommand::Load(load) => {
                let report = self.load(&load);
                reports.send(&report, b"", Vec::new());
            }
            HostCommand::Start { policy, with_state } => {
                let state = if with_state { descriptors.pop() } else { None };
                let report = self.start(policy, state);
                reports.send(&report, b"", Vec::new());
            }
            HostCommand::Connection => {
                let Some(socket) = descriptors.pop() else { return };
                self.state.counters.get().received.fetch_add(1, Ordering::SeqCst);
                match &self.loaded {
                    Some(loaded) if loaded.started => {
                        let raw = socket.into_raw_fd();
                        // SAFETY: the instance is live; ownership of the socket passes to the
                        // library (which closes it if it refuses), and the payload outlives the
                        // call.
                        unsafe {
                            (loaded.functions.serve_connection)(
                                loaded.instance,
                                i64::from(raw),
                                ByteSlice::new(&payload),
                            )
                        };
                    }
                    // Nothing to serve it with: closing it lets the client retry.
                    _ => drop(socket),
                }
            }
            HostCommand::ExportState { request } => self.export(request),
            HostCommand::Hold { on, timeout_ms } => self.hold(on, timeout_ms),
            HostCommand::BeginDrain { purge_after_ms, streams_after_ms } => {
                self.state.draining.store(true, Ordering::SeqCst);
                if let Some(loaded) = &self.loaded {
                    // SAFETY: the instance is live.
                    unsafe {
                        (loaded.functions.begin_drain)(
                            loaded.instance,
                            purge_after_ms,
                            streams_after_ms,
                        )
                    };
                    let (state, generation) = (self.state, loaded.generation);
                    // Requests whose thread is blocked never see the SDK's purge: a host thread
                    // answers them shortly after it.
                    let _ = std::thread::Builder::new().name("hotswap-host-purge".into()).spawn(
                        move || {
                            std::thread::sleep(Duration::from_millis(purge_after_ms + 250));
                            let cut = state.requests.cut_stuck(generation);
                            if cut > 0 {
                                state.counters.get().cut.fetch_add(cut, Ordering::Relaxed);
                                state.reports.send(
                                    &HostReport::RequestsCut { count: cut },
                                    b"",
                                    Vec::new(),
                                );
                            }
                        },
                    );
                }
                reports.send(&HostReport::Draining, b"", Vec::new());
                self.state.report_if_idle();
            }
            HostCommand::Retire { grace_ms } => self.retire(Duration::from_millis(grace_ms)),
        }
    }

    fn load(&mut self, load: &LoadCommand) -> HostReport {
        if self.loaded.is_some() {
            return HostReport::LoadFailed {
                stage: LoadStage::Load,
                message: "this host has loaded a library already".to_owned(),
            };
        }
        self.state.generation.store(load.generation, Ordering::SeqCst);
        let clock = Instant::now();
        let (library, verify_time) = match LoadedLibrary::open(&load.library) {
            Ok(opened) => opened,
            Err(LoadError::Load(message)) => {
                return HostReport::LoadFailed { stage: LoadStage::Load, message };
            }
            Err(LoadError::Verify(message)) => {
                return HostReport::LoadFailed { stage: LoadStage::Verify, message };
            }
        };
        let load_ms = millis(clock.elapsed().saturating_sub(verify_time));
        let sdk_version = library.sdk_version.clone();
        let functions = library.keep();
        let clock = Instant::now();
        let config = InitConfig {
            generation: load.generation,
            worker_threads: load.worker_threads.max(1),
            max_log_level: match load.max_log_level {
                LogLevel::Error => log_level::ERROR,
                LogLevel::Warn => log_level::WARN,
                LogLevel::Info => log_level::INFO,
                LogLevel::Debug => log_level::DEBUG,
                LogLevel::Trace => log_level::TRACE,
            },
            max_body_bytes: load.max_body_bytes,
            first_byte_timeout_ms: load.first_byte_timeout_ms,
            forward_address: ByteSlice::new(
                load.forward_address.as_deref().unwrap_or_default().as_bytes(),
            ),
        };
        let callbacks = self.state.callbacks();
        let mut result = InitResult {
            status: status::FAILED,
            instance: std::ptr::null_mut(),
            message: OwnedBuffer::EMPTY,
        };
        // SAFETY: config and callbacks outlive the call; `result` is writable; the callbacks'
        // context is the leaked host state, alive for the rest of the process.
        unsafe { (functions.init)(&config, &callbacks, &mut result) };
        if result.status != status::OK || result.instance.is_null() {
            let message = take_message(&functions, result.message);
            return HostReport::LoadFailed {
                stage: LoadStage::Init,
                message: if message.is_empty() {
                    "the handler's init failed".to_owned()
                } else {
                    message
                },
            };
        }
        self.loaded = Some(Loaded {
            functions,
            instance: result.instance,
            generation: load.generation,
            started: false,
        });
        HostReport::Loaded {
            sdk_version,
            load_ms,
            verify_ms: millis(verify_time),
            init_ms: millis(clock.elapsed()),
        }
    }

    fn start(&mut self, policy: StatePolicy, state: Option<OwnedFd>) -> HostReport {
        let Some(loaded) = &mut self.loaded else {
            return HostReport::StartFailed {
                state: false,
                message: "no library is loaded".to_owned(),
            };
        };
        // A sealed memfd: nobody can change it while it is mapped.
        let mapped = match state.map(std::fs::File::from) {
            Some(file) if file.metadata().map(|metadata| metadata.len()).unwrap_or(0) > 0 => {
                // SAFETY: the daemon passes a sealed memfd (no writes, no shrinking) that only
                // this mapping reads.
                match unsafe { memmap2::Mmap::map(&file) } {
                    Ok(map) => Some(map),
                    Err(error) => {
                        return HostReport::StartFailed {
                            state: true,
                            message: format!("cannot map the state: {error}"),
                        };
                    }
                }
            }
            _ => None,
        };
        let bytes = mapped.as_deref().unwrap_or_default();
        let policy = match policy {
            StatePolicy::Fresh => state_policy::FRESH,
            StatePolicy::Reject => state_policy::REJECT,
        };
        let mut message = OwnedBuffer::EMPTY;
        // SAFETY: the instance is live; the state bytes outlive the call; `message` is writable.
        let code = unsafe {
            (loaded.functions.start)(loaded.instance, ByteSlice::new(bytes), policy, &mut message)
        };
        let message = take_message(&loaded.functions, message);
        match code {
            status::OK => {
                loaded.started = true;
                HostReport::Started { warning: None }
            }
            status::STARTED_FRESH => {
                loaded.started = true;
                HostReport::Started { warning: Some(message) }
            }
            status::FAILED => HostReport::StartFailed { state: true, message },
            _ => HostReport::StartFailed { state: false, message },
        }
    }

    /// Holds or releases the app's writing requests. When writes still run, waiting for them
    /// to finish happens on a thread of its own: meanwhile this loop keeps taking connections.
    fn hold(&mut self, on: bool, timeout_ms: u64) {
        let reports = self.state.reports.clone();
        let Some(loaded) = self.loaded.as_ref().filter(|loaded| loaded.started) else {
            reports.send(&HostReport::Held { writes_running: 0 }, b"", Vec::new());
            return;
        };
        if let Some(previous) = self.holder.take() {
            let _ = previous.join();
        }
        let (functions, instance) = (loaded.functions, SendInstance(loaded.instance));
        // SAFETY: the instance is live; with no wait, the call does not block.
        let running = unsafe { (functions.hold)(instance.0, u32::from(on), 0) };
        // The usual case (no write running, or a release) is answered here, without a thread.
        if !on || running == 0 || timeout_ms == 0 {
            reports.send(&HostReport::Held { writes_running: running }, b"", Vec::new());
            return;
        }
        let holder =
            std::thread::Builder::new().name("hotswap-host-hold".into()).spawn(move || {
                let instance = instance;
                // SAFETY: the instance is live (retire joins this thread first); the call blocks
                // at most `timeout_ms`.
                let running = unsafe { (functions.hold)(instance.0, u32::from(on), timeout_ms) };
                reports.send(&HostReport::Held { writes_running: running }, b"", Vec::new());
            });
        match holder {
            Ok(thread) => self.holder = Some(thread),
            Err(_) => {
                // SAFETY: as above, on this thread.
                let running = unsafe { (functions.hold)(instance.0, u32::from(on), timeout_ms) };
                self.state.reports.send(
                    &HostReport::Held { writes_running: running },
                    b"",
                    Vec::new(),
                );
            }
        }
    }

    fn export(&mut self, request: u64) {
        let reports = self.state.reports.clone();
        let Some(loaded) = &self.loaded else {
            reports.send(
                &HostReport::StateExported { request, bytes: 0, export_ms: 0.0 },
                b"",
                Vec::new(),
            );
            return;
        };
        let (functions, instance) = (loaded.functions, SendInstance(loaded.instance));
        let thread_reports = reports.clone();
        let exported = self.exporter.run(move || {
            let reports = thread_reports;
            let instance = instance;
            let clock = Instant::now();
            let mut out = OwnedBuffer::EMPTY;
            // SAFETY: the instance is live (retire waits for this thread); `out` is
            // writable.
            let code = unsafe { (functions.export_state)(instance.0, &mut out) };
            // SAFETY: the buffer comes from the library and is freed right after use.
            let bytes = unsafe { out.as_bytes() };
            let report = if code != status::OK {
                let message = String::from_utf8_lossy(bytes).into_owned();
                HostReport::ExportFailed { request, message }
            } else if bytes.is_empty() {
                HostReport::StateExported { request, bytes: 0, export_ms: millis(clock.elapsed()) }
            } else {
                match sealed_memfd(bytes) {
                    Ok(file) => {
                        let length = bytes.len() as u64;
                        // SAFETY: freed once, by the library that allocated it.
                        unsafe { (functions.free_buffer)(out) };
                        reports.send(
                            &HostReport::StateExported {
                                request,
                                bytes: length,
                                export_ms: millis(clock.elapsed()),
                            },
                            b"",
                            vec![OwnedFd::from(file)],
                        );
                        return;
                    }
                    Err(error) => HostReport::ExportFailed {
                        request,
                        message: format!("cannot hand the state over: {error}"),
                    },
                }
            };
            // SAFETY: as above.
            unsafe { (functions.free_buffer)(out) };
            reports.send(&report, b"", Vec::new());
        });
        if !exported {
            reports.send(
                &HostReport::ExportFailed {
                    request,
                    message: "the host's export thread is gone".to_owned(),
                },
                b"",
                Vec::new(),
            );
        }
    }

    /// Answers what is stuck, stops the app (at most `grace`), says so, and exits.
    fn retire(&mut self, grace: Duration) -> ! {
        let state = self.state;
        let mut report = HostReport::Retiring { clean: true, message: None };
        if let Some(loaded) = self.loaded.take() {
            let cut = state.requests.cut_stuck(loaded.generation);
            if cut > 0 {
                state.counters.get().cut.fetch_add(cut, Ordering::Relaxed);
                state.reports.send(&HostReport::RequestsCut { count: cut }, b"", Vec::new());
            }
            if let Some(holder) = self.holder.take() {
                // Bounded by the hold's own timeout.
                let _ = holder.join();
            }
            let exported = self.exporter.wait_idle(EXPORT_WAIT_AT_RETIRE);
            report = if !exported {
                HostReport::Retiring {
                    clean: false,
                    message: Some("a state export was still running".to_owned()),
                }
            } else {
                shutdown(loaded, grace)
            };
        }
        state.reports.send(&report, b"", Vec::new());
        // Give the writer a moment to send what is queued; the daemon ends us anyway.
        std::thread::sleep(Duration::from_millis(20));
        let _ = std::io::stderr().flush();
        let _ = std::io::stdout().flush();
        // SAFETY: ends the process at once, without running the library's destructors.
        unsafe { libc::_exit(0) }
    }
}

/// Calls the library's `shutdown` on a thread of its own, waiting at most `grace` (+ a margin).
fn shutdown(loaded: Loaded, grace: Duration) -> HostReport {
    let (functions, instance) = (loaded.functions, SendInstance(loaded.instance));
    let (done, finished) = std::sync::mpsc::channel();
    let timeout_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    let spawned =
        std::thread::Builder::new().name("hotswap-host-shutdown".into()).spawn(move || {
            let instance = instance;
            let mut message = OwnedBuffer::EMPTY;
            // SAFETY: the instance is live and used for the last time; no other call runs.
            let code = unsafe { (functions.shutdown)(instance.0, timeout_ms, &mut message) };
            let _ = done.send((code, take_message(&functions, message)));
        });
    if spawned.is_err() {
        return HostReport::Retiring {
            clean: false,
            message: Some("cannot start the shutdown thread".to_owned()),
        };
    }
    match finished.recv_timeout(grace + Duration::from_millis(500)) {
        Ok((status::OK, _)) => HostReport::Retiring { clean: true, message: None },
        Ok((_, message)) => HostReport::Retiring { clean: false, message: Some(message) },
        Err(_) => HostReport::Retiring {
            clean: false,
            message: Some(format!(
                "the app did not stop within {} ms (a thread that never returns?)",
                grace.as_millis()
            )),
        },
    }
}

/// The thread that exports the state, started with the host: one started when the swap asks
/// for the state would cost the swap a few hundred microseconds on a busy machine. Exports run
/// one at a time, in the order asked (the daemon never asks for two at once).
struct Exporter {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
    /// Exports asked for and not finished.
    unfinished: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Exporter {
    fn start() -> std::io::Result<Self> {
        let (jobs, received) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let unfinished = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = unfinished.clone();
        std::thread::Builder::new().name("hotswap-host-export".into()).spawn(move || {
            /// Counts the job done however it ends (a panic ends the thread too).
            struct Done<'c>(&'c std::sync::atomic::AtomicU64);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            while let Ok(job) = received.recv() {
                let _done = Done(&counted);
                job();
            }
        })?;
        Ok(Self { jobs, unfinished })
    }

    /// Runs `job` on the export thread; false when that thread is gone.
    fn run(&self, job: impl FnOnce() + Send + 'static) -> bool {
        self.unfinished.fetch_add(1, Ordering::SeqCst);
        let sent = self.jobs.send(Box::new(job)).is_ok();
        if !sent {
            self.unfinished.fetch_sub(1, Ordering::SeqCst);
        }
        sent
    }

    /// Waits at most `limit` until no export runs; false when one still does.
    fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.unfinished.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// The state bytes in a sealed memfd: the daemon keeps it as the snapshot and the next host maps
/// it, so a large state is copied once, not through the socket twice.
fn sealed_memfd(bytes: &[u8]) -> std::io::Result<std::fs::File> {
    use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, memfd_create};
    let descriptor =
        memfd_create("hotswap-state", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut file = std::fs::File::from(descriptor);
    file.write_all(bytes)?;
    fcntl_add_seals(
        &file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(file)
}

/// Copies a library buffer into a `String` and gives the buffer back.
fn take_message(functions: &HandlerFunctions, buffer: OwnedBuffer) -> String {
    // SAFETY: the buffer comes from the library and is freed right after.
    let text = String::from_utf8_lossy(unsafe { buffer.as_bytes() }).into_owned();
    // SAFETY: a buffer is freed once, by the library that allocated it.
    unsafe { (functions.free_buffer)(buffer) };
    text
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
