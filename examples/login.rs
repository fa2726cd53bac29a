//! Log in, see a protected page, log out: an HTML app with flash messages, sessions in SQLite.
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

use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use typed_sessions::store::spawn_sweeper;
use typed_sessions::{Expiry, Session, SessionLayer, SessionSchema, SigningKey, SqliteStore};

/// What the session holds.
#[derive(SessionSchema)]
struct Values {
    /// The logged-in user's name; absent when nobody is logged in.
    user: String,
}

/// Messages for the next page.
#[derive(SessionSchema)]
struct Flash {
    /// Good news ("Logged in").
    notice: String,
    /// Bad news ("Wrong user name or password").
    error: String,
}

type AppSession = Session<Values, Flash>;

/// The one account of the demo.
const DEMO_USER: &str = "demo";
const DEMO_PASSWORD: &str = "demo";

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

    let sessions = SessionLayer::new(store)
        .with_signing_keys([signing_key])
        .with_expiry(Expiry::Idle(Duration::from_secs(60 * 60)))
        // The example serves plain HTTP on localhost, where a `Secure` cookie would never be
        // sent back. Behind HTTPS, leave the default (`true`).
        .with_secure(false);

    let app = Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/private", get(private))
        .route("/logout", post(logout))
        .route("/logged-out", get(logged_out))
        .layer(sessions);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "listening on http://{} (sessions in {db}; log in as {DEMO_USER} / {DEMO_PASSWORD})",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

async fn home(session: AppSession) -> Html<String> {
    home_page(&session)
}

fn home_page(session: &AppSession) -> Html<String> {
    let body = match session.get(Values::USER) {
        Some(user) => format!(
            "<p>Logged in as <strong>{}</strong>.</p>\
             <p><a href=\"/private\">Go to the private page</a></p>{LOGOUT_BUTTON}",
            escape(&user)
        ),
        None => format!("<p>You are not logged in.</p>{}", login_form_html()),
    };
    page("Home", session, &body)
}

async fn login_form(session: AppSession) -> Response {
    if session.has(Values::USER) {
        return Redirect::to("/private").into_response();
    }
    page("Log in", &session, &login_form_html()).into_response()
}

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

// The session cookie is `SameSite=Lax` (the default), so other sites cannot post this form with
// it; an app with more dangerous forms should add CSRF tokens as well.
async fn login(mut session: AppSession, Form(credentials): Form<Credentials>) -> Redirect {
    if credentials.user != DEMO_USER || credentials.password != DEMO_PASSWORD {
        session.flash(Flash::ERROR, "Wrong user name or password".to_owned());
        return Redirect::to("/login");
    }
    // Privileges change: a new id, so that an id planted before the login is worth nothing.
    session.regenerate_id(true);
    session.set(Values::USER, credentials.user);
    session.flash(Flash::NOTICE, "Logged in".to_owned());
    Redirect::to("/")
}

async fn private(mut session: AppSession) -> Response {
    let Some(user) = session.get(Values::USER) else {
        session.flash(Flash::NOTICE, "Please log in".to_owned());
        return Redirect::to("/login").into_response();
    };
    let body = format!(
        "<p>Only logged-in users see this. Hello, <strong>{}</strong>!</p>\
         <p><a href=\"/\">Home</a></p>{LOGOUT_BUTTON}",
        escape(&user)
    );
    page("Private", &session, &body).into_response()
}

async fn logout(mut session: AppSession) -> Redirect {
    // The record is deleted and the cookie removed when the response leaves. A destroyed session
    // carries nothing to the next request — not even a flash — so the page after the redirect
    // (post/redirect/get: a refresh does not post again) says it by its address.
    session.destroy();
    Redirect::to("/logged-out")
}

async fn logged_out(mut session: AppSession) -> Response {
    if session.has(Values::USER) {
        return Redirect::to("/").into_response();
    }
    // For this response only: a visitor without a session gets none for a notice.
    session.flash_now(Flash::NOTICE, "Logged out".to_owned());
    home_page(&session).into_response()
}

const LOGOUT_BUTTON: &str = "<form method=\"post\" action=\"/logout\"><button>Log out</button></form>";

fn login_form_html() -> String {
    format!(
        "<form method=\"post\" action=\"/login\">\
           <p><label>User <input name=\"user\" autocomplete=\"username\" required></label></p>\
           <p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
           <p><button>Log in</button></p>\
         </form>\
         <p><small>Demo account: user <code>{DEMO_USER}</code>, password <code>{DEMO_PASSWORD}</code>.</small></p>"
    )
}

/// The page around `body`, with the flash messages that arrived with this request.
fn page(title: &str, session: &AppSession, body: &str) -> Html<String> {
    let mut messages = String::new();
    if let Some(notice) = session.get_flash(Flash::NOTICE) {
        messages.push_str(&format!("<p class=\"notice\">{}</p>", escape(&notice)));
    }
    if let Some(error) = session.get_flash(Flash::ERROR) {
        messages.push_str(&format!("<p class=\"error\">{}</p>", escape(&error)));
    }
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · typed-sessions</title>\
         <style>body{{font-family:sans-serif;max-width:32rem;margin:2rem auto}}\
         .notice{{background:#e6f4ea;padding:.5rem}}.error{{background:#fce8e6;padding:.5rem}}</style></head>\
         <body><h1>{title}</h1>{messages}{body}</body></html>",
        title = escape(title)
    ))
}

/// Makes text safe to put between HTML tags and inside quoted attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}
