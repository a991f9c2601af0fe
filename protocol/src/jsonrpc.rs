//! JSON-RPC 2.0 envelopes: ids, error objects, and the decoding of one line into a typed message.
//!
//! Decoding is a pure function from bytes to a value. Every way a line can be wrong maps to one of
//! the standard JSON-RPC error codes with a message that says what to fix.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::events::Event;
use crate::messages::ClientRequest;

/// JSON-RPC error codes used by hotswap. The first five are the standard ones.
pub mod error_code {
    /// The line is not valid UTF-8 or not valid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid JSON-RPC 2.0 request (also: a line over 1 MiB, a batch).
    pub const INVALID_REQUEST: i64 = -32600;
    /// No method of that name.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params do not fit the method (missing field, wrong type).
    pub const INVALID_PARAMS: i64 = -32602;
    /// The daemon failed in a way that is its own fault.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The client's protocol version is not one the daemon speaks.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32001;
    /// A request other than `initialize` came before `initialize`.
    pub const NOT_INITIALIZED: i64 = -32002;
    /// `initialize` was sent twice on one connection.
    pub const ALREADY_INITIALIZED: i64 = -32003;
    /// `rollback` with no earlier generation to go back to.
    pub const NO_PREVIOUS_GENERATION: i64 = -32010;
    /// The daemon is shutting down and takes no new work.
    pub const SHUTTING_DOWN: i64 = -32011;
}

/// A request id: a number or a string, as JSON-RPC allows. (`null` ids are refused.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(i64),
    String(String),
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Number(number) => write!(f, "{number}"),
            RequestId::String(string) => write!(f, "{string:?}"),
        }
    }
}

/// The `error` member of a failed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (JSON-RPC error {code})")]
pub struct ResponseError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ResponseError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }
}

/// A message a client sends to the daemon, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// A request; the daemon answers it with the same id.
    Request { id: RequestId, request: ClientRequest },
    /// A request sent without an id: the daemon carries it out and answers nothing.
    Notification(ClientRequest),
}

/// A line from a client that could not be decoded, with what the daemon should answer.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// The id to answer with, when the line had a usable one (`None` answers with `"id": null`).
    pub id: Option<RequestId>,
    /// True when the line was a notification: JSON-RPC forbids answering those, even with errors.
    pub notification: bool,
    pub error: ResponseError,
}

impl DecodeError {
    fn new(
        id: Option<RequestId>,
        notification: bool,
        code: i64,
        message: impl Into<String>,
    ) -> Self {
        Self { id, notification, error: ResponseError::new(code, message) }
    }
}

/// A message the daemon sends to a client, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonMessage {
    /// The answer to a request: its `result`, or its `error`. The id is `None` when the daemon
    /// could not read the request's id (a parse error).
    Response { id: Option<RequestId>, result: Result<Value, ResponseError> },
    /// An event notification (sent to clients that subscribed).
    Event(Event),
    /// A notification this client does not know (a newer daemon may send more kinds).
    UnknownNotification { method: String, params: Value },
}

/// Decodes one line a client sent.
pub fn decode_client_message(line: &[u8]) -> Result<ClientMessage, DecodeError> {
    let text = std::str::from_utf8(line).map_err(|error| {
        DecodeError::new(
            None,
            false,
            error_code::PARSE_ERROR,
            format!("message is not valid UTF-8 (invalid byte at offset {})", error.valid_up_to()),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|error| {
        DecodeError::new(
            None,
            false,
            error_code::PARSE_ERROR,
            format!("message is not valid JSON: {error}"),
        )
    })?;
    let object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(DecodeError::new(
                None,
                false,
                error_code::INVALID_REQUEST,
                "batches are not supported: send one JSON-RPC message per line",
            ));
        }
        other => {
            return Err(DecodeError::new(
                None,
                false,
                error_code::INVALID_REQUEST,
                format!("a message must be a JSON object, not {}", json_kind(&other)),
            ));
        }
    };
    let notification = !object.contains_key("id");
    let id = read_id(&object)
        .map_err(|message| DecodeError::new(None, false, error_code::INVALID_REQUEST, message))?;
    let invalid = |message: String| {
        DecodeError::new(id.clone(), notification, error_code::INVALID_REQUEST, message)
    };
    check_version(&object).map_err(invalid)?;
    let method = match object.get("method") {
        Some(Value::String(method)) => method.as_str(),
        Some(other) => {
            return Err(invalid(format!("\"method\" must be a string, not {}", json_kind(other))));
        }
        None if object.contains_key("result") || object.contains_key("error") => {
            return Err(invalid("the daemon sends no requests, so it expects no responses".into()));
        }
        None => return Err(invalid("the message has no \"method\"".into())),
    };
    let params = match object.get("params") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(params)) => Value::Object(params.clone()),
        Some(other) => {
            return Err(invalid(format!(
                "\"params\" must be an object (named parameters), not {}",
                json_kind(other)
            )));
        }
    };
    let request = ClientRequest::from_method_and_params(method, params)
        .map_err(|(code, message)| DecodeError::new(id.clone(), notification, code, message))?;
    Ok(match id {
        Some(id) => ClientMessage::Request { id, request },
        None => ClientMessage::Notification(request),
    })
}

