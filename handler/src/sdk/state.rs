//! State that survives a swap: exported by the old generation in a state envelope
//! ([`crate::abi::state_envelope`], MessagePack), imported by the new one, through
//! `Handler::migrate_state` when the version changed.
//!
//! A state that does not read as the new type never vanishes quietly: the import says where
//! (`items["3f2a"].priority`), in which struct, and what to do; and a value of the old state that
//! the new type would skip (a field renamed or removed) is a refusal too, since importing would
//! lose it.

mod reading;
mod writing;

use serde::Serialize;
use serde::de::Deserialize;

use super::Handler;
use crate::abi::state_envelope::{self, FORMAT_JSON, FORMAT_MESSAGEPACK};
use crate::state_format::to_json_value;
use reading::{Reader, Tracker};

/// Why a state could not be imported, with what the daemon needs to point at the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct StateProblem {
    /// The whole explanation, with the fixes.
    pub(crate) message: String,
    /// The struct of the new state type where it failed (as written in the code, e.g. `Todo`).
    #[serde(rename = "struct", skip_serializing_if = "Option::is_none")]
    pub(crate) struct_name: Option<String>,
    /// The field concerned (missing, of a wrong type, or no longer read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) field: Option<String>,
    /// The path inside the state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
}

impl StateProblem {
    fn plain(message: String) -> Self {
        Self { message, struct_name: None, field: None, path: None }
    }

    /// As the ABI carries it: a JSON object (see `abi::status::FAILED` of `start`).
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.message.clone())
    }
}

/// The name of `T` as its author wrote it: `HashMap<Uuid, Todo>`, not
/// `std::collections::hash::map::HashMap<uuid::Uuid, todos::Todo>`.
pub(crate) fn written_type_name<T: ?Sized>() -> String {
    short_name(std::any::type_name::<T>())
}

fn short_name(full: &str) -> String {
    let mut shown = String::with_capacity(full.len());
    let mut word = String::new();
    let flush = |word: &mut String, shown: &mut String| {
        shown.push_str(word.rsplit("::").next().unwrap_or(word));
        word.clear();
    };
    for character in full.chars() {
        if character.is_alphanumeric() || character == '_' || character == ':' {
            word.push(character);
        } else {
            flush(&mut word, &mut shown);
            shown.push(character);
        }
    }
    flush(&mut word, &mut shown);
    shown
}

/// Serializes the app's state into an envelope, or `None` when it keeps none.
pub(crate) fn export<A: Handler>(app: &A) -> Result<Option<Vec<u8>>, String> {
    let Some(state) = app.export_state() else { return Ok(None) };
    let name = written_type_name::<A::State>();
    let header = state_envelope::header(A::STATE_VERSION, FORMAT_MESSAGEPACK, &name);
    let mut bytes = header.as_bytes().to_vec();
    let mut serializer = rmp_serde::Serializer::new(&mut bytes)
        .with_struct_map()
        .with_human_readable()
        .with_bytes(rmp_serde::config::BytesMode::ForceIterables);
    writing::Value(&state)
        .serialize(&mut serializer)
        .map_err(|error| format!("the state ({name}) does not serialize: {error}"))?;
    Ok(Some(bytes))
}

/// Reads state exported by a previous generation; empty bytes mean "no state": the default.
pub(crate) fn import<A: Handler>(bytes: &[u8]) -> Result<A::State, StateProblem> {
    if bytes.is_empty() {
        return Ok(A::State::default());
    }
    let envelope = state_envelope::parse(bytes).map_err(|error| {
        StateProblem::plain(format!("the state handed over cannot be read: {error}"))
    })?;
    let new_type = written_type_name::<A::State>();
    if envelope.version != A::STATE_VERSION {
        let value = to_json_value(envelope.format, envelope.payload).map_err(|error| {
            StateProblem::plain(format!(
                "the state of version {} ({}) cannot be read to migrate it: {error}",
                envelope.version, envelope.type_name
            ))
        })?;
        return A::migrate_state(envelope.version, value).map_err(|error| {
            StateProblem::plain(format!(
                "`migrate_state` could not turn the state of version {} into version {}: {error}",
                envelope.version,
                A::STATE_VERSION
            ))
        });
    }
    // Read fast first; a state that does not fit is read again, watching where.
    let (result, tracker) = read::<A>(&envelope, false);
    if let Ok(state) = result
        && tracker.skipped().is_empty()
    {
        return Ok(state);
    }
    let (result, tracker) = read::<A>(&envelope, true);
    match result {
        Ok(state) => match tracker.skipped().first() {
            None => Ok(state),
            Some(skipped) => Err(skipped_problem(&new_type, skipped, tracker.skipped().len())),
        },
        Err(error) => {
            Err(unreadable_problem(&new_type, &error, tracker.failure(), &tracker.skipped()))
        }
    }
}

