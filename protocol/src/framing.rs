//! Newline-delimited framing: one JSON message per line, at most [`MAX_LINE_BYTES`] bytes.
//!
//! The framer is a pure function over a byte buffer (it never touches IO), in the style of
//! mini-redis's `frame.rs`: bytes go in, complete lines come out, "need more bytes" is `Ok(None)`.
//! An over-long line is an error the caller reports; the framer then skips to the next newline
//! without buffering the rest of the line, so a hostile peer cannot grow our memory.
//!
//! [`LineReader`] is the thin IO adapter over any `AsyncRead`.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest accepted line, newline excluded: 1 MiB.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// A line that could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The line is longer than the limit. `seen` counts the bytes received before the framer gave
    /// up on it (the line may be longer still).
    #[error(
        "message too long: more than {limit} bytes without a newline (saw {seen} bytes); the limit is 1 MiB per line"
    )]
    TooLong { limit: usize, seen: usize },
}

/// Splits a byte stream into lines. Keeps only the state needed to skip an over-long line.
#[derive(Debug, Clone)]
pub struct LineFramer {
    limit: usize,
    /// True while the rest of an over-long line is being thrown away.
    discarding: bool,
    /// How many leading bytes of the buffer are known to hold no newline, so that a long line
    /// arriving in many small reads is scanned once, not once per read.
    scanned: usize,
}

impl Default for LineFramer {
    fn default() -> Self {
        Self::new(MAX_LINE_BYTES)
    }
}

impl LineFramer {
    /// A framer that accepts lines of at most `limit` bytes (newline excluded).
    pub fn new(limit: usize) -> Self {
        Self { limit, discarding: false, scanned: 0 }
    }

    /// Takes the next complete line out of `buffer`, without its `\n` (and without a `\r`
    /// before it). Returns `Ok(None)` when `buffer` holds no complete line yet. Empty lines are
    /// skipped. After `Err(TooLong)` the framer discards bytes up to the next newline and then
    /// goes on normally; calling `decode` again is always correct.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        loop {
            let newline = self.find_newline(buffer);
            if self.discarding {
                match newline {
                    Some(index) => {
                        buffer.advance(index + 1);
                        self.scanned = 0;
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        buffer.clear();
                        self.scanned = 0;
                        return Ok(None);
                    }
                }
            }
            match newline {
                Some(index) if index > self.limit_with_cr(buffer, index) => {
                    let seen = index;
                    buffer.advance(index + 1);
                    self.scanned = 0;
                    return Err(FrameError::TooLong { limit: self.limit, seen });
                }
                Some(index) => {
                    let mut line = buffer.split_to(index + 1).freeze();
                    self.scanned = 0;
                    line.truncate(index);
                    if line.last() == Some(&b'\r') {
                        line.truncate(index - 1);
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Ok(Some(line));
                }
                None if buffer.len() > self.limit + 1 => {
                    let seen = buffer.len();
                    buffer.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Err(FrameError::TooLong { limit: self.limit, seen });
                }
                None => return Ok(None),
            }
        }
    }

    fn find_newline(&mut self, buffer: &BytesMut) -> Option<usize> {
        let start = self.scanned.min(buffer.len());
        match buffer[start..].iter().position(|&byte| byte == b'\n') {
            Some(offset) => Some(start + offset),
            None => {
                self.scanned = buffer.len();
                None
            }
        }
    }

    /// The limit for a line ending at `index`, allowing one extra byte for a `\r` before `\n`.
    fn limit_with_cr(&self, buffer: &BytesMut, index: usize) -> usize {
        if index > 0 && buffer[index - 1] == b'\r' { self.limit + 1 } else { self.limit }
    }
}

/// Appends `message` and a newline to `out`. `message` must be one line of JSON, which
/// `serde_json::to_vec` always produces.
pub fn encode_line(message: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!message.contains(&b'\n'), "a framed message must not contain a newline");
    out.reserve(message.len() + 1);
    out.extend_from_slice(message);
    out.push(b'\n');
}

/// Reads framed lines from any async byte stream.
#[derive(Debug)]
pub struct LineReader<R> {
    reader: R,
    buffer: BytesMut,
    framer: LineFramer,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(reader: R) -> Self {
        Self::with_limit(reader, MAX_LINE_BYTES)
    }

    pub fn with_limit(reader: R, limit: usize) -> Self {
        Self {
            reader,
            buffer: BytesMut::with_capacity(8 * 1024),
            framer: LineFramer::new(limit),
            eof: false,
        }
    }

