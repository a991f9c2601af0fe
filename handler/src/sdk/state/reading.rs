//! Reading an old state into the new `State` type while watching where serde is: the path inside
//! the state (`items["3f2a"].priority`), the struct being read there, and every value the new type
//! skipped (a field renamed or removed), so that a state that does not fit is explained, and one
//! that would lose data is refused, instead of either vanishing silently.
//!
//! [`Reader`] wraps any self-describing `serde::Deserializer` (MessagePack, JSON) and forwards
//! every call, wrapping the visitors, map, sequence and enum accessors it hands out, in the style
//! of `serde_path_to_error` and `serde_ignored`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

/// One step into the state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Field(String),
    Key(String),
    Index(usize),
    Variant(String),
}

/// What the reading saw.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    path: RefCell<Vec<Segment>>,
    /// The structs being read, innermost last, with the path depth where each starts.
    structs: RefCell<Vec<(Cow<'static, str>, usize)>>,
    ignored: RefCell<Vec<Skipped>>,
    failure: RefCell<Option<Place>>,
    /// The format writes a `Vec<u8>` as one block of bytes (MessagePack; not JSON, where a
    /// string must not read as bytes).
    pub(crate) byte_blocks: bool,
    /// Keeps the path and the structs being read, to say where a problem is. Without it, the
    /// reading only notes that something failed or was skipped (no allocation per value): the
    /// first, fast reading of a state that fits; one that does not is read again with it.
    pub(crate) detailed: bool,
}

/// Where something happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    /// The path inside the state, e.g. `items["3f2a"].priority`; empty at the top.
    pub(crate) path: String,
    /// The struct being read there.
    pub(crate) in_struct: Option<String>,
}

/// A value of the old state that the new type did not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skipped {
    pub(crate) place: Place,
    /// The field's name, when it was a field of a struct.
    pub(crate) field: Option<String>,
}

impl Tracker {
    fn render(path: &[Segment]) -> String {
        let mut text = String::new();
        for segment in path {
            match segment {
                Segment::Field(name) => {
                    if !text.is_empty() {
                        text.push('.');
                    }
                    text.push_str(name);
                }
                Segment::Key(key) => text.push_str(&format!("[{key}]")),
                Segment::Index(index) => text.push_str(&format!("[{index}]")),
                Segment::Variant(name) => {
                    if !text.is_empty() {
                        text.push_str("::");
                    }
                    text.push_str(name);
                }
            }
        }
        text
    }

    fn place(&self) -> Place {
        Place {
            path: Self::render(&self.path.borrow()),
            in_struct: self.structs.borrow().last().map(|(name, _)| name.to_string()),
        }
    }

    /// The first error's place is where it arose: the innermost wrapper sees it first.
    fn note_failure(&self) {
        let mut failure = self.failure.borrow_mut();
        if failure.is_none() {
            *failure = Some(self.place());
        }
    }

    fn note_ignored(&self) {
        if !self.detailed {
            let nowhere = Place { path: String::new(), in_struct: None };
            self.ignored.borrow_mut().push(Skipped { place: nowhere, field: None });
            return;
        }
        let path = self.path.borrow();
        // A skipped field: the last step is a field of the struct read at that depth.
        let field = match path.last() {
            Some(Segment::Field(name)) => Some(name.clone()),
            _ => None,
        };
        let place = Place {
            path: Self::render(&path),
            in_struct: self.structs.borrow().last().map(|(name, _)| name.to_string()),
        };
        self.ignored.borrow_mut().push(Skipped { place, field });
    }

    pub(crate) fn failure(&self) -> Option<Place> {
        self.failure.borrow().clone()
    }

    pub(crate) fn skipped(&self) -> Vec<Skipped> {
        self.ignored.borrow().clone()
    }

    fn push(&self, segment: Segment) {
        if self.detailed {
            self.path.borrow_mut().push(segment);
        }
    }

    fn pop(&self) {
        if self.detailed {
            self.path.borrow_mut().pop();
        }
    }

    fn enter_struct(&self, name: Cow<'static, str>) {
        if self.detailed {
            let depth = self.path.borrow().len();
            self.structs.borrow_mut().push((name, depth));
        }
    }

    fn leave_struct(&self) {
        if self.detailed {
            self.structs.borrow_mut().pop();
        }
    }
}

