//! A visit counter with a flash notice, on the in-memory store.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Then open <http://127.0.0.1:3000>, reload a few times, and press "reset".

use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use axum::Router;
use typed_sessions::{MemoryStore, Session, SessionLayer, SessionSchema, SigningKey};

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
        "<!doctype html><title>typed-sessions quickstart</title>\
         {notice}<p>You have been here {visits} time(s).</p>\
         <form method=post action=/reset><button>reset</button></form>"
    ))
}

async fn reset(mut session: AppSession) -> Redirect {
    session.unset(Values::VISITS);
    session.flash(Flash::NOTICE, "Counter reset.".to_owned());
    Redirect::to("/")
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let sessions = SessionLayer::new(MemoryStore::new())
        // Plain http on localhost: a `Secure` cookie would never come back. Keep the default
        // (`true`) behind HTTPS.
        .with_secure(false)
        // Sessions live in memory and die with the process, so a key that does too is enough.
        .with_signing_keys([SigningKey::generate()]);
    let app = Router::new()
        .route("/", get(home))
        .route("/reset", post(reset))
        .layer(sessions);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("quickstart listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
