//! After the handler: what the request's changes take ([`plan`]), and doing it ([`save`]) —
//! the store writes, then the `Set-Cookie` to send.
//!
//! Why this file is long: the plan's kinds (create, apply, move, end), their writes, the fenced
//! writes under a lock and the cookie each leads to are one decision, read together.

use std::time::{Duration, SystemTime};

use http::{HeaderValue, StatusCode};

use crate::clock::Clock;
use crate::config::Config;
#[cfg(feature = "client-side")]
use crate::config::Storage;
use crate::cookie::encode_value;
#[cfg(feature = "client-side")]
use crate::cookie::{seal, EncryptionKey};
use crate::expiry::{ExpiryRules, Renewed};
use crate::id::{SessionId, StoreKey};
use crate::lock::HeldLock;
use crate::record::{Changes, Patch, Record, Revision};
use crate::state::State;
use crate::store::{Applied, Created, LockToken, LockedApply, StoreError};

/// How many random ids `create` tries before giving up. With 144-bit ids a single collision is
/// already a sign of a broken store or random source.
const CREATE_ATTEMPTS: usize = 4;

/// The store writes and cookie that end a request.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The request's time: the store calls are made at it.
    now: SystemTime,
    write: Option<Write>,
    /// Deleted after the write succeeded.
    delete: Option<SessionId>,
    cookie: CookiePlan,
    /// The record as loaded, for a save that rewrites all of it (client-side sessions); `None`
    /// for a store, which merges the changes into what it has.
    #[cfg(feature = "client-side")]
    base: Option<Box<Record>>,
    /// The session's lock, when a `LockedSession` holds it: the writes happen only if it is
    /// still held.
    fence: Option<Box<HeldLock>>,
    /// The bytes of values and flash the session would hold once `write` is made, as this
    /// request sees it, when that grows it past the layer's limit (else 0): then nothing is
    /// written.
    size: usize,
}

#[derive(Debug)]
enum Write {
    /// A new session's first record, under a random id.
    Create { record: Record },
    /// A stored session's changes, merged into its record under `key`; `id` names it in the cookie.
    Apply {
        key: StoreKey,
        changes: Changes,
        id: SessionId,
    },
    /// `regenerate_id`: the stored record, if it still exists, with `changes` applied, under `to`.
    Move {
        from: StoreKey,
        to: SessionId,
        changes: Changes,
    },
}

/// An apply the store fences with the lock `token` holds.
struct FencedApply<'a> {
    token: &'a LockToken,
    key: &'a StoreKey,
    changes: &'a Changes,
    id: &'a SessionId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CookiePlan {
    Keep,
    Set { max_age: Option<Duration> },
    Remove,
}

impl Plan {
    /// The session's lock the plan's writes are fenced by, if the request holds it.
    pub(crate) fn fence(&self) -> Option<&HeldLock> {
        self.fence.as_deref()
    }

    /// The plan's one write, when it is an apply and the session's lock is held in the store,
    /// which then fences the apply itself and releases the lock with it (`apply_locked`).
    fn fenced_by_store(&self) -> Option<FencedApply<'_>> {
        match (&self.write, &self.delete) {
            (Some(Write::Apply { key, changes, id }), None) => Some(FencedApply {
                token: self.fence()?.fence_in_store()?,
                key,
                changes,
                id,
            }),
            _ => None,
        }
    }

    /// Whether the plan writes, deletes or sends anything.
    pub(crate) fn does_something(&self) -> bool {
        self.write.is_some() || self.delete.is_some() || self.cookie != CookiePlan::Keep
    }

    /// A plan with no write: `delete`, if any, is deleted, and then `cookie` sent.
    fn without_write(state: &mut State, delete: Option<SessionId>, cookie: CookiePlan) -> Self {
        let fence = let_go(state, delete.is_some() || cookie != CookiePlan::Keep);
        Plan {
            now: state.now,
            write: None,
            delete,
            cookie,
            #[cfg(feature = "client-side")]
            base: None,
            fence,
            size: 0,
        }
    }

    /// A session that ends without a successor: its record is deleted if it had one, and then
    /// its cookie goes too. Without a record to delete the cookie stays, unless `stale_cookie`:
    /// the request's cookie names a session that is no longer live.
    fn ending(state: &mut State, delete: Option<SessionId>, stale_cookie: bool) -> Self {
        let cookie = if delete.is_some() || stale_cookie {
            CookiePlan::Remove
        } else {
            CookiePlan::Keep
        };
        Plan::without_write(state, delete, cookie)
    }
}

