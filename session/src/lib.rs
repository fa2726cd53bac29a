//! HTTP sessions for axum whose keys and value types are checked by the compiler.
//!
//! Declare what a session holds as plain structs, take [`Session<Values, Flash>`](Session) as an
//! extractor, and read and write through the generated keys:
//!
//! ```
//! use axum::{response::Redirect, routing::{get, post}, Router};
//! use typed_sessions::{MemoryStore, Session, SessionLayer, SessionSchema};
//!
//! #[derive(SessionSchema)]
//! struct Values {
//!     /// Logged-in user.
//!     user_id: u64,
//!     #[session(rename = "cartItems")]
//!     cart: Vec<String>,
//! }
//!
//! #[derive(SessionSchema)]
//! struct Flash {
//!     notice: String,
//! }
//!
//! type AppSession = Session<Values, Flash>;
//!
//! async fn login(mut session: AppSession) -> Redirect {
//!     session.regenerate_id(true); // fixation defence: new id, old record deleted on save
//!     session.set(Values::USER_ID, 42);
//!     session.flash(Flash::NOTICE, "Welcome back".into());
//!     Redirect::to("/")
//! }
//!
//! async fn home(session: AppSession) -> String {
//!     let notice = session.get_flash(Flash::NOTICE).unwrap_or_default();
//!     match session.get(Values::USER_ID) {
//!         Some(user_id) => format!("{notice} user {user_id}"),
//!         None => "please log in".to_owned(),
//!     }
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(home))
//!     .route("/login", post(login))
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! ```
//!
//! `session.get(Values::USER_IDD)`, `session.set(Values::USER_ID, "x")` and
//! `session.set(Flash::NOTICE, ..)` do not compile.
//!
//! # Semantics in brief
//!
//! - **Lazy**: the store is read when a handler first extracts the session, once per request;
//!   requests that never extract it cost no store call and do not age its flash.
//! - **Per-key writes**: after the handler, only the keys the request changed are written, as
//!   one atomic patch the store merges — concurrent requests writing different keys both win.
//! - **Same-key read-modify-write**: a handler taking [`LockedSession`] holds the session's lock
//!   from its load to its save — on Redis and PostgreSQL shared by every app instance — so
//!   concurrent increments of one key are all kept.
//! - **Sessions of a user**: `#[session(owner)]` on the field that says whose session it is
//!   indexes each session under its value on every store, so that a handler can list the user's
//!   sessions ([`Session::owner_sessions`]) and end the others ([`Session::end_other_sessions`],
//!   "log out other devices"), and admin code can do the same ([`OwnerIndex`]).
//! - **Flash** is shown to the next request that loads the session, then dropped
//!   ([`keep_flash`](Session::keep_flash), [`reflash`](Session::reflash),
//!   [`flash_now`](Session::flash_now)).
//! - **New visitors** get no record and no cookie until something is written.
//! - **Ids** are 144 random bits; stores only see their SHA-256 ([`store::StoreKey`]); unknown
//!   ids are never adopted; cookies can be HMAC-signed with key rotation.
//! - **Caches**: every response of a request that extracted the session has `Vary: Cookie`.
//!
//! # Cargo features
//!
//! | feature | what it adds |
//! |---|---|
//! | *(always)* | [`MemoryStore`], the layer, the extractor, the derive |
//! | `client-side` | `SessionLayer::client_side`, `EncryptionKey`: the whole session in an encrypted cookie, no store |
//! | `conformance` | `store::conformance`: the store conformance suite |
//! | `sqlite` | `SqliteStore` (sqlx) |
//! | `file` | `FileStore`: one file per session |
//! | `redis` | `RedisStore` (redis-rs) |
//! | `postgres` | `PostgresStore` (sqlx) |
#![cfg_attr(docsrs, feature(doc_cfg))]

// ARCHITECTURE.md walks a request through these modules, in the order it passes them.
pub mod clock;
mod config;
mod cookie;
mod expiry;
mod extract;
mod id;
mod key;
mod layer;
mod lock;
mod owners;
mod record;
mod request;
mod save;
mod session;
mod shard_lock;
mod short_bytes;
mod state;
pub mod store;
mod value_map;

#[cfg(feature = "client-side")]
pub use crate::cookie::EncryptionKey;
pub use crate::cookie::{KeyTooShort, SigningKey};
pub use crate::expiry::{Expiry, BROWSER_SESSION_IDLE};
pub use crate::extract::{LockedSession, SessionRejection};
pub use crate::id::SessionId;
pub use crate::key::{FlashSchema, Key, OwnedSchema, SessionSchema};
pub use crate::layer::{ResponseFuture, SessionLayer, SessionService};
pub use crate::owners::{ListedSession, NotAHandle, OwnerIndex, SessionHandle};
pub use crate::session::Session;
#[cfg(all(feature = "file", unix))]
pub use crate::store::FileStore;
#[cfg(feature = "postgres")]
pub use crate::store::PostgresStore;
#[cfg(feature = "redis")]
pub use crate::store::RedisStore;
#[cfg(feature = "sqlite")]
pub use crate::store::SqliteStore;
pub use crate::store::{spawn_sweeper, MemoryStore, SessionStore, Sweeper};
/// The `redis` crate this store is built on, for `RedisStore::from_manager`.
#[cfg(feature = "redis")]
pub use ::redis;
/// The `sqlx` crate the SQL stores are built on, for their `from_pool` constructors.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use ::sqlx;
pub use typed_sessions_derive::SessionSchema;

/// `SameSite` values for [`SessionLayer::with_same_site`].
pub use ::cookie::SameSite;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
