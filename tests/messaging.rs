#![cfg(feature = "ssr")]
//! Integration tests of the messaging pipeline: wire protocol, WebSocket
//! gateway, chat service (ack after log, idempotency, authz, validation),
//! history pagination, presence, message images, the history worker, and
//! REST parity. Each test runs its own in-process server.

mod common;

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use charcha::{
    api::dto::{ChatMessage, Contact, User, direct_conversation_id},
    protocol::{ClientEvent, ErrorCode, MAX_FRAME_BYTES, MAX_TEXT_CHARS, PROTOCOL_VERSION, ServerEvent},
    server::log::{self, Appended, Durable, Log, LogError, LogRecord, SendRecord, kafka::KafkaLog},
};
use common::{
    TestServer, TestUser, Ws, body_json, eventually, eventually_within, get, history_all, png, post_json, ws_request,
};
use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------- helpers

/// How long a test waits for something that must happen (an ack, a live
/// message, history catching up). Generous: with Kafka every ack waits for
/// the broker's fsync, and the first produce to a new topic may wait for its
/// leader. Absence is asserted with short, explicit windows instead.
const PATIENCE: Duration = Duration::from_secs(15);

/// Next event matching `pred`, skipping others; panics after [`PATIENCE`].
async fn next_where(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    ws.next_where(PATIENCE, pred).await.unwrap_or_else(|| panic!("no {what} within {PATIENCE:?}"))
}

/// The ack of `client_msg_id`; panics with the error frame the server
/// answered instead, or after [`PATIENCE`].
async fn ack_of(ws: &mut Ws, client_msg_id: &str) -> Value {
    ws.reply_to(client_msg_id, PATIENCE).await.unwrap_or_else(|e| panic!("no ack of {client_msg_id}: {e}"))
}

async fn error_frame(ws: &mut Ws) -> Value {
    next_where(ws, "error frame", |e| e["type"] == "error").await
}

async fn message_with_id(ws: &mut Ws, id: &str) -> Value {
    next_where(ws, &format!("message {id}"), |e| e["type"] == "message" && e["message"]["_id"] == id).await
}

/// Sends `{"type":"ping","nonce":n}` and expects the matching pong.
async fn ping_pong(ws: &mut Ws, nonce: u64) {
    ws.send_json(json!({ "type": "ping", "nonce": nonce })).await;
    let pong = next_where(ws, "pong", |e| e["type"] == "pong").await;
    assert_eq!(pong["nonce"], nonce, "pong echoes the nonce: {pong}");
}

async fn send_ws(ws: &mut Ws, client_msg_id: &str, to: &str, text: &str) -> Value {
    ws.send_text(client_msg_id, to, text).await;
    let ack = ack_of(ws, client_msg_id).await;
    ack["message"].clone()
}

async fn send_rest(user: &TestUser, server: &TestServer, to: &str, body: Value) -> (StatusCode, Value) {
    post_json(&user.http, &server.url, &format!("/api/messages/send/{to}"), body).await
}

fn ids(messages: &[Value]) -> Vec<String> {
    messages.iter().map(|m| m["_id"].as_str().expect("_id").to_string()).collect()
}

/// Waits until `id` is in the history `http`'s user has with `peer`.
async fn in_history(http: &reqwest::Client, server: &TestServer, peer: &str, id: &str) {
    let url = format!("{}/api/messages/{peer}?limit=100", server.url);
    eventually_within(PATIENCE, || {
        let (http, url, id) = (http.clone(), url.clone(), id.to_string());
        async move {
            let page: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            page["messages"].as_array()?.iter().any(|m| m["_id"] == id.as_str()).then_some(())
        }
    })
    .await
}

/// A reader of `server`'s log. Embedded: the server's own log. Kafka: a
/// second client of the same topic, on connections of its own. A broker
/// answers one request per connection at a time, and the server's fetch
/// connections are held by its worker's long polls (up to a second each on
/// an idle partition), so reading through them would mostly measure that
/// wait. An independent consumer is also the stronger witness.
async fn log_reader(server: &TestServer) -> Arc<dyn Log> {
    let b = &server.config.backends;
    if b.kafka_brokers.is_empty() {
        return server.state().log.clone();
    }
    let reader = KafkaLog::connect(
        b.kafka_brokers.clone(),
        &b.kafka_topic,
        b.kafka_partitions,
        b.kafka_replication,
        Arc::new(charcha::server::claims::local::LocalClaims::new()),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("a second Kafka client of the test topic");
    assert_eq!(reader.stream(), server.state().log.stream());
    Arc::new(reader)
}

/// The records of `partition`, from its first offset to its end.
async fn partition_records(log: &dyn Log, partition: i32) -> Result<Vec<LogRecord>, LogError> {
    let mut records: Vec<LogRecord> = Vec::new();
    loop {
        let from = records.last().map(|r| r.offset + 1).unwrap_or(0);
        let batch = log.fetch(partition, from, 100_000, Duration::ZERO).await?;
        if batch.is_empty() {
            return Ok(records);
        }
        records.extend(batch);
    }
}

/// Every record of every partition (the Kafka log has several; a record's
/// partition follows its key).
async fn all_records(log: &dyn Log) -> Vec<LogRecord> {
    let mut all = Vec::new();
    for p in log.partitions().await.expect("log partitions") {
        all.extend(partition_records(log, p).await.expect("log fetch"));
    }
    all
}

/// The offset after the last record of each partition (0 when empty).
async fn partition_ends(log: &dyn Log) -> Vec<(i32, i64)> {
    let records = all_records(log).await;
    let mut ends = Vec::new();
    for p in log.partitions().await.expect("log partitions") {
        let end = records.iter().filter(|r| r.partition == p).map(|r| r.offset + 1).max().unwrap_or(0);
        ends.push((p, end));
    }
    ends
}

/// Waits until the history worker has checkpointed past every log record,
/// in every partition.
async fn worker_caught_up(server: &TestServer) {
    let st = server.state();
    let reader = log_reader(server).await;
    let reader = &reader;
    eventually_within(PATIENCE, move || async move {
        for p in reader.partitions().await.ok()? {
            let end = partition_records(reader.as_ref(), p).await.ok()?.last().map(|r| r.offset + 1).unwrap_or(0);
            let next = st.store.load_offset(st.log.stream(), p).await.ok()?.unwrap_or(0);
            if next < end {
                return None;
            }
        }
        Some(())
    })
    .await
}

/// The dead letters the worker wrote, as (stream, partition, offset,
/// payload, error), ordered by partition and offset: from the embedded
/// store's SQLite file, or the `dead_letters` collection of the test's
/// MongoDB database (`_id` is `<stream>/<partition>/<offset>`).
async fn dead_letters(server: &TestServer) -> Vec<(String, i32, i64, Vec<u8>, String)> {
    let mut dead: Vec<(String, i32, i64, Vec<u8>, String)> = match &server.config.backends.mongodb_uri {
        None => {
            let db = rusqlite::Connection::open(server.data_dir.join("charcha.db")).unwrap();
            let mut stmt =
                db.prepare("SELECT stream, partition, log_offset, payload, error FROM dead_letters").unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        }
        Some(uri) => {
            use futures_util::TryStreamExt;
            use mongodb::bson::{Document, doc};
            let client = mongodb::Client::with_uri_str(uri).await.expect("mongo client");
            let db = client.default_database().expect("the test's MongoDB URI names its database");
            let docs: Vec<Document> = db
                .collection::<Document>("dead_letters")
                .find(doc! {})
                .await
                .expect("find")
                .try_collect()
                .await
                .expect("docs");
            docs.iter()
                .map(|d| {
                    let id = d.get_str("_id").expect("string _id");
                    let mut parts = id.rsplitn(3, '/');
                    let offset = parts.next().and_then(|o| o.parse().ok()).unwrap_or_else(|| panic!("offset in {id}"));
                    let partition =
                        parts.next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("partition in {id}"));
                    let stream = parts.next().unwrap_or_else(|| panic!("stream in {id}")).to_string();
                    let payload = d.get_binary_generic("payload").expect("binary payload").clone();
                    let error = d.get_str("error").expect("error").to_string();
                    (stream, partition, offset, payload, error)
                })
                .collect()
        }
    };
    dead.sort_by_key(|(_, p, o, _, _)| (*p, *o));
    dead
}

fn count_id(messages: &[Value], id: &str) -> usize {
    messages.iter().filter(|m| m["_id"] == id).count()
}

/// Connects and returns the client with its `hello` frame.
async fn connect_with_hello(server: &TestServer, token: &str) -> (Ws, Value) {
    Ws::connect_request(ws_request(&server.ws_url(), token)).await.unwrap_or_else(|e| panic!("ws connect: {e}"))
}

fn upgrade_status(err: tokio_tungstenite::tungstenite::Error) -> u16 {
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP error response, got {other:?}"),
    }
}

fn sample_message() -> ChatMessage {
    ChatMessage {
        id: "01J00000000000000000000001".into(),
        conversation_id: direct_conversation_id("01J0000000000000000000000A", "01J0000000000000000000000B"),
        sender_id: "01J0000000000000000000000A".into(),
        recipient_id: "01J0000000000000000000000B".into(),
        text: "héllo \"world\" 👋".into(),
        image: Some("/api/media/01J00000000000000000000009".into()),
        created_at: "2026-01-02T03:04:05.678Z".into(),
        client_msg_id: Some("c-1".into()),
        edited_at: None,
        deleted: false,
        reply_to: None,
    }
}

// ------------------------------------------------------------ 1. protocol

