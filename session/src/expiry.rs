//! How sessions expire: the [`Expiry`] settings and all the arithmetic on them, as pure
//! functions of the times they are given (the request's time is read once, elsewhere).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How long a session lives without requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
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

/// The layer's expiry settings, and the decisions made from them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExpiryRules {
    /// The expiry of sessions without an override.
    pub(crate) expiry: Expiry,
    /// The absolute cap on a session's life, counted from its creation.
    pub(crate) max_lifetime: Option<Duration>,
    /// Fraction of the idle window that must pass before an unchanged request rewrites the expiry.
    touch_after: f64,
    /// [`touch_margin`] of `expiry`, which nearly every session uses: worked out once here
    /// instead of in floating point on every request.
    layer_touch_margin: Duration,
}

/// A session's expiry, renewed at the request's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Renewed {
    /// When the store may forget the session.
    pub(crate) expires_at: SystemTime,
    /// The cookie's `Max-Age`: `None` for a browser-session cookie.
    pub(crate) max_age: Option<Duration>,
}

impl Default for ExpiryRules {
    fn default() -> Self {
        ExpiryRules {
            expiry: Expiry::default(),
            max_lifetime: None,
            touch_after: 0.5,
            layer_touch_margin: touch_margin(Expiry::default(), 0.5),
        }
    }
}

impl ExpiryRules {
    pub(crate) fn set_expiry(&mut self, expiry: Expiry) {
        self.expiry = expiry;
        self.layer_touch_margin = touch_margin(expiry, self.touch_after);
    }

    /// `fraction` is clamped to `0.0..=1.0`; NaN means the default, `0.5`.
    pub(crate) fn set_touch_after(&mut self, fraction: f64) {
        self.touch_after = if fraction.is_nan() {
            0.5
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self.layer_touch_margin = touch_margin(self.expiry, self.touch_after);
    }

    /// The expiry of a session with this override (or none).
    pub(crate) fn effective(&self, session_override: Option<Expiry>) -> Expiry {
        session_override.unwrap_or(self.expiry)
    }

    /// Whether a record that expires at `expires_at`, of a session that started at `created_at`,
    /// is live at `now`.
    pub(crate) fn is_live(&self, created_at: SystemTime, expires_at: SystemTime, now: SystemTime) -> bool {
        expires_at > now && !self.past_max_lifetime(created_at, now)
    }

    /// Whether the absolute lifetime cap has ended a session that started at `created_at`.
    fn past_max_lifetime(&self, created_at: SystemTime, now: SystemTime) -> bool {
        self.max_lifetime.is_some_and(|cap| later(created_at, cap) <= now)
    }

    /// When a session under `expiry` that started at `created_at` and now expires at
    /// `expires_at` was last renewed, as best its record tells (its idle window back from its
    /// expiry time), kept between its start and `now`: a session's last activity.
    pub(crate) fn last_renewed(
        &self,
        expiry: Expiry,
        created_at: SystemTime,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> SystemTime {
        let renewed = expires_at.checked_sub(expiry.idle_window()).unwrap_or(created_at);
        renewed.clamp(created_at, now.max(created_at))
    }

    /// A session under `expiry` that started at `created_at`, renewed at `now`.
    pub(crate) fn renewed(&self, expiry: Expiry, created_at: SystemTime, now: SystemTime) -> Renewed {
        let idle_end = later(now, expiry.idle_window());
        let expires_at = match self.max_lifetime {
            Some(cap) => idle_end.min(later(created_at, cap)),
            None => idle_end,
        };
        let max_age = match expiry {
            Expiry::Idle(_) => Some(expires_at.duration_since(now).unwrap_or(Duration::ZERO)),
            Expiry::BrowserSession => None,
        };
        Renewed { expires_at, max_age }
    }

    /// The renewal a stored session that expires at `stored_expires_at` gets at `now`, if it is
    /// due: once enough of the idle window has passed (a busy session is not rewritten, nor sent
    /// a new cookie, on every request), and not when a lifetime cap has stopped the expiry from
    /// moving. `forced` renews at once.
    pub(crate) fn due_renewal(
        &self,
        expiry: Expiry,
        created_at: SystemTime,
        stored_expires_at: SystemTime,
        forced: bool,
        now: SystemTime,
    ) -> Option<Renewed> {
        let margin = if expiry == self.expiry {
            self.layer_touch_margin
        } else {
            touch_margin(expiry, self.touch_after)
        };
        let due = now.checked_add(margin).is_none_or(|soon| stored_expires_at <= soon);
        if !forced && !due {
            return None;
        }
        let renewed = self.renewed(expiry, created_at, now);
        (forced || renewed.expires_at != stored_expires_at).then_some(renewed)
    }
}

/// How close to its expiry time a session under `expiry` must be for a request to renew it
/// (the renewal is due once `expires_at <= now + margin`): the part of the idle window left
/// when the fraction `touch_after` of it has passed.
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
    UNIX_EPOCH + Duration::from_secs(1_000 * 365 * 24 * 3600)
}

/// Milliseconds since the Unix epoch (negative before it), the form stores keep times in.
pub(crate) fn to_unix_millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis())
            .map(|ms| -ms)
            .unwrap_or(i64::MIN),
    }
}

