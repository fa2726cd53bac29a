//! A schema with an owner key, under the strictest lints, used from a handler and admin code.
#![deny(warnings, unused_qualifications, missing_docs, unreachable_pub)]
#![deny(clippy::all, clippy::pedantic)]

use typed_sessions::{MemoryStore, OwnedSchema, OwnerIndex, Session, SessionLayer, SessionRejection, SessionSchema};

/// A logged-in session.
#[derive(SessionSchema)]
pub struct Values {
    /// Whose session it is.
    #[session(owner, rename = "uid")]
    user_id: u64,
    /// The browser it came from.
    user_agent: String,
}

/// Messages for the next page.
#[derive(SessionSchema)]
pub struct Flash {
    /// Good news.
    notice: String,
}

/// Lists this user's browsers and logs the others out.
///
/// # Errors
///
/// When the store fails.
pub async fn devices(mut session: Session<Values, Flash>) -> Result<String, SessionRejection> {
    let browsers: Vec<String> = session
        .owner_sessions()
        .await?
        .iter()
        .map(|listed| listed.get(Values::USER_AGENT).unwrap_or_default())
        .collect();
    let ended = session.end_other_sessions().await?;
    session.flash(Flash::NOTICE, format!("{ended} other sessions ended"));
    Ok(browsers.join(", "))
}

fn main() {
    let _ = devices;
    assert_eq!(<Values as OwnedSchema>::OWNER_KEY.name(), "uid");
    let index: OwnerIndex<Values> = SessionLayer::new(MemoryStore::new()).owner_index();
    let _ = index;
}
