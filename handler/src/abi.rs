//! The C ABI between the hotswap host (the process that runs one generation) and a handler
//! library.
//!
//! A handler library exports one symbol, [`ENTRY_SYMBOL`], an `extern "C" fn() -> *const
//! HandlerHeader` returning a pointer to static data. The header starts with fields whose layout
//! never changes (`magic`, `abi_version`, `header_size`), so any host can read them and refuse a
//! library it does not understand with a clear reason; a [`LAYOUT_HASH`] over every boundary
//! struct catches the rest.
//!
//! Only `#[repr(C)]` data, byte buffers, socket descriptors and `extern "C"` function pointers
//! cross. Whoever allocates a buffer frees it: buffers from the library go back through
//! [`HandlerFunctions::free_buffer`].
//!
//! Threading contract: each generation runs in a process of its own, which loads one library
//! and exits after `shutdown`. The host calls `init`, `start`, `serve_connection`, `begin_drain`
//! and `shutdown` from one thread; `export_state` may run on another thread at the same time as
//! `serve_connection` and `begin_drain` (a state snapshot is taken while requests are served),
//! never at the same time as `init`, `start` or `shutdown`. Host callbacks may be called from
//! any thread of the library.
//!
//! This module has no dependencies, so the daemon can use it without the SDK.

use core::ffi::c_void;
use core::mem::{align_of, offset_of, size_of};

/// First eight bytes of every header.
pub const MAGIC: [u8; 8] = *b"HOTSWAP\0";

/// Bumped on any incompatible change to this module.
pub const ABI_VERSION: u32 = 2;

/// The exported symbol, NUL-terminated for `dlsym`.
pub const ENTRY_SYMBOL: &[u8] = b"hotswap_handler_entry\0";

/// The signature of [`ENTRY_SYMBOL`].
pub type EntryFunction = unsafe extern "C" fn() -> *const HandlerHeader;

/// `HandlerHeader::panic_strategy` of a library built with `panic = "unwind"`.
pub const PANIC_UNWIND: u32 = 1;
/// `HandlerHeader::panic_strategy` of a library built with `panic = "abort"`.
pub const PANIC_ABORT: u32 = 2;

/// The panic strategy of the crate this module is compiled into.
pub const PANIC_STRATEGY: u32 = if cfg!(panic = "unwind") { PANIC_UNWIND } else { PANIC_ABORT };

/// The target triple this module is compiled for.
pub const TARGET: &str = env!("HOTSWAP_TARGET");

/// Results of library functions.
pub mod status {
    /// It worked.
    pub const OK: u32 = 0;
    /// It failed; the message buffer says why.
    pub const FAILED: u32 = 1;
    /// Library code panicked; the panic was caught and the message buffer holds it.
    pub const PANICKED: u32 = 2;
    /// `start`: the state could not be imported, the app started with fresh state (the message
    /// says why).
    pub const STARTED_FRESH: u32 = 3;
    /// `shutdown`: threads of the library were still running when it gave up waiting.
    pub const THREADS_LEFT: u32 = 4;
    /// `start`: the app's own set-up (`Handler::create`) returned an error; the message says it.
    pub const FAILED_TO_START: u32 = 5;
}

/// What `start` does when the state from the previous generation cannot be imported.
pub mod state_policy {
    /// Start with `State::default()` and say so.
    pub const FRESH: u32 = 0;
    /// Fail `start`: the swap is refused and the old generation keeps serving.
    pub const REJECT: u32 = 1;
}

/// How a request ended, for [`HostCallbacks::request_finished`].
pub mod request_outcome {
    /// The handler answered.
    pub const ANSWERED: u32 = 0;
    /// The handler panicked; the client got a 500.
    pub const PANICKED: u32 = 1;
    /// The generation's drain timeout passed first; the client got a 503.
    pub const CUT: u32 = 2;
    /// The request was refused before the handler ran (e.g. body too large).
    pub const REFUSED: u32 = 3;
}

