//! The control channel between the daemon and a generation's host process.
//!
//! Every generation runs in a process of its own (the `hotswap` binary started as `hotswap host`),
//! which loads the handler library and serves the connections the daemon passes it. Daemon and
//! host talk over a Unix socketpair (the host's standard input) in *frames*:
//!
//! ```text
//! u32 LE  length of the JSON header (at most 1 MiB)
//! u32 LE  length of the payload (at most 1 MiB)
//! JSON    one HostCommand (daemon → host) or HostReport (host → daemon)
//! bytes   the payload (bytes already read from a passed connection; empty for most messages)
//! ```
//!
//! File descriptors travel with `SCM_RIGHTS` attached to the first byte of their frame; each
//! message kind says how many it carries ([`HostCommand::descriptors`],
//! [`HostReport::descriptors`]). A receiver queues the descriptors it gets and takes them in
//! frame order. Large data never goes through the socket: a state travels as a sealed `memfd`
//! passed by descriptor, and the host's counters live in a shared memory page
//! ([`HostCounters`]) that the daemon reads without asking.
//!
//! The codec here is pure (bytes in, frames out, like [`crate::framing`]); the daemon's async
//! transport and the host's blocking one are thin adapters that add the descriptors.
//! `protocol/vectors/control.jsonl` pins the JSON of every message.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64};

use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::events::LogLevel;

/// Bumped on any incompatible change to the control channel. The daemon and the host are the
/// same binary, so a mismatch means a host from another build was started by mistake.
pub const CONTROL_VERSION: u32 = 1;

/// Largest JSON header and largest payload of a frame.
pub const MAX_PART_BYTES: usize = 1024 * 1024;

/// The longest log message or panic message a host forwards; longer ones are cut with a note.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What the daemon asks of a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum HostCommand {
    /// `dlopen` the handler library, check its ABI header and start its runtime (the ABI's
    /// `init`). Answered by [`HostReport::Loaded`] or [`HostReport::LoadFailed`].
    Load(LoadCommand),
    /// Create the app (the ABI's `start`) with the state in the attached memfd, or with no state
    /// when `with_state` is false (then nothing is attached). Answered by
    /// [`HostReport::Started`] or [`HostReport::StartFailed`].
    Start { policy: StatePolicy, with_state: bool },
    /// Serve the attached socket. The payload holds bytes already read from it.
    Connection,
    /// Export the app's state. Answered by [`HostReport::StateExported`] or
    /// [`HostReport::ExportFailed`] with the same `request`.
    ExportState { request: u64 },
    /// Hold (`on`) or release the requests that can write, before the state is exported: with
    /// `on`, answered once none runs or after `timeout_ms`, by [`HostReport::Held`].
    Hold { on: bool, timeout_ms: u64 },
    /// Stop taking new requests on kept-alive connections and give idle ones back; after
    /// `purge_after_ms` answer requests still running with 503; after `streams_after_ms` end
    /// long-lived streams (WebSocket close 1012, end of an SSE stream). Answered by
    /// [`HostReport::Draining`].
    BeginDrain { purge_after_ms: u64, streams_after_ms: u64 },
    /// Answer what still runs with 503, stop the app (at most `grace_ms`), and exit.
    Retire { grace_ms: u64 },
}

/// What to load, and the generation's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadCommand {
    /// The generation's own copy of the handler library.
    pub library: PathBuf,
    pub generation: u64,
    pub worker_threads: u32,
    /// The most verbose level of handler `tracing` records to forward.
    pub max_log_level: LogLevel,
    /// Request bodies over this size are answered 413.
    pub max_body_bytes: u64,
    /// A new connection that sends nothing for this long is closed (0: never).
    pub first_byte_timeout_ms: u64,
    /// Where requests held across a swap are forwarded (the daemon's HTTP address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_address: Option<String>,
}

/// What `start` does with a state that does not import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StatePolicy {
    /// Start from `State::default()`, with a warning.
    Fresh,
    /// Fail the start: the swap is refused.
    Reject,
}

/// The stage a load failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LoadStage {
    /// `dlopen` or the entry symbol.
    Load,
    /// The ABI header.
    Verify,
    /// The library's `init` (its runtime).
    Init,
}