/// The inverse of [`to_unix_millis`].
pub(crate) fn from_unix_millis(millis: i64) -> SystemTime {
    if millis >= 0 {
        UNIX_EPOCH + Duration::from_millis(millis.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn unix_millis_round_trip() {
        for millis in [0, 1, -1, 1_700_000_000_123, -86_400_000] {
            assert_eq!(to_unix_millis(from_unix_millis(millis)), millis);
        }
    }

    #[test]
    fn last_renewal_is_the_idle_window_back_from_expiry_kept_between_start_and_now() {
        let rules = ExpiryRules::default();
        let expiry = Expiry::Idle(10 * HOUR);
        let start = UNIX_EPOCH + 1000 * HOUR;
        let now = start + 30 * HOUR;
        assert_eq!(
            rules.last_renewed(expiry, start, start + 35 * HOUR, now),
            start + 25 * HOUR
        );
        // Never before the session started, nor after `now` (a record renewed by a clock ahead).
        assert_eq!(rules.last_renewed(expiry, start, start + 5 * HOUR, now), start);
        assert_eq!(rules.last_renewed(expiry, start, now + 20 * HOUR, now), now);
        // A browser-session cookie's window is `BROWSER_SESSION_IDLE` (a day).
        let expires_at = now + BROWSER_SESSION_IDLE - 4 * HOUR;
        let renewed = rules.last_renewed(Expiry::BrowserSession, start, expires_at, now);
        assert_eq!(renewed, now - 4 * HOUR);
    }

    #[test]
    fn renewal_is_due_after_the_touch_fraction_and_stops_at_the_lifetime_cap() {
        let mut rules = ExpiryRules::default();
        rules.set_expiry(Expiry::Idle(10 * HOUR));
        let start = UNIX_EPOCH + 1000 * HOUR;
        let stored = start + 10 * HOUR;
        let expiry = rules.expiry;
        assert_eq!(rules.due_renewal(expiry, start, stored, false, start + 4 * HOUR), None);
        let renewed = rules
            .due_renewal(expiry, start, stored, false, start + 6 * HOUR)
            .unwrap();
        assert_eq!(renewed.expires_at, start + 16 * HOUR);
        assert_eq!(renewed.max_age, Some(10 * HOUR));
        assert!(rules.due_renewal(expiry, start, stored, true, start).is_some());

        rules.max_lifetime = Some(12 * HOUR);
        let capped = start + 12 * HOUR;
        assert_eq!(rules.renewed(expiry, start, start + 6 * HOUR).expires_at, capped);
        assert_eq!(rules.due_renewal(expiry, start, capped, false, start + 8 * HOUR), None);
        assert!(!rules.is_live(start, capped, capped));
        assert!(rules.is_live(start, capped, capped - HOUR));
    }

    #[test]
    fn touch_after_is_clamped_and_nan_is_the_default() {
        let mut rules = ExpiryRules::default();
        rules.set_touch_after(f64::NAN);
        assert_eq!(rules.touch_after, 0.5);
        rules.set_touch_after(7.0);
        assert_eq!(rules.layer_touch_margin, Duration::ZERO);
        rules.set_touch_after(-1.0);
        assert_eq!(rules.layer_touch_margin, rules.expiry.idle_window());
    }
}