/// What [`HostCallbacks::response_started`] answers.
pub mod response_permit {
    /// Send the response.
    pub const SEND: u32 = 1;
    /// The host has already answered the request itself (it outlived the drain timeout while its
    /// thread was blocked) and closed the connection: drop the response.
    pub const ALREADY_ANSWERED: u32 = 0;
}

/// The bytes a state travels in between generations (`export_state` writes them, `start` reads
/// them): a header the host and the daemon can read without the app's types, then the state
/// itself in a self-describing format.
///
/// ```text
/// 8 bytes   MAGIC
/// u32 LE    the exporting app's `Handler::STATE_VERSION`
/// u8        FORMAT_MESSAGEPACK or FORMAT_JSON
/// u16 LE    length of the type name, then the type name (UTF-8, as the app wrote it)
/// rest      the state
/// ```
pub mod state_envelope {
    pub const MAGIC: [u8; 8] = *b"HSSTATE1";
    /// MessagePack, structs as maps with their field names (so that fields can be added,
    /// renamed or found missing), human-readable forms (a UUID as its text), byte sequences as
    /// one binary value.
    pub const FORMAT_MESSAGEPACK: u8 = 1;
    /// JSON (a state written by a person, or by `hotswap state`).
    pub const FORMAT_JSON: u8 = 2;

    /// A state's header and bytes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Envelope<'a> {
        pub version: u32,
        pub format: u8,
        pub type_name: &'a str,
        pub payload: &'a [u8],
    }

    /// The header of a state, to be followed by its payload.
    pub fn header(version: u32, format: u8, type_name: &str) -> alloc_free::Header {
        alloc_free::Header::new(version, format, type_name)
    }

    /// Reads an envelope; `Err` says what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Envelope<'_>, &'static str> {
        if bytes.len() < 15 || bytes[..8] != MAGIC {
            return Err("not a hotswap state (no HSSTATE1 header)");
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let format = bytes[12];
        let name_length = u16::from_le_bytes([bytes[13], bytes[14]]) as usize;
        let Some(type_name) = bytes.get(15..15 + name_length) else {
            return Err("a hotswap state cut short in its header");
        };
        let Ok(type_name) = core::str::from_utf8(type_name) else {
            return Err("a hotswap state whose type name is not UTF-8");
        };
        if format != FORMAT_MESSAGEPACK && format != FORMAT_JSON {
            return Err("a hotswap state in an unknown format");
        }
        Ok(Envelope { version, format, type_name, payload: &bytes[15 + name_length..] })
    }

    /// A header without allocation (this module has no dependencies).
    pub mod alloc_free {
        /// Up to 255 bytes of type name.
        #[derive(Debug, Clone, Copy)]
        pub struct Header {
            bytes: [u8; 15 + 255],
            length: usize,
        }

        impl Header {
            pub fn new(version: u32, format: u8, type_name: &str) -> Self {
                let mut name = type_name.as_bytes();
                if name.len() > 255 {
                    let mut end = 255;
                    while !type_name.is_char_boundary(end) {
                        end -= 1;
                    }
                    name = &name[..end];
                }
                let mut bytes = [0u8; 15 + 255];
                bytes[..8].copy_from_slice(&super::MAGIC);
                bytes[8..12].copy_from_slice(&version.to_le_bytes());
                bytes[12] = format;
                bytes[13..15].copy_from_slice(&(name.len() as u16).to_le_bytes());
                bytes[15..15 + name.len()].copy_from_slice(name);
                Self { bytes, length: 15 + name.len() }
            }

            pub fn as_bytes(&self) -> &[u8] {
                &self.bytes[..self.length]
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn headers_round_trip() {
            let header = header(3, FORMAT_MESSAGEPACK, "TodoState");
            let mut bytes = header.as_bytes().to_vec();
            bytes.extend_from_slice(b"payload");
            assert_eq!(
                parse(&bytes),
                Ok(Envelope {
                    version: 3,
                    format: FORMAT_MESSAGEPACK,
                    type_name: "TodoState",
                    payload: b"payload"
                })
            );
            assert!(parse(b"{\"json\": true}").is_err());
            assert!(parse(&bytes[..16]).is_err());
        }
    }
}

/// Log levels, for [`InitConfig::max_log_level`] and [`HostCallbacks::log`].
pub mod log_level {
    pub const OFF: u32 = 0;
    pub const ERROR: u32 = 1;
    pub const WARN: u32 = 2;
    pub const INFO: u32 = 3;
    pub const DEBUG: u32 = 4;
    pub const TRACE: u32 = 5;
}

/// Borrowed bytes (UTF-8 where the field says so), valid for the duration of the call, or
/// forever when they point into static data.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ByteSlice {
    pub ptr: *const u8,
    pub len: usize,
}

