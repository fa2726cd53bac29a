//! [`ValueMap`]: a session's stored values (or its flash), name → JSON text, in one allocation.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use smallvec::SmallVec;

use serde::{Serialize, Serializer};

use crate::short_bytes;

/// Stored objects read into a map's buffer, entry by entry (`Deserialize`, the stores' decoders).
pub(crate) mod decode;

/// Each entry starts with its name's and its value's lengths, as little-endian `u32`s.
const HEADER: usize = 8;

/// The bytes an entry of `name` and `json` takes in a map's buffer.
pub(crate) fn entry_size(name: &str, json: &str) -> usize {
    HEADER + name.len() + json.len()
}

/// The longest name or value a map holds: 4 GiB less one byte.
pub(crate) const MAX_LEN: usize = u32::MAX as usize;

/// Stored name → value encoded as JSON text, ordered by name.
///
/// The whole map is one buffer: a request that reads a session touches one or two cache lines
/// of it, where a tree of `String`s spreads a two-key session over half a dozen allocations —
/// and on a server with many sessions, each of them is a cache miss. Lookups scan the entries,
/// which is as fast as a search for the few keys a session holds; inserting or removing a key
/// rebuilds the buffer.
///
/// The buffer is shared between clones and copied on write, so cloning a map (and a
/// `Record`) allocates nothing: a store that keeps records in memory hands
/// each request a clone, and rewrites a value of the same length in place once no request holds
/// the buffer (any other change builds a new buffer, in one allocation).
///
/// Iteration (and serialization: a JSON object of strings) is in name order.
///
/// ```
/// use typed_sessions::store::ValueMap;
///
/// let mut values = ValueMap::new();
/// values.insert("user_id", "42");
/// values.insert("cart", r#"["apple"]"#);
/// values.insert("user_id", "43");
/// assert_eq!(values.get("user_id"), Some("43"));
/// assert_eq!(values.keys().collect::<Vec<_>>(), ["cart", "user_id"]);
/// assert!(values.remove("cart"));
/// assert_eq!(values.len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct ValueMap {
    /// The entries in name order, each: name length, value length, name, value; `None` when
    /// there are none, so that an empty map allocates nothing. Bytes rather than a `str` so that
    /// a value of the same length is rewritten in place; only `str`s are ever written.
    bytes: Option<Arc<[u8]>>,
}

impl PartialEq for ValueMap {
    fn eq(&self, other: &Self) -> bool {
        self.buffer() == other.buffer()
    }
}

impl Eq for ValueMap {}

/// Where one entry lies in the buffer.
struct Slot {
    start: usize,
    name: Range<usize>,
    value: Range<usize>,
}

impl ValueMap {
    /// An empty map; allocates nothing.
    pub const fn new() -> Self {
        ValueMap { bytes: None }
    }

    fn buffer(&self) -> &[u8] {
        self.bytes.as_deref().unwrap_or_default()
    }

    /// Replaces the buffer with `bytes`.
    fn set_buffer(&mut self, bytes: &[u8]) {
        self.bytes = (!bytes.is_empty()).then(|| Arc::from(bytes));
    }

    /// The buffer with `range` replaced by `with`: put together on the stack when it is small,
    /// so that the new buffer costs one allocation.
    fn spliced(&self, range: Range<usize>, with: impl Iterator<Item = u8>) -> SmallVec<[u8; 256]> {
        let buffer = self.buffer();
        let mut bytes = SmallVec::with_capacity(buffer.len() + with.size_hint().0);
        bytes.extend_from_slice(&buffer[..range.start]);
        bytes.extend(with);
        bytes.extend_from_slice(&buffer[range.end..]);
        bytes
    }

    /// The bytes the map's entries take, as this crate encodes them: each entry's name and JSON
    /// value, plus [`entry_size`]'s few bytes of lengths.
    pub(crate) fn byte_size(&self) -> usize {
        self.buffer().len()
    }

    /// How many names the map holds (counted: the map keeps no count, to keep a record small).
    pub fn len(&self) -> usize {
        self.slots().count()
    }

