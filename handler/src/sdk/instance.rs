//! One generation inside the library: its runtime, its app, and the host's callbacks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use std::future::Future;
use std::pin::Pin;

use super::logging::ForwardingSubscriber;
use super::{Handler, Request, Response};
use crate::abi::{ByteSlice, HostCallbacks, InitConfig, request_outcome};

/// The host's callbacks. The host guarantees they may be called from any thread of the
/// generation until `shutdown` returns.
#[derive(Clone, Copy)]
pub(crate) struct Host(HostCallbacks);

// SAFETY: the ABI contract makes the callbacks and their context usable from every generation
// thread; the struct is plain data (function pointers and an opaque pointer the host owns).
unsafe impl Send for Host {}
// SAFETY: as above; the callbacks synchronise internally.
unsafe impl Sync for Host {}

impl Host {
    pub(crate) fn new(callbacks: HostCallbacks) -> Self {
        Self(callbacks)
    }

    pub(crate) fn log(&self, level: u32, target: &str, message: &str) {
        // SAFETY: per the ABI, callbacks are valid until shutdown returns, and the slices live
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
    pub(crate) fn connection(&self) -> ConnectionGuard {
        // SAFETY: as in `log`.
        unsafe { (self.0.connection_opened)(self.0.context) };
        ConnectionGuard { host: *self }
    }

    /// Reports a request as running until the guard is dropped, then its outcome.
    pub(crate) fn request(&self) -> RequestGuard {
        // SAFETY: as in `log`.
        unsafe { (self.0.request_started)(self.0.context) };
        RequestGuard { host: *self, outcome: request_outcome::ANSWERED }
    }
}

pub(crate) struct ConnectionGuard {
    host: Host,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        // SAFETY: as in `Host::log`.
        unsafe { (self.host.0.connection_closed)(self.host.0.context) };
    }
}

pub(crate) struct RequestGuard {
    host: Host,
    pub(crate) outcome: u32,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // SAFETY: as in `Host::log`.
        unsafe { (self.host.0.request_finished)(self.host.0.context, self.outcome) };
    }
}

/// Where the generation is in its life, as its connections see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Current: keep connections alive.
    Serving,
    /// Replaced: finish what runs, close connections when their response is done.
    Draining,
    /// The drain timeout passed: answer what still runs with 503 and close.
    Purging,
}

/// What every connection of the generation shares.
pub(crate) struct Shared {
    pub(crate) host: Host,
    pub(crate) max_body_bytes: u64,
    pub(crate) generation_header: http::HeaderValue,
    pub(crate) phase: watch::Receiver<Phase>,
}

/// The app, behind a trait object: everything that serves it (hyper, the connection logic, the
/// generation's runtime) is compiled once, in this crate, not again in every app's crate at every
/// rebuild. Only `Handler::new` and the state's serde code are generic over the app.
pub(crate) trait DynHandler: Send + Sync + 'static {
    fn handle_boxed(&self, request: Request)
    -> Pin<Box<dyn Future<Output = Response> + Send + '_>>;

    /// The app's state as a JSON envelope, or `None` when it keeps none.
    fn export_state_envelope(&self) -> Result<Option<Vec<u8>>, String>;
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
}

/// The library's side of one generation; the host holds it as an opaque pointer.
pub(crate) struct Instance {
    pub(crate) shared: Arc<Shared>,
    pub(crate) runtime: Option<tokio::runtime::Runtime>,
    pub(crate) app: Option<Arc<dyn DynHandler>>,
    pub(crate) phase: watch::Sender<Phase>,
    live_threads: Arc<AtomicUsize>,
    /// Keeps the forwarding subscriber as the default of the generation thread.
    dispatch_guard: Option<tracing::dispatcher::DefaultGuard>,
}

impl Instance {
    /// Builds the generation's runtime. Runs on the generation thread.
    pub(crate) fn create(config: InitConfig, host: Host) -> Result<Self, String> {
        super::panics::install_hook(host);
        let dispatch =
            tracing::Dispatch::new(ForwardingSubscriber::new(host, config.max_log_level));
        let dispatch_guard = tracing::dispatcher::set_default(&dispatch);
        let live_threads = Arc::new(AtomicUsize::new(0));
        let runtime = {
            let started = live_threads.clone();
            let stopped = live_threads.clone();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.worker_threads.max(1) as usize)
                .thread_name(format!("hotswap-g{}", config.generation))
                .enable_all()
                .on_thread_start(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    // The thread keeps the subscriber until it exits; the guard must not restore
                    // anything earlier, so it is deliberately not dropped.
                    std::mem::forget(tracing::dispatcher::set_default(&dispatch));
                })
                .on_thread_stop(move || {
                    stopped.fetch_sub(1, Ordering::SeqCst);
                })
                .build()
                .map_err(|error| format!("cannot start the generation's tokio runtime: {error}"))?
        };
        let (phase, phase_receiver) = watch::channel(Phase::Serving);
        let generation_header = http::HeaderValue::from(config.generation);
        Ok(Self {
            shared: Arc::new(Shared {
                host,
                max_body_bytes: config.max_body_bytes,
                generation_header,
                phase: phase_receiver,
            }),
            runtime: Some(runtime),
            app: None,
            phase,
            live_threads,
            dispatch_guard: Some(dispatch_guard),
        })
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until shutdown")
    }

    /// Serves a connection handed over by the host, starting with `unread` bytes.
    pub(crate) fn serve(&self, stream: std::net::TcpStream, unread: bytes::Bytes) -> bool {
        let Some(app) = self.app.clone() else { return false };
        let shared = self.shared.clone();
        self.runtime().spawn(super::http_service::serve_connection(stream, unread, app, shared));
        true
    }

    /// Starts draining: connections stop being kept alive, and after `purge_after` the requests
    /// still running are answered 503.
    pub(crate) fn begin_drain(&self, purge_after: Duration) {
        self.phase.send_replace(Phase::Draining);
        let phase = self.phase.clone();
        self.runtime().spawn(async move {
            tokio::time::sleep(purge_after).await;
            phase.send_replace(Phase::Purging);
        });
    }

    /// Drops the app, stops the runtime and joins its threads. `Err` when threads are still
    /// running after `timeout`: the library must then stay loaded.
    pub(crate) fn shutdown(mut self, timeout: Duration) -> Result<(), String> {
        let runtime = self.runtime.take().expect("shutdown runs once");
        {
            let _context = runtime.enter();
            self.app = None;
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
