//! How sessions expire, and the settings the layer applies to every session.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cookie::SameSite;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::cookie::SigningKey;
use crate::id::StoreKeyCache;
use crate::store::SessionStore;

/// How long a session lives without requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expiry {
    /// Rolling idle timeout: the session ends after this long without a request that loads it.
    /// The cookie carries a matching `Max-Age`.
    Idle(#[serde(with = "duration_millis")] Duration),
    /// The cookie has no `Max-Age`, so the browser drops it when it closes. The server still
    /// forgets the record after [`BROWSER_SESSION_IDLE`] without a request.
    BrowserSession,
}

/// How long the server keeps a [`Expiry::BrowserSession`] record without a request.
pub const BROWSER_SESSION_IDLE: Duration = Duration::from_secs(24 * 60 * 60);

impl Expiry {
    /// The idle window the server applies.
    pub fn idle_window(self) -> Duration {
        match self {
            Expiry::Idle(window) => window,
            Expiry::BrowserSession => BROWSER_SESSION_IDLE,
        }
    }
}

impl Default for Expiry {
    /// Two weeks of idle time.
    fn default() -> Self {
        Expiry::Idle(Duration::from_secs(14 * 24 * 60 * 60))
    }
}

mod duration_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Cookie attributes.
#[derive(Clone, Debug)]
pub(crate) struct CookieSettings {
    pub(crate) name: Cow<'static, str>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) domain: Option<Cow<'static, str>>,
    pub(crate) path: Cow<'static, str>,
}

impl Default for CookieSettings {
    fn default() -> Self {
        CookieSettings {
            name: Cow::Borrowed("id"),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            domain: None,
            path: Cow::Borrowed("/"),
        }
    }
}

/// Everything the layer knows, shared by all requests.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) cookie: CookieSettings,
    pub(crate) signing_keys: Vec<SigningKey>,
    pub(crate) expiry: Expiry,
    pub(crate) max_lifetime: Option<Duration>,
    /// Fraction of the idle window that must pass before an unchanged request rewrites the expiry.
    touch_after: f64,
    /// [`touch_margin`](Self::touch_margin) of `expiry`, which nearly every session uses: worked
    /// out once here instead of in floating point on every request.
    layer_touch_margin: Duration,
    pub(crate) store_timeout: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) key_cache: Arc<StoreKeyCache>,
}

impl Config {
    pub(crate) fn new(store: Arc<dyn SessionStore>) -> Self {
        Config {
            store,
            cookie: CookieSettings::default(),
            signing_keys: Vec::new(),
            expiry: Expiry::default(),
            max_lifetime: None,
            touch_after: 0.5,
            layer_touch_margin: touch_margin(Expiry::default(), 0.5),
            store_timeout: Some(Duration::from_secs(5)),
            clock: Arc::new(SystemClock),
            key_cache: Arc::new(StoreKeyCache::new()),
        }
    }

    /// The store itself: calling through `Arc<dyn SessionStore>` would pick the `Arc` impl and
    /// box every call's future twice.
    pub(crate) fn store(&self) -> &dyn SessionStore {
        &*self.store
    }

    /// Sets the layer's expiry.
    pub(crate) fn set_expiry(&mut self, expiry: Expiry) {
        self.expiry = expiry;
        self.layer_touch_margin = touch_margin(expiry, self.touch_after);
    }

    /// Sets the fraction of the idle window after which a request renews the expiry.
    pub(crate) fn set_touch_after(&mut self, fraction: f64) {
        self.touch_after = fraction;
        self.layer_touch_margin = touch_margin(self.expiry, fraction);
    }

    /// How close to its expiry time a session under `expiry` must be for a request to renew
    /// it: the renewal is due once `expires_at <= now + touch_margin`.
    pub(crate) fn touch_margin(&self, expiry: Expiry) -> Duration {
        if expiry == self.expiry {
            self.layer_touch_margin
        } else {
            touch_margin(expiry, self.touch_after)
        }
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// When a session that started at `created_at` and is active at `now` expires.
    pub(crate) fn expires_at(&self, expiry: Expiry, created_at: SystemTime, now: SystemTime) -> SystemTime {
        let idle_end = later(now, expiry.idle_window());
        match self.max_lifetime {
            Some(cap) => idle_end.min(later(created_at, cap)),
            None => idle_end,
        }
    }

    /// Whether the absolute lifetime cap has ended a session that started at `created_at`.
    pub(crate) fn past_max_lifetime(&self, created_at: SystemTime, now: SystemTime) -> bool {
        self.max_lifetime.is_some_and(|cap| later(created_at, cap) <= now)
    }
}

/// The part of `expiry`'s idle window left when the fraction `touch_after` of it has passed.
fn touch_margin(expiry: Expiry, touch_after: f64) -> Duration {
    let window = expiry.idle_window();
    Duration::try_from_secs_f64(window.as_secs_f64() * (1.0 - touch_after)).map_or(window, |margin| margin.min(window))
}

/// `time + by`, saturating at a far future instead of panicking (`Expiry::Idle(Duration::MAX)`
/// means "never").
fn later(time: SystemTime, by: Duration) -> SystemTime {
    time.checked_add(by).unwrap_or(far_future()).min(far_future())
}

/// Year 2969: later than any session needs, and representable by every store (`i64` millis).
fn far_future() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 * 365 * 24 * 3600)
}
