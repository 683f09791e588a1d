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
//! An event for a conversation's members that should skip its originating
//! session carries a small envelope, `~<instance>:<session>\n`, in front of
//! the JSON (JSON never starts with `~`).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashSet;
use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use super::{Audience, Bus, BusError, SessionRef};
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

/// `frame` with the envelope that tells receivers which session to skip.
fn enveloped(frame: &Bytes, except: SessionRef) -> Bytes {
    let head = format!("~{:016x}:{:016x}\n", except.instance, except.session);
    let mut out = Vec::with_capacity(head.len() + frame.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(frame);
    out.into()
}

/// Splits a received payload into the session to skip (if any) and the frame.
fn open_envelope(payload: Bytes) -> Option<(Option<SessionRef>, Bytes)> {
    if payload.first() != Some(&b'~') {
        return Some((None, payload));
    }
    let newline = payload.iter().position(|b| *b == b'\n')?;
    let head = std::str::from_utf8(&payload[1..newline]).ok()?;
    let (instance, session) = head.split_once(':')?;
    let except = SessionRef {
        instance: u64::from_str_radix(instance, 16).ok()?,
        session: u64::from_str_radix(session, 16).ok()?,
    };
    Some((Some(except), payload.slice(newline + 1..)))
}

/// A watchers event: the watched user's id, a newline, the frame.
fn watchers_payload(user_id: &str, frame: &Bytes) -> Bytes {
    let mut out = Vec::with_capacity(user_id.len() + 1 + frame.len());
    out.extend_from_slice(user_id.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(frame);
    out.into()
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
        tokio::spawn(async move {
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
                        if *message.channel == *incoming.watchers {
                            match open_watchers_payload(&payload) {
                                Some((user, frame)) => hub.deliver(&Audience::Watchers(user), frame),
                                None => tracing::warn!("ignoring a malformed watchers event"),
                            }
                            continue;
                        }
                        let Some((except, frame)) = open_envelope(payload) else {
                            tracing::warn!("ignoring a pub/sub message with a malformed envelope");
                            continue;
                        };
                        if let Some(user) = message.channel.strip_prefix(incoming.user_prefix.as_str()) {
                            let user = user.to_string();
                            hub.deliver(&Audience::Members { users: vec![user], except }, frame)
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
        Ok(Self { clients, names, outgoing, wanted })
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, audience: Audience, frame: Bytes) -> Result<(), BusError> {
        let events: Vec<(String, Bytes)> = match audience {
            Audience::User(id) => vec![(self.names.user(&id), frame)],
            Audience::Members { users, except } => {
                let payload = match except {
                    Some(except) => enveloped(&frame, except),
                    None => frame,
                };
                users.iter().map(|u| (self.names.user(u), payload.clone())).collect()
            }
            Audience::Watchers(user) => vec![(self.names.watchers.clone(), watchers_payload(&user, &frame))],
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
    fn envelope_round_trips_and_plain_frames_pass() {
        let except = SessionRef { instance: u64::MAX, session: 42 };
        let frame = Bytes::from_static(br#"{"type":"message"}"#);
        assert_eq!(open_envelope(enveloped(&frame, except)), Some((Some(except), frame.clone())));
        assert_eq!(open_envelope(frame.clone()), Some((None, frame)));
        assert_eq!(open_envelope(Bytes::from_static(b"~zz\n{}")), None);
        assert_eq!(open_envelope(Bytes::from_static(b"~no newline")), None);
    }

    #[test]
    fn watchers_payload_round_trips() {
        let frame = Bytes::from_static(br#"{"type":"presence"}"#);
        assert_eq!(open_watchers_payload(&watchers_payload("u1", &frame)), Some(("u1".to_string(), frame)));
        assert_eq!(open_watchers_payload(&Bytes::from_static(b"no newline")), None);
    }
}
