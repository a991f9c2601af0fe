//! Fuzzes the line framer: the first byte chooses the line limit and the second how the rest
//! is cut into reads. The framer must never panic, never buffer more than one line, and give
//! exactly the lines (and one error per too-long line) that a plain splitter finds.

#![no_main]

use bytes::BytesMut;
use hotswap_protocol::framing::LineFramer;
use libfuzzer_sys::fuzz_target;

/// Lines of `stream` as the protocol defines them: without the newline and a `\r` before it,
/// blank lines skipped, a line over `limit` bytes an error (even before its newline arrives).
fn reference_lines(stream: &[u8], limit: usize) -> Vec<Result<Vec<u8>, ()>> {
    let mut lines = Vec::new();
    let mut rest = stream;
    while let Some(newline) = rest.iter().position(|&byte| byte == b'\n') {
        let line = &rest[..newline];
        rest = &rest[newline + 1..];
        let allowed = if line.last() == Some(&b'\r') { limit + 1 } else { limit };
        if line.len() > allowed {
            lines.push(Err(()));
            continue;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(u8::is_ascii_whitespace) {
            lines.push(Ok(line.to_vec()));
        }
    }
    // A line still without its newline is refused as soon as it cannot fit any more.
    if rest.len() > limit + 1 {
        lines.push(Err(()));
    }
    lines
}

fuzz_target!(|data: &[u8]| {
    let [limit_byte, chunk_byte, stream @ ..] = data else { return };
    let limit = usize::from(*limit_byte % 64) + 1;
    let mut chunk_seed = u32::from(*chunk_byte) | 1;
    let mut framer = LineFramer::new(limit);
    let mut buffer = BytesMut::new();
    let mut produced = Vec::new();
    let mut offset = 0;
    while offset < stream.len() {
        chunk_seed = chunk_seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let chunk = ((chunk_seed >> 16) as usize % (limit * 2 + 3) + 1).min(stream.len() - offset);
        buffer.extend_from_slice(&stream[offset..offset + chunk]);
        offset += chunk;
        loop {
            match framer.decode(&mut buffer) {
                Ok(Some(line)) => {
                    assert!(line.len() <= limit + 1 && !line.contains(&b'\n'));
                    produced.push(Ok(line.to_vec()));
                }
                Ok(None) => break,
                Err(_) => produced.push(Err(())),
            }
        }
        assert!(
            buffer.len() <= limit + 1,
            "{} bytes buffered with a limit of {limit}",
            buffer.len()
        );
    }
    assert_eq!(produced, reference_lines(stream, limit));
});
