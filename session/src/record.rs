//! The stored form of a session ([`Record`]) and the per-key patch a request produces ([`Changes`]).
//!
//! Values are kept as JSON text per key: a request decodes only the keys it reads and encodes
//! only the keys it writes, and a store can merge a patch key by key without understanding the
//! values.
//!
//! Why this file is long: a quarter of it is tests, the patch-merging model among them.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::expiry::Expiry;
use crate::value_map::{entry_size, ValueMap};

/// What a request changed in one map (values, or flash): stored name → `Some(json)` to set,
/// `None` to remove.
///
/// A small map ordered by name: a request changes a few keys, so a sorted array (the first
/// entry kept inline, no allocation) is cheaper to build, search and drop than a tree. Names
/// are `Cow`s because a request's names are the `&'static str`s of its schema's keys, so
/// building a patch copies no name.
///
/// ```
/// use typed_sessions::store::Patch;
///
/// let mut patch = Patch::new();
/// patch.insert("theme", Some(r#""dark""#.to_owned()));
/// patch.insert("cart", None);
/// patch.insert("theme", Some(r#""light""#.to_owned()));
/// assert_eq!(patch.len(), 2);
/// assert_eq!(patch["theme"].as_deref(), Some(r#""light""#));
/// assert_eq!(patch.keys().collect::<Vec<_>>(), ["cart", "theme"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patch {
    // Most requests change one key: its entry lives inline, so building the patch allocates
    // nothing.
    entries: SmallVec<[(Cow<'static, str>, Option<String>); 1]>,
}

impl Patch {
    /// An empty patch.
    pub const fn new() -> Self {
        Patch {
            entries: SmallVec::new_const(),
        }
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(entry, _)| entry.as_ref().cmp(name))
    }

    /// Sets the change for `name`; returns the change it replaced.
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, change: Option<String>) -> Option<Option<String>> {
        let name = name.into();
        match self.position(&name) {
            Ok(found) => Some(std::mem::replace(&mut self.entries[found].1, change)),
            Err(at) => {
                self.entries.insert(at, (name, change));
                None
            }
        }
    }

    /// Drops the change for `name`; returns it.
    pub fn remove(&mut self, name: &str) -> Option<Option<String>> {
        let found = self.position(name).ok()?;
        Some(self.entries.remove(found).1)
    }

    /// The change for `name`, if the patch has one.
    pub fn get(&self, name: &str) -> Option<&Option<String>> {
        let found = self.position(name).ok()?;
        Some(&self.entries[found].1)
    }

    /// Whether the patch changes `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// How many names the patch changes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every change.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The changes, by name.
    pub fn iter(&self) -> PatchIter<'_> {
        PatchIter {
            entries: self.entries.iter(),
        }
    }

    /// The names changed, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.iter().map(|(name, _)| name.as_ref())
    }
}

/// The changes of a [`Patch`], in name order.
#[derive(Clone, Debug)]
pub struct PatchIter<'a> {
    entries: std::slice::Iter<'a, (Cow<'static, str>, Option<String>)>,
}

impl<'a> Iterator for PatchIter<'a> {
    type Item = (&'a str, &'a Option<String>);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, change) = self.entries.next()?;
        Some((name.as_ref(), change))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for PatchIter<'_> {}

impl<'a> IntoIterator for &'a Patch {
    type Item = (&'a str, &'a Option<String>);
    type IntoIter = PatchIter<'a>;

    fn into_iter(self) -> PatchIter<'a> {
        self.iter()
    }
}

impl std::ops::Index<&str> for Patch {
    type Output = Option<String>;

    /// # Panics
    ///
    /// If the patch does not change `name`.
    fn index(&self, name: &str) -> &Option<String> {
        self.get(name)
            .unwrap_or_else(|| panic!("the patch does not change {name:?}"))
    }
}

impl<N: Into<Cow<'static, str>>> Extend<(N, Option<String>)> for Patch {
    fn extend<I: IntoIterator<Item = (N, Option<String>)>>(&mut self, changes: I) {
        for (name, change) in changes {
            self.insert(name, change);
        }
    }
}

impl<N: Into<Cow<'static, str>>> FromIterator<(N, Option<String>)> for Patch {
    fn from_iter<I: IntoIterator<Item = (N, Option<String>)>>(changes: I) -> Self {
        let mut patch = Patch::new();
        patch.extend(changes);
        patch
    }
}

/// Everything a store keeps for one session.
///
/// Two records are equal when they hold the same session: their [`revision`](Self::revision),
/// a note of where a record was read from, is not compared.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// Session values, by stored name.
    pub values: ValueMap,
    /// Flash values waiting for the next request that loads the session.
    pub flash: ValueMap,
    /// When the session started. Survives `regenerate_id`; the absolute lifetime cap counts from it.
    #[serde(with = "unix_millis_serde")]
    pub created_at: SystemTime,
    /// When the store may forget the session.
    #[serde(with = "unix_millis_serde")]
    pub expires_at: SystemTime,
    /// A per-session expiry that overrides the layer's (`Session::set_expiry`, "remember me").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<Expiry>,
    /// The JSON form of the owner key's value (`#[session(owner)]`), which the store indexes
    /// the session under (see "Sessions of an owner" in the `SessionStore` docs); `None` for a
    /// session without an owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The stored form this record was read from, when the store that loaded it notes one (see
    /// [`Revision`]); empty for a record built in memory. Not serialized.
    #[serde(skip)]
    pub revision: Revision,
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
            && self.flash == other.flash
            && self.created_at == other.created_at
            && self.expires_at == other.expires_at
            && self.expiry == other.expiry
            && self.owner == other.owner
    }
}

