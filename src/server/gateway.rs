//! The WebSocket gateway (`GET /ws`): authenticates the upgrade, registers
//! the session with the hub, bus and presence, then runs two halves:
//! a reader that parses client frames and feeds the chat pipeline, and a
//! writer that drains the session's bounded queue and sends heartbeats.
//! Every way out (client close, dead peer, slow consumer, server shutdown)
//! goes through the same teardown, so presence is always released.
//!
//! The reader pipelines sends: it submits each one to the log in frame
//! order and keeps reading while up to [`MAX_IN_FLIGHT`] wait to become
//! durable; acks and live delivery follow in the same order. A client
//! with more outstanding than that is simply not read until some finish
//! (TCP backpressure), so one connection cannot queue unbounded work.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{
        State,
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
    },
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use futures_util::{SinkExt, StreamExt, future::BoxFuture, stream::FuturesOrdered};
use tokio::sync::mpsc;

use super::{
    auth::AuthUser,
    bus::{Audience, SessionRef},
    chat::{MessageChange, SendRequest, SentMessage, is_valid_id},
    presence::PresenceError,
    state::AppState,
};
use crate::{
    api::{AppError, dto::is_group_id},
    protocol::{
        CLOSE_SESSION_ENDED, ClientEvent, ErrorCode, MAX_FRAME_BYTES, MAX_WATCHED, PROTOCOL_VERSION, ServerEvent,
    },
};

/// Server pings this often; browsers answer with pongs automatically.
const PING_EVERY: Duration = Duration::from_secs(10);
/// A connection silent for this long is dead and gets dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// tungstenite's read chunk per socket read, allocated for every socket
/// and kept while it is open. Its default (128 KiB) is zero-filled on every
/// read: the send-path profile had memset at 17 % of the workers' CPU, and
/// 20,000 idle sockets held 2.5 GB. Chat frames are 100–300 bytes, so one
/// read of 2 KiB still takes a burst of several; larger frames arrive whole
/// (the buffer grows to what a frame needs). It is the largest single item
/// of an idle connection's ~11 KB of heap (BENCHMARKS.md, "Connections").
pub const READ_BUFFER: usize = 2 * 1024;

/// Sends of one connection waiting to become durable, at most.
pub const MAX_IN_FLIGHT: usize = 32;
/// Replies (acks, errors, pongs) waiting for the writer, per connection:
/// room for every in-flight ack plus a few errors and pongs.
const REPLY_QUEUE: usize = 2 * MAX_IN_FLIGHT;
/// How long an ack may wait for room in a full reply queue before the
/// client counts as not reading (the session then ends).
const REPLY_WAIT: Duration = Duration::from_secs(10);

pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED: u16 = 1003;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

pub async fn upgrade(State(state): State<AppState>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    if !origin_allowed(&headers) {
        return AppError::forbidden("Cross-origin WebSocket refused").into_response();
    }
    let auth = match state.auth.authenticate_headers(&headers).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    // tungstenite enforces a generous hard cap; the protocol limit is
    // checked below so an oversized frame gets a proper 1009 close.
    ws.max_message_size(MAX_FRAME_BYTES * 4)
        .max_frame_size(MAX_FRAME_BYTES * 4)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| run_session(state, auth, socket))
}

/// Browsers always send `Origin`; it must name this site (same host and
/// port as the request). Non-browser clients may omit it.
fn origin_allowed(headers: &HeaderMap) -> bool {
    match headers.get(http::header::ORIGIN) {
        None => true,
        Some(origin) => super::guard::origin_matches_host(origin, headers.get(http::header::HOST)),
    }
}

/// Close reason of a connection refused because the user has
/// [`crate::server::config::Limits::ws_per_user`] open already.
pub const TOO_MANY_SESSIONS: &str = "too many open connections";

