//! The stored form of a session in [`RedisStore`](super::RedisStore)'s hash: the whole record
//! in one field, its revision's digits then one JSON object of strings, written for `create`
//! and `apply` and read back from `load`, the lock script and the owner listing (see "Layout"
//! in `RedisStore`'s docs).

use std::borrow::Cow;
use std::time::SystemTime;

use redis::Value;

use crate::record::{Changes, Patch, Record, Revision};
use crate::store::codec::{expiry_from_json, expiry_json, from_unix_millis, to_unix_millis};
use crate::store::StoreError;
use crate::value_map::ValueMap;

/// The session hash's field that holds the whole record.
pub(super) const RECORD: &str = "record";

/// A record as the session hash's `record` field holds it after its revision (see
/// [`stored_json`]): one JSON object whose leaves are all strings, so that the scripts' `cjson`
/// never reads a number (see the `APPLY` script). Empty maps and absent parts are left out.
#[derive(serde::Serialize)]
struct StoredRecord<'a> {
    created_at: Millis,
    expires_at: Millis,
    #[serde(skip_serializing_if = "Merged::is_empty")]
    values: Merged<'a>,
    #[serde(skip_serializing_if = "Merged::is_empty")]
    flash: Merged<'a>,
    /// The expiry override's JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry: Option<String>,
    /// The owner's JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
}

/// A time as a string of Unix milliseconds, written without an allocation of its own.
struct Millis(SystemTime);

impl serde::Serialize for Millis {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(itoa::Buffer::new().format(to_unix_millis(self.0)))
    }
}

/// The revision a new record starts at: random, so that a record created again under a key
/// (after the one there was deleted) does not take up the numbers of the one before, which a
/// request that loaded that one could still hold; and under 2^40, so that Lua's numbers (doubles,
/// exact below 2^53) count on from it exactly for as long as anyone writes.
pub(super) fn first_rev() -> i64 {
    let mut bytes = [0; 8];
    getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
    (u64::from_le_bytes(bytes) >> 24) as i64
}

/// The revision a loaded record noted (see [`record_from_json`]), if it is one this store wrote:
/// below 2^53, where Lua's numbers count exactly (a record edited by hand may hold more digits;
/// its writes then merge).
pub(super) fn rev_of(record: &Record) -> Option<i64> {
    let rev: i64 = std::str::from_utf8(record.revision.as_bytes()?).ok()?.parse().ok()?;
    (rev < 1 << 53).then_some(rev)
}

/// A map with a patch merged in, written as the object the merged map would be: both are in
/// name order, so they are walked side by side, and nothing is built.
struct Merged<'a> {
    map: &'a ValueMap,
    patch: &'a Patch,
}

impl Merged<'_> {
    fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut stored = self.map.iter().peekable();
        let mut changed = self.patch.iter().peekable();
        std::iter::from_fn(move || loop {
            let next_stored = stored.peek().map(|&(name, _)| name);
            let next_changed = changed.peek().map(|&(name, _)| name);
            match (next_stored, next_changed) {
                (None, None) => return None,
                (Some(name), Some(patched)) if patched <= name => {
                    if patched == name {
                        stored.next();
                    }
                    let (name, change) = changed.next()?;
                    if let Some(json) = change {
                        return Some((name, json.as_str()));
                    }
                }
                (Some(_), _) => return stored.next(),
                (None, Some(_)) => {
                    let (name, change) = changed.next()?;
                    if let Some(json) = change {
                        return Some((name, json.as_str()));
                    }
                }
            }
        })
    }

    fn is_empty(&self) -> bool {
        self.entries().next().is_none()
    }
}

impl serde::Serialize for Merged<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.entries())
    }
}

