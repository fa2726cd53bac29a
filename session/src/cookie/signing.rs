//! The cookie value: a session id signed with HMAC-SHA256, with key rotation.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::id::{SessionId, ID_LEN};

type HmacSha256 = Hmac<Sha256>;

/// Base64 length of an HMAC-SHA256 tag.
const SIGNATURE_LEN: usize = 43;

/// Longest cookie value worth looking at: an id, a dot and a signature.
pub(super) const MAX_VALUE_LEN: usize = ID_LEN + 1 + SIGNATURE_LEN;

/// A secret key that signs session cookies (HMAC-SHA256).
///
/// Give the layer a list with [`SessionLayer::with_signing_keys`](crate::SessionLayer::with_signing_keys):
/// the first key signs, every key verifies, so a key can be rotated out without logging anyone
/// out — put the new key first, keep the old one second until old cookies have expired.
///
/// ```
/// use typed_sessions::SigningKey;
///
/// let key = SigningKey::from_bytes(&[7u8; 32]).unwrap();
/// assert!(SigningKey::from_bytes(b"too short").is_err());
/// let random = SigningKey::generate();
/// ```
#[derive(Clone)]
pub struct SigningKey {
    // Keyed once: cloning a keyed HMAC is cheaper than keying it per request.
    mac: HmacSha256,
}

/// A secret shorter than 32 bytes, refused by [`SigningKey::from_bytes`] (and, with feature
/// `client-side`, `EncryptionKey::from_bytes`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a session key needs at least 32 bytes of secret (got {0}); generate one with `openssl rand -base64 32`")]
pub struct KeyTooShort(pub usize);

impl SigningKey {
    /// The shortest secret accepted, in bytes.
    pub const MIN_LEN: usize = 32;

    /// A key from secret bytes (at least 32).
    pub fn from_bytes(secret: &[u8]) -> Result<Self, KeyTooShort> {
        if secret.len() < Self::MIN_LEN {
            return Err(KeyTooShort(secret.len()));
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| KeyTooShort(secret.len()))?;
        Ok(SigningKey { mac })
    }

    /// A new random 32-byte key. Cookies it signed stop verifying when the process restarts.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).expect("the OS random number generator failed");
        Self::from_bytes(&secret).expect("32 bytes is long enough")
    }

    fn tag(&self, cookie_name: &str, id: &SessionId) -> HmacSha256 {
        let mut mac = self.mac.clone();
        // The name is signed too, so a value cannot be moved to a cookie of another name.
        mac.update(cookie_name.as_bytes());
        mac.update(b"=");
        mac.update(id.as_bytes());
        mac
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// The cookie value for `id`: `id.signature` with keys, the bare id without.
pub(crate) fn encode_value(id: &SessionId, cookie_name: &str, keys: &[SigningKey]) -> String {
    match keys.first() {
        None => id.as_str().to_owned(),
        Some(key) => {
            let signature = key.tag(cookie_name, id).finalize().into_bytes();
            let mut value = String::with_capacity(MAX_VALUE_LEN);
            value.push_str(id.as_str());
            value.push('.');
            URL_SAFE_NO_PAD.encode_string(signature, &mut value);
            value
        }
    }
}

/// A session id read from a verified cookie.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CookieId {
    pub(crate) id: SessionId,
    /// Signed by a key other than the first: the cookie should be re-signed.
    pub(crate) signed_by_old_key: bool,
}

/// The id in a cookie value, if it is well formed and (with keys) signed by one of them.
pub(crate) fn decode_value(
    value: &(impl AsRef<[u8]> + ?Sized),
    cookie_name: &str,
    keys: &[SigningKey],
) -> Option<CookieId> {
    let value = value.as_ref();
    if value.len() > MAX_VALUE_LEN {
        return None;
    }
    if keys.is_empty() {
        return SessionId::from_ascii(value).map(|id| CookieId {
            id,
            signed_by_old_key: false,
        });
    }
    let dot = value.iter().position(|&b| b == b'.')?;
    let (id, signature) = (&value[..dot], &value[dot + 1..]);
    if signature.len() != SIGNATURE_LEN {
        return None;
    }
    let id = SessionId::from_ascii(id)?;
    let mut tag = [0u8; 33];
    let tag_len = URL_SAFE_NO_PAD.decode_slice(signature, &mut tag).ok()?;
    let tag = &tag[..tag_len];
    // `verify_slice` compares in constant time.
    let signer = keys
        .iter()
        .position(|key| key.tag(cookie_name, &id).verify_slice(tag).is_ok())?;
    Some(CookieId {
        id,
        signed_by_old_key: signer > 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn signed_value_round_trips_and_rotation_verifies_old_keys() {
        let id = SessionId::random();
        let old = [key(1)];
        let value = encode_value(&id, "id", &old);
        assert_eq!(
            decode_value(&value, "id", &old),
            Some(CookieId {
                id: id.clone(),
                signed_by_old_key: false
            })
        );

        let rotated = [key(2), key(1)];
        assert_eq!(
            decode_value(&value, "id", &rotated),
            Some(CookieId {
                id: id.clone(),
                signed_by_old_key: true
            })
        );
        let retired = [key(2)];
        assert_eq!(decode_value(&value, "id", &retired), None);
    }

    #[test]
    fn tampered_unsigned_and_renamed_values_are_rejected() {
        let keys = [key(1)];
        let id = SessionId::random();
        let value = encode_value(&id, "id", &keys);

        assert_eq!(decode_value(id.as_str(), "id", &keys), None, "unsigned");
        assert_eq!(
            decode_value(&value, "other", &keys),
            None,
            "moved to another cookie name"
        );
        let mut tampered = value.clone().into_bytes();
        tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
        assert_eq!(decode_value(std::str::from_utf8(&tampered).unwrap(), "id", &keys), None);
        for bad in ["", ".", "a.b", &format!("{value}x"), &"x".repeat(10_000), "é.é"] {
            assert_eq!(decode_value(bad, "id", &keys), None, "{bad:?}");
        }
    }
}