/// What saving the request's session takes; nothing ([`Plan::does_something`] is false) when
/// there is nothing to write and no cookie to send, as for most requests (read, unchanged, not
/// due for a touch). Called once, after the handler: moves this request's changes out of
/// `state`, and lets go of the loaded record, so that a store holding it in memory merges the
/// changes in place instead of copying it.
///
/// The session's lock, if the request holds it, goes into the plan, whose writes are made only
/// while it is still held; with nothing to save it is released here.
///
/// A plan is built once, where it is returned, never wrapped nor changed after (but for
/// client-side sessions, whose `plan_rewrite` adds the loaded record): it is one of the largest
/// values of a request, and each move of it is a copy. So each kind of plan below works out its
/// size check and takes the lock itself, before it is built.
pub(crate) fn plan(state: &mut State, rules: &ExpiryRules, max_size: usize, clock: &dyn Clock) -> Plan {
    let delete = state.delete_id.take();
    if state.destroyed {
        return Plan::ending(state, delete, false);
    }
    let (Some(loaded), Some(key)) = (&state.loaded_id, state.loaded_key) else {
        return create_plan(state, rules, delete, max_size, clock);
    };
    if state.new_id.is_some() {
        return move_plan(state, rules, key, delete, max_size);
    }
    let (expires_at, cookie) = renewal(state, rules);
    let flash = state.flash_patch();
    if state.pending.is_empty()
        && flash.is_empty()
        && expires_at.is_none()
        && state.pending_expiry.is_none()
        && state.pending_owner.is_none()
    {
        // Read, not changed, not due for a touch: no change set to build.
        return Plan::without_write(state, delete, CookiePlan::Keep);
    }
    let id = loaded.clone();
    let size = grown_past(state.stored.as_ref(), &state.pending, &flash, max_size);
    // Kept for the store only if it noted where the record came from (see `Revision`): a store
    // that shares the record's buffers (`MemoryStore`) would otherwise copy them to write.
    let base = if state.stored.as_ref().is_some_and(|record| !record.revision.is_empty()) {
        keep_base(state)
    } else {
        None
    };
    let fence = let_go(state, true);
    Plan {
        now: state.now,
        write: Some(Write::Apply {
            key,
            changes: Changes {
                values: std::mem::take(&mut state.pending),
                flash,
                expires_at,
                expiry: state.pending_expiry,
                owner: state.pending_owner.take(),
                base,
            },
            id,
        }),
        delete,
        cookie,
        #[cfg(feature = "client-side")]
        base: None,
        fence,
        size,
    }
}

/// [`plan`] for a save that rewrites the whole session (client-side sessions): the plan keeps
/// the record as loaded, which the changes are merged into.
#[cfg(feature = "client-side")]
pub(crate) fn plan_rewrite(state: &mut State, rules: &ExpiryRules, max_size: usize, clock: &dyn Clock) -> Plan {
    let base = state.stored.clone();
    let mut plan = plan(state, rules, max_size, clock);
    if plan.does_something() {
        plan.base = base.map(Box::new);
    }
    plan
}

/// The loaded record, taken for the store's write (see `Revision`); apart, as only some stores'
/// requests ever take this way.
#[cold]
#[inline(never)]
fn keep_base(state: &mut State) -> Option<Box<Record>> {
    state.stored.take().map(Box::new)
}

