//! Redis pub/sub bus. Each user has a channel (`charcha:user:<id>`); an
//! instance subscribes to it while it holds at least one of the user's
//! sessions, so a message crosses only to instances that need it.
//! Broadcasts (presence, contact changes) use `<prefix>:all`; the prefix
//! (CHARCHA_REDIS_PREFIX, default `charcha`) lets deployments share a Redis. Publishes
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


pub struct RedisBus {
    clients: RedisClients,
    names: Channels,
    /// Users this instance wants to hear about. Re-subscribed after every
    /// reconnect, including ones whose SUBSCRIBE failed while Redis was down.
    wanted: Arc<DashSet<String>>,
}

/// Channel names under the deployment's key prefix (CHARCHA_REDIS_PREFIX).
#[derive(Clone)]
struct Channels {
    user_prefix: String,
    everyone: String,
}

impl Channels {
    fn new(prefix: &str) -> Self {
        Self { user_prefix: format!("{prefix}:user:"), everyone: format!("{prefix}:all") }
    }

    fn of(&self, audience: &Audience) -> String {
        match audience {
            Audience::User(id) => format!("{}{id}", self.user_prefix),
            Audience::Everyone => self.everyone.clone(),
        }
    }
}

fn unavailable(e: fred::error::Error) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl RedisBus {
    /// Subscribes to the broadcast channel and starts the task that hands
    /// incoming messages to the hub (until `shutdown`).
    pub async fn start(
        clients: RedisClients,
        prefix: &str,
        hub: Arc<Hub>,
        shutdown: CancellationToken,
    ) -> Result<Self, BusError> {
        let names = Channels::new(prefix);
        let mut rx = clients.subscriber.message_rx();
        let incoming = names.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    m = rx.recv() => m,
                };
                match msg {
                    Ok(message) => {
                        let audience = match message.channel.strip_prefix(incoming.user_prefix.as_str()) {
                            Some(user) => Audience::User(user.to_string()),
                            None if *message.channel == *incoming.everyone => Audience::Everyone,
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
        let wanted: Arc<DashSet<String>> = Arc::new(DashSet::new());
        let mut reconnects = clients.subscriber.reconnect_rx();
        let (subscriber, wanted_again, again) = (clients.subscriber.clone(), wanted.clone(), names.clone());
        tokio::spawn(async move {
            while reconnects.recv().await.is_ok() {
                let mut channels: Vec<String> = wanted_again.iter().map(|u| again.of(&Audience::User(u.clone()))).collect();
                channels.push(again.everyone.clone());
                if let Err(e) = subscriber.subscribe(channels).await {
                    tracing::warn!("redis re-subscribe failed: {e}");
                }
            }
        });
        clients.subscriber.subscribe(names.everyone.clone()).await.map_err(unavailable)?;
        Ok(Self { clients, names, wanted })
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, audience: Audience, frame: Bytes) -> Result<(), BusError> {
        let _: i64 = self.clients.commands.publish(self.names.of(&audience), frame.to_vec()).await.map_err(unavailable)?;
        Ok(())
    }

    async fn subscribe(&self, user_id: &str) -> Result<(), BusError> {
        self.wanted.insert(user_id.to_string());
        self.clients.subscriber.subscribe(self.names.of(&Audience::User(user_id.to_string()))).await.map_err(unavailable)
    }

    async fn unsubscribe(&self, user_id: &str) -> Result<(), BusError> {
        self.wanted.remove(user_id);
        self.clients.subscriber.unsubscribe(self.names.of(&Audience::User(user_id.to_string()))).await.map_err(unavailable)
    }
}
