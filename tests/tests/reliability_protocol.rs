//! The protocol decoders and the line framer against bad input, without cargo-fuzz: a corpus of
//! malformed messages and a few thousand deterministic mutations of the golden vectors, each
//! decoded without a panic into a message or an error with a documented code; and the framer,
//! fed random streams in random chunks, agreeing with a plain reference splitter while never
//! holding more than one line's worth of bytes. (`scripts/fuzz.sh` runs the same targets under
//! libFuzzer for longer.)

use std::time::{Duration, Instant};

use bytes::BytesMut;
use hotswap_protocol::framing::{FrameError, LineFramer};
use hotswap_protocol::jsonrpc::{
    ClientMessage, decode_client_message, decode_daemon_message, encode_request, error_code,
};
use hotswap_tests::artifacts::repository_root;

/// The error codes `protocol/README.md` documents for a line a client sends.
const CLIENT_LINE_CODES: [i64; 4] = [
    error_code::PARSE_ERROR,
    error_code::INVALID_REQUEST,
    error_code::METHOD_NOT_FOUND,
    error_code::INVALID_PARAMS,
];

/// The slowest a single line may decode (10 MiB lines included), generously for a debug build.
const SLOWEST_DECODE: Duration = Duration::from_secs(2);

/// A small deterministic random number generator (xorshift64*), so failures replay.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

/// Decodes `line` as the daemon does and checks what the protocol promises for any input.
fn check_client_line(line: &[u8]) {
    let started = Instant::now();
    let decoded = decode_client_message(line);
    let took = started.elapsed();
    let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
    assert!(took < SLOWEST_DECODE, "decoding took {took:?}: {shown}");
    match decoded {
        Ok(message) => {
            // A decoded message encodes back to a line that decodes to the same message.
            let (id, request) = match &message {
                ClientMessage::Request { id, request } => (Some(id), request),
                ClientMessage::Notification(request) => (None, request),
            };
            let again = decode_client_message(&encode_request(id, request))
                .unwrap_or_else(|error| panic!("re-encoding {shown} failed: {error:?}"));
            assert_eq!(again, message, "{shown}");
        }
        Err(error) => {
            assert!(
                CLIENT_LINE_CODES.contains(&error.error.code),
                "undocumented code {} for {shown}",
                error.error.code
            );
            assert!(!error.error.message.is_empty(), "an error says what is wrong: {shown}");
            assert!(error.error.message.len() < 4096, "an error message stays short: {shown}");
            if error.error.code == error_code::PARSE_ERROR {
                assert!(error.id.is_none(), "a parse error has no id to answer with: {shown}");
            }
        }
    }
}

/// Decodes `line` as a client does: anything but a panic is fine.
fn check_daemon_line(line: &[u8]) {
    let started = Instant::now();
    let _ = decode_daemon_message(line);
    assert!(
        started.elapsed() < SLOWEST_DECODE,
        "{}",
        String::from_utf8_lossy(&line[..line.len().min(200)])
    );
}

/// Lines from the golden vectors: `(line, from_client)`.
fn vector_lines() -> Vec<(Vec<u8>, bool)> {
    let mut lines = Vec::new();
    let vectors = repository_root().join("protocol/vectors");
    for line in std::fs::read_to_string(vectors.join("messages.jsonl")).unwrap().lines() {
        let vector: serde_json::Value = serde_json::from_str(line).unwrap();
        let message = serde_json::to_vec(&vector["message"]).unwrap();
        lines.push((message, vector["from"] == "client"));
    }
    for line in std::fs::read_to_string(vectors.join("errors.jsonl")).unwrap().lines() {
        let vector: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(text) = vector["line"].as_str() {
            lines.push((text.as_bytes().to_vec(), true));
        }
    }
    assert!(lines.len() > 20, "the vectors are there: {}", lines.len());
    lines
}

