//! The host's side of the ABI's callback table: counters in the shared page, logs and panics sent
//! as reports, requests tracked for crash reports and the purge, connections given back.

use std::ffi::c_void;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hotswap_handler::abi::{ByteSlice, HostCallbacks, RequestInfo, log_level, response_permit};
use hotswap_protocol::control::{HostReport, SharedCounters, bounded_message};
use hotswap_protocol::events::LogLevel;

use crate::channel::ReportSender;
use crate::fatal;
use crate::requests::Requests;

/// Everything the callbacks reach, alive for the rest of the process.
#[derive(Debug)]
pub(crate) struct HostState {
    pub(crate) counters: SharedCounters,
    pub(crate) reports: ReportSender,
    pub(crate) requests: Requests,
    pub(crate) draining: AtomicBool,
    pub(crate) generation: AtomicU64,
}

impl HostState {
    pub(crate) fn new(counters: SharedCounters, reports: ReportSender) -> Self {
        Self {
            counters,
            reports,
            requests: Requests::default(),
            draining: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    /// The callback table handed to the library.
    pub(crate) fn callbacks(&'static self) -> HostCallbacks {
        HostCallbacks {
            context: std::ptr::from_ref(self).cast(),
            log: on_log,
            panicked: on_panic,
            connection_opened: on_connection_opened,
            connection_closed: on_connection_closed,
            request_started: on_request_started,
            request_polling: on_request_polling,
            response_started: on_response_started,
            request_finished: on_request_finished,
            stream_opened: on_stream_opened,
            stream_closed: on_stream_closed,
            thread_started: on_thread_started,
            thread_stopped: on_thread_stopped,
            return_connection: on_return_connection,
        }
    }

    /// While draining, tells the daemon once nothing is served any more.
    pub(crate) fn report_if_idle(&self) {
        if !self.draining.load(Ordering::SeqCst) {
            return;
        }
        let counters = self.counters.get();
        if counters.connections.load(Ordering::SeqCst) == 0
            && counters.streams.load(Ordering::SeqCst) == 0
        {
            let received = counters.received.load(Ordering::SeqCst);
            self.reports.send(&HostReport::Idle { received }, b"", Vec::new());
        }
    }
}

/// # Safety
/// `context` is the `HostState` the table was made from (it lives for the rest of the process).
unsafe fn state<'a>(context: *const c_void) -> &'a HostState {
    // SAFETY: guaranteed by the caller.
    unsafe { &*context.cast::<HostState>() }
}

/// A callback runs library-side code paths of ours: a panic must not unwind into the library.
fn guarded(body: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
}

fn text(slice: ByteSlice) -> String {
    // SAFETY: per the ABI, the bytes live for the duration of the call.
    String::from_utf8_lossy(unsafe { slice.as_bytes() }).into_owned()
}

unsafe extern "C" fn on_log(
    context: *const c_void,
    level: u32,
    target: ByteSlice,
    message: ByteSlice,
) {
    guarded(|| {
        // SAFETY: per the ABI.
        let state = unsafe { state(context) };
        let level = match level {
            log_level::ERROR => LogLevel::Error,
            log_level::WARN => LogLevel::Warn,
            log_level::INFO => LogLevel::Info,
            log_level::DEBUG => LogLevel::Debug,
            _ => LogLevel::Trace,
        };
        state.reports.offer(&HostReport::Log {
            level,
            target: bounded_message(&text(target)),
            message: bounded_message(&text(message)),
        });
    });
}

unsafe extern "C" fn on_panic(context: *const c_void, message: ByteSlice, location: ByteSlice) {
    guarded(|| {
        // SAFETY: per the ABI.
        let state = unsafe { state(context) };
        state.counters.get().panics.fetch_add(1, Ordering::Relaxed);
        let location = text(location);
        let message = text(message);
        // Kept where the daemon finds it even if this panic ends the process (a panic while
        // panicking aborts before any report could be sent).
        state.counters.get().last_panics.push(format!("{location}: {message}").as_bytes());
        state.reports.offer(&HostReport::Panicked {
            message: bounded_message(&message),
            location: (!location.is_empty()).then_some(location),
            request: fatal::current_request(),
        });
    });
}

unsafe extern "C" fn on_connection_opened(context: *const c_void) {
    // SAFETY: per the ABI.
    unsafe { state(context) }.counters.get().connections.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn on_connection_closed(context: *const c_void) {
    guarded(|| {
        // SAFETY: per the ABI.
        let state = unsafe { state(context) };
        state.counters.get().connections.fetch_sub(1, Ordering::SeqCst);
        state.report_if_idle();
    });
}

unsafe extern "C" fn on_stream_opened(context: *const c_void) {
    // SAFETY: per the ABI.
    unsafe { state(context) }.counters.get().streams.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn on_stream_closed(context: *const c_void) {
    guarded(|| {
        // SAFETY: per the ABI.
        let state = unsafe { state(context) };
        state.counters.get().streams.fetch_sub(1, Ordering::SeqCst);
        state.report_if_idle();
    });
}

unsafe extern "C" fn on_request_started(
    context: *const c_void,
    request: *const RequestInfo,
) -> u64 {
    let mut token = 0;
    guarded(|| {
        // SAFETY: per the ABI; `request` and its slices live for the call.
        let (state, request) = unsafe { (state(context), &*request) };
        state.counters.get().in_flight.fetch_add(1, Ordering::SeqCst);
        // SAFETY: as above.
        let (method, target) = unsafe { (request.method.as_bytes(), request.target.as_bytes()) };
        token = state.requests.start(request.socket, method, target);
    });
    token
}

unsafe extern "C" fn on_request_polling(context: *const c_void, token: u64, polling: u32) {
    // SAFETY: per the ABI.
    let state = unsafe { state(context) };
    if polling != 0 && token != 0 {
        fatal::set_current_request(state.requests.record(token));
    } else {
        fatal::set_current_request(std::ptr::null());
    }
}

unsafe extern "C" fn on_response_started(context: *const c_void, token: u64) -> u32 {
    let mut permit = response_permit::SEND;
    guarded(|| {
        // SAFETY: per the ABI.
        let state = unsafe { state(context) };
        if !state.requests.respond(token) {
            permit = response_permit::ALREADY_ANSWERED;
        }
    });
    permit
}

unsafe extern "C" fn on_request_finished(context: *const c_void, token: u64, outcome: u32) {
    guarded(|| {
        // SAFETY: per the ABI.
        let state = unsafe { state(context) };
        let cut_by_host = state.requests.finish(token);
        let counters = state.counters.get();
        counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        counters.requests.fetch_add(1, Ordering::Relaxed);
        if outcome == hotswap_handler::abi::request_outcome::CUT && !cut_by_host {
            counters.cut.fetch_add(1, Ordering::Relaxed);
        }
    });
}

unsafe extern "C" fn on_thread_started(_context: *const c_void) {
    guarded(fatal::thread_started);
}

unsafe extern "C" fn on_thread_stopped(_context: *const c_void) {
    guarded(fatal::thread_stopped);
}

unsafe extern "C" fn on_return_connection(context: *const c_void, socket: i64, unread: ByteSlice) {
    guarded(|| {
        // SAFETY: per the ABI: the socket's ownership passes to us, the bytes live for the call.
        let (state, socket, unread) = unsafe {
            (state(context), OwnedFd::from_raw_fd(socket as i32), unread.as_bytes().to_vec())
        };
        state.reports.send(&HostReport::ConnectionReturned, &unread, vec![socket]);
    });
}
