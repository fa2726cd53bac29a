//! Sessions of a user through the layer: listing them from a handler, ending the others or one
//! of them, and what the ended ones see on their next request — on a store that answers at once
//! (`MemoryStore`) and on one that is awaited (`SqliteStore`).

#[path = "common/browser.rs"]
mod browser;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::routing::get;
use axum::Router;
use browser::{send, Browser};
use serde::Deserialize;
use typed_sessions::clock::ManualClock;
use typed_sessions::store::SessionStore;
use typed_sessions::{
    MemoryStore, OwnerIndex, Session, SessionHandle, SessionLayer, SessionRejection, SessionSchema, SqliteStore,
};
use typed_sessions_tests::TestStore;

#[derive(SessionSchema)]
struct Values {
    #[session(owner)]
    user_id: u64,
    user_agent: String,
    theme: String,
}

#[derive(Deserialize)]
struct Login {
    user: u64,
    agent: String,
}

/// One line per listed session: `<agent> <handle>[ current]`, this one first.
async fn devices(session: Session<Values>) -> Result<String, SessionRejection> {
    let listed = session.owner_sessions().await?;
    Ok(listed
        .iter()
        .map(|s| {
            assert!(s.created_at() <= s.last_active() && s.last_active() < s.expires_at());
            let agent = s.get(Values::USER_AGENT).unwrap_or_default();
            let current = if s.is_current() { " current" } else { "" };
            format!("{agent} {}{current}\n", s.handle())
        })
        .collect())
}

fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route(
            "/login",
            get(|mut session: Session<Values>, Query(login): Query<Login>| async move {
                session.regenerate_id(true);
                session.set(Values::USER_ID, login.user);
                session.set(Values::USER_AGENT, login.agent);
                "ok"
            }),
        )
        .route("/devices", get(devices))
        .route(
            "/end-others",
            get(|session: Session<Values>| async move { session.end_other_sessions().await.map(|n| n.to_string()) }),
        )
        .route(
            "/end/{handle}",
            get(|session: Session<Values>, Path(handle): Path<String>| async move {
                let handle: SessionHandle = handle.parse().expect("a handle");
                session.end_session(&handle).await.map(|ended| ended.to_string())
            }),
        )
        .route(
            "/whoami",
            get(|session: Session<Values>| async move { format!("{:?}", session.get(Values::USER_ID)) }),
        )
        .route(
            "/theme",
            get(|mut session: Session<Values>| async move {
                session.set(Values::THEME, "dark".to_owned());
                "ok"
            }),
        )
        .route(
            "/forget-user",
            get(|mut session: Session<Values>| async move {
                session.unset(Values::USER_ID);
                "ok"
            }),
        )
        .route(
            "/logout",
            get(|mut session: Session<Values>| async move {
                session.destroy();
                "ok"
            }),
        )
        .layer(layer)
}

async fn login(browser: &mut Browser, user: u64, agent: &str) {
    let reply = browser.get(&format!("/login?user={user}&agent={agent}")).await;
    assert_eq!(reply.body, "ok");
    // Sessions of one owner that start in the same millisecond count as one when another is
    // ended (see `Session::end_other_sessions`); these tests log in devices one after another.
    tokio::time::sleep(Duration::from_millis(2)).await;
}

/// The agents listed on `browser`'s devices page, in order, and the handle of each.
async fn listed(browser: &mut Browser) -> Vec<(String, String)> {
    let reply = browser.get("/devices").await;
    assert!(reply.status.is_success(), "{reply:?}");
    reply
        .body
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let agent = parts.next().unwrap().to_owned();
            let handle = parts.next().unwrap().to_owned();
            let agent = if parts.next() == Some("current") {
                format!("{agent}*")
            } else {
                agent
            };
            (agent, handle)
        })
        .collect()
}

fn agents(listed: &[(String, String)]) -> Vec<&str> {
    listed.iter().map(|(agent, _)| agent.as_str()).collect()
}