/// Reads the envelope's payload as `A::State`, through a [`Reader`] that watches what it reads
/// (`detailed`: where, too).
fn read<A: Handler>(
    envelope: &state_envelope::Envelope<'_>,
    detailed: bool,
) -> (Result<A::State, String>, Tracker) {
    let mut tracker = Tracker::default();
    tracker.detailed = detailed;
    let result = match envelope.format {
        FORMAT_JSON => {
            let mut deserializer = serde_json::Deserializer::from_slice(envelope.payload);
            A::State::deserialize(Reader::new(&mut deserializer, &tracker))
                .map_err(|error| error.to_string())
        }
        _ => {
            tracker.byte_blocks = true;
            let mut deserializer =
                rmp_serde::Deserializer::from_read_ref(envelope.payload).with_human_readable();
            A::State::deserialize(Reader::new(&mut deserializer, &tracker))
                .map_err(|error| error.to_string())
        }
    };
    (result, tracker)
}

/// The old state has a value the new type does not read: importing would lose it.
fn skipped_problem(new_type: &str, skipped: &reading::Skipped, count: usize) -> StateProblem {
    let struct_name = skipped.place.in_struct.clone();
    let what = match (&skipped.field, &struct_name) {
        (Some(field), Some(name)) => format!("field `{field}` of `{name}`"),
        (Some(field), None) => format!("field `{field}`"),
        _ => "a value".to_owned(),
    };
    let at = if skipped.place.path.is_empty() {
        String::new()
    } else {
        format!(" (at `{}`)", skipped.place.path)
    };
    let more = if count > 1 { format!(" ({} values in all)", count) } else { String::new() };
    let field = skipped.field.clone().unwrap_or_else(|| "it".to_owned());
    let message = format!(
        "the old state has {what}{at} that this build's `{new_type}` no longer reads{more}: \
         importing it would lose its value. Was it renamed or removed? Keep it with \
         `#[serde(alias = \"{field}\")]` on the renamed field, or bump `STATE_VERSION` and move \
         the value in `migrate_state`, or drop the state on purpose with \
         `hotswap reload --fresh-state`"
    );
    StateProblem {
        message,
        struct_name,
        field: skipped.field.clone(),
        path: (!skipped.place.path.is_empty()).then(|| skipped.place.path.clone()),
    }
}

