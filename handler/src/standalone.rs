//! Serve a [`Handler`] from an ordinary binary, without hotswap: the same app in production, in a
//! container, or as the baseline hotswap is measured against.
//!
//! The app is served exactly as a hotswap generation serves it: the same tokio runtime set-up,
//! the same HTTP/1.1 serving with hyper (body limit, panic-to-500, graceful drain), reached
//! through the same C function table the daemon calls after `dlopen`. Only the hot-swap machinery
//! is missing: there is one generation, linked into the binary, and the host callbacks (logs,
//! panics, counters) are local functions that write to stderr and count connections.
//!
//! A binary reuses the handler crate's source (a `cdylib` cannot be linked into a binary), for
//! example with a `#[path]` module:
//!
//! ```no_run
//! # mod app { pub struct Hello; impl hotswap_handler::Handler for Hello { type State = ();
//! #     fn new((): ()) -> Self { Hello }
//! #     async fn handle(&self, _request: hotswap_handler::Request) -> hotswap_handler::Response {
//! #         hotswap_handler::Response::new("hello\n".into()) } } }
//! // src/main.rs of a binary crate next to the handler crate (feature `standalone`):
//! // #[path = "../../hello/src/lib.rs"]
//! // mod app;
//! use hotswap_handler::standalone::{self, ServeOptions};
//!
//! fn main() -> std::io::Result<()> {
//!     let listener = standalone::listener("127.0.0.1:3000")?;
//!     standalone::serve::<app::Hello>(listener, &ServeOptions::default())
//! }
//! ```
//!
//! Differences from `hotswap serve` worth knowing: the app starts with `State::default()` (there
//! is no previous generation), responses carry `hotswap-generation: 0`, and `tracing` records from
//! handler code are written to stderr as `LEVEL target: message` (the runtime threads and the
//! serving thread use that subscriber, as a generation's do). While it serves, the SDK's panic hook
//! replaces the process's: a handler panic is written to stderr and answered 500; when serving
//! ends, the default hook is back. Call these functions from a plain `fn main`, not from inside a
//! tokio runtime: the app gets a runtime of its own.

use std::ffi::c_void;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::{TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Handler;
use crate::abi::{
    ByteSlice, HandlerFunctions, HostCallbacks, InitConfig, InitResult, OwnedBuffer, RequestInfo,
    log_level, response_permit, state_policy, status,
};

/// How long purged connections get to write their 503s (the SDK's grace), plus a margin.
const PURGE_GRACE: Duration = Duration::from_secs(2);

/// Settings of a standalone server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Worker threads of the app's tokio runtime; default: the number of CPUs.
    pub worker_threads: u32,
    /// Request bodies stream to the handler; beyond this many bytes they are answered 413 (a
    /// declared length) or cut (a stream). Default 0: no limit (the app's own applies), as in
    /// `hotswap.toml`.
    pub max_body_bytes: u64,
    /// The most verbose [`log_level`] of handler `tracing` records written to stderr; default
    /// `INFO`.
    pub max_log_level: u32,
    /// After shutdown is asked for, how long requests still running may take before they are
    /// answered 503; default 5 s.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            worker_threads: std::thread::available_parallelism()
                .map_or(2, |count| u32::try_from(count.get()).unwrap_or(2)),
            max_body_bytes: 0,
            max_log_level: log_level::INFO,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// The listening socket a supervisor passed to this process with the systemd protocol
/// (`LISTEN_FDS`, as `systemd` socket activation, `systemfd` and `watchexec --socket` do: restarts
/// then refuse no connection), else a new socket bound to `address`.
pub fn listener(address: impl ToSocketAddrs) -> io::Result<TcpListener> {
    #[cfg(unix)]
    if let Some(listener) = inherited_listener()? {
        return Ok(listener);
    }
    TcpListener::bind(address)
}

/// The first socket passed with `LISTEN_FDS` (file descriptor 3), once per process.
#[cfg(unix)]
fn inherited_listener() -> io::Result<Option<TcpListener>> {
    use std::os::fd::FromRawFd;
    use std::sync::atomic::AtomicBool;

    /// Descriptor 3 can be owned once; a second call binds a socket of its own.
    static TAKEN: AtomicBool = AtomicBool::new(false);

    let Ok(count) = std::env::var("LISTEN_FDS") else { return Ok(None) };
    if count.trim().parse::<u32>().unwrap_or(0) == 0 {
        return Ok(None);
    }
    if let Ok(pid) = std::env::var("LISTEN_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        // Meant for another process (a parent that did not clear its environment).
        return Ok(None);
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    // SAFETY: under the systemd protocol, LISTEN_FDS ≥ 1 means descriptor 3 is an open socket
    // handed to this process, and `TAKEN` makes this the only owner in the process.
    let listener = unsafe { TcpListener::from_raw_fd(3) };
    match listener.local_addr() {
        Ok(_) => Ok(Some(listener)),
        Err(error) => {
            // Not a TCP listener: leave the descriptor to whoever it belongs to.
            std::mem::forget(listener);
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("LISTEN_FDS is set but descriptor 3 is not a TCP socket: {error}"),
            ))
        }
    }
}

