//! Client-side sessions: the whole session (its id and record) sealed into the cookie value
//! with XChaCha20-Poly1305, keys derived with HKDF-SHA256, and key rotation.
//!
//! A value is `base64url(version | key id | nonce | ciphertext and tag)`. The version and key
//! id are authenticated with the cookie name as associated data, so a value moved to a cookie of
//! another name, or relabelled, does not open. The 192-bit nonce is random per cookie: with
//! XChaCha20 random nonces do not collide in any realistic number of cookies per key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use sha2::Sha256;

use super::KeyTooShort;
use crate::expiry::{from_unix_millis, to_unix_millis, Expiry};
use crate::id::SessionId;
use crate::record::{Record, Revision};
use crate::value_map::ValueMap;

/// The layout this code writes; a value of any other version opens as no session.
const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// HKDF inputs: one derived key per purpose, so the same secret never keys two algorithms.
const HKDF_SALT: &[u8] = b"typed-sessions client-side sessions";
const CIPHER_KEY_INFO: &[u8] = b"typed-sessions/client-side/xchacha20poly1305/v1";
const KEY_ID_INFO: &[u8] = b"typed-sessions/client-side/key-id/v1";

/// A key that encrypts client-side session cookies, derived from a secret of at least 32 bytes.
///
/// Give [`SessionLayer::client_side`](crate::SessionLayer::client_side) a list: the first key
/// encrypts, every key decrypts, so a new key goes first and the old one stays until the
/// cookies it encrypted have expired (each is re-encrypted with the new key on its next
/// response).
///
/// ```
/// use typed_sessions::EncryptionKey;
///
/// // In production, read the secret from your configuration (`openssl rand -base64 32`).
/// let key = EncryptionKey::from_bytes(&[7; 32]).unwrap();
/// assert!(EncryptionKey::from_bytes(b"too short").is_err());
/// # let _ = (key, EncryptionKey::generate());
/// ```
#[derive(Clone)]
pub struct EncryptionKey {
    cipher: XChaCha20Poly1305,
    /// Names the key in each value it seals, so that opening tries only the key that sealed it.
    id: [u8; KEY_ID_LEN],
}

impl EncryptionKey {
    /// The shortest secret accepted, in bytes.
    pub const MIN_LEN: usize = 32;

    /// Derives a key from `secret`.
    ///
    /// # Errors
    ///
    /// [`KeyTooShort`] if `secret` is shorter than [`MIN_LEN`](Self::MIN_LEN).
    pub fn from_bytes(secret: &[u8]) -> Result<Self, KeyTooShort> {
        if secret.len() < Self::MIN_LEN {
            return Err(KeyTooShort(secret.len()));
        }
        let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret);
        let mut cipher_key = [0u8; 32];
        let mut id = [0u8; KEY_ID_LEN];
        // Both lengths are far below HKDF-SHA256's limit of 8,160 bytes.
        hkdf.expand(CIPHER_KEY_INFO, &mut cipher_key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        hkdf.expand(KEY_ID_INFO, &mut id)
            .expect("4 bytes is a valid HKDF-SHA256 output length");
        Ok(EncryptionKey {
            cipher: XChaCha20Poly1305::new(&cipher_key.into()),
            id,
        })
    }

    /// A key from 32 random bytes of the operating system's generator: for tests and for apps
    /// whose sessions may end when the process restarts.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).expect("the OS random number generator failed");
        Self::from_bytes(&secret).expect("32 bytes is long enough")
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(..)")
    }
}

/// A session read back from a sealed cookie value.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) id: SessionId,
    pub(crate) record: Record,
    /// Sealed by a key other than the first: the next response re-seals it.
    pub(crate) by_old_key: bool,
}

/// Seals the session `id` with `record` for the cookie `cookie_name` under the first of `keys`;
/// `None` if there are no keys or a value is not JSON (neither happens through the layer).
pub(crate) fn seal(keys: &[EncryptionKey], cookie_name: &str, id: &SessionId, record: &Record) -> Option<String> {
    let key = keys.first()?;
    let payload = SealedPayload {
        id: id.as_str(),
        values: JsonObject(&record.values),
        flash: JsonObject(&record.flash),
        created_at: millis_rounded_up(record.created_at),
        expires_at: to_unix_millis(record.expires_at),
        expiry: record.expiry,
    };
    let mut buffer = Vec::with_capacity(HEADER_LEN + 128);
    buffer.push(VERSION);
    buffer.extend_from_slice(&key.id);
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).expect("the OS random number generator failed");
    buffer.extend_from_slice(&nonce);
    serde_json::to_writer(&mut buffer, &payload).ok()?;
    let (header, plaintext) = buffer.split_at_mut(HEADER_LEN);
    let aad = associated_data(&header[..1 + KEY_ID_LEN], cookie_name);
    let tag = key
        .cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, plaintext)
        .ok()?;
    buffer.extend_from_slice(&tag);
    Some(URL_SAFE_NO_PAD.encode(buffer))
}