/// What a host tells the daemon: answers to commands, and what happens inside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum HostReport {
    /// The first message of every host, with the memfd of its [`HostCounters`] attached.
    Ready {
        pid: u32,
        control_version: u32,
    },
    Loaded {
        sdk_version: String,
        load_ms: f64,
        verify_ms: f64,
        init_ms: f64,
    },
    LoadFailed {
        stage: LoadStage,
        message: String,
    },
    /// The app runs; `warning` when its state could not be imported and it started fresh.
    Started {
        warning: Option<String>,
    },
    /// `state` is true when the state could not be imported (and the policy refused a fresh
    /// start); false when `Handler::new` failed or panicked.
    StartFailed {
        state: bool,
        message: String,
    },
    /// The state, in an attached sealed memfd of `bytes` bytes, or nothing attached when the app
    /// keeps none (`bytes` is 0).
    StateExported {
        request: u64,
        bytes: u64,
        export_ms: f64,
    },
    ExportFailed {
        request: u64,
        message: String,
    },
    /// The answer to [`HostCommand::Hold`]: how many writing requests still run.
    Held {
        writes_running: u64,
    },
    Draining,
    /// A draining host serves no connection any more; `received` counts every connection it was
    /// ever passed, so the daemon can tell none is still on its way.
    Idle {
        received: u64,
    },
    /// An idle kept-alive connection handed back while draining (attached), with the bytes
    /// already read from it as the payload.
    ConnectionReturned,
    /// A `tracing` record of handler code, or a line it printed.
    Log {
        level: LogLevel,
        target: String,
        message: String,
    },
    /// Handler code panicked (the request, when there was one, got a 500).
    Panicked {
        message: String,
        location: Option<String>,
        request: Option<String>,
    },
    /// Requests answered 503 because they outlived the drain timeout.
    RequestsCut {
        count: u64,
    },
    /// The host is about to exit; `message` says what did not stop in time.
    Retiring {
        clean: bool,
        message: Option<String>,
    },
}

impl HostCommand {
    /// How many descriptors travel with this command.
    pub fn descriptors(&self) -> usize {
        match self {
            HostCommand::Start { with_state, .. } => usize::from(*with_state),
            HostCommand::Connection => 1,
            _ => 0,
        }
    }
}

impl HostReport {
    /// How many descriptors travel with this report.
    pub fn descriptors(&self) -> usize {
        match self {
            HostReport::Ready { .. } | HostReport::ConnectionReturned => 1,
            HostReport::StateExported { bytes, .. } => usize::from(*bytes > 0),
            _ => 0,
        }
    }
}

/// A frame as it comes off the wire, before its JSON is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Bytes,
    pub payload: Bytes,
}

/// Why bytes are not a frame, or a frame not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("control frame part of {length} bytes is over the limit of {MAX_PART_BYTES}")]
    TooLong { length: usize },
    #[error("control message does not decode: {0}")]
    Json(String),
}

/// Appends one frame to `out`.
pub fn encode_frame(message: &impl Serialize, payload: &[u8], out: &mut Vec<u8>) {
    let header = serde_json::to_vec(message).expect("control messages serialize");
    debug_assert!(header.len() <= MAX_PART_BYTES && payload.len() <= MAX_PART_BYTES);
    out.reserve(8 + header.len() + payload.len());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

/// Takes the next complete frame out of `buffer`: `Ok(None)` when more bytes are needed. A part
/// over the limit is an error after which the stream cannot be trusted (the peer is not a
/// hotswap process of this build): the caller closes it.
pub fn decode_frame(buffer: &mut BytesMut) -> Result<Option<Frame>, ControlError> {
    if buffer.len() < 8 {
        return Ok(None);
    }
    let header_length = u32::from_le_bytes(buffer[0..4].try_into().expect("4 bytes")) as usize;
    let payload_length = u32::from_le_bytes(buffer[4..8].try_into().expect("4 bytes")) as usize;
    for length in [header_length, payload_length] {
        if length > MAX_PART_BYTES {
            return Err(ControlError::TooLong { length });
        }
    }
    if buffer.len() < 8 + header_length + payload_length {
        buffer.reserve(8 + header_length + payload_length - buffer.len());
        return Ok(None);
    }
    buffer.advance(8);
    let header = buffer.split_to(header_length).freeze();
    let payload = buffer.split_to(payload_length).freeze();
    Ok(Some(Frame { header, payload }))
}

impl Frame {
    /// Decodes the header as `T` ([`HostCommand`] or [`HostReport`]).
    pub fn message<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ControlError> {
        serde_json::from_slice(&self.header).map_err(|error| ControlError::Json(error.to_string()))
    }
}

/// Cuts `text` to at most [`MAX_MESSAGE_BYTES`], on a character boundary, saying so.
pub fn bounded_message(text: &str) -> String {
    if text.len() <= MAX_MESSAGE_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} … ({} more bytes cut)", &text[..end], text.len() - end)
}