#[tokio::test]
async fn protocol_round_trips_every_variant() {
    let user = User {
        id: "01J0000000000000000000000A".into(),
        email: "a@example.com".into(),
        full_name: "Ann".into(),
        profile_picture: String::new(),
        bio: "bio".into(),
        created_at: "2026-01-01T00:00:00.000Z".into(),
    };
    let contact = Contact {
        id: "01J0000000000000000000000B".into(),
        full_name: "Bob".into(),
        profile_picture: "/api/media/01J00000000000000000000009".into(),
        bio: String::new(),
        online: true,
    };
    let mut plain = sample_message();
    plain.image = None;
    plain.client_msg_id = None;

    let client_events = [
        (
            ClientEvent::Send {
                client_msg_id: "c-1".into(),
                to: user.id.clone(),
                conversation_id: None,
                text: "hi".into(),
                image: None,
                reply_to: None,
            },
            "send",
        ),
        (
            ClientEvent::Send {
                client_msg_id: "c-2".into(),
                to: user.id.clone(),
                conversation_id: None,
                text: String::new(),
                image: Some("/api/media/x".into()),
                reply_to: None,
            },
            "send",
        ),
        (ClientEvent::Ping { nonce: 42 }, "ping"),
        (ClientEvent::Watch { user_ids: vec![user.id.clone()] }, "watch"),
    ];
    for (event, tag) in client_events {
        let text = serde_json::to_string(&event).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], tag, "{text}");
        assert_eq!(serde_json::from_str::<ClientEvent>(&text).unwrap(), event, "{text}");
    }

    let mut server_events = vec![
        (ServerEvent::Hello { protocol_version: PROTOCOL_VERSION, user: user.clone() }, "hello"),
        (ServerEvent::PresenceBatch { online: vec![user.id.clone()], offline: vec![] }, "presence_batch"),
        (ServerEvent::Ack { client_msg_id: "c-1".into(), message: sample_message() }, "ack"),
        (ServerEvent::Message { message: sample_message() }, "message"),
        (ServerEvent::Message { message: plain }, "message"),
        (ServerEvent::Presence { user_id: user.id.clone(), online: false }, "presence"),
        (ServerEvent::Contact { contact }, "contact"),
        (ServerEvent::Pong { nonce: u64::MAX }, "pong"),
    ];
    for code in [
        ErrorCode::BadFrame,
        ErrorCode::Invalid,
        ErrorCode::Unavailable,
        ErrorCode::RateLimited,
        ErrorCode::TooManyConnections,
    ] {
        let with_id =
            ServerEvent::Error { code, message: "m".into(), client_msg_id: Some("c-9".into()), retry_after: Some(3) };
        server_events.push((with_id, "error"));
        server_events
            .push((ServerEvent::Error { code, message: "m".into(), client_msg_id: None, retry_after: None }, "error"));
    }
    for (event, tag) in server_events {
        let text = event.to_json();
        assert_eq!(text, serde_json::to_string(&event).unwrap());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], tag, "{text}");
        assert_eq!(serde_json::from_str::<ServerEvent>(&text).unwrap(), event, "{text}");
    }

    // Field names on the wire.
    let v: Value = serde_json::from_str(&ServerEvent::Message { message: sample_message() }.to_json()).unwrap();
    assert_eq!(v["message"]["_id"], "01J00000000000000000000001");
    assert!(v["message"].get("id").is_none());
    let codes = [
        (ErrorCode::BadFrame, "bad_frame"),
        (ErrorCode::Invalid, "invalid"),
        (ErrorCode::Unavailable, "unavailable"),
        (ErrorCode::RateLimited, "rate_limited"),
        (ErrorCode::TooManyConnections, "too_many_connections"),
    ];
    for (code, name) in codes {
        let error = ServerEvent::Error { code, message: "m".into(), client_msg_id: None, retry_after: None };
        let v: Value = serde_json::from_str(&error.to_json()).unwrap();
        assert_eq!(v["code"], name);
        assert!(v.get("client_msg_id").is_none(), "absent client_msg_id is omitted: {v}");
        assert!(v.get("retry_after").is_none(), "absent retry_after is omitted: {v}");
    }

    // Hand-written frames, as a browser would send them.
    let send: ClientEvent =
        serde_json::from_str(r#"{"type":"send","client_msg_id":"c-7","to":"01J0000000000000000000000B","text":"hi"}"#)
            .unwrap();
    assert_eq!(
        send,
        ClientEvent::Send {
            client_msg_id: "c-7".into(),
            to: "01J0000000000000000000000B".into(),
            conversation_id: None,
            text: "hi".into(),
            image: None,
            reply_to: None
        }
    );
    let image_only: ClientEvent =
        serde_json::from_str(r#"{"type":"send","client_msg_id":"c-8","to":"x","image":"/api/media/y"}"#).unwrap();
    assert_eq!(
        image_only,
        ClientEvent::Send {
            client_msg_id: "c-8".into(),
            to: "x".into(),
            conversation_id: None,
            text: String::new(),
            image: Some("/api/media/y".into()),
            reply_to: None
        }
    );
    assert_eq!(
        serde_json::from_str::<ClientEvent>(r#"{"type":"ping","nonce":7}"#).unwrap(),
        ClientEvent::Ping { nonce: 7 }
    );
    assert_eq!(serde_json::from_str::<ClientEvent>(r#"{"type":"ping"}"#).unwrap(), ClientEvent::Ping { nonce: 0 });
    // Extra fields (a forged sender, say) are ignored, not trusted.
    assert!(
        serde_json::from_str::<ClientEvent>(
            r#"{"type":"send","client_msg_id":"c","to":"x","text":"t","sender_id":"evil"}"#
        )
        .is_ok()
    );
    // What the gateway must reject as bad frames. (A send naming neither
    // `to` nor `conversation_id` parses since protocol 4, which made each
    // optional: the gateway refuses it as `invalid`, see
    // bad_frames_get_errors_and_the_connection_survives.)
    for bad in [
        r#"{"type":"explode"}"#,
        r#"{"type":"send","text":"t"}"#,
        r#"{"to":"x"}"#,
        "not json",
        r#"{"type":"ping","nonce":"7"}"#,
    ] {
        assert!(serde_json::from_str::<ClientEvent>(bad).is_err(), "{bad} must not parse");
    }
    let presence: ServerEvent = serde_json::from_str(r#"{"type":"presence","user_id":"u1","online":true}"#).unwrap();
    assert_eq!(presence, ServerEvent::Presence { user_id: "u1".into(), online: true });
    let err: ServerEvent =
        serde_json::from_str(r#"{"type":"error","code":"rate_limited","message":"slow down"}"#).unwrap();
    assert_eq!(
        err,
        ServerEvent::Error {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            client_msg_id: None,
            retry_after: None
        }
    );
    // A code from a newer server still parses (as `unknown`).
    let newer: ServerEvent =
        serde_json::from_str(r#"{"type":"error","code":"from_the_future","message":"m","retry_after":5}"#).unwrap();
    assert!(matches!(newer, ServerEvent::Error { code: ErrorCode::Unknown, retry_after: Some(5), .. }), "{newer:?}");
}

// ------------------------------------------------------- 2. live exchange

#[tokio::test]
async fn two_clients_exchange_messages_live_both_ways() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let mut wa = a.ws(&server).await;
    let mut wa_tab2 = a.ws(&server).await;
    let mut wb = b.ws(&server).await;

    wa.send_text("a-1", &b.id, "hello Bob").await;
    let ack = ack_of(&mut wa, "a-1").await;
    let m = &ack["message"];
    let id = m["_id"].as_str().expect("ack carries the message id").to_string();
    assert_eq!(id.len(), 26);
    assert_eq!(m["sender_id"], a.id.as_str());
    assert_eq!(m["recipient_id"], b.id.as_str());
    assert_eq!(m["text"], "hello Bob");
    assert_eq!(m["conversation_id"], direct_conversation_id(&a.id, &b.id));
    assert_eq!(m["client_msg_id"], "a-1");
    let got = message_with_id(&mut wb, &id).await;
    assert_eq!(got["message"], *m, "the receiver gets the acked message as is");
    // The sender's other sessions get it too (tabs merge by _id); the
    // sending session has the ack and gets no echo.
    message_with_id(&mut wa_tab2, &id).await;
    let echo = wa
        .next_where(Duration::from_millis(300), |e| e["type"] == "message" && e["message"]["_id"] == id.as_str())
        .await;
    assert!(echo.is_none(), "no echo to the sending session: {echo:?}");

    wb.send_text("b-1", &a.id, "hi Ann").await;
    let back = ack_of(&mut wb, "b-1").await["message"].clone();
    assert_eq!(back["sender_id"], b.id.as_str());
    assert_eq!(back["recipient_id"], a.id.as_str());
    assert_eq!(back["conversation_id"], m["conversation_id"], "one conversation for both directions");
    let back_id = back["_id"].as_str().unwrap().to_string();
    assert!(back_id > id, "ids sort in send order");
    let got = message_with_id(&mut wa, &back_id).await;
    assert_eq!(got["message"]["text"], "hi Ann");

    // Both land in history, in order, seen the same from both sides.
    in_history(&a.http, &server, &b.id, &back_id).await;
    assert_eq!(ids(&history_all(&a.http, &server.url, &b.id).await), vec![id.clone(), back_id.clone()]);
    assert_eq!(ids(&history_all(&b.http, &server.url, &a.id).await), vec![id, back_id]);
}

#[tokio::test]
async fn pipelined_sends_are_acked_and_delivered_in_order() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let mut wa = a.ws(&server).await;
    let mut wb = b.ws(&server).await;
    // All frames out before reading anything back: more than one
    // connection may have in flight, so the server must hold back reading.
    for i in 0..100 {
        wa.send_text(&format!("pipe-{i}"), &b.id, &format!("n{i}")).await;
    }
    let mut acked = Vec::new();
    while acked.len() < 100 {
        let e = next_where(&mut wa, "ack", |e| e["type"] == "ack" || e["type"] == "error").await;
        assert_eq!(e["type"], "ack", "{e}");
        assert_eq!(e["client_msg_id"], format!("pipe-{}", acked.len()), "acks come in send order");
        acked.push(e["message"]["_id"].as_str().unwrap().to_string());
    }
    let mut sorted = acked.clone();
    sorted.sort();
    assert_eq!(acked, sorted, "ids sort in send order");
    let mut delivered = Vec::new();
    while delivered.len() < 100 {
        let e = next_where(&mut wb, "message", |e| e["type"] == "message").await;
        assert_eq!(e["message"]["text"], format!("n{}", delivered.len()));
        delivered.push(e["message"]["_id"].as_str().unwrap().to_string());
    }
    assert_eq!(delivered, acked, "the receiver sees them in send order");
    in_history(&b.http, &server, &a.id, acked.last().unwrap()).await;
    assert_eq!(ids(&history_all(&b.http, &server.url, &a.id).await), acked);
}

/// What a test does instead of a log's `submit` (it gets the real log).
type Submit = Box<dyn Fn(Arc<dyn Log>, SendRecord) -> BoxFuture<'static, Result<Durable, LogError>> + Send + Sync>;

/// Delegates to a real log, with the test's own `submit` in front of it.
struct InterceptedLog {
    inner: Arc<dyn Log>,
    submit: Submit,
}

#[async_trait::async_trait]
impl Log for InterceptedLog {
    fn stream(&self) -> &str {
        self.inner.stream()
    }
    async fn submit(&self, record: SendRecord) -> Result<Durable, LogError> {
        (self.submit)(self.inner.clone(), record).await
    }
    async fn partitions(&self) -> Result<Vec<i32>, LogError> {
        self.inner.partitions().await
    }
    async fn fetch(
        &self,
        partition: i32,
        from: i64,
        max_records: usize,
        max_wait: Duration,
    ) -> Result<Vec<LogRecord>, LogError> {
        self.inner.fetch(partition, from, max_records, max_wait).await
    }
}

/// A log whose submissions become durable in reverse order: each one waits
/// longer than the next.
fn late_first_log(inner: Arc<dyn Log>) -> InterceptedLog {
    let submitted = AtomicU64::new(0);
    let submit: Submit = Box::new(move |inner, record| {
        let n = submitted.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let durable = inner.submit(record).await?;
            // 0th waits 200 ms, 1st 190 ms, …: completion order is reversed.
            let delay = Duration::from_millis(200u64.saturating_sub(n % 20 * 10));
            let durable: Durable = Box::pin(async move {
                let outcome = durable.await;
                tokio::time::sleep(delay).await;
                outcome
            });
            Ok(durable)
        })
    });
    InterceptedLog { inner, submit }
}

/// A log that refuses every append while `failing` is set.
fn flaky_log(inner: Arc<dyn Log>, failing: Arc<AtomicBool>) -> InterceptedLog {
    let submit: Submit = Box::new(move |inner, record| {
        let failing = failing.load(Ordering::SeqCst);
        Box::pin(async move {
            if failing {
                return Err(LogError::Unavailable("injected failure".into()));
            }
            inner.submit(record).await
        })
    });
    InterceptedLog { inner, submit }
}

#[tokio::test]
async fn sends_that_become_durable_out_of_order_are_still_delivered_in_order() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = common::test_config(tmp.path().to_path_buf());
    let mut drivers = charcha::server::connect_drivers(&config).await.expect("drivers");
    drivers.log = Arc::new(late_first_log(drivers.log.clone()));
    let server = TestServer::start_config(config, Some(drivers)).await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let mut wa = a.ws(&server).await;
    let mut tab2 = a.ws(&server).await;
    let mut wb = b.ws(&server).await;
    for i in 0..20 {
        wa.send_text(&format!("late-{i}"), &b.id, &format!("n{i}")).await;
    }
    for i in 0..20 {
        let e = next_where(&mut wa, "ack", |e| e["type"] == "ack" || e["type"] == "error").await;
        assert_eq!(e["client_msg_id"], format!("late-{i}"), "acks in send order: {e}");
    }
    for ws in [&mut wb, &mut tab2] {
        for i in 0..20 {
            let e = next_where(ws, "message", |e| e["type"] == "message").await;
            assert_eq!(e["message"]["text"], format!("n{i}"), "live delivery in send order");
        }
    }
}

// ------------------------------------------------- 3. ack after the log

#[tokio::test]
async fn ack_means_the_record_is_already_in_the_log() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let mut wa = a.ws(&server).await;
    // Every partition is read from its start: the Kafka log has several.
    let reader = log_reader(&server).await;
    assert_eq!(reader.partitions().await.unwrap(), server.state().log.partitions().await.unwrap());
    for i in 0..3 {
        let cid = format!("durable-{i}");
        let m = send_ws(&mut wa, &cid, &b.id, "durable?").await;
        let id = m["_id"].as_str().unwrap();
        // Checked right after the ack, without waiting: the ack promises it.
        let records = all_records(reader.as_ref()).await;
        let in_log =
            records.iter().filter_map(|r| serde_json::from_slice::<ChatMessage>(&r.payload).ok()).any(|logged| {
                logged.id == id && logged.sender_id == a.id && logged.client_msg_id.as_deref() == Some(cid.as_str())
            });
        assert!(in_log, "acked message {id} must be in the log");
    }
    // REST send: the 201 also comes after the log.
    let (status, m) = send_rest(&a, &server, &b.id, json!({ "text": "via rest" })).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let records = all_records(reader.as_ref()).await;
    assert!(
        records.iter().any(
            |r| serde_json::from_slice::<ChatMessage>(&r.payload).is_ok_and(|x| x.id == m["_id"].as_str().unwrap())
        )
    );
}

#[tokio::test]
async fn failing_log_means_no_ack_no_delivery_and_a_clean_retry() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = common::test_config(tmp.path().to_path_buf());
    let mut drivers = charcha::server::connect_drivers(&config).await.expect("drivers");
    let failing = Arc::new(AtomicBool::new(false));
    drivers.log = Arc::new(flaky_log(drivers.log.clone(), failing.clone()));
    let server = TestServer::start_config(config, Some(drivers)).await;

    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let mut wa = a.ws(&server).await;
    let mut wb = b.ws(&server).await;

    failing.store(true, Ordering::SeqCst);
    wa.send_text("flaky-1", &b.id, "will this arrive?").await;
    let err = next_where(&mut wa, "error or ack", |e| e["type"] == "error" || e["type"] == "ack").await;
    assert_eq!(err["type"], "error", "no ack while the log fails: {err}");
    assert_eq!(err["code"], "unavailable");
    assert_eq!(err["client_msg_id"], "flaky-1");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));

    let (status, body) =
        send_rest(&a, &server, &b.id, json!({ "text": "rest too", "client_msg_id": "flaky-rest" })).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "503 body is {{message}}: {body}");

    // Nothing was delivered live, to the recipient or the sender's tabs.
    assert_eq!(wb.next_where(Duration::from_millis(500), |e| e["type"] == "message").await, None);
    assert_eq!(wa.next_where(Duration::from_millis(100), |e| e["type"] == "message" || e["type"] == "ack").await, None);
    // Nor stored.
    assert!(history_all(&a.http, &server.url, &b.id).await.is_empty());
    assert!(all_records(log_reader(&server).await.as_ref()).await.is_empty(), "nothing reached the log");

    // Recovery: the same client_msg_id now goes through, once.
    failing.store(false, Ordering::SeqCst);
    wa.send_text("flaky-1", &b.id, "will this arrive?").await;
    let ack = next_where(&mut wa, "ack or error", |e| e["type"] == "error" || e["type"] == "ack").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["client_msg_id"], "flaky-1");
    let id = ack["message"]["_id"].as_str().unwrap().to_string();
    assert_eq!(ack["message"]["text"], "will this arrive?");
    message_with_id(&mut wb, &id).await;

    let (status, rest_msg) =
        send_rest(&a, &server, &b.id, json!({ "text": "rest too", "client_msg_id": "flaky-rest" })).await;
    assert_eq!(status, StatusCode::CREATED, "{rest_msg}");
    let rest_id = rest_msg["_id"].as_str().unwrap().to_string();
    message_with_id(&mut wb, &rest_id).await;

    in_history(&a.http, &server, &b.id, &rest_id).await;
    in_history(&a.http, &server, &b.id, &id).await;
    worker_caught_up(&server).await;
    let history = history_all(&b.http, &server.url, &a.id).await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(count_id(&history, &id), 1);
    assert_eq!(count_id(&history, &rest_id), 1);
    drop(tmp);
}

