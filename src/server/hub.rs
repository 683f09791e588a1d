//! Local sessions: the WebSocket connections this instance holds, by user.
//!
//! The hub is the bus's sink: whatever driver carries an event here hands it
//! over serialised once; the hub validates it once and clones the
//! reference-counted buffer into each session's bounded queue. A session
//! whose queue is full is too slow to keep up: it is kicked (its gateway
//! task closes the socket) rather than letting memory grow.
//!
//! It also knows which local sessions watch which users (the people a
//! client shows), so presence and profile changes reach only those
//! ([`Audience::Watchers`]).
//!
//! The hub also orders each user's session openings and closings
//! ([`Hub::serialize_user`]): the bus subscription and presence that follow
//! a first or last session are network calls, and without an order a last
//! tab closing while a new one opens could unsubscribe (or mark offline) a
//! user who is connected.

use std::{
    collections::HashSet,
    hash::{BuildHasher, RandomState},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::{Mutex, MutexGuard, Notify, mpsc};

use super::bus::{Audience, SessionRef};

/// The sending half of one session, as the hub holds it.
struct SessionSlot {
    id: u64,
    queue: mpsc::Sender<Utf8Bytes>,
    kick: Arc<Notify>,
    /// The `jti` of the token the session authenticated with.
    token_id: String,
    ended: Arc<Notify>,
}

/// The internal bus event that ends every session opened with one token
/// (a logout): `{"type":"session_ended","jti":"…"}`. The hub acts on it and
/// never queues it for a client.
pub fn session_ended_frame(token_id: &str) -> Bytes {
    serde_json::json!({ "type": "session_ended", "jti": token_id }).to_string().into()
}

const SESSION_ENDED_PREFIX: &str = r#"{"type":"session_ended","#;

/// The token id of a [`session_ended_frame`], or `None` for any other frame.
fn ended_token(frame: &str) -> Option<String> {
    if !frame.starts_with(SESSION_ENDED_PREFIX) {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(frame).ok()?.get("jti")?.as_str().map(str::to_string)
}

/// A local session watching a user.
struct Watcher {
    session: u64,
    queue: mpsc::Sender<Utf8Bytes>,
    kick: Arc<Notify>,
    /// An event about the watched user was queued for this session since
    /// it started watching (see [`Hub::delivered_since_watch`]).
    delivered: bool,
}

/// What the gateway gets for a newly registered session.
pub struct SessionHandle {
    pub id: u64,
    pub frames: mpsc::Receiver<Utf8Bytes>,
    /// Notified when the hub gives up on this session (queue overflow).
    pub kicked: Arc<Notify>,
    /// Notified when the session's token is revoked (logout, anywhere).
    pub ended: Arc<Notify>,
    /// True when this is the user's first session on this instance.
    pub first_local: bool,
}

/// Users share this many locks for [`Hub::serialize_user`]: bounded memory,
/// and contention only between users that hash alike, at connect time.
const USER_LOCKS: usize = 64;

pub struct Hub {
    /// Names this instance in [`SessionRef`]s (random per process).
    instance_id: u64,
    sessions: DashMap<String, Vec<SessionSlot>>,
    /// Watched user -> the local sessions watching them.
    watchers: DashMap<String, Vec<Watcher>>,
    /// Session -> the users it watches (to diff a new watch set, and to
    /// drop them all when the session ends).
    watching: DashMap<u64, HashSet<String>>,
    next_id: AtomicU64,
    queue_len: usize,
    user_locks: Box<[Mutex<()>]>,
    lock_hasher: RandomState,
}

impl Hub {
    pub fn new(queue_len: usize) -> Self {
        Self {
            instance_id: rand::random(),
            sessions: DashMap::new(),
            watchers: DashMap::new(),
            watching: DashMap::new(),
            next_id: AtomicU64::new(1),
            queue_len: queue_len.max(1),
            user_locks: (0..USER_LOCKS).map(|_| Mutex::new(())).collect(),
            lock_hasher: RandomState::new(),
        }
    }

    pub fn instance_id(&self) -> u64 {
        self.instance_id
    }

    /// The bus address of local session `session_id`.
    pub fn session_ref(&self, session_id: u64) -> SessionRef {
        SessionRef { instance: self.instance_id, session: session_id }
    }

    /// Held by the gateway from registering (or unregistering) a session
    /// until the bus subscription and presence have followed, so those
    /// calls happen in the order the hub saw the sessions come and go.
    pub async fn serialize_user(&self, user_id: &str) -> MutexGuard<'_, ()> {
        let stripe = self.lock_hasher.hash_one(user_id) as usize % self.user_locks.len();
        self.user_locks[stripe].lock().await
    }

    /// Registers a session of `user_id`, authenticated with the token
    /// whose `jti` is `token_id`.
    pub fn register(&self, user_id: &str, token_id: &str) -> SessionHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, frames) = mpsc::channel(self.queue_len);
        let (kick, ended) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let mut entry = self.sessions.entry(user_id.to_string()).or_default();
        let first_local = entry.is_empty();
        entry.push(SessionSlot { id, queue, kick: kick.clone(), token_id: token_id.to_string(), ended: ended.clone() });
        SessionHandle { id, frames, kicked: kick, ended, first_local }
    }

    /// Sessions `user_id` has open on this instance.
    pub fn user_session_count(&self, user_id: &str) -> usize {
        self.sessions.get(user_id).map_or(0, |slots| slots.len())
    }

    /// Removes a session (and what it watched); returns true when it was
    /// the user's last one here.
    pub fn unregister(&self, user_id: &str, session_id: u64) -> bool {
        if let Some((_, watched)) = self.watching.remove(&session_id) {
            for id in &watched {
                self.drop_watcher(id, session_id);
            }
        }
        let removed = self.sessions.remove_if_mut(user_id, |_, slots| {
            slots.retain(|s| s.id != session_id);
            slots.is_empty()
        });
        removed.is_some()
    }

    /// Makes `ids` the set of users session `session_id` (of `owner`)
    /// watches; returns the ones it did not watch before, whose current
    /// presence the caller sends. Unknown sessions watch nothing.
    pub fn set_watched(&self, owner: &str, session_id: u64, ids: HashSet<String>) -> Vec<String> {
        let Some((queue, kick)) = self
            .sessions
            .get(owner)
            .and_then(|slots| slots.iter().find(|s| s.id == session_id).map(|s| (s.queue.clone(), s.kick.clone())))
        else {
            return Vec::new();
        };
        let old = self.watching.insert(session_id, ids.clone()).unwrap_or_default();
        for gone in old.difference(&ids) {
            self.drop_watcher(gone, session_id);
        }
        let added: Vec<String> = ids.difference(&old).cloned().collect();
        for id in &added {
            let watcher = Watcher { session: session_id, queue: queue.clone(), kick: kick.clone(), delivered: false };
            self.watchers.entry(id.clone()).or_default().push(watcher);
        }
        added
    }

    /// Which of `ids` had an event queued for `session_id` since it began
    /// watching them. The gateway leaves those out of the presence batch
    /// it answers a watch with: the batch was read before that event was
    /// queued, so it could be older than what the client already has.
    pub fn delivered_since_watch(&self, session_id: u64, ids: &[String]) -> HashSet<String> {
        ids.iter()
            .filter(|id| {
                self.watchers
                    .get(id.as_str())
                    .is_some_and(|ws| ws.iter().any(|w| w.session == session_id && w.delivered))
            })
            .cloned()
            .collect()
    }

    /// Sessions on this instance watching `user_id`.
    pub fn watcher_count(&self, user_id: &str) -> usize {
        self.watchers.get(user_id).map_or(0, |ws| ws.len())
    }

    fn drop_watcher(&self, watched: &str, session_id: u64) {
        self.watchers.remove_if_mut(watched, |_, ws| {
            ws.retain(|w| w.session != session_id);
            ws.is_empty()
        });
    }

    /// Users with at least one session on this instance.
    pub fn local_users(&self) -> Vec<String> {
        self.sessions.iter().map(|e| e.key().clone()).collect()
    }

    pub fn local_user_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.iter().map(|e| e.value().len()).sum()
    }

    /// Queues `frame` (one serialised server event) for the audience's
    /// sessions on this instance. Never blocks.
    pub fn deliver(&self, audience: &Audience, frame: Bytes) {
        let frame = match Utf8Bytes::try_from(frame) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("dropping a non-UTF-8 bus frame: {e}");
                return;
            }
        };
        // A logout's control event (whichever way the bus carried it).
        if let Some(token_id) = ended_token(&frame) {
            match audience {
                Audience::User(user_id) => self.end_sessions(user_id, &token_id),
                Audience::Members { users, .. } => users.iter().for_each(|u| self.end_sessions(u, &token_id)),
                Audience::Watchers(_) => {}
            }
            return;
        }
        match audience {
            Audience::User(user_id) => self.deliver_to_user(user_id, &frame, None),
            Audience::Members { users, except } => {
                // Only a session of this instance can be skipped here.
                let except = except.filter(|e| e.instance == self.instance_id).map(|e| e.session);
                for user_id in users {
                    self.deliver_to_user(user_id, &frame, except);
                }
            }
            Audience::Watchers(user_id) => {
                if let Some(mut watchers) = self.watchers.get_mut(user_id) {
                    for w in watchers.iter_mut() {
                        offer(w.session, &w.queue, &w.kick, &frame);
                        w.delivered = true;
                    }
                    super::metrics::add(&super::metrics::METRICS.presence_frames, watchers.len() as u64);
                }
            }
        }
    }

    /// Ends the local sessions of `user_id` opened with `token_id`.
    fn end_sessions(&self, user_id: &str, token_id: &str) {
        if let Some(slots) = self.sessions.get(user_id) {
            for slot in slots.iter().filter(|s| s.token_id == token_id) {
                slot.ended.notify_one();
            }
        }
    }

    /// Queues `frame` for every local session of `user_id` but `except`.
    pub fn deliver_to_user(&self, user_id: &str, frame: &Utf8Bytes, except: Option<u64>) {
        if let Some(slots) = self.sessions.get(user_id) {
            offer_all(&slots, frame, except);
        }
    }
}

