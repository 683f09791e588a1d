//! Redis pub/sub bus. Each user has a channel (`charcha:user:<id>`); an
//! instance subscribes to it while it holds at least one of the user's
//! sessions, so a message crosses only to instances that need it.
//! Broadcasts (presence, contact changes) use `charcha:all`. Publishes
//! go through fred's auto-pipelined client; the subscriber client
//! re-subscribes by itself after a Redis restart.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashSet;
use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use super::{Audience, Bus, BusError};
use crate::server::{hub::Hub, redis_conn::RedisClients};

const USER_PREFIX: &str = "charcha:user:";
const EVERYONE: &str = "charcha:all";

pub struct RedisBus {
    clients: RedisClients,
    /// Users this instance wants to hear about. Re-subscribed after every
    /// reconnect, including ones whose SUBSCRIBE failed while Redis was down.
    wanted: Arc<DashSet<String>>,
}

fn channel(audience: &Audience) -> String {
    match audience {
        Audience::User(id) => format!("{USER_PREFIX}{id}"),
        Audience::Everyone => EVERYONE.to_string(),
    }
}

fn unavailable(e: fred::error::Error) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl RedisBus {
    /// Subscribes to the broadcast channel and starts the task that hands
    /// incoming messages to the hub (until `shutdown`).
    pub async fn start(clients: RedisClients, hub: Arc<Hub>, shutdown: CancellationToken) -> Result<Self, BusError> {
        let mut rx = clients.subscriber.message_rx();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    m = rx.recv() => m,
                };
                match msg {
                    Ok(message) => {
                        let audience = match message.channel.strip_prefix(USER_PREFIX) {
                            Some(user) => Audience::User(user.to_string()),
                            None if &*message.channel == EVERYONE => Audience::Everyone,
                            None => continue,
                        };
                        match message.value.as_bytes() {
                            Some(b) => hub.deliver(&audience, Bytes::copy_from_slice(b)),
                            None => tracing::warn!("ignoring a non-bytes pub/sub message"),
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // Clients recover missed messages from history on
                        // their next fetch; say so loudly.
                        tracing::error!("redis bus lagged, {n} live events dropped");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let wanted = Arc::new(DashSet::new());
        let mut reconnects = clients.subscriber.reconnect_rx();
        let (subscriber, wanted_again) = (clients.subscriber.clone(), wanted.clone());
        tokio::spawn(async move {
            while reconnects.recv().await.is_ok() {
                let mut channels: Vec<String> = wanted_again.iter().map(|u: dashmap::setref::multiple::RefMulti<'_, String>| channel(&Audience::User(u.clone()))).collect();
                channels.push(EVERYONE.to_string());
                if let Err(e) = subscriber.subscribe(channels).await {
                    tracing::warn!("redis re-subscribe failed: {e}");
                }
            }
        });
        clients.subscriber.subscribe(EVERYONE).await.map_err(unavailable)?;
        Ok(Self { clients, wanted })
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, audience: Audience, frame: Bytes) -> Result<(), BusError> {
        let _: i64 = self.clients.commands.publish(channel(&audience), frame.to_vec()).await.map_err(unavailable)?;
        Ok(())
    }

    async fn subscribe(&self, user_id: &str) -> Result<(), BusError> {
        self.wanted.insert(user_id.to_string());
        self.clients.subscriber.subscribe(channel(&Audience::User(user_id.to_string()))).await.map_err(unavailable)
    }

    async fn unsubscribe(&self, user_id: &str) -> Result<(), BusError> {
        self.wanted.remove(user_id);
        self.clients.subscriber.unsubscribe(channel(&Audience::User(user_id.to_string()))).await.map_err(unavailable)
    }
}