/// Malformed lines, one per way a line can be wrong.
fn malformed_corpus() -> Vec<Vec<u8>> {
    let request = |id: &str, method: &str, params: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":{method},"params":{params}}}"#).into_bytes()
    };
    let mut corpus: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\xff\xfe\xfd".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xc3\x28\"}".to_vec(),
        b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}\0".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"} trailing".to_vec(),
        b"null".to_vec(),
        b"true".to_vec(),
        b"\"status\"".to_vec(),
        b"1e400".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        br#"{"jsonrpc":"1.0","id":1,"method":"status"}"#.to_vec(),
        br#"{"jsonrpc":2.0,"id":1,"method":"status"}"#.to_vec(),
        br#"{"id":1,"method":"status"}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_vec(),
        br#"{"jsonrpc":"2.0","method":"status","id":1,"method":"reload"}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"status","params":{"a":"\ud800"}}"#.to_vec(),
        br#"{"jsonrpc":"2.0","id":1,"method":"st\u0000atus"}"#.to_vec(),
    ];
    for id in ["1.5", "true", "{}", "[]", "99999999999999999999", "-1", "\"\"", "null", "1e3"] {
        corpus.push(request(id, "\"status\"", "{}"));
    }
    for method in [
        "1",
        "null",
        "[]",
        "{}",
        "\"\"",
        "\"STATUS\"",
        "\"deploy\"",
        "\"rpc.exit\"",
        "\"__proto__\"",
    ] {
        corpus.push(request("1", method, "{}"));
    }
    for params in ["[]", "\"x\"", "7", "true", "[{\"paths\":[]}]"] {
        corpus.push(request("1", "\"didSave\"", params));
    }
    for paths in ["7", "null", "\"/a.rs\"", "[7]", "[null]", "[[\"/a.rs\"]]", "{}"] {
        corpus.push(request("1", "\"didSave\"", &format!("{{\"paths\":{paths}}}")));
    }
    for version in ["\"1\"", "-1", "1.0", "18446744073709551616", "null", "2"] {
        corpus.push(request(
            "1",
            "\"initialize\"",
            &format!("{{\"protocolVersion\":{version},\"clientName\":\"x\"}}"),
        ));
    }
    corpus.push(request("1", "\"initialize\"", "{\"protocolVersion\":1,\"clientName\":7}"));
    corpus.push(request("1", "\"initialize\"", "{\"protocolVersion\":1}"));
    // Deep nesting, arrays and objects, just under and far over the limit.
    for depth in [100, 127, 128, 129, 1_000, 100_000] {
        corpus.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes());
        corpus.push(
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"status","params":{}{}}}"#,
                "{\"a\":".repeat(depth),
                "}".repeat(depth + 1)
            )
            .into_bytes(),
        );
    }
    // Unclosed nesting, and huge values.
    corpus.push("[".repeat(1_000_000).into_bytes());
    corpus.push(format!("\"{}\"", "x".repeat(10 * 1024 * 1024)).into_bytes());
    corpus.push(
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"didSave","params":{{"paths":[{}"/a.rs"]}}}}"#,
            "\"/x.rs\",".repeat(100_000)
        )
        .into_bytes(),
    );
    corpus.push(request(&format!("\"{}\"", "i".repeat(1024 * 1024)), "\"status\"", "{}"));
    corpus
}

#[test]
fn every_malformed_message_is_an_error_with_a_documented_code() {
    for line in malformed_corpus() {
        check_client_line(&line);
        check_daemon_line(&line);
    }
    // A few that must be errors, not messages.
    for line in [&b"\xff"[..], b"[]", b"{}", br#"{"jsonrpc":"2.0","id":1.5,"method":"status"}"#] {
        assert!(decode_client_message(line).is_err(), "{}", String::from_utf8_lossy(line));
    }
}

/// One random change to `line`, with `other` lines to splice from.
fn mutate(random: &mut Random, line: &[u8], others: &[(Vec<u8>, bool)]) -> Vec<u8> {
    const INTERESTING: [&[u8]; 16] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b"\\",
        b":",
        b",",
        b"null",
        b"-",
        b"1e999",
        b"\\u0000",
        b"\\ud800",
        b"\xff",
        b"\n",
        b"\"jsonrpc\":\"2.0\"",
    ];
    let mut bytes = line.to_vec();
    let position = random.below(bytes.len() + 1);
    match random.below(8) {
        0 if !bytes.is_empty() => {
            let at = random.below(bytes.len());
            bytes[at] ^= 1 << random.below(8);
        }
        1 => bytes.insert(position, random.next() as u8),
        2 if !bytes.is_empty() => {
            let end = (position + random.below(16) + 1).min(bytes.len());
            bytes.drain(position.min(end)..end);
        }
        3 => {
            let token = INTERESTING[random.below(INTERESTING.len())];
            bytes.splice(position..position, token.iter().copied());
        }
        4 if !bytes.is_empty() => {
            let end = (position + random.below(64) + 1).min(bytes.len());
            let chunk = bytes[position.min(end)..end].to_vec();
            bytes.splice(position..position, chunk);
        }
        5 => {
            let (other, _) = &others[random.below(others.len())];
            let from = random.below(other.len() + 1);
            bytes.truncate(position);
            bytes.extend_from_slice(&other[from..]);
        }
        6 => bytes.truncate(position),
        _ => {
            // Replace a number or a string value with one of another type.
            let kinds: [&[u8]; 6] = [b"7", b"\"x\"", b"[]", b"{}", b"true", b"null"];
            let kind = kinds[random.below(kinds.len())];
            if let Some(colon) =
                bytes[position.min(bytes.len())..].iter().position(|&byte| byte == b':')
            {
                let start = position + colon + 1;
                let end = bytes[start..]
                    .iter()
                    .position(|&byte| byte == b',' || byte == b'}')
                    .map_or(bytes.len(), |offset| start + offset);
                bytes.splice(start..end, kind.iter().copied());
            }
        }
    }
    bytes
}