impl ByteSlice {
    pub const EMPTY: ByteSlice = ByteSlice { ptr: core::ptr::null(), len: 0 };

    pub const fn from_static(bytes: &'static [u8]) -> Self {
        Self { ptr: bytes.as_ptr(), len: bytes.len() }
    }

    pub fn new(bytes: &[u8]) -> Self {
        Self { ptr: bytes.as_ptr(), len: bytes.len() }
    }

    /// # Safety
    /// `ptr` must be null with `len` 0, or point to `len` readable bytes that outlive `'a`.
    pub unsafe fn as_bytes<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: the caller guarantees ptr/len describe live, readable bytes.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Bytes allocated by the library and handed to the host, which must give them back through
/// [`HandlerFunctions::free_buffer`]. An empty buffer has a null `ptr`.
#[repr(C)]
#[derive(Debug)]
pub struct OwnedBuffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub capacity: usize,
}

impl OwnedBuffer {
    pub const EMPTY: OwnedBuffer = OwnedBuffer { ptr: core::ptr::null_mut(), len: 0, capacity: 0 };

    /// # Safety
    /// The buffer must come from the library and not have been freed.
    pub unsafe fn as_bytes(&self) -> &[u8] {
        if self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: the library filled ptr/len from a live allocation it owns until freed.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Settings the host gives a generation.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct InitConfig {
    /// This generation's number (1 for the first load).
    pub generation: u64,
    /// Worker threads for the generation's runtime.
    pub worker_threads: u32,
    /// The most verbose [`log_level`] the host wants forwarded.
    pub max_log_level: u32,
    /// Request bodies longer than this are refused with 413.
    pub max_body_bytes: u64,
    /// A new connection that sends nothing for this long is closed (0: never).
    pub first_byte_timeout_ms: u64,
    /// The daemon's HTTP address (`127.0.0.1:3000`, UTF-8; empty: none, as in the standalone
    /// server). A request held while the state moved is forwarded there once this generation
    /// drains, so that the generation with the state answers it. Valid during `init` only.
    pub forward_address: ByteSlice,
}

/// What `init` hands back.
#[repr(C)]
#[derive(Debug)]
pub struct InitResult {
    /// A [`status`] code.
    pub status: u32,
    /// The generation's instance, passed to every later call. Null unless `status` is OK.
    pub instance: *mut c_void,
    /// Why it failed, UTF-8.
    pub message: OwnedBuffer,
}

/// A request as [`HostCallbacks::request_started`] sees it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo {
    /// The connection's socket (still owned by the library): the host may write a 503 to it and
    /// shut it down when the request outlives the drain timeout and its thread is blocked.
    pub socket: i64,
    /// The request method, UTF-8.
    pub method: ByteSlice,
    /// The path and query, UTF-8.
    pub target: ByteSlice,
}

/// Functions the host provides. `context` is passed back to each; the host keeps it alive until
/// its process exits.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HostCallbacks {
    pub context: *const c_void,
    /// A log record: a [`log_level`], the target and the message (both UTF-8).
    pub log: unsafe extern "C" fn(
        context: *const c_void,
        level: u32,
        target: ByteSlice,
        message: ByteSlice,
    ),
    /// Library code panicked (message and `file:line:col`, UTF-8). Called from the panicking
    /// thread, before the panic is caught.
    pub panicked:
        unsafe extern "C" fn(context: *const c_void, message: ByteSlice, location: ByteSlice),
    /// An HTTP connection handed over by `serve_connection` started or ended.
    pub connection_opened: unsafe extern "C" fn(context: *const c_void),
    pub connection_closed: unsafe extern "C" fn(context: *const c_void),
    /// A request started; returns a token for the calls below about the same request.
    pub request_started:
        unsafe extern "C" fn(context: *const c_void, request: *const RequestInfo) -> u64,
    /// The calling thread starts (`polling` 1) or stops (`polling` 0) running the request's
    /// handler: what a thread was running when it crashed names the request in the crash report.
    pub request_polling: unsafe extern "C" fn(context: *const c_void, token: u64, polling: u32),
    /// The handler returned its response, which is about to be sent. Returns a
    /// [`response_permit`].
    pub response_started: unsafe extern "C" fn(context: *const c_void, token: u64) -> u32,
    /// The request ended with a [`request_outcome`]; the token is not used again.
    pub request_finished: unsafe extern "C" fn(context: *const c_void, token: u64, outcome: u32),
    /// A long-lived stream (an upgraded connection, a streamed response) opened or ended.
    pub stream_opened: unsafe extern "C" fn(context: *const c_void),
    pub stream_closed: unsafe extern "C" fn(context: *const c_void),
    /// Called on each thread the library starts, first thing, and last thing before it ends (the
    /// host prepares what it needs to report a crash on that thread, such as a stack overflow).
    pub thread_started: unsafe extern "C" fn(context: *const c_void),
    pub thread_stopped: unsafe extern "C" fn(context: *const c_void),
    /// Gives an open connection back to the host, at a request boundary, with the bytes already
    /// read from it but not yet processed: a draining generation hands its idle keep-alive
    /// connections back this way, and the host passes them to the current generation, so the
    /// client's next request meets the new code without the connection being closed. The host
    /// takes ownership of the socket.
    pub return_connection:
        unsafe extern "C" fn(context: *const c_void, socket: i64, unread: ByteSlice),
}

