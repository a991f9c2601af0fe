//! Checks the golden vectors in `protocol/vectors/` both ways: every line decodes to the typed
//! message, and encoding that typed message gives the same JSON back. The TypeScript extension
//! checks the same files.

use std::path::{Path, PathBuf};

use hotswap_protocol::endpoint::{
    EndpointEnvironment, sanitized_name, unix_socket_path, windows_pipe_name, workspace_hash,
};
use hotswap_protocol::jsonrpc::{
    ClientMessage, DaemonMessage, RequestId, decode_client_message, decode_daemon_message,
    encode_error, encode_event, encode_request, encode_result,
};
use hotswap_protocol::messages::{
    CancelBuild, DidSave, Initialize, LoadState, Method, Reload, Rollback, Shutdown, State, Status,
    Subscribe,
};
use serde_json::Value;

fn vectors(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}")))
        .collect()
}

fn id_of(message: &Value) -> Option<RequestId> {
    serde_json::from_value(message.get("id").cloned().unwrap_or(Value::Null)).ok()
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Decodes a result as the method's typed result and encodes it again.
fn typed_result_roundtrip(method: &str, result: Value) -> Value {
    fn roundtrip<M: Method>(value: Value) -> Value {
        let typed: M::Result = serde_json::from_value(value.clone())
            .unwrap_or_else(|error| panic!("{} result does not decode: {error}\n{value}", M::NAME));
        serde_json::to_value(typed).unwrap()
    }
    match method {
        "initialize" => roundtrip::<Initialize>(result),
        "didSave" => roundtrip::<DidSave>(result),
        "reload" => roundtrip::<Reload>(result),
        "rollback" => roundtrip::<Rollback>(result),
        "status" => roundtrip::<Status>(result),
        "subscribe" => roundtrip::<Subscribe>(result),
        "cancelBuild" => roundtrip::<CancelBuild>(result),
        "shutdown" => roundtrip::<Shutdown>(result),
        "state" => roundtrip::<State>(result),
        "loadState" => roundtrip::<LoadState>(result),
        other => panic!("vector names unknown method {other}"),
    }
}

#[test]
fn message_vectors_decode_and_encode_back() {
    let mut seen_requests = std::collections::BTreeSet::new();
    let mut seen_events = std::collections::BTreeSet::new();
    for vector in vectors("messages.jsonl") {
        let name = vector["name"].as_str().unwrap();
        let message = &vector["message"];
        let line = serde_json::to_vec(message).unwrap();
        match vector["from"].as_str().unwrap() {
            "client" => {
                let decoded = decode_client_message(&line)
                    .unwrap_or_else(|error| panic!("{name}: does not decode: {error:?}"));
                let encoded = match &decoded {
                    ClientMessage::Request { id, request } => {
                        assert_eq!(Some(id.clone()), id_of(message), "{name}: id");
                        seen_requests.insert(request.method());
                        encode_request(Some(id), request)
                    }
                    ClientMessage::Notification(request) => {
                        assert!(message.get("id").is_none(), "{name}: a notification has no id");
                        encode_request(None, request)
                    }
                };
                assert_eq!(parse(&encoded), *message, "{name}: encoding differs");
            }
            "daemon" => match decode_daemon_message(&line)
                .unwrap_or_else(|error| panic!("{name}: does not decode: {error:?}"))
            {
                DaemonMessage::Response { id, result: Ok(result) } => {
                    let method =
                        vector["method"].as_str().expect("result vectors name their method");
                    let typed = typed_result_roundtrip(method, result);
                    let encoded = encode_result(id.as_ref(), &typed);
                    assert_eq!(parse(&encoded), *message, "{name}: encoding differs");
                }
                DaemonMessage::Response { id, result: Err(error) } => {
                    assert_eq!(parse(&encode_error(id.as_ref(), &error)), *message, "{name}");
                }
                DaemonMessage::Event(event) => {
                    seen_events.insert(event.method());
                    assert_eq!(parse(&encode_event(&event)), *message, "{name}: encoding differs");
                }
                DaemonMessage::UnknownNotification { method, .. } => {
                    panic!("{name}: {method} should be a known event")
                }
            },
            other => panic!("{name}: unknown direction {other}"),
        }
    }
    let all_requests: std::collections::BTreeSet<_> =
        hotswap_protocol::ClientRequest::METHODS.iter().copied().collect();
    assert_eq!(seen_requests, all_requests, "every request method has a vector");
    let all_events: std::collections::BTreeSet<_> =
        hotswap_protocol::Event::METHODS.iter().copied().collect();
    assert_eq!(seen_events, all_events, "every event has a vector");
}

#[test]
fn error_vectors_give_their_codes() {
    for vector in vectors("errors.jsonl") {
        let name = vector["name"].as_str().unwrap();
        let line: Vec<u8> = match (vector.get("line"), vector.get("lineHex")) {
            (Some(line), None) => line.as_str().unwrap().as_bytes().to_vec(),
            (None, Some(hex)) => {
                let hex = hex.as_str().unwrap();
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect()
            }
            _ => panic!("{name}: a vector has line or lineHex"),
        };
        let error = decode_client_message(&line).expect_err(name);
        assert_eq!(
            error.error.code,
            vector["error"]["code"].as_i64().unwrap(),
            "{name}: {error:?}"
        );
        let expected_id: Option<RequestId> =
            serde_json::from_value(vector["error"]["id"].clone()).unwrap();
        assert_eq!(error.id, expected_id, "{name}: id");
        assert_eq!(!error.notification, vector["answered"].as_bool().unwrap(), "{name}: answered");
        assert!(!error.error.message.is_empty(), "{name}: errors explain themselves");
    }
}

#[test]
fn endpoint_vectors_derive_the_same_names() {
    for vector in vectors("endpoints.jsonl") {
        let root = PathBuf::from(vector["root"].as_str().unwrap());
        let environment = EndpointEnvironment {
            runtime_dir: vector["runtimeDir"].as_str().map(PathBuf::from),
            temp_dir: PathBuf::from(vector["tempDir"].as_str().unwrap()),
            uid: vector["uid"].as_u64().unwrap() as u32,
        };
        assert_eq!(sanitized_name(&root), vector["name"].as_str().unwrap(), "{root:?}");
        assert_eq!(workspace_hash(&root), vector["hash"].as_str().unwrap(), "{root:?}");
        assert_eq!(
            unix_socket_path(&root, &environment),
            Path::new(vector["socketPath"].as_str().unwrap()),
            "{root:?}"
        );
        assert_eq!(windows_pipe_name(&root), vector["windowsPipe"].as_str().unwrap(), "{root:?}");
    }
}

#[test]
fn control_vectors_decode_and_encode_back() {
    use hotswap_protocol::control::{Frame, HostCommand, HostReport, decode_frame, encode_frame};
    let mut commands = std::collections::BTreeSet::new();
    let mut reports = std::collections::BTreeSet::new();
    for vector in vectors("control.jsonl") {
        let name = vector["name"].as_str().unwrap();
        let message = &vector["message"];
        let descriptors = vector.get("descriptors").and_then(Value::as_u64).unwrap_or(0) as usize;
        let mut wire = Vec::new();
        encode_frame(message, b"", &mut wire);
        let frame: Frame =
            decode_frame(&mut bytes::BytesMut::from(&wire[..])).unwrap().expect("a whole frame");
        match vector["from"].as_str().unwrap() {
            "daemon" => {
                let command: HostCommand =
                    frame.message().unwrap_or_else(|error| panic!("{name}: {error}"));
                assert_eq!(command.descriptors(), descriptors, "{name}: descriptors");
                assert_eq!(serde_json::to_value(&command).unwrap(), *message, "{name}: encoding");
                commands.insert(message["command"].as_str().unwrap().to_owned());
            }
            "host" => {
                let report: HostReport =
                    frame.message().unwrap_or_else(|error| panic!("{name}: {error}"));
                assert_eq!(report.descriptors(), descriptors, "{name}: descriptors");
                assert_eq!(serde_json::to_value(&report).unwrap(), *message, "{name}: encoding");
                reports.insert(message["report"].as_str().unwrap().to_owned());
            }
            other => panic!("{name}: unknown sender {other}"),
        }
    }
    assert_eq!(commands.len(), 7, "every command has a vector: {commands:?}");
    assert_eq!(reports.len(), 15, "every report has a vector: {reports:?}");
}
