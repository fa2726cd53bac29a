//! Log in, see a protected page, see and end your sessions on other devices, log out: an HTML
//! app with flash messages, sessions in SQLite. The app itself is in `login_app.rs`.
//!
//! ```sh
//! cargo run -p typed-sessions-examples --example login
//! # then open http://127.0.0.1:3000 and log in as demo / demo
//! ```
//!
//! Environment:
//! - `SESSION_DB`: the SQLite file (default `sessions.db`, created if missing);
//! - `SESSION_SECRET`: the cookie signing secret, at least 32 bytes. Without it a fixed
//!   development key is used — never do that in production.
//!
//! Sessions are stored in the database, so they survive a restart of the example: stop it, start
//! it again, reload the page, and you are still logged in.

use std::sync::Arc;
use std::time::Duration;

use typed_sessions::store::spawn_sweeper;
use typed_sessions::{SigningKey, SqliteStore};
use typed_sessions_examples::login::{self, DEMO_PASSWORD, DEMO_USER};

/// DEVELOPMENT ONLY. Anyone who has read this file can forge cookies signed with it. It exists
/// so that sessions of this example survive restarts without any setup; a real deployment MUST
/// set `SESSION_SECRET` (e.g. `openssl rand -base64 32`) and refuse to start without it.
const DEV_SECRET: &[u8] = b"typed-sessions login example -- development key, NOT a secret";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,typed_sessions=debug".into()),
        )
        .init();

    let db = std::env::var("SESSION_DB").unwrap_or_else(|_| "sessions.db".to_owned());
    let store = Arc::new(SqliteStore::open(&db).await?);
    // Expired sessions are never served, but they take space until removed.
    let _sweeper = spawn_sweeper(Arc::clone(&store), Duration::from_secs(10 * 60));

    let signing_key = match std::env::var("SESSION_SECRET") {
        Ok(secret) => SigningKey::from_bytes(secret.as_bytes())?,
        Err(_) => {
            eprintln!("warning: SESSION_SECRET is not set; signing cookies with the built-in DEVELOPMENT key");
            SigningKey::from_bytes(DEV_SECRET)?
        }
    };

    let app = login::app(store, signing_key);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "listening on http://{} (sessions in {db}; log in as {DEMO_USER} / {DEMO_PASSWORD})",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
