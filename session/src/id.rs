//! Session ids (what the cookie carries) and store keys (what the store sees: a hash of the id).

use std::cell::RefCell;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::shard_lock::ShardLock;

/// Random bytes in an id: 144 bits, more than the 128 OWASP asks for, and a whole number of
/// base64 characters (24).
const ID_BYTES: usize = 18;

/// Length of an id's text form.
pub(crate) const ID_LEN: usize = 24;

/// Whether all eight bytes of `word` are in the url-safe base64 alphabet (`A-Z a-z 0-9 - _`),
/// tested eight at a time: every request checks its cookie's id, and a byte-by-byte loop over
/// 24 bytes is several times the code and the instructions.
///
/// Each test leaves a byte's high bit set where it holds. For bytes below 0x80, adding a
/// constant never carries into the next byte, so the tests are exact; a byte of 0x80 or more
/// fails the final mask whatever its carries do to its neighbours.
fn all_id_bytes(word: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = ONES * 0x80;
    // High bit set in each byte that is in `lo..=hi` (for bytes below 0x80).
    let in_range = |x: u64, lo: u8, hi: u8| {
        x.wrapping_add(ONES * u64::from(0x80 - lo)) & !x.wrapping_add(ONES * u64::from(0x7f - hi))
    };
    // High bit set in each byte equal to `c`.
    let equal = |x: u64, c: u8| {
        let diff = x ^ (ONES * u64::from(c));
        !(((diff & !HIGH) + !HIGH) | diff)
    };
    let valid =
        in_range(word, b'0', b'9') | in_range(word | (ONES * 0x20), b'a', b'z') | equal(word, b'-') | equal(word, b'_');
    valid & !word & HIGH == HIGH
}

/// A session id: 144 random bits from the operating system's CSPRNG, as url-safe base64 text.
///
/// The id is the secret a cookie carries. It is never written to a store as is: stores see its
/// [`StoreKey`].
#[derive(Clone, PartialEq, Eq)]
// Word-aligned: moved as whole words where it sits in larger values (a save's plan).
#[repr(align(8))]
pub struct SessionId([u8; ID_LEN]);

// Written out, as for `StoreKey`: the bytes handed to the hasher in one call.
impl std::hash::Hash for SessionId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl SessionId {
    /// A new random id.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails, which leaves no safe way to
    /// make ids.
    pub fn random() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
        let mut text = [0u8; ID_LEN];
        let written = URL_SAFE_NO_PAD
            .encode_slice(bytes, &mut text)
            .expect("18 bytes are 24 base64 characters");
        debug_assert_eq!(written, ID_LEN);
        SessionId(text)
    }

    /// Parses the text form of an id; `None` unless it has exactly the shape `random` makes.
    pub fn parse(text: &str) -> Option<Self> {
        Self::from_ascii(text.as_bytes())
    }

    /// [`parse`](Self::parse) on the bytes of a cookie value, which need no UTF-8 check first:
    /// every request pays for this.
    pub(crate) fn from_ascii(text: &[u8]) -> Option<Self> {
        let bytes: [u8; ID_LEN] = text.try_into().ok()?;
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
        (all_id_bytes(word(0)) & all_id_bytes(word(8)) & all_id_bytes(word(16))).then_some(SessionId(bytes))
    }

    /// The id's text as bytes.
    pub(crate) fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The id's text, as sent in the cookie.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ids are ASCII by construction")
    }

    /// The key the store files this session under.
    pub fn store_key(&self) -> StoreKey {
        StoreKey(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for SessionId {
    // Ids are secrets: debug output and logs show only a prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", &self.as_str()[..4])
    }
}

/// The SHA-256 hash of a [`SessionId`]: the only form of the id a store ever sees.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
// Word-aligned, as `SessionId`.
#[repr(align(8))]
pub struct StoreKey([u8; 32]);

// Written out rather than derived: an array's derived `Hash` goes through a slice hash that is
// not inlined, a call on every look-up of a map keyed by store keys (the memory store's).
impl std::hash::Hash for StoreKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl StoreKey {
    /// The key from its 32 raw bytes (stores that keep keys as bytes).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        StoreKey(bytes)
    }

    /// The 32 hash bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 characters: safe in file names, SQL text and Redis keys.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Parses [`to_hex`](Self::to_hex)'s output.
    pub fn from_hex(hex: &str) -> Option<Self> {
        from_hex(hex).map(StoreKey)
    }
}