/// Magic value at the start of a [`HostCounters`] page.
pub const COUNTERS_MAGIC: u64 = u64::from_le_bytes(*b"HSWPCNT1");

/// The shared memory page a host keeps its counters in. The host creates it (a memfd of
/// [`HostCounters::SIZE`] bytes), maps it, and passes it with [`HostReport::Ready`]; the daemon
/// maps it too and reads it for `status`, for draining, and after a crash. The daemon treats
/// every value as untrusted: a crashing host may have written anything.
#[repr(C)]
#[derive(Debug)]
pub struct HostCounters {
    pub magic: AtomicU64,
    /// HTTP connections being served.
    pub connections: AtomicU64,
    /// Connections ever passed to this host (compare with the daemon's own count of sent ones).
    pub received: AtomicU64,
    /// Requests whose handler runs.
    pub in_flight: AtomicU64,
    /// Requests finished.
    pub requests: AtomicU64,
    pub panics: AtomicU64,
    /// Requests answered 503 at the drain timeout.
    pub cut: AtomicU64,
    /// Open long-lived streams: upgraded connections (WebSocket) and streamed responses.
    pub streams: AtomicU64,
    /// What the host knew when it died, written by its fatal-signal handler.
    pub crash: CrashRecord,
    /// The last panics of handler code: a panic while panicking aborts the process before any
    /// report could be sent, so the messages are kept here too.
    pub last_panics: PanicRing,
}

/// The four most recent panic messages (`file:line:col: message`), oldest first once read.
#[repr(C)]
#[derive(Debug)]
pub struct PanicRing {
    /// How many panics were written so far (the slot of panic `n` is `n % 4`).
    pub written: AtomicU64,
    pub slots: [PanicSlot; 4],
}

#[repr(C)]
#[derive(Debug)]
pub struct PanicSlot {
    pub length: AtomicU32,
    pub text: [AtomicU8Array; 8],
}

impl PanicRing {
    /// Bytes kept of each panic's text.
    pub const TEXT_BYTES: usize = 8 * 64;

    /// Records a panic's text (cut to [`PanicRing::TEXT_BYTES`]).
    pub fn push(&self, text: &[u8]) {
        use std::sync::atomic::Ordering;
        let index = self.written.fetch_add(1, Ordering::SeqCst);
        let slot = &self.slots[(index % 4) as usize];
        let text = &text[..text.len().min(Self::TEXT_BYTES)];
        slot.length.store(0, Ordering::SeqCst);
        for (position, byte) in text.iter().enumerate() {
            slot.text[position / 64].0[position % 64].store(*byte, Ordering::Relaxed);
        }
        slot.length.store(text.len() as u32, Ordering::SeqCst);
    }

