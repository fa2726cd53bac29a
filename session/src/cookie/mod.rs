//! The session cookie at both ends of a request: reading and verifying it from the `Cookie`
//! header, and writing `Set-Cookie` and `Vary: Cookie` on the response.
//!
//! Why this file is long: half of it is tests, property tests of the `Cookie` parser among them.

use std::borrow::Cow;
use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::header::{Entry, HeaderMap, HeaderValue, OccupiedEntry, COOKIE, VARY};

use crate::short_bytes;

#[cfg(feature = "client-side")]
mod sealed;
mod signing;

#[cfg(feature = "client-side")]
pub use sealed::EncryptionKey;
#[cfg(feature = "client-side")]
pub(crate) use sealed::{seal, Opened};
pub(crate) use signing::{encode_value, CookieId};
pub use signing::{KeyTooShort, SigningKey};

/// The largest `Set-Cookie` sent by default, in bytes: what every browser keeps (RFC 6265 §6.1
/// asks for at least 4,096 bytes per cookie, name, value and attributes together).
#[cfg(feature = "client-side")]
pub(crate) const DEFAULT_MAX_SIZE: usize = 4096;

/// How many of a request's session cookies are tried, at most.
pub(crate) const MAX_CANDIDATES: usize = 3;

/// How many of a request's cookies of our name are examined at most, valid or not: each costs a
/// signature check per key (or a decryption), and a client can send thousands.
const MAX_EXAMINED: usize = 16;

/// The session cookie's name and attributes.
#[derive(Clone, Debug)]
pub(crate) struct CookieSettings {
    pub(crate) name: Cow<'static, str>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) domain: Option<Cow<'static, str>>,
    pub(crate) path: Cow<'static, str>,
    /// The largest `Set-Cookie` a client-side session may send, in bytes.
    #[cfg(feature = "client-side")]
    pub(crate) max_size: usize,
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
            #[cfg(feature = "client-side")]
            max_size: DEFAULT_MAX_SIZE,
        }
    }
}

