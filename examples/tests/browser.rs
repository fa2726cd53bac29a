//! The login example (`typed_sessions_examples::login`) in real browsers: two headless Chromium
//! sessions, each with its own profile and cookie jar, driven over WebDriver (chromedriver, through
//! fantoccini) against the app served on loopback with sessions in SQLite.
//!
//! It proves, with real cookies, real redirects and real form posts:
//! - a wrong password shows the error once, and a reload no longer shows it;
//! - logging in shows "Logged in" once, and the logged-in state survives a reload;
//! - a second browser logged in as the same user has a session of its own: the first browser's
//!   `/sessions` lists both, its own one marked "this device";
//! - ending the other session from the first browser logs the second one out: the list shrinks
//!   to one, and the second browser's next page says it is not logged in and it has no session
//!   cookie any more;
//! - logging out shows "Logged out" and leaves the browser without a session cookie.
//!
//! Needs Chromium and ChromeDriver (Debian: `apt-get install chromium chromium-driver`). Without
//! them the test prints `skipped: ..` and passes, unless `REQUIRE_SERVERS=1` is set (CI), where
//! it fails. Everything listens on 127.0.0.1 only, and every wait has a deadline.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use typed_sessions::{SigningKey, SqliteStore};

/// The session cookie's name (the layer's default).
const COOKIE: &str = "id";
/// How long any one wait may take: an element, a page, chromedriver starting.
const WAIT: Duration = Duration::from_secs(10);
/// How long a browser (Chromium starting up) may take.
const BROWSER_START: Duration = Duration::from_secs(30);
/// How long the whole scenario may take, whatever hangs.
const SCENARIO: Duration = Duration::from_secs(120);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sessions_and_logout_in_two_browsers() {
    let Some(tools) = Tools::find() else { return };
    let driver = ChromeDriver::start(&tools.chromedriver).await;

    let dir = tempfile::tempdir().expect("create a temporary directory for the SQLite file");
    let store = SqliteStore::open(dir.path().join("sessions.db"))
        .await
        .expect("open the SQLite session store");
    let signing_key = SigningKey::from_bytes(&[7u8; 64]).expect("a 64-byte signing key is long enough");
    let app = typed_sessions_examples::login::app(Arc::new(store), signing_key);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the app to 127.0.0.1:0");
    let addr = listener.local_addr().expect("the app's address");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");

    let scenario = async {
        let first = Browser::open("first browser", &driver, &tools.chromium, &base).await;

        // A wrong password: the error once, gone after a reload.
        first.goto("/login").await;
        first.fill("input[name=user]", "demo").await;
        first.fill("input[name=password]", "wrong").await;
        first.click_button("Log in").await;
        first.assert_path("/login").await;
        first.assert_single_text("p.error", "Wrong user name or password").await;
        first.reload().await;
        first.wait_for("input[name=user]").await;
        first.assert_none("p.error").await;

        // The right one: "Logged in" once; still logged in after a reload.
        first.log_in_as_demo().await;
        assert!(
            first.cookie(COOKIE).await.is_some(),
            "first browser: no `{COOKIE}` cookie after logging in"
        );
        first.reload().await;
        first.wait_for_text("body", "Logged in as demo").await;
        first.assert_none("p.notice").await;

        // A second browser, a second session of the same user.
        let second = Browser::open("second browser", &driver, &tools.chromium, &base).await;
        second.goto("/login").await;
        second.log_in_as_demo().await;

        // The first browser sees both sessions and ends the other one.
        first.goto("/sessions").await;
        let entries = first.session_entries().await;
        let texts: Vec<&str> = entries.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(
            texts.len(),
            2,
            "first browser: /sessions should list two sessions: {texts:?}"
        );
        let current = texts.iter().filter(|text| text.contains("this device")).count();
        assert_eq!(
            current, 1,
            "first browser: exactly one entry should be \"this device\": {texts:?}"
        );
        let (other, _) = entries
            .iter()
            .find(|(_, text)| !text.contains("this device"))
            .expect("first browser: an entry that is not \"this device\"");
        let end = find_button_in(other, "End this session").await;
        first.click_and_wait_for_new_page(&end).await;
        first.assert_path("/sessions").await;
        let texts: Vec<String> = first
            .session_entries()
            .await
            .into_iter()
            .map(|(_, text)| text)
            .collect();
        assert_eq!(
            texts.len(),
            1,
            "first browser: /sessions should list one session now: {texts:?}"
        );
        assert!(
            texts[0].contains("this device"),
            "first browser: the one left should be \"this device\": {texts:?}"
        );

        // The second browser has been logged out.
        second.goto("/").await;
        second.wait_for_text("body", "You are not logged in.").await;
        assert_eq!(
            second.cookie(COOKIE).await,
            None,
            "second browser: its ended session's `{COOKIE}` cookie should have been removed"
        );

        // The first browser logs out.
        first.goto("/").await;
        first.click_button("Log out").await;
        first.assert_path("/logged-out").await;
        first.assert_single_text("p.notice", "Logged out").await;
        assert_eq!(
            first.cookie(COOKIE).await,
            None,
            "first browser: a `{COOKIE}` cookie is left after logging out"
        );

        first.close().await;
        second.close().await;
    };
    bounded(SCENARIO, "the browser scenario", scenario).await;

    server.abort();
    drop(driver);
}