// ------------------------------------------------------ 4. idempotency

#[tokio::test]
async fn resending_the_same_client_msg_id_is_idempotent() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let mut wa = a.ws(&server).await;
    let mut wb = b.ws(&server).await;

    let first = send_ws(&mut wa, "same-1", &b.id, "once").await;
    let second = send_ws(&mut wa, "same-1", &b.id, "once").await;
    assert_eq!(first["_id"], second["_id"], "a retry gets the first attempt's message");
    assert_eq!(first, second);
    let ws_id = first["_id"].as_str().unwrap().to_string();
    // A retry on a new connection (after a reconnect) is the same too.
    let mut wa2 = a.ws(&server).await;
    let third = send_ws(&mut wa2, "same-1", &b.id, "once").await;
    assert_eq!(third["_id"], ws_id.as_str());
    message_with_id(&mut wb, &ws_id).await;

    // Two tabs racing with the same id: still one message.
    wa.send_text("race-1", &b.id, "raced").await;
    wa2.send_text("race-1", &b.id, "raced").await;
    let r1 = ack_of(&mut wa, "race-1").await;
    let r2 = ack_of(&mut wa2, "race-1").await;
    assert_eq!(r1["message"]["_id"], r2["message"]["_id"]);
    let race_id = r1["message"]["_id"].as_str().unwrap().to_string();

    let body = json!({ "text": "rest once", "client_msg_id": "same-rest" });
    let (s1, r1) = send_rest(&a, &server, &b.id, body.clone()).await;
    let (s2, r2) = send_rest(&a, &server, &b.id, body).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED), "{r1} {r2}");
    assert_eq!(r1["_id"], r2["_id"]);
    let rest_id = r1["_id"].as_str().unwrap().to_string();
    assert_ne!(rest_id, ws_id);

    // Without a client_msg_id, each REST send is a new message.
    let (_, n1) = send_rest(&a, &server, &b.id, json!({ "text": "fresh" })).await;
    let (_, n2) = send_rest(&a, &server, &b.id, json!({ "text": "fresh" })).await;
    assert_ne!(n1["_id"], n2["_id"]);

    // The client_msg_id is per sender: B may use the same one.
    let b_msg = send_ws(&mut wb, "same-1", &a.id, "mine").await;
    assert_ne!(b_msg["_id"], ws_id.as_str());
    assert_eq!(b_msg["sender_id"], b.id.as_str());

    in_history(&a.http, &server, &b.id, b_msg["_id"].as_str().unwrap()).await;
    worker_caught_up(&server).await;
    let history = history_all(&a.http, &server.url, &b.id).await;
    assert_eq!(count_id(&history, &ws_id), 1, "{history:?}");
    assert_eq!(count_id(&history, &rest_id), 1);
    assert_eq!(count_id(&history, &race_id), 1);
    assert_eq!(history.len(), 6, "ws, race, rest, 2 fresh, b's: {history:?}");
}