impl CookieSettings {
    /// Checks the settings a browser would reject or silently drop the cookie for.
    ///
    /// # Panics
    ///
    /// With a message that names the fix: a configuration mistake, caught when the app is built.
    pub(crate) fn check(&self) {
        // Browsers match the prefixes without regard to case.
        let prefixed = |prefix: &str| {
            self.name
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        };
        if prefixed("__Host-") {
            assert!(
                self.secure && self.path == "/" && self.domain.is_none(),
                "SessionLayer: a `__Host-` cookie needs `with_secure(true)`, path `/` and no domain; \
                 remove the prefix or those settings"
            );
        }
        if prefixed("__Secure-") {
            assert!(
                self.secure,
                "SessionLayer: a `__Secure-` cookie needs `with_secure(true)`"
            );
        }
        for (attribute, value) in [("with_path", Some(&self.path)), ("with_domain", self.domain.as_ref())] {
            if let Some(value) = value {
                assert!(
                    attribute_value_is_safe(value),
                    "SessionLayer::{attribute}: {value:?} would break the `Set-Cookie` header \
                     (`;`, `,` and control characters are not allowed)"
                );
            }
        }
        assert!(
            self.same_site != SameSite::None || self.secure,
            "SessionLayer: browsers drop a `SameSite=None` cookie that is not `Secure`; \
             add `with_secure(true)` or choose `SameSite::Lax`"
        );
        assert!(
            !self.name.is_empty()
                && self
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)),
            "SessionLayer: {:?} is not a valid cookie name",
            self.name
        );
    }

    /// The session ids the request's cookies carry that verify under `keys`, in the order the
    /// browser sent them (a stale cookie at a longer path comes first, so a caller falls back to
    /// the next when the store does not know one). Lazy: the common request with one session
    /// cookie verifies one value.
    pub(crate) fn session_ids<'a>(
        &'a self,
        headers: &'a HeaderMap,
        keys: &'a [SigningKey],
    ) -> impl Iterator<Item = CookieId> + 'a {
        self.values(headers)
            .take(MAX_EXAMINED)
            .filter_map(move |value| signing::decode_value(value, &self.name, keys))
    }

    /// The sessions the request's sealed cookies carry that open under `keys` (client-side
    /// sessions), in the order the browser sent them. A value longer than the largest cookie
    /// this layer sends is not even decoded.
    #[cfg(feature = "client-side")]
    pub(crate) fn sealed_sessions<'a>(
        &'a self,
        headers: &'a HeaderMap,
        keys: &'a [EncryptionKey],
    ) -> impl Iterator<Item = Opened> + 'a {
        // Each value is decoded and, if its key id matches, authenticated: a request with many
        // cookies of our name (junk, or an attack) gets only the first few looked at.
        self.values(headers)
            .take(MAX_EXAMINED)
            .filter(|value| value.len() <= self.max_size)
            .filter_map(move |value| sealed::open(value, &self.name, keys))
    }

    /// The values of the request's cookies of our name, in the order the browser sent them.
    fn values<'a>(&'a self, headers: &'a HeaderMap) -> CookieValues<'a> {
        CookieValues {
            headers: headers.get_all(COOKIE).into_iter(),
            pairs: &[],
            name: self.name.as_bytes(),
        }
    }

    /// `Set-Cookie` that stores `value`, with `max_age` (`None`: a browser-session cookie).
    pub(crate) fn set_cookie(&self, value: String, max_age: Option<Duration>) -> Option<HeaderValue> {
        let mut cookie = self.cookie(value);
        if let Some(max_age) = max_age {
            let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            cookie.set_max_age(cookie::time::Duration::seconds(seconds));
        }
        HeaderValue::from_str(&cookie.to_string()).ok()
    }

    /// `Set-Cookie` that makes the browser drop the session cookie.
    pub(crate) fn removal_cookie(&self) -> Option<HeaderValue> {
        let mut cookie = self.cookie(String::new());
        cookie.make_removal();
        HeaderValue::from_str(&cookie.to_string()).ok()
    }

    fn cookie(&self, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::new(self.name.clone(), value);
        cookie.set_http_only(self.http_only);
        cookie.set_secure(self.secure);
        cookie.set_same_site(self.same_site);
        cookie.set_path(self.path.clone());
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }
}

/// Whether `value` can be written as a `Set-Cookie` attribute value as it is: a `;` would start
/// another attribute (`"/; SameSite=None"`), a `,` splits folded headers, and a control
/// character makes the header invalid (the session saved, but no cookie sent).
fn attribute_value_is_safe(value: &str) -> bool {
    value.bytes().all(|b| !b.is_ascii_control() && b != b';' && b != b',')
}

/// The values of a request's cookies of one name: see [`CookieSettings::values`].
///
/// A request `Cookie` header is only `name=value` pairs separated by `;` (RFC 6265 §4.2.1), and
/// every request that takes its session reads it, so it is split here rather than through
/// `cookie`'s full parser, which also handles attributes and percent-decoding that request
/// cookies never need (and our values, base64url and `.`, never contain).
struct CookieValues<'a> {
    headers: http::header::ValueIter<'a, HeaderValue>,
    /// What is left of the header being read.
    pairs: &'a [u8],
    name: &'a [u8],
}

impl<'a> Iterator for CookieValues<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.pairs.is_empty() {
                self.pairs = self.headers.next()?.as_bytes();
                continue;
            }
            // `memchr` finds the separator a word at a time rather than a byte at a time.
            let pair = match memchr::memchr(b';', self.pairs) {
                Some(at) => {
                    let pair = &self.pairs[..at];
                    self.pairs = &self.pairs[at + 1..];
                    pair
                }
                None => std::mem::take(&mut self.pairs),
            };
            let pair = pair.trim_ascii();
            let Some(value) = short_bytes::strip_prefix(pair, self.name).and_then(|rest| rest.strip_prefix(b"="))
            else {
                continue;
            };
            let value = value.trim_ascii();
            // A value may be quoted (RFC 6265 `cookie-value`).
            return Some(
                value
                    .strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(value),
            );
        }
    }
}