/// Lets go of the loaded record — before the store works, so that a store holding the same
/// values can change them in place rather than copy them — and hands over the session's lock
/// for the plan's writes to be fenced by, if it `writes`; else the lock is released here.
fn let_go(state: &mut State, writes: bool) -> Option<Box<HeldLock>> {
    state.stored = None;
    state.held_lock.take().filter(|_| writes)
}

/// The renewal of a stored session saved at the request's time: its new expiry time, if it is
/// to be rewritten, and the cookie to send. A changed expiry, or a cookie signed by a retired
/// key, renews at once.
fn renewal(state: &State, rules: &ExpiryRules) -> (Option<SystemTime>, CookiePlan) {
    let forced = state.pending_expiry.is_some() || state.resign_cookie;
    let stored_expires_at = state.stored_expires_at.unwrap_or(state.created_at);
    let expiry = rules.effective(state.expiry_override());
    match rules.due_renewal(expiry, state.created_at, stored_expires_at, forced, state.now) {
        None => (None, CookiePlan::Keep),
        Some(Renewed { expires_at, max_age }) => {
            let cookie = match max_age {
                Some(max_age) => CookiePlan::Set { max_age: Some(max_age) },
                // A browser-session cookie replaces a persistent one ("forget me"), and a cookie
                // signed by a retired key is re-signed.
                None if forced => CookiePlan::Set { max_age: None },
                None => CookiePlan::Keep,
            };
            (Some(expires_at), cookie)
        }
    }
}

// The rarer plans are kept out of line: the common one (a loaded session merging its changes)
// then runs through less code.

/// Not stored yet (a new visitor, or after `invalidate`): nothing came in, so the record is this
/// request's values and flash. Stored only if it holds something.
///
/// The session starts at [`Clock::session_start`]: the request's time, unless the clock reads
/// that coarsely (see there).
#[cold]
#[inline(never)]
fn create_plan(
    state: &mut State,
    rules: &ExpiryRules,
    delete: Option<SessionId>,
    max_size: usize,
    clock: &dyn Clock,
) -> Plan {
    let values = state.current_values();
    let flash = state.take_outgoing_flash();
    if values.is_empty() && flash.is_empty() {
        // A cookie of a session that ended (on another device, say) goes on its next request.
        let stale_cookie = state.stale_cookie;
        return Plan::ending(state, delete, stale_cookie);
    }
    state.created_at = clock.session_start(state.now);
    let renewed = rules.renewed(rules.effective(state.expiry_override()), state.created_at, state.now);
    let record = Record {
        values,
        flash,
        created_at: state.created_at,
        expires_at: renewed.expires_at,
        expiry: state.expiry_override(),
        owner: state.pending_owner.take().flatten(),
        revision: Revision::default(),
    };
    let size = record.byte_size();
    let fence = let_go(state, true);
    Plan {
        now: state.now,
        write: Some(Write::Create { record }),
        delete,
        cookie: CookiePlan::Set {
            max_age: renewed.max_age,
        },
        #[cfg(feature = "client-side")]
        base: None,
        fence,
        size: if size > max_size { size } else { 0 },
    }
}

/// `regenerate_id`: the record moves to the new id with this request's changes applied on top
/// of what is stored then, so a concurrent write is kept and a concurrent logout is not undone.
#[cold]
#[inline(never)]
fn move_plan(
    state: &mut State,
    rules: &ExpiryRules,
    from: StoreKey,
    delete: Option<SessionId>,
    max_size: usize,
) -> Plan {
    let renewed = rules.renewed(rules.effective(state.expiry_override()), state.created_at, state.now);
    let to = state.new_id.clone().expect("a move has a new id");
    let flash = state.flash_patch();
    let size = grown_past(state.stored.as_ref(), &state.pending, &flash, max_size);
    let fence = let_go(state, true);
    Plan {
        now: state.now,
        write: Some(Write::Move {
            from,
            to,
            changes: Changes {
                values: std::mem::take(&mut state.pending),
                flash,
                expires_at: Some(renewed.expires_at),
                expiry: state.pending_expiry,
                owner: state.pending_owner.take(),
                base: None,
            },
        }),
        delete,
        cookie: CookiePlan::Set {
            max_age: renewed.max_age,
        },
        #[cfg(feature = "client-side")]
        base: None,
        fence,
        size,
    }
}