/// The old state does not read as the new type.
fn unreadable_problem(
    new_type: &str,
    error: &str,
    place: Option<reading::Place>,
    skipped: &[reading::Skipped],
) -> StateProblem {
    let place = place.unwrap_or(reading::Place { path: String::new(), in_struct: None });
    let in_struct =
        place.in_struct.as_ref().map(|name| format!(" in `{name}`")).unwrap_or_default();
    // serde says "missing field `priority`"; the field is inside the struct being read there.
    let missing = error
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field.to_owned());
    let Some(field) = missing else {
        let at =
            if place.path.is_empty() { String::new() } else { format!(" at `{}`", place.path) };
        return StateProblem {
            message: format!(
                "the old state does not read as this build's `{new_type}`{at}: {error}{in_struct}. \
                 Fix it one of these ways: bump `STATE_VERSION` and turn the old state into the \
                 new one in `migrate_state`, or drop the state on purpose with \
                 `hotswap reload --fresh-state`"
            ),
            struct_name: place.in_struct,
            field: place.path.rsplit('.').next().filter(|name| !name.is_empty()).map(str::to_owned),
            path: (!place.path.is_empty()).then_some(place.path),
        };
    };
    let path =
        if place.path.is_empty() { field.clone() } else { format!("{}.{field}", place.path) };
    // A field of the old state that this struct skipped right there: most likely the same field
    // under its old name.
    let renamed = skipped
        .iter()
        .filter(|skipped| skipped.place.in_struct == place.in_struct)
        .find_map(|skipped| {
            let old = skipped.field.as_ref()?;
            let parent = skipped.place.path.strip_suffix(old.as_str())?.trim_end_matches('.');
            (parent == place.path).then(|| old.clone())
        });
    let (what, fixes) = match renamed {
        Some(old) => (
            format!(
                "`{path}` is missing; the old state has `{old}` there, which `{field}`{in_struct} \
                 does not read"
            ),
            format!(
                "If `{field}` is `{old}` renamed, keep the values with \
                 `#[serde(alias = \"{old}\")]` on `{field}`; otherwise add `#[serde(default)]` \
                 to `{field}` and bump `STATE_VERSION` to drop `{old}` in `migrate_state`, or drop \
                 the state on purpose with `hotswap reload --fresh-state`"
            ),
        ),
        None => (
            format!(
                "`{path}` is missing: the old values have no `{field}`, a new field{in_struct} \
                 without a default"
            ),
            format!(
                "Fix it one of these ways: add `#[serde(default)]` to `{field}`{in_struct} (the \
                 old values get the default), or bump `STATE_VERSION` and build the new state \
                 from the old one in `migrate_state`, or drop the state on purpose with \
                 `hotswap reload --fresh-state`"
            ),
        ),
    };
    StateProblem {
        message: format!(
            "the old state does not read as this build's `{new_type}`: {what}. {fixes}"
        ),
        struct_name: place.in_struct,
        field: Some(field),
        path: Some(path),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::{Request, Response};

    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    struct OldTodo {
        title: String,
    }

    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    struct OldState {
        items: BTreeMap<String, OldTodo>,
        counter: u64,
        blob: bytes::Bytes,
        raw: Vec<u8>,
    }

    /// Exports `state` the way a generation of type `A` would.
    fn exported<
        S: Serialize + Clone + Default + for<'de> Deserialize<'de> + Send + Sync + 'static,
    >(
        state: S,
    ) -> Vec<u8> {
        struct Exporter<S>(S);
        impl<S: Serialize + Clone + Default + for<'de> Deserialize<'de> + Send + Sync + 'static>
            Handler for Exporter<S>
        {
            type State = S;
            fn new(state: S) -> Self {
                Exporter(state)
            }
            fn export_state(&self) -> Option<S> {
                Some(self.0.clone())
            }
            async fn handle(&self, _request: Request) -> Response {
                Response::new(crate::Body::empty())
            }
        }
        export(&Exporter(state)).unwrap().unwrap()
    }

    macro_rules! app_of {
        ($name:ident, $state:ty) => {
            struct $name;
            impl Handler for $name {
                type State = $state;
                fn new(_state: $state) -> Self {
                    $name
                }
                async fn handle(&self, _request: Request) -> Response {
                    Response::new(crate::Body::empty())
                }
            }
        };
    }

    fn old_state() -> OldState {
        let mut items = BTreeMap::new();
        items.insert("3f2a".to_owned(), OldTodo { title: "write it".into() });
        OldState {
            items,
            counter: 7,
            blob: bytes::Bytes::from_static(b"\x00\x01\xff"),
            raw: vec![1, 2, 250],
        }
    }

    #[test]
    fn the_same_type_round_trips_with_bytes_and_vectors() {
        app_of!(Same, OldState);
        let state = old_state();
        assert_eq!(import::<Same>(&exported(state.clone())).unwrap(), state);
    }

    #[test]
    fn a_field_added_without_a_default_names_the_path_the_struct_and_the_fixes() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct Todo {
            title: String,
            priority: u8,
        }
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct NewState {
            items: BTreeMap<String, Todo>,
            counter: u64,
            blob: bytes::Bytes,
            raw: Vec<u8>,
        }
        app_of!(Added, NewState);
        let problem = import::<Added>(&exported(old_state())).unwrap_err();
        assert_eq!(problem.struct_name.as_deref(), Some("Todo"), "{problem:?}");
        assert_eq!(problem.field.as_deref(), Some("priority"));
        assert_eq!(problem.path.as_deref(), Some("items[\"3f2a\"].priority"));
        assert_eq!(
            problem.message,
            "the old state does not read as this build's `NewState`: `items[\"3f2a\"].priority` \
             is missing: the old values have no `priority`, a new field in `Todo` without a \
             default. Fix it one of these ways: add `#[serde(default)]` to `priority` in `Todo` \
             (the old values get the default), or bump `STATE_VERSION` and build the new state \
             from the old one in `migrate_state`, or drop the state on purpose with \
             `hotswap reload --fresh-state`"
        );
    }

    #[test]
    fn a_field_added_with_a_default_reads() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct Todo {
            title: String,
            #[serde(default)]
            priority: u8,
        }
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct NewState {
            items: BTreeMap<String, Todo>,
            counter: u64,
            blob: bytes::Bytes,
            raw: Vec<u8>,
        }
        app_of!(Defaulted, NewState);
        let state = import::<Defaulted>(&exported(old_state())).unwrap();
        assert_eq!(state.items["3f2a"].title, "write it");
        assert_eq!(state.items["3f2a"].priority, 0);
        assert_eq!(state.raw, [1, 2, 250]);
    }

    #[test]
    fn a_renamed_field_is_never_dropped_silently_even_with_a_default() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct Renamed {
            items: BTreeMap<String, OldTodo>,
            #[serde(default)]
            count: u64,
            blob: bytes::Bytes,
            raw: Vec<u8>,
        }
        app_of!(RenamedApp, Renamed);
        let problem = import::<RenamedApp>(&exported(old_state())).unwrap_err();
        assert_eq!(problem.field.as_deref(), Some("counter"), "{problem:?}");
        assert_eq!(problem.struct_name.as_deref(), Some("Renamed"));
        assert!(problem.message.contains("no longer reads"), "{}", problem.message);
        assert!(problem.message.contains("#[serde(alias = \"counter\")]"), "{}", problem.message);
        assert!(problem.message.contains("--fresh-state"), "{}", problem.message);
    }

    #[test]
    fn a_field_renamed_without_a_default_names_the_old_field_and_the_alias() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct Todo {
            name: String,
        }
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct NewState {
            items: BTreeMap<String, Todo>,
            counter: u64,
            blob: bytes::Bytes,
            raw: Vec<u8>,
        }
        app_of!(RenamedTodo, NewState);
        let problem = import::<RenamedTodo>(&exported(old_state())).unwrap_err();
        assert_eq!(problem.path.as_deref(), Some("items[\"3f2a\"].name"), "{problem:?}");
        assert_eq!(problem.field.as_deref(), Some("name"));
        assert!(
            problem.message.contains("the old state has `title` there, which `name` in `Todo`"),
            "{}",
            problem.message
        );
        assert!(
            problem.message.contains("`#[serde(alias = \"title\")]` on `name`"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn an_alias_keeps_a_renamed_value() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct Renamed {
            items: BTreeMap<String, OldTodo>,
            #[serde(alias = "counter")]
            count: u64,
            blob: bytes::Bytes,
            raw: Vec<u8>,
        }
        app_of!(Aliased, Renamed);
        assert_eq!(import::<Aliased>(&exported(old_state())).unwrap().count, 7);
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct Typed {
            items: BTreeMap<String, OldTodo>,
            counter: String,
            blob: bytes::Bytes,
            raw: Vec<u8>,
        }
        app_of!(TypedApp, Typed);
        let problem = import::<TypedApp>(&exported(old_state())).unwrap_err();
        assert_eq!(problem.path.as_deref(), Some("counter"), "{problem:?}");
        assert_eq!(problem.struct_name.as_deref(), Some("Typed"));
        assert!(problem.message.contains("invalid type"), "{}", problem.message);
    }

    #[test]
    fn another_version_goes_through_migrate_state_as_json() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct Version2 {
            total: u64,
        }
        struct Migrating;
        impl Handler for Migrating {
            type State = Version2;
            const STATE_VERSION: u32 = 2;
            fn new(_state: Version2) -> Self {
                Migrating
            }
            fn migrate_state(from: u32, state: serde_json::Value) -> Result<Version2, String> {
                assert_eq!(from, 1);
                Ok(Version2 { total: state["counter"].as_u64().ok_or("no counter")? })
            }
            async fn handle(&self, _request: Request) -> Response {
                Response::new(crate::Body::empty())
            }
        }
        assert_eq!(import::<Migrating>(&exported(old_state())).unwrap().total, 7);
    }

    #[test]
    fn a_json_state_reads_too() {
        app_of!(Json, OldState);
        let header = state_envelope::header(1, FORMAT_JSON, "OldState");
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(
            br#"{"items":{"3f2a":{"title":"write it"}},"counter":7,"blob":[0,1,255],"raw":[1,2,250]}"#,
        );
        assert_eq!(import::<Json>(&bytes).unwrap(), old_state());
    }

    #[test]
    fn message_pack_becomes_json_with_string_keys() {
        #[derive(Serialize)]
        struct Keyed {
            by_id: BTreeMap<u64, String>,
            bytes: bytes::Bytes,
        }
        let mut by_id = BTreeMap::new();
        by_id.insert(3, "three".to_owned());
        let mut payload = Vec::new();
        Keyed { by_id, bytes: bytes::Bytes::from_static(b"\x01\x02") }
            .serialize(&mut rmp_serde::Serializer::new(&mut payload).with_struct_map())
            .unwrap();
        let json = to_json_value(FORMAT_MESSAGEPACK, &payload).unwrap();
        assert_eq!(json, serde_json::json!({"by_id": {"3": "three"}, "bytes": [1, 2]}));
    }

    #[test]
    fn a_state_printed_as_json_and_loaded_back_reads_as_the_same_state() {
        app_of!(Printed, OldState);
        let exported = exported(old_state());
        let json = crate::state_format::envelope_to_json(&exported).unwrap();
        let loaded = crate::state_format::json_to_envelope(
            &json.state.to_string(),
            json.version,
            &json.type_name,
        );
        assert_eq!(import::<Printed>(&loaded).unwrap(), old_state());
    }

    #[test]
    fn byte_vectors_move_as_one_block_wherever_they_are() {
        #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
        struct Blobs {
            raw: Vec<u8>,
            by_name: BTreeMap<String, Vec<u8>>,
            maybe: Option<Vec<u8>>,
            nested: Vec<Vec<u8>>,
            boxed: Box<[u8]>,
            numbers: Vec<u16>,
        }
        app_of!(BlobApp, Blobs);
        let mut by_name = BTreeMap::new();
        by_name.insert("a".to_owned(), vec![200u8; 1000]);
        let state = Blobs {
            raw: vec![250u8; 10_000],
            by_name,
            maybe: Some(vec![255u8; 1000]),
            nested: vec![vec![128u8; 1000], vec![]],
            boxed: vec![201u8; 1000].into_boxed_slice(),
            numbers: vec![300, 7],
        };
        let bytes = exported(state);
        // Byte for byte, as bins: values above 127 would take two bytes each as integers.
        let payload = state_envelope::parse(&bytes).unwrap().payload.len();
        assert!(payload < 14_200, "{payload} bytes for 14 000 bytes of vectors");
        let read = import::<BlobApp>(&bytes).unwrap();
        assert_eq!(read.raw, vec![250u8; 10_000]);
        assert_eq!(read.by_name["a"], vec![200u8; 1000]);
        assert_eq!(read.maybe, Some(vec![255u8; 1000]));
        assert_eq!(read.nested, vec![vec![128u8; 1000], vec![]]);
        assert_eq!(&*read.boxed, &[201u8; 1000][..]);
        assert_eq!(read.numbers, vec![300, 7]);
    }

    #[test]
    fn byte_vectors_written_as_integers_still_read() {
        // Sequences of integers: JSON (`hotswap state --load`), and MessagePack arrays.
        app_of!(Json, OldState);
        let header = state_envelope::header(1, FORMAT_JSON, "OldState");
        let mut json = header.as_bytes().to_vec();
        json.extend_from_slice(br#"{"items":{},"counter":1,"blob":[1],"raw":[1,2,250]}"#);
        assert_eq!(import::<Json>(&json).unwrap().raw, [1, 2, 250]);
        let mut payload = Vec::new();
        serde_json::json!({"items": {}, "counter": 1, "blob": [1], "raw": [1, 2, 250]})
            .serialize(&mut rmp_serde::Serializer::new(&mut payload).with_struct_map())
            .unwrap();
        let header = state_envelope::header(1, FORMAT_MESSAGEPACK, "OldState");
        let mut packed = header.as_bytes().to_vec();
        packed.extend_from_slice(&payload);
        assert_eq!(import::<Json>(&packed).unwrap().raw, [1, 2, 250]);
        // A string is not bytes, in either format.
        let mut text = header.as_bytes().to_vec();
        let mut payload = Vec::new();
        serde_json::json!({"items": {}, "counter": 1, "blob": [1], "raw": "abc"})
            .serialize(&mut rmp_serde::Serializer::new(&mut payload).with_struct_map())
            .unwrap();
        text.extend_from_slice(&payload);
        let problem = import::<Json>(&text).unwrap_err();
        assert_eq!(problem.path.as_deref(), Some("raw"), "{problem:?}");
    }

    #[test]
    fn type_names_are_the_ones_written() {
        assert_eq!(
            short_name("std::collections::hash::map::HashMap<uuid::Uuid, todos::Todo>"),
            "HashMap<Uuid, Todo>"
        );
        assert_eq!(short_name("todo::TodoState"), "TodoState");
        assert_eq!(short_name("()"), "()");
    }
}
