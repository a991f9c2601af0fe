//! Fuzzes the daemon's decoding of a client's line: it never panics, every refusal carries a
//! documented JSON-RPC error code, and every accepted message encodes back to the same message.

#![no_main]

use hotswap_protocol::jsonrpc::{ClientMessage, decode_client_message, encode_request, error_code};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    match decode_client_message(line) {
        Ok(message) => {
            let (id, request) = match &message {
                ClientMessage::Request { id, request } => (Some(id), request),
                ClientMessage::Notification(request) => (None, request),
            };
            let again = decode_client_message(&encode_request(id, request))
                .expect("a decoded message re-encodes to a valid line");
            assert_eq!(again, message);
        }
        Err(error) => {
            assert!(
                [
                    error_code::PARSE_ERROR,
                    error_code::INVALID_REQUEST,
                    error_code::METHOD_NOT_FOUND,
                    error_code::INVALID_PARAMS,
                ]
                .contains(&error.error.code),
                "undocumented error code {}",
                error.error.code
            );
            assert!(!error.error.message.is_empty());
        }
    }
});