/// Remembers the store keys of live sessions, so a session's requests do not each pay for a
/// SHA-256 (about a microsecond on CPUs without SHA instructions, the largest single cost of a
/// request). Only ids the store has confirmed are cached, so a client sending random ids cannot
/// fill it; it is bounded, and a full shard is simply emptied. It lives in process memory, like
/// the requests that carry the ids: stores, the part that can leak at rest, still see hashes only.
///
/// Two levels: each thread first looks in the keys it found most recently ([`RECENT`], no lock,
/// shared by every layer: an id's key is the same for all), then in the layer's shards.
pub(crate) struct StoreKeyCache {
    shards: [ShardLock<IdMap>; 16],
}

std::thread_local! {
    /// The keys this thread found most recently, read without a lock; emptied when it holds
    /// [`RECENT_CAPACITY`].
    static RECENT: RefCell<IdMap> = RefCell::new(IdMap::default());
}

/// The most keys a thread keeps in [`RECENT`]: a few hundred kilobytes.
const RECENT_CAPACITY: usize = 4096;

/// Notes `id`'s `key` in this thread's [`RECENT`].
fn remember_recent(id: &SessionId, key: StoreKey) {
    let _ = RECENT.try_with(|recent| {
        let mut recent = recent.borrow_mut();
        if recent.len() >= RECENT_CAPACITY {
            recent.clear();
        }
        recent.insert(id.clone(), key);
    });
}

/// Ids are random text, so eight of their bytes are a good hash. Clients choose the ids that are
/// looked up, but only ids the store confirmed are inserted, so probes stay short whatever
/// clients send.
type IdMap = RandomKeyMap<SessionId, StoreKey>;

/// A map whose keys are already random (ids, SHA-256 store keys): hashing them again with SipHash
/// would cost more than the lookup.
pub(crate) type RandomKeyMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<RandomKeyHasher>>;

/// Takes eight bytes of a random key as its hash.
#[derive(Default)]
pub(crate) struct RandomKeyHasher(u64);

// Inlined: each look-up of the maps keyed by ids and store keys hashes with it.
impl std::hash::Hasher for RandomKeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        if let Some(word) = bytes.get(8..16) {
            self.0 = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        }
    }

    #[inline]
    fn write_usize(&mut self, _length_prefix: usize) {}

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

impl StoreKeyCache {
    const SHARD_CAPACITY: usize = 4096;

    pub(crate) fn new() -> Self {
        StoreKeyCache {
            shards: std::array::from_fn(|_| ShardLock::new(IdMap::default())),
        }
    }

    fn shard(&self, id: &SessionId) -> &ShardLock<IdMap> {
        &self.shards[usize::from(id.0[0]) % self.shards.len()]
    }

    /// The key, and whether it came from the cache (a fresh hash is not cached: see
    /// [`remember`](Self::remember)).
    // Inline: out of line, the pair came back through the stack in pieces and was read back
    // whole into the load's state, a copy the processor waits on (see BENCHMARKS.md).
    #[inline]
    pub(crate) fn key(&self, id: &SessionId) -> (StoreKey, bool) {
        // Measured faster than the shards alone by the clock, though not by instructions
        // (BENCHMARKS.md, twenty-first session): no lock, and a thread's own recent keys.
        if let Ok(Some(key)) = RECENT.try_with(|recent| recent.borrow().get(id).copied()) {
            return (key, true);
        }
        self.shared_key(id)
    }

    /// [`key`](Self::key) when this thread has not seen the id lately.
    fn shared_key(&self, id: &SessionId) -> (StoreKey, bool) {
        let cached = self.shard(id).lock().get(id).copied();
        match cached {
            Some(key) => {
                remember_recent(id, key);
                (key, true)
            }
            None => (id.store_key(), false),
        }
    }

    /// Caches the key of an id the store knows.
    pub(crate) fn remember(&self, id: &SessionId, key: StoreKey) {
        // The threads' recent keys serve every layer: an id's key must be the same for all.
        debug_assert!(key == id.store_key(), "a store key that is not the id's");
        {
            let mut shard = self.shard(id).lock();
            if shard.len() >= Self::SHARD_CAPACITY {
                shard.clear();
            }
            shard.insert(id.clone(), key);
        }
        remember_recent(id, key);
    }