/// The type of the visitor that `Vec<u8>`'s `Deserialize` hands to `deserialize_seq`, found
/// once by asking it to read from a deserializer that only notes the visitor's type.
fn byte_vector_visitor() -> Option<std::any::TypeId> {
    struct Probe(std::cell::Cell<Option<std::any::TypeId>>);

    impl<'de> Deserializer<'de> for &Probe {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only notes the visitor's type"))
        }

        fn deserialize_seq<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            self.0.set(Some(typeid::of::<V>()));
            Err(de::Error::custom("only notes the visitor's type"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct tuple tuple_struct map struct enum
            identifier ignored_any
        }
    }

    static VISITOR: std::sync::OnceLock<Option<std::any::TypeId>> = std::sync::OnceLock::new();
    *VISITOR.get_or_init(|| {
        let probe = Probe(std::cell::Cell::new(None));
        let _ = <Vec<u8> as serde::Deserialize<'_>>::deserialize(&probe);
        probe.0.get()
    })
}

/// Reads a block of bytes, or a sequence of integers, into a `Vec<u8>`.
struct ByteVector;

impl<'de> Visitor<'de> for ByteVector {
    type Value = Vec<u8>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a sequence of bytes")
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<Vec<u8>, E> {
        Ok(value.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, value: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(value)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

/// Wraps a deserializer.
pub(crate) struct Reader<'t, D> {
    inner: D,
    tracker: &'t Tracker,
}

impl<'t, D> Reader<'t, D> {
    pub(crate) fn new(inner: D, tracker: &'t Tracker) -> Self {
        Self { inner, tracker }
    }
}

/// Records the place of an error on its way out.
fn noted<T, E>(tracker: &Tracker, result: Result<T, E>) -> Result<T, E> {
    if result.is_err() {
        tracker.note_failure();
    }
    result
}

macro_rules! forward {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                let tracker = self.tracker;
                noted(tracker, self.inner.$method(Wrap { inner: visitor, tracker, in_struct: false }))
            }
        )*
    };
}

impl<'de, 't, D: Deserializer<'de>> Deserializer<'de> for Reader<'t, D> {
    type Error = D::Error;

    forward! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_map deserialize_identifier
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let tracker = self.tracker;
        // A `Vec<u8>` written as one block (see `super::writing`) is read in one copy.
        if tracker.byte_blocks
            && Some(typeid::of::<V>()) == byte_vector_visitor()
            && typeid::of::<V::Value>() == typeid::of::<Vec<u8>>()
        {
            let bytes = noted(tracker, self.inner.deserialize_byte_buf(ByteVector))?;
            let bytes = std::mem::ManuallyDrop::new(bytes);
            // SAFETY: `V::Value` is `Vec<u8>` (same type id): this moves the vector out of the
            // `ManuallyDrop`, which never drops it.
            return Ok(unsafe { std::ptr::read(std::ptr::from_ref(&*bytes).cast::<V::Value>()) });
        }
        noted(
            tracker,
            self.inner.deserialize_seq(Wrap { inner: visitor, tracker, in_struct: false }),
        )
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.tracker.note_ignored();
        self.inner.deserialize_ignored_any(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let tracker = self.tracker;
        noted(
            tracker,
            self.inner
                .deserialize_unit_struct(name, Wrap { inner: visitor, tracker, in_struct: false }),
        )
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let tracker = self.tracker;
        noted(
            tracker,
            self.inner.deserialize_newtype_struct(
                name,
                Wrap { inner: visitor, tracker, in_struct: false },
            ),
        )
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        length: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let tracker = self.tracker;
        noted(
            tracker,
            self.inner
                .deserialize_tuple(length, Wrap { inner: visitor, tracker, in_struct: false }),
        )
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        length: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let tracker = self.tracker;
        noted(
            tracker,
            self.inner.deserialize_tuple_struct(
                name,
                length,
                Wrap { inner: visitor, tracker, in_struct: false },
            ),
        )
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let tracker = self.tracker;
        tracker.enter_struct(Cow::Borrowed(name));
        let result = noted(
            tracker,
            self.inner.deserialize_struct(
                name,
                fields,
                Wrap { inner: visitor, tracker, in_struct: true },
            ),
        );
        tracker.leave_struct();
        result
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let tracker = self.tracker;
        noted(
            tracker,
            self.inner.deserialize_enum(
                name,
                variants,
                Wrap { inner: visitor, tracker, in_struct: false },
            ),
        )
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Wraps a visitor, so that what it is handed is wrapped too.
struct Wrap<'t, V> {
    inner: V,
    tracker: &'t Tracker,
    /// The visitor of a struct: its map's keys are field names.
    in_struct: bool,
}