/// Decodes one line the daemon sent.
pub fn decode_daemon_message(line: &[u8]) -> Result<DaemonMessage, ResponseError> {
    let value: Value = serde_json::from_slice(line).map_err(|error| {
        ResponseError::new(
            error_code::PARSE_ERROR,
            format!("daemon message is not valid JSON: {error}"),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(ResponseError::new(
            error_code::INVALID_REQUEST,
            "daemon message is not a JSON object",
        ));
    };
    check_version(&object)
        .map_err(|message| ResponseError::new(error_code::INVALID_REQUEST, message))?;
    if let Some(Value::String(method)) = object.get("method") {
        let method = method.clone();
        let params = object.remove("params").unwrap_or(Value::Null);
        let mut event = Map::new();
        event.insert("method".into(), Value::String(method.clone()));
        event.insert("params".into(), params.clone());
        return Ok(match serde_json::from_value::<Event>(Value::Object(event)) {
            Ok(event) => DaemonMessage::Event(event),
            Err(_) if !Event::METHODS.contains(&method.as_str()) => {
                DaemonMessage::UnknownNotification { method, params }
            }
            Err(error) => {
                return Err(ResponseError::new(
                    error_code::INVALID_PARAMS,
                    format!("event {method} does not match the protocol: {error}"),
                ));
            }
        });
    }
    let id = read_id(&object)
        .map_err(|message| ResponseError::new(error_code::INVALID_REQUEST, message))?;
    let result = match (object.remove("result"), object.remove("error")) {
        (Some(result), None) => Ok(result),
        (None, Some(error)) => {
            Err(serde_json::from_value::<ResponseError>(error).map_err(|error| {
                ResponseError::new(
                    error_code::INVALID_REQUEST,
                    format!("malformed error object: {error}"),
                )
            })?)
        }
        _ => {
            return Err(ResponseError::new(
                error_code::INVALID_REQUEST,
                "a response must have exactly one of \"result\" and \"error\"",
            ));
        }
    };
    Ok(DaemonMessage::Response { id, result })
}

fn read_id(object: &Map<String, Value>) -> Result<Option<RequestId>, String> {
    match object.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) => Ok(Some(RequestId::String(id.clone()))),
        Some(Value::Number(number)) => match number.as_i64() {
            Some(id) => Ok(Some(RequestId::Number(id))),
            None => Err(format!("\"id\" must be an integer or a string, not {number}")),
        },
        Some(other) => {
            Err(format!("\"id\" must be an integer or a string, not {}", json_kind(other)))
        }
    }
}

