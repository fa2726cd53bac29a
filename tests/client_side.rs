//! Client-side sessions (`SessionLayer::client_side`) where they differ from a store, or have
//! something of their own to check: the sealed cookie, key rotation, bad cookies, the size
//! limit, and the two documented limits (last writer wins; a copied cookie outlives `destroy`).
//! The behaviour they share with server-side sessions (flash, `Vary`, the expiry model) runs in
//! `axum_end_to_end` and `expiry`, in their `client_side` modules.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use typed_sessions::clock::ManualClock;
use typed_sessions::{EncryptionKey, Expiry, SessionLayer, SigningKey};
use typed_sessions_tests::test_encryption_key;

#[path = "common/browser.rs"]
mod browser;
use browser::{send, Browser};

#[path = "common/routes.rs"]
mod routes;
use routes::{routes, AppSession};

const MINUTE: Duration = Duration::from_secs(60);

/// The shared routes, plus `/id`, which shows the session's id, and `/clear-then-invalidate`.
fn app_with(layer: SessionLayer) -> Router {
    routes()
        .route("/id", get(|s: AppSession| async move { format!("{:?}", s.id()) }))
        .route(
            "/clear-then-invalidate",
            get(|mut s: AppSession| async move {
                s.clear();
                s.invalidate();
            }),
        )
        .layer(layer)
}

fn app() -> Router {
    app_with(SessionLayer::client_side([test_encryption_key()]))
}

fn key(byte: u8) -> EncryptionKey {
    EncryptionKey::from_bytes(&[byte; 32]).unwrap()
}

/// The session cookie's value in a `Cookie` header `id=value`.
fn value_of(cookie: &str) -> &str {
    cookie.strip_prefix("id=").unwrap()
}

