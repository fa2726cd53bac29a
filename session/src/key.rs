//! Typed keys and the [`SessionSchema`] trait that `#[derive(SessionSchema)]` implements.

use std::fmt;
use std::marker::PhantomData;

/// A typed session key: the value stored under it has type `T`, and it belongs to schema `S`.
///
/// Keys are not built by hand: `#[derive(SessionSchema)]` generates one associated const per
/// field (`user_id: u64` becomes `Values::USER_ID: Key<Values, u64>`). Because the schema is part
/// of the type, a key of one schema cannot be used where another is expected — a flash key
/// cannot be passed to [`Session::get`](crate::Session::get), and a value key cannot be flashed.
///
/// ```
/// use typed_sessions::{Key, SessionSchema};
///
/// #[derive(SessionSchema)]
/// struct Values {
///     #[session(rename = "uid")]
///     user_id: u64,
/// }
///
/// let key: Key<Values, u64> = Values::USER_ID;
/// assert_eq!(key.name(), "uid");
/// ```
pub struct Key<S, T> {
    name: &'static str,
    // `fn() -> ..` keeps `Key` Send + Sync + Copy whatever `S` and `T` are.
    schema: PhantomData<fn() -> (S, T)>,
}

impl<S, T> Key<S, T> {
    /// Used by the derive; not part of the public API.
    #[doc(hidden)]
    pub const fn __new(name: &'static str) -> Self {
        Key {
            name,
            schema: PhantomData,
        }
    }

    /// The name the value is stored under (the field name, or its `rename`).
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<S, T> Clone for Key<S, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S, T> Copy for Key<S, T> {}

impl<S, T> PartialEq for Key<S, T> {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl<S, T> Eq for Key<S, T> {}

impl<S, T> fmt::Debug for Key<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Key")
            .field(&self.name)
            .field(&std::any::type_name::<T>())
            .finish()
    }
}

/// A declaration of what a session holds: implemented by `#[derive(SessionSchema)]`.
///
/// The derive generates a [`Key`] const per field and lists the stored names here. `()` is the
/// empty schema, used as the default flash schema of [`Session`](crate::Session).
///
/// ```
/// use typed_sessions::SessionSchema;
///
/// #[derive(SessionSchema)]
/// #[session(rename_all = "camelCase")]
/// struct Cart {
///     item_ids: Vec<u32>,
///     coupon_code: Option<String>,
/// }
///
/// assert_eq!(Cart::STORED_NAMES, &["itemIds", "couponCode"]);
/// assert_eq!(<() as SessionSchema>::STORED_NAMES.len(), 0);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a session schema",
    label = "not a session schema",
    note = "add `#[derive(SessionSchema)]` to `{Self}`, or use `()` for a session without flash"
)]
pub trait SessionSchema: 'static {
    /// The stored names of every key of this schema, in declaration order.
    const STORED_NAMES: &'static [&'static str];
    /// The stored name of the key marked `#[session(owner)]`, if the schema has one (see
    /// [`OwnedSchema`]).
    const OWNER: Option<&'static str> = None;

    /// Used by the derive; not part of the public API. The owner key's stored JSON in the form
    /// the owner index keys it by (decoded as the owner's type and encoded again, as `set` would
    /// have encoded it); `None` for a value that does not decode, or `null` (no owner).
    #[doc(hidden)]
    fn __owner_index_json(json: &str) -> Option<String> {
        let _ = json;
        None
    }
}

impl SessionSchema for () {
    const STORED_NAMES: &'static [&'static str] = &[];
}

/// A schema with an owner key: `#[session(owner)]` on one field, whose value says whose
/// session it is (a user id). The session is then indexed under that value, so that
/// [`Session::owner_sessions`](crate::Session::owner_sessions) lists the owner's sessions and
/// [`Session::end_other_sessions`](crate::Session::end_other_sessions) ends them ("log out
/// other devices"). Implemented by `#[derive(SessionSchema)]`.
///
/// ```
/// use typed_sessions::{OwnedSchema, SessionSchema};
///
/// #[derive(SessionSchema)]
/// struct Values {
///     #[session(owner)]
///     user_id: u64,
///     user_agent: String,
/// }
///
/// assert_eq!(Values::OWNER_KEY, Values::USER_ID);
/// assert_eq!(<Values as SessionSchema>::OWNER, Some("user_id"));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no owner key, so its sessions cannot be listed or ended",
    label = "`{Self}` has no field marked `#[session(owner)]`",
    note = "mark the field that says whose session it is: `#[session(owner)] user_id: u64`"
)]
pub trait OwnedSchema: SessionSchema + Sized {
    /// The owner key's value type.
    type Owner;
    /// The key marked `#[session(owner)]`.
    const OWNER_KEY: Key<Self, Self::Owner>;
}

/// A schema that can be a session's flash schema: every schema without an owner key, and `()`.
/// Implemented by `#[derive(SessionSchema)]`.
///
/// A schema with `#[session(owner)]` cannot be one: a flash message lives for one request and
/// belongs to no one's list of sessions.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a flash schema",
    label = "`{Self}` is not a flash schema",
    note = "a schema with a `#[session(owner)]` key says whose session it is, which a flash message \
            (gone after one request) cannot; use a schema without `#[session(owner)]` for flash"
)]
pub trait FlashSchema: SessionSchema {}

impl FlashSchema for () {}

/// The form the owner index keys a session by: the owner key's value as compact JSON, as
/// `Session::set` stores it. `None` for `null` (an `Option` owner set to `None` is no owner,
/// rather than one owner shared by every such session) and for a value that does not encode.
pub(crate) fn owner_index_form<T: serde::Serialize + ?Sized>(owner: &T) -> Option<String> {
    serde_json::to_string(owner).ok().filter(|json| is_owner_json(json))
}

/// Whether an owner key's stored JSON names an owner ([`owner_index_form`]'s rule).
pub(crate) fn is_owner_json(json: &str) -> bool {
    json != "null"
}
