//! `#[derive(SessionSchema)]` for [typed-sessions](https://docs.rs/typed-sessions).
//!
//! Use it through the `typed-sessions` crate (`use typed_sessions::SessionSchema;`), which
//! re-exports it next to the trait of the same name; this crate is an implementation detail.
//!
//! ```
//! use typed_sessions::SessionSchema;
//!
//! #[derive(SessionSchema)]
//! #[session(rename_all = "camelCase")] // optional: serde's case names
//! pub struct Values {
//!     /// Logged-in user.
//!     user_id: u64,                    // key `Values::USER_ID: Key<Values, u64>`, stored as "userId"
//!     #[session(rename = "cart")]      // optional: the stored name of one key
//!     cart_items: Vec<String>,         // key `Values::CART_ITEMS`, stored as "cart"
//! }
//!
//! assert_eq!(Values::USER_ID.name(), "userId");
//! assert_eq!(Values::CART_ITEMS.name(), "cart");
//! ```
//!
//! For each field the derive generates an associated const `Key<Self, FieldType>` named in
//! `SCREAMING_SNAKE_CASE`, with the field's visibility taken from the struct and its doc comment
//! copied; implements `SessionSchema` (the list of stored names); and checks, with the error on
//! the field's type, that every field type is `Serialize + DeserializeOwned + Send + Sync +
//! 'static`. Mistakes (an enum, a tuple struct, generics, an unknown `#[session(..)]` key, a bad
//! `rename_all`, two keys with one stored name, ...) are all reported in one build, each on the
//! offending token.

mod ast;
mod attr;
mod case;
mod check;
mod ctxt;
mod expand;
mod render;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Declares a session schema: one typed key per named field.
///
/// See the `typed_sessions::SessionSchema` trait for the full description and examples.
#[proc_macro_derive(SessionSchema, attributes(session))]
pub fn derive_session_schema(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
