//! One generation inside the library: its runtime, its app, and the host's callbacks.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Handler, Request, Response};
use crate::abi::{ByteSlice, HostCallbacks, InitConfig, RequestInfo, request_outcome};

/// The host's callbacks. The host guarantees they may be called from any thread of the
/// generation for as long as its process lives.
#[derive(Clone, Copy)]
pub(crate) struct Host(HostCallbacks);

// SAFETY: the ABI contract makes the callbacks and their context usable from every thread of the
// library; the struct is plain data (function pointers and an opaque pointer the host owns).
unsafe impl Send for Host {}
// SAFETY: as above; the callbacks synchronise internally.
unsafe impl Sync for Host {}

impl Host {
    pub(crate) fn new(callbacks: HostCallbacks) -> Self {
        Self(callbacks)
    }

    pub(crate) fn log(&self, level: u32, target: &str, message: &str) {
        // SAFETY: per the ABI, callbacks are valid while the process lives, and the slices live
        // for the duration of the call.
        unsafe {
            (self.0.log)(
                self.0.context,
                level,
                ByteSlice::new(target.as_bytes()),
                ByteSlice::new(message.as_bytes()),
            )
        }
    }

    pub(crate) fn panicked(&self, message: &str, location: &str) {
        // SAFETY: as in `log`.
        unsafe {
            (self.0.panicked)(
                self.0.context,
                ByteSlice::new(message.as_bytes()),
                ByteSlice::new(location.as_bytes()),
            )
        }
    }

    /// Gives a connection back to the host (which then owns the socket).
    pub(crate) fn return_connection(&self, socket: i64, unread: &[u8]) {
        // SAFETY: as in `log`; ownership of the socket passes to the host.
        unsafe { (self.0.return_connection)(self.0.context, socket, ByteSlice::new(unread)) }
    }

    /// Reports a connection as open until the guard is dropped.
    pub(crate) fn connection(&self) -> CountGuard {
        // SAFETY: as in `log`.
        unsafe { (self.0.connection_opened)(self.0.context) };
        CountGuard { host: *self, closed: self.0.connection_closed }
    }

    /// Reports a long-lived stream (an upgraded connection, a streamed response) as open until
    /// the guard is dropped.
    pub(crate) fn stream(&self) -> CountGuard {
        // SAFETY: as in `log`.
        unsafe { (self.0.stream_opened)(self.0.context) };
        CountGuard { host: *self, closed: self.0.stream_closed }
    }

    /// Reports a request as running until the guard is dropped, then its outcome.
    pub(crate) fn request(&self, socket: i64, method: &str, target: &str) -> RequestGuard {
        let info = RequestInfo {
            socket,
            method: ByteSlice::new(method.as_bytes()),
            target: ByteSlice::new(target.as_bytes()),
        };
        // SAFETY: as in `log`; `info` lives for the call.
        let token = unsafe { (self.0.request_started)(self.0.context, &info) };
        RequestGuard { host: *self, token, outcome: request_outcome::ANSWERED }
    }

    pub(crate) fn polling(&self, token: u64, polling: bool) {
        // SAFETY: as in `log`; the token came from `request_started` and is not finished.
        unsafe { (self.0.request_polling)(self.0.context, token, u32::from(polling)) }
    }

    /// False when the host has answered the request itself (and closed its connection).
    pub(crate) fn response_started(&self, token: u64) -> bool {
        // SAFETY: as in `polling`.
        let permit = unsafe { (self.0.response_started)(self.0.context, token) };
        permit == crate::abi::response_permit::SEND
    }

    pub(crate) fn thread_started(&self) {
        // SAFETY: as in `log`; called on the new thread.
        unsafe { (self.0.thread_started)(self.0.context) }
    }

    pub(crate) fn thread_stopped(&self) {
        // SAFETY: as in `log`; called on the ending thread.
        unsafe { (self.0.thread_stopped)(self.0.context) }
    }
}

/// Calls the matching "closed" callback when dropped.
pub(crate) struct CountGuard {
    host: Host,
    closed: unsafe extern "C" fn(context: *const std::ffi::c_void),
}

impl Drop for CountGuard {
    fn drop(&mut self) {
        // SAFETY: as in `Host::log`.
        unsafe { (self.closed)(self.host.0.context) };
    }
}

pub(crate) struct RequestGuard {
    host: Host,
    pub(crate) token: u64,
    pub(crate) outcome: u32,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // SAFETY: as in `Host::log`; the token is finished once.
        unsafe { (self.host.0.request_finished)(self.host.0.context, self.token, self.outcome) };
    }
}

/// Where the generation is in its life, as its connections see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Current: keep connections alive.
    Serving,
    /// Replaced: finish what runs, give each connection back at its next request boundary.
    Draining,
    /// The drain timeout passed: answer what still runs with 503 and close.
    Purging,
}