impl Eq for Record {}

/// A store's note of the stored form a [`Record`] was read from: a version number, an etag, or
/// the stored bytes themselves; empty unless the store's `load` sets one.
///
/// A store that sets it on the records it loads gets each record back with the changes a
/// request made to it, in [`Changes::base`]. If what it holds under the key is still that
/// revision, and `base` is live at the store's time (its `expires_at` is later), it may store
/// `base` with the changes applied ([`Record::apply`]) in one compare-and-set instead of
/// merging the changes into what it holds; otherwise it merges as usual (and writes nothing if
/// no live record is left). A store whose merge is cheap (in memory, or in the database's own
/// query language) has no use for it: without revisions the layer never keeps the loaded
/// record for the save.
///
/// A record changed after it was loaded is no longer that revision: [`Record::apply`] clears
/// it, and code that changes a loaded record's fields otherwise (a wrapper store that
/// transforms records, say) clears it too (`record.revision = Revision::default()`).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use typed_sessions::store::{Record, Revision};
///
/// let now = SystemTime::now();
/// let mut record = Record::new(now, now + Duration::from_secs(60));
/// assert!(record.revision.is_empty());
/// record.revision = Revision::new(&b"7"[..]);
/// assert_eq!(record.revision.as_bytes(), Some(&b"7"[..]));
/// ```
#[derive(Clone, Default)]
pub struct Revision(Option<Box<[u8]>>);

impl Revision {
    /// A revision of these bytes (a `Vec<u8>` whose length is its capacity is kept, not copied).
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Self {
        Revision(Some(bytes.into()))
    }

    /// The bytes the store noted, if it noted any.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        self.0.as_deref()
    }

    /// Whether no revision was noted.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// Its length only: a revision may be the stored record, with someone's session values.
impl std::fmt::Debug for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(bytes) => write!(f, "Revision({} bytes)", bytes.len()),
            None => f.write_str("Revision(none)"),
        }
    }
}

impl Record {
    /// The bytes its values and flash take (see `SessionLayer::with_max_session_size`).
    pub(crate) fn byte_size(&self) -> usize {
        self.values.byte_size() + self.flash.byte_size()
    }

    /// [`byte_size`](Self::byte_size) once the changes to `values` and `flash` are merged in,
    /// as [`apply`](Self::apply) would merge them.
    pub(crate) fn byte_size_with(&self, values: &Patch, flash: &Patch) -> usize {
        merged_size(&self.values, values) + merged_size(&self.flash, flash)
    }

    /// An empty record created at `now` that expires at `expires_at`.
    pub fn new(now: SystemTime, expires_at: SystemTime) -> Self {
        Record {
            values: ValueMap::new(),
            flash: ValueMap::new(),
            created_at: now,
            expires_at,
            expiry: None,
            owner: None,
            revision: Revision::default(),
        }
    }

    /// Whether the record has expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at <= now
    }

    /// Applies a change set in place, the way every store must merge it, and clears the
    /// [`revision`](Self::revision): the record is no longer the stored form it was read from.
    ///
    /// Stores that keep records in memory (or read-modify-write them under a lock) call this;
    /// stores that merge in the database implement the same rules in their query language.
    pub fn apply(&mut self, changes: &Changes) {
        merge_patch(&mut self.values, &changes.values);
        merge_patch(&mut self.flash, &changes.flash);
        if let Some(expires_at) = changes.expires_at {
            self.expires_at = expires_at;
        }
        if let Some(expiry) = changes.expiry {
            self.expiry = expiry;
        }
        if let Some(owner) = &changes.owner {
            self.owner.clone_from(owner);
        }
        if !self.revision.is_empty() {
            self.revision = Revision::default();
        }
    }
}

fn merge_patch(map: &mut ValueMap, patch: &Patch) {
    for (name, change) in patch {
        match change {
            Some(json) => map.insert(name, json),
            None => map.remove(name),
        };
    }
}

/// What one request changed in an existing session, key by key.
///
/// A store applies it atomically and merges it with what is stored: keys not named here are left
/// alone, so two concurrent requests that write different keys both keep their writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Values set (`Some`) or removed (`None`).
    pub values: Patch,
    /// Flash set (`Some`) or removed (`None`).
    pub flash: Patch,
    /// A new expiry time (a write, or an idle-timeout touch).
    pub expires_at: Option<SystemTime>,
    /// A new per-session expiry override (`Some(None)` removes it).
    pub expiry: Option<Option<Expiry>>,
    /// A new owner for the index ([`Record::owner`]): `Some(None)` when the owner key was removed.
    pub owner: Option<Option<String>>,
    /// The record as the request loaded it, given only when the store noted its
    /// [`revision`](Record::revision) (`None` otherwise, and always for a store that notes
    /// none). A store may then write `base` with these changes applied if it still holds that
    /// revision and `base` is live, and must merge the changes into what it holds if not (see
    /// [`Revision`]).
    ///
    /// Boxed: most change sets carry none, and a change set travels by value through the save.
    pub base: Option<Box<Record>>,
}

