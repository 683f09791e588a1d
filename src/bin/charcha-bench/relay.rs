//! The bare relay: Charcha's WebSocket frames on the same axum 0.8 / tokio
//! stack, minus everything that makes Charcha Charcha (auth, idempotency,
//! the log, the bus, storage, presence). It is the ceiling the server is
//! measured against, so it does the same per-message work a real server
//! cannot avoid: parse the frame with the real `ClientEvent` type, build a
//! `ChatMessage` (fresh ULID, conversation id, timestamp), serialise it once,
//! queue the `message` frame on every recipient session's bounded queue,
//! queue the `ack` on the sender's reply queue; split reader/writer tasks per
//! connection, queued frames written with one flush (as Charcha's gateway
//! does), TCP_NODELAY on every socket.

use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{
        Query, State,
        ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    serve::ListenerExt,
};
use charcha::{
    api::dto::{ChatMessage, User, direct_conversation_id},
    protocol::{ClientEvent, ErrorCode, MAX_FRAME_BYTES, MAX_TEXT_CHARS, PROTOCOL_VERSION, ServerEvent},
    server::{
        clock,
        gateway::{Outgoing, Sink, close_frame, write_burst},
    },
};
use dashmap::DashMap;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{Notify, mpsc};

/// Same figures as Charcha's gateway and default `ws_queue`.
const PING_EVERY: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const REPLY_QUEUE: usize = 64;
const SESSION_QUEUE: usize = 256;
const MAX_CLIENT_MSG_ID_BYTES: usize = 64;