/// The bytes of values and flash the session holds once `values` and `flash` (a change set's)
/// are merged into `loaded` (the record as this request loaded it), when that is over `limit`
/// and more than it held when loaded; else 0. Only growth is refused: a session already over
/// the limit (stored before a lower limit, or grown by two requests that each stayed under it)
/// can still be renewed, shrunk or emptied of its flash.
fn grown_past(loaded: Option<&Record>, values: &Patch, flash: &Patch, limit: usize) -> usize {
    let before = loaded.map_or(0, Record::byte_size);
    // Most writes stay under the limit even counting every value they set as new: no need to
    // look up what each replaces.
    let added = values.added_size() + flash.added_size();
    if before + added <= limit {
        return 0;
    }
    let size = loaded.map_or(added, |loaded| loaded.byte_size_with(values, flash));
    if size > limit && size > before {
        size
    } else {
        0
    }
}

/// Does what `plan` says; returns the `Set-Cookie` to send, if any, or why the save failed.
pub(crate) async fn save(config: &Config, plan: &Plan) -> Result<Option<HeaderValue>, SaveError> {
    if plan.size > config.max_session_size {
        return Err(too_large(plan.size, config.max_session_size));
    }
    #[cfg(feature = "client-side")]
    if let Storage::Cookie(keys) = &config.storage {
        return seal_session(config, keys, plan);
    }
    if let Some(lock) = &plan.fence {
        if let Some(apply) = plan.fenced_by_store() {
            // Boxed, as the renewal below: only a locking request pays for these futures.
            return Box::pin(apply_locked(config, plan, lock, apply)).await;
        }
        // Past its lease the lock may have passed to another request, whose writes must stand.
        if plan.write.is_some() || plan.delete.is_some() {
            let still_held = match lock.begin_write() {
                Some(held) => held,
                None => Box::pin(lock.renew_in_store()).await?,
            };
            if !still_held {
                return Err(SaveError::LockLost);
            }
        }
    }
    let mut cookie = plan.cookie;
    let mut cookie_id = None;
    match &plan.write {
        None => {}
        // Boxed: the rare writes take the most room, and the save's future (polled on the stack
        // for a store that never waits) stays small.
        Some(Write::Create { record }) => {
            cookie_id = Some(Box::pin(create(config, SessionId::random(), record, plan.now)).await?);
        }
        Some(Write::Move { from, to, changes }) => {
            let retire_old = plan.delete.is_some();
            cookie_id = Box::pin(relocate(config, from, to, changes, retire_old, plan.now)).await?;
            if cookie_id.is_none() {
                tracing::debug!("the session ended while the request ran; its new id was dropped");
                cookie = CookiePlan::Keep;
            }
        }
        Some(Write::Apply { key, changes, id }) => {
            let applied = config.apply(key, changes, plan.now).await?;
            (cookie, cookie_id) = after_apply(applied, cookie, id);
        }
    }
    if let Some(old) = &plan.delete {
        config.key_cache.forget(old);
        let key = old.store_key();
        config.delete(&key, plan.now).await?;
    }
    Ok(cookie_header(config, cookie, cookie_id))
}

/// The save of a locked session whose one write is an apply, when the store keeps the lock:
/// the store writes the changes only while the request's token holds the lock, and releases it
/// in the same step.
async fn apply_locked(
    config: &Config,
    plan: &Plan,
    lock: &HeldLock,
    apply: FencedApply<'_>,
) -> Result<Option<HeaderValue>, SaveError> {
    let FencedApply {
        token,
        key,
        changes,
        id,
    } = apply;
    let applied = config
        .timed(config.storage.store().apply_locked(key, token, changes), plan.now)
        .await?;
    lock.released_by_store();
    let applied = match applied {
        LockedApply::Applied => Applied::Applied,
        LockedApply::Missing => Applied::Missing,
        LockedApply::LockLost => return Err(SaveError::LockLost),
    };
    let (cookie, cookie_id) = after_apply(applied, plan.cookie, id);
    Ok(cookie_header(config, cookie, cookie_id))
}

