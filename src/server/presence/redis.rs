//! Presence across instances, in Redis.
//!
//! * `<prefix>:sessions:<user>` — sorted set of instance ids holding a
//!   session of the user, scored by an expiry time (ms).
//! * `<prefix>:online` — sorted set of online users, scored by the latest
//!   expiry of any of their entries.
//!
//! Every instance refreshes its entries every [`HEARTBEAT`]; entries live
//! [`TTL`]. A sweeper on every instance removes users whose entries all
//! expired (an instance killed with -9 stops refreshing) and announces
//! them offline; ZREM's return value makes exactly one instance the
//! announcer. Bound: a dead instance's users go offline within
//! TTL + SWEEP = 20 s + 5 s.

use std::{collections::HashSet, sync::Arc, time::Duration};

use async_trait::async_trait;
use dashmap::DashMap;
use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use super::{Presence, PresenceError};
use crate::{
    protocol::ServerEvent,
    server::{
        bus::{Audience, Bus},
        clock::now_ms,
        periodic,
        redis_conn::RedisClients,
    },
};

pub const TTL: Duration = Duration::from_secs(20);
pub const HEARTBEAT: Duration = Duration::from_secs(5);
pub const SWEEP: Duration = Duration::from_secs(5);

fn unavailable(e: fred::error::Error) -> PresenceError {
    PresenceError::Unavailable(e.to_string())
}

pub struct RedisPresence {
    redis: Client,
    /// `<prefix>:online`.
    online_key: String,
    /// `<prefix>:sessions:`.
    sessions_prefix: String,
    instance: String,
    /// Sessions of each user on this instance.
    local: Arc<DashMap<String, usize>>,
}

impl RedisPresence {
    /// Starts the heartbeat and sweeper tasks (until `shutdown`).
    pub fn start(clients: &RedisClients, prefix: &str, bus: Arc<dyn Bus>, shutdown: CancellationToken) -> Arc<Self> {
        let me = Arc::new(Self {
            redis: clients.commands.clone(),
            online_key: format!("{prefix}:online"),
            sessions_prefix: format!("{prefix}:sessions:"),
            instance: ulid::Ulid::new().to_string(),
            local: Arc::new(DashMap::new()),
        });
        let hb = me.clone();
        tokio::spawn(periodic::every(HEARTBEAT, shutdown.clone(), move || {
            let hb = hb.clone();
            async move { hb.heartbeat().await }
        }));
        let sweeper = me.clone();
        tokio::spawn(periodic::every(SWEEP, shutdown, move || {
            let (sweeper, bus) = (sweeper.clone(), bus.clone());
            async move { sweeper.sweep(bus.as_ref()).await }
        }));
        me
    }

    fn sessions_key(&self, user: &str) -> String {
        format!("{}{user}", self.sessions_prefix)
    }

    async fn mark(&self, user: &str) -> Result<bool, fred::error::Error> {
        let expiry = (now_ms() + TTL.as_millis() as i64) as f64;
        let _: i64 = self
            .redis
            .zadd(self.sessions_key(user), None, None, false, false, (expiry, self.instance.as_str()))
            .await?;
        let _: () = self.redis.pexpire(self.sessions_key(user), (TTL.as_millis() * 2) as i64, None).await?;
        // GT: never lower another instance's later expiry. Returns 1 when
        // the user was not online before.
        let added: i64 = self
            .redis
            .zadd(
                &self.online_key,
                None,
                Some(fred::types::sorted_sets::Ordering::GreaterThan),
                false,
                false,
                (expiry, user),
            )
            .await?;
        Ok(added == 1)
    }

    /// Refreshes every local user's entries, so they outlive [`TTL`].
    async fn heartbeat(&self) {
        let users: Vec<String> = self.local.iter().map(|e| e.key().clone()).collect();
        for user in users {
            if let Err(e) = self.mark(&user).await {
                tracing::warn!("presence heartbeat failed: {e}");
                return;
            }
        }
    }

    /// Drops users whose entries all expired and announces them offline.
    async fn sweep(&self, bus: &dyn Bus) {
        let now = now_ms() as f64;
        let expired: Vec<String> = match self.redis.zrangebyscore(&self.online_key, "-inf", now, false, None).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("presence sweep failed: {e}");
                return;
            }
        };
        for user in expired {
            match self.remove_if_gone(&user).await {
                Ok(true) => {
                    let event = ServerEvent::Presence { user_id: user.clone(), online: false };
                    if let Err(e) = bus.publish(Audience::Watchers(user.clone()), event.to_json().into()).await {
                        tracing::warn!("presence broadcast failed: {e}");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("presence sweep failed: {e}"),
            }
        }
    }

    /// Removes `user` from the online set when no live entry is left;
    /// true when this call removed them (the caller announces it).
    async fn remove_if_gone(&self, user: &str) -> Result<bool, fred::error::Error> {
        let now = now_ms() as f64;
        let _: i64 = self.redis.zremrangebyscore(self.sessions_key(user), "-inf", now).await?;
        let left: i64 = self.redis.zcard(self.sessions_key(user)).await?;
        if left > 0 {
            return Ok(false);
        }
        let removed: i64 = self.redis.zrem(&self.online_key, user).await?;
        Ok(removed == 1)
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn session_opened(&self, user_id: &str) -> Result<bool, PresenceError> {
        let first_here = {
            let mut n = self.local.entry(user_id.to_string()).or_insert(0);
            *n += 1;
            *n == 1
        };
        if !first_here {
            return Ok(false);
        }
        self.mark(user_id).await.map_err(unavailable)
    }

    async fn session_closed(&self, user_id: &str) -> Result<bool, PresenceError> {
        let last_here = match self.local.get_mut(user_id) {
            Some(mut n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => true,
            None => return Ok(false),
        };
        if !last_here {
            return Ok(false);
        }
        self.local.remove(user_id);
        let _: i64 = self.redis.zrem(self.sessions_key(user_id), self.instance.as_str()).await.map_err(unavailable)?;
        self.remove_if_gone(user_id).await.map_err(unavailable)
    }

    async fn online_among(&self, user_ids: &[String]) -> Result<HashSet<String>, PresenceError> {
        if user_ids.is_empty() {
            return Ok(HashSet::new());
        }
        // One ZMSCORE for the lot; online while the expiry is in the future.
        let now = now_ms() as f64;
        let expiries: Vec<Option<f64>> =
            self.redis.zmscore(&self.online_key, user_ids.to_vec()).await.map_err(unavailable)?;
        Ok(user_ids
            .iter()
            .zip(expiries)
            .filter(|(_, e)| e.is_some_and(|e| e > now))
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn is_online(&self, user_id: &str) -> Result<bool, PresenceError> {
        // Online while the entry's expiry is in the future (as online_among).
        let expiry: Option<f64> = self.redis.zscore(&self.online_key, user_id).await.map_err(unavailable)?;
        Ok(expiry.is_some_and(|e| e > now_ms() as f64))
    }
}
