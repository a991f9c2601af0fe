//! Fuzzes a client's decoding of a daemon's line (responses and events): it never panics.

#![no_main]

use hotswap_protocol::jsonrpc::decode_daemon_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let _ = decode_daemon_message(line);
});