    /// Whether the map holds nothing.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_none()
    }

    /// The value stored under `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let slot = self.find(name)?;
        Some(self.text(slot.value))
    }

    /// [`get`](Self::get)'s value as bytes, not checked as UTF-8 again: for a JSON decoder,
    /// which checks what it reads anyway.
    pub(crate) fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        let slot = self.find(name)?;
        Some(&self.buffer()[slot.value])
    }

    /// Whether the map holds `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// Whether the map holds `json` under `name`: [`get`](Self::get) without reading the value
    /// as a `str`.
    pub(crate) fn holds(&self, name: &str, json: &str) -> bool {
        self.find(name)
            .is_some_and(|slot| short_bytes::same(&self.buffer()[slot.value], json.as_bytes()))
    }

    /// Stores `json` under `name`; returns whether it replaced a value.
    ///
    /// # Panics
    ///
    /// If `name` or `json` is 4 GiB or longer.
    pub fn insert(&mut self, name: impl AsRef<str>, json: impl AsRef<str>) -> bool {
        let (name, json) = (name.as_ref().as_bytes(), json.as_ref().as_bytes());
        match self.position(name) {
            Ok(slot) => {
                match &mut self.bytes {
                    // Copied first only if a clone still shares the buffer.
                    Some(shared) if slot.value.len() == json.len() => {
                        short_bytes::copy(&mut Arc::make_mut(shared)[slot.value], json);
                    }
                    _ => {
                        let bytes = self.spliced(slot.start..slot.value.end, entry(name, json));
                        self.set_buffer(&bytes);
                    }
                }
                true
            }
            Err(at) => {
                let bytes = self.spliced(at..at, entry(name, json));
                self.set_buffer(&bytes);
                false
            }
        }
    }

    /// Removes `name`; returns whether the map held it.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.position(name.as_bytes()) {
            Ok(slot) => {
                let bytes = self.spliced(slot.start..slot.value.end, std::iter::empty());
                self.set_buffer(&bytes);
                true
            }
            Err(_) => false,
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.bytes = None;
    }

    /// Names and values, in name order.
    pub fn iter(&self) -> ValueMapIter<'_> {
        ValueMapIter { slots: self.slots() }
    }

    /// The names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter().map(|(name, _)| name)
    }

    fn find(&self, name: &str) -> Option<Slot> {
        self.slots()
            .find(|slot| short_bytes::same(&self.buffer()[slot.name.clone()], name.as_bytes()))
    }

    fn slots(&self) -> Slots<'_> {
        Slots { map: self, at: 0 }
    }

    fn slot(&self, start: usize) -> Option<Slot> {
        slot_at(self.buffer(), start)
    }

    /// The slot holding `name`, or where an entry for it belongs.
    fn position(&self, name: &[u8]) -> Result<Slot, usize> {
        for slot in self.slots() {
            let stored = &self.buffer()[slot.name.clone()];
            if short_bytes::same(stored, name) {
                return Ok(slot);
            }
            if stored > name {
                return Err(slot.start);
            }
        }
        Err(self.buffer().len())
    }

    fn text(&self, range: Range<usize>) -> &str {
        // Only `str`s are ever written, whole, at the offsets the headers give.
        std::str::from_utf8(&self.buffer()[range]).expect("a ValueMap holds whole UTF-8 strings")
    }
}

/// The entry of `buffer` that starts at `start`, if one does.
fn slot_at(buffer: &[u8], start: usize) -> Option<Slot> {
    let header = buffer.get(start..start + HEADER)?;
    let name_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let value_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let name = start + HEADER..start + HEADER + name_len;
    let value = name.end..name.end + value_len;
    Some(Slot { start, name, value })
}

/// The bytes of one entry: its header, then `name` and `json`.
fn entry<'a>(name: &'a [u8], json: &'a [u8]) -> impl Iterator<Item = u8> + 'a {
    header(name, json).into_iter().chain(name.iter().chain(json).copied())
}

/// The header of the entry `name` → `json`: both lengths, as [`slot_at`] reads them.
fn header(name: &[u8], json: &[u8]) -> [u8; HEADER] {
    let length = |text: &[u8]| u32::try_from(text.len()).expect("session names and values are shorter than 4 GiB");
    let mut header = [0; HEADER];
    header[..4].copy_from_slice(&length(name).to_le_bytes());
    header[4..].copy_from_slice(&length(json).to_le_bytes());
    header
}

/// The slots of a map's entries, in order.
#[derive(Clone)]
struct Slots<'a> {
    map: &'a ValueMap,
    at: usize,
}

impl Iterator for Slots<'_> {
    type Item = Slot;

    fn next(&mut self) -> Option<Slot> {
        let slot = self.map.slot(self.at)?;
        self.at = slot.value.end;
        Some(slot)
    }
}

/// The entries of a [`ValueMap`], in name order.
#[derive(Clone)]
pub struct ValueMapIter<'a> {
    slots: Slots<'a>,
}

impl<'a> Iterator for ValueMapIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let slot = self.slots.next()?;
        let map = self.slots.map;
        Some((map.text(slot.name), map.text(slot.value)))
    }
}

impl fmt::Debug for ValueMapIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

impl<'a> IntoIterator for &'a ValueMap {
    type Item = (&'a str, &'a str);
    type IntoIter = ValueMapIter<'a>;

    fn into_iter(self) -> ValueMapIter<'a> {
        self.iter()
    }
}

impl std::ops::Index<&str> for ValueMap {
    type Output = str;

    /// # Panics
    ///
    /// If the map does not hold `name`.
    fn index(&self, name: &str) -> &str {
        self.get(name).unwrap_or_else(|| panic!("the map holds no {name:?}"))
    }
}

