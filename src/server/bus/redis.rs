//! Redis pub/sub bus. Each user has a channel (`charcha:user:<id>`); an
//! instance subscribes to it while it holds at least one of the user's
//! sessions, so a message crosses only to instances that need it.
//! Events for a user's watchers (presence, profile changes) go to
//! `<prefix>:watchers` as `<user id>\n<frame>`; every instance receives them
//! and the hub hands each only to its local sessions that watch that user.
//! One channel for all watch events, instead of one per watched user, keeps
//! SUBSCRIBE churn off connect and scroll (a client's watch set changes all
//! the time); the cost is one small message per presence change per
//! instance, which for a handful of instances is far cheaper. The prefix
//! (CHARCHA_REDIS_PREFIX, default `charcha`) lets deployments share a Redis.
//! The subscriber client re-subscribes by itself after a Redis restart.
//!
//! Publishing never waits on Redis: [`Bus::publish`] puts the event on a
//! bounded queue and returns; one publisher task sends what has queued up
//! as one pipeline (one round trip for many events, in queue order). While
//! Redis is unreachable, or when the queue is full, live events are
//! dropped (counted, warned about once per interval): acks do not depend
//! on the bus, and history has every message.
//!
//! This instance's own sessions get an event at once, from [`Bus::publish`]
//! itself, not after a round trip through Redis: on a loaded machine that
//! trip (our publisher, Redis, our subscriber, each waiting for a core) was
//! ~10 ms of every local delivery, and with one instance it was all of
//! them. Socket.IO's Redis adapter does the same. Every payload starts with
//! an envelope naming the instance that published it, `~<instance>\n`, and
//! an instance drops what comes back to it from its own publishes. So the
//! session a send came from (the `except` of [`Audience::Members`], always
//! one of the publisher's) is skipped right here, and a user's sessions
//! each get an event once, whichever instances hold them. Instances from
//! before this envelope (which carried `~<instance>:<session>`, or nothing)
//! and after it do not understand each other's events: upgrade them
//! together (live events between the two are dropped with a warning;
//! history has the messages).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashSet;
use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use super::{Audience, Bus, BusError};
use crate::server::{hub::Hub, metrics, outage::Outage, redis_conn::RedisClients};

/// Events waiting for the publisher task.
const PUBLISH_QUEUE: usize = 64 * 1024;
/// Most events one pipeline carries.
const PIPELINE_MAX: usize = 1024;
/// A pipeline that gets no answer within this is abandoned (its events are
/// dropped) so a stalled Redis cannot hold the queue forever.
const PIPELINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

static PUBLISH_OUTAGE: Outage = Outage::new("redis bus cannot publish; live events dropped (history has them)");

pub struct RedisBus {
    clients: RedisClients,
    /// This instance's sessions, which [`Bus::publish`] delivers to itself.
    hub: Arc<Hub>,
    names: Channels,
    outgoing: mpsc::Sender<(String, Bytes)>,
    /// Users this instance wants to hear about. Re-subscribed after every
    /// reconnect, including ones whose SUBSCRIBE failed while Redis was down.
    wanted: Arc<DashSet<String>>,
}

/// Channel names under the deployment's key prefix (CHARCHA_REDIS_PREFIX).
#[derive(Clone)]
struct Channels {
    user_prefix: String,
    watchers: String,
}

impl Channels {
    fn new(prefix: &str) -> Self {
        Self { user_prefix: format!("{prefix}:user:"), watchers: format!("{prefix}:watchers") }
    }

    fn user(&self, id: &str) -> String {
        format!("{}{id}", self.user_prefix)
    }
}

