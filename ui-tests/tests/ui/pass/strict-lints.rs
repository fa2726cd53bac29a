//! A user crate with the strictest lints: the derive must not add a single warning.
#![deny(warnings, unused_qualifications, missing_docs, unreachable_pub)]
#![deny(clippy::all, clippy::pedantic)]

use typed_sessions::{Key, Session, SessionSchema};

/// What a logged-in session holds.
#[derive(SessionSchema)]
pub struct Values {
    /// Logged-in user.
    user_id: u64,
    #[session(rename = "cartItems")]
    cart: Vec<String>,
    r#type: String,
}

// A private schema: its keys are private consts, all of them used below.
#[derive(SessionSchema)]
#[session(rename_all = "camelCase")]
struct Flash {
    notice_text: String,
}

/// A `pub(crate)` schema in a private module.
mod admin {
    use typed_sessions::SessionSchema;

    #[derive(SessionSchema)]
    pub(crate) struct Admin {
        pub(crate) impersonating: u64,
    }
}

fn handler(mut session: Session<Values, Flash>) {
    let key: Key<Values, u64> = Values::USER_ID;
    session.set(key, 1);
    session.set(Values::CART, vec!["apple".to_owned()]);
    session.set(Values::TYPE, "admin".to_owned());
    session.flash(Flash::NOTICE_TEXT, "hi".to_owned());
}

fn admin_handler(session: &Session<admin::Admin>) -> Option<u64> {
    session.get(admin::Admin::IMPERSONATING)
}

fn main() {
    let _ = handler as fn(Session<Values, Flash>);
    let _ = admin_handler as fn(&Session<admin::Admin>) -> Option<u64>;
    assert_eq!(<Flash as SessionSchema>::STORED_NAMES, &["noticeText"]);
}