    /// The recorded panics, oldest first.
    pub fn read(&self) -> Vec<String> {
        use std::sync::atomic::Ordering;
        let written = self.written.load(Ordering::SeqCst);
        let first = written.saturating_sub(4);
        (first..written)
            .map(|index| {
                let slot = &self.slots[(index % 4) as usize];
                let length = (slot.length.load(Ordering::SeqCst) as usize).min(Self::TEXT_BYTES);
                let bytes: Vec<u8> = (0..length)
                    .map(|position| {
                        slot.text[position / 64].0[position % 64].load(Ordering::Relaxed)
                    })
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .filter(|text| !text.is_empty())
            .collect()
    }
}

/// The last words of a host: written once, by the signal handler of a fatal signal (or the
/// `exit` hook), read by the daemon after the process is gone.
#[repr(C)]
#[derive(Debug)]
pub struct CrashRecord {
    /// 0 until written; then one of the `CRASH_*` kinds.
    pub kind: AtomicU32,
    /// The signal number, for the signal kinds.
    pub signal: AtomicU32,
    /// The faulting address of SIGSEGV and SIGBUS.
    pub fault_address: AtomicU64,
    pub thread_name_length: AtomicU32,
    pub request_length: AtomicU32,
    /// The name of the thread that died, UTF-8.
    pub thread_name: [AtomicU8Array; 1],
    /// The request that thread was running, as `METHOD /path?query`, UTF-8.
    pub request: [AtomicU8Array; 8],
}

/// 64 bytes written byte by byte (a signal handler can use nothing else).
#[repr(C)]
#[derive(Debug)]
pub struct AtomicU8Array(pub [std::sync::atomic::AtomicU8; 64]);

/// A fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, ...).
pub const CRASH_SIGNAL: u32 = 1;
/// A stack overflow: SIGSEGV in a thread's guard page.
pub const CRASH_STACK_OVERFLOW: u32 = 2;
/// Handler code called `exit` (`std::process::exit`).
pub const CRASH_EXIT: u32 = 3;

impl HostCounters {
    /// The size of the shared page.
    pub const SIZE: usize = 4096;
}

const _: () = assert!(std::mem::size_of::<HostCounters>() <= HostCounters::SIZE);

impl CrashRecord {
    /// Bytes of the thread-name field.
    pub const THREAD_NAME_BYTES: usize = 64;
    /// Bytes of the request field.
    pub const REQUEST_BYTES: usize = 8 * 64;

    /// Writes the record: only atomic stores, so a signal handler may call it. The first writer
    /// wins; later calls do nothing.
    pub fn write(
        &self,
        kind: u32,
        signal: u32,
        fault_address: u64,
        thread_name: &[u8],
        request: &[u8],
    ) {
        use std::sync::atomic::Ordering;
        if self.kind.compare_exchange(0, u32::MAX, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return;
        }
        self.signal.store(signal, Ordering::Relaxed);
        self.fault_address.store(fault_address, Ordering::Relaxed);
        let name = &thread_name[..thread_name.len().min(Self::THREAD_NAME_BYTES)];
        for (index, byte) in name.iter().enumerate() {
            self.thread_name[index / 64].0[index % 64].store(*byte, Ordering::Relaxed);
        }
        self.thread_name_length.store(name.len() as u32, Ordering::Relaxed);
        let request = &request[..request.len().min(Self::REQUEST_BYTES)];
        for (index, byte) in request.iter().enumerate() {
            self.request[index / 64].0[index % 64].store(*byte, Ordering::Relaxed);
        }
        self.request_length.store(request.len() as u32, Ordering::Relaxed);
        self.kind.store(kind, Ordering::SeqCst);
    }

    /// Reads the record as the daemon sees it: `None` when nothing (complete) was written.
    pub fn read(&self) -> Option<CrashFacts> {
        use std::sync::atomic::Ordering;
        let kind = self.kind.load(Ordering::SeqCst);
        if !matches!(kind, CRASH_SIGNAL | CRASH_STACK_OVERFLOW | CRASH_EXIT) {
            return None;
        }
        let text = |fields: &[AtomicU8Array], length: u32, limit: usize| {
            let length = (length as usize).min(limit);
            let bytes: Vec<u8> = (0..length)
                .map(|index| fields[index / 64].0[index % 64].load(Ordering::Relaxed))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let thread_name = text(
            &self.thread_name,
            self.thread_name_length.load(Ordering::Relaxed),
            Self::THREAD_NAME_BYTES,
        );
        let request =
            text(&self.request, self.request_length.load(Ordering::Relaxed), Self::REQUEST_BYTES);
        Some(CrashFacts {
            kind,
            signal: self.signal.load(Ordering::Relaxed),
            fault_address: self.fault_address.load(Ordering::Relaxed),
            thread_name: (!thread_name.is_empty()).then_some(thread_name),
            request: (!request.is_empty()).then_some(request),
        })
    }
}

/// A [`CrashRecord`] as plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashFacts {
    pub kind: u32,
    pub signal: u32,
    pub fault_address: u64,
    pub thread_name: Option<String>,
    pub request: Option<String>,
}

/// Sending and receiving bytes with descriptors attached (`SCM_RIGHTS`), for both ends'
/// transports. Non-blocking sockets return `WouldBlock` as usual.
#[cfg(unix)]
pub mod descriptors {
    use std::collections::VecDeque;
    use std::io;
    use std::mem::MaybeUninit;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

    use rustix::net::{
        RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
        SendAncillaryMessage, SendFlags,
    };

    /// The most descriptors one frame carries.
    pub const MAX_PER_FRAME: usize = 4;

    /// Sends (part of) `bytes` with `descriptors` attached to the first byte. Returns how many
    /// bytes went; the descriptors went with them when that is more than 0.
    pub fn send(
        socket: BorrowedFd<'_>,
        bytes: &[u8],
        descriptors: &[BorrowedFd<'_>],
    ) -> io::Result<usize> {
        let mut space =
            [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_PER_FRAME))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !descriptors.is_empty() {
            assert!(descriptors.len() <= MAX_PER_FRAME, "too many descriptors for one frame");
            if !control.push(SendAncillaryMessage::ScmRights(descriptors)) {
                return Err(io::Error::other("the descriptors do not fit the control buffer"));
            }
        }
        let slices = [io::IoSlice::new(bytes)];
        Ok(rustix::net::sendmsg(socket, &slices, &mut control, SendFlags::NOSIGNAL)?)
    }

    /// Receives bytes into `buffer`, queueing any descriptors that came with them (close-on-exec)
    /// in `received`. Returns how many bytes came; 0 is the end of the stream.
    pub fn receive(
        socket: BorrowedFd<'_>,
        buffer: &mut [u8],
        received: &mut VecDeque<OwnedFd>,
    ) -> io::Result<usize> {
        let mut space =
            [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_PER_FRAME * 4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut slices = [io::IoSliceMut::new(buffer)];
        let message =
            rustix::net::recvmsg(socket, &mut slices, &mut control, RecvFlags::CMSG_CLOEXEC)?;
        for ancillary in control.drain() {
            if let RecvAncillaryMessage::ScmRights(descriptors) = ancillary {
                received.extend(descriptors);
            }
        }
        Ok(message.bytes)
    }

    /// Borrows each descriptor, for [`send`].
    pub fn borrowed(descriptors: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
        descriptors.iter().map(AsFd::as_fd).collect()
    }
}

/// A [`HostCounters`] page in shared memory: created by the host, mapped by the daemon.
#[cfg(unix)]
#[derive(Debug)]
pub struct SharedCounters {
    map: memmap2::MmapMut,
    file: std::fs::File,
}

#[cfg(unix)]
impl SharedCounters {
    /// A new zeroed page in a memfd (the host's side).
    pub fn create() -> std::io::Result<Self> {
        use rustix::fs::{MemfdFlags, memfd_create};
        let descriptor = memfd_create("hotswap-counters", MemfdFlags::CLOEXEC)?;
        let file = std::fs::File::from(descriptor);
        file.set_len(HostCounters::SIZE as u64)?;
        let counters = Self::map(file)?;
        counters.get().magic.store(COUNTERS_MAGIC, std::sync::atomic::Ordering::SeqCst);
        Ok(counters)
    }

    /// Maps a page the host passed (the daemon's side). Refuses a descriptor that is not a page
    /// of the right size and magic.
    pub fn map(file: std::fs::File) -> std::io::Result<Self> {
        let length = file.metadata()?.len();
        if length != HostCounters::SIZE as u64 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the counters page is {length} bytes, not {}", HostCounters::SIZE),
            ));
        }
        // SAFETY: the memfd is shared only between the daemon and one host, which use it as a
        // `HostCounters` of atomics: concurrent changes are expected and read atomically, and
        // the size checked above covers the struct.
        let map = unsafe { memmap2::MmapOptions::new().len(HostCounters::SIZE).map_mut(&file)? };
        Ok(Self { map, file })
    }