fn offer_all(slots: &[SessionSlot], frame: &Utf8Bytes, except: Option<u64>) {
    for slot in slots.iter().filter(|s| Some(s.id) != except) {
        offer(slot.id, &slot.queue, &slot.kick, frame);
    }
}

/// Queues `frame` for one session, kicking it if its queue is full.
fn offer(session: u64, queue: &mpsc::Sender<Utf8Bytes>, kick: &Notify, frame: &Utf8Bytes) {
    match queue.try_send(frame.clone()) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(session, "session queue full; disconnecting slow client");
            super::metrics::inc(&super::metrics::METRICS.ws_kicked_slow);
            kick.notify_one();
        }
        // The gateway is already tearing this session down.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_session_are_reported() {
        let hub = Hub::new(4);
        let a = hub.register("u1", "t");
        let b = hub.register("u1", "t");
        assert!(a.first_local);
        assert!(!b.first_local);
        assert!(!hub.unregister("u1", a.id));
        assert!(hub.unregister("u1", b.id));
        assert!(hub.local_users().is_empty());
    }

    #[tokio::test]
    async fn slow_session_is_kicked_not_buffered() {
        let hub = Hub::new(2);
        let mut s = hub.register("u1", "t");
        for _ in 0..3 {
            hub.deliver(&Audience::User("u1".into()), Bytes::from_static(b"{}"));
        }
        // The third frame overflowed: the session was told to go.
        tokio::time::timeout(std::time::Duration::from_secs(1), s.kicked.notified()).await.expect("kicked");
        assert_eq!(s.frames.recv().await.as_deref(), Some("{}"));
    }

    #[tokio::test]
    async fn members_skip_the_originating_session() {
        let hub = Hub::new(4);
        let mut a1 = hub.register("a", "t");
        let mut a2 = hub.register("a", "t");
        let mut b = hub.register("b", "t");
        let mut c = hub.register("c", "t");
        let audience = Audience::Members { users: vec!["a".into(), "b".into()], except: Some(hub.session_ref(a1.id)) };
        hub.deliver(&audience, Bytes::from_static(b"{}"));
        assert!(a2.frames.try_recv().is_ok());
        assert!(b.frames.try_recv().is_ok());
        assert!(a1.frames.try_recv().is_err(), "the sending session gets an ack, not an echo");
        assert!(c.frames.try_recv().is_err(), "not a member");
        // Another instance's session ref skips nobody here.
        let elsewhere = SessionRef { instance: hub.instance_id().wrapping_add(1), session: a1.id };
        hub.deliver(&Audience::Members { users: vec!["a".into()], except: Some(elsewhere) }, Bytes::from_static(b"{}"));
        assert!(a1.frames.try_recv().is_ok());
    }

    #[tokio::test]
    async fn a_revoked_token_ends_its_sessions_only() {
        let hub = Hub::new(4);
        let mut laptop = hub.register("u1", "token-a");
        let phone = hub.register("u1", "token-b");
        hub.deliver(&Audience::User("u1".into()), session_ended_frame("token-a"));
        tokio::time::timeout(std::time::Duration::from_secs(1), laptop.ended.notified()).await.expect("ended");
        assert!(laptop.frames.try_recv().is_err(), "the control event never reaches a client");
        let ended = tokio::time::timeout(std::time::Duration::from_millis(50), phone.ended.notified()).await;
        assert!(ended.is_err(), "another token's session goes on");
    }

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn watchers_get_events_about_whom_they_watch_only() {
        let hub = Hub::new(8);
        let mut a = hub.register("a", "t");
        let mut b = hub.register("b", "t");
        let mut c = hub.register("c", "t");
        let mut added = hub.set_watched("a", a.id, set(&["x", "y"]));
        added.sort();
        assert_eq!(added, ["x", "y"]);
        assert_eq!(hub.set_watched("b", b.id, set(&["x"])), ["x"]);
        assert!(hub.set_watched("c", 999, set(&["x"])).is_empty(), "not c's session: watches nothing");
        hub.deliver(&Audience::Watchers("x".into()), Bytes::from_static(b"{}"));
        assert!(a.frames.try_recv().is_ok() && b.frames.try_recv().is_ok());
        assert!(c.frames.try_recv().is_err(), "c watches nobody");
        assert_eq!(hub.delivered_since_watch(a.id, &["x".into(), "y".into()]), set(&["x"]));

        // A new set: only the new id is reported; x is no longer watched.
        assert_eq!(hub.set_watched("a", a.id, set(&["y", "z"])), ["z"]);
        assert!(hub.delivered_since_watch(a.id, &["z".into()]).is_empty());
        hub.deliver(&Audience::Watchers("x".into()), Bytes::from_static(b"{}"));
        assert!(a.frames.try_recv().is_err());
        assert_eq!(hub.watcher_count("x"), 1);

        // Ending a session drops its watches.
        hub.unregister("b", b.id);
        assert_eq!(hub.watcher_count("x"), 0);
        hub.unregister("a", a.id);
        assert_eq!(hub.watcher_count("y") + hub.watcher_count("z"), 0);
        let _ = c.frames.try_recv();
    }
}