/// The chromedriver and Chromium binaries, or why there are none.
struct Tools {
    chromedriver: PathBuf,
    chromium: PathBuf,
}

impl Tools {
    /// Both binaries, or `None` after saying which is missing (a panic under `REQUIRE_SERVERS=1`).
    fn find() -> Option<Self> {
        let chromedriver = find_program("/usr/bin/chromedriver", "chromedriver");
        let chromium = find_program("/usr/bin/chromium", "chromium");
        if let (Some(chromedriver), Some(chromium)) = (&chromedriver, &chromium) {
            return Some(Self {
                chromedriver: chromedriver.clone(),
                chromium: chromium.clone(),
            });
        }
        let missing: Vec<&str> = [
            ("chromedriver", chromedriver.is_none()),
            ("chromium", chromium.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, is_missing)| is_missing.then_some(name))
        .collect();
        let what = format!("{} not found (in /usr/bin or on PATH)", missing.join(" and "));
        let required = std::env::var("REQUIRE_SERVERS").is_ok_and(|value| value == "1");
        assert!(
            !required,
            "{what}, and REQUIRE_SERVERS=1 is set: install Debian's `chromium chromium-driver` \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: {what}; install `chromium chromium-driver` (set REQUIRE_SERVERS=1 to make this a failure)");
        None
    }
}

/// `preferred` if it is a file, else the first `name` on `PATH`.
fn find_program(preferred: &str, name: &str) -> Option<PathBuf> {
    let preferred = Path::new(preferred);
    if preferred.is_file() {
        return Some(preferred.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A chromedriver on a free loopback port. Dropping it (also when the test panics) kills it and
/// every browser it started: they share its process group.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    /// Starts chromedriver and waits (at most [`WAIT`]) until its `/status` says it is ready.
    async fn start(binary: &Path) -> Self {
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // A process group of its own, so that Drop can kill the browsers with it.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let mut driver = Self { child, port };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = driver
                .child
                .try_wait()
                .expect("ask whether chromedriver is still running")
            {
                panic!("chromedriver exited before it was ready ({status})");
            }
            if status_ready(port).await {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver on port {port} is not ready after {WAIT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // Killing chromedriver alone would leave its browsers running (they do not notice).
        #[cfg(unix)]
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("the probe listener's address").port()
}

/// Whether chromedriver's `GET /status` answers `"ready": true` (within a second).
async fn status_ready(port: u16) -> bool {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request = format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        // chromedriver keeps the connection open in spite of `Connection: close`: read until the
        // body is a whole JSON document, not to the end of the stream.
        let mut response = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            response.extend_from_slice(&chunk[..read]);
            let text = String::from_utf8_lossy(&response);
            let Some((_, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(body) {
                return json["value"]["ready"].as_bool();
            }
        }
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), ask).await, Ok(Some(true)))
}

/// `future`, or a panic naming `what` if it takes longer than `limit`.
async fn bounded<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} took longer than {limit:?}"),
    }
}

/// One browser: a WebDriver session with a fresh Chromium profile, pointed at the app.
struct Browser {
    name: &'static str,
    client: Client,
    base: String,
}