/// `body` behind the envelope naming the publishing instance; `user`, for
/// a watchers event, goes on a line of its own between the two.
fn enveloped(origin: u64, user: Option<&str>, body: &Bytes) -> Bytes {
    let head = format!("~{origin:016x}\n");
    let user_len = user.map_or(0, |u| u.len() + 1);
    let mut out = Vec::with_capacity(head.len() + user_len + body.len());
    out.extend_from_slice(head.as_bytes());
    if let Some(user) = user {
        out.extend_from_slice(user.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(body);
    out.into()
}

/// Splits a received payload into the instance that published it and the
/// rest; `None` when it has no envelope.
fn open_envelope(payload: Bytes) -> Option<(u64, Bytes)> {
    if payload.first() != Some(&b'~') {
        return None;
    }
    let newline = payload.iter().position(|b| *b == b'\n')?;
    let origin = std::str::from_utf8(&payload[1..newline]).ok()?;
    Some((u64::from_str_radix(origin, 16).ok()?, payload.slice(newline + 1..)))
}

/// Splits a watchers event into the watched user and the frame.
fn open_watchers_payload(payload: &Bytes) -> Option<(String, Bytes)> {
    let newline = payload.iter().position(|b| *b == b'\n')?;
    let user = std::str::from_utf8(&payload[..newline]).ok()?.to_string();
    Some((user, payload.slice(newline + 1..)))
}

/// Sends queued events, a pipeline at a time, until the queue closes or `shutdown`.
async fn publish_loop(
    commands: fred::clients::Client,
    mut queue: mpsc::Receiver<(String, Bytes)>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(PIPELINE_MAX);
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = queue.recv() => match e { Some(e) => e, None => return },
        };
        batch.push(first);
        while batch.len() < PIPELINE_MAX {
            match queue.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        if !commands.is_connected() {
            metrics::add(&metrics::METRICS.bus_dropped, batch.len() as u64);
            PUBLISH_OUTAGE.warn(&"redis is not connected");
            batch.clear();
            continue;
        }
        let pipeline = commands.pipeline();
        for (channel, frame) in batch.drain(..) {
            // Queued in the pipeline; the answers come with `try_all`.
            let _: Result<(), _> = pipeline.publish(channel, frame).await;
        }
        match tokio::time::timeout(PIPELINE_TIMEOUT, pipeline.try_all::<fred::types::Value>()).await {
            Ok(results) => {
                let failed = results.iter().filter(|r| r.is_err()).count();
                if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
                    metrics::add(&metrics::METRICS.bus_dropped, failed as u64);
                    PUBLISH_OUTAGE.warn(&e);
                }
            }
            Err(_) => PUBLISH_OUTAGE.warn(&"no answer from redis within 2 s"),
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
        let publisher_shutdown = shutdown.clone();
        let incoming = names.clone();
        let receiving_hub = hub.clone();
        tokio::spawn(async move {
            let hub = receiving_hub;
            loop {
                let msg = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    m = rx.recv() => m,
                };
                match msg {
                    Ok(message) => {
                        let payload = match message.value {
                            fred::types::Value::Bytes(b) => b,
                            fred::types::Value::String(s) => s.into_inner(),
                            _ => {
                                tracing::warn!("ignoring a non-bytes pub/sub message");
                                continue;
                            }
                        };
                        let Some((origin, body)) = open_envelope(payload) else {
                            tracing::warn!("ignoring a pub/sub message with a malformed envelope");
                            continue;
                        };
                        if origin == hub.instance_id() {
                            // Delivered here when it was published.
                            continue;
                        }
                        if *message.channel == *incoming.watchers {
                            match open_watchers_payload(&body) {
                                Some((user, frame)) => hub.deliver(&Audience::Watchers(user), frame),
                                None => tracing::warn!("ignoring a malformed watchers event"),
                            }
                            continue;
                        }
                        if let Some(user) = message.channel.strip_prefix(incoming.user_prefix.as_str()) {
                            hub.deliver(&Audience::User(user.to_string()), body)
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // Clients recover missed messages from history on
                        // their next fetch; say so loudly.
                        metrics::add(&metrics::METRICS.bus_dropped, n);
                        tracing::error!("redis bus lagged, {n} live events dropped");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let wanted: Arc<DashSet<String>> = Arc::new(DashSet::new());
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publish_loop(clients.commands.clone(), queue, publisher_shutdown));
        let mut reconnects = clients.subscriber.reconnect_rx();
        let (subscriber, wanted_again, again) = (clients.subscriber.clone(), wanted.clone(), names.clone());
        tokio::spawn(async move {
            while reconnects.recv().await.is_ok() {
                let mut channels: Vec<String> = wanted_again.iter().map(|u| again.user(&u)).collect();
                channels.push(again.watchers.clone());
                if let Err(e) = subscriber.subscribe(channels).await {
                    tracing::warn!("redis re-subscribe failed: {e}");
                }
            }
        });
        clients.subscriber.subscribe(names.watchers.clone()).await.map_err(unavailable)?;
        Ok(Self { clients, hub, names, outgoing, wanted })
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, audience: Audience, frame: Bytes) -> Result<(), BusError> {
        self.hub.deliver(&audience, frame.clone());
        let origin = self.hub.instance_id();
        let events: Vec<(String, Bytes)> = match audience {
            Audience::User(id) => vec![(self.names.user(&id), enveloped(origin, None, &frame))],
            Audience::Members { users, except: _ } => {
                // `except` is one of this instance's sessions, skipped above.
                let payload = enveloped(origin, None, &frame);
                users.iter().map(|u| (self.names.user(u), payload.clone())).collect()
            }
            Audience::Watchers(user) => vec![(self.names.watchers.clone(), enveloped(origin, Some(&user), &frame))],
        };
        for event in events {
            if self.outgoing.try_send(event).is_err() {
                metrics::inc(&metrics::METRICS.bus_dropped);
                PUBLISH_OUTAGE.warn(&"publish queue full");
            }
        }
        Ok(())
    }

    async fn subscribe(&self, user_id: &str) -> Result<(), BusError> {
        self.wanted.insert(user_id.to_string());
        self.clients.subscriber.subscribe(self.names.user(user_id)).await.map_err(unavailable)
    }

    async fn unsubscribe(&self, user_id: &str) -> Result<(), BusError> {
        self.wanted.remove(user_id);
        self.clients.subscriber.unsubscribe(self.names.user(user_id)).await.map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_names_the_publisher_and_a_bare_frame_is_refused() {
        let frame = Bytes::from_static(br#"{"type":"message"}"#);
        assert_eq!(open_envelope(enveloped(u64::MAX, None, &frame)), Some((u64::MAX, frame.clone())));
        assert_eq!(open_envelope(enveloped(7, None, &frame)), Some((7, frame.clone())));
        assert_eq!(open_envelope(frame), None);
        assert_eq!(open_envelope(Bytes::from_static(b"~zz\n{}")), None);
        assert_eq!(open_envelope(Bytes::from_static(b"~no newline")), None);
    }

    #[test]
    fn watchers_payload_round_trips() {
        let frame = Bytes::from_static(br#"{"type":"presence"}"#);
        let (origin, body) = open_envelope(enveloped(3, Some("u1"), &frame)).expect("envelope");
        assert_eq!(origin, 3);
        assert_eq!(open_watchers_payload(&body), Some(("u1".to_string(), frame)));
        assert_eq!(open_watchers_payload(&Bytes::from_static(b"no newline")), None);
    }
}