/// Adds `Cookie` to the response's `Vary`, so that a shared cache never serves one user's
/// session response to another: merged into the `Vary` the handler set (one header listing
/// both), left alone when it already names `Cookie` or is `*`.
pub(crate) fn vary_on_cookie(headers: &mut HeaderMap) {
    // A response has few headers, and comparing a standard name is cheaper than hashing it:
    // without a `Vary` among them, appending needs no look-up first.
    if headers.keys_len() <= 8 && headers.keys().all(|name| name != VARY) {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
        return;
    }
    match headers.entry(VARY) {
        Entry::Vacant(vacant) => {
            vacant.insert(HeaderValue::from_static("Cookie"));
        }
        Entry::Occupied(occupied) => merge_vary(occupied),
    }
}

/// `Cookie` added to the `Vary` values a handler set, unless they already cover it.
#[cold]
#[inline(never)]
fn merge_vary(mut vary: OccupiedEntry<'_, HeaderValue>) {
    let mut merged = Vec::new();
    for value in vary.iter() {
        let value = value.as_bytes().trim_ascii();
        let covers_cookie = value
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|field| field == b"*" || field.eq_ignore_ascii_case(b"cookie"));
        if covers_cookie {
            return;
        }
        if !value.is_empty() {
            merged.extend_from_slice(value);
            merged.extend_from_slice(b", ");
        }
    }
    merged.extend_from_slice(b"Cookie");
    // Made of the handler's own header values and ASCII: valid whenever they were.
    if let Ok(value) = HeaderValue::from_bytes(&merged) {
        vary.insert(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;

    fn headers(name: http::HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn finds_the_session_cookie_among_others_and_across_headers() {
        let settings = CookieSettings::default();
        let id = SessionId::random();
        let value = id.as_str();
        for header in [
            vec![format!("id={value}")],
            vec![format!("theme=dark; id={value}; lang=en")],
            vec!["theme=dark".to_owned(), format!("id=\"{value}\"")],
            vec![format!("id=garbage; id={value}")],
            vec![format!("  id={value}  ;")],
            vec![String::new(), format!(";;id={value}")],
        ] {
            let refs: Vec<&str> = header.iter().map(String::as_str).collect();
            let found = settings.session_ids(&headers(COOKIE, &refs), &[]).next();
            assert_eq!(found.map(|c| c.id), Some(id.clone()), "{header:?}");
        }
        for header in [
            "xid=".to_owned() + value,
            "ID=".to_owned() + value,
            format!("id{value}"),
            String::new(),
        ] {
            assert_eq!(
                settings.session_ids(&headers(COOKIE, &[&header]), &[]).next(),
                None,
                "{header:?}"
            );
        }
    }

    #[test]
    fn every_verified_id_comes_in_order() {
        let settings = CookieSettings::default();
        let keys = [SigningKey::from_bytes(&[3; 32]).unwrap()];
        let ids: Vec<SessionId> = (0..3).map(|_| SessionId::random()).collect();
        let signed: Vec<String> = ids.iter().map(|id| encode_value(id, "id", &keys)).collect();
        let header = format!("id={}; id=forged; a=b; id={}", signed[0], signed[1]);
        let second = format!("id={}", signed[2]);
        let found: Vec<SessionId> = settings
            .session_ids(&headers(COOKIE, &[&header, &second]), &keys)
            .map(|c| c.id)
            .collect();
        assert_eq!(found, ids);
    }

    /// However many cookies of our name a request sends, only the first `MAX_EXAMINED` are
    /// checked: thousands of forged ones cost a scan of the header, not a signature check each.
    #[test]
    fn only_the_first_cookies_of_our_name_are_examined() {
        let settings = CookieSettings::default();
        let keys = [SigningKey::from_bytes(&[3; 32]).unwrap()];
        let id = SessionId::random();
        let valid = format!("id={}", encode_value(&id, "id", &keys));
        let forged = |count: usize| vec![format!("id={}.{}", "A".repeat(24), "B".repeat(43)); count].join("; ");
        let after = |count: usize| format!("{}; {valid}", forged(count));
        let found = |header: &str| settings.session_ids(&headers(COOKIE, &[header]), &keys).count();
        assert_eq!(found(&after(MAX_EXAMINED - 1)), 1);
        assert_eq!(found(&after(MAX_EXAMINED)), 0, "the valid one came too late");
        assert_eq!(found(&format!("a=b; {}; {valid}", forged(5000))), 0);
    }

    #[test]
    #[should_panic(expected = "would break the `Set-Cookie` header")]
    fn a_path_that_injects_an_attribute_is_refused() {
        let settings = CookieSettings {
            path: "/; SameSite=None".into(),
            ..CookieSettings::default()
        };
        settings.check();
    }

    #[test]
    #[should_panic(expected = "would break the `Set-Cookie` header")]
    fn a_domain_with_a_control_character_is_refused() {
        let settings = CookieSettings {
            domain: Some("example.com\n".into()),
            ..CookieSettings::default()
        };
        settings.check();
    }

    #[test]
    #[should_panic(expected = "`__Host-` cookie needs")]
    fn cookie_prefixes_are_checked_whatever_their_case() {
        let settings = CookieSettings {
            name: "__HOST-id".into(),
            domain: Some("example.com".into()),
            ..CookieSettings::default()
        };
        settings.check();
    }

    #[test]
    fn ordinary_paths_and_domains_pass() {
        let settings = CookieSettings {
            path: "/app/v1".into(),
            domain: Some("sub.example.com".into()),
            name: "__Secure-id".into(),
            ..CookieSettings::default()
        };
        settings.check();
    }

    #[test]
    fn set_cookie_has_secure_defaults() {
        let settings = CookieSettings::default();
        let header = settings
            .set_cookie("abc".into(), Some(Duration::from_secs(60)))
            .unwrap();
        let text = header.to_str().unwrap();
        for part in ["id=abc", "HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=60"] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
        let removal = settings.removal_cookie().unwrap();
        assert!(removal.to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn vary_gains_cookie_once_and_keeps_what_the_handler_set() {
        let vary = |values: &[&str]| {
            let mut map = headers(VARY, values);
            vary_on_cookie(&mut map);
            map.get_all(VARY)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(vary(&[]), ["Cookie"]);
        assert_eq!(vary(&["Accept-Encoding"]), ["Accept-Encoding, Cookie"]);
        assert_eq!(
            vary(&["Accept-Encoding", "Origin"]),
            ["Accept-Encoding, Origin, Cookie"]
        );
        assert_eq!(vary(&["accept, COOKIE"]), ["accept, COOKIE"]);
        assert_eq!(vary(&["*"]), ["*"]);
        assert_eq!(vary(&["Cookie"]), ["Cookie"]);
    }

    /// A response with more headers than are scanned for `Vary` is looked up instead, with the
    /// same result.
    #[test]
    fn vary_on_a_response_with_many_headers() {
        let mut many = HeaderMap::new();
        for i in 0..12 {
            let name = http::HeaderName::from_bytes(format!("x-header-{i}").as_bytes()).unwrap();
            many.insert(name, HeaderValue::from_static("1"));
        }
        let mut with_vary = many.clone();
        with_vary.insert(VARY, HeaderValue::from_static("Origin"));
        vary_on_cookie(&mut many);
        vary_on_cookie(&mut with_vary);
        assert_eq!(many.get_all(VARY).iter().collect::<Vec<_>>(), ["Cookie"]);
        assert_eq!(with_vary.get_all(VARY).iter().collect::<Vec<_>>(), ["Origin, Cookie"]);
    }

    #[test]
    #[should_panic(expected = "SameSite=None")]
    fn same_site_none_needs_secure() {
        let settings = CookieSettings {
            same_site: SameSite::None,
            secure: false,
            ..CookieSettings::default()
        };
        settings.check();
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::id::SessionId;

    fn session_id() -> impl Strategy<Value = SessionId> {
        "[A-Za-z0-9_-]{24}".prop_map(|text| SessionId::parse(&text).expect("24 base64url characters"))
    }

    fn keys() -> impl Strategy<Value = Vec<SigningKey>> {
        prop::collection::vec(prop::array::uniform32(any::<u8>()), 1..4)
            .prop_map(|secrets| secrets.iter().map(|s| SigningKey::from_bytes(s).unwrap()).collect())
    }

    /// One `name=value` pair of a hostile `Cookie` header: our name or another, any value a
    /// header can carry, ids with forged or truncated signatures.
    fn noise() -> impl Strategy<Value = String> {
        let name = prop_oneof!["id", "ID", "xid", "id ", "[a-z]{0,5}"];
        let value = prop_oneof![
            "[ -~]{0,60}".prop_map(|v| v.replace(';', "")),
            (session_id(), "[A-Za-z0-9_-]{43}").prop_map(|(id, tag)| format!("{}.{tag}", id.as_str())),
            session_id().prop_map(|id| id.as_str().to_owned()),
            session_id().prop_map(|id| format!("\"{}.", id.as_str())),
        ];
        (name, value).prop_map(|(name, value)| format!("{name}={value}"))
    }

    proptest! {
        /// Whatever a client sends, reading it never panics, and the only ids found are those a
        /// key of ours signed, in the order they were sent.
        #[test]
        fn only_signed_ids_are_found_in_any_cookie_header(
            keys in keys(),
            noise in prop::collection::vec(noise(), 0..12),
            genuine in prop::collection::vec((session_id(), any::<prop::sample::Index>()), 0..3),
            raw in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let settings = CookieSettings::default();
            let mut pairs = noise;
            let mut signed = Vec::new();
            for (id, at) in genuine {
                let value = encode_value(&id, "id", &keys);
                pairs.insert(at.index(pairs.len() + 1), format!("id={value}"));
                signed.push((value, id));
            }
            // The genuine values, in the order they ended up in the header.
            let expected: Vec<SessionId> = pairs
                .iter()
                .filter_map(|pair| signed.iter().find(|(value, _)| pair == &format!("id={value}")))
                .map(|(_, id)| id.clone())
                .collect();
            let mut headers = HeaderMap::new();
            headers.append(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
            if let Ok(raw) = HeaderValue::from_bytes(&raw) {
                headers.append(COOKIE, raw);
            }
            let found: Vec<SessionId> = settings.session_ids(&headers, &keys).map(|c| c.id).collect();
            prop_assert_eq!(found, expected);
        }

        /// A value signed by any key of the ring verifies, says whether a retired key signed it,
        /// and stops verifying once that key is dropped or under another cookie name.
        #[test]
        fn signed_values_round_trip_through_the_key_ring(id in session_id(), keys in keys(), signer in any::<prop::sample::Index>()) {
            let signer = signer.index(keys.len());
            let value = encode_value(&id, "id", &keys[signer..]);
            let verified = signing::decode_value(&value, "id", &keys).expect("a key of the ring signed it");
            prop_assert_eq!(&verified.id, &id);
            prop_assert_eq!(verified.signed_by_old_key, signer > 0);
            prop_assert!(signing::decode_value(&value, "other", &keys).is_none());
            let without_signer: Vec<SigningKey> =
                keys.iter().enumerate().filter(|(i, _)| *i != signer).map(|(_, k)| k.clone()).collect();
            // Two random 32-byte secrets are equal only by a miracle: dropping the signer drops
            // every key that can verify the value.
            prop_assert!(signing::decode_value(&value, "id", &without_signer).is_none());
        }
    }
}