/// The library's functions. See the module documentation for the thread they run on.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HandlerFunctions {
    /// Starts the generation's runtime. `host` and its context stay valid until `shutdown`
    /// returns. Fills `out`.
    pub init: unsafe extern "C" fn(
        config: *const InitConfig,
        host: *const HostCallbacks,
        out: *mut InitResult,
    ),
    /// Creates the app, with the state exported by the previous generation (a
    /// [`state_envelope`]; empty: none), under a [`state_policy`]. Returns a [`status`]: OK,
    /// STARTED_FRESH, FAILED or PANICKED, with a message in `message` for all but OK. For FAILED
    /// (the state does not import) the message is a JSON object: `{"message": text, "struct":
    /// name?, "field": name?, "path": path?}`, naming where in the state and in which struct of
    /// the new type it failed.
    pub start: unsafe extern "C" fn(
        instance: *mut c_void,
        state: ByteSlice,
        policy: u32,
        message: *mut OwnedBuffer,
    ) -> u32,
    /// Takes ownership of an accepted, non-blocking TCP socket (a file descriptor on Unix) and
    /// serves HTTP on it, starting with the bytes `unread` (already read from the socket by
    /// whoever had it before; empty for a new connection). Returns a [`status`]; on failure the
    /// socket has been closed.
    pub serve_connection:
        unsafe extern "C" fn(instance: *mut c_void, socket: i64, unread: ByteSlice) -> u32,
    /// Stop keeping connections alive: finish the requests in flight and give each connection
    /// back with [`HostCallbacks::return_connection`] at its next request boundary. After
    /// `purge_after_ms`, requests still running are answered 503 and their connections closed;
    /// after `streams_after_ms`, long-lived streams end cleanly (a WebSocket gets close code 1012,
    /// a streamed response its last chunk).
    pub begin_drain:
        unsafe extern "C" fn(instance: *mut c_void, purge_after_ms: u64, streams_after_ms: u64),
    /// Serializes the app's state into `out` (left empty when the app keeps none). Returns a
    /// [`status`]; on failure `out` holds the message.
    pub export_state: unsafe extern "C" fn(instance: *mut c_void, out: *mut OwnedBuffer) -> u32,
    /// `on` 1: requests that can write (any method but GET, HEAD, OPTIONS and TRACE) wait before
    /// their handler runs, and the call returns once none is running, or after `timeout_ms`,
    /// with how many still run: the state can then be exported without losing a write. `on` 0:
    /// they go on. Requests still held when the generation drains are forwarded to
    /// `InitConfig::forward_address`, where the next generation answers them.
    pub hold: unsafe extern "C" fn(instance: *mut c_void, on: u32, timeout_ms: u64) -> u64,
    /// Drops the app, stops the runtime and joins its threads, waiting at most `timeout_ms`.
    /// Frees the instance. Returns OK, THREADS_LEFT (some did not stop in time) or PANICKED,
    /// with a message for the last two.
    pub shutdown: unsafe extern "C" fn(
        instance: *mut c_void,
        timeout_ms: u64,
        message: *mut OwnedBuffer,
    ) -> u32,
    /// Frees a buffer this library allocated.
    pub free_buffer: unsafe extern "C" fn(buffer: OwnedBuffer),
}

