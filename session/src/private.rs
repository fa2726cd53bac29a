//! Items used by code that `#[derive(SessionSchema)]` generates. Not public API.

pub use crate::key::{FlashSchema, Key, OwnedSchema, SessionSchema};

/// [`SessionSchema::__owner_index_json`] of an owner of type `T`.
pub fn owner_index_json<T: serde::Serialize + serde::de::DeserializeOwned>(json: &str) -> Option<String> {
    let value: T = serde_json::from_str(json).ok()?;
    crate::key::owner_index_form(&value)
}

/// Fails to compile, on the field's type, when it cannot be written to a session.
pub const fn assert_serialize<T: ?Sized + serde::Serialize>() {}

/// Fails to compile, on the field's type, when it cannot be read back from a session.
pub const fn assert_deserialize_owned<T: serde::de::DeserializeOwned>() {}

/// Fails to compile, on the field's type, when it cannot cross threads with the session.
pub const fn assert_send_sync_static<T: ?Sized + Send + Sync + 'static>() {}