/// The session in a sealed cookie `value` of the cookie `cookie_name`, if one of `keys` sealed it
/// and it decodes; anything else (tampered, truncated, another version or key or cookie name,
/// random bytes) is `None`.
pub(crate) fn open(value: &[u8], cookie_name: &str, keys: &[EncryptionKey]) -> Option<Opened> {
    let mut buffer = URL_SAFE_NO_PAD.decode(value).ok()?;
    if buffer.len() < HEADER_LEN + TAG_LEN || buffer[0] != VERSION {
        return None;
    }
    let (header, sealed) = buffer.split_at_mut(HEADER_LEN);
    let (ciphertext, tag) = sealed.split_at_mut(sealed.len() - TAG_LEN);
    let tag = &*tag;
    let key_id = &header[1..1 + KEY_ID_LEN];
    let aad = associated_data(&header[..1 + KEY_ID_LEN], cookie_name);
    let nonce = XNonce::from_slice(&header[1 + KEY_ID_LEN..]);
    // Key ids are 32 bits: two keys of a ring may share one, so each key that matches is tried.
    let signer = keys.iter().position(|key| {
        key.id[..] == *key_id
            && key
                .cipher
                .decrypt_in_place_detached(nonce, &aad, ciphertext, Tag::from_slice(tag))
                .is_ok()
    })?;
    let payload: OpenedPayload<'_> = serde_json::from_slice(ciphertext).ok()?;
    Some(Opened {
        id: SessionId::parse(&payload.id)?,
        record: Record {
            values: raw_values(&payload.values),
            flash: raw_values(&payload.flash),
            created_at: from_unix_millis(payload.created_at),
            expires_at: from_unix_millis(payload.expires_at),
            expiry: payload.expiry,
            // Client-side sessions are kept by browsers, where no index can list them.
            owner: None,
            revision: Revision::default(),
        },
        by_old_key: signer > 0,
    })
}

/// `time` in whole milliseconds, rounded up: a lifetime cap counted from a rounded-down start
/// would end (and shorten the cookie's `Max-Age`) up to a millisecond early.
fn millis_rounded_up(time: SystemTime) -> i64 {
    let millis = to_unix_millis(time);
    if from_unix_millis(millis) < time {
        millis.saturating_add(1)
    } else {
        millis
    }
}

/// The version and key id, then the cookie name: what the tag covers besides the ciphertext.
fn associated_data(version_and_key_id: &[u8], cookie_name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(version_and_key_id.len() + cookie_name.len());
    aad.extend_from_slice(version_and_key_id);
    aad.extend_from_slice(cookie_name.as_bytes());
    aad
}

fn raw_values(object: &BTreeMap<String, &RawValue>) -> ValueMap {
    object.iter().map(|(name, raw)| (name, raw.get())).collect()
}

/// The plaintext, as JSON. Short member names: every byte is sent with each request.
#[derive(Serialize)]
struct SealedPayload<'a> {
    #[serde(rename = "i")]
    id: &'a str,
    #[serde(rename = "v")]
    values: JsonObject<'a>,
    #[serde(rename = "f")]
    flash: JsonObject<'a>,
    #[serde(rename = "c")]
    created_at: i64,
    #[serde(rename = "e")]
    expires_at: i64,
    #[serde(rename = "x", skip_serializing_if = "Option::is_none")]
    expiry: Option<Expiry>,
}

#[derive(Deserialize)]
struct OpenedPayload<'a> {
    #[serde(rename = "i")]
    id: String,
    #[serde(rename = "v", borrow)]
    values: BTreeMap<String, &'a RawValue>,
    #[serde(rename = "f", borrow)]
    flash: BTreeMap<String, &'a RawValue>,
    #[serde(rename = "c")]
    created_at: i64,
    #[serde(rename = "e")]
    expires_at: i64,
    #[serde(rename = "x", default)]
    expiry: Option<Expiry>,
}

/// A value map as a JSON object whose members are the values' own JSON (not strings of it).
struct JsonObject<'a>(&'a ValueMap);