/// Later entries replace earlier ones with the same name.
impl<N: AsRef<str>, J: AsRef<str>> FromIterator<(N, J)> for ValueMap {
    fn from_iter<I: IntoIterator<Item = (N, J)>>(entries: I) -> Self {
        let mut map = decode::ValueMapBuilder::default();
        for (name, json) in entries {
            map.push(name.as_ref(), json.as_ref())
                .unwrap_or_else(|too_long| panic!("{too_long}"));
        }
        map.finish()
    }
}

impl<N: AsRef<str>, J: AsRef<str>> Extend<(N, J)> for ValueMap {
    fn extend<I: IntoIterator<Item = (N, J)>>(&mut self, entries: I) {
        for (name, json) in entries {
            self.insert(name, json);
        }
    }
}

impl fmt::Debug for ValueMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A map of strings: `{"user_id": "42"}`.
impl Serialize for ValueMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Every operation, side by side with a `BTreeMap` of `String`s, over names that share
    /// prefixes, values whose lengths change, and non-ASCII text.
    #[test]
    fn behaves_like_an_ordered_map_of_strings() {
        let names = ["a", "ab", "b", "", "é", "user_id", "counter", "ü"];
        let values = ["1", "", "\"long value\"", "[1,2,3]", "\"ø\""];
        let mut map = ValueMap::new();
        let mut model = BTreeMap::<String, String>::new();
        // A fixed pseudo-random walk: the test is repeatable.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let name = names[(seed % names.len() as u64) as usize];
            let value = values[((seed >> 8) % values.len() as u64) as usize];
            if (seed >> 16).is_multiple_of(3) {
                assert_eq!(map.remove(name), model.remove(name).is_some(), "remove {name:?}");
            } else {
                assert_eq!(
                    map.insert(name, value),
                    model.insert(name.to_owned(), value.to_owned()).is_some(),
                    "insert {name:?}"
                );
            }
            assert_eq!(map.len(), model.len());
            for name in names {
                assert_eq!(map.get(name), model.get(name).map(String::as_str), "get {name:?}");
                assert_eq!(map.contains_key(name), model.contains_key(name));
            }
            let entries: Vec<_> = map.iter().collect();
            let expected: Vec<_> = model.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            assert_eq!(entries, expected);
        }
    }

    #[test]
    fn clones_share_the_buffer_until_one_changes_and_a_map_alone_rewrites_in_place() {
        let mut map: ValueMap = [("a", "1"), ("b", "2")].into_iter().collect();
        let snapshot = map.clone();
        assert!(Arc::ptr_eq(
            map.bytes.as_ref().unwrap(),
            snapshot.bytes.as_ref().unwrap()
        ));
        map.insert("a", "3");
        let buffer = Arc::as_ptr(map.bytes.as_ref().unwrap());
        map.insert("a", "4");
        assert_eq!(
            Arc::as_ptr(map.bytes.as_ref().unwrap()),
            buffer,
            "a same-length value is rewritten in place"
        );
        map.insert("c", "5");
        map.remove("b");
        assert_eq!(snapshot.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
        assert_eq!(map.iter().collect::<Vec<_>>(), [("a", "4"), ("c", "5")]);
        map.remove("a");
        map.remove("c");
        assert!(map.is_empty() && map.bytes.is_none());
    }

    #[test]
    fn collects_sorted_and_the_last_duplicate_wins() {
        let map: ValueMap = [("b", "1"), ("a", "2"), ("b", "3"), ("c", "4"), ("a", "5")]
            .into_iter()
            .collect();
        assert_eq!(map.iter().collect::<Vec<_>>(), [("a", "5"), ("b", "3"), ("c", "4")]);
        assert_eq!(map.len(), 3);
        // One map, however it was built.
        let mut inserted = ValueMap::new();
        inserted.extend([("c", "4"), ("a", "5"), ("b", "3")]);
        assert_eq!(map, inserted);
    }

    #[test]
    fn serializes_as_a_json_object_of_strings() {
        let map: ValueMap = [("user_id", "42"), ("cart", r#"["apple"]"#)].into_iter().collect();
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(json, r#"{"cart":"[\"apple\"]","user_id":"42"}"#);
        assert_eq!(serde_json::from_str::<ValueMap>(&json).unwrap(), map);
        // Duplicate names in stored JSON: the last one wins, as with any map.
        let doubled: ValueMap = serde_json::from_str(r#"{"a":"1","a":"2"}"#).unwrap();
        assert_eq!(doubled.get("a"), Some("2"));
        assert!(serde_json::from_str::<ValueMap>(r#"{"a":1}"#).is_err());
        assert_eq!(format!("{map:?}"), r#"{"cart": "[\"apple\"]", "user_id": "42"}"#);
    }
}
