//! Several app instances sharing sessions through one Redis, as behind a load balancer.
//!
//! ```text
//! redis-server --port 6379 --save "" &          # or any Redis you have
//! cargo run --example multi_server
//! ```
//!
//! Then open <http://127.0.0.1:3001> and <http://127.0.0.1:3002> and reload either: the counter
//! is one session, whichever instance answers. Browsers send a host's cookies to every port of
//! it, so both ports see the same cookie — as the instances behind one domain do.
//!
//! Settings (environment):
//! - `REDIS_URL` — default `redis://127.0.0.1:6379`.
//! - `PORTS` — the instances to start, comma-separated; default `3001,3002`.
//! - `SESSION_SECRET` — the cookie signing secret, at least 32 bytes. Every instance must sign
//!   with the same key: set it when you run instances as separate processes
//!   (`PORTS=3001 cargo run --example multi_server` in one terminal, `PORTS=3002 ...` in
//!   another). Without it, one random key is shared by the instances of this process only.

use std::time::Duration;

use axum::extract::State;
use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use axum::Router;
use typed_sessions::{RedisStore, Session, SessionLayer, SessionSchema, SigningKey};

/// What the session holds.
#[derive(SessionSchema)]
struct Values {
    /// Requests this browser made, whichever instance served them.
    visits: u64,
    /// The instance that served the previous request.
    last_instance: String,
}

/// Messages for the next page only.
#[derive(SessionSchema)]
struct Flash {
    notice: String,
}

type AppSession = Session<Values, Flash>;

/// Who this instance is, and where the others are.
#[derive(Clone)]
struct Instance {
    name: String,
    ports: Vec<u16>,
}

async fn home(State(instance): State<Instance>, mut session: AppSession) -> Html<String> {
    let visits = session.update(Values::VISITS, |visits| {
        *visits += 1;
        *visits
    });
    let previous = session
        .get(Values::LAST_INSTANCE)
        .map(|name| format!("The previous request was served by <b>{name}</b>."))
        .unwrap_or_else(|| "This is your first request.".to_owned());
    session.set(Values::LAST_INSTANCE, instance.name.clone());
    let notice = session
        .get_flash(Flash::NOTICE)
        .map(|notice| format!("<p><strong>{notice}</strong></p>"))
        .unwrap_or_default();
    let links: String = instance
        .ports
        .iter()
        .map(|port| format!(r#"<li><a href="http://127.0.0.1:{port}/">instance on port {port}</a></li>"#))
        .collect();
    Html(format!(
        "<!doctype html><title>typed-sessions: {name}</title>\
         {notice}<h1>Served by {name}</h1>\
         <p>Shared counter: this session has made <b>{visits}</b> request(s), on any instance.</p>\
         <p>{previous}</p>\
         <ul>{links}</ul>\
         <form method=post action=/reset><button>reset (on {name})</button></form>",
        name = instance.name,
    ))
}

async fn reset(State(instance): State<Instance>, mut session: AppSession) -> Redirect {
    session.clear();
    session.flash(Flash::NOTICE, format!("Counter reset by {}.", instance.name));
    Redirect::to("/")
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let redis_url = setting("REDIS_URL", "redis://127.0.0.1:6379");
    let ports: Vec<u16> = setting("PORTS", "3001,3002")
        .split(',')
        .map(|port| port.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|error| format!("PORTS must be comma-separated port numbers: {error}"))?;
    let key = match std::env::var("SESSION_SECRET") {
        Ok(secret) => SigningKey::from_bytes(secret.as_bytes())?,
        Err(_) => {
            println!("SESSION_SECRET is not set: the instances of this process share a random key");
            SigningKey::generate()
        }
    };

    let mut instances = tokio::task::JoinSet::new();
    for (number, &port) in ports.iter().enumerate() {
        // Each instance has its own connection, as separate servers would.
        let store = RedisStore::connect(&redis_url)
            .await
            .map_err(|error| format!("cannot reach Redis at {redis_url} (set REDIS_URL): {error}"))?;
        let instance = Instance {
            name: format!("instance {} (port {port})", number + 1),
            ports: ports.clone(),
        };
        let sessions = SessionLayer::new(store)
            // Plain http on localhost; keep the default (`Secure`) behind HTTPS.
            .with_secure(false)
            // The same key on every instance: a cookie one instance signed, all accept.
            .with_signing_keys([key.clone()])
            .with_store_timeout(Duration::from_secs(2));
        let app = Router::new()
            .route("/", get(home))
            .route("/reset", post(reset))
            .with_state(instance)
            .layer(sessions);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("instance {} listening on http://{}", number + 1, listener.local_addr()?);
        instances.spawn(async move { axum::serve(listener, app).await });
    }
    while let Some(finished) = instances.join_next().await {
        finished??;
    }
    Ok(())
}