/// What [`ENTRY_SYMBOL`] points to. Fields up to `header_size` keep their offsets in every ABI
/// version.
#[repr(C)]
#[derive(Debug)]
pub struct HandlerHeader {
    pub magic: [u8; 8],
    pub abi_version: u32,
    /// `size_of::<HandlerHeader>()` in the library.
    pub header_size: u32,
    /// [`LAYOUT_HASH`] of the library.
    pub layout_hash: u64,
    /// [`PANIC_UNWIND`] or [`PANIC_ABORT`].
    pub panic_strategy: u32,
    pub reserved: u32,
    /// Version of the `hotswap-handler` crate the library was built with, UTF-8.
    pub sdk_version: ByteSlice,
    /// Target triple the library was built for, UTF-8.
    pub target: ByteSlice,
    pub functions: HandlerFunctions,
}

// SAFETY: a header is immutable static data: function pointers and pointers to static bytes.
unsafe impl Sync for HandlerHeader {}

/// FNV-1a over the layout (size, alignment, field offsets) of every struct that crosses the
/// boundary, the ABI version, the target and the panic strategy. Two builds with the same hash
/// agree on everything the host and the library exchange.
pub const LAYOUT_HASH: u64 = {
    let mut hash =
        Fnv::new().u64(ABI_VERSION as u64).bytes(TARGET.as_bytes()).u64(PANIC_STRATEGY as u64);
    hash = hash.layout(size_of::<ByteSlice>(), align_of::<ByteSlice>());
    hash = hash.u64(offset_of!(ByteSlice, ptr) as u64).u64(offset_of!(ByteSlice, len) as u64);
    hash = hash.layout(size_of::<OwnedBuffer>(), align_of::<OwnedBuffer>());
    hash = hash.u64(offset_of!(OwnedBuffer, ptr) as u64);
    hash =
        hash.u64(offset_of!(OwnedBuffer, len) as u64).u64(offset_of!(OwnedBuffer, capacity) as u64);
    hash = hash.layout(size_of::<InitConfig>(), align_of::<InitConfig>());
    hash = hash.u64(offset_of!(InitConfig, generation) as u64);
    hash = hash.u64(offset_of!(InitConfig, worker_threads) as u64);
    hash = hash.u64(offset_of!(InitConfig, max_log_level) as u64);
    hash = hash.u64(offset_of!(InitConfig, max_body_bytes) as u64);
    hash = hash.u64(offset_of!(InitConfig, first_byte_timeout_ms) as u64);
    hash = hash.u64(offset_of!(InitConfig, forward_address) as u64);
    hash = hash.layout(size_of::<InitResult>(), align_of::<InitResult>());
    hash = hash.u64(offset_of!(InitResult, status) as u64);
    hash = hash
        .u64(offset_of!(InitResult, instance) as u64)
        .u64(offset_of!(InitResult, message) as u64);
    hash = hash.layout(size_of::<HostCallbacks>(), align_of::<HostCallbacks>());
    hash = hash
        .u64(offset_of!(HostCallbacks, context) as u64)
        .u64(offset_of!(HostCallbacks, log) as u64);
    hash = hash.u64(offset_of!(HostCallbacks, panicked) as u64);
    hash = hash.u64(offset_of!(HostCallbacks, connection_opened) as u64);
    hash = hash.u64(offset_of!(HostCallbacks, connection_closed) as u64);
    hash = hash.u64(offset_of!(HostCallbacks, request_started) as u64);
    hash = hash.u64(offset_of!(HostCallbacks, request_finished) as u64);
    hash = hash.u64(offset_of!(HostCallbacks, request_polling) as u64);
    hash = hash.u64(offset_of!(HostCallbacks, response_started) as u64);
    hash = hash.u64(offset_of!(HostCallbacks, stream_opened) as u64);
    hash = hash.u64(offset_of!(HostCallbacks, stream_closed) as u64);
    hash = hash.u64(offset_of!(HostCallbacks, thread_started) as u64);
    hash = hash.u64(offset_of!(HostCallbacks, thread_stopped) as u64);
    hash = hash.u64(offset_of!(HostCallbacks, return_connection) as u64);
    hash = hash.layout(size_of::<RequestInfo>(), align_of::<RequestInfo>());
    hash = hash.u64(offset_of!(RequestInfo, socket) as u64);
    hash = hash.u64(offset_of!(RequestInfo, method) as u64);
    hash = hash.u64(offset_of!(RequestInfo, target) as u64);
    hash = hash.layout(size_of::<HandlerFunctions>(), align_of::<HandlerFunctions>());
    hash = hash
        .u64(offset_of!(HandlerFunctions, init) as u64)
        .u64(offset_of!(HandlerFunctions, start) as u64);
    hash = hash.u64(offset_of!(HandlerFunctions, serve_connection) as u64);
    hash = hash.u64(offset_of!(HandlerFunctions, begin_drain) as u64);
    hash = hash.u64(offset_of!(HandlerFunctions, export_state) as u64);
    hash = hash.u64(offset_of!(HandlerFunctions, hold) as u64);
    hash = hash.u64(offset_of!(HandlerFunctions, shutdown) as u64);
    hash = hash.u64(offset_of!(HandlerFunctions, free_buffer) as u64);
    hash = hash.layout(size_of::<HandlerHeader>(), align_of::<HandlerHeader>());
    hash = hash.u64(offset_of!(HandlerHeader, layout_hash) as u64);
    hash = hash.u64(offset_of!(HandlerHeader, panic_strategy) as u64);
    hash = hash
        .u64(offset_of!(HandlerHeader, sdk_version) as u64)
        .u64(offset_of!(HandlerHeader, target) as u64);
    hash = hash.u64(offset_of!(HandlerHeader, functions) as u64);
    hash.finish()
};

