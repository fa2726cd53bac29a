//! [`RedisStore`]'s index of sessions by owner: a sorted set of store keys per owner, which
//! holds at least every session of the owner and is checked against the sessions' hashes when
//! read (see "Sessions of an owner" in [`RedisStore`]'s docs).

use std::sync::LazyLock;

use futures_util::future::join_all;

use super::record::live_record;
use super::{read_record, Lua, RedisStore};
use crate::id::sha256_hex;
use crate::store::codec::now_millis;
use crate::store::{Record, StoreError, StoreKey};

/// A set is pruned of its stale members when a session added to it makes it this large, or any
/// larger power of two: the set of an owner who never lists their sessions stays bounded, and an
/// owner with many live sessions pays for a pruning pass once per doubling, not per login.
const PRUNE_AT: i64 = 64;

/// A member is removed as stale only if it was last added this long ago: a session added just
/// before its create or apply (which may not have run yet) is not mistaken for a gone one.
const GRACE_MILLIS: i64 = 60_000;

/// `index_owner`: adds `ARGV[1]` to the sorted set `KEYS[1]`, scored with Redis' time in ms
/// (replacing an older score), so that app servers whose clocks disagree agree on it; returns
/// the set's size. (`replicate_commands` lets a script write after reading the time on Redis
/// before 5; later versions always replicate so.)
static ADD_MEMBER: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
redis.replicate_commands()
local time = redis.call('TIME')
redis.call('ZADD', KEYS[1], time[1] * 1000 + math.floor(time[2] / 1000), ARGV[1])
return redis.call('ZCARD', KEYS[1])
",
    )
});

/// Removes the members `ARGV[2..]` of `KEYS[1]` that were last added more than `ARGV[1]` ms
/// ago by Redis' clock, in one step, so that a member added again meanwhile stays.
static PRUNE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"
redis.replicate_commands()
local time = redis.call('TIME')
local cutoff = time[1] * 1000 + math.floor(time[2] / 1000) - tonumber(ARGV[1])
for i = 2, #ARGV do
  local added = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if added and tonumber(added) < cutoff then
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 0
",
    )
});

impl RedisStore {
    /// The key of the set of `owner`'s sessions: under the prefix, named by a hash of the owner's
    /// JSON, so that any owner value makes a key of bounded length.
    fn owner_set(&self, owner: &str) -> String {
        format!("{}owner:{}", self.prefix, sha256_hex(owner))
    }

    /// Adds the session `key` to `owner`'s set; called before the write that gives it the owner.
    pub(super) async fn index_owner(&self, owner: &str, key: &StoreKey) -> Result<(), StoreError> {
        let set = self.owner_set(owner);
        let size: i64 = self
            .send(&super::Request::Script {
                script: &ADD_MEMBER,
                keys: &[&set],
                args: &[key.to_hex().into()],
            })
            .await?;
        if size >= PRUNE_AT && u64::try_from(size).is_ok_and(u64::is_power_of_two) {
            self.listed(owner).await?;
        }
        Ok(())
    }

    /// The live sessions of `owner`; the set's other members are removed from it.
    pub(super) async fn listed(&self, owner: &str) -> Result<Vec<(StoreKey, Record)>, StoreError> {
        let set = self.owner_set(owner);
        let mut members = redis::cmd("ZRANGE");
        members.arg(&set).arg(0).arg(-1);
        let members: Vec<String> = self.query(&members).await?;
        // One command per session (their keys are in other hash slots on a cluster), all sent
        // at once on the multiplexed connection.
        let reads = members.iter().map(|member| async move {
            let Some(key) = StoreKey::from_hex(member) else {
                return Ok(None);
            };
            let reply: redis::Value = self.query(&read_record(&self.redis_key(&key))).await?;
            Ok::<_, StoreError>(Some((key, reply)))
        });
        let now = now_millis();
        let mut listed = Vec::new();
        let mut stale = Vec::new();
        for (member, read) in members.iter().zip(join_all(reads).await) {
            let Some((key, reply)) = read? else {
                stale.push(member);
                continue;
            };
            match live_record(&reply, now) {
                Ok(Some(record)) if record.owner.as_deref() == Some(owner) => listed.push((key, record)),
                // Gone, expired, or given another owner since it was added.
                Ok(_) => stale.push(member),
                Err(error) => {
                    tracing::warn!(%error, "a session of an owner does not decode; not listed");
                }
            }
        }
        if !stale.is_empty() {
            let mut args = vec![GRACE_MILLIS.to_string().into()];
            args.extend(stale.into_iter().map(|member| member.as_str().into()));
            self.send::<i64>(&super::Request::Script {
                script: &PRUNE,
                keys: &[&set],
                args: &args,
            })
            .await?;
        }
        Ok(listed)
    }

    /// Deletes the live sessions of `owner` but `except`; returns how many.
    pub(super) async fn end_listed(&self, owner: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        let ending: Vec<StoreKey> = self
            .listed(owner)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| Some(key) != except)
            .collect();
        let deletes = ending.iter().map(|key| {
            let mut delete = redis::cmd("DEL");
            delete.arg(self.redis_key(key));
            async move { self.query::<i64>(&delete).await }
        });
        for deleted in join_all(deletes).await {
            deleted?;
        }
        if !ending.is_empty() {
            let mut prune = redis::cmd("ZREM");
            prune
                .arg(self.owner_set(owner))
                .arg(ending.iter().map(StoreKey::to_hex).collect::<Vec<_>>());
            self.query::<i64>(&prune).await?;
        }
        Ok(ending.len() as u64)
    }
}