    /// The next line, `Ok(None)` at the end of the stream (a final line without a newline is
    /// still returned), or a framing error after which reading can go on.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Result<Bytes, FrameError>>> {
        loop {
            match self.framer.decode(&mut self.buffer) {
                Ok(Some(line)) => return Ok(Some(Ok(line))),
                Err(error) => return Ok(Some(Err(error))),
                Ok(None) => {}
            }
            if self.eof {
                if self.buffer.is_empty() || self.framer.discarding {
                    self.buffer.clear();
                    return Ok(None);
                }
                // A last line without its newline: frame it as if the newline were there.
                self.buffer.extend_from_slice(b"\n");
                continue;
            }
            if self.buffer.capacity() - self.buffer.len() < 4096 {
                self.buffer.reserve(8 * 1024);
            }
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                self.eof = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(framer: &mut LineFramer, buffer: &mut BytesMut) -> Vec<Result<String, FrameError>> {
        let mut out = Vec::new();
        loop {
            match framer.decode(buffer) {
                Ok(Some(line)) => out.push(Ok(String::from_utf8(line.to_vec()).unwrap())),
                Ok(None) => return out,
                Err(error) => out.push(Err(error)),
            }
        }
    }

    #[test]
    fn splits_lines_and_keeps_partial_tail() {
        let mut framer = LineFramer::default();
        let mut buffer = BytesMut::from(&b"{\"a\":1}\n{\"b\":2}\r\n{\"c\""[..]);
        assert_eq!(
            lines(&mut framer, &mut buffer),
            vec![Ok("{\"a\":1}".to_owned()), Ok("{\"b\":2}".to_owned())]
        );
        assert_eq!(&buffer[..], b"{\"c\"");
        buffer.extend_from_slice(b":3}\n");
        assert_eq!(lines(&mut framer, &mut buffer), vec![Ok("{\"c\":3}".to_owned())]);
    }

    #[test]
    fn skips_blank_lines() {
        let mut framer = LineFramer::default();
        let mut buffer = BytesMut::from(&b"\n\r\n  \n{}\n"[..]);
        assert_eq!(lines(&mut framer, &mut buffer), vec![Ok("{}".to_owned())]);
    }

    #[test]
    fn line_at_the_limit_is_accepted_and_one_over_is_not() {
        let mut framer = LineFramer::new(4);
        let mut buffer = BytesMut::from(&b"1234\n12345\nok\n"[..]);
        assert_eq!(
            lines(&mut framer, &mut buffer),
            vec![
                Ok("1234".to_owned()),
                Err(FrameError::TooLong { limit: 4, seen: 5 }),
                Ok("ok".to_owned())
            ]
        );
        let mut buffer = BytesMut::from(&b"1234\r\n"[..]);
        assert_eq!(lines(&mut framer, &mut buffer), vec![Ok("1234".to_owned())]);
    }

    #[test]
    fn over_long_line_without_newline_is_discarded_in_bounded_memory() {
        let mut framer = LineFramer::new(8);
        let mut buffer = BytesMut::from(&b"0123456789"[..]);
        assert_eq!(
            lines(&mut framer, &mut buffer),
            vec![Err(FrameError::TooLong { limit: 8, seen: 10 })]
        );
        assert!(buffer.is_empty(), "the framer must not keep the over-long bytes");
        // The rest of the long line keeps being discarded, chunk after chunk.
        for _ in 0..100 {
            buffer.extend_from_slice(b"xxxxxxxxxxxxxxxxxxxxxxxx");
            assert_eq!(lines(&mut framer, &mut buffer), vec![]);
            assert!(buffer.is_empty());
        }
        buffer.extend_from_slice(b"tail\n{}\n");
        assert_eq!(lines(&mut framer, &mut buffer), vec![Ok("{}".to_owned())]);
    }

    #[test]
    fn encode_appends_newline() {
        let mut out = Vec::new();
        encode_line(b"{}", &mut out);
        encode_line(b"[]", &mut out);
        assert_eq!(out, b"{}\n[]\n");
    }

    #[tokio::test]
    async fn line_reader_reads_across_chunks_and_final_unterminated_line() {
        let (mut writer, reader) = tokio::io::duplex(16);
        let task = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            writer.write_all(b"{\"first\":true}\n").await.unwrap();
            writer.write_all(&[b'x'; 100]).await.unwrap();
            writer.write_all(b"\n{\"last\":true}").await.unwrap();
        });
        let mut reader = LineReader::with_limit(reader, 50);
        assert_eq!(
            reader.next_line().await.unwrap(),
            Some(Ok(Bytes::from_static(b"{\"first\":true}")))
        );
        assert!(matches!(reader.next_line().await.unwrap(), Some(Err(FrameError::TooLong { .. }))));
        assert_eq!(
            reader.next_line().await.unwrap(),
            Some(Ok(Bytes::from_static(b"{\"last\":true}")))
        );
        assert_eq!(reader.next_line().await.unwrap(), None);
        task.await.unwrap();
    }
}