/// Serves `A` on `listener` until the process ends. Blocks the calling thread.
pub fn serve<A: Handler>(listener: TcpListener, options: &ServeOptions) -> io::Result<()> {
    serve_until::<A>(listener, options, std::future::pending())
}

/// Serves `A` on `listener` until `shutdown` completes, then stops gracefully: the listener is
/// closed, requests in flight finish (their responses say `connection: close`, and those still
/// running after [`ServeOptions::drain_timeout`] are answered 503), idle keep-alive connections
/// are closed, and the app's runtime is shut down. Blocks the calling thread.
///
/// `shutdown` is polled on a small runtime of the caller's thread with IO and time enabled, so it
/// may be a timer or a tokio signal (`tokio::signal::unix::signal`, with tokio's `signal`
/// feature in the binary).
pub fn serve_until<A: Handler>(
    listener: TcpListener,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "hotswap_handler::standalone serves from a plain `fn main` (or a thread of its own): \
             it starts the app's runtime itself and cannot run inside another tokio runtime",
        ));
    }
    // Production: pages are served as the app made them.
    crate::sdk::forbid_live_reload();
    let functions = crate::sdk::entry::header::<A>().functions;
    let accept_runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    listener.set_nonblocking(true)?;
    let listener = {
        let _context = accept_runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let host = Box::into_raw(Box::new(StandaloneHost::default()));
    let callbacks = host_callbacks(host);
    let generation = match LinkedGeneration::start(functions, options, &callbacks) {
        Ok(generation) => generation,
        Err(error) => {
            // SAFETY: the library's runtime is not running (init or start failed and the
            // instance was shut down), so nothing uses the host any more.
            drop(unsafe { Box::from_raw(host) });
            return Err(error);
        }
    };
    let served = accept_runtime.block_on(accept_until(&listener, &generation, shutdown));
    drop(listener);
    // SAFETY: `host` lives until the generation is shut down below.
    generation.drain(options.drain_timeout, unsafe { &*host });
    let stopped = generation.shutdown(options.drain_timeout);
    if stopped.is_ok() {
        // SAFETY: shutdown joined every runtime thread: nothing calls back into the host.
        drop(unsafe { Box::from_raw(host) });
    }
    // Otherwise threads may still call the host: it stays allocated.
    served.and(stopped)
}