impl Serialize for JsonObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut object = serializer.serialize_map(Some(self.0.len()))?;
        for (name, json) in self.0 {
            let raw: &RawValue = serde_json::from_str(json).map_err(S::Error::custom)?;
            object.serialize_entry(name, raw)?;
        }
        object.end()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn key(byte: u8) -> EncryptionKey {
        EncryptionKey::from_bytes(&[byte; 32]).unwrap()
    }

    fn record() -> Record {
        let now = crate::expiry::from_unix_millis(1_700_000_000_000);
        let mut record = Record::new(now, now + Duration::from_secs(3600));
        record.values.insert("user_id", "42");
        record.values.insert("name", r#""ada \"the\" first""#);
        record.flash.insert("notice", r#""saved""#);
        record.expiry = Some(Expiry::BrowserSession);
        record
    }

    #[test]
    fn a_session_round_trips_and_old_keys_open_what_they_sealed() {
        let id = SessionId::random();
        let value = seal(&[key(1)], "id", &id, &record()).unwrap();
        let opened = open(value.as_bytes(), "id", &[key(1)]).unwrap();
        assert_eq!((&opened.id, &opened.record, opened.by_old_key), (&id, &record(), false));

        let rotated = open(value.as_bytes(), "id", &[key(2), key(1)]).unwrap();
        assert_eq!((&rotated.id, rotated.by_old_key), (&id, true));
        assert!(
            open(value.as_bytes(), "id", &[key(2)]).is_none(),
            "a retired key's cookies no longer open"
        );
    }

    #[test]
    fn values_keep_their_own_json_and_each_seal_differs() {
        let id = SessionId::random();
        let first = seal(&[key(1)], "id", &id, &record()).unwrap();
        let second = seal(&[key(1)], "id", &id, &record()).unwrap();
        assert_ne!(first, second, "a fresh nonce per cookie");
        let opened = open(first.as_bytes(), "id", &[key(1)]).unwrap();
        assert_eq!(opened.record.values.get("name"), Some(r#""ada \"the\" first""#));
    }

    #[test]
    fn another_cookie_name_version_or_key_id_does_not_open() {
        let id = SessionId::random();
        let value = seal(&[key(1)], "id", &id, &record()).unwrap();
        assert!(open(value.as_bytes(), "other", &[key(1)]).is_none());
        let mut bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
        bytes[0] = 2;
        assert!(open(URL_SAFE_NO_PAD.encode(&bytes).as_bytes(), "id", &[key(1)]).is_none());
        bytes[0] = VERSION;
        bytes[1] ^= 1;
        assert!(open(URL_SAFE_NO_PAD.encode(&bytes).as_bytes(), "id", &[key(1)]).is_none());
        assert!(EncryptionKey::from_bytes(&[1; 31]).is_err());
    }

    #[test]
    fn a_payload_that_decrypts_but_does_not_decode_is_no_session() {
        // Sealed by hand: authentic, but not a session.
        let key = key(1);
        let mut buffer = vec![VERSION];
        buffer.extend_from_slice(&key.id);
        buffer.extend_from_slice(&[0; NONCE_LEN]);
        buffer.extend_from_slice(br#"{"i":"not an id","v":{},"f":{},"c":0,"e":0}"#);
        let (header, plaintext) = buffer.split_at_mut(HEADER_LEN);
        let aad = associated_data(&header[..1 + KEY_ID_LEN], "id");
        let tag = key
            .cipher
            .encrypt_in_place_detached(XNonce::from_slice(&[0; NONCE_LEN]), &aad, plaintext)
            .unwrap();
        buffer.extend_from_slice(&tag);
        assert!(open(URL_SAFE_NO_PAD.encode(&buffer).as_bytes(), "id", &[key]).is_none());
    }

    proptest! {
        /// Any bytes at all open as no session, without panicking.
        #[test]
        fn arbitrary_bytes_never_open(bytes in prop::collection::vec(any::<u8>(), 0..200), encode in any::<bool>()) {
            let value = if encode { URL_SAFE_NO_PAD.encode(&bytes).into_bytes() } else { bytes };
            prop_assert!(open(&value, "id", &[key(1), key(2)]).is_none());
        }

        /// Flipping any one bit of a valid value, or cutting it short, or swapping two of its
        /// bytes, makes it open as no session.
        #[test]
        fn a_changed_value_never_opens(bit in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(), swap in any::<(prop::sample::Index, prop::sample::Index)>()) {
            let keys = [key(1)];
            let value = seal(&keys, "id", &SessionId::random(), &record()).unwrap();
            let bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();

            let mut flipped = bytes.clone();
            let at = bit.index(flipped.len() * 8);
            flipped[at / 8] ^= 1 << (at % 8);
            prop_assert!(open(URL_SAFE_NO_PAD.encode(&flipped).as_bytes(), "id", &keys).is_none());

            let truncated = &bytes[..cut.index(bytes.len())];
            prop_assert!(open(URL_SAFE_NO_PAD.encode(truncated).as_bytes(), "id", &keys).is_none());

            let (a, b) = (swap.0.index(bytes.len()), swap.1.index(bytes.len()));
            let mut swapped = bytes.clone();
            swapped.swap(a, b);
            if swapped != bytes {
                prop_assert!(open(URL_SAFE_NO_PAD.encode(&swapped).as_bytes(), "id", &keys).is_none());
            }
        }
    }

    #[test]
    fn times_survive_to_the_millisecond_and_a_start_rounds_up() {
        let id = SessionId::random();
        let mut record = record();
        record.created_at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_234_567);
        let value = seal(&[key(3)], "id", &id, &record).unwrap();
        assert_eq!(
            open(value.as_bytes(), "id", &[key(3)]).unwrap().record.created_at,
            record.created_at
        );

        record.created_at += Duration::from_micros(1);
        let value = seal(&[key(3)], "id", &id, &record).unwrap();
        assert_eq!(
            open(value.as_bytes(), "id", &[key(3)]).unwrap().record.created_at,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_234_568)
        );
    }
}