impl Changes {
    /// Whether applying this would change nothing.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.flash.is_empty()
            && self.expires_at.is_none()
            && self.expiry.is_none()
            && self.owner.is_none()
    }
}

mod unix_millis_serde {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(crate::expiry::to_unix_millis(*time))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        i64::deserialize(d).map(crate::expiry::from_unix_millis)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn apply_merges_key_by_key() {
        let now = SystemTime::now();
        let mut record = Record::new(now, now + Duration::from_secs(60));
        record.values.insert("a", "1");
        record.values.insert("b", "2");
        record.flash.insert("notice", "\"hi\"");

        let mut changes = Changes::default();
        changes.values.insert("b", None);
        changes.values.insert("c", Some("3".into()));
        changes.flash.insert("notice", None);
        record.apply(&changes);

        assert_eq!(record.values.get("a"), Some("1"));
        assert!(!record.values.contains_key("b"));
        assert_eq!(record.values.get("c"), Some("3"));
        assert!(record.flash.is_empty());
    }
}

#[cfg(test)]
mod properties {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    /// Names that collide often, so that patches overwrite and remove what earlier ones wrote.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof!["[a-c]", "[a-c]{2}", "user_id", "é"]
    }

    /// JSON texts of several shapes and lengths.
    fn json() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            ".{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            prop::collection::vec(any::<u8>(), 0..5).prop_map(|v| serde_json::to_string(&v).unwrap()),
            Just("null".to_owned()),
        ]
    }

    fn patch() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
        prop::collection::vec((name(), prop::option::of(json())), 0..6)
    }

    fn value_map() -> impl Strategy<Value = ValueMap> {
        prop::collection::vec((name(), json()), 0..6).prop_map(|entries| entries.into_iter().collect())
    }

    fn time() -> impl Strategy<Value = SystemTime> {
        (-1_000_000_000_000i64..100_000_000_000_000).prop_map(crate::expiry::from_unix_millis)
    }

    fn expiry() -> impl Strategy<Value = Option<Expiry>> {
        prop_oneof![
            Just(None),
            Just(Some(Expiry::BrowserSession)),
            (0u64..1 << 40).prop_map(|ms| Some(Expiry::Idle(Duration::from_millis(ms)))),
        ]
    }

    proptest! {
        /// Applying patches one after another leaves the values a `BTreeMap` would hold, and a
        /// patch itself behaves as a map in which the last change of a name wins.
        #[test]
        fn patches_merge_like_a_map(patches in prop::collection::vec(patch(), 0..6)) {
            let now = SystemTime::UNIX_EPOCH;
            let mut record = Record::new(now, now);
            let mut model = BTreeMap::<String, String>::new();
            for changes in patches {
                let patch: Patch = changes.iter().cloned().collect();
                let mut last = BTreeMap::new();
                for (name, change) in &changes {
                    last.insert(name.as_str(), change.as_deref());
                }
                prop_assert_eq!(patch.len(), last.len());
                for (name, change) in &patch {
                    prop_assert_eq!(last.get(name).copied(), Some(change.as_deref()));
                    match change {
                        Some(json) => model.insert(name.to_owned(), json.clone()),
                        None => model.remove(name),
                    };
                }
                record.apply(&Changes { values: patch, ..Changes::default() });
                let values: Vec<(&str, &str)> = record.values.iter().collect();
                let expected: Vec<(&str, &str)> = model.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                prop_assert_eq!(values, expected);
            }
        }

        /// A record survives its JSON form (the file store's format, and what `Session::data`
        /// shows) unchanged, to the millisecond.
        #[test]
        fn records_round_trip_through_json(
            values in value_map(),
            flash in value_map(),
            created_at in time(),
            expires_at in time(),
            expiry in expiry(),
            owner in prop::option::of(json()),
        ) {
            let record = Record { values, flash, created_at, expires_at, expiry, owner, revision: Revision::default() };
            let json = serde_json::to_string(&record).unwrap();
            let back: Record = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, record);
        }
    }
}

impl Patch {
    /// The bytes of the values this patch sets (entries they replace not counted off): an upper
    /// bound of what it adds to a map.
    pub(crate) fn added_size(&self) -> usize {
        self.iter()
            .filter_map(|(name, change)| change.as_deref().map(|json| entry_size(name, json)))
            .sum()
    }
}

/// The bytes of `base` with `patch` merged in.
fn merged_size(base: &ValueMap, patch: &Patch) -> usize {
    patch.iter().fold(base.byte_size(), |size, (name, change)| {
        let removed = base.get(name).map_or(0, |old| entry_size(name, old));
        let added = change.as_deref().map_or(0, |new| entry_size(name, new));
        (size + added).saturating_sub(removed)
    })
}