pub fn main(args: Vec<String>) -> ExitCode {
    let mut addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 3100));
    let mut args = crate::Args::new(args);
    while let Some(flag) = args.next_flag() {
        let r = match flag.as_str() {
            "--addr" => args.parse("--addr").map(|a| addr = a),
            "-h" | "--help" => {
                println!("charcha-bench relay [--addr 127.0.0.1:3100]   (port 0 picks a free port)");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown option `{other}`")),
        };
        if let Err(e) = r {
            eprintln!("charcha-bench relay: {e}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("charcha-bench relay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("charcha-bench relay: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: SocketAddr) -> Result<(), String> {
    let relay = Arc::new(Relay::default());
    let app = Router::new().route("/ws", get(upgrade)).route("/api/health", get(health)).with_state(relay);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("relay listening on http://{local}");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.map_err(|e| format!("server error: {e}"))
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term => {} }
    // Open WebSockets would hold a graceful shutdown forever; a bench relay
    // has nothing to flush.
    std::process::exit(0);
}

/// The sending half of one session.
struct Slot {
    id: u64,
    queue: mpsc::Sender<Utf8Bytes>,
    kick: Arc<Notify>,
}

#[derive(Default)]
struct Relay {
    sessions: DashMap<String, Vec<Slot>>,
    next_session: AtomicU64,
    ids: Mutex<ulid::Generator>,
}

impl Relay {
    fn next_id(&self) -> String {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.generate().unwrap_or_else(|_| ulid::Ulid::new()).to_string()
    }

    fn register(&self, user: &str) -> (u64, mpsc::Receiver<Utf8Bytes>, Arc<Notify>) {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (queue, frames) = mpsc::channel(SESSION_QUEUE);
        let kick = Arc::new(Notify::new());
        self.sessions.entry(user.to_string()).or_default().push(Slot { id, queue, kick: kick.clone() });
        (id, frames, kick)
    }

    fn unregister(&self, user: &str, session: u64) {
        self.sessions.remove_if_mut(user, |_, slots| {
            slots.retain(|s| s.id != session);
            slots.is_empty()
        });
    }

    /// Queues `frame` for every session of `user` except `except`; a full
    /// queue kicks its session, as Charcha's hub does. Never blocks.
    fn deliver(&self, user: &str, except: Option<u64>, frame: &Utf8Bytes) {
        if let Some(slots) = self.sessions.get(user) {
            for slot in slots.iter().filter(|s| Some(s.id) != except) {
                if slot.queue.try_send(frame.clone()).is_err() {
                    slot.kick.notify_one();
                }
            }
        }
    }

    fn session_count(&self) -> usize {
        self.sessions.iter().map(|e| e.value().len()).sum()
    }
}

async fn health(State(relay): State<Arc<Relay>>) -> Response {
    Json(serde_json::json!({ "status": "ok", "sessions": relay.session_count() })).into_response()
}

#[derive(Deserialize)]
struct WsQuery {
    #[serde(default)]
    user: String,
}

async fn upgrade(State(relay): State<Arc<Relay>>, Query(q): Query<WsQuery>, ws: WebSocketUpgrade) -> Response {
    if q.user.is_empty() || q.user.len() > 128 {
        return (StatusCode::BAD_REQUEST, "GET /ws?user=<id>").into_response();
    }
    // The same socket settings as Charcha's gateway, so the ceiling is fair.
    ws.max_message_size(MAX_FRAME_BYTES * 4)
        .max_frame_size(MAX_FRAME_BYTES * 4)
        .read_buffer_size(charcha::server::gateway::READ_BUFFER)
        .on_upgrade(move |socket| session(relay, q.user, socket))
}

async fn session(relay: Arc<Relay>, user_id: String, socket: WebSocket) {
    let (session_id, frames, kick) = relay.register(&user_id);
    let hello = ServerEvent::Hello {
        protocol_version: PROTOCOL_VERSION,
        user: User {
            id: user_id.clone(),
            email: format!("{user_id}@relay.charcha.test"),
            full_name: user_id.clone(),
            profile_picture: String::new(),
            bio: String::new(),
            created_at: clock::rfc3339(clock::now_ms()),
        },
    };
    let (sink, stream) = socket.split();
    let (reply_tx, reply_rx) = mpsc::channel::<Outgoing>(REPLY_QUEUE);
    let mut writer = tokio::spawn(write_loop(sink, hello.to_json().into(), frames, reply_rx, kick));
    let reader = read_loop(&relay, &user_id, session_id, stream, reply_tx.clone());
    tokio::pin!(reader);
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
    relay.unregister(&user_id, session_id);
}

type Stream = futures_util::stream::SplitStream<WebSocket>;

async fn write_loop(
    mut sink: Sink,
    hello: Utf8Bytes,
    mut frames: mpsc::Receiver<Utf8Bytes>,
    mut replies: mpsc::Receiver<Outgoing>,
    kicked: Arc<Notify>,
) {
    if sink.send(Message::Text(hello)).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let message = tokio::select! {
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
            _ = kicked.notified() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close_frame(1008, "too slow"))).await;
                return;
            }
            else => return,
        };
        let outcome = tokio::select! {
            r = write_burst(&mut sink, message, &mut replies, &mut frames) => r,
            _ = kicked.notified() => return,
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

async fn read_loop(
    relay: &Relay,
    user_id: &str,
    session_id: u64,
    mut stream: Stream,
    replies: mpsc::Sender<Outgoing>,
) -> Option<(u16, &'static str)> {
    let reply = |event: ServerEvent| replies.try_send(Outgoing::Text(event.to_json().into())).is_ok();
    loop {
        let next = match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(_))) => return Some((1009, "frame too large or malformed")),
            Ok(None) | Err(_) => return None,
        };
        match next {
            Message::Text(text) => {
                if text.len() > MAX_FRAME_BYTES {
                    return Some((1009, "frame too large"));
                }
                if !handle_text(relay, user_id, session_id, &text, &reply) {
                    return Some((1008, "not reading replies"));
                }
            }
            Message::Binary(_) => return Some((1003, "binary frames are not supported")),
            Message::Close(_) => return None,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

fn invalid(message: &str, client_msg_id: String) -> ServerEvent {
    ServerEvent::Error {
        code: ErrorCode::Invalid,
        message: message.into(),
        client_msg_id: Some(client_msg_id),
        retry_after: None,
    }
}

/// One client frame; false when the session should end (replies not read).
fn handle_text(
    relay: &Relay,
    user_id: &str,
    session_id: u64,
    text: &str,
    reply: &impl Fn(ServerEvent) -> bool,
) -> bool {
    let event = match serde_json::from_str::<ClientEvent>(text) {
        Ok(e) => e,
        Err(e) => {
            return reply(ServerEvent::Error {
                code: ErrorCode::BadFrame,
                message: format!("Unreadable frame: {e}"),
                client_msg_id: None,
                retry_after: None,
            });
        }
    };
    match event {
        ClientEvent::Ping { nonce } => reply(ServerEvent::Pong { nonce }),
        // The relay keeps no presence: everyone watched is reported offline.
        ClientEvent::Watch { user_ids } => reply(ServerEvent::PresenceBatch { online: Vec::new(), offline: user_ids }),
        // Nor read markers or typing: the load generator sends neither.
        ClientEvent::Read { .. } | ClientEvent::Typing { .. } => true,
        // Nor history to edit.
        ClientEvent::Edit { .. } | ClientEvent::Delete { .. } | ClientEvent::React { .. } => true,
        ClientEvent::Send { client_msg_id, to, text, image, .. } => {
            // The checks Charcha makes without I/O.
            if client_msg_id.is_empty() || client_msg_id.len() > MAX_CLIENT_MSG_ID_BYTES {
                return reply(invalid("Must be 1 to 64 bytes", client_msg_id));
            }
            if text.chars().count() > MAX_TEXT_CHARS {
                return reply(invalid("Messages are limited to 4000 characters", client_msg_id));
            }
            let image = image.filter(|i| !i.trim().is_empty());
            if text.trim().is_empty() && image.is_none() {
                return reply(invalid("A message needs text or an image", client_msg_id));
            }
            if to == user_id || to.is_empty() {
                return reply(invalid("You cannot chat with yourself", client_msg_id));
            }
            let message = ChatMessage {
                id: relay.next_id(),
                conversation_id: direct_conversation_id(user_id, &to),
                sender_id: user_id.to_string(),
                recipient_id: to,
                text,
                image,
                created_at: clock::rfc3339(clock::now_ms()),
                client_msg_id: Some(client_msg_id.clone()),
                edited_at: None,
                deleted: false,
                reply_to: None,
            };
            // Serialised once, like Charcha's log record, and wrapped.
            let json = match serde_json::to_string(&message) {
                Ok(j) => j,
                Err(_) => return reply(invalid("unserialisable message", client_msg_id)),
            };
            let frame: Utf8Bytes = ServerEvent::message_frame(&json).into();
            relay.deliver(&message.recipient_id, None, &frame);
            relay.deliver(user_id, Some(session_id), &frame);
            reply(ServerEvent::Ack { client_msg_id, message })
        }
    }
}