fn check_version(object: &Map<String, Value>) -> Result<(), String> {
    match object.get("jsonrpc") {
        Some(Value::String(version)) if version == "2.0" => Ok(()),
        Some(other) => Err(format!("\"jsonrpc\" must be \"2.0\", not {other}")),
        None => Err("the message has no \"jsonrpc\": \"2.0\" member".into()),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Encodes a request (`id` set) or a notification (`id` `None`) from a client, without newline.
pub fn encode_request(id: Option<&RequestId>, request: &ClientRequest) -> Vec<u8> {
    let (method, params) = request.method_and_params();
    let mut object = Map::new();
    object.insert("jsonrpc".into(), Value::String("2.0".into()));
    if let Some(id) = id {
        object.insert("id".into(), serde_json::to_value(id).expect("ids serialize"));
    }
    object.insert("method".into(), Value::String(method.into()));
    if params.as_object().is_none_or(|params| !params.is_empty()) {
        object.insert("params".into(), params);
    }
    serde_json::to_vec(&Value::Object(object)).expect("JSON values serialize")
}

/// Encodes a successful response, without newline.
pub fn encode_result(id: Option<&RequestId>, result: &impl Serialize) -> Vec<u8> {
    #[derive(Serialize)]
    struct Success<'a, R> {
        jsonrpc: &'static str,
        id: Option<&'a RequestId>,
        result: &'a R,
    }
    serde_json::to_vec(&Success { jsonrpc: "2.0", id, result }).expect("results serialize")
}

/// Encodes an error response, without newline. `id` is `None` when the request's id is unknown.
pub fn encode_error(id: Option<&RequestId>, error: &ResponseError) -> Vec<u8> {
    #[derive(Serialize)]
    struct Failure<'a> {
        jsonrpc: &'static str,
        id: Option<&'a RequestId>,
        error: &'a ResponseError,
    }
    serde_json::to_vec(&Failure { jsonrpc: "2.0", id, error }).expect("errors serialize")
}

/// Encodes an event notification, without newline.
pub fn encode_event(event: &Event) -> Vec<u8> {
    #[derive(Serialize)]
    struct Notification<'a> {
        jsonrpc: &'static str,
        #[serde(flatten)]
        event: &'a Event,
    }
    serde_json::to_vec(&Notification { jsonrpc: "2.0", event }).expect("events serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{DidSaveParams, NoParams};

    #[test]
    fn deeply_nested_json_is_a_parse_error_not_a_stack_overflow() {
        let line = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let error = decode_client_message(line.as_bytes()).unwrap_err();
        assert_eq!(error.error.code, error_code::PARSE_ERROR);
    }

    #[test]
    fn errors_say_what_to_fix() {
        let error =
            decode_client_message(br#"{"jsonrpc":"2.0","id":1,"method":"relaod"}"#).unwrap_err();
        assert!(
            error.error.message.contains("unknown method \"relaod\""),
            "{}",
            error.error.message
        );
        assert!(
            error.error.message.contains("reload"),
            "lists the methods: {}",
            error.error.message
        );
        let error =
            decode_client_message(br#"{"jsonrpc":"2.0","id":1,"method":"didSave","params":{}}"#)
                .unwrap_err();
        assert!(error.error.message.contains("missing field `paths`"), "{}", error.error.message);
    }

    #[test]
    fn params_may_be_absent_null_or_empty_for_methods_without_params() {
        for line in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"status"}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"status","params":null}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"status","params":{}}"#,
        ] {
            assert_eq!(
                decode_client_message(line).unwrap(),
                ClientMessage::Request {
                    id: RequestId::Number(1),
                    request: ClientRequest::Status(NoParams {})
                }
            );
        }
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let message = decode_client_message(
            br#"{"jsonrpc":"2.0","id":1,"method":"didSave","params":{"paths":["/a.rs"],"reason":"autosave"}}"#,
        )
        .unwrap();
        assert_eq!(
            message,
            ClientMessage::Request {
                id: RequestId::Number(1),
                request: ClientRequest::DidSave(DidSaveParams { paths: vec!["/a.rs".into()] })
            }
        );
    }

    #[test]
    fn daemon_side_decoding_keeps_unknown_notifications() {
        let message =
            decode_daemon_message(br#"{"jsonrpc":"2.0","method":"futureEvent","params":{"x":1}}"#)
                .unwrap();
        assert!(
            matches!(message, DaemonMessage::UnknownNotification { ref method, .. } if method == "futureEvent")
        );
        let error =
            decode_daemon_message(br#"{"jsonrpc":"2.0","method":"buildStarted","params":{}}"#)
                .unwrap_err();
        assert_eq!(error.code, error_code::INVALID_PARAMS);
        let error = decode_daemon_message(
            br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":""}}"#,
        )
        .unwrap_err();
        assert_eq!(error.code, error_code::INVALID_REQUEST);
    }
}