async fn ending_other_devices(layer: SessionLayer) {
    let app = app(layer);
    let [mut laptop, mut phone, mut tablet, mut someone_else] = std::array::from_fn(|_| Browser::new(app.clone()));
    login(&mut laptop, 1, "laptop").await;
    login(&mut phone, 1, "phone").await;
    login(&mut tablet, 1, "tablet").await;
    login(&mut someone_else, 2, "other").await;

    let seen = listed(&mut laptop).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].0, "laptop*", "this device is listed first: {seen:?}");
    let mut others: Vec<&str> = agents(&seen)[1..].to_vec();
    others.sort_unstable();
    assert_eq!(others, ["phone", "tablet"]);
    assert_eq!(agents(&listed(&mut someone_else).await), ["other*"]);

    // End the phone from the laptop, by its handle; the laptop's own handle ends nothing.
    let phone_handle = &seen.iter().find(|(agent, _)| agent == "phone").unwrap().1;
    assert_eq!(laptop.get(&format!("/end/{phone_handle}")).await.body, "true");
    assert_eq!(laptop.get(&format!("/end/{}", seen[0].1)).await.body, "false");
    // Another user cannot end the laptop's sessions by their handles.
    let tablet_handle = &seen.iter().find(|(agent, _)| agent == "tablet").unwrap().1;
    assert_eq!(someone_else.get(&format!("/end/{tablet_handle}")).await.body, "false");

    // The phone is logged out on its next request, and its cookie goes.
    let reply = phone.get("/whoami").await;
    assert_eq!(reply.body, "None");
    let removed = reply.session_cookie().expect("the ended session's cookie is removed");
    assert_eq!(removed.max_age(), Some(cookie::time::Duration::ZERO));
    assert!(phone.cookie.is_none());

    // "Log out other devices": the tablet goes, the laptop stays, the other user is untouched.
    assert_eq!(laptop.get("/end-others").await.body, "1");
    assert_eq!(tablet.get("/whoami").await.body, "None");
    assert_eq!(laptop.get("/whoami").await.body, "Some(1)");
    assert_eq!(someone_else.get("/whoami").await.body, "Some(2)");
    assert_eq!(agents(&listed(&mut laptop).await), ["laptop*"]);

    // Logging in again moves the session to a new id: still listed once.
    login(&mut laptop, 1, "laptop").await;
    assert_eq!(agents(&listed(&mut laptop).await), ["laptop*"]);
    // Removing the owner key unlists it; logging out removes it.
    login(&mut phone, 1, "phone").await;
    assert_eq!(laptop.get("/forget-user").await.body, "ok");
    assert_eq!(agents(&listed(&mut phone).await), ["phone*"]);
    assert_eq!(phone.get("/logout").await.body, "ok");
    assert_eq!(agents(&listed(&mut someone_else).await), ["other*"]);
}

#[tokio::test]
async fn ending_other_devices_on_a_store_that_answers_at_once() {
    ending_other_devices(SessionLayer::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn ending_other_devices_on_an_awaited_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("sessions.db")).await.unwrap();
    ending_other_devices(SessionLayer::new(store)).await;
}

/// A request of a session already running when the session is ended does not bring it back: its
/// write is dropped, and the session stays ended.
#[tokio::test]
async fn a_request_in_flight_does_not_resurrect_an_ended_session() {
    let store = Arc::new(MemoryStore::new());
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let gates = Arc::new(parking_lot::Mutex::new(Some((entered_tx, release_rx))));
    let slow = Router::new().route(
        "/slow-write",
        get(move |mut session: Session<Values>| {
            let gates = gates.lock().take();
            async move {
                if let Some((entered, release)) = gates {
                    entered.send(()).unwrap();
                    release.await.unwrap();
                }
                session.set(Values::THEME, "light".to_owned());
                "written"
            }
        }),
    );
    let layer = SessionLayer::new(Arc::clone(&store));
    let app = app(layer.clone()).merge(slow.layer(layer));
    let mut laptop = Browser::new(app.clone());
    let mut phone = Browser::new(app.clone());
    login(&mut laptop, 7, "laptop").await;
    login(&mut phone, 7, "phone").await;

    let phone_cookie = phone.cookie.clone();
    let slow_app = app.clone();
    let in_flight = tokio::spawn(async move { send(&slow_app, "/slow-write", phone_cookie.as_deref()).await });
    entered_rx.await.unwrap();
    assert_eq!(laptop.get("/end-others").await.body, "1");
    release_tx.send(()).unwrap();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.body, "written");

    assert_eq!(
        phone.get("/whoami").await.body,
        "None",
        "the slow write brought the session back"
    );
    assert_eq!(agents(&listed(&mut laptop).await), ["laptop*"]);
}