macro_rules! forward_visits {
    ($($method:ident($type:ty))*) => {
        $(
            fn $method<E: de::Error>(self, value: $type) -> Result<V::Value, E> {
                self.inner.$method(value)
            }
        )*
    };
}

impl<'de, 't, V: Visitor<'de>> Visitor<'de> for Wrap<'t, V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(formatter)
    }

    forward_visits! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_string(String) visit_bytes(&[u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<V::Value, E> {
        self.inner.visit_borrowed_str(value)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, value: &'de [u8]) -> Result<V::Value, E> {
        self.inner.visit_borrowed_bytes(value)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Reader::new(deserializer, self.tracker))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Reader::new(deserializer, self.tracker))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(SeqReader { inner: seq, tracker: self.tracker, index: 0 })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(MapReader {
            inner: map,
            tracker: self.tracker,
            in_struct: self.in_struct,
            key: None,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(EnumReader { inner: data, tracker: self.tracker })
    }
}

struct SeqReader<'t, A> {
    inner: A,
    tracker: &'t Tracker,
    index: usize,
}

impl<'de, 't, A: de::SeqAccess<'de>> de::SeqAccess<'de> for SeqReader<'t, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.tracker.push(Segment::Index(self.index));
        self.index += 1;
        let result = self.inner.next_element_seed(Seeded { inner: seed, tracker: self.tracker });
        let result = noted(self.tracker, result);
        self.tracker.pop();
        result
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

struct MapReader<'t, A> {
    inner: A,
    tracker: &'t Tracker,
    in_struct: bool,
    /// The last key read.
    key: Option<Key>,
}

/// A key as read: its text, and whether it was a string (shown quoted as a map key).
#[derive(Debug)]
struct Key {
    text: String,
    string: bool,
}

impl Key {
    fn segment(self, in_struct: bool) -> Segment {
        if in_struct {
            Segment::Field(self.text)
        } else if self.string {
            Segment::Key(quoted(&self.text))
        } else {
            Segment::Key(self.text)
        }
    }
}

impl<'de, 't, A: de::MapAccess<'de>> de::MapAccess<'de> for MapReader<'t, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if !self.tracker.detailed {
            return noted(self.tracker, self.inner.next_key_seed(seed));
        }
        let mut captured = None;
        let result = self.inner.next_key_seed(CaptureKey { inner: seed, captured: &mut captured });
        self.key = captured;
        noted(self.tracker, result)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        if self.tracker.detailed {
            let key = self.key.take().unwrap_or(Key { text: "?".to_owned(), string: false });
            self.tracker.push(key.segment(self.in_struct));
        }
        let result = self.inner.next_value_seed(Seeded { inner: seed, tracker: self.tracker });
        let result = noted(self.tracker, result);
        self.tracker.pop();
        result
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

struct EnumReader<'t, A> {
    inner: A,
    tracker: &'t Tracker,
}

impl<'de, 't, A: de::EnumAccess<'de>> de::EnumAccess<'de> for EnumReader<'t, A> {
    type Error = A::Error;
    type Variant = VariantReader<'t, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let tracker = self.tracker;
        if !tracker.detailed {
            let (value, variant) = noted(tracker, self.inner.variant_seed(seed))?;
            return Ok((value, VariantReader { inner: variant, tracker, name: String::new() }));
        }
        let mut captured = None;
        let (value, variant) = noted(
            tracker,
            self.inner.variant_seed(CaptureKey { inner: seed, captured: &mut captured }),
        )?;
        let name = captured.map_or_else(|| "?".to_owned(), |key| key.text);
        Ok((value, VariantReader { inner: variant, tracker, name }))
    }
}

struct VariantReader<'t, A> {
    inner: A,
    tracker: &'t Tracker,
    name: String,
}