    /// Forgets a deleted session's id: in the layer's shards and this thread's recent keys
    /// (another thread's may keep it until it empties them; that only saves a hash should the id
    /// come back, which finds no session either way).
    pub(crate) fn forget(&self, id: &SessionId) {
        self.shard(id).lock().remove(id);
        let _ = RECENT.try_with(|recent| recent.borrow_mut().remove(id));
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `bytes` in lower-case hex.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut hex = String::new();
    push_hex(&mut hex, bytes);
    hex
}

/// Appends `bytes` in lower-case hex to `text` (a key that embeds a store key, built in one buffer).
pub(crate) fn push_hex(text: &mut String, bytes: &[u8]) {
    text.reserve(bytes.len() * 2);
    for chunk in bytes.chunks(32) {
        let mut digits = [0u8; 64];
        for (pair, &byte) in digits.chunks_exact_mut(2).zip(chunk) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        text.push_str(std::str::from_utf8(&digits[..chunk.len() * 2]).expect("hex digits are ASCII"));
    }
}

/// The `N` bytes that `hex` (lower-case, exactly `2 * N` digits) writes.
pub(crate) fn from_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let hex = hex.as_bytes();
    if hex.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(bytes)
}

/// The SHA-256 of `text`, in hex: a name of bounded length, safe in file names and keys, for any
/// text (an owner's JSON).
#[cfg(any(feature = "redis", all(feature = "file", unix)))]
pub(crate) fn sha256_hex(text: &str) -> String {
    to_hex(&Sha256::digest(text.as_bytes()))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({})", &self.to_hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_cache_gives_the_hash_and_forgets() {
        let cache = StoreKeyCache::new();
        let id = SessionId::random();
        assert_eq!(cache.key(&id), (id.store_key(), false));
        cache.remember(&id, id.store_key());
        assert_eq!(cache.key(&id), (id.store_key(), true));
        cache.forget(&id);
        assert!(cache.shard(&id).lock().is_empty());
        assert!(
            RECENT.with_borrow(|recent| !recent.contains_key(&id)),
            "this thread kept a forgotten id"
        );
        assert_eq!(cache.key(&id), (id.store_key(), false));
        for _ in 0..(StoreKeyCache::SHARD_CAPACITY * 20) {
            let other = SessionId::random();
            cache.remember(&other, other.store_key());
        }
        assert!(cache
            .shards
            .iter()
            .all(|s| s.lock().len() <= StoreKeyCache::SHARD_CAPACITY));
        assert!(RECENT.with_borrow(|recent| recent.len() <= RECENT_CAPACITY));
    }

    #[test]
    fn ids_are_random_and_parse_back() {
        let a = SessionId::random();
        let b = SessionId::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), ID_LEN);
        assert_eq!(SessionId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn the_id_alphabet_test_agrees_with_the_plain_one_for_every_byte_in_every_place() {
        let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        let base = *SessionId::random().as_bytes();
        for at in 0..ID_LEN {
            for byte in 0..=255u8 {
                let mut text = base;
                text[at] = byte;
                assert_eq!(
                    SessionId::from_ascii(&text).is_some(),
                    plain(byte),
                    "byte {byte:#04x} at {at}"
                );
            }
        }
        // Neighbours of a high byte cannot be turned valid or invalid by its carries: a word of
        // high bytes and a word mixing them with valid ones are both rejected.
        for filler in [0x80u8, 0xff, 0xfe, 0x7f, 0x00] {
            let mut text = base;
            text[8..16].fill(filler);
            assert!(SessionId::from_ascii(&text).is_none(), "filler {filler:#04x}");
        }
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "short",
            "aaaaaaaaaaaaaaaaaaaaaaa!",
            &"a".repeat(25),
            "ééééééééééééé",
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn store_key_is_sha256_of_id_and_hex_round_trips() {
        let id = SessionId::parse("AAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        let key = id.store_key();
        assert_eq!(
            key.as_bytes(),
            &<[u8; 32]>::from(Sha256::digest(b"AAAAAAAAAAAAAAAAAAAAAAAA"))
        );
        assert_eq!(StoreKey::from_hex(&key.to_hex()), Some(key));
        assert_eq!(StoreKey::from_hex("zz"), None);
        assert_eq!(StoreKey::from_hex(&"G".repeat(64)), None);
    }

    /// Hex is written 32 bytes at a time: lengths around and past that agree with `{:02x}`.
    #[test]
    fn hex_of_any_length_matches_format() {
        let bytes: Vec<u8> = (0..=255u8).rev().chain(0..=255u8).collect();
        for len in [0, 1, 31, 32, 33, 64, 65, 512] {
            let expected: String = bytes[..len].iter().map(|byte| format!("{byte:02x}")).collect();
            let mut appended = String::from("prefix:");
            push_hex(&mut appended, &bytes[..len]);
            assert_eq!(to_hex(&bytes[..len]), expected, "{len} bytes");
            assert_eq!(appended, format!("prefix:{expected}"), "{len} bytes");
        }
    }
}
