//! States as people and tools see them: a state envelope ([`crate::abi::state_envelope`]) as JSON,
//! and JSON back into an envelope. `hotswap state` prints the current state this way, and
//! `hotswap state --load` reads one; `Handler::migrate_state` gets this JSON too.
//!
//! MessagePack map keys become strings (JSON has no others; serde reads numeric keys back from
//! them), and binary values arrays of numbers (which `Bytes` and `Vec<u8>` read back).

use crate::abi::state_envelope::{self, FORMAT_JSON};

/// A state read out of its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonState {
    /// The exporting app's `Handler::STATE_VERSION`.
    pub version: u32,
    /// The state's type, as the app wrote it.
    pub type_name: String,
    pub state: serde_json::Value,
}

/// Reads an envelope into JSON.
pub fn envelope_to_json(bytes: &[u8]) -> Result<JsonState, String> {
    let envelope = state_envelope::parse(bytes).map_err(str::to_owned)?;
    Ok(JsonState {
        version: envelope.version,
        type_name: envelope.type_name.to_owned(),
        state: to_json_value(envelope.format, envelope.payload)?,
    })
}

/// An envelope around a JSON state, as an app of `version` would read it.
pub fn json_to_envelope(json: &str, version: u32, type_name: &str) -> Vec<u8> {
    let header = state_envelope::header(version, FORMAT_JSON, type_name);
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(json.as_bytes());
    bytes
}

/// A payload in `format` as JSON.
pub fn to_json_value(format: u8, payload: &[u8]) -> Result<serde_json::Value, String> {
    match format {
        FORMAT_JSON => serde_json::from_slice(payload).map_err(|error| error.to_string()),
        _ => {
            let value =
                rmpv::decode::read_value(&mut &payload[..]).map_err(|error| error.to_string())?;
            Ok(message_pack_to_json(value))
        }
    }
}

fn message_pack_to_json(value: rmpv::Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        rmpv::Value::Nil => Json::Null,
        rmpv::Value::Boolean(value) => Json::Bool(value),
        rmpv::Value::Integer(value) => match (value.as_u64(), value.as_i64()) {
            (Some(value), _) => Json::from(value),
            (None, Some(value)) => Json::from(value),
            (None, None) => Json::Null,
        },
        rmpv::Value::F32(value) => Json::from(f64::from(value)),
        rmpv::Value::F64(value) => Json::from(value),
        rmpv::Value::String(text) => Json::String(text.into_str().unwrap_or_default()),
        rmpv::Value::Binary(bytes) | rmpv::Value::Ext(_, bytes) => {
            Json::Array(bytes.into_iter().map(Json::from).collect())
        }
        rmpv::Value::Array(items) => {
            Json::Array(items.into_iter().map(message_pack_to_json).collect())
        }
        rmpv::Value::Map(entries) => Json::Object(
            entries
                .into_iter()
                .map(|(key, value)| {
                    let key = match key {
                        rmpv::Value::String(text) => text.into_str().unwrap_or_default(),
                        other => match message_pack_to_json(other) {
                            Json::String(text) => text,
                            other => other.to_string(),
                        },
                    };
                    (key, message_pack_to_json(value))
                })
                .collect(),
        ),
    }
}