impl Browser {
    async fn open(name: &'static str, driver: &ChromeDriver, chromium: &Path, base: &str) -> Self {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // Needed as root (CI runs as root); the test only visits its own pages.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            }),
        );
        // Bounded navigation and scripts (WebDriver's defaults are 300 s and 30 s).
        capabilities.insert(
            "timeouts".to_owned(),
            serde_json::json!({ "pageLoad": 10_000, "script": 10_000, "implicit": 0 }),
        );
        // Plain HTTP to chromedriver on loopback: no TLS connector (and no OpenSSL) needed.
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let url = driver.url();
        let client = bounded(BROWSER_START, &format!("starting the {name}"), builder.connect(&url))
            .await
            .unwrap_or_else(|error| panic!("{name}: cannot open a WebDriver session in Chromium: {error}"));
        Self {
            name,
            client,
            base: base.to_owned(),
        }
    }

    async fn close(self) {
        let name = self.name;
        self.client
            .close()
            .await
            .unwrap_or_else(|error| panic!("{name}: cannot close the WebDriver session: {error}"));
    }

    /// Fails with `what` and where the browser is, with the page's text.
    async fn fail(&self, what: &str) -> ! {
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(error) => format!("(unknown: {error})"),
        };
        let text = match self.client.find(Locator::Css("body")).await {
            Ok(body) => body
                .text()
                .await
                .unwrap_or_else(|error| format!("(unreadable: {error})")),
            Err(error) => format!("(no body: {error})"),
        };
        panic!("{}: {what}\n  at {url}\n  page text:\n{text}", self.name);
    }

    fn expect<T>(&self, result: Result<T, CmdError>, what: &str) -> T {
        result.unwrap_or_else(|error| panic!("{}: {what}: {error}", self.name))
    }

    /// Opens `path` of the app and waits for it to load.
    async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        let result = self.client.goto(&url).await;
        self.expect(result, &format!("open {url}"));
    }

    /// Reloads the page and waits for the new document.
    async fn reload(&self) {
        let old = self.document().await;
        let result = self.client.refresh().await;
        self.expect(result, "reload");
        self.wait_for_new_document(&old).await;
    }

    /// Types `value` into the (emptied) input matching `css`.
    async fn fill(&self, css: &str, value: &str) {
        let input = self.wait_for(css).await;
        let result = input.clear().await;
        self.expect(result, &format!("clear `{css}`"));
        let result = input.send_keys(value).await;
        self.expect(result, &format!("type into `{css}`"));
    }

    /// Clicks the page's button labelled `label` and waits for the page it leads to.
    async fn click_button(&self, label: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(buttons) = self.client.find_all(Locator::Css("button")).await {
                for button in buttons {
                    if button.text().await.is_ok_and(|text| text.trim() == label) {
                        self.click_and_wait_for_new_page(&button).await;
                        return;
                    }
                }
            }
            if Instant::now() >= deadline {
                self.fail(&format!("no button {label:?} after {WAIT:?}")).await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Clicks `element` and waits until the browser has left this document and loaded the next.
    /// (A click returns before a navigation it starts is done, and a form may lead back to the
    /// same address, so neither the click nor the URL tells when the next page is there.)
    async fn click_and_wait_for_new_page(&self, element: &Element) {
        let old = self.document().await;
        let result = element.click().await;
        self.expect(result, "click");
        self.wait_for_new_document(&old).await;
    }

    /// The current document's root element.
    async fn document(&self) -> Element {
        let result = self.client.find(Locator::Css("html")).await;
        self.expect(result, "find the page's <html>")
    }

    /// Waits until `old` belongs to a document that is gone and the new one has loaded.
    async fn wait_for_new_document(&self, old: &Element) {
        let deadline = Instant::now() + WAIT;
        loop {
            match old.tag_name().await {
                Err(error) if error.is_stale_element_reference() || error.is_no_such_element() => break,
                _ if Instant::now() >= deadline => self.fail(&format!("still on the same page after {WAIT:?}")).await,
                _ => tokio::time::sleep(POLL).await,
            }
        }
        loop {
            let state = self.client.execute("return document.readyState", Vec::new()).await;
            if state.as_ref().ok().and_then(|state| state.as_str()) == Some("complete") {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("the next page has not loaded after {WAIT:?}")).await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for an element matching `css`.
    async fn wait_for(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(error) => self.fail(&format!("no `{css}` after {WAIT:?} ({error})")).await,
        }
    }

    /// Waits for an element matching `css` whose text contains `needle`.
    async fn wait_for_text(&self, css: &str, needle: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(elements) = self.client.find_all(Locator::Css(css)).await {
                for element in elements {
                    if element.text().await.is_ok_and(|text| text.contains(needle)) {
                        return element;
                    }
                }
            }
            if Instant::now() >= deadline {
                self.fail(&format!("no `{css}` containing {needle:?} after {WAIT:?}"))
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The texts of the elements matching `css` on the current page (no waiting).
    async fn texts(&self, css: &str) -> Vec<String> {
        let result = self.client.find_all(Locator::Css(css)).await;
        let elements = self.expect(result, &format!("look for `{css}`"));
        let mut texts = Vec::with_capacity(elements.len());
        for element in elements {
            let result = element.text().await;
            texts.push(self.expect(result, &format!("read the text of `{css}`")));
        }
        texts
    }

    /// Waits for `css`, then checks that it is there exactly once, with the text `expected`.
    async fn assert_single_text(&self, css: &str, expected: &str) {
        self.wait_for(css).await;
        let texts = self.texts(css).await;
        if texts != [expected] {
            self.fail(&format!("expected one `{css}` saying {expected:?}, found {texts:?}"))
                .await;
        }
    }

    /// Checks that nothing on the (loaded) page matches `css`.
    async fn assert_none(&self, css: &str) {
        let texts = self.texts(css).await;
        if !texts.is_empty() {
            self.fail(&format!("expected no `{css}`, found {texts:?}")).await;
        }
    }

    /// Checks the path of the current address.
    async fn assert_path(&self, expected: &str) {
        let result = self.client.current_url().await;
        let url = self.expect(result, "read the current address");
        if url.path() != expected {
            self.fail(&format!("expected to be at {expected}")).await;
        }
    }

    /// The value of the cookie `name`, if the browser has one (HttpOnly cookies included).
    async fn cookie(&self, name: &str) -> Option<String> {
        let result = self.client.get_all_cookies().await;
        let cookies = self.expect(result, "read the cookies");
        cookies
            .iter()
            .find(|cookie| cookie.name() == name)
            .map(|cookie| cookie.value().to_owned())
    }

    /// On the login page: logs in as demo / demo and checks the page it leads to.
    async fn log_in_as_demo(&self) {
        self.fill("input[name=user]", "demo").await;
        self.fill("input[name=password]", "demo").await;
        self.click_button("Log in").await;
        self.assert_path("/").await;
        self.assert_single_text("p.notice", "Logged in").await;
        self.wait_for_text("body", "Logged in as demo").await;
        let result = self
            .client
            .find(Locator::XPath("//*[contains(., 'Logged in as')]/strong"))
            .await;
        let strong = self.expect(result, "find the user name in <strong> after \"Logged in as\"");
        let result = strong.text().await;
        assert_eq!(
            self.expect(result, "read the user name"),
            "demo",
            "{}: user name in <strong>",
            self.name
        );
    }

    /// The `li[data-session]` entries of `/sessions`, each with its text.
    async fn session_entries(&self) -> Vec<(Element, String)> {
        self.wait_for("li[data-session]").await;
        let result = self.client.find_all(Locator::Css("li[data-session]")).await;
        let elements = self.expect(result, "find li[data-session]");
        let mut entries = Vec::with_capacity(elements.len());
        for element in elements {
            let result = element.text().await;
            let text = self.expect(result, "read a session entry");
            entries.push((element, text));
        }
        entries
    }
}

/// The button labelled `label` inside `container`.
async fn find_button_in(container: &Element, label: &str) -> Element {
    let buttons = container
        .find_all(Locator::Css("button"))
        .await
        .unwrap_or_else(|error| panic!("find the buttons of a session entry: {error}"));
    for button in buttons {
        let text = button
            .text()
            .await
            .unwrap_or_else(|error| panic!("read a button's label: {error}"));
        if text.trim() == label {
            return button;
        }
    }
    panic!("no button {label:?} in the session entry");
}
