//! Field docs are copied onto the key consts; undocumented fields get a generated line, so
//! `missing_docs` never fires on a key of a public schema.
#![deny(missing_docs)]

use typed_sessions::SessionSchema;

/// A public schema, so `missing_docs` checks every key const (the fields are private, so
/// `missing_docs` does not check them).
#[derive(SessionSchema)]
pub struct Values {
    /// Logged-in user.
    ///
    /// Several paragraphs, `code` and [links](https://example.com) are kept as written.
    user_id: u64,
    /** A block doc comment. */
    theme: String,
    #[doc = "A doc attribute."]
    #[session(rename = "cartItems")]
    cart: Vec<String>,
    #[doc = concat!("A doc ", "built by a macro.")]
    locale: String,
    // No doc comment: the derive writes one for the key.
    visits: u32,
    /// Hidden from the docs, and so is its key.
    #[doc(hidden)]
    csrf_token: String,
}

fn main() {
    assert_eq!(Values::CART.name(), "cartItems");
    assert_eq!(Values::VISITS.name(), "visits");
    assert_eq!(Values::CSRF_TOKEN.name(), "csrf_token");
}
