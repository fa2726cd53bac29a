//! Stored objects read into a [`ValueMap`]'s buffer entry by entry: `ValueMap`'s own
//! `Deserialize` (an object of strings) and the stores' decoders (that form, or an object of the
//! values' own JSON).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{header, slot_at, Slot, ValueMap, HEADER, MAX_LEN};

/// Builds a [`ValueMap`] from entries given one at a time, straight into one buffer, with no
/// allocation per entry: for the stores' decoders, `ValueMap`'s own `Deserialize` and
/// collecting. Entries that come in name order (an object this crate wrote and nothing
/// re-ordered) are the map's buffer as they are; otherwise (PostgreSQL's `jsonb` prints shorter
/// names first, Lua's `cjson` in hash order) they are put in order once at the end, the last of
/// a repeated name winning.
#[derive(Default)]
pub(crate) struct ValueMapBuilder {
    bytes: Vec<u8>,
    /// Where the last entry's name lies in `bytes`.
    last_name: Range<usize>,
    in_order: bool,
}

/// A name or value too long for a [`ValueMap`] (see [`MAX_LEN`]).
#[derive(Debug)]
pub(crate) struct EntryTooLong(String);

impl fmt::Display for EntryTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the session entry {:?} is 4 GiB or longer", self.0)
    }
}

impl ValueMapBuilder {
    /// A builder with room for `bytes` bytes of entries (a stored object's length is a little
    /// more than its entries take).
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        ValueMapBuilder {
            bytes: Vec::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Adds the entry `name` → `json`.
    pub(crate) fn push(&mut self, name: &str, json: &str) -> Result<(), EntryTooLong> {
        if name.len().max(json.len()) > MAX_LEN {
            let mut shown = name.len().min(64);
            while !name.is_char_boundary(shown) {
                shown -= 1;
            }
            return Err(EntryTooLong(name[..shown].to_owned()));
        }
        if self.bytes.is_empty() {
            self.in_order = true;
        } else if self.in_order && name.as_bytes() <= &self.bytes[self.last_name.clone()] {
            self.in_order = false;
        }
        let start = self.bytes.len() + HEADER;
        self.bytes.reserve(HEADER + name.len() + json.len());
        self.bytes.extend_from_slice(&header(name.as_bytes(), json.as_bytes()));
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.extend_from_slice(json.as_bytes());
        self.last_name = start..start + name.len();
        Ok(())
    }

    /// The map of the entries pushed.
    pub(crate) fn finish(self) -> ValueMap {
        let mut map = ValueMap::new();
        if self.in_order {
            map.set_buffer(&self.bytes);
            return map;
        }
        // Each entry is whole, only not in its place: the places are sorted by name (stably, so
        // the last of a name comes last and is kept) and the entries copied in that order into
        // one new buffer.
        let mut places = Vec::new();
        let mut at = 0;
        while let Some(slot) = slot_at(&self.bytes, at) {
            at = slot.value.end;
            places.push(slot);
        }
        let name = |slot: &Slot| &self.bytes[slot.name.clone()];
        places.sort_by(|a, b| name(a).cmp(name(b)));
        let mut sorted = Vec::with_capacity(self.bytes.len());
        for (index, slot) in places.iter().enumerate() {
            if places.get(index + 1).is_some_and(|next| name(next) == name(slot)) {
                continue;
            }
            sorted.extend_from_slice(&self.bytes[slot.start..slot.value.end]);
        }
        map.set_buffer(&sorted);
        map
    }
}

impl<'de> Deserialize<'de> for ValueMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Object::<Strings>::with_capacity(0).deserialize(deserializer)
    }
}

/// How a stored object holds each value's JSON text.
pub(crate) trait MemberForm {
    /// What the object is, for errors.
    const EXPECTING: &'static str;

    /// Reads the value of the member `name` into `map`.
    fn read_into<'de, A: MapAccess<'de>>(access: &mut A, map: &mut ValueMapBuilder, name: &str)
        -> Result<(), A::Error>;
}

/// Each value's JSON text as a JSON string: `{"user_id": "42"}` (`ValueMap`'s own form).
pub(crate) struct Strings;

impl MemberForm for Strings {
    const EXPECTING: &'static str = "a map of session names to JSON text";