/// Requests that can write, and the hold that keeps them from running while the state moves.
#[derive(Default)]
pub(crate) struct Writes {
    /// Handlers of writing requests running now.
    pub(crate) running: AtomicUsize,
    pub(crate) held: std::sync::atomic::AtomicBool,
    /// Woken when a writing request ends.
    pub(crate) ended: std::sync::Condvar,
    pub(crate) ended_lock: std::sync::Mutex<()>,
    /// Woken when the hold is lifted.
    pub(crate) released: tokio::sync::Notify,
}

impl Writes {
    /// Called by a writing request before its handler runs: waits while held. `Err(())` when
    /// the generation drains meanwhile (the request is then forwarded to the next one).
    pub(crate) async fn enter(&self, phase: &mut watch::Receiver<Phase>) -> Result<(), ()> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            self.running.fetch_add(1, Ordering::SeqCst);
            if !self.held.load(Ordering::SeqCst) {
                return Ok(());
            }
            self.leave();
            tokio::select! {
                () = &mut released => {}
                _ = phase.wait_for(|phase| *phase != Phase::Serving) => return Err(()),
            }
        }
    }

    pub(crate) fn leave(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        let _guard = self.ended_lock.lock();
        self.ended.notify_all();
    }
}

/// What every connection of the generation shares.
pub(crate) struct Shared {
    pub(crate) host: Host,
    pub(crate) max_body_bytes: u64,
    /// A new connection that sends nothing for this long is closed.
    pub(crate) first_byte_timeout: Option<Duration>,
    pub(crate) generation_header: http::HeaderValue,
    pub(crate) phase: watch::Receiver<Phase>,
    /// True once long-lived streams must end (the stream drain timeout passed).
    pub(crate) streams_closing: watch::Receiver<bool>,
    pub(crate) writes: Writes,
    /// Where a request held past this generation's end goes (the daemon's HTTP address).
    pub(crate) forward_address: Option<std::net::SocketAddr>,
    /// Live reload in pages, when the daemon turned it on.
    pub(crate) live_reload: Option<super::live_reload::LiveReload>,
}

/// The app, behind a trait object: everything that serves it (hyper, the connection logic, the
/// generation's runtime) is compiled once, in this crate, not again in every app's crate at every
/// rebuild. Only `Handler::new` and the state's serde code are generic over the app.
pub(crate) trait DynHandler: Send + Sync + 'static {
    fn handle_boxed(&self, request: Request)
    -> Pin<Box<dyn Future<Output = Response> + Send + '_>>;

    /// The app's state as a JSON envelope, or `None` when it keeps none.
    fn export_state_envelope(&self) -> Result<Option<Vec<u8>>, String>;

    /// Whether the app's state can hold data: a zero-sized `State` (`()`, a unit struct) cannot,
    /// so nothing its requests write can be lost to an export.
    fn keeps_state(&self) -> bool;
}

impl<A: Handler> DynHandler for A {
    fn handle_boxed(
        &self,
        request: Request,
    ) -> Pin<Box<dyn Future<Output = Response> + Send + '_>> {
        Box::pin(self.handle(request))
    }

    fn export_state_envelope(&self) -> Result<Option<Vec<u8>>, String> {
        super::state::export(self)
    }

    fn keeps_state(&self) -> bool {
        std::mem::size_of::<A::State>() != 0
    }
}

/// The library's side of one generation; the host holds it as an opaque pointer. Every method but
/// `shutdown` takes `&self`: `export_state` may run on another host thread than the rest.
pub(crate) struct Instance {
    pub(crate) shared: Arc<Shared>,
    pub(crate) runtime: Option<tokio::runtime::Runtime>,
    pub(crate) app: OnceLock<Arc<dyn DynHandler>>,
    pub(crate) phase: watch::Sender<Phase>,
    streams_closing: watch::Sender<bool>,
    live_threads: Arc<AtomicUsize>,
    /// Keeps the forwarding subscriber as the default of the host thread that created it.
    dispatch_guard: Option<tracing::dispatcher::DefaultGuard>,
}