/// Admin code lists and ends a user's sessions by the owner value, with the layer's expiry rules.
#[tokio::test]
async fn admin_code_lists_and_ends_by_owner() {
    let clock = ManualClock::new(std::time::SystemTime::now());
    let layer = SessionLayer::new(MemoryStore::new())
        .with_expiry(typed_sessions::Expiry::Idle(Duration::from_secs(3600)))
        .with_clock(clock.clone());
    let index: OwnerIndex<Values> = layer.owner_index();
    let app = app(layer);
    let mut first = Browser::new(app.clone());
    let mut second = Browser::new(app.clone());
    login(&mut first, 9, "first").await;
    clock.advance(Duration::from_secs(60));
    login(&mut second, 9, "second").await;

    let sessions = index.list(&9).await.unwrap();
    let agents: Vec<String> = sessions.iter().map(|s| s.get(Values::USER_AGENT).unwrap()).collect();
    assert_eq!(agents, ["second", "first"], "most recently active first");
    assert!(sessions.iter().all(|s| !s.is_current()));
    assert!(index.list(&10).await.unwrap().is_empty());

    assert!(index.end(&9, &sessions[1].handle()).await.unwrap());
    assert!(!index.end(&9, &sessions[1].handle()).await.unwrap(), "already ended");
    assert_eq!(first.get("/whoami").await.body, "None");

    // Past its idle window a session is no longer listed, even before a sweep removes it.
    clock.advance(Duration::from_secs(3601));
    assert!(index.list(&9).await.unwrap().is_empty());
    assert_eq!(index.end_all(&9).await.unwrap(), 0);
}