/// The version of this crate, as the header reports it.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The size of the header as this crate defines it.
pub const HEADER_SIZE: u32 = size_of::<HandlerHeader>() as u32;

struct Fnv(u64);

impl Fnv {
    const fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    const fn byte(self, byte: u8) -> Self {
        Fnv((self.0 ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3))
    }

    const fn bytes(mut self, bytes: &[u8]) -> Self {
        let mut index = 0;
        while index < bytes.len() {
            self = self.byte(bytes[index]);
            index += 1;
        }
        self
    }

    const fn u64(self, value: u64) -> Self {
        self.bytes(&value.to_le_bytes())
    }

    const fn layout(self, size: usize, align: usize) -> Self {
        self.u64(size as u64).u64(align as u64)
    }

    const fn finish(self) -> u64 {
        self.0
    }
}

/// Why the host refuses a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMismatch {
    /// Not a hotswap handler library at all.
    Magic,
    /// A different ABI version.
    AbiVersion { library: u32, host: u32 },
    /// A header of a different size for the same version: a broken or foreign build.
    HeaderSize { library: u32, host: u32 },
    /// The library would abort the whole daemon on a panic.
    PanicAbort,
    /// Built for another target.
    Target { library: String, host: String },
    /// Same version, yet the boundary structs differ.
    LayoutHash { library: u64, host: u64 },
}