async fn run_session(state: AppState, auth: AuthUser, socket: WebSocket) {
    // Taken apart so nothing of the user record or token outlives the
    // handshake: this future lives as long as the connection, and what it
    // still owns counts against every idle socket.
    let AuthUser { user, claims } = auth;
    let user_id = user.id.clone();
    state.chat.remember_user(&user_id);
    // The opening, connected and closing steps each run boxed. Awaited
    // inline, the state of every step (and every local moved into one) is
    // reserved in this task for the connection's whole life: the task was
    // 6,840 bytes per idle socket; now it is 1,776 plus the 2,200-byte
    // connected step while it runs.
    let Some(session) = Box::pin(open_session(&state, &user_id, &claims.jti)).await else {
        Box::pin(refuse_session(socket, state.config.limits.ws_per_user)).await;
        return;
    };
    super::metrics::inc(&super::metrics::METRICS.ws_connections);
    let session_id = session.id;
    // No online list: the client watches whom it shows (`watch`).
    let hello: Utf8Bytes = ServerEvent::Hello { protocol_version: PROTOCOL_VERSION, user }.to_json().into();
    // The token's expiry ends the session too: a socket must not outlive
    // the session it was opened with.
    let expires_in = Duration::from_secs(u64::try_from(claims.exp - super::clock::now_ms() / 1000).unwrap_or(0));
    drop(claims);
    let expires_at = tokio::time::Instant::now() + expires_in;
    Box::pin(run_connection(&state, &user_id, session, hello, expires_at, socket)).await;
    Box::pin(close_session(&state, &user_id, session_id)).await;
}

/// The connection's life after `hello`: the writer task and the reader,
/// until either ends.
async fn run_connection(
    state: &AppState,
    user_id: &str,
    session: super::hub::SessionHandle,
    hello: Utf8Bytes,
    expires_at: tokio::time::Instant,
    socket: WebSocket,
) {
    let (sink, stream) = socket.split();
    let (reply_tx, reply_rx) = mpsc::channel::<Outgoing>(REPLY_QUEUE);
    let ends = SessionEnds { kicked: session.kicked, ended: session.ended, expires_at };
    let mut writer = tokio::spawn(write_loop(sink, hello, session.frames, reply_rx, ends, state.shutdown.clone()));
    let origin = state.hub.session_ref(session.id);
    let reader = read_loop(state, user_id, origin, stream, reply_tx.clone());
    tokio::pin!(reader);

    // Whichever half finishes first ends the session. A reader that wants
    // the connection closed with a code asks the writer to send the close
    // frame and gives it a moment to do so.
    tokio::select! {
        close = &mut reader => {
            if let Some((code, reason)) = close {
                let _ = reply_tx.send(Outgoing::Close(code, reason)).await;
                if tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
                    writer.abort();
                }
            } else {
                writer.abort();
            }
        }
        _ = &mut writer => {}
    }
}

/// Registers a session of `user_id` with the hub, the bus and presence,
/// unless the user has [`crate::server::config::Limits::ws_per_user`] open
/// already (`None`). Checked and registered under the user's lock, so
/// concurrent upgrades cannot all slip in under the cap. The newest
/// connection is the one refused: closing an older tab the user is looking
/// at would surprise them more, and an older tab that is refused instead
/// would reconnect and kick the next one, in a loop.
async fn open_session(state: &AppState, user_id: &str, token_id: &str) -> Option<super::hub::SessionHandle> {
    let _in_order = state.hub.serialize_user(user_id).await;
    if state.hub.user_session_count(user_id) >= state.config.limits.ws_per_user {
        return None;
    }
    let session = state.hub.register(user_id, token_id);
    if session.first_local
        && let Err(e) = state.bus.subscribe(user_id).await
    {
        tracing::warn!("bus subscribe failed for {user_id}: {e}");
    }
    announce_presence(state, user_id, state.presence.session_opened(user_id).await, true).await;
    Some(session)
}

/// Unregisters a session; the last one of the user on this instance also
/// leaves the bus, and presence hears of it.
async fn close_session(state: &AppState, user_id: &str, session_id: u64) {
    let _in_order = state.hub.serialize_user(user_id).await;
    if state.hub.unregister(user_id, session_id)
        && let Err(e) = state.bus.unsubscribe(user_id).await
    {
        tracing::warn!("bus unsubscribe failed for {user_id}: {e}");
    }
    announce_presence(state, user_id, state.presence.session_closed(user_id).await, false).await;
}