/// `regenerate_id`'s write: the record under `from` as stored now, with `changes` applied,
/// created under `to`; `None` if the session ended meanwhile.
async fn relocate(
    config: &Config,
    from: &StoreKey,
    to: &SessionId,
    changes: &Changes,
    retire_old: bool,
    now: SystemTime,
) -> Result<Option<SessionId>, StoreError> {
    let Some(mut record) = config.load_record(from, now).await? else {
        return Ok(None);
    };
    record.apply(changes);
    let moved = create(config, to.clone(), &record, now).await?;
    // The session may have been ended since it was read (a logout in another request): the move
    // must not bring it back. Asked after the create, so that no end can slip in between: with
    // `regenerate_id(true)` the old record expires in the same step (and is deleted after), so
    // an end that comes later finds nothing to end; with `false` it is only asked about.
    let still_live = Changes {
        expires_at: retire_old.then_some(now),
        ..Changes::default()
    };
    match config.apply(from, &still_live, now).await? {
        Applied::Applied => Ok(Some(moved)),
        Applied::Missing => {
            config.key_cache.forget(&moved);
            config.delete(&moved.store_key(), now).await?;
            Ok(None)
        }
    }
}

/// Stores `record` under `candidate` (`regenerate_id`'s new id, or a random one), retrying with
/// random ids on collision; returns the id it was stored under.
async fn create(
    config: &Config,
    mut candidate: SessionId,
    record: &Record,
    now: SystemTime,
) -> Result<SessionId, StoreError> {
    for _ in 0..CREATE_ATTEMPTS {
        let key = candidate.store_key();
        match config.create(&key, record, now).await? {
            Created::Created => {
                config.key_cache.remember(&candidate, key);
                return Ok(candidate);
            }
            Created::Collision => {
                tracing::warn!("session id collision; retrying with a new id");
                candidate = SessionId::random();
            }
        }
    }
    Err(StoreError::backend(format!(
        "{CREATE_ATTEMPTS} fresh session ids in a row collided"
    )))
}

/// The cookie to send, and the id it names, after `apply` to the session `id` answered `applied`.
// Inlined: its pair, returned through the stack, was read back whole right after it was written.
#[inline]
fn after_apply(applied: Applied, cookie: CookiePlan, id: &SessionId) -> (CookiePlan, Option<SessionId>) {
    match applied {
        // The id is copied only when a cookie is sent: once per touch window, not per request.
        Applied::Applied if cookie == CookiePlan::Keep => (cookie, None),
        Applied::Applied => (cookie, Some(id.clone())),
        Applied::Missing => ended_meanwhile(),
    }
}

/// Destroyed (or expired) while this request ran: its changes must not bring it back. No cookie
/// either: removing `id` could remove a newer session's cookie (logged in again in another tab),
/// and a stale id is never adopted anyway.
#[cold]
#[inline(never)]
fn ended_meanwhile() -> (CookiePlan, Option<SessionId>) {
    tracing::debug!("the session ended while the request ran; its changes were dropped");
    (CookiePlan::Keep, None)
}

