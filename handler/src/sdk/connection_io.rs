//! The byte stream hyper serves a connection on: the socket, with the bytes read from it earlier
//! in front, and for a WebSocket the watch over its outgoing frames that lets the generation end
//! it cleanly (close code 1012, "service restart") when its stream drain timeout passes.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::instance::{CountGuard, Host};

/// The close frame a generation sends to a WebSocket it ends: FIN + close opcode, code 1012
/// ("service restart", RFC 6455 §7.4 as registered by IANA), and a reason.
const CLOSE_REASON: &[u8] = b"hotswap: new code is live, reconnect";

/// How long a client gets to answer our close frame before the socket is shut down.
const CLOSE_HANDSHAKE_GRACE: Duration = Duration::from_secs(1);

/// How long the generation waits for the app to finish the WebSocket message it is writing
/// before it cuts the connection.
const MESSAGE_BOUNDARY_WAIT: Duration = Duration::from_secs(2);

pub(crate) struct ConnectionIo {
    unread: Bytes,
    stream: Arc<TcpStream>,
    upgrade: Option<Arc<UpgradeWatch>>,
}

impl ConnectionIo {
    /// A connection that does not ask for an upgrade.
    pub(crate) fn plain(unread: Bytes, stream: TcpStream) -> Self {
        Self { unread, stream: Arc::new(stream), upgrade: None }
    }

    /// A connection whose first request asks for an upgrade: once the response is `101`, it
    /// counts as a stream, and when `streams_closing` turns true it is ended (a WebSocket with a
    /// close frame at a message boundary, anything else by shutting the socket down).
    pub(crate) fn upgradeable(
        unread: Bytes,
        stream: TcpStream,
        websocket: bool,
        host: Host,
        streams_closing: watch::Receiver<bool>,
    ) -> Self {
        let stream = Arc::new(stream);
        let watch =
            Arc::new(UpgradeWatch { websocket, host, state: Mutex::new(WriterState::default()) });
        tokio::spawn(end_at_stream_drain(watch.clone(), stream.clone(), streams_closing));
        Self { unread, stream, upgrade: Some(watch) }
    }

    /// The socket and the bytes not yet consumed, for handing the connection back.
    pub(crate) fn into_parts(self) -> Option<(TcpStream, Bytes)> {
        let stream = Arc::try_unwrap(self.stream).ok()?;
        Some((stream, self.unread))
    }
}