    /// The counters. Every field is an atomic, so a misbehaving host can make the values wrong
    /// but not unsound.
    pub fn get(&self) -> &HostCounters {
        // SAFETY: the map is page-aligned, `HostCounters::SIZE` long (checked at creation), and
        // all-zero or host-written bytes are valid values of a struct of atomic integers.
        unsafe { &*self.map.as_ptr().cast::<HostCounters>() }
    }

    /// The memfd, to pass to the daemon.
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_whole_and_byte_by_byte() {
        let mut wire = Vec::new();
        encode_frame(&HostCommand::Connection, b"GET / HTTP/1.1\r\n", &mut wire);
        encode_frame(&HostCommand::ExportState { request: 7 }, b"", &mut wire);
        let mut buffer = BytesMut::new();
        let mut frames = Vec::new();
        for byte in &wire {
            buffer.extend_from_slice(&[*byte]);
            while let Some(frame) = decode_frame(&mut buffer).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].message::<HostCommand>().unwrap(), HostCommand::Connection);
        assert_eq!(&frames[0].payload[..], b"GET / HTTP/1.1\r\n");
        assert_eq!(
            frames[1].message::<HostCommand>().unwrap(),
            HostCommand::ExportState { request: 7 }
        );
        assert!(buffer.is_empty());
    }

    #[test]
    fn an_over_long_part_is_an_error() {
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&(2u32 * 1024 * 1024).to_le_bytes());
        buffer.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            decode_frame(&mut buffer),
            Err(ControlError::TooLong { length: 2 * 1024 * 1024 })
        );
    }

    #[test]
    fn a_header_that_is_not_a_message_is_an_error_not_a_panic() {
        let mut wire = Vec::new();
        encode_frame(&serde_json::json!({"command": "format the disk"}), b"", &mut wire);
        let frame = decode_frame(&mut BytesMut::from(&wire[..])).unwrap().unwrap();
        assert!(matches!(frame.message::<HostCommand>(), Err(ControlError::Json(_))));
    }

    #[test]
    fn descriptor_counts() {
        assert_eq!(HostCommand::Connection.descriptors(), 1);
        assert_eq!(
            HostCommand::Start { policy: StatePolicy::Reject, with_state: false }.descriptors(),
            0
        );
        assert_eq!(
            HostCommand::Start { policy: StatePolicy::Reject, with_state: true }.descriptors(),
            1
        );
        assert_eq!(HostReport::Ready { pid: 1, control_version: 1 }.descriptors(), 1);
        assert_eq!(
            HostReport::StateExported { request: 1, bytes: 0, export_ms: 0.0 }.descriptors(),
            0
        );
        assert_eq!(
            HostReport::StateExported { request: 1, bytes: 10, export_ms: 0.0 }.descriptors(),
            1
        );
    }

    #[test]
    fn crash_record_round_trips_and_the_first_writer_wins() {
        // SAFETY: all-zero bytes are a valid (empty) record: every field is an atomic integer.
        let record: CrashRecord = unsafe { std::mem::zeroed() };
        assert_eq!(record.read(), None);
        record.write(CRASH_STACK_OVERFLOW, 11, 0x1000, b"hotswap-g3", b"GET /deep?n=1");
        record.write(CRASH_SIGNAL, 6, 0, b"other", b"POST /other");
        assert_eq!(
            record.read(),
            Some(CrashFacts {
                kind: CRASH_STACK_OVERFLOW,
                signal: 11,
                fault_address: 0x1000,
                thread_name: Some("hotswap-g3".to_owned()),
                request: Some("GET /deep?n=1".to_owned()),
            })
        );
        let long = vec![b'x'; 2000];
        // SAFETY: as above.
        let record: CrashRecord = unsafe { std::mem::zeroed() };
        record.write(CRASH_SIGNAL, 11, 0, &long, &long);
        let facts = record.read().unwrap();
        assert_eq!(facts.thread_name.unwrap().len(), CrashRecord::THREAD_NAME_BYTES);
        assert_eq!(facts.request.unwrap().len(), CrashRecord::REQUEST_BYTES);
    }

    #[test]
    fn the_panic_ring_keeps_the_last_four() {
        // SAFETY: all-zero bytes are a valid empty ring: every field is an atomic integer.
        let ring: PanicRing = unsafe { std::mem::zeroed() };
        assert!(ring.read().is_empty());
        ring.push(b"first");
        assert_eq!(ring.read(), ["first"]);
        for text in ["second", "third", "fourth", "fifth"] {
            ring.push(text.as_bytes());
        }
        assert_eq!(ring.read(), ["second", "third", "fourth", "fifth"]);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded_message(&text);
        assert!(cut.len() < text.len());
        assert!(cut.contains("more bytes cut"));
        assert_eq!(bounded_message("short"), "short");
    }
}