/// Hands every accepted connection to the generation until `shutdown` completes.
async fn accept_until(
    listener: &tokio::net::TcpListener,
    generation: &LinkedGeneration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        match accepted.and_then(|(stream, _)| stream.into_std()) {
            Ok(stream) => generation.serve_connection(stream),
            Err(error) => {
                // Out of descriptors, or a connection reset before it was accepted: keep serving.
                let _ = writeln!(io::stderr(), "hotswap standalone: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The app's one generation, reached through the same function table the daemon uses. Every
/// call is made from the thread that called `serve_until`, as the ABI requires.
struct LinkedGeneration {
    functions: HandlerFunctions,
    instance: *mut c_void,
}

impl LinkedGeneration {
    /// Starts the app's runtime (`init`) and creates the app with its default state (`start`).
    fn start(
        functions: HandlerFunctions,
        options: &ServeOptions,
        callbacks: &HostCallbacks,
    ) -> io::Result<Self> {
        let config = InitConfig {
            generation: 0,
            worker_threads: options.worker_threads.max(1),
            max_log_level: options.max_log_level,
            max_body_bytes: options.max_body_bytes,
            first_byte_timeout_ms: 0,
            forward_address: ByteSlice::EMPTY,
        };
        let mut result = InitResult {
            status: status::FAILED,
            instance: std::ptr::null_mut(),
            message: OwnedBuffer::EMPTY,
        };
        // SAFETY: the pointers are valid for the call; `callbacks` and its context outlive the
        // generation (see `serve_until`).
        unsafe { (functions.init)(&config, callbacks, &mut result) };
        if result.status != status::OK {
            let message = take_message(&functions, result.message);
            return Err(io::Error::other(format!("cannot start the app's runtime: {message}")));
        }
        let generation = Self { functions, instance: result.instance };
        let mut message = OwnedBuffer::EMPTY;
        // SAFETY: `instance` comes from `init`; empty state bytes mean "no previous state".
        let started = unsafe {
            (functions.start)(
                generation.instance,
                ByteSlice::EMPTY,
                state_policy::FRESH,
                &mut message,
            )
        };
        let message = take_message(&functions, message);
        if started != status::OK && started != status::STARTED_FRESH {
            let _ = generation.shutdown(Duration::from_secs(5));
            return Err(io::Error::other(format!("the app did not start: {message}")));
        }
        Ok(generation)
    }

    fn serve_connection(&self, stream: std::net::TcpStream) {
        // SAFETY: `instance` is live until `shutdown`; ownership of the socket passes to the
        // library, which closes it on failure.
        unsafe {
            (self.functions.serve_connection)(
                self.instance,
                socket_handle(stream),
                ByteSlice::EMPTY,
            )
        };
    }

    /// Asks the app to drain and waits until its connections are closed (or the drain timeout
    /// and the purge grace are over).
    fn drain(&self, drain_timeout: Duration, host: &StandaloneHost) {
        let purge_after_ms = u64::try_from(drain_timeout.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: `instance` is live until `shutdown`.
        unsafe { (self.functions.begin_drain)(self.instance, purge_after_ms, purge_after_ms) };
        let deadline = Instant::now() + drain_timeout + PURGE_GRACE;
        while host.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Drops the app and stops its runtime, joining its threads.
    fn shutdown(self, timeout: Duration) -> io::Result<()> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let mut message = OwnedBuffer::EMPTY;
        // SAFETY: `instance` comes from `init` and is not used after this call.
        let stopped = unsafe { (self.functions.shutdown)(self.instance, timeout_ms, &mut message) };
        let message = take_message(&self.functions, message);
        if stopped == status::OK {
            Ok(())
        } else {
            Err(io::Error::other(format!("the app's runtime did not stop cleanly: {message}")))
        }
    }
}

/// The text of a buffer the library allocated, which is then freed.
fn take_message(functions: &HandlerFunctions, buffer: OwnedBuffer) -> String {
    // SAFETY: the buffer comes from the library and is freed right after being read.
    let text = String::from_utf8_lossy(unsafe { buffer.as_bytes() }).into_owned();
    // SAFETY: as above; the buffer is not used again.
    unsafe { (functions.free_buffer)(buffer) };
    text
}

#[cfg(unix)]
fn socket_handle(stream: std::net::TcpStream) -> i64 {
    use std::os::fd::IntoRawFd;
    i64::from(stream.into_raw_fd())
}

#[cfg(windows)]
fn socket_handle(stream: std::net::TcpStream) -> i64 {
    use std::os::windows::io::IntoRawSocket;
    stream.into_raw_socket() as i64
}

/// What the host callbacks keep: the open connections, for a graceful shutdown.
#[derive(Default)]
struct StandaloneHost {
    connections: AtomicU64,
}

fn host_callbacks(host: *const StandaloneHost) -> HostCallbacks {
    HostCallbacks {
        context: host.cast(),
        log: write_log,
        panicked: write_panic,
        connection_opened: count_connection_opened,
        connection_closed: count_connection_closed,
        request_started: ignore_request_started,
        request_polling: ignore_request_polling,
        response_started: send_every_response,
        request_finished: ignore_request_finished,
        stream_opened: ignore,
        stream_closed: ignore,
        thread_started: ignore,
        thread_stopped: ignore,
        return_connection: close_returned_connection,
    }
}

/// # Safety
/// `context` is a live `StandaloneHost`, as the ABI guarantees for every callback.
unsafe fn host<'a>(context: *const c_void) -> &'a StandaloneHost {
    // SAFETY: guaranteed by the caller.
    unsafe { &*context.cast::<StandaloneHost>() }
}

unsafe extern "C" fn write_log(
    _context: *const c_void,
    level: u32,
    target: ByteSlice,
    message: ByteSlice,
) {
    let level = match level {
        log_level::ERROR => "ERROR",
        log_level::WARN => "WARN",
        log_level::INFO => "INFO",
        log_level::DEBUG => "DEBUG",
        _ => "TRACE",
    };
    // SAFETY: the slices live for the duration of the call.
    let (target, message) = unsafe { (target.as_bytes(), message.as_bytes()) };
    let _ = writeln!(
        io::stderr(),
        "{level} {}: {}",
        String::from_utf8_lossy(target),
        String::from_utf8_lossy(message)
    );
}

unsafe extern "C" fn write_panic(_context: *const c_void, message: ByteSlice, location: ByteSlice) {
    // SAFETY: the slices live for the duration of the call.
    let (message, location) = unsafe { (message.as_bytes(), location.as_bytes()) };
    let _ = writeln!(
        io::stderr(),
        "the handler panicked at {}: {} (the client got a 500)",
        String::from_utf8_lossy(location),
        String::from_utf8_lossy(message)
    );
}

unsafe extern "C" fn count_connection_opened(context: *const c_void) {
    // SAFETY: the ABI passes back the context given at init.
    unsafe { host(context) }.connections.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn count_connection_closed(context: *const c_void) {
    // SAFETY: as above.
    unsafe { host(context) }.connections.fetch_sub(1, Ordering::SeqCst);
}

unsafe extern "C" fn ignore_request_started(
    _context: *const c_void,
    _request: *const RequestInfo,
) -> u64 {
    0
}

unsafe extern "C" fn ignore_request_polling(_context: *const c_void, _token: u64, _polling: u32) {}

/// A standalone server never answers a request itself: the app's responses always go out.
unsafe extern "C" fn send_every_response(_context: *const c_void, _token: u64) -> u32 {
    response_permit::SEND
}

unsafe extern "C" fn ignore_request_finished(_context: *const c_void, _token: u64, _outcome: u32) {}

unsafe extern "C" fn ignore(_context: *const c_void) {}

/// A draining app gives idle connections back at a request boundary; with no next generation to
/// pass them to, the host closes them.
unsafe extern "C" fn close_returned_connection(
    _context: *const c_void,
    socket: i64,
    _unread: ByteSlice,
) {
    #[cfg(unix)]
    {
        use std::os::fd::{FromRawFd, OwnedFd, RawFd};
        // SAFETY: the library hands over ownership of an open socket descriptor.
        drop(unsafe { OwnedFd::from_raw_fd(socket as RawFd) });
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::{FromRawSocket, OwnedSocket};
        // SAFETY: the library hands over ownership of an open socket.
        drop(unsafe { OwnedSocket::from_raw_socket(socket as u64) });
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::{Body, Request, Response};

    struct Greeter;

    impl Handler for Greeter {
        type State = ();

        fn new((): ()) -> Self {
            Greeter
        }

        async fn handle(&self, request: Request) -> Response {
            Response::new(Body::from(format!("hello {}\n", request.uri().path())))
        }
    }

    fn options() -> ServeOptions {
        ServeOptions {
            worker_threads: 1,
            drain_timeout: Duration::from_secs(2),
            ..ServeOptions::default()
        }
    }

    /// Reads from `stream` until what was read ends with `suffix`.
    fn read_until_ends_with(stream: &mut std::net::TcpStream, suffix: &str) -> String {
        let mut text = Vec::new();
        let mut buffer = [0u8; 4096];
        while !text.ends_with(suffix.as_bytes()) {
            let read = stream.read(&mut buffer).expect("the server answers");
            assert!(read > 0, "closed before {suffix:?}: {}", String::from_utf8_lossy(&text));
            text.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8(text).expect("UTF-8")
    }

    #[test]
    fn serves_a_handler_and_stops_gracefully() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            serve_until::<Greeter>(listener, &options(), async {
                let _ = stopped.await;
            })
        });

        let mut first = std::net::TcpStream::connect(address).unwrap();
        first.write_all(b"GET /world HTTP/1.1\r\nhost: localhost\r\n\r\n").unwrap();
        let response = read_until_ends_with(&mut first, "hello /world\n");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("hotswap-generation: 0"), "{response}");

        // The connection is kept alive: a second request on it is answered too.
        first.write_all(b"GET /again HTTP/1.1\r\nhost: localhost\r\n\r\n").unwrap();
        read_until_ends_with(&mut first, "hello /again\n");

        // Stopping closes the idle keep-alive connection and returns.
        stop.send(()).unwrap();
        server.join().unwrap().unwrap();
        let mut rest = Vec::new();
        let closed = first.read_to_end(&mut rest);
        assert!(closed.is_err() || rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }

    #[test]
    fn refuses_to_run_inside_a_tokio_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let error = runtime
            .block_on(async { serve::<Greeter>(listener, &ServeOptions::default()) })
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