/// Tells a client over its cap of connections why it is turned away (an
/// `error` frame instead of `hello`), then closes with 1008.
async fn refuse_session(mut socket: WebSocket, cap: usize) {
    let error = ServerEvent::Error {
        code: ErrorCode::TooManyConnections,
        message: format!("Too many open connections ({cap} per account); close another tab or window and retry"),
        client_msg_id: None,
        retry_after: None,
    };
    let refuse = async {
        socket.send(Message::Text(error.to_json().into())).await?;
        socket.send(close_frame(close::POLICY, TOO_MANY_SESSIONS)).await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), refuse).await;
}

/// Tells the user's watchers `online` when the presence driver says the
/// user just changed state (`Ok(true)`); a driver failure is logged, the
/// session goes on.
async fn announce_presence(state: &AppState, user_id: &str, changed: Result<bool, PresenceError>, online: bool) {
    match changed {
        Ok(true) => {
            let event = ServerEvent::Presence { user_id: user_id.to_string(), online };
            if let Err(e) = state.bus.publish(Audience::Watchers(user_id.to_string()), event.to_json().into()).await {
                tracing::warn!("presence broadcast failed: {e}");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!("presence update failed: {e}"),
    }
}

/// The sending half of a WebSocket.
pub type Sink = futures_util::stream::SplitSink<WebSocket, Message>;
type Stream = futures_util::stream::SplitStream<WebSocket>;

/// What the reader hands the writer.
pub enum Outgoing {
    Text(Utf8Bytes),
    /// Send a close frame with this code and reason, then stop.
    Close(u16, &'static str),
}

pub fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))
}

/// What ends a session from the server's side, besides shutdown.
struct SessionEnds {
    /// The hub gave up on it (outgoing queue full).
    kicked: Arc<tokio::sync::Notify>,
    /// Its token was revoked (logout, on any instance).
    ended: Arc<tokio::sync::Notify>,
    /// Its token expires.
    expires_at: tokio::time::Instant,
}

async fn write_loop(
    mut sink: Sink,
    hello: Utf8Bytes,
    mut frames: mpsc::Receiver<Utf8Bytes>,
    mut replies: mpsc::Receiver<Outgoing>,
    ends: SessionEnds,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let SessionEnds { kicked, ended, expires_at } = ends;
    let expiry = tokio::time::sleep_until(expires_at);
    // Made once and polled by every select! below: a fresh `notified()` or
    // `cancelled()` per frame registered and removed a waiter under a lock
    // each time (six per frame; the shutdown token's lock is shared by every
    // connection), a visible share of load (c)'s profile.
    let kicked = kicked.notified();
    let ended = ended.notified();
    let shutdown = shutdown.cancelled();
    tokio::pin!(expiry, kicked, ended, shutdown);
    if sink.send(Message::Text(hello)).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let message = tokio::select! {
            // Replies first: an ack should not wait behind a burst of
            // other users' traffic.
            biased;
            Some(out) = replies.recv() => match out {
                Outgoing::Text(frame) => Message::Text(frame),
                Outgoing::Close(code, reason) => {
                    let _ = sink.send(close_frame(code, reason)).await;
                    return;
                }
            },
            Some(frame) = frames.recv() => Message::Text(frame),
            _ = ping.tick() => Message::Ping(bytes::Bytes::new()),
            _ = &mut kicked => return close_and_stop(&mut sink, close::POLICY, KICK_REASON).await,
            _ = &mut ended => return close_and_stop(&mut sink, CLOSE_SESSION_ENDED, "session ended").await,
            _ = &mut expiry => return close_and_stop(&mut sink, CLOSE_SESSION_ENDED, "session expired").await,
            _ = &mut shutdown => return close_and_stop(&mut sink, close::GOING_AWAY, SHUTDOWN_REASON).await,
            else => return,
        };
        // A peer that stopped reading blocks this send once the socket
        // buffers are full; a kick or a shutdown must still end the session
        // (otherwise only the idle timeout would, much later).
        let outcome = tokio::select! {
            r = write_burst(&mut sink, message, &mut replies, &mut frames) => r,
            _ = &mut kicked => return close_and_stop(&mut sink, close::POLICY, KICK_REASON).await,
            _ = &mut ended => return close_and_stop(&mut sink, CLOSE_SESSION_ENDED, "session ended").await,
            _ = &mut shutdown => return close_and_stop(&mut sink, close::GOING_AWAY, SHUTDOWN_REASON).await,
        };
        match outcome {
            Ok(None) => {}
            Ok(Some((code, reason))) => {
                let _ = sink.send(close_frame(code, reason)).await;
                return;
            }
            Err(_) => return,
        }
    }
}