    fn read_into<'de, A: MapAccess<'de>>(
        access: &mut A,
        map: &mut ValueMapBuilder,
        name: &str,
    ) -> Result<(), A::Error> {
        access.next_value_seed(StringEntry { map, name })
    }
}

/// An object of session values in the form `F`, read into one buffer.
struct Object<F> {
    capacity: usize,
    form: PhantomData<F>,
}

impl<F> Object<F> {
    fn with_capacity(capacity: usize) -> Self {
        Object {
            capacity,
            form: PhantomData,
        }
    }
}

impl<'de, F: MemberForm> DeserializeSeed<'de> for Object<F> {
    type Value = ValueMap;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ValueMap, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, F: MemberForm> Visitor<'de> for Object<F> {
    type Value = ValueMap;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(F::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<ValueMap, A::Error> {
        let mut map = ValueMapBuilder::with_capacity(self.capacity);
        while let Some(Name(name)) = access.next_key()? {
            F::read_into(&mut access, &mut map, &name)?;
        }
        Ok(map.finish())
    }
}

/// The JSON object `text` of values in the form `F`, with room made up front for its entries:
/// a store's stored values or flash.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn read_json_object<F: MemberForm>(text: &str) -> serde_json::Result<ValueMap> {
    // An entry's lengths take a few more bytes in the buffer than its quotes, colon and comma
    // in the text.
    let capacity = text.len() + text.len() / 2;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let map = Object::<F>::with_capacity(capacity).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(map)
}

/// A value's JSON text, as a JSON string, added to the map as it is read (no `String` of its
/// own).
struct StringEntry<'m> {
    map: &'m mut ValueMapBuilder,
    name: &'m str,
}

impl<'de> DeserializeSeed<'de> for StringEntry<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for StringEntry<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a session value's JSON text, as a string")
    }

    fn visit_str<E: serde::de::Error>(self, json: &str) -> Result<(), E> {
        self.map.push(self.name, json).map_err(E::custom)
    }

    /// Formats that give strings as bytes (MessagePack's `bin`), as serde's `String` accepts.
    fn visit_bytes<E: serde::de::Error>(self, json: &[u8]) -> Result<(), E> {
        let json =
            std::str::from_utf8(json).map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(json), &self))?;
        self.visit_str(json)
    }
}

/// A name in a stored object, borrowed from the text when it has no escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;

        impl<'de> Visitor<'de> for Text {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a session name")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, name: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(name)))
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name.to_owned())))
            }

            fn visit_string<E: serde::de::Error>(self, name: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name)))
            }

            fn visit_borrowed_bytes<E: serde::de::Error>(self, name: &'de [u8]) -> Result<Name<'de>, E> {
                std::str::from_utf8(name)
                    .map(|name| Name(Cow::Borrowed(name)))
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(name), &self))
            }

            fn visit_bytes<E: serde::de::Error>(self, name: &[u8]) -> Result<Name<'de>, E> {
                std::str::from_utf8(name)
                    .map(|name| Name(Cow::Owned(name.to_owned())))
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(name), &self))
            }
        }

        deserializer.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builder_takes_entries_in_order_as_they_are_and_sorts_the_others() {
        let mut in_order = ValueMapBuilder::default();
        for (name, json) in [("a", "1"), ("b", "2")] {
            in_order.push(name, json).unwrap();
        }
        assert_eq!(in_order.finish(), [("a", "1"), ("b", "2")].into_iter().collect());
        // As `jsonb` prints names (shorter first), with a repeated name: the last one wins.
        let entries = [
            ("k9", "1"),
            ("k10", "2"),
            ("k1", "3"),
            ("k9", "4"),
            ("", "5"),
            ("é", "6"),
        ];
        let mut builder = ValueMapBuilder::default();
        for (name, json) in entries {
            builder.push(name, json).unwrap();
        }
        let map = builder.finish();
        assert_eq!(map, entries.into_iter().collect());
        assert_eq!(
            map.iter().collect::<Vec<_>>(),
            [("", "5"), ("k1", "3"), ("k10", "2"), ("k9", "4"), ("é", "6")]
        );
        assert!(ValueMapBuilder::default().finish().is_empty());
    }
}