/// Listing on a store without an owner index is an error that says so, not an empty list.
#[tokio::test]
async fn a_store_without_an_owner_index_says_so() {
    let mut browser = Browser::new(app(SessionLayer::new(TestStore::without_owner_index())));
    login(&mut browser, 1, "laptop").await;
    let reply = browser.get("/devices").await;
    assert_eq!(reply.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
}

/// What [`end_others_while_one_moves`] saw.
struct Interleaved {
    app: Router,
    laptop: Browser,
    phone: Browser,
    /// The reply to the login again.
    relogin: browser::Reply,
    /// The reply to "log out other devices".
    end: browser::Reply,
}

/// Laptop and phone logged in as `user`; then `mover` (`"laptop"` or `"phone"`) logs in again
/// (`regenerate_id`: its session moves to a new id) while the laptop ends the other devices, in
/// this order: the move reads its session and waits before creating the new id; the end lists
/// the sessions and waits before its first delete; the move completes (its old id still live);
/// then the end completes.
async fn end_others_while_one_moves(user: u64, mover: &str) -> Interleaved {
    let store = Arc::new(TestStore::default());
    let app = app(SessionLayer::new(Arc::clone(&store)));
    let mut laptop = Browser::new(app.clone());
    let mut phone = Browser::new(app.clone());
    login(&mut laptop, user, "laptop").await;
    login(&mut phone, user, "phone").await;

    let (create_arrived, create_release) = store.create_gate.arm();
    let relogin_app = app.clone();
    let mover_cookie = if mover == "laptop" { &laptop } else { &phone }.cookie.clone();
    let relogin_path = format!("/login?user={user}&agent={mover}");
    let relogin = tokio::spawn(async move { send(&relogin_app, &relogin_path, mover_cookie.as_deref()).await });
    create_arrived.await.unwrap();

    let (delete_arrived, delete_release) = store.delete_gate.arm();
    let end_app = app.clone();
    let laptop_cookie = laptop.cookie.clone();
    let end = tokio::spawn(async move { send(&end_app, "/end-others", laptop_cookie.as_deref()).await });
    delete_arrived.await.unwrap();

    create_release.send(()).unwrap();
    let relogin = relogin.await.unwrap();
    delete_release.send(()).unwrap();
    let end = end.await.unwrap();
    Interleaved {
        app,
        laptop,
        phone,
        relogin,
        end,
    }
}

/// "Log out other devices" while another device logs in again (`regenerate_id`: its session
/// moves to a new id): the end lists the old id, the move reaches the new id and checks the old
/// one is still live, then the end deletes the old one. The moved session must still end.
#[tokio::test]
async fn ending_a_session_as_it_moves_to_a_new_id_ends_it() {
    let Interleaved {
        app,
        mut laptop,
        relogin,
        end,
        ..
    } = end_others_while_one_moves(3, "phone").await;
    assert_eq!(relogin.body, "ok");
    let moved_cookie = relogin.cookie_header().expect("the move sends the new id");
    assert_eq!(end.body, "2", "the old id, then the new one it moved to");

    assert_eq!(send(&app, "/whoami", Some(&moved_cookie)).await.body, "None");
    assert_eq!(agents(&listed(&mut laptop).await), ["laptop*"]);
}

/// The schema of an app version before `#[session(owner)]` was added: same stored name.
#[derive(SessionSchema)]
struct BeforeOwners {
    user_id: u64,
}

/// A session stored without its owner (before the schema marked it) is indexed by the first
/// request that takes it with the owner schema, and listed from then on.
#[tokio::test]
async fn sessions_stored_before_the_owner_was_marked_are_indexed() {
    let store = Arc::new(MemoryStore::new());
    let layer = SessionLayer::new(Arc::clone(&store));
    let old = Router::new()
        .route(
            "/old-login",
            get(|mut session: Session<BeforeOwners>| async move {
                session.set(BeforeOwners::USER_ID, 5);
                "ok"
            }),
        )
        .layer(layer.clone());
    let app = app(layer.clone()).merge(old);
    let index: OwnerIndex<Values> = layer.owner_index();
    let mut browser = Browser::new(app);
    assert_eq!(browser.get("/old-login").await.body, "ok");
    assert!(index.list(&5).await.unwrap().is_empty(), "not indexed yet");
    assert_eq!(browser.get("/whoami").await.body, "Some(5)");
    assert_eq!(
        index.list(&5).await.unwrap().len(),
        1,
        "indexed by the first request that took it"
    );
    assert_eq!(store.owner_sessions("5").await.unwrap().len(), 1);
}

/// An ended session's cookie is removed by the next page load, but not by a background `fetch`
/// (`Sec-Fetch-Mode: cors`), which may have left before a login in another tab set a newer
/// cookie that the removal would remove.
#[tokio::test]
async fn a_background_fetch_does_not_remove_a_stale_cookie() {
    use tower::ServiceExt;

    let app = app(SessionLayer::new(MemoryStore::new()));
    let mut laptop = Browser::new(app.clone());
    let mut phone = Browser::new(app.clone());
    login(&mut laptop, 4, "laptop").await;
    login(&mut phone, 4, "phone").await;
    assert_eq!(laptop.get("/end-others").await.body, "1");

    let request = |mode: &str| {
        axum::http::Request::builder()
            .uri("/whoami")
            .header("cookie", phone.cookie.clone().unwrap())
            .header("sec-fetch-mode", mode)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let fetch = app.clone().oneshot(request("cors")).await.unwrap();
    assert!(
        fetch.headers().get("set-cookie").is_none(),
        "a fetch removed the cookie"
    );
    let navigation = app.clone().oneshot(request("navigate")).await.unwrap();
    let removal = navigation.headers().get("set-cookie").expect("a page load removes it");
    assert!(removal.to_str().unwrap().contains("Max-Age=0"), "{removal:?}");
}

/// "Log out other devices" while this device's own session moves to a new id in another of its
/// requests: the move's new id is this device's, and survives; the other device is ended.
#[tokio::test]
async fn ending_others_spares_this_devices_own_move() {
    let Interleaved {
        app,
        mut phone,
        relogin,
        end,
        ..
    } = end_others_while_one_moves(8, "laptop").await;
    let moved_cookie = relogin.cookie_header().expect("the move sends the new id");
    assert_eq!(end.body, "1", "only the phone");

    assert_eq!(
        send(&app, "/whoami", Some(&moved_cookie)).await.body,
        "Some(8)",
        "the laptop's move survived"
    );
    assert_eq!(phone.get("/whoami").await.body, "None");
}