/// [`StoredRecord`] read back, the times borrowed from the reply. Members it does not know are
/// skipped, and `apply`'s write over the loaded record (made from what this reads) drops them:
/// a member added to the layout later must be one that older instances may drop.
#[derive(serde::Deserialize)]
struct ReadRecord<'a> {
    #[serde(borrow)]
    created_at: Cow<'a, str>,
    #[serde(borrow)]
    expires_at: Cow<'a, str>,
    #[serde(default)]
    values: ValueMap,
    #[serde(default)]
    flash: ValueMap,
    #[serde(default)]
    expiry: Option<String>,
    #[serde(default)]
    owner: Option<String>,
}

/// The `record` field's text for `record` at revision `rev`.
pub(super) fn record_json(record: &Record, rev: i64) -> Result<String, StoreError> {
    const UNCHANGED: &Patch = &Patch::new();
    stored_json(
        StoredRecord {
            created_at: Millis(record.created_at),
            expires_at: Millis(record.expires_at),
            values: Merged {
                map: &record.values,
                patch: UNCHANGED,
            },
            flash: Merged {
                map: &record.flash,
                patch: UNCHANGED,
            },
            expiry: record.expiry.as_ref().map(expiry_json).transpose()?,
            owner: record.owner.as_deref(),
        },
        rev,
    )
}

/// The `record` field's text for `base` with `changes` applied ([`Record::apply`]'s rules), at
/// revision `rev`, written from the two without building the merged record.
pub(super) fn merged_record_json(base: &Record, changes: &Changes, rev: i64) -> Result<String, StoreError> {
    let expiry = changes.expiry.unwrap_or(base.expiry);
    let owner = match &changes.owner {
        Some(owner) => owner.as_deref(),
        None => base.owner.as_deref(),
    };
    stored_json(
        StoredRecord {
            created_at: Millis(base.created_at),
            expires_at: Millis(changes.expires_at.unwrap_or(base.expires_at)),
            values: Merged {
                map: &base.values,
                patch: &changes.values,
            },
            flash: Merged {
                map: &base.flash,
                patch: &changes.flash,
            },
            expiry: expiry.as_ref().map(expiry_json).transpose()?,
            owner,
        },
        rev,
    )
}

/// `stored` as the `record` field holds it: its revision's digits, `:`, then its JSON.
fn stored_json(stored: StoredRecord<'_>, rev: i64) -> Result<String, StoreError> {
    let mut text = Vec::with_capacity(128);
    text.extend_from_slice(itoa::Buffer::new().format(rev).as_bytes());
    text.push(b':');
    serde_json::to_writer(&mut text, &stored).map_err(StoreError::backend)?;
    String::from_utf8(text).map_err(StoreError::backend)
}

/// A `record` field's revision digits (`None` in a record written before revisions were kept,
/// which is its JSON alone) and its JSON.
fn split_rev(text: &[u8]) -> Result<(Option<&[u8]>, &[u8]), StoreError> {
    if text.first() == Some(&b'{') {
        return Ok((None, text));
    }
    match memchr::memchr(b':', text) {
        Some(colon) if colon > 0 && text[..colon].iter().all(u8::is_ascii_digit) => {
            Ok((Some(&text[..colon]), &text[colon + 1..]))
        }
        _ => Err(StoreError::Corrupt(
            "the session record's revision is not a number".to_owned(),
        )),
    }
}

/// The record a `record` field holds.
fn record_from_json(text: &[u8]) -> Result<Record, StoreError> {
    let (rev, text) = split_rev(text)?;
    // Neither the error nor the reply is quoted: the text may hold the values of someone's
    // session.
    let stored: ReadRecord<'_> = serde_json::from_slice(text).map_err(|error| {
        StoreError::Corrupt(format!(
            "the session's record does not decode ({:?} error at byte {})",
            error.classify(),
            error.column()
        ))
    })?;
    let millis = |text: &str, name: &str| {
        text.parse()
            .map(from_unix_millis)
            .map_err(|_| StoreError::Corrupt(format!("the session record's `{name}` is not a number")))
    };
    Ok(Record {
        values: stored.values,
        flash: stored.flash,
        created_at: millis(&stored.created_at, "created_at")?,
        expires_at: millis(&stored.expires_at, "expires_at")?,
        expiry: match stored.expiry {
            Some(json) => Some(expiry_from_json(&json, "the session record's `expiry`")?),
            None => None,
        },
        owner: stored.owner,
        // Kept as its digits; `rev_of` reads them when the record comes back to be written.
        revision: rev.map_or_else(Revision::default, Revision::new),
    })
}