impl<'de, 't, A: de::VariantAccess<'de>> de::VariantAccess<'de> for VariantReader<'t, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        noted(self.tracker, self.inner.unit_variant())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.tracker.push(Segment::Variant(self.name));
        let result = noted(
            self.tracker,
            self.inner.newtype_variant_seed(Seeded { inner: seed, tracker: self.tracker }),
        );
        self.tracker.pop();
        result
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        length: usize,
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.tracker.push(Segment::Variant(self.name));
        let result = noted(
            self.tracker,
            self.inner.tuple_variant(
                length,
                Wrap { inner: visitor, tracker: self.tracker, in_struct: false },
            ),
        );
        self.tracker.pop();
        result
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let tracker = self.tracker;
        tracker.push(Segment::Variant(self.name.clone()));
        // A struct variant reads like a struct named after its variant.
        tracker.enter_struct(Cow::Owned(self.name));
        let result = noted(
            tracker,
            self.inner.struct_variant(fields, Wrap { inner: visitor, tracker, in_struct: true }),
        );
        tracker.leave_struct();
        tracker.pop();
        result
    }
}

/// Wraps a seed, so that the value it reads is read through a [`Reader`].
struct Seeded<'t, T> {
    inner: T,
    tracker: &'t Tracker,
}

impl<'de, 't, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seeded<'t, T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T::Value, D::Error> {
        self.inner.deserialize(Reader::new(deserializer, self.tracker))
    }
}

/// Reads a map key (or an enum's variant name) and keeps its text for the path.
struct CaptureKey<'c, K> {
    inner: K,
    captured: &'c mut Option<Key>,
}

impl<'de, 'c, K: DeserializeSeed<'de>> DeserializeSeed<'de> for CaptureKey<'c, K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K::Value, D::Error> {
        self.inner
            .deserialize(CaptureKeyDeserializer { inner: deserializer, captured: self.captured })
    }
}

struct CaptureKeyDeserializer<'c, D> {
    inner: D,
    captured: &'c mut Option<Key>,
}

macro_rules! capture_forward {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.inner.$method(CaptureKeyVisitor { inner: visitor, captured: self.captured })
            }
        )*
    };
}

impl<'de, 'c, D: Deserializer<'de>> Deserializer<'de> for CaptureKeyDeserializer<'c, D> {
    type Error = D::Error;

    capture_forward! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_unit_struct(
            name,
            CaptureKeyVisitor { inner: visitor, captured: self.captured },
        )
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_newtype_struct(
            name,
            CaptureKeyVisitor { inner: visitor, captured: self.captured },
        )
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        length: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple(
            length,
            CaptureKeyVisitor { inner: visitor, captured: self.captured },
        )
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        length: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple_struct(
            name,
            length,
            CaptureKeyVisitor { inner: visitor, captured: self.captured },
        )
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(
            name,
            fields,
            CaptureKeyVisitor { inner: visitor, captured: self.captured },
        )
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_enum(
            name,
            variants,
            CaptureKeyVisitor { inner: visitor, captured: self.captured },
        )
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

struct CaptureKeyVisitor<'c, V> {
    inner: V,
    captured: &'c mut Option<Key>,
}

macro_rules! capture_number {
    ($($method:ident($type:ty))*) => {
        $(
            fn $method<E: de::Error>(self, value: $type) -> Result<V::Value, E> {
                *self.captured = Some(Key { text: value.to_string(), string: false });
                self.inner.$method(value)
            }
        )*
    };
}

impl<'de, 'c, V: Visitor<'de>> Visitor<'de> for CaptureKeyVisitor<'c, V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(formatter)
    }

    capture_number! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<V::Value, E> {
        *self.captured = Some(Key { text: value.to_owned(), string: true });
        self.inner.visit_str(value)
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<V::Value, E> {
        *self.captured = Some(Key { text: value.to_owned(), string: true });
        self.inner.visit_borrowed_str(value)
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<V::Value, E> {
        *self.captured = Some(Key { text: value.clone(), string: true });
        self.inner.visit_string(value)
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<V::Value, E> {
        *self.captured =
            Some(Key { text: String::from_utf8_lossy(value).into_owned(), string: true });
        self.inner.visit_bytes(value)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, value: &'de [u8]) -> Result<V::Value, E> {
        *self.captured =
            Some(Key { text: String::from_utf8_lossy(value).into_owned(), string: true });
        self.inner.visit_borrowed_bytes(value)
    }

    fn visit_byte_buf<E: de::Error>(self, value: Vec<u8>) -> Result<V::Value, E> {
        *self.captured =
            Some(Key { text: String::from_utf8_lossy(&value).into_owned(), string: true });
        self.inner.visit_byte_buf(value)
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(deserializer)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(map)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(data)
    }
}

/// A string map key as the path shows it: quoted, and cut when long.
fn quoted(key: &str) -> String {
    let mut shown: String = key.chars().take(40).collect();
    if shown.len() < key.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}
