//! The host's end of the control channel: blocking reads of commands on the main thread, and a
//! writer thread that sends reports in order, so that library threads (logging, giving back
//! connections) never wait on the socket.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

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

/// Sends reports to the daemon through the writer thread. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ReportSender {
    queue: SyncSender<Outgoing>,
    dropped: std::sync::Arc<AtomicU64>,
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
        let thread = std::thread::Builder::new()
            .name("hotswap-host-writer".to_owned())
            .spawn(move || write_reports(socket, outgoing))?;
        Ok((Self { queue, dropped: Default::default() }, thread))
    }

    /// Sends a report, waiting for room in the queue.
    pub(crate) fn send(&self, report: &HostReport, payload: &[u8], descriptors: Vec<OwnedFd>) {
        debug_assert_eq!(report.descriptors(), descriptors.len());
        let mut frame = Vec::new();
        control::encode_frame(report, payload, &mut frame);
        let _ = self.queue.send(Outgoing { frame, descriptors });
    }

    /// Sends a report if the queue has room, else drops and counts it (for log records: a
    /// handler logging in a loop must not stall its threads on the daemon).
    pub(crate) fn offer(&self, report: &HostReport) {
        let mut frame = Vec::new();
        control::encode_frame(report, b"", &mut frame);
        match self.queue.try_send(Outgoing { frame, descriptors: Vec::new() }) {
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

fn write_reports(socket: UnixStream, outgoing: Receiver<Outgoing>) {
    while let Ok(message) = outgoing.recv() {
        let mut sent = 0;
        let mut attached = &message.descriptors[..];
        while sent < message.frame.len() {
            let borrowed = descriptors::borrowed(attached);
            match descriptors::send(socket.as_fd(), &message.frame[sent..], &borrowed) {
                Ok(0) => return,
                Ok(written) => {
                    sent += written;
                    attached = &[];
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // The daemon is gone.
                Err(_) => return,
            }
        }
    }
}
