//! The quickstart's visit counter and flash notice with no store at all: the whole session
//! travels in an encrypted cookie (`SessionLayer::client_side`).
//!
//! ```text
//! SESSION_SECRET=$(openssl rand -base64 32) cargo run --example client_side
//! ```
//!
//! Then open <http://127.0.0.1:3000>, reload a few times, and press "reset". Restart the
//! example with the same `SESSION_SECRET` and the count is still there: nothing is kept on the
//! server. Without `SESSION_SECRET` a random key is used, and a restart starts every visitor over.

use std::time::Duration;

use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use axum::Router;
use typed_sessions::{EncryptionKey, Expiry, Session, SessionLayer, SessionSchema};

/// What the session holds between requests.
#[derive(SessionSchema)]
struct Values {
    /// How many times this browser loaded the page.
    visits: u32,
}

/// Messages for the next page only.
#[derive(SessionSchema)]
struct Flash {
    notice: String,
}

type AppSession = Session<Values, Flash>;

async fn home(mut session: AppSession) -> Html<String> {
    let visits = session.update(Values::VISITS, |visits| {
        *visits += 1;
        *visits
    });
    let notice = session
        .get_flash(Flash::NOTICE)
        .map(|notice| format!("<p><strong>{notice}</strong></p>"))
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><title>typed-sessions client-side sessions</title>\
         {notice}<p>You have been here {visits} time(s).</p>\
         <form method=post action=/reset><button>reset</button></form>"
    ))
}

async fn reset(mut session: AppSession) -> Redirect {
    session.unset(Values::VISITS);
    session.flash(Flash::NOTICE, "Counter reset.".to_owned());
    Redirect::to("/")
}

/// The key from `SESSION_SECRET` (at least 32 bytes), or a random one.
fn encryption_key() -> Result<EncryptionKey, typed_sessions::KeyTooShort> {
    match std::env::var("SESSION_SECRET") {
        Ok(secret) => EncryptionKey::from_bytes(secret.as_bytes()),
        Err(_) => {
            println!("SESSION_SECRET is not set: using a random key, sessions end when this process does");
            Ok(EncryptionKey::generate())
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    // A copy of a cookie stays valid until its own expiry, whatever the app does later: keep
    // client-side sessions short-lived.
    let sessions = SessionLayer::client_side([encryption_key()?])
        .with_expiry(Expiry::Idle(Duration::from_secs(60 * 60)))
        .with_max_lifetime(Duration::from_secs(12 * 60 * 60))
        // Plain http on localhost: a `Secure` cookie would never come back. Keep the default
        // (`true`) behind HTTPS.
        .with_secure(false);
    let app = Router::new()
        .route("/", get(home))
        .route("/reset", post(reset))
        .layer(sessions);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("client_side listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