impl Instance {
    /// Builds the generation's runtime.
    pub(crate) fn create(
        config: InitConfig,
        host: Host,
        forward_address: Option<std::net::SocketAddr>,
    ) -> Result<Self, String> {
        super::panics::install_hook(host);
        let (dispatch, filter_warning) = super::logging::dispatch(host, config.max_log_level);
        // The process's default (a generation has its own process); where another instance
        // set it already (tests, the standalone mode), the generation's threads still get it.
        let _ = tracing::dispatcher::set_global_default(dispatch.clone());
        let dispatch_guard = tracing::dispatcher::set_default(&dispatch);
        if let Some(warning) = filter_warning {
            host.log(crate::abi::log_level::WARN, "hotswap", &warning);
        }
        let live_threads = Arc::new(AtomicUsize::new(0));
        let runtime = {
            let started = live_threads.clone();
            let stopped = live_threads.clone();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.worker_threads.max(1) as usize)
                .thread_name(format!("hotswap-g{}", config.generation))
                .enable_all()
                .on_thread_start(move || {
                    host.thread_started();
                    started.fetch_add(1, Ordering::SeqCst);
                    // The thread keeps the subscriber until it exits; the guard must not restore
                    // anything earlier, so it is deliberately not dropped.
                    std::mem::forget(tracing::dispatcher::set_default(&dispatch));
                })
                .on_thread_stop(move || {
                    stopped.fetch_sub(1, Ordering::SeqCst);
                    host.thread_stopped();
                })
                .build()
                .map_err(|error| format!("cannot start the generation's tokio runtime: {error}"))?
        };
        let (phase, phase_receiver) = watch::channel(Phase::Serving);
        let (streams_closing, streams_closing_receiver) = watch::channel(false);
        let generation_header = http::HeaderValue::from(config.generation);
        Ok(Self {
            shared: Arc::new(Shared {
                host,
                max_body_bytes: config.max_body_bytes,
                first_byte_timeout: (config.first_byte_timeout_ms > 0)
                    .then(|| Duration::from_millis(config.first_byte_timeout_ms)),
                generation_header,
                phase: phase_receiver,
                streams_closing: streams_closing_receiver,
                writes: Writes::default(),
                forward_address,
                live_reload: super::live_reload::LiveReload::from_environment(config.generation),
            }),
            runtime: Some(runtime),
            app: OnceLock::new(),
            phase,
            streams_closing,
            live_threads,
            dispatch_guard: Some(dispatch_guard),
        })
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until shutdown")
    }

    /// Serves a connection handed over by the host, starting with `unread` bytes.
    pub(crate) fn serve(&self, stream: std::net::TcpStream, unread: bytes::Bytes) -> bool {
        let Some(app) = self.app.get().cloned() else { return false };
        let shared = self.shared.clone();
        self.runtime().spawn(super::http_service::serve_connection(stream, unread, app, shared));
        true
    }

    /// Starts draining: connections go back to the host at their next request boundary, after
    /// `purge_after` the requests still running are answered 503, and after `streams_after`
    /// long-lived streams end.
    pub(crate) fn begin_drain(&self, purge_after: Duration, streams_after: Duration) {
        self.phase.send_replace(Phase::Draining);
        let phase = self.phase.clone();
        let streams_closing = self.streams_closing.clone();
        self.runtime().spawn(async move {
            tokio::time::sleep(purge_after).await;
            phase.send_replace(Phase::Purging);
        });
        self.runtime().spawn(async move {
            tokio::time::sleep(streams_after).await;
            streams_closing.send_replace(true);
        });
    }

    /// Holds (or releases) the requests that can write; with `on`, waits until none runs or
    /// `timeout` passes, and returns how many still run. An app without state is never held.
    pub(crate) fn hold(&self, on: bool, timeout: Duration) -> usize {
        // An app whose state holds nothing (its data lives in a database, say) loses no write
        // to the export: its writes go on while the next generation sets up.
        if on && self.app.get().is_some_and(|app| !app.keeps_state()) {
            return 0;
        }
        let writes = &self.shared.writes;
        writes.held.store(on, Ordering::SeqCst);
        if !on {
            writes.released.notify_waiters();
            return 0;
        }
        let deadline = Instant::now() + timeout;
        let mut guard = writes.ended_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            let running = writes.running.load(Ordering::SeqCst);
            let now = Instant::now();
            if running == 0 || now >= deadline {
                return running;
            }
            guard = writes
                .ended
                .wait_timeout(guard, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    /// Drops the app, stops the runtime and joins its threads. `Err` when threads are still
    /// running after `timeout`.
    pub(crate) fn shutdown(mut self, timeout: Duration) -> Result<(), String> {
        let runtime = self.runtime.take().expect("shutdown runs once");
        {
            let _context = runtime.enter();
            self.app.take();
        }
        let started = Instant::now();
        runtime.shutdown_timeout(timeout);
        let elapsed = started.elapsed();
        super::panics::remove_hook();
        drop(self.dispatch_guard.take());
        let live = self.live_threads.load(Ordering::SeqCst);
        if live > 0 || elapsed >= timeout {
            return Err(format!(
                "{live} runtime thread(s) still running {} ms after shutdown began \
                 (a blocking call that never returns?)",
                elapsed.as_millis()
            ));
        }
        Ok(())
    }
}
