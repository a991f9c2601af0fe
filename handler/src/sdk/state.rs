//! State that survives a swap: exported by the old generation as a JSON envelope, imported by the
//! new one (through `Handler::migrate_state` when the version changed).

use serde::{Deserialize, Serialize};

use super::Handler;

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The exporting generation's `Handler::STATE_VERSION`.
    version: u32,
    /// The Rust type name of the state, for error messages.
    #[serde(rename = "type")]
    type_name: String,
    data: serde_json::Value,
}

/// Serializes the app's state, or `None` when it keeps none.
pub(crate) fn export<A: Handler>(app: &A) -> Result<Option<Vec<u8>>, String> {
    let Some(state) = app.export_state() else { return Ok(None) };
    let data = serde_json::to_value(&state)
        .map_err(|error| format!("the state does not serialize to JSON: {error}"))?;
    let envelope = Envelope {
        version: A::STATE_VERSION,
        type_name: std::any::type_name::<A::State>().to_owned(),
        data,
    };
    serde_json::to_vec(&envelope)
        .map(Some)
        .map_err(|error| format!("the state does not serialize: {error}"))
}

/// Reads state exported by a previous generation; empty bytes mean "no state": the default.
pub(crate) fn import<A: Handler>(bytes: &[u8]) -> Result<A::State, String> {
    if bytes.is_empty() {
        return Ok(A::State::default());
    }
    let envelope: Envelope = serde_json::from_slice(bytes)
        .map_err(|error| format!("the exported state is not a hotswap state envelope: {error}"))?;
    if envelope.version == A::STATE_VERSION {
        serde_json::from_value(envelope.data).map_err(|error| {
            format!(
                "the state exported as {} does not read as {}: {error}",
                envelope.type_name,
                std::any::type_name::<A::State>()
            )
        })
    } else {
        A::migrate_state(envelope.version, envelope.data)
    }
}
