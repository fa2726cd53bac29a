//! A browser for `oneshot` tests: sends requests to a `Router` and keeps the session cookie.
//! Included by test files with `#[path = "common/browser.rs"] mod browser;`.

#![allow(dead_code, unreachable_pub)]

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: String,
    pub set_cookie: Vec<String>,
    /// The `Vary` header values.
    pub vary: Vec<String>,
    /// All the response's headers.
    pub headers: axum::http::HeaderMap,
}

impl Reply {
    /// The first value of the header `name`, if any.
    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    /// The `Set-Cookie` of the session cookie `id`, if any.
    pub fn session_cookie(&self) -> Option<cookie::Cookie<'static>> {
        self.set_cookie
            .iter()
            .filter_map(|text| cookie::Cookie::parse(text.clone()).ok())
            .find(|c| c.name() == "id")
    }

    /// `id=value` of the session cookie the response set, as a `Cookie` header sends it back.
    pub fn cookie_header(&self) -> Option<String> {
        self.session_cookie().map(|c| format!("id={}", c.value()))
    }

    /// The session cookie's `Max-Age` in seconds, if it has one.
    pub fn max_age_secs(&self) -> Option<i64> {
        self.session_cookie()?.max_age().map(|age| age.whole_seconds())
    }
}

/// A browser with a cookie jar that holds the session cookie.
pub struct Browser {
    pub app: Router,
    pub cookie: Option<String>,
    /// How many responses so far set (or removed) the session cookie.
    pub cookies_received: usize,
}

impl Browser {
    pub fn new(app: Router) -> Self {
        Browser {
            app,
            cookie: None,
            cookies_received: 0,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        let reply = send(&self.app, path, self.cookie.as_deref()).await;
        if let Some(c) = reply.session_cookie() {
            self.cookies_received += 1;
            let removed = c.max_age() == Some(cookie::time::Duration::ZERO);
            self.cookie = (!removed).then(|| format!("id={}", c.value()));
        }
        reply
    }
}

/// One GET with an optional `Cookie` header.
pub async fn send(app: &Router, path: &str, cookie: Option<&str>) -> Reply {
    send_method(app, "GET", path, cookie).await
}

/// One request with an optional `Cookie` header.
pub async fn send_method(app: &Router, method: &str, path: &str, cookie: Option<&str>) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let (set_cookie, vary) = {
        let values = |name| {
            response
                .headers()
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect()
        };
        (values(header::SET_COOKIE), values(header::VARY))
    };
    let headers = response.headers().clone();
    let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply {
        status,
        body,
        set_cookie,
        vary,
        headers,
    }
}