/// Frames written per flush at most.
pub const BURST: usize = 64;

/// Writes `first` and whatever else is already queued (replies first, up
/// to [`BURST`]) with one flush: under load that is one write syscall for
/// many frames instead of one each. Returns a close the reader asked for.
/// (The bench relay writes through this too, so its ceiling is fair.)
pub async fn write_burst(
    sink: &mut Sink,
    first: Message,
    replies: &mut mpsc::Receiver<Outgoing>,
    frames: &mut mpsc::Receiver<Utf8Bytes>,
) -> Result<Option<(u16, &'static str)>, axum::Error> {
    sink.feed(first).await?;
    let mut close = None;
    for _ in 0..BURST {
        let next = match replies.try_recv() {
            Ok(Outgoing::Text(frame)) => Message::Text(frame),
            Ok(Outgoing::Close(code, reason)) => {
                close = Some((code, reason));
                break;
            }
            Err(_) => match frames.try_recv() {
                Ok(frame) => Message::Text(frame),
                Err(_) => break,
            },
        };
        sink.feed(next).await?;
    }
    sink.flush().await?;
    Ok(close)
}

const KICK_REASON: &str = "too slow: outgoing queue full";
const SHUTDOWN_REASON: &str = "server shutting down";

/// Sends a close frame if the socket takes it within a moment (it may be
/// full: the peer is not reading), then gives up on the connection.
async fn close_and_stop(sink: &mut Sink, code: u16, reason: &'static str) {
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close_frame(code, reason))).await;
}

/// A send waiting to become durable: its `client_msg_id` and outcome.
type InFlight = BoxFuture<'static, (String, Result<SentMessage, AppError>)>;