#[test]
fn thousands_of_mutated_vectors_decode_without_panicking() {
    let seeds = vector_lines();
    let mut random = Random(0x5eed_0f40_75a9);
    let (mut decoded, mut refused) = (0, 0);
    for round in 0..6_000 {
        let (seed, from_client) = &seeds[round % seeds.len()];
        // One or two stacked mutations.
        let mut line = seed.clone();
        for _ in 0..=random.below(2) {
            line = mutate(&mut random, &line, &seeds);
        }
        if *from_client {
            check_client_line(&line);
            match decode_client_message(&line) {
                Ok(_) => decoded += 1,
                Err(_) => refused += 1,
            }
        }
        check_daemon_line(&line);
    }
    println!("{decoded} mutated client lines still decoded, {refused} were refused");
    assert!(
        decoded > 20 && refused > 1_000,
        "the mutations exercise both paths: {decoded} / {refused}"
    );
}

/// What the framer must produce for `stream` with `limit`: every complete line without its
/// newline (and a `\r` before it), blank lines skipped, too-long lines as one error each (a
/// last line without a newline too, once it is too long).
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
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines.push(Ok(line.to_vec()));
    }
    // A line still without its newline is refused as soon as it cannot fit any more.
    if rest.len() > limit + 1 {
        lines.push(Err(()));
    }
    lines
}

#[test]
fn the_framer_agrees_with_a_reference_splitter_in_bounded_memory() {
    let mut random = Random(0x00f4_a3e5);
    for round in 0..3_000 {
        let limit = [1, 2, 5, 16, 64, 1024][random.below(6)];
        // Lines of every length around the limit, with `\r`, blanks and garbage.
        let mut stream = Vec::new();
        for _ in 0..random.below(30) {
            let length = match random.below(4) {
                0 => random.below(limit + 3),
                1 => limit + random.below(3),
                2 => random.below(limit * 4 + 8),
                _ => 0,
            };
            stream.extend((0..length).map(|_| b"ab{}\" \r\t\xff"[random.below(9)]));
            if random.below(4) == 0 {
                stream.push(b'\r');
            }
            stream.push(b'\n');
        }
        // A tail without a newline stays buffered (the reader frames it at the end of input),
        // or is refused early when it is already too long.
        let tail = random.below(limit * 3 + 3);
        stream.extend((0..tail).map(|_| b'x'));

        let mut framer = LineFramer::new(limit);
        let mut buffer = BytesMut::new();
        let mut produced = Vec::new();
        let mut offset = 0;
        while offset < stream.len() {
            let chunk = (random.below(limit * 2 + 3) + 1).min(stream.len() - offset);
            buffer.extend_from_slice(&stream[offset..offset + chunk]);
            offset += chunk;
            loop {
                match framer.decode(&mut buffer) {
                    Ok(Some(line)) => {
                        assert!(line.len() <= limit + 1 && !line.contains(&b'\n'), "round {round}");
                        produced.push(Ok(line.to_vec()));
                    }
                    Ok(None) => break,
                    Err(FrameError::TooLong { .. }) => produced.push(Err(())),
                }
            }
            // Bounded memory: never more than one line (and a `\r`) waits in the buffer.
            assert!(
                buffer.len() <= limit + 1,
                "round {round}: {} bytes buffered with limit {limit}",
                buffer.len()
            );
        }
        assert_eq!(produced, reference_lines(&stream, limit), "round {round}, limit {limit}");
    }
}