impl core::fmt::Display for HeaderMismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HeaderMismatch::Magic => {
                write!(
                    f,
                    "the library's entry symbol does not point to a hotswap header (bad magic)"
                )
            }
            HeaderMismatch::AbiVersion { library, host } => write!(
                f,
                "the library speaks handler ABI version {library}, this daemon speaks {host}: \
                 build the handler against the hotswap-handler version that matches the daemon"
            ),
            HeaderMismatch::HeaderSize { library, host } => write!(
                f,
                "the library's header is {library} bytes, this daemon expects {host}: the library \
                 was built with an incompatible hotswap-handler"
            ),
            HeaderMismatch::PanicAbort => write!(
                f,
                "the library was built with panic = \"abort\", so one panicking request would end \
                 its generation: set panic = \"unwind\" in the profile hotswap builds with"
            ),
            HeaderMismatch::Target { library, host } => {
                write!(f, "the library was built for {library}, this daemon runs on {host}")
            }
            HeaderMismatch::LayoutHash { library, host } => write!(
                f,
                "the library's ABI layout hash {library:#018x} differs from this daemon's {host:#018x}: \
                 host and library were built from incompatible hotswap-handler sources"
            ),
        }
    }
}

/// Checks a header against this build of the ABI, field by field so the reason names what
/// differs.
///
/// # Safety
/// `header` must point to at least `8 + 4 + 4` readable bytes that live as long as `'library`
/// (the loaded library); the remaining fields are read only after `header_size` says they are
/// there.
pub unsafe fn verify_header<'library>(
    header: *const HandlerHeader,
) -> Result<&'library HandlerHeader, HeaderMismatch> {
    // SAFETY: the caller guarantees the fixed prefix is readable.
    let (magic, abi_version, header_size) = unsafe {
        (
            core::ptr::read_unaligned(core::ptr::addr_of!((*header).magic)),
            core::ptr::read_unaligned(core::ptr::addr_of!((*header).abi_version)),
            core::ptr::read_unaligned(core::ptr::addr_of!((*header).header_size)),
        )
    };
    if magic != MAGIC {
        return Err(HeaderMismatch::Magic);
    }
    if abi_version != ABI_VERSION {
        return Err(HeaderMismatch::AbiVersion { library: abi_version, host: ABI_VERSION });
    }
    if header_size != HEADER_SIZE {
        return Err(HeaderMismatch::HeaderSize { library: header_size, host: HEADER_SIZE });
    }
    // SAFETY: same version and size: the whole header is there, in static memory of the library.
    let header = unsafe { &*header };
    if header.panic_strategy != PANIC_UNWIND {
        return Err(HeaderMismatch::PanicAbort);
    }
    // SAFETY: the header's target points to static bytes of the library.
    let target = unsafe { header.target.as_bytes() };
    if target != TARGET.as_bytes() {
        return Err(HeaderMismatch::Target {
            library: String::from_utf8_lossy(target).into_owned(),
            host: TARGET.to_owned(),
        });
    }
    if header.layout_hash != LAYOUT_HASH {
        return Err(HeaderMismatch::LayoutHash { library: header.layout_hash, host: LAYOUT_HASH });
    }
    Ok(header)
}