// ------------------------------------------------------- 5. pagination

#[tokio::test]
async fn pagination_is_gap_free_and_duplicate_free() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let conversation_id = direct_conversation_id(&a.id, &b.id);
    let mut expected: Vec<String> = Vec::new();

    // 30 sent through REST, alternating senders.
    for i in 0..30 {
        let (sender, peer) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (status, m) = send_rest(sender, &server, &peer.id, json!({ "text": format!("rest {i}") })).await;
        assert_eq!(status, StatusCode::CREATED, "{m}");
        expected.push(m["_id"].as_str().unwrap().to_string());
    }
    // 60 stored directly with the SAME created_at (a burst within one ms).
    let created_at = charcha::server::clock::rfc3339(charcha::server::clock::now_ms());
    let mut generator = ulid::Generator::new();
    let burst: Vec<ChatMessage> = (0..60)
        .map(|i| {
            let (s, r) = if i % 3 == 0 { (&b.id, &a.id) } else { (&a.id, &b.id) };
            ChatMessage {
                id: generator.generate().expect("monotonic ulid").to_string(),
                conversation_id: conversation_id.clone(),
                sender_id: s.clone(),
                recipient_id: r.clone(),
                text: format!("burst {i}"),
                image: None,
                created_at: created_at.clone(),
                client_msg_id: None,
                edited_at: None,
                deleted: false,
                reply_to: None,
            }
        })
        .collect();
    assert_eq!(server.state().store.save_messages(burst.clone().into()).await.expect("save"), 60);
    expected.extend(burst.iter().map(|m| m.id.clone()));
    // 35 more through the WebSocket. Connected only now: a client that does
    // not read does not answer the server's pings either, and a connection
    // silent for 30 s is dropped as dead, so sockets left unread through a
    // slow REST phase would be gone by the time they are used.
    let mut wa = a.ws(&server).await;
    let mut wb = b.ws(&server).await;
    for i in 0..35 {
        let (ws, peer) = if i % 2 == 0 { (&mut wa, &b.id) } else { (&mut wb, &a.id) };
        let m = send_ws(ws, &format!("p-{i}"), peer, &format!("ws {i}")).await;
        expected.push(m["_id"].as_str().unwrap().to_string());
    }
    assert_eq!(expected.len(), 125);
    let mut sorted = expected.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 125, "all ids distinct");
    let expected = sorted;
    in_history(&a.http, &server, &b.id, expected.last().unwrap()).await;
    worker_caught_up(&server).await;

    // Page back with limit=50, prepending each page.
    let mut collected: Vec<String> = Vec::new();
    let mut before: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let path = match &before {
            None => format!("/api/messages/{}?limit=50", b.id),
            Some(id) => format!("/api/messages/{}?before={id}&limit=50", b.id),
        };
        let (status, page) = get(&a.http, &server.url, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let page_ids = ids(page["messages"].as_array().unwrap());
        let mut in_order = page_ids.clone();
        in_order.sort();
        assert_eq!(page_ids, in_order, "each page is oldest to newest");
        for m in page["messages"].as_array().unwrap() {
            assert_eq!(m["conversation_id"], conversation_id.as_str());
        }
        sizes.push(page_ids.len());
        before = page_ids.first().cloned();
        let has_more = page["has_more"].as_bool().unwrap();
        let mut next = page_ids;
        next.extend(collected);
        collected = next;
        if !has_more {
            break;
        }
        assert!(sizes.len() < 10, "paging does not terminate");
    }
    assert_eq!(sizes, vec![50, 50, 25]);
    assert_eq!(collected, expected, "concatenated pages = every id ascending, no gaps, no duplicates");

    // Exact multiple of the page size: the last page says has_more=false.
    let mut before: Option<String> = None;
    let mut pages = 0;
    let mut seen = Vec::new();
    loop {
        let path = match &before {
            None => format!("/api/messages/{}?limit=25", a.id),
            Some(id) => format!("/api/messages/{}?limit=25&before={id}", a.id),
        };
        let (_, page) = get(&b.http, &server.url, &path).await;
        let page_ids = ids(page["messages"].as_array().unwrap());
        pages += 1;
        assert!(!page_ids.is_empty(), "no empty trailing page");
        before = page_ids.first().cloned();
        seen.splice(0..0, page_ids);
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        assert!(pages < 10);
    }
    assert_eq!(pages, 5);
    assert_eq!(seen, expected, "the peer sees the same conversation");

    // Default limit 50; limit clamped to 100.
    let (_, page) = get(&a.http, &server.url, &format!("/api/messages/{}", b.id)).await;
    assert_eq!(ids(page["messages"].as_array().unwrap()), expected[75..].to_vec());
    assert_eq!(page["has_more"], true);
    let (_, page) = get(&a.http, &server.url, &format!("/api/messages/{}?limit=1000", b.id)).await;
    assert_eq!(ids(page["messages"].as_array().unwrap()), expected[25..].to_vec());
    assert_eq!(page["has_more"], true);
    // `before` the oldest: empty, no more.
    let (status, page) = get(&a.http, &server.url, &format!("/api/messages/{}?before={}", b.id, expected[0])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["messages"], json!([]));
    assert_eq!(page["has_more"], false);

    for bad in ["before=garbage", "before=", "limit=abc", "limit=-1"] {
        let (status, body) = get(&a.http, &server.url, &format!("/api/messages/{}?{bad}", b.id)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["message"].is_string(), "{bad}: {body}");
    }
}

#[tokio::test]
async fn before_cursor_is_case_insensitive_or_rejected_never_wrong() {
    // Ids are ULIDs, which parse case-insensitively, so `before` in lower
    // case passes validation; it must then mean the same message.
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let conversation_id = direct_conversation_id(&a.id, &b.id);
    let mut generator = ulid::Generator::new();
    let created_at = charcha::server::clock::rfc3339(charcha::server::clock::now_ms());
    let all: Vec<ChatMessage> = (0..10)
        .map(|i| ChatMessage {
            id: generator.generate().unwrap().to_string(),
            conversation_id: conversation_id.clone(),
            sender_id: a.id.clone(),
            recipient_id: b.id.clone(),
            text: format!("m{i}"),
            image: None,
            created_at: created_at.clone(),
            client_msg_id: None,
            edited_at: None,
            deleted: false,
            reply_to: None,
        })
        .collect();
    server.state().store.save_messages(all.clone().into()).await.unwrap();
    let cursor = &all[5].id;
    let (status, upper) = get(&a.http, &server.url, &format!("/api/messages/{}?before={cursor}", b.id)).await;
    assert_eq!(status, StatusCode::OK);
    let expected: Vec<String> = all[..5].iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids(upper["messages"].as_array().unwrap()), expected);
    let (status, lower) =
        get(&a.http, &server.url, &format!("/api/messages/{}?before={}", b.id, cursor.to_lowercase())).await;
    if status != StatusCode::BAD_REQUEST {
        assert_eq!(status, StatusCode::OK, "{lower}");
        assert_eq!(
            ids(lower["messages"].as_array().unwrap()),
            expected,
            "a lower-case cursor must not return messages at or after it"
        );
    }
}

// ------------------------------------------------------------- 6. authz