/// The record in a reply of `read_record` (or of the lock script): `None` when there is none
/// (no hash, or a hash of an older layout, without the field).
pub(super) fn record_from_reply(reply: &Value) -> Result<Option<Record>, StoreError> {
    match reply {
        Value::Nil => Ok(None),
        Value::BulkString(text) => record_from_json(text).map(Some),
        Value::Attribute { data, .. } => record_from_reply(data),
        // The reply is not quoted: it may hold the values of someone's session.
        _ => Err(StoreError::Corrupt(
            "a read of a session answered something other than its record".to_owned(),
        )),
    }
}

/// A reply of `read_record` as a live record: `None` when the hash is gone or has expired by
/// `now_millis` (Redis has not evicted it yet).
pub(super) fn live_record(reply: &Value, now_millis: i64) -> Result<Option<Record>, StoreError> {
    Ok(record_from_reply(reply)?.filter(|record| to_unix_millis(record.expires_at) > now_millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expiry::Expiry;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    /// A record read back as `HGET` answers it (a bulk string, possibly with RESP3 attributes)
    /// is the record written, and expires by the caller's clock.
    #[test]
    fn a_record_reads_back_as_written() {
        let mut record = Record::new(from_unix_millis(1000), from_unix_millis(2000));
        record.values.insert("n", "7");
        record.values.insert("big", "123456789012345678901234567890");
        record.values.insert("text", r#""a \"quoted\" / é""#);
        record.flash.insert("notice", r#""saved""#);
        record.expiry = Some(Expiry::BrowserSession);
        record.owner = Some("\"ana\"".to_owned());
        let rev = first_rev();
        assert!((0..1 << 40).contains(&rev));
        let text = record_json(&record, rev).unwrap();
        let attributed = Value::Attribute {
            data: Box::new(bulk(&text)),
            attributes: Vec::new(),
        };
        for reply in [bulk(&text), attributed] {
            assert_eq!(record_from_reply(&reply).unwrap().as_ref(), Some(&record));
            let live = live_record(&reply, 1999).unwrap().expect("live");
            assert_eq!(rev_of(&live), Some(rev), "a loaded record notes its revision");
            assert!(
                live_record(&reply, 2000).unwrap().is_none(),
                "expired by the caller's clock"
            );
        }
        // Every leaf is a string (what the scripts' `cjson` may safely re-encode), and empty
        // parts are left out.
        let bare = record_json(&Record::new(from_unix_millis(1000), from_unix_millis(2000)), 7).unwrap();
        assert_eq!(bare, r#"7:{"created_at":"1000","expires_at":"2000"}"#);
        // A record written before revisions were kept reads with none.
        let older = record_from_reply(&bulk(r#"{"created_at":"1000","expires_at":"2000"}"#))
            .unwrap()
            .unwrap();
        assert!(older.revision.is_empty());
        assert_eq!(rev_of(&older), None);
        // A revision past what Lua counts exactly (edited by hand) is read, and not written over.
        let far = record_from_reply(&bulk(r#"9007199254740992:{"created_at":"1000","expires_at":"2000"}"#))
            .unwrap()
            .unwrap();
        assert_eq!(rev_of(&far), None);
    }

    proptest::proptest! {
        /// The text written from a loaded record and a change set is the text of the record
        /// with the changes applied, byte for byte, whatever names the two share.
        #[test]
        fn a_merge_written_in_passing_is_the_merged_record(
            values in proptest::collection::btree_map("[a-d]{1,2}", "[0-9]{1,3}", 0..6),
            flash in proptest::collection::btree_map("[a-d]{1,2}", "[0-9]{1,3}", 0..3),
            value_changes in proptest::collection::btree_map("[a-d]{1,2}", proptest::option::of("[0-9]{1,3}"), 0..6),
            flash_changes in proptest::collection::btree_map("[a-d]{1,2}", proptest::option::of("[0-9]{1,3}"), 0..3),
            renewed in proptest::option::of(3000i64..4000),
            expiry in proptest::option::of(proptest::option::of(proptest::bool::ANY)),
            owner in proptest::option::of(proptest::option::of("\"[a-z]{1,4}\"")),
        ) {
            let mut base = Record::new(from_unix_millis(1000), from_unix_millis(2000));
            for (name, json) in &values {
                base.values.insert(name, json);
            }
            for (name, json) in &flash {
                base.flash.insert(name, json);
            }
            base.owner = Some("\"ana\"".to_owned());
            base.expiry = Some(Expiry::Idle(std::time::Duration::from_secs(90)));
            let mut changes = Changes::default();
            for (name, change) in value_changes {
                changes.values.insert(name, change);
            }
            for (name, change) in flash_changes {
                changes.flash.insert(name, change);
            }
            changes.expires_at = renewed.map(from_unix_millis);
            changes.expiry = expiry.map(|set| {
                set.map(|browser| if browser { Expiry::BrowserSession } else { Expiry::Idle(std::time::Duration::from_secs(60)) })
            });
            changes.owner = owner;
            let mut merged = base.clone();
            merged.apply(&changes);
            proptest::prop_assert_eq!(merged_record_json(&base, &changes, 9).unwrap(), record_json(&merged, 9).unwrap());
        }
    }

    #[test]
    fn no_record_is_none_and_a_malformed_reply_is_corrupt() {
        assert!(record_from_reply(&Value::Nil).unwrap().is_none());
        for reply in [
            Value::Int(3),
            Value::Array(vec![bulk("created_at"), bulk("1000")]),
            bulk("not json"),
            Value::BulkString(vec![b'{', 0xff, 0xfe, b'}']),
            bulk(r#"{"expires_at":"2000"}"#),
            bulk(r#"{"created_at":"1000","expires_at":"soon"}"#),
            bulk(r#"{"created_at":1000,"expires_at":2000}"#),
            bulk(r#"{"created_at":"1000","expires_at":"2000","values":{"x":1}}"#),
            bulk(r#"{"created_at":"1000","expires_at":"2000","flash":[]}"#),
            bulk(r#"{"created_at":"1000","expires_at":"2000","expiry":"forever"}"#),
            // Revisions: none before the colon, not digits, nothing after it, no colon.
            bulk(r#":{"created_at":"1000","expires_at":"2000"}"#),
            bulk(r#"-5:{"created_at":"1000","expires_at":"2000"}"#),
            bulk(r#" {"created_at":"1000","expires_at":"2000"}"#),
            bulk("12:"),
            bulk("12"),
            bulk(""),
        ] {
            let read = record_from_reply(&reply);
            assert!(matches!(read, Err(StoreError::Corrupt(_))), "{reply:?}: {read:?}");
        }
    }

    /// Errors name what is wrong, never the stored text: it may hold someone's session values.
    #[test]
    fn errors_do_not_quote_the_record() {
        for text in [
            r#"{"created_at":"1000","expires_at":"2000","values":{"secret":7}}"#,
            r#"{"created_at":"secret","expires_at":"2000"}"#,
            r#"{"created_at":"1000","expires_at":"2000","expiry":"secret"}"#,
            "secret",
        ] {
            let error = record_from_reply(&bulk(text)).unwrap_err().to_string();
            assert!(!error.contains("secret"), "{error}");
        }
    }
}