impl AsyncRead for ConnectionIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() {
            let length = self.unread.len().min(buffer.remaining());
            let chunk = self.unread.split_to(length);
            buffer.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            // SAFETY: `read(2)` only writes into the slice, and only the bytes it reports are
            // marked initialised (as tokio's own `TcpStream::poll_read` does); zeroing hyper's
            // read buffer before every read would cost on every request.
            let unfilled = unsafe {
                &mut *(buffer.unfilled_mut() as *mut [std::mem::MaybeUninit<u8>] as *mut [u8])
            };
            match self.stream.try_read(unfilled) {
                Ok(read) => {
                    // SAFETY: the kernel wrote `read` bytes.
                    unsafe { buffer.assume_init(read) };
                    buffer.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for ConnectionIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(bytes)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = buffers.iter().map(|buffer| buffer.len()).sum();
        let mut state = self.upgrade.as_ref().map(|watch| watch.state.lock().expect("writer"));
        if let Some(state) = &state
            && state.close == CloseState::Sent
        {
            // The generation ended the WebSocket: what the app writes after that goes nowhere.
            return Poll::Ready(Ok(total));
        }
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_write_vectored(buffers) {
                Ok(written) => {
                    if let (Some(state), Some(watch)) = (&mut state, &self.upgrade) {
                        let mut remaining = written;
                        for buffer in buffers {
                            let take = remaining.min(buffer.len());
                            state.observe(&buffer[..take], watch);
                            remaining -= take;
                            if remaining == 0 {
                                break;
                            }
                        }
                        if state.close == CloseState::Requested && state.at_message_boundary() {
                            // The message the app was writing is complete: the close goes now.
                            state.try_send_close(&self.stream);
                        }
                    }
                    return Poll::Ready(Ok(written));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = socket2::SockRef::from(&*self.stream).shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}

/// What the generation knows about an upgradeable connection's outgoing bytes.
struct UpgradeWatch {
    websocket: bool,
    host: Host,
    state: Mutex<WriterState>,
}

#[derive(Default)]
struct WriterState {
    mode: Mode,
    frames: FrameParser,
    close: CloseState,
    /// Counts the connection as a stream once it upgraded.
    stream_guard: Option<CountGuard>,
}

#[derive(Default, PartialEq, Eq)]
enum Mode {
    /// The response head is being written; holds its bytes so far (bounded).
    #[default]
    Head,
    /// Upgraded to a WebSocket: server frames follow.
    WebSocketFrames,
    /// Upgraded to something else.
    OtherUpgrade,
    /// The response was not `101`: an ordinary connection.
    NotUpgraded,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum CloseState {
    #[default]
    Open,
    /// The stream drain timeout passed while the app was in the middle of a message.
    Requested,
    Sent,
}

impl WriterState {
    fn observe(&mut self, bytes: &[u8], watch: &UpgradeWatch) {
        match self.mode {
            Mode::Head => {
                // The status line is the first thing written: "HTTP/1.1 101 Switching Protocols".
                self.frames.head.extend_from_slice(bytes);
                let Some(end) =
                    self.frames.head.windows(4).position(|window| window == b"\r\n\r\n")
                else {
                    if self.frames.head.len() > 64 * 1024 {
                        self.mode = Mode::NotUpgraded;
                    }
                    return;
                };
                let switched = self.frames.head.starts_with(b"HTTP/1.1 101")
                    || self.frames.head.starts_with(b"HTTP/1.0 101");
                let rest = self.frames.head.split_off(end + 4);
                self.frames.head = Vec::new();
                if !switched {
                    self.mode = Mode::NotUpgraded;
                    return;
                }
                self.stream_guard = Some(watch.host.stream());
                if watch.websocket {
                    self.mode = Mode::WebSocketFrames;
                    self.frames.advance(&rest);
                } else {
                    self.mode = Mode::OtherUpgrade;
                }
            }
            Mode::WebSocketFrames => self.frames.advance(bytes),
            Mode::OtherUpgrade | Mode::NotUpgraded => {}
        }
    }

    fn at_message_boundary(&self) -> bool {
        self.frames.at_message_boundary()
    }

    /// Writes the close frame if the socket takes it whole right now.
    fn try_send_close(&mut self, stream: &TcpStream) -> bool {
        let mut frame = vec![0x88, (2 + CLOSE_REASON.len()) as u8];
        frame.extend_from_slice(&1012u16.to_be_bytes());
        frame.extend_from_slice(CLOSE_REASON);
        match stream.try_write(&frame) {
            Ok(written) if written == frame.len() => {
                self.close = CloseState::Sent;
                true
            }
            // Part of it: the stream is no longer a WebSocket anyone can read. Cut it.
            Ok(_) => {
                self.close = CloseState::Sent;
                let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Both);
                true
            }
            Err(_) => false,
        }
    }
}

/// Follows server-to-client WebSocket frames (RFC 6455 §5.2) through the bytes written, to know
/// where one message ends and the next begins.
#[derive(Default)]
struct FrameParser {
    /// The response head while it is being written (only in `Mode::Head`).
    head: Vec<u8>,
    header: [u8; 14],
    header_length: usize,
    payload_left: u64,
    /// The frame whose payload is being written: its FIN bit and opcode.
    fin: bool,
    opcode: u8,
    /// A fragmented data message is open (a data frame without FIN was sent).
    in_fragmented_message: bool,
}

impl FrameParser {
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let take = (self.payload_left.min(bytes.len() as u64)) as usize;
                bytes = &bytes[take..];
                self.payload_left -= take as u64;
                if self.payload_left == 0 {
                    self.frame_done();
                }
                continue;
            }
            self.header[self.header_length] = bytes[0];
            self.header_length += 1;
            bytes = &bytes[1..];
            if self.header_length < 2 {
                continue;
            }
            let length7 = self.header[1] & 0x7f;
            let masked = self.header[1] & 0x80 != 0;
            let extended = match length7 {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let needed = 2 + extended + if masked { 4 } else { 0 };
            if self.header_length < needed {
                continue;
            }
            self.payload_left = match extended {
                2 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                8 => u64::from_be_bytes(self.header[2..10].try_into().expect("8 bytes")),
                _ => u64::from(length7),
            };
            self.fin = self.header[0] & 0x80 != 0;
            self.opcode = self.header[0] & 0x0f;
            self.header_length = 0;
            if self.payload_left == 0 {
                self.frame_done();
            }
        }
    }

    fn frame_done(&mut self) {
        // Control frames (close, ping, pong) may come between the fragments of a message.
        if self.opcode < 0x8 {
            self.in_fragmented_message = !self.fin;
        }
    }

    fn at_message_boundary(&self) -> bool {
        self.header_length == 0 && self.payload_left == 0 && !self.in_fragmented_message
    }
}

/// Waits for the stream drain timeout, then ends an upgraded connection properly.
async fn end_at_stream_drain(
    watch: Arc<UpgradeWatch>,
    stream: Arc<TcpStream>,
    mut streams_closing: watch::Receiver<bool>,
) {
    if streams_closing.wait_for(|closing| *closing).await.is_err() {
        return;
    }
    if Arc::strong_count(&stream) == 1 {
        // The connection is gone already.
        return;
    }
    let deadline = tokio::time::Instant::now() + MESSAGE_BOUNDARY_WAIT;
    loop {
        {
            let mut state = watch.state.lock().expect("writer");
            match state.mode {
                Mode::NotUpgraded => return,
                Mode::Head => {
                    // Still an HTTP request: the generation's drain handles it.
                    return;
                }
                Mode::OtherUpgrade => {
                    let _ = socket2::SockRef::from(&*stream).shutdown(std::net::Shutdown::Both);
                    return;
                }
                Mode::WebSocketFrames => {
                    if state.close == CloseState::Sent {
                        break;
                    }
                    if state.at_message_boundary() && state.try_send_close(&stream) {
                        break;
                    }
                    state.close = CloseState::Requested;
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            // The app never finished its message (or the client does not read): cut.
            let _ = socket2::SockRef::from(&*stream).shutdown(std::net::Shutdown::Both);
            return;
        }
        tokio::select! {
            _ = stream.writable() => {}
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    // The client answers with its own close frame (the app reads it and ends); a client that
    // does not is cut after a grace.
    tokio::time::sleep(CLOSE_HANDSHAKE_GRACE).await;
    if Arc::strong_count(&stream) > 1 {
        let _ = socket2::SockRef::from(&*stream).shutdown(std::net::Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::FrameParser;

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            length @ 0..=125 => bytes.push(length as u8),
            length @ 126..=65535 => {
                bytes.push(126);
                bytes.extend_from_slice(&(length as u16).to_be_bytes());
            }
            length => {
                bytes.push(127);
                bytes.extend_from_slice(&(length as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn message_boundaries_through_any_split_of_the_bytes() {
        let mut wire = Vec::new();
        wire.extend(frame(true, 1, b"hello"));
        wire.extend(frame(false, 2, &[7; 300]));
        wire.extend(frame(true, 9, b"ping between fragments"));
        wire.extend(frame(true, 0, &[8; 70_000]));
        // Boundaries: after the first frame, and after the last (the fragmented message).
        let first_end = 7;
        for chunk in [1, 2, 3, 7, 100, 4096, wire.len()] {
            let mut parser = FrameParser::default();
            let mut boundaries = Vec::new();
            let mut offset = 0;
            for piece in wire.chunks(chunk) {
                for byte in piece {
                    parser.advance(std::slice::from_ref(byte));
                    offset += 1;
                    if parser.at_message_boundary() {
                        boundaries.push(offset);
                    }
                }
            }
            assert_eq!(boundaries, vec![first_end, wire.len()], "chunk size {chunk}");
        }
        let mut parser = FrameParser::default();
        parser.advance(&wire[..first_end + 10]);
        assert!(!parser.at_message_boundary());
        parser.advance(&wire[first_end + 10..]);
        assert!(parser.at_message_boundary());
    }
}