#[tokio::test]
async fn the_session_travels_encrypted_in_a_cookie_with_secure_defaults() {
    let mut browser = Browser::new(app());
    let login = browser.get("/login").await;
    let cookie = login.session_cookie().expect("login sets the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.same_site(), Some(cookie::SameSite::Lax));
    assert_eq!(cookie.path(), Some("/"));
    assert!(cookie.max_age().is_some());
    assert_eq!(login.vary, ["Cookie"]);

    // Markers long enough that random bytes never contain them by chance.
    let sealed = URL_SAFE_NO_PAD.decode(cookie.value()).unwrap();
    for plaintext in [&b"user_id"[..], b"\"ada\"", b"created"] {
        assert!(
            !sealed.windows(plaintext.len()).any(|w| w == plaintext),
            "{} is readable in the cookie",
            String::from_utf8_lossy(plaintext)
        );
    }
    assert_eq!(browser.get("/whoami").await.body, r#"Some(42) Some("ada")"#);
    assert_eq!(browser.get("/count").await.body, "1");
    assert_eq!(browser.get("/count").await.body, "2");
}

#[tokio::test]
async fn a_visitor_that_writes_nothing_gets_no_cookie_and_reads_send_none() {
    let mut browser = Browser::new(app());
    let visitor = browser.get("/whoami").await;
    assert_eq!(visitor.body, "None None");
    assert!(visitor.set_cookie.is_empty());
    browser.get("/login").await;
    let read = browser.get("/read-only").await;
    assert_eq!(read.body, "2");
    assert!(read.set_cookie.is_empty(), "an unchanged session is not sent again");
    let same = browser.get("/set-same").await;
    assert_eq!(same.body, "false");
    assert!(same.set_cookie.is_empty(), "setting the value it had is no change");
}

#[tokio::test]
async fn regenerate_id_puts_a_new_id_in_the_cookie_and_keeps_the_values() {
    let mut browser = Browser::new(app());
    browser.get("/login").await;
    let old_cookie = browser.cookie.clone().unwrap();
    let old_id = browser.get("/id").await.body;
    assert!(old_id.starts_with("Some("), "{old_id}");

    browser.get("/regenerate?v=delete").await;
    let new_cookie = browser.cookie.clone().unwrap();
    assert_ne!(new_cookie, old_cookie);
    let new_id = browser.get("/id").await.body;
    assert_ne!(new_id, old_id, "the id inside the cookie changed");
    assert_eq!(browser.get("/whoami").await.body, r#"Some(42) Some("ada")"#);
    // The documented limit: nothing server-side remembers the old cookie, so a copy of it still
    // opens (with the old id) until its own expiry.
    assert_eq!(send(&app(), "/id", Some(&old_cookie)).await.body, old_id);
}

#[tokio::test]
async fn destroy_removes_the_cookie_and_a_copy_lives_only_until_its_own_expiry() {
    let clock = ManualClock::new(SystemTime::now());
    let layer = SessionLayer::client_side([test_encryption_key()])
        .with_clock(clock.clone())
        .with_expiry(Expiry::Idle(30 * MINUTE));
    let app = app_with(layer);
    let mut browser = Browser::new(app.clone());
    browser.get("/login").await;
    let copy = browser.cookie.clone().unwrap();

    let reply = browser.get("/destroy").await;
    assert_eq!(reply.body, "true None");
    let removal = reply.session_cookie().expect("destroy removes the cookie");
    assert_eq!(removal.max_age(), Some(cookie::time::Duration::ZERO));
    assert_eq!(removal.value(), "");
    assert_eq!(browser.cookie, None);
    assert_eq!(browser.get("/whoami").await.body, "None None");

    assert_eq!(
        send(&app, "/whoami", Some(&copy)).await.body,
        r#"Some(42) Some("ada")"#,
        "a copy taken before destroy stays valid until its expiry (documented)"
    );
    clock.advance(31 * MINUTE);
    assert_eq!(send(&app, "/whoami", Some(&copy)).await.body, "None None");
}

#[tokio::test]
async fn invalidate_starts_an_empty_session_with_a_new_id() {
    let mut browser = Browser::new(app());
    browser.get("/login").await;
    browser.get("/flash").await;
    let old_id = browser.get("/id").await.body;
    assert_eq!(browser.get("/invalidate").await.body, "1");
    assert_ne!(browser.get("/id").await.body, old_id);
    assert_eq!(browser.get("/whoami").await.body, "None None");
    assert_eq!(browser.get("/show-flash").await.body, "None None");
    assert_eq!(browser.get("/count").await.body, "2");
}

#[tokio::test]
async fn key_rotation_opens_old_cookies_and_reseals_them_with_the_new_key() {
    let (old, new) = (key(1), key(2));
    let mut browser = Browser::new(app_with(SessionLayer::client_side([old.clone()])));
    browser.get("/login").await;
    let old_cookie = browser.cookie.clone().unwrap();

    let rotated = app_with(SessionLayer::client_side([new.clone(), old]));
    let read = send(&rotated, "/whoami", Some(&old_cookie)).await;
    assert_eq!(read.body, r#"Some(42) Some("ada")"#);
    let resealed = read
        .cookie_header()
        .expect("a cookie under an old key is re-encrypted on its next response, even a read");
    assert_ne!(resealed, old_cookie);

    let retired = app_with(SessionLayer::client_side([new]));
    assert_eq!(send(&retired, "/whoami", Some(&old_cookie)).await.body, "None None");
    let after = send(&retired, "/whoami", Some(&resealed)).await;
    assert_eq!(after.body, r#"Some(42) Some("ada")"#);
    assert!(
        after.set_cookie.is_empty(),
        "a cookie under the first key is not resealed"
    );
}

#[tokio::test]
async fn bad_cookies_are_no_session_and_a_write_starts_a_fresh_one() {
    let app = app();
    let mut browser = Browser::new(app.clone());
    browser.get("/login").await;
    let good = browser.cookie.clone().unwrap();
    let sealed = URL_SAFE_NO_PAD.decode(value_of(&good)).unwrap();
    let encode = |bytes: &[u8]| format!("id={}", URL_SAFE_NO_PAD.encode(bytes));
    let mut flipped = sealed.clone();
    flipped[40] ^= 0x10;
    let mut other_version = sealed.clone();
    other_version[0] = 9;
    let mut swapped = sealed.clone();
    swapped.swap(30, 31);
    let under_another_key = send(&app_with(SessionLayer::client_side([key(9)])), "/login", None)
        .await
        .cookie_header()
        .unwrap();
    let bad_cookies = [
        encode(&flipped),                    // tampered
        encode(&sealed[..sealed.len() - 1]), // truncated
        encode(&sealed[..29]),               // cut to its header (version, key id, nonce)
        encode(&swapped),                    // re-ordered
        encode(&other_version),              // another format version
        under_another_key,                   // another key
        "id=%%%;;==".to_owned(),             // malformed
        "id=".to_owned(),
        "garbage".to_owned(),
    ];
    for bad in &bad_cookies {
        let reply = send(&app, "/whoami", Some(bad)).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, "None None"),
            "{bad}"
        );
        let reply = send(&app, "/count", Some(bad)).await;
        assert_eq!(reply.body, "1", "{bad}: a write starts a fresh session");
    }
    assert_eq!(send(&app, "/whoami", Some(&good)).await.body, r#"Some(42) Some("ada")"#);

    // The cookie name is sealed in: the same value under another cookie name does not open.
    let renamed = app_with(SessionLayer::client_side([test_encryption_key()]).with_cookie_name("other"));
    let moved = format!("other={}", value_of(&good));
    assert_eq!(send(&renamed, "/whoami", Some(&moved)).await.body, "None None");
}

/// What the layer logs (at `warn` and above) while the test runs, as text.
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Collects this thread's logs until the guard is dropped.
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&writer)))
            .finish();
        (Logs(buffer), tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The size the last error log names for a cookie that was not sent.
fn logged_size(logs: &str) -> usize {
    let (_, after) = logs.rsplit_once("cookie would be ").expect("the log names the size");
    after.split(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_session_too_large_for_a_cookie_is_a_500_and_the_browser_keeps_its_cookie() {
    let (logs, _guard) = Logs::capture();
    let app = app_with(SessionLayer::client_side([test_encryption_key()]).with_max_cookie_size(600));
    let mut browser = Browser::new(app);
    browser.get("/login").await;
    let before = browser.cookie.clone().unwrap();
    let reply = browser.get(&format!("/flash?v={}", "x".repeat(600))).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.set_cookie.is_empty(), "no cookie the browser would drop");
    let logged = logs.text();
    assert!(logged_size(&logged) > 600, "{logged}");
    assert!(logged.contains("over the limit of 600"), "{logged}");
    assert_eq!(browser.cookie.as_ref(), Some(&before));
    assert_eq!(browser.get("/whoami").await.body, r#"Some(42) Some("ada")"#);
    assert_eq!(browser.get("/flash?v=short").await.status, StatusCode::OK);
}

/// The limit counts the whole `Set-Cookie` header, name and attributes included: the largest
/// session sent is at most 4,096 bytes of header, and the first one refused would have been more.
#[tokio::test]
async fn the_default_limit_is_4096_bytes_of_the_whole_set_cookie_header() {
    let (logs, _guard) = Logs::capture();
    let mut browser = Browser::new(app());
    browser.get("/login").await;
    let mut largest_sent = 0;
    for length in (2800..3300).step_by(3) {
        let reply = browser.get(&format!("/flash?v={}", "x".repeat(length))).await;
        if reply.status == StatusCode::INTERNAL_SERVER_ERROR {
            let refused = logged_size(&logs.text());
            assert!(
                largest_sent <= 4096 && refused > 4096,
                "sent {largest_sent}, refused {refused}"
            );
            assert!(refused - largest_sent <= 8, "sent {largest_sent}, refused {refused}");
            return;
        }
        largest_sent = reply.set_cookie[0].len();
    }
    panic!("no flash up to 3,300 bytes was refused (largest header sent: {largest_sent})");
}

/// A cookie sealed under a larger limit is not even opened by a layer whose limit it passes.
#[tokio::test]
async fn a_cookie_longer_than_the_limit_is_not_opened() {
    let generous = app_with(SessionLayer::client_side([test_encryption_key()]).with_max_cookie_size(20_000));
    let mut browser = Browser::new(generous);
    browser.get("/login").await;
    browser.get(&format!("/flash?v={}", "x".repeat(6000))).await;
    let large = browser.cookie.clone().unwrap();
    assert!(large.len() > 6000);
    let shown = send(&browser.app, "/show-flash", Some(&large)).await.body;
    assert_eq!(shown, format!("Some({:?}) None", "x".repeat(6000)));
    assert_eq!(send(&app(), "/whoami", Some(&large)).await.body, "None None");
}

#[tokio::test]
async fn regenerate_id_without_delete_also_moves_the_session_to_a_new_id() {
    let mut browser = Browser::new(app());
    browser.get("/login").await;
    let old_id = browser.get("/id").await.body;
    browser.get("/regenerate").await;
    assert_ne!(browser.get("/id").await.body, old_id);
    assert_eq!(browser.get("/whoami").await.body, r#"Some(42) Some("ada")"#);
}

#[tokio::test]
async fn ending_sessions_sends_a_removal_cookie_only_for_a_session_that_was_sent() {
    let mut browser = Browser::new(app());
    let never_sent = browser.get("/destroy").await;
    assert!(never_sent.set_cookie.is_empty(), "{:?}", never_sent.set_cookie);

    browser.get("/login").await;
    let removal = browser.get("/invalidate-then-destroy").await;
    assert_eq!(removal.cookie_header().as_deref(), Some("id="));
    assert_eq!(browser.get("/whoami").await.body, "None None");

    browser.get("/login").await;
    let emptied = browser.get("/clear-then-invalidate").await;
    assert_eq!(
        emptied.cookie_header().as_deref(),
        Some("id="),
        "invalidate with nothing left to keep removes the cookie"
    );
}

#[tokio::test]
async fn flash_now_is_shown_at_once_and_never_sent() {
    let mut browser = Browser::new(app());
    let reply = browser.get("/flash-now").await;
    assert_eq!(reply.body, r#"Some("right now")"#);
    assert!(reply.set_cookie.is_empty(), "flash_now alone must not create a session");
    browser.get("/login").await;
    assert_eq!(browser.get("/flash-now").await.body, r#"Some("right now")"#);
    assert_eq!(browser.get("/show-flash").await.body, "None None");
}

#[test]
#[should_panic(expected = "cannot hold a sealed session")]
fn a_cookie_size_limit_too_small_for_any_session_is_refused_when_the_app_is_built() {
    let layer = SessionLayer::client_side([test_encryption_key()]).with_max_cookie_size(100);
    let _: Router = app_with(layer).with_state(());
}

/// The documented limit: a response carries the whole session, so of two requests made with the
/// same cookie, the browser keeps the one answered last, and the other's write is lost (a store
/// merges them key by key).
#[tokio::test]
async fn of_two_requests_with_the_same_cookie_the_last_answered_wins() {
    let app = app();
    let mut browser = Browser::new(app.clone());
    browser.get("/login").await;
    let cookie = browser.cookie.clone().unwrap();
    let first = send(&app, "/count", Some(&cookie)).await.cookie_header().unwrap();
    let second = send(&app, "/theme", Some(&cookie)).await;
    assert!(second.set_cookie.is_empty(), "/theme only reads");
    let last = send(&app, "/other", Some(&cookie)).await.cookie_header().unwrap();
    assert_eq!(send(&app, "/count", Some(&first)).await.body, "2");
    assert_eq!(send(&app, "/theme", Some(&last)).await.body, r#"Some("dark")"#);
    assert_eq!(
        send(&app, "/count", Some(&last)).await.body,
        "1",
        "the later cookie never saw the first request's count"
    );
}

#[test]
#[should_panic(expected = "needs at least one EncryptionKey")]
fn a_client_side_layer_without_keys_is_refused_when_the_app_is_built() {
    let _: Router = app_with(SessionLayer::client_side([])).with_state(());
}

#[test]
#[should_panic(expected = "remove `with_signing_keys`")]
fn signing_keys_on_a_client_side_layer_are_refused_when_the_app_is_built() {
    let layer = SessionLayer::client_side([test_encryption_key()]).with_signing_keys([SigningKey::generate()]);
    let _: Router = app_with(layer).with_state(());
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any `Cookie` header at all is answered 200 with no session, never a panic or an error page.
    #[test]
    fn any_cookie_header_is_no_session(value in prop::collection::vec(any::<u8>(), 0..300), raw in any::<bool>()) {
        let value = if raw {
            String::from_utf8_lossy(&value).chars().filter(|c| c.is_ascii_graphic() || *c == ' ').collect()
        } else {
            URL_SAFE_NO_PAD.encode(&value)
        };
        let reply = block_on(send(&app(), "/whoami", Some(&format!("id={value}"))));
        prop_assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "None None"));
    }

    /// A valid cookie with any one bit flipped is no session.
    #[test]
    fn a_valid_cookie_with_one_bit_flipped_is_no_session(bit in any::<prop::sample::Index>()) {
        let app = app();
        let good = block_on(send(&app, "/login", None)).cookie_header().unwrap();
        let mut sealed = URL_SAFE_NO_PAD.decode(value_of(&good)).unwrap();
        let at = bit.index(sealed.len() * 8);
        sealed[at / 8] ^= 1 << (at % 8);
        let reply = block_on(send(&app, "/whoami", Some(&format!("id={}", URL_SAFE_NO_PAD.encode(&sealed)))));
        prop_assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "None None"));
    }
}
