//! The host's end of the control channel: blocking reads of commands on the main thread, and
//! reports sent in order: straight onto the socket when nothing waits to be sent (an answer on a
//! swap's path costs no thread hand-off), else through a writer thread, so that library threads
//! that log never wait on the socket.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use hotswap_protocol::control::{self, HostCommand, HostReport, descriptors};

/// A command as read: the message, its payload, and the descriptors that came with it.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) command: HostCommand,
    pub(crate) payload: Bytes,
    pub(crate) descriptors: Vec<OwnedFd>,
}

/// Reads commands from the daemon.
pub(crate) struct CommandReader {
    socket: UnixStream,
    buffer: BytesMut,
    descriptors: VecDeque<OwnedFd>,
}

impl CommandReader {
    pub(crate) fn new(socket: UnixStream) -> Self {
        Self { socket, buffer: BytesMut::with_capacity(64 * 1024), descriptors: VecDeque::new() }
    }

    /// The next command; `Ok(None)` when the daemon closed the channel (it is gone: the host
    /// exits).
    pub(crate) fn next(&mut self) -> io::Result<Option<Received>> {
        loop {
            match control::decode_frame(&mut self.buffer) {
                Ok(Some(frame)) => {
                    let command: HostCommand = frame
                        .message()
                        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                    let wanted = command.descriptors();
                    if self.descriptors.len() < wanted {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{command:?} came without its descriptor"),
                        ));
                    }
                    let descriptors = self.descriptors.drain(..wanted).collect();
                    return Ok(Some(Received { command, payload: frame.payload, descriptors }));
                }
                Ok(None) => {}
                Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
            }
            let mut chunk = [0u8; 64 * 1024];
            let read = loop {
                match descriptors::receive(self.socket.as_fd(), &mut chunk, &mut self.descriptors) {
                    Ok(read) => break read,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(error),
                }
            };
            if read == 0 {
                return Ok(None);
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

/// One frame to send, with its descriptors.
struct Outgoing {
    frame: Vec<u8>,
    descriptors: Vec<OwnedFd>,
}

/// Sends reports to the daemon. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ReportSender {
    queue: SyncSender<Outgoing>,
    dropped: Arc<AtomicU64>,
    writer: Arc<Writer>,
}

/// The socket, written by one thread at a time, and how many reports are queued for the writer
/// thread or being sent by it (a report is sent directly only when that is zero, so that reports
/// keep their order).
#[derive(Debug)]
struct Writer {
    socket: Mutex<UnixStream>,
    queued: AtomicU64,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing").field("bytes", &self.frame.len()).finish_non_exhaustive()
    }
}

/// How many reports may wait for the writer thread; beyond that, log records are dropped (and
/// counted), answers wait.
const QUEUE: usize = 4096;

impl ReportSender {
    /// Starts the writer thread on `socket`. The thread ends when every sender is gone, or when
    /// the daemon stops reading (then the host has no one to serve and exits).
    pub(crate) fn start(socket: UnixStream) -> io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (queue, outgoing) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = Arc::new(Writer { socket: Mutex::new(socket), queued: AtomicU64::new(0) });
        let thread = std::thread::Builder::new().name("hotswap-host-writer".to_owned()).spawn({
            let writer = writer.clone();
            move || write_reports(&writer, outgoing)
        })?;
        Ok((Self { queue, dropped: Default::default(), writer }, thread))
    }

    /// Sends a report: at once when nothing is queued and no other thread is writing, else
    /// through the writer thread (waiting for room in its queue).
    pub(crate) fn send(&self, report: &HostReport, payload: &[u8], descriptors: Vec<OwnedFd>) {
        debug_assert_eq!(report.descriptors(), descriptors.len());
        let mut frame = Vec::new();
        control::encode_frame(report, payload, &mut frame);
        let message = Outgoing { frame, descriptors };
        if self.writer.queued.load(Ordering::SeqCst) == 0
            && let Ok(socket) = self.writer.socket.try_lock()
            // Checked again with the socket held: the writer thread counts a report down only
            // once it is sent, so a report queued before this one is never overtaken.
            && self.writer.queued.load(Ordering::SeqCst) == 0
        {
            // A failed write means the daemon is gone; the writer thread ends the same way.
            let _ = write_one(&socket, &message);
            return;
        }
        self.enqueue(message);
    }

    fn enqueue(&self, message: Outgoing) {
        self.writer.queued.fetch_add(1, Ordering::SeqCst);
        if self.queue.send(message).is_err() {
            self.writer.queued.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Sends a report if the queue has room, else drops and counts it (for log records: a
    /// handler logging in a loop must not stall its threads on the daemon).
    pub(crate) fn offer(&self, report: &HostReport) {
        let mut frame = Vec::new();
        control::encode_frame(report, b"", &mut frame);
        self.writer.queued.fetch_add(1, Ordering::SeqCst);
        let offered = self.queue.try_send(Outgoing { frame, descriptors: Vec::new() });
        if offered.is_err() {
            self.writer.queued.fetch_sub(1, Ordering::SeqCst);
        }
        match offered {
            Ok(()) => {
                let dropped = self.dropped.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    self.offer(&HostReport::Log {
                        level: hotswap_protocol::events::LogLevel::Warn,
                        target: "hotswap".to_owned(),
                        message: format!(
                            "{dropped} log records of the handler were dropped: it logs faster than \
                             the daemon reads"
                        ),
                    });
                }
            }
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn write_reports(writer: &Writer, outgoing: Receiver<Outgoing>) {
    while let Ok(message) = outgoing.recv() {
        let sent = {
            let socket = writer.socket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let sent = write_one(&socket, &message);
            writer.queued.fetch_sub(1, Ordering::SeqCst);
            sent
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Writes one frame with its descriptors; `Err` when the daemon is gone.
fn write_one(socket: &UnixStream, message: &Outgoing) -> Result<(), ()> {
    let mut sent = 0;
    let mut attached = &message.descriptors[..];
    while sent < message.frame.len() {
        let borrowed = descriptors::borrowed(attached);
        match descriptors::send(socket.as_fd(), &message.frame[sent..], &borrowed) {
            Ok(0) => return Err(()),
            Ok(written) => {
                sent += written;
                attached = &[];
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    Ok(())
}