#[tokio::test]
async fn conversations_are_private_and_the_sender_cannot_be_forged() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let c = TestUser::signup(&server, "Cat").await;
    let mut wa = a.ws(&server).await;
    let mut wc = c.ws(&server).await;

    // Forged sender over the WebSocket.
    wa.send_json(
        json!({ "type": "send", "client_msg_id": "forge-1", "to": b.id, "text": "from B, honest", "sender_id": b.id }),
    )
    .await;
    let forged = ack_of(&mut wa, "forge-1").await["message"].clone();
    assert_eq!(forged["sender_id"], a.id.as_str(), "sender is the authenticated user");
    assert_eq!(forged["recipient_id"], b.id.as_str());
    // ... and over REST.
    let (status, rest) =
        send_rest(&a, &server, &b.id, json!({ "text": "also B", "sender_id": b.id, "recipient_id": c.id, "to": c.id }))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{rest}");
    assert_eq!(rest["sender_id"], a.id.as_str());
    assert_eq!(rest["recipient_id"], b.id.as_str(), "the path names the recipient, not the body");
    in_history(&b.http, &server, &a.id, rest["_id"].as_str().unwrap()).await;
    worker_caught_up(&server).await;
    let stored = history_all(&b.http, &server.url, &a.id).await;
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|m| m["sender_id"] == a.id.as_str()), "{stored:?}");

    // C only ever sees C's own conversations.
    assert!(wc.next_where(Duration::from_millis(200), |e| e["type"] == "message").await.is_none());
    for peer in [&a.id, &b.id] {
        let (status, page) = get(&c.http, &server.url, &format!("/api/messages/{peer}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["messages"], json!([]), "C↔{peer} is empty: {page}");
        assert_eq!(page["has_more"], false);
    }
    // There is no way to name the A–B conversation.
    let conv = direct_conversation_id(&a.id, &b.id);
    for path in [
        format!("/api/messages/{}", conv.replace(':', "%3A")),
        format!("/api/messages/{conv}"),
        format!("/api/messages/{}?before=&conversation_id={conv}", a.id),
    ] {
        let (status, body) = get(&c.http, &server.url, &path).await;
        assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND, "{path}: {status} {body}");
        assert!(!body.to_string().contains("from B, honest"), "{path} leaked: {body}");
    }
    let (_, page) = get(&c.http, &server.url, &format!("/api/messages/{}?conversation_id={conv}", a.id)).await;
    assert_eq!(page["messages"], json!([]), "query parameters cannot redirect to another conversation");

    // Unknown and malformed ids: 404 / 400, never 500.
    let unknown = ulid::Ulid::new().to_string();
    let (status, body) = get(&a.http, &server.url, &format!("/api/messages/{unknown}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = send_rest(&a, &server, &unknown, json!({ "text": "hi" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = get(&a.http, &server.url, "/api/messages/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = send_rest(&a, &server, "abc", json!({ "text": "hi" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let lowercase = unknown.to_lowercase();
    let (status, body) = get(&a.http, &server.url, &format!("/api/messages/{lowercase}")).await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, body) = get(&a.http, &server.url, &format!("/api/messages/{}", a.id)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "history with yourself: {body}");
    wa.send_text("to-unknown", &unknown, "hello?").await;
    let err = error_frame(&mut wa).await;
    assert_eq!((err["code"].as_str(), err["client_msg_id"].as_str()), (Some("invalid"), Some("to-unknown")), "{err}");
    wa.send_text("to-abc", "abc", "hello?").await;
    let err = error_frame(&mut wa).await;
    assert_eq!((err["code"].as_str(), err["client_msg_id"].as_str()), (Some("invalid"), Some("to-abc")), "{err}");

    // Unauthenticated.
    let anon = common::client();
    for path in ["/api/messages/users".to_string(), format!("/api/messages/{}", a.id)] {
        let (status, body) = get(&anon, &server.url, &path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
    let (status, _) =
        post_json(&anon, &server.url, &format!("/api/messages/send/{}", a.id), json!({ "text": "hi" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = body_json(
        anon.get(format!("{}/api/messages/users", server.url)).bearer_auth("not.a.token").send().await.unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// -------------------------------------------------------- 7. bad frames

#[tokio::test]
async fn bad_frames_get_errors_and_the_connection_survives() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let mut wa = a.ws(&server).await;
    let mut wb = b.ws(&server).await;
    wb.watch(&[&a.id]).await;

    ping_pong(&mut wa, 7).await;

    wa.send_raw(Message::Text("this is not json".into())).await;
    assert_eq!(error_frame(&mut wa).await["code"], "bad_frame");
    ping_pong(&mut wa, 7).await;

    wa.send_json(json!({ "type": "explode", "client_msg_id": "x" })).await;
    assert_eq!(error_frame(&mut wa).await["code"], "bad_frame");
    ping_pong(&mut wa, 7).await;

    // Neither `to` nor `conversation_id` (protocol 4: one of the two).
    wa.send_json(json!({ "type": "send", "client_msg_id": "no-to", "text": "where to?" })).await;
    let err = error_frame(&mut wa).await;
    assert_eq!(err["code"], "invalid");
    assert_eq!(err["client_msg_id"], "no-to", "the refused send is named: {err}");
    ping_pong(&mut wa, 7).await;

    wa.send_json(json!({ "type": "send", "to": b.id, "text": "no client_msg_id" })).await;
    assert_eq!(error_frame(&mut wa).await["code"], "bad_frame");
    ping_pong(&mut wa, 7).await;

    wa.send_json(json!({ "type": "send", "client_msg_id": 5, "to": b.id, "text": "x" })).await;
    assert_eq!(error_frame(&mut wa).await["code"], "bad_frame");
    ping_pong(&mut wa, 7).await;

    wa.send_text("too-long", &b.id, &"x".repeat(MAX_TEXT_CHARS + 1)).await;
    let err = error_frame(&mut wa).await;
    assert_eq!(err["code"], "invalid", "{err}");
    assert_eq!(err["client_msg_id"], "too-long");
    ping_pong(&mut wa, 7).await;

    // The limit counts characters, not bytes: 4,000 two-byte chars pass.
    let longest = send_ws(&mut wa, "longest", &b.id, &"é".repeat(MAX_TEXT_CHARS)).await;
    assert_eq!(longest["text"].as_str().unwrap().chars().count(), MAX_TEXT_CHARS);

    // Control characters (a NUL, an escape) are refused before the log, so
    // no acked message is one a store refuses; line breaks and tabs pass.
    for (cid, text) in [("nul", "a\u{0}b"), ("escape", "\u{1b}[2J")] {
        wa.send_text(cid, &b.id, text).await;
        let err = error_frame(&mut wa).await;
        assert_eq!(err["code"], "invalid", "{cid}: {err}");
        assert_eq!(err["client_msg_id"], cid);
        ping_pong(&mut wa, 7).await;
    }
    wa.send_json(json!({ "type": "send", "client_msg_id": "a\u{0}", "to": b.id, "text": "x" })).await;
    assert_eq!(error_frame(&mut wa).await["code"], "invalid");
    ping_pong(&mut wa, 7).await;

    for (cid, text) in [("empty", ""), ("blank", "  \n\t ")] {
        wa.send_text(cid, &b.id, text).await;
        let err = error_frame(&mut wa).await;
        assert_eq!(err["code"], "invalid", "{cid}: {err}");
        assert_eq!(err["client_msg_id"], cid);
        ping_pong(&mut wa, 7).await;
    }
    wa.send_json(json!({ "type": "send", "client_msg_id": "empty-image", "to": b.id, "text": "", "image": "" })).await;
    assert_eq!(error_frame(&mut wa).await["code"], "invalid");

    wa.send_text("to-self", &a.id, "talking to myself").await;
    let err = error_frame(&mut wa).await;
    assert_eq!(err["code"], "invalid", "{err}");
    assert_eq!(err["client_msg_id"], "to-self");

    wa.send_json(json!({ "type": "send", "client_msg_id": "k".repeat(65), "to": b.id, "text": "x" })).await;
    assert_eq!(error_frame(&mut wa).await["code"], "invalid", "client_msg_id over 64 bytes");
    ping_pong(&mut wa, 7).await;

    // None of that reached B.
    assert!(
        wb.next_where(Duration::from_millis(300), |e| e["type"] == "message" && e["message"]["_id"] != longest["_id"])
            .await
            .is_none()
    );
    // Line breaks and tabs are text, not control characters to refuse.
    let lines = send_ws(&mut wa, "lines", &b.id, "two\nlines\tand a tab").await;
    assert_eq!(lines["text"], "two\nlines\tand a tab");

    // Closing ones: binary → 1003, oversized text → 1009. Either way the
    // session is torn down fully: B sees A (whose only tab it was) go offline.
    let offline = |e: &Value| e["type"] == "presence" && e["user_id"] == a.id.as_str() && e["online"] == false;
    let online = |e: &Value| e["type"] == "presence" && e["user_id"] == a.id.as_str() && e["online"] == true;
    wa.send_raw(Message::Binary(vec![1u8, 2, 3].into())).await;
    assert_eq!(wa.close_code().await, Some(1003));
    next_where(&mut wb, "A offline after 1003", offline).await;

    let mut wa2 = a.ws(&server).await;
    next_where(&mut wb, "A online", online).await;
    wa2.send_raw(Message::Text("x".repeat(MAX_FRAME_BYTES + 4_000).into())).await;
    assert_eq!(wa2.close_code().await, Some(1009));
    next_where(&mut wb, "A offline after 1009", offline).await;

    // Exactly at the limit is not closed (it is just a bad frame)...
    let mut wa3 = a.ws(&server).await;
    wa3.send_raw(Message::Text(" ".repeat(MAX_FRAME_BYTES).into())).await;
    assert_eq!(error_frame(&mut wa3).await["code"], "bad_frame");
    ping_pong(&mut wa3, 8).await;
    // ...one byte more is, and so is a frame over the transport's hard cap.
    wa3.send_raw(Message::Text(" ".repeat(MAX_FRAME_BYTES + 1).into())).await;
    assert_eq!(wa3.close_code().await, Some(1009));
    let mut wa5 = a.ws(&server).await;
    wa5.send_raw(Message::Text("x".repeat(MAX_FRAME_BYTES * 4 + 1).into())).await;
    assert_eq!(wa5.close_code().await, Some(1009), "over tungstenite's cap");

    // A new connection works, and B's live chat was never affected.
    let mut wa4 = a.ws(&server).await;
    ping_pong(&mut wa4, 9).await;
    let m = send_ws(&mut wa4, "after", &b.id, "still here").await;
    message_with_id(&mut wb, m["_id"].as_str().unwrap()).await;
    let back = send_ws(&mut wb, "b-after", &a.id, "yes").await;
    message_with_id(&mut wa4, back["_id"].as_str().unwrap()).await;

    // Refused upgrades.
    let err = tokio_tungstenite::connect_async(server.ws_url()).await.expect_err("unauthenticated upgrade");
    assert_eq!(upgrade_status(err), 401);
    let req = ws_request(&server.ws_url(), "garbage");
    assert_eq!(upgrade_status(tokio_tungstenite::connect_async(req).await.expect_err("bad token")), 401);
    let mut req = ws_request(&server.ws_url(), &a.token);
    req.headers_mut().insert("origin", "http://evil.example".parse().unwrap());
    assert_eq!(upgrade_status(tokio_tungstenite::connect_async(req).await.expect_err("foreign origin")), 403);
    // The site's own origin is fine.
    let mut req = ws_request(&server.ws_url(), &a.token);
    req.headers_mut().insert("origin", server.url.parse().unwrap());
    let (_same, hello) = Ws::connect_request(req).await.unwrap_or_else(|e| panic!("same-origin upgrade: {e}"));
    assert_eq!(hello["type"], "hello");
}

// ---------------------------------------------------------- 8. presence

fn presence_of<'a>(user_id: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e| e["type"] == "presence" && e["user_id"] == user_id
}

async fn online_in_contacts(viewer: &TestUser, server: &TestServer, user_id: &str) -> bool {
    let (status, list) = get(&viewer.http, &server.url, "/api/messages/users").await;
    assert_eq!(status, StatusCode::OK);
    let entry = list.as_array().unwrap().iter().find(|c| c["_id"] == user_id).expect("listed").clone();
    entry["online"].as_bool().unwrap()
}

#[tokio::test]
async fn presence_counts_tabs() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let c = TestUser::signup(&server, "Cat").await;
    let (mut wc, hello) = connect_with_hello(&server, &c.token).await;
    assert_eq!(hello["protocol_version"], PROTOCOL_VERSION);
    assert_eq!(hello["user"]["_id"], c.id.as_str());
    assert!(hello["user"].get("password").is_none() && hello["user"].get("password_hash").is_none());
    assert!(hello.get("online").is_none(), "no global online list: {hello}");
    let batch = wc.watch(&[&a.id]).await;
    assert_eq!(batch, json!({ "type": "presence_batch", "online": [], "offline": [a.id] }));
    assert!(!online_in_contacts(&c, &server, &a.id).await);

    let mut tab1 = a.ws(&server).await;
    let p = next_where(&mut wc, "A online", presence_of(&a.id)).await;
    assert_eq!(p["online"], true);
    assert!(online_in_contacts(&c, &server, &a.id).await);

    let mut tab2 = a.ws(&server).await;
    assert_eq!(wc.next_where(Duration::from_millis(300), presence_of(&a.id)).await, None, "second tab: no event");

    // A newcomer watching A and C learns both are online from the batch.
    let (mut wb, _) = connect_with_hello(&server, &b.token).await;
    let batch = wb.watch(&[&a.id, &c.id]).await;
    let mut online: Vec<&str> = batch["online"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    online.sort();
    let mut want = vec![a.id.as_str(), c.id.as_str()];
    want.sort();
    assert_eq!(online, want, "{batch}");

    tab1.stream.close(None).await.expect("close tab 1");
    let hub = server.state().hub.clone();
    // B and C connected, plus A's tab 2.
    eventually(|| {
        let hub = hub.clone();
        async move { (hub.session_count() == 3).then_some(()) }
    })
    .await;
    assert_eq!(wc.next_where(Duration::from_millis(300), presence_of(&a.id)).await, None, "one tab left: still online");
    assert!(online_in_contacts(&c, &server, &a.id).await);

    drop(tab2.stream.close(None).await);
    let p = next_where(&mut wc, "A offline", presence_of(&a.id)).await;
    assert_eq!(p["online"], false);
    assert_eq!(next_where(&mut wb, "A offline (B)", presence_of(&a.id)).await["online"], false);
    assert!(!online_in_contacts(&c, &server, &a.id).await);

    // A tab dropped without a close handshake also ends presence.
    let tab3 = a.ws(&server).await;
    assert_eq!(next_where(&mut wc, "A online again", presence_of(&a.id)).await["online"], true);
    drop(tab3);
    assert_eq!(next_where(&mut wc, "A offline again", presence_of(&a.id)).await["online"], false);

    // Unwatched, A's comings and goings no longer reach C.
    wc.send_json(json!({ "type": "watch", "user_ids": [] })).await;
    ping_pong(&mut wc, 1).await;
    let _tab4 = a.ws(&server).await;
    assert_eq!(next_where(&mut wb, "A online (B)", presence_of(&a.id)).await["online"], true);
    assert_eq!(wc.next_where(Duration::from_millis(300), presence_of(&a.id)).await, None, "C stopped watching A");
}

/// Presence frames go to the sessions that show a user, not to everyone
/// online: 50 users connect, each watching two others, and each connect
/// sends exactly as many presence frames as there are watchers.
#[tokio::test]
async fn presence_frames_scale_with_watchers_not_with_everyone_online() {
    use charcha::server::metrics::METRICS;
    use std::sync::atomic::Ordering;

    let server = TestServer::start_with(|c| c.limits.auth_rate_per_minute = 1_000).await;
    let mut users = Vec::new();
    for i in 0..50u8 {
        let name = format!("User{}{}", (b'A' + i / 26) as char, (b'A' + i % 26) as char);
        users.push(TestUser::signup(&server, &name).await);
    }
    let mut sockets = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mut ws = u.ws(&server).await;
        let (next, after) = (&users[(i + 1) % 50], &users[(i + 2) % 50]);
        ws.watch(&[&next.id, &after.id]).await;
        sockets.push(ws);
    }
    // Everyone is connected and watching two others; each user has two watchers.
    let viewer = TestUser::signup(&server, "Viewer").await;
    let mut watcher = viewer.ws(&server).await;
    watcher.watch(&[&users[0].id]).await;
    let before = METRICS.presence_frames.load(Ordering::Relaxed);
    // User 0 goes offline: its three watchers hear it, nobody else.
    drop(sockets.remove(0));
    next_where(&mut watcher, "user 0 offline", presence_of(&users[0].id)).await;
    // The in-process bus queues for every watcher in one call, so the count
    // is complete once one of them has the frame.
    assert_eq!(server.state().hub.watcher_count(&users[0].id), 3);
    // Other tests in this binary share the counter: at least our three, and
    // far fewer than the 50 a broadcast to everyone online would send.
    let sent = METRICS.presence_frames.load(Ordering::Relaxed) - before;
    assert!((3..50).contains(&sent), "presence frames for one disconnect: {sent}");
    // Watched ids must be user ids, and a watch is bounded.
    watcher.send_json(json!({ "type": "watch", "user_ids": ["not-an-id"] })).await;
    assert_eq!(error_frame(&mut watcher).await["code"], "invalid");
    let too_many: Vec<String> = (0..=charcha::protocol::MAX_WATCHED).map(|_| ulid::Ulid::new().to_string()).collect();
    watcher.send_json(json!({ "type": "watch", "user_ids": too_many })).await;
    assert_eq!(error_frame(&mut watcher).await["code"], "invalid");
    ping_pong(&mut watcher, 2).await;
}

#[tokio::test]
async fn a_client_that_stopped_reading_is_kicked_promptly() {
    // A session whose outgoing queue overflows is kicked. That must hold
    // even when its socket is already full (the peer stopped reading), not
    // only when the writer happens to be idle.
    let server = TestServer::start_with(|c| c.limits.ws_queue = 8).await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let mut wb = b.ws(&server).await;
    wb.watch(&[&a.id]).await;
    let stalled = a.ws(&server).await; // never read from again
    assert_eq!(next_where(&mut wb, "A online", presence_of(&a.id)).await["online"], true);

    let state = server.state();
    let frame = bytes::Bytes::from(format!(r#"{{"type":"noop","pad":"{}"}}"#, "x".repeat(60_000)));
    let mut published = 0;
    // Feed A's session at a pace its writer keeps up with until the socket
    // buffers are full; then the queue overflows and the hub kicks it.
    while published < 2_000 && state.hub.session_count() == 2 {
        state.bus.publish(charcha::server::bus::Audience::User(a.id.clone()), frame.clone()).await.expect("publish");
        published += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Well under the 30 s idle timeout, which would end it eventually anyway.
    let hub = state.hub.clone();
    eventually(move || {
        let hub = hub.clone();
        async move { (hub.session_count() == 1).then_some(()) }
    })
    .await;
    let p = next_where(&mut wb, "A offline", presence_of(&a.id)).await;
    assert_eq!(p["online"], false);
    // B, a reader, was never affected.
    ping_pong(&mut wb, 3).await;
    drop(stalled);
}

// ------------------------------------------------------------ 9. images

async fn upload(
    user_http: &reqwest::Client,
    server: &TestServer,
    to: &str,
    data: Vec<u8>,
    name: &str,
) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new()
        .text("to", to.to_string())
        .part("image", reqwest::multipart::Part::bytes(data).file_name(name.to_string()));
    body_json(user_http.post(format!("{}/api/media", server.url)).multipart(form).send().await.expect("upload")).await
}

#[tokio::test]
async fn message_images_are_private_to_the_conversation() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let c = TestUser::signup(&server, "Cat").await;
    let mut wa = a.ws(&server).await;
    let mut wb = b.ws(&server).await;

    let (status, body) = upload(&a.http, &server, &b.id, png(), "dot.png").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = body["url"].as_str().expect("url").to_string();
    assert!(url.starts_with("/api/media/"), "{url}");

    wa.send_json(json!({ "type": "send", "client_msg_id": "img-1", "to": b.id, "text": "", "image": url })).await;
    let ack = next_where(&mut wa, "ack or error", |e| e["type"] == "ack" || e["type"] == "error").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["message"]["image"], url.as_str());
    assert_eq!(ack["message"]["text"], "");
    let live = message_with_id(&mut wb, ack["message"]["_id"].as_str().unwrap()).await;
    assert_eq!(live["message"]["image"], url.as_str());

    let resp = b.http.get(format!("{}{url}", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), png());
    let resp = a.http.get(format!("{}{url}", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the uploader sees it too");
    let resp = c.http.get(format!("{}{url}", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "outsiders get 404");
    let resp = common::client().get(format!("{}{url}", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "anonymous gets 404");
    let resp = b.http.get(format!("{}/api/media/{}", server.url, ulid::Ulid::new())).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = b.http.get(format!("{}/api/media/abc", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Content decides, not the file name.
    let (status, body) = upload(&a.http, &server, &b.id, b"just some text".to_vec(), "fake.png").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, body) =
        upload(&a.http, &server, &b.id, b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(), "x.svg").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, body) = upload(&common::client(), &server, &b.id, png(), "dot.png").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = upload(&a.http, &server, &a.id, png(), "dot.png").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "image for yourself: {body}");

    // Images A may not use in A→B: C's upload, A's upload for A→C, foreign URLs.
    let (status, body) = upload(&c.http, &server, &a.id, png(), "c.png").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let c_url = body["url"].as_str().unwrap().to_string();
    let (_, body) = upload(&a.http, &server, &c.id, png(), "ac.png").await;
    let a_to_c_url = body["url"].as_str().unwrap().to_string();
    let bad_urls = [
        c_url.clone(),
        a_to_c_url.clone(),
        "https://evil.example/x.png".to_string(),
        format!("/api/media/{}", ulid::Ulid::new()),
        "/api/media/../../etc/passwd".to_string(),
    ];
    for (i, bad) in bad_urls.iter().enumerate() {
        let cid = format!("bad-img-{i}");
        wa.send_json(json!({ "type": "send", "client_msg_id": cid, "to": b.id, "text": "look", "image": bad })).await;
        let err = next_where(&mut wa, "ack or error", |e| e["type"] == "ack" || e["type"] == "error").await;
        assert_eq!(err["type"], "error", "{bad}: {err}");
        assert_eq!(err["code"], "invalid", "{bad}: {err}");
        assert_eq!(err["client_msg_id"], cid.as_str());
        let (status, body) = send_rest(&a, &server, &b.id, json!({ "text": "look", "image": bad })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    // B still cannot see C's image, and nothing but the first image reached B.
    let resp = b.http.get(format!("{}{c_url}", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(wb.next_where(Duration::from_millis(300), |e| e["type"] == "message").await.is_none());
    // The legitimate one works over REST too, with a caption.
    let (status, body) = send_rest(&a, &server, &b.id, json!({ "text": "again", "image": url })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["image"], url.as_str());
}

#[tokio::test]
async fn media_revalidation_keeps_private_images_private() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let c = TestUser::signup(&server, "Cat").await;
    let (status, body) = upload(&a.http, &server, &b.id, png(), "dot.png").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = format!("{}{}", server.url, body["url"].as_str().expect("url"));

    let resp = b.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "private, max-age=31536000, immutable");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let etag = resp.headers()["etag"].clone();
    // A member revalidating gets 304, without a body.
    let resp = b.http.get(&url).header("if-none-match", etag.clone()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(resp.headers()["etag"], etag);
    assert_eq!(resp.headers()["cache-control"], "private, max-age=31536000, immutable");
    assert!(resp.bytes().await.unwrap().is_empty());
    // Knowing the ETag (it is the id) tells outsiders nothing.
    let resp = c.http.get(&url).header("if-none-match", etag.clone()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "non-member revalidating");
    let resp = common::client().get(&url).header("if-none-match", etag.clone()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "anonymous revalidating");
    let resp =
        common::client().get(&url).bearer_auth("not-a-token").header("if-none-match", etag).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "bad token revalidating");

    // Avatars are public: a bad token does not get in the way.
    let form =
        reqwest::multipart::Form::new().part("avatar", reqwest::multipart::Part::bytes(png()).file_name("me.png"));
    let (status, body) =
        body_json(a.http.put(format!("{}/api/auth/update-profile", server.url)).multipart(form).send().await.unwrap())
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let avatar = format!("{}{}", server.url, body["user"]["profile_picture"].as_str().expect("avatar"));
    let resp = common::client().get(&avatar).bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), png());
}

/// Profile edits reach the sessions that show the user as `contact`
/// events, with the user's presence; sign-ups reach nobody (nobody shows a
/// user who did not exist), and sessions not showing the user hear nothing.
#[tokio::test]
async fn contact_changes_reach_the_users_watchers_only() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let cat = TestUser::signup(&server, "Cat").await;
    let mut watcher = ann.ws(&server).await;
    let mut bystander = cat.ws(&server).await;
    let contact_of = |id: String| move |e: &Value| e["type"] == "contact" && e["contact"]["_id"] == id.as_str();

    let bob = TestUser::signup(&server, "Bob").await;
    assert_eq!(
        watcher.next_where(Duration::from_millis(300), contact_of(bob.id.clone())).await,
        None,
        "a sign-up is not broadcast"
    );

    // Ann shows Bob; Bob, connected, edits his profile.
    watcher.watch(&[&bob.id]).await;
    let _bob_tab = bob.ws(&server).await;
    let form = reqwest::multipart::Form::new().text("full_name", "Bob Renamed");
    let (status, body) = body_json(
        bob.http.put(format!("{}/api/auth/update-profile", server.url)).multipart(form).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let e = next_where(&mut watcher, "Bob's profile edit", contact_of(bob.id.clone())).await;
    assert_eq!(e["contact"]["full_name"], "Bob Renamed", "{e}");
    assert_eq!(e["contact"]["online"], true, "{e}");
    assert_eq!(bystander.next_where(Duration::from_millis(300), contact_of(bob.id.clone())).await, None);
}

// ------------------------------------------------------------ 10. worker

#[tokio::test]
async fn a_send_that_reached_the_log_twice_under_two_ids_is_stored_once() {
    // A retry whose send claim was lost (Redis restarted or unreachable)
    // reaches the log as a second message with a new id but the same
    // sender and client_msg_id: history keeps the first one only.
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let (status, first) = send_rest(&a, &server, &b.id, json!({ "text": "once", "client_msg_id": "twice-1" })).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    in_history(&a.http, &server, &b.id, first["_id"].as_str().unwrap()).await;
    let mut again: ChatMessage = serde_json::from_value(first.clone()).unwrap();
    again.id = ulid::Ulid::new().to_string();
    let store = &server.state().store;
    assert_eq!(
        store.save_messages(Arc::from([again.clone()])).await.expect("save"),
        0,
        "the duplicate send is not new"
    );
    // Messages without a client id never collide with each other.
    let mut plain = again.clone();
    plain.client_msg_id = None;
    let mut plain2 = plain.clone();
    plain.id = ulid::Ulid::new().to_string();
    plain2.id = ulid::Ulid::new().to_string();
    assert_eq!(store.save_messages(Arc::from([plain.clone(), plain2.clone()])).await.expect("save"), 2);
    let stored = ids(&history_all(&a.http, &server.url, &b.id).await);
    let mut want = vec![first["_id"].as_str().unwrap().to_string(), plain.id, plain2.id];
    want.sort();
    assert_eq!(stored, want);
}

#[tokio::test]
async fn replaying_the_log_is_harmless() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    for i in 0..8 {
        let (sender, peer) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (status, body) =
            send_rest(sender, &server, &peer.id, json!({ "text": format!("m{i}"), "client_msg_id": format!("r{i}") }))
                .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // A retry appends the same message to the log a second time.
    let (_, again) = send_rest(&a, &server, &b.id, json!({ "text": "m0", "client_msg_id": "r0" })).await;
    worker_caught_up(&server).await;
    let before = history_all(&a.http, &server.url, &b.id).await;
    assert_eq!(before.len(), 8);
    assert_eq!(count_id(&before, again["_id"].as_str().unwrap()), 1);

    let st = server.state();
    // The log's own checkpoint name ("local", or the Kafka topic) and every
    // partition (one conversation uses one, but which one is the log's call).
    let stream = st.log.stream().to_string();
    let reader = log_reader(&server).await;
    // The local log finds the retry's claim in the same file and appends
    // nothing; Kafka re-appends the first attempt (its claim is in Redis).
    let appends = if common::scaled() { 9 } else { 8 };
    assert_eq!(all_records(reader.as_ref()).await.len(), appends, "{appends} appends");
    let ends = partition_ends(reader.as_ref()).await;
    if !common::scaled() {
        assert_eq!(ends, vec![(0, 9)], "one local partition; offsets start at 1");
    }
    for &(p, end) in &ends {
        assert_eq!(st.store.load_offset(&stream, p).await.unwrap().unwrap_or(0), end, "partition {p} caught up");
        st.store.save_offset(&stream, p, 0).await.unwrap();
    }
    // A second worker over the whole log, from the start, next to the
    // server's own (which has nothing new to do).
    let partitions: Vec<i32> = ends.iter().map(|&(p, _)| p).collect();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let replay =
        tokio::spawn(charcha::server::worker::run(st.store.clone(), reader.clone(), partitions, shutdown.clone()));
    let (store, stream2, ends2) = (st.store.clone(), stream.clone(), ends.clone());
    eventually_within(PATIENCE, move || {
        let (store, stream, ends) = (store.clone(), stream2.clone(), ends2.clone());
        async move {
            for (p, end) in ends {
                if store.load_offset(&stream, p).await.ok()?? < end {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), replay).await.expect("worker stops on cancel").unwrap();

    let after = history_all(&a.http, &server.url, &b.id).await;
    assert_eq!(after, before, "replay changed nothing");
    for (p, end) in ends {
        assert_eq!(st.store.load_offset(&stream, p).await.unwrap(), Some(end), "partition {p}");
    }
}

#[tokio::test]
async fn undecodable_log_record_does_not_stop_the_worker() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let (_, first) = send_rest(&a, &server, &b.id, json!({ "text": "before" })).await;
    in_history(&a.http, &server, &b.id, first["_id"].as_str().unwrap()).await;

    let st = server.state();
    let bad: [&[u8]; 2] = [b"not json", br#"{"_id":"truncated"#];
    for (i, (key, payload)) in [("x", bad[0]), ("y", bad[1])].into_iter().enumerate() {
        let record = SendRecord {
            key: key.into(),
            sender_id: "bad-sender".into(),
            client_msg_id: format!("bad-{i}"),
            payload: String::from_utf8(payload.to_vec()).unwrap(),
        };
        log::append(st.log.as_ref(), record).await.unwrap();
    }
    let (status, after) = send_rest(&b, &server, &a.id, json!({ "text": "after" })).await;
    assert_eq!(status, StatusCode::CREATED);
    in_history(&a.http, &server, &b.id, after["_id"].as_str().unwrap()).await;
    worker_caught_up(&server).await;
    assert_eq!(
        ids(&history_all(&a.http, &server.url, &b.id).await),
        vec![first["_id"].as_str().unwrap(), after["_id"].as_str().unwrap()]
    );

    // The bad records were dead-lettered, not dropped silently: each under
    // the partition and offset it has in the log (keys "x" and "y" may land
    // in different Kafka partitions).
    let mut where_in_log: Vec<(i32, i64, Vec<u8>)> = all_records(log_reader(&server).await.as_ref())
        .await
        .into_iter()
        .filter(|r| bad.contains(&r.payload.as_slice()))
        .map(|r| (r.partition, r.offset, r.payload))
        .collect();
    where_in_log.sort();
    if !common::scaled() {
        assert_eq!(where_in_log, vec![(0, 2, bad[0].to_vec()), (0, 3, bad[1].to_vec())]);
    }
    assert_eq!(where_in_log.len(), 2, "both bad records are in the log once: {where_in_log:?}");
    let dead = dead_letters(&server).await;
    let dead_at: Vec<(i32, i64, Vec<u8>)> =
        dead.iter().map(|(_, p, o, payload, _)| (*p, *o, payload.clone())).collect();
    assert_eq!(dead_at, where_in_log);
    for (stream, _, _, _, error) in &dead {
        assert_eq!(stream, st.log.stream());
        assert!(!error.is_empty(), "the decode error is kept");
    }

    // And the worker is still going.
    let (_, later) = send_rest(&a, &server, &b.id, json!({ "text": "later" })).await;
    in_history(&b.http, &server, &a.id, later["_id"].as_str().unwrap()).await;
}

// ------------------------------------------------------ 11. REST parity

#[tokio::test]
async fn rest_api_matches_the_websocket() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let c = TestUser::signup(&server, "Cat").await;
    let mut wb = b.ws(&server).await;

    let (status, list) = get(&a.http, &server.url, "/api/messages/users").await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().expect("array").clone();
    let listed: HashSet<&str> = list.iter().map(|u| u["_id"].as_str().unwrap()).collect();
    assert_eq!(listed, HashSet::from([b.id.as_str(), c.id.as_str()]), "every other user, not me");
    for u in &list {
        let keys: HashSet<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, HashSet::from(["_id", "full_name", "profile_picture", "bio", "online"]), "{u}");
        assert!(!u.to_string().contains("@example.com"), "no email: {u}");
    }
    let bob = list.iter().find(|u| u["_id"] == b.id.as_str()).unwrap();
    assert_eq!(bob["full_name"], "Bob");
    assert_eq!(bob["online"], true);
    assert_eq!(list.iter().find(|u| u["_id"] == c.id.as_str()).unwrap()["online"], false);

    let (status, m) = send_rest(&a, &server, &b.id, json!({ "text": "hi" })).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let parsed: ChatMessage = serde_json::from_value(m.clone()).expect("a ChatMessage");
    assert_eq!(parsed.sender_id, a.id);
    assert_eq!(parsed.recipient_id, b.id);
    assert_eq!(parsed.text, "hi");
    assert!(parsed.client_msg_id.is_some_and(|c| !c.is_empty()), "generated idempotency key");
    let live = message_with_id(&mut wb, &parsed.id).await;
    assert_eq!(live["message"], m);
    // Bearer auth works as well as the cookie.
    let resp = common::client()
        .post(format!("{}/api/messages/send/{}", server.url, b.id))
        .bearer_auth(&a.token)
        .json(&json!({ "text": "with a bearer token" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    let long = "y".repeat(MAX_TEXT_CHARS + 1);
    for (what, body) in [
        ("{}", json!({})),
        ("empty text", json!({ "text": "" })),
        ("blank text", json!({ "text": "   " })),
        ("null text", json!({ "text": null })),
        ("4001 chars", json!({ "text": long })),
        ("text is a number", json!({ "text": 5 })),
        ("long client_msg_id", json!({ "text": "x", "client_msg_id": "k".repeat(65) })),
        ("empty client_msg_id", json!({ "text": "x", "client_msg_id": "" })),
    ] {
        let (status, resp) = send_rest(&a, &server, &b.id, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {resp}");
        assert!(resp["message"].is_string(), "{what}: {resp}");
    }
    let (status, resp) = send_rest(&a, &server, &b.id, json!({ "text": "z".repeat(MAX_TEXT_CHARS) })).await;
    assert_eq!(status, StatusCode::CREATED, "exactly the limit: {resp}");

    let url = format!("{}/api/messages/send/{}", server.url, b.id);
    let (status, resp) = body_json(
        a.http.post(&url).header("content-type", "application/json").body("{\"text\": ").send().await.unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "malformed JSON: {resp}");
    assert!(resp["message"].is_string());
    let (status, resp) = body_json(
        a.http.post(&url).header("content-type", "text/plain").body(r#"{"text":"hi"}"#).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{resp}");
    let (status, _) = body_json(a.http.post(&url).body(r#"{"text":"hi"}"#).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "no content type");
    let (status, _) = body_json(
        a.http
            .post(&url)
            .header("content-type", "application/json")
            .body(format!(r#"{{"text":"{}"}}"#, "x".repeat(70_000)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::BAD_REQUEST, "{status}");

    // Only the valid sends were delivered: hi, bearer, the 4000-char one.
    let mut texts = Vec::new();
    while let Some(e) = wb.next_where(Duration::from_millis(300), |e| e["type"] == "message").await {
        texts.push(e["message"]["text"].as_str().unwrap().chars().count());
    }
    assert_eq!(texts, vec!["with a bearer token".len(), MAX_TEXT_CHARS]);
}

// ---------------------------------------------------- 12. after restart

#[tokio::test]
async fn history_survives_a_restart() {
    let server = TestServer::start().await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let mut wa = a.ws(&server).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(
            send_ws(&mut wa, &format!("keep-{i}"), &b.id, &format!("kept {i}")).await["_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (_, rest) = send_rest(&b, &server, &a.id, json!({ "text": "rest kept", "client_msg_id": "keep-rest" })).await;
    sent.push(rest["_id"].as_str().unwrap().to_string());
    in_history(&a.http, &server, &b.id, sent.last().unwrap()).await;

    let server = server.restart().await;
    assert_eq!(wa.close_code().await, Some(1001), "shutdown closes sessions with 1001 going away");
    assert_eq!(ids(&history_all(&a.http, &server.url, &b.id).await), sent, "history is durable");
    assert_eq!(ids(&history_all(&b.http, &server.url, &a.id).await), sent);

    // Idempotency keys survive too: a retry after the restart is the same message.
    let mut wa = a.ws(&server).await;
    let again = send_ws(&mut wa, "keep-0", &b.id, "kept 0").await;
    assert_eq!(again["_id"], sent[0].as_str());
    // New messages sort after the old ones and reach history.
    let new = send_ws(&mut wa, "new-1", &b.id, "after restart").await;
    let new_id = new["_id"].as_str().unwrap().to_string();
    assert!(new_id > *sent.last().unwrap());
    in_history(&b.http, &server, &a.id, &new_id).await;
    worker_caught_up(&server).await;
    let mut expected = sent.clone();
    expected.push(new_id);
    assert_eq!(ids(&history_all(&a.http, &server.url, &b.id).await), expected, "no duplicates after restart");
}

#[tokio::test]
async fn records_only_in_the_log_reach_history_after_a_restart() {
    // The worker may be behind when the server stops; the log is the source
    // of truth and the next worker resumes from its checkpoint.
    // Embedded: the log file beside the store; scaled: the Kafka topic, with
    // the checkpoint in MongoDB. The same config (data dir, topic, database,
    // key prefix) serves both runs.
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = common::test_config(tmp.path().to_path_buf());
    let server = TestServer::start_config(config.clone(), None).await;
    let a = TestUser::signup(&server, "Ann").await;
    let b = TestUser::signup(&server, "Bob").await;
    let (_, m) = send_rest(&a, &server, &b.id, json!({ "text": "stored" })).await;
    let first = m["_id"].as_str().unwrap().to_string();
    in_history(&a.http, &server, &b.id, &first).await;
    worker_caught_up(&server).await;
    server.stop().await;

    // While no server (and so no worker) runs: a well-formed record lands
    // in the log only (an ack that raced the shutdown), plus the replay of
    // an old one. Appended through the configured log driver.
    let drivers = charcha::server::connect_drivers(&config).await.expect("drivers");
    let log = drivers.log.clone();
    let first_message: ChatMessage = serde_json::from_value(m.clone()).unwrap();
    let mut later = first_message.clone();
    later.id = ulid::Ulid::new().to_string();
    later.text = "only in the log".into();
    later.client_msg_id = Some("log-only".into());
    let later_record = SendRecord::of_message(&later).unwrap();
    assert_eq!(log::append(log.as_ref(), later_record).await.unwrap(), Appended::New);
    // A replay of the first message as the log would redeliver it: same
    // message id, not caught by the send claim (another claim key).
    let replay = SendRecord { client_msg_id: "replay".into(), ..SendRecord::of_message(&first_message).unwrap() };
    assert_eq!(log::append(log.as_ref(), replay).await.unwrap(), Appended::New);
    drop(log);
    let stored = drivers.store.messages_before(&later.conversation_id, None, 10).await.expect("history");
    assert_eq!(
        stored.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec![first.as_str()],
        "the new record is only in the log"
    );
    drivers.shutdown.cancel();
    drop(drivers);

    let server = TestServer::start_config(config, None).await;
    in_history(&a.http, &server, &b.id, &later.id).await;
    worker_caught_up(&server).await;
    let all = history_all(&b.http, &server.url, &a.id).await;
    assert_eq!(ids(&all), vec![first, later.id.clone()]);
    server.stop().await;
}

#[tokio::test]
async fn sends_are_rate_limited_per_user_across_sessions() {
    let server = TestServer::start_with(|c| c.limits.send_rate_per_minute = 3).await;
    let a = TestUser::signup(&server, "Fast").await;
    let b = TestUser::signup(&server, "Peer").await;
    let mut tab1 = a.ws(&server).await;
    let mut tab2 = a.ws(&server).await;
    for i in 0..3 {
        let ws = if i == 1 { &mut tab2 } else { &mut tab1 };
        let cid = format!("ok-{i}");
        ws.send_text(&cid, &b.id, "hi").await;
        ack_of(ws, &cid).await;
    }
    // The fourth send in the minute, from either tab, is refused clearly.
    tab2.send_text("too-many", &b.id, "hi").await;
    let e = next_where(&mut tab2, "error", |e| e["type"] == "error" && e["client_msg_id"] == "too-many").await;
    assert_eq!(e["code"], "rate_limited", "{e}");
    let secs = e["retry_after"].as_u64().expect("retry_after");
    assert!((1..=60).contains(&secs), "{e}");
    assert!(e["message"].as_str().unwrap_or_default().contains("try again in"), "{e}");
    let r = a
        .http
        .post(format!("{}/api/messages/send/{}", server.url, b.id))
        .json(&json!({ "text": "rest too" }))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    // Another user is unaffected, and the connection still works.
    let mut wb = b.ws(&server).await;
    wb.send_text("b-1", &a.id, "hello").await;
    ack_of(&mut wb, "b-1").await;
    tab2.send_json(json!({ "type": "ping", "nonce": 9 })).await;
    next_where(&mut tab2, "pong", |e| e["type"] == "pong" && e["nonce"] == 9).await;
    server.stop().await;
}