/// Reads client frames until the connection ends; returns the close code
/// to send, if the server is the one closing.
async fn read_loop(
    state: &AppState,
    user_id: &str,
    origin: SessionRef,
    mut stream: Stream,
    replies: mpsc::Sender<Outgoing>,
) -> Option<(u16, &'static str)> {
    // A full reply queue means the client is not reading: end the session.
    let reply = |event: ServerEvent| replies.try_send(Outgoing::Text(event.to_json().into())).is_ok();
    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    // One idle timer per connection, re-armed only when it fires: a
    // `timeout` around each read inserted and removed a timer-wheel entry
    // per frame (and per ack: every turn of the loop).
    let mut last_frame = tokio::time::Instant::now();
    let idle = tokio::time::sleep(IDLE_TIMEOUT);
    tokio::pin!(idle);
    let outcome = loop {
        tokio::select! {
            // Finish sends first: they free room for more.
            biased;
            Some((client_msg_id, result)) = in_flight.next(), if !in_flight.is_empty() => {
                // In send order (FuturesOrdered), whichever became durable
                // first: publish, then ack.
                let answered = match result {
                    Ok(sent) => {
                        state.chat.deliver(&sent, Some(origin)).await;
                        // Waits for room (bounded): each ack frees a slot for
                        // another send, so a client pipelining many sends can
                        // run ahead of a writer the scheduler runs late. Only
                        // a client that stops reading for `REPLY_WAIT` is cut.
                        let ack = Outgoing::Text(ServerEvent::ack_frame(&client_msg_id, &sent.json).into());
                        matches!(tokio::time::timeout(REPLY_WAIT, replies.send(ack)).await, Ok(Ok(())))
                    }
                    Err(e) => reply(send_error(e, client_msg_id)),
                };
                if !answered {
                    break Some((close::POLICY, "not reading replies"));
                }
            }
            () = &mut idle => {
                // Idle only when nothing came for IDLE_TIMEOUT and no send
                // is waiting for the log; otherwise count from the last frame.
                if in_flight.is_empty() && last_frame.elapsed() >= IDLE_TIMEOUT {
                    tracing::info!(user_id, "dropping idle websocket");
                    break None;
                }
                let again = if in_flight.is_empty() {
                    last_frame + IDLE_TIMEOUT
                } else {
                    tokio::time::Instant::now() + IDLE_TIMEOUT / 2
                };
                idle.as_mut().reset(again);
            }
            next = stream.next(), if in_flight.len() < MAX_IN_FLIGHT => {
                last_frame = tokio::time::Instant::now();
                let next = match next {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        // A frame over tungstenite's hard cap, or a protocol
                        // violation: this connection is finished.
                        tracing::debug!("websocket read error: {e}");
                        break Some((close::TOO_BIG, "frame too large or malformed"));
                    }
                    None => break None,
                };
                match next {
                    Message::Text(text) => {
                        if text.len() > MAX_FRAME_BYTES {
                            break Some((close::TOO_BIG, "frame too large"));
                        }
                        if !handle_text(state, user_id, origin, &text, &reply, &mut in_flight).await {
                            break Some((close::POLICY, "not reading replies"));
                        }
                    }
                    Message::Binary(_) => break Some((close::UNSUPPORTED, "binary frames are not supported")),
                    Message::Close(_) => break None,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
        }
    };
    // Sends already in the log still get published live (the sender's other
    // sessions and the recipient must not miss them), in order, without a reply.
    if !in_flight.is_empty() {
        let chat = state.chat.clone();
        tokio::spawn(async move {
            while let Some((_, result)) = in_flight.next().await {
                if let Ok(sent) = result {
                    chat.deliver(&sent, Some(origin)).await;
                }
            }
        });
    }
    outcome
}

/// The error frame for a send that failed.
fn send_error(e: AppError, client_msg_id: String) -> ServerEvent {
    error_event(e, Some(client_msg_id))
}

/// An error frame for a request that failed with `e`.
fn error_event(e: AppError, client_msg_id: Option<String>) -> ServerEvent {
    ServerEvent::Error {
        code: match e.status {
            503 => ErrorCode::Unavailable,
            429 => ErrorCode::RateLimited,
            _ => ErrorCode::Invalid,
        },
        message: e.field_error("text").or_else(|| e.errors.values().flatten().next().cloned()).unwrap_or(e.message),
        client_msg_id,
        retry_after: e.retry_after,
    }
}

/// Handles one text frame; false when the connection should end.
async fn handle_text(
    state: &AppState,
    user_id: &str,
    origin: SessionRef,
    text: &str,
    reply: &impl Fn(ServerEvent) -> bool,
    in_flight: &mut FuturesOrdered<InFlight>,
) -> bool {
    let event = match serde_json::from_str::<ClientEvent>(text) {
        Ok(e) => e,
        Err(e) => {
            return reply(ServerEvent::Error {
                code: ErrorCode::BadFrame,
                message: format!("Unreadable frame: {e}"),
                client_msg_id: client_msg_id_of(text),
                retry_after: None,
            });
        }
    };
    match event {
        ClientEvent::Ping { nonce } => reply(ServerEvent::Pong { nonce }),
        ClientEvent::Send { client_msg_id, to, conversation_id, text, image, reply_to } => {
            // A user (`to`) or a group (`conversation_id`), exactly one.
            let to = match (to.is_empty(), conversation_id) {
                (false, None) => to,
                (true, Some(group)) if is_group_id(&group) => group,
                _ => {
                    let e = AppError::field("to", "Name either a user (`to`) or a group (`conversation_id`)");
                    return reply(send_error(e, client_msg_id));
                }
            };
            let req = SendRequest { client_msg_id: Some(client_msg_id.clone()), to, text, image, reply_to };
            match state.chat.submit(user_id, req).await {
                Ok(pending) => {
                    let chat = state.chat.clone();
                    in_flight.push_back(Box::pin(async move {
                        let result = chat.durable(pending).await;
                        (client_msg_id, result)
                    }));
                    true
                }
                Err(e) => reply(send_error(e, client_msg_id)),
            }
        }
        ClientEvent::Watch { user_ids } => watch(state, user_id, origin.session, user_ids, reply).await,
        ClientEvent::Read { conversation_id, message_id } => {
            match state.chat.mark_read(user_id, &conversation_id, &message_id, Some(origin)).await {
                Ok(()) => true,
                Err(e) => reply(error_event(e, None)),
            }
        }
        ClientEvent::Typing { conversation_id } => match state.chat.typing(user_id, &conversation_id).await {
            Ok(()) => true,
            Err(e) => reply(error_event(e, None)),
        },
        ClientEvent::Edit { client_msg_id, message_id, text } => {
            change_message(state, user_id, origin, &message_id, MessageChange::Edit { text }, client_msg_id, reply)
                .await
        }
        ClientEvent::Delete { client_msg_id, message_id } => {
            change_message(state, user_id, origin, &message_id, MessageChange::Delete, client_msg_id, reply).await
        }
        ClientEvent::React { message_id, emoji, on } => {
            match state.chat.react(user_id, &message_id, None, &emoji, on, Some(origin)).await {
                Ok(()) => true,
                Err(e) => reply(error_event(e, None)),
            }
        }
    }
}

/// Edits or deletes a message and answers with the new version, once the
/// log has it (inline: changes are rare, and this keeps them in order with
/// the connection's other frames); false when the connection should end.
async fn change_message(
    state: &AppState,
    user_id: &str,
    origin: SessionRef,
    message_id: &str,
    change: MessageChange,
    client_msg_id: String,
    reply: &impl Fn(ServerEvent) -> bool,
) -> bool {
    match state.chat.change(user_id, message_id, None, change, Some(client_msg_id.clone())).await {
        Ok(sent) => {
            state.chat.deliver_change(&sent, Some(origin)).await;
            reply(ServerEvent::Updated { message: sent.message, client_msg_id: Some(client_msg_id) })
        }
        Err(e) => reply(send_error(e, client_msg_id)),
    }
}

/// Applies a new watch set and answers with the presence of the users new
/// in it; false when the connection should end.
async fn watch(
    state: &AppState,
    user_id: &str,
    session_id: u64,
    user_ids: Vec<String>,
    reply: &impl Fn(ServerEvent) -> bool,
) -> bool {
    let invalid = |message: String| ServerEvent::Error {
        code: ErrorCode::Invalid,
        message,
        client_msg_id: None,
        retry_after: None,
    };
    if user_ids.len() > MAX_WATCHED {
        return reply(invalid(format!("A watch lists at most {MAX_WATCHED} users")));
    }
    if let Some(bad) = user_ids.iter().find(|id| !is_valid_id(id)) {
        return reply(invalid(format!("Malformed user id in watch: {:?}", truncated(bad))));
    }
    // Each change is a presence lookup and, scaled, an event on every
    // instance: bounded per user, all sessions together.
    if let Err(secs) = state.quotas.watch(user_id).await {
        return reply(ServerEvent::Error {
            code: ErrorCode::RateLimited,
            message: format!(
                "Too many watch changes (at most {} a minute); this one was ignored, retry in {secs} s",
                state.quotas.watch_rate_per_minute()
            ),
            client_msg_id: None,
            retry_after: Some(secs.max(1)),
        });
    }
    let added = state.hub.set_watched(user_id, session_id, user_ids.into_iter().collect());
    if added.is_empty() {
        return true;
    }
    let online = match state.presence.online_among(&added).await {
        Ok(online) => online,
        Err(e) => {
            // Their next change still arrives; until then the client shows
            // what it knew.
            tracing::warn!("presence lookup for a watch failed: {e}");
            return true;
        }
    };
    let newer = state.hub.delivered_since_watch(session_id, &added);
    let (online, offline): (Vec<String>, Vec<String>) =
        added.into_iter().filter(|id| !newer.contains(id)).partition(|id| online.contains(id));
    reply(ServerEvent::PresenceBatch { online, offline })
}

/// At most 40 characters of `text`, for error messages.
fn truncated(text: &str) -> String {
    text.chars().take(40).collect()
}

/// Best effort: the `client_msg_id` of a frame that failed to parse as a
/// whole, so the client can fail the right pending message.
fn client_msg_id_of(text: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(text).ok()?.get("client_msg_id")?.as_str().map(str::to_string)
}
