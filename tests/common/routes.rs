//! The routes the end-to-end suites share: each exercises one operation of the session handle,
//! and the body reports what the handler saw. Included with
//! `#[path = "common/routes.rs"] mod routes;`.

#![allow(dead_code, unreachable_pub)]

use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use typed_sessions::{Session, SessionSchema};

#[derive(SessionSchema)]
pub struct Values {
    user_id: u64,
    name: String,
    visits: u32,
    #[session(rename = "cartItems")]
    cart: Vec<String>,
}

#[derive(SessionSchema)]
pub struct Flash {
    notice: String,
    alert: String,
}

/// A second schema over the same session, as a separate module of an app would declare it.
#[derive(SessionSchema)]
pub struct Other {
    /// Same stored name as `Values::name`, another type: reading it must not panic.
    #[session(rename = "name")]
    name_as_number: u64,
    theme: String,
}

pub type AppSession = Session<Values, Flash>;

#[derive(Deserialize)]
pub struct Param {
    pub v: Option<String>,
}

/// Routes that each exercise one operation; the body reports what the handler saw.
pub fn routes() -> Router {
    Router::new()
        .route("/login", get(|mut s: AppSession| async move {
            s.set(Values::USER_ID, 42);
            s.set(Values::NAME, "ada".to_owned());
            "ok"
        }))
        .route("/login-no-store", get(|mut s: AppSession| async move {
            s.set(Values::USER_ID, 42);
            ([(axum::http::header::CACHE_CONTROL, "no-store")], "ok")
        }))
        .route("/whoami", get(|s: AppSession| async move {
            format!("{:?} {:?}", s.get(Values::USER_ID), s.get(Values::NAME))
        }))
        .route("/read-only", get(|s: AppSession| async move { format!("{}", s.len()) }))
        .route("/no-session", get(|| async { "no session here" }))
        .route("/count", get(|mut s: AppSession| async move {
            s.update(Values::VISITS, |v| {
                *v += 1;
                *v
            })
            .to_string()
        }))
        .route("/flash", get(|mut s: AppSession, Query(p): Query<Param>| async move {
            s.flash(Flash::NOTICE, p.v.unwrap_or_else(|| "hello".into()));
            "flashed"
        }))
        .route("/flash-both", get(|mut s: AppSession| async move {
            s.flash(Flash::NOTICE, "n".into());
            s.flash(Flash::ALERT, "a".into());
            "flashed"
        }))
        .route("/show-flash", get(|s: AppSession| async move {
            format!("{:?} {:?}", s.get_flash(Flash::NOTICE), s.get_flash(Flash::ALERT))
        }))
        .route("/keep-notice", get(|mut s: AppSession| async move {
            s.keep_flash(Flash::NOTICE);
            format!("{:?} {:?}", s.get_flash(Flash::NOTICE), s.get_flash(Flash::ALERT))
        }))
        .route("/reflash", get(|mut s: AppSession| async move {
            s.reflash();
            format!("{:?} {:?}", s.get_flash(Flash::NOTICE), s.get_flash(Flash::ALERT))
        }))
        .route("/flash-now", get(|mut s: AppSession| async move {
            s.flash_now(Flash::ALERT, "right now".into());
            format!("{:?}", s.get_flash(Flash::ALERT))
        }))
        .route("/regenerate", get(|mut s: AppSession, Query(p): Query<Param>| async move {
            let delete_old = p.v.as_deref() == Some("delete");
            let old = s.id();
            s.regenerate_id(delete_old);
            assert_ne!(s.id(), old);
            assert_eq!(s.delete_id().is_some(), delete_old);
            "regenerated"
        }))
        .route("/destroy", get(|mut s: AppSession| async move {
            s.destroy();
            s.set(Values::USER_ID, 7); // ignored: the session is over
            format!("{} {:?}", s.is_destroyed(), s.get(Values::USER_ID))
        }))
        .route("/logout-notice", get(|mut s: AppSession| async move {
            s.flash_now(Flash::ALERT, "shown before".to_owned());
            s.destroy();
            s.flash(Flash::NOTICE, "never stored".to_owned()); // ignored: nothing outlives a destroy
            s.flash_now(Flash::NOTICE, "Logged out".to_owned());
            format!("{:?} {:?}", s.get_flash(Flash::NOTICE), s.get_flash(Flash::ALERT))
        }))
        .route("/invalidate", get(|mut s: AppSession| async move {
            let old = s.id();
            s.invalidate();
            assert_eq!(s.delete_id(), old);
            assert_eq!(s.id(), None, "an invalidated session has no id until it is stored again");
            s.set(Values::VISITS, 1);
            format!("{}", s.len())
        }))
        .route("/take", get(|mut s: AppSession| async move {
            format!("{:?} {:?}", s.take(Values::NAME), s.has(Values::NAME))
        }))
        .route("/unset", get(|mut s: AppSession| async move {
            s.unset(Values::USER_ID);
            format!("{} {}", s.has(Values::USER_ID), s.len())
        }))
        .route("/clear", get(|mut s: AppSession| async move {
            s.clear();
            format!("{} {} {:?}", s.is_empty(), s.len(), s.get_flash(Flash::NOTICE))
        }))
        .route("/set-same", get(|mut s: AppSession| async move {
            s.set(Values::USER_ID, 42);
            format!("{}", s.is_dirty())
        }))
        .route("/cart", get(|mut s: AppSession| async move {
            s.update(Values::CART, |cart| cart.push("apple".into()));
            s.data().values.get("cartItems").unwrap_or_default().to_owned()
        }))
        .route("/other", get(|mut s: Session<Other>, v: AppSession| async move {
            s.set(Other::THEME, "dark".into());
            format!("{:?} {:?}", s.get(Other::NAME_AS_NUMBER), v.get(Values::NAME))
        }))
        .route("/theme", get(|s: Session<Other>| async move { format!("{:?}", s.get(Other::THEME)) }))
        .route(
            "/invalidate-then-destroy",
            get(|mut s: AppSession| async move {
                s.invalidate();
                s.destroy();
            }),
        )
        .route("/clear-only", get(|mut s: AppSession| async move { s.clear() }))
        .route("/vary-own", get(|s: AppSession| async move {
            ([(axum::http::header::VARY, "Accept-Encoding")], format!("{:?}", s.get(Values::USER_ID)))
        }))
        .route("/maybe", get(|s: Option<AppSession>| async move {
            match s {
                Some(s) => format!("some {:?}", s.get(Values::USER_ID)),
                None => "none".to_owned(),
            }
        }))
}
