//! The app of the `login` example: log in, see a protected page, see and end your sessions on
//! other devices, log out. HTML pages with flash messages; post/redirect/get for every form.
//!
//! Built by [`app`] on any store, so that the example's `main` serves it on SQLite and the
//! browser test drives it in a real Chromium.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use axum::http::header::USER_AGENT;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use typed_sessions::store::SessionStore;
use typed_sessions::{Expiry, Session, SessionHandle, SessionLayer, SessionRejection, SessionSchema, SigningKey};

/// What the session holds.
#[derive(SessionSchema)]
pub struct Values {
    /// The logged-in user's name; absent when nobody is logged in. The owner key: the user's
    /// sessions are listed under it on `/sessions`.
    #[session(owner)]
    user: String,
    /// The browser that logged in, shown on `/sessions`.
    user_agent: String,
}

/// Messages for the next page.
#[derive(SessionSchema)]
pub struct Flash {
    /// Good news ("Logged in").
    notice: String,
    /// Bad news ("Wrong user name or password").
    error: String,
}

type AppSession = Session<Values, Flash>;

/// The one account of the demo.
pub const DEMO_USER: &str = "demo";
/// Its password.
pub const DEMO_PASSWORD: &str = "demo";

/// The example's app on `store`, signing cookies with `signing_key`.
pub fn app(store: impl SessionStore, signing_key: SigningKey) -> Router {
    let sessions = SessionLayer::new(store)
        .with_signing_keys([signing_key])
        .with_expiry(Expiry::Idle(Duration::from_secs(60 * 60)))
        // The example serves plain HTTP on localhost, where a `Secure` cookie would never be
        // sent back. Behind HTTPS, leave the default (`true`).
        .with_secure(false);
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/private", get(private))
        .route("/sessions", get(sessions_page))
        .route("/sessions/end", post(end_session))
        .route("/sessions/end-others", post(end_other_sessions))
        .route("/logout", post(logout))
        .route("/logged-out", get(logged_out))
        .layer(sessions)
}

async fn home(session: AppSession) -> Html<String> {
    home_page(&session)
}

fn home_page(session: &AppSession) -> Html<String> {
    let body = match session.get(Values::USER) {
        Some(user) => format!(
            "<p>Logged in as <strong>{}</strong>.</p>\
             <p><a href=\"/private\">Go to the private page</a> · <a href=\"/sessions\">Your sessions</a></p>\
             {LOGOUT_BUTTON}",
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

// The session cookie is `SameSite=Lax` (the default), so other sites cannot post these forms
// with it; an app with more dangerous forms should add CSRF tokens as well.
async fn login(mut session: AppSession, headers: HeaderMap, Form(credentials): Form<Credentials>) -> Redirect {
    if credentials.user != DEMO_USER || credentials.password != DEMO_PASSWORD {
        session.flash(Flash::ERROR, "Wrong user name or password".to_owned());
        return Redirect::to("/login");
    }
    // Privileges change: a new id, so that an id planted before the login is worth nothing.
    session.regenerate_id(true);
    session.set(Values::USER, credentials.user);
    let agent = headers
        .get(USER_AGENT)
        .and_then(|agent| agent.to_str().ok())
        .unwrap_or("an unknown browser");
    session.set(Values::USER_AGENT, agent.chars().take(200).collect());
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

/// Where the user is logged in: one `<li data-session>` per session, this one marked.
async fn sessions_page(mut session: AppSession) -> Result<Response, SessionRejection> {
    if !session.has(Values::USER) {
        session.flash(Flash::NOTICE, "Please log in".to_owned());
        return Ok(Redirect::to("/login").into_response());
    }
    let now = SystemTime::now();
    let mut list = String::from("<ul>");
    for listed in session.owner_sessions().await? {
        let browser = listed.get(Values::USER_AGENT).unwrap_or_default();
        let _ = write!(
            list,
            "<li data-session><strong>{}</strong><br>started {}, last active {}",
            escape(&browser),
            ago(now, listed.created_at()),
            ago(now, listed.last_active()),
        );
        if listed.is_current() {
            list.push_str(" — <em>this device</em>");
        } else {
            let _ = write!(
                list,
                "<form method=\"post\" action=\"/sessions/end\">\
                 <input type=\"hidden\" name=\"session\" value=\"{}\">\
                 <button>End this session</button></form>",
                listed.handle()
            );
        }
        list.push_str("</li>");
    }
    list.push_str(
        "</ul><form method=\"post\" action=\"/sessions/end-others\">\
         <button>End all other sessions</button></form><p><a href=\"/\">Home</a></p>",
    );
    Ok(page("Your sessions", &session, &list).into_response())
}

#[derive(Deserialize)]
struct EndSession {
    session: String,
}

async fn end_session(mut session: AppSession, Form(form): Form<EndSession>) -> Result<Redirect, SessionRejection> {
    let ended = match form.session.parse::<SessionHandle>() {
        Ok(handle) => session.end_session(&handle).await?,
        Err(_) => false,
    };
    let notice = if ended {
        "Session ended"
    } else {
        "That session had already ended"
    };
    session.flash(Flash::NOTICE, notice.to_owned());
    Ok(Redirect::to("/sessions"))
}

async fn end_other_sessions(mut session: AppSession) -> Result<Redirect, SessionRejection> {
    let ended = session.end_other_sessions().await?;
    session.flash(Flash::NOTICE, format!("Ended {ended} other session(s)"));
    Ok(Redirect::to("/sessions"))
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

/// "just now", "5 minutes ago", ...
fn ago(now: SystemTime, then: SystemTime) -> String {
    let seconds = now.duration_since(then).unwrap_or_default().as_secs();
    match seconds {
        0..=59 => "just now".to_owned(),
        60..=3599 => format!("{} minutes ago", seconds / 60),
        3600..=86_399 => format!("{} hours ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// The page around `body`, with the flash messages that arrived with this request.
fn page(title: &str, session: &AppSession, body: &str) -> Html<String> {
    let mut messages = String::new();
    if let Some(notice) = session.get_flash(Flash::NOTICE) {
        let _ = write!(messages, "<p class=\"notice\">{}</p>", escape(&notice));
    }
    if let Some(error) = session.get_flash(Flash::ERROR) {
        let _ = write!(messages, "<p class=\"error\">{}</p>", escape(&error));
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