/// The save of a client-side session: the whole session after this request's changes, sealed
/// into the cookie. Every such save sends the cookie again, so it also renews the idle window.
#[cfg(feature = "client-side")]
fn seal_session(config: &Config, keys: &[EncryptionKey], plan: &Plan) -> Result<Option<HeaderValue>, SaveError> {
    let (id, mut record) = match &plan.write {
        None if plan.cookie == CookiePlan::Remove => return Ok(config.cookie.removal_cookie()),
        None => return Ok(None),
        Some(Write::Create { record }) => (SessionId::random(), record.clone()),
        Some(Write::Apply { changes, id, .. }) => (id.clone(), plan.base_with(changes)?),
        Some(Write::Move { to, changes, .. }) => (to.clone(), plan.base_with(changes)?),
    };
    let renewed = config
        .expiry
        .renewed(config.expiry.effective(record.expiry), record.created_at, plan.now);
    record.expires_at = renewed.expires_at;
    let value = seal(keys, &config.cookie.name, &id, &record).ok_or(SaveError::Unsealable)?;
    let Some(header) = config.cookie.set_cookie(value, renewed.max_age) else {
        return Err(SaveError::Unsealable);
    };
    let limit = config.cookie.max_size;
    if header.len() > limit {
        return Err(SaveError::CookieTooLarge {
            size: header.len(),
            limit,
        });
    }
    Ok(Some(header))
}

#[cfg(feature = "client-side")]
impl Plan {
    /// The loaded record with `changes` merged in, as a store would merge them.
    fn base_with(&self, changes: &Changes) -> Result<Record, SaveError> {
        // A plan that applies changes is made from a loaded record, which `plan_rewrite` keeps.
        // Without it the unchanged values would be lost: fail the request instead.
        debug_assert!(self.base.is_some(), "a client-side plan keeps the loaded record");
        let mut record = self.base.as_deref().cloned().ok_or(SaveError::Unsealable)?;
        record.apply(changes);
        Ok(record)
    }
}

#[cold]
#[inline(never)]
fn too_large(size: usize, limit: usize) -> SaveError {
    SaveError::SessionTooLarge { size, limit }
}

/// Why a session could not be saved; the layer answers with [`status`](Self::status) instead of
/// the handler's response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SaveError {
    /// The store failed or did not answer in time.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This request held the session's lock past its lease, and another request may have taken
    /// it: its writes were not made.
    #[error(
        "the session's lock was held past its lease (`SessionLayer::with_lock_lease`) and may \
         belong to another request now; this request's changes were not saved"
    )]
    LockLost,
    /// The session would hold more than the layer's limit: nothing was written.
    #[error(
        "the session would hold {size} bytes of values and flash, over the limit of {limit}: keep \
         less in the session (or raise `SessionLayer::with_max_session_size`); nothing was saved"
    )]
    SessionTooLarge { size: usize, limit: usize },
    /// A client-side session too large for a cookie: sending it, the browser would drop it.
    #[cfg(feature = "client-side")]
    #[error(
        "the client-side session cookie would be {size} bytes, over the limit of {limit}: keep less \
         in the session (or raise `SessionLayer::with_max_cookie_size` if every browser and proxy \
         of the app accepts it); the browser keeps its previous cookie"
    )]
    CookieTooLarge { size: usize, limit: usize },
    /// A client-side session that could not be sealed into a cookie header.
    #[cfg(feature = "client-side")]
    #[error("the client-side session could not be sealed into a cookie")]
    Unsealable,
}

impl SaveError {
    /// The status answered instead of the handler's response: a store that is down is a 503
    /// (try again later), a session that cannot be sent is the app's error, a 500.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            SaveError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            SaveError::LockLost => StatusCode::CONFLICT,
            SaveError::SessionTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            #[cfg(feature = "client-side")]
            SaveError::CookieTooLarge { .. } | SaveError::Unsealable => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

// Inlined, the header built apart: most saves send none, and their `None` is then not returned
// through the stack to be read back whole (which made the processor wait).
#[inline]
fn cookie_header(config: &Config, cookie: CookiePlan, id: Option<SessionId>) -> Option<HeaderValue> {
    match (cookie, id) {
        (CookiePlan::Set { max_age }, Some(id)) => set_cookie_header(config, &id, max_age),
        (CookiePlan::Remove, _) => config.cookie.removal_cookie(),
        _ => None,
    }
}

#[inline(never)]
fn set_cookie_header(config: &Config, id: &SessionId, max_age: Option<Duration>) -> Option<HeaderValue> {
    let value = encode_value(id, &config.cookie.name, &config.signing_keys);
    config.cookie.set_cookie(value, max_age)
}

#[cfg(test)]
mod properties {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::{Duration, SystemTime};

