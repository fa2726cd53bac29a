//! What the SQL and Redis stores share: a record's parts in the forms a database keeps them
//! (JSON objects, JSON expiry, milliseconds since the epoch), and the errors for data that does
//! not decode.

use std::time::SystemTime;

use crate::expiry::Expiry;
pub(crate) use crate::expiry::{from_unix_millis, to_unix_millis};
use crate::store::StoreError;

/// The system clock as [`to_unix_millis`] gives it, as stores compare expiry times.
pub(crate) fn now_millis() -> i64 {
    to_unix_millis(SystemTime::now())
}

/// A lock's lease in whole milliseconds, as the stores that keep locks store it: at least 1 (a
/// lease of 0 would be no lock) and far enough from `i64::MAX` that adding it to the time now
/// cannot overflow, in SQL or in Redis' `PX`.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn lease_millis(lease: std::time::Duration) -> i64 {
    i64::try_from(lease.as_millis())
        .unwrap_or(i64::MAX)
        .clamp(1, i64::MAX / 4)
}

/// A per-session expiry as the JSON stores keep it in.
pub(crate) fn expiry_json(expiry: &Expiry) -> Result<String, StoreError> {
    serde_json::to_string(expiry).map_err(StoreError::backend)
}

/// [`expiry_json`] of an optional expiry.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn optional_expiry_json(expiry: Option<&Expiry>) -> Result<Option<String>, StoreError> {
    expiry.map(expiry_json).transpose()
}

/// A per-session expiry read back; `what` names where it was stored, for the error.
pub(crate) fn expiry_from_json(json: &str, what: &str) -> Result<Expiry, StoreError> {
    serde_json::from_str(json).map_err(|error| StoreError::Corrupt(format!("{what} is not a session expiry: {error}")))
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use self::json_objects::{json_object, value_map};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod json_objects {
    use std::collections::BTreeMap;

    use serde::de::{Error as _, MapAccess};
    use serde_json::value::RawValue;

    use crate::store::{StoreError, ValueMap};
    use crate::value_map::decode::{read_json_object, MemberForm, ValueMapBuilder};

    /// A JSON object of the given entries whose members are the values' own JSON (not strings
    /// holding it), each value checked to be JSON.
    pub(crate) fn json_object<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<String, StoreError> {
        let mut object = BTreeMap::new();
        for (name, json) in entries {
            let raw: &RawValue = serde_json::from_str(json)
                .map_err(|error| StoreError::backend(format!("the value under {name:?} is not JSON: {error}")))?;
            object.insert(name, raw);
        }
        serde_json::to_string(&object).map_err(StoreError::backend)
    }

    /// The inverse of [`json_object`]: each member's JSON text, exactly as stored, copied
    /// straight into the map's buffer. `what` names where the object was stored, for the error.
    pub(crate) fn value_map(json: &str, what: &str) -> Result<ValueMap, StoreError> {
        read_json_object::<RawMembers>(json)
            .map_err(|error| StoreError::Corrupt(format!("{what} is not a JSON object: {error}")))
    }

    /// Each member is the value's own JSON: `{"user_id": 42}`.
    struct RawMembers;

    impl MemberForm for RawMembers {
        const EXPECTING: &'static str = "a JSON object of session values";

        fn read_into<'de, A: MapAccess<'de>>(
            access: &mut A,
            map: &mut ValueMapBuilder,
            name: &str,
        ) -> Result<(), A::Error> {
            let json: &RawValue = access.next_value()?;
            map.push(name, json.get()).map_err(A::Error::custom)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn values_keep_their_own_json_and_round_trip() {
            let map: ValueMap = [("cart", r#"["apple", 2]"#), ("user_id", "42"), ("name", r#""ada""#)]
                .into_iter()
                .collect();
            let object = json_object(&map).unwrap();
            assert_eq!(object, r#"{"cart":["apple", 2],"name":"ada","user_id":42}"#);
            assert_eq!(value_map(&object, "values").unwrap(), map);
            assert!(json_object([("bad", "not json")]).is_err());
            assert!(matches!(value_map("[1]", "values"), Err(StoreError::Corrupt(_))));
        }

        #[test]
        fn objects_out_of_order_or_with_repeated_or_escaped_names_read_as_a_map() {
            let map = value_map(r#"{"b": 1, "a": [2], "\u00e9": "x", "b": {"c": 3}}"#, "values").unwrap();
            let expected: ValueMap = [("a", "[2]"), ("b", r#"{"c": 3}"#), ("é", r#""x""#)]
                .into_iter()
                .collect();
            assert_eq!(map, expected);
            assert!(value_map("{}", "values").unwrap().is_empty());
            assert!(matches!(value_map(r#"{"a": }"#, "values"), Err(StoreError::Corrupt(_))));
        }
    }
}