    use proptest::prelude::*;

    use super::*;

    /// What a handler does with flash.
    #[derive(Clone, Debug)]
    enum Op {
        Flash(&'static str, u8),
        FlashNow(&'static str, u8),
        Keep(&'static str),
        Reflash,
        Clear,
        Read(&'static str),
    }

    fn op() -> impl Strategy<Value = Op> {
        let name = prop::sample::select(vec!["notice", "alert", "error"]);
        prop_oneof![
            (name.clone(), any::<u8>()).prop_map(|(n, v)| Op::Flash(n, v)),
            (name.clone(), any::<u8>()).prop_map(|(n, v)| Op::FlashNow(n, v)),
            name.clone().prop_map(Op::Keep),
            Just(Op::Reflash),
            Just(Op::Clear),
            name.prop_map(Op::Read),
        ]
    }

    proptest! {
        /// Over any sequence of requests, each request sees the flash the one before it set (or
        /// carried), `flash_now` only in itself, and what reaches the store after it is what a
        /// plain model of the rules says: incoming flash goes unless kept or reflashed, `clear`
        /// drops all of it, new flash replaces old under the same name.
        #[test]
        fn flash_ages_as_the_model_says(requests in prop::collection::vec(prop::collection::vec(op(), 0..6), 1..8)) {
            let rules = ExpiryRules::default();
            let now = SystemTime::now();
            let id = SessionId::random();
            let key = id.store_key();
            let mut record = Record::new(now, now + Duration::from_secs(3600));
            record.values.insert("user", "1");
            let mut model = BTreeMap::<&str, String>::new();
            for ops in requests {
                let mut state = State::loaded(id.clone(), key, record.clone(), false, None, now);
                let (mut outgoing, mut shown_now) = (BTreeMap::new(), BTreeMap::new());
                let (mut kept, mut reflash, mut cleared) = (BTreeSet::new(), false, false);
                for op in ops {
                    match op {
                        Op::Flash(name, v) => {
                            state.flash(name, v.to_string());
                            outgoing.insert(name, v.to_string());
                        }
                        Op::FlashNow(name, v) => {
                            state.flash_now_insert(name, v.to_string());
                            shown_now.insert(name, v.to_string());
                        }
                        Op::Keep(name) => {
                            state.keep_flash(name);
                            kept.insert(name);
                        }
                        Op::Reflash => {
                            state.reflash();
                            reflash = true;
                        }
                        Op::Clear => {
                            state.clear();
                            (outgoing, shown_now, kept, reflash, cleared) =
                                (BTreeMap::new(), BTreeMap::new(), BTreeSet::new(), false, true);
                        }
                        Op::Read(name) => {
                            let seen = state.flash_now().get(name).or_else(|| state.incoming_flash().get(name));
                            let expected = shown_now.get(name).or(if cleared { None } else { model.get(name) });
                            prop_assert_eq!(seen, expected.map(String::as_str), "read {}", name);
                        }
                    }
                }
                if cleared {
                    model.clear();
                } else if !reflash {
                    model.retain(|name, _| kept.contains(name));
                }
                model.extend(outgoing);
                let planned = plan(&mut state, &rules, usize::MAX, &crate::clock::SystemClock);
                match planned {
                    _ if !planned.does_something() => {}
                    Plan { write: Some(Write::Apply { changes, .. }), delete: None, .. } => record.apply(&changes),
                    other => prop_assert!(false, "a loaded session planned {:?}", other),
                }
                let stored: BTreeMap<&str, String> = record.flash.iter().map(|(n, v)| (n, v.to_owned())).collect();
                let expected: BTreeMap<&str, String> = model.iter().map(|(n, v)| (*n, v.clone())).collect();
                prop_assert_eq!(stored, expected);
                if cleared {
                    prop_assert!(record.values.is_empty(), "clear keeps no values");
                }
            }
        }
    }
}
