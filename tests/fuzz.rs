//! Bounded fuzzing with proptest of everything that parses untrusted input:
//! WebSocket frames (alone and through a live gateway), REST JSON bodies and
//! credentials, log records, session tokens and uploaded images. Each
//! property has a fixed case count, so the file runs in well under a minute
//! in a debug build; the properties are what a longer `cargo fuzz` run would
//! check too: never a panic or a 5xx, always a typed refusal, and what is
//! valid round-trips.
//!
//! Failures are not persisted to files (`failure_persistence: None`): the
//! runner prints the shrunk input, which belongs in a regular test.

mod common;

use std::{path::Path, time::Duration};

use charcha::{
    api::dto::ChatMessage,
    protocol::{ClientEvent, ErrorCode, ServerEvent},
    server::{
        auth::token::{Claims, TokenService},
        image_meta::strip_metadata,
        log::{Log, SendRecord, append, decode_record, local::LocalLog},
    },
};
use common::{TestServer, TestUser, client};
use futures_util::{SinkExt, StreamExt};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// `cases` cases, no regression files, no shrinking marathon.
fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, max_shrink_iters: 256, ..Config::default() }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        "(?s).{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("(?s).{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field's value: mostly a string (what the field expects), else anything.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![3 => "(?s).{0,60}".prop_map(Value::String), 1 => json_value()]
}

/// A JSON object with some of `keys`, each with an arbitrary value: the
/// shape a route expects, with wrong types, missing fields and odd text.
fn object_with(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec(prop::option::of(field_value()), keys.len()).prop_map(move |values| {
        Value::Object(keys.iter().zip(values).filter_map(|(k, v)| v.map(|v| ((*k).to_string(), v))).collect())
    })
}

/// A client frame: a known or unknown `type` with arbitrary fields, `to`
/// and `user_ids` sometimes naming a real user.
fn client_frame(peer: String) -> impl Strategy<Value = Value> {
    let kind =
        prop_oneof![Just("send".to_string()), Just("watch".to_string()), Just("ping".to_string()), "(?s).{0,12}"];
    let id = prop_oneof![Just(Value::String(peer)), field_value()];
    let ids = prop_oneof![prop::collection::vec(id.clone(), 0..5).prop_map(Value::Array), json_value()];
    (kind, object_with(&["client_msg_id", "text", "image", "nonce"]), prop::option::of(id), prop::option::of(ids))
        .prop_map(|(kind, mut frame, to, ids)| {
            frame["type"] = Value::String(kind);
            if let Some(to) = to {
                frame["to"] = to;
            }
            if let Some(ids) = ids {
                frame["user_ids"] = ids;
            }
            frame
        })
}

// ------------------------------------------------------ WebSocket frames

proptest! {
    #![proptest_config(config(4096))]

    /// The frame decoder: any text is a `ClientEvent` or a serde error, and
    /// what parses serialises back to the same event.
    #[test]
    fn any_text_is_a_client_event_or_a_typed_error(text in "(?s).{0,200}") {
        if let Ok(event) = serde_json::from_str::<ClientEvent>(&text) {
            let again = serde_json::to_string(&event).expect("serialises");
            prop_assert_eq!(serde_json::from_str::<ClientEvent>(&again).expect("round trip"), event);
        }
    }

    #[test]
    fn structured_frames_are_client_events_or_typed_errors(frame in client_frame("01J00000000000000000000000".into())) {
        if let Ok(event) = serde_json::from_value::<ClientEvent>(frame.clone()) {
            let again = serde_json::to_value(&event).expect("serialises");
            prop_assert_eq!(serde_json::from_value::<ClientEvent>(again).expect("round trip"), event);
        }
    }
}

/// Arbitrary frames through a live gateway: every frame is answered only
/// with well-formed server events, an unreadable one with `bad_frame`, and
/// the connection survives all of them (a ping after each gets its pong).
#[test]
fn the_gateway_answers_any_frame_with_typed_events_and_stays_up() {
    let rt = runtime();
    let (server, ann, bob) = rt.block_on(async {
        let server = TestServer::start_with(|c| c.limits.send_rate_per_minute = 1_000_000).await;
        let ann = TestUser::signup(&server, "Ann").await;
        let bob = TestUser::signup(&server, "Bob").await;
        (server, ann, bob)
    });
    let ws = std::cell::Cell::new(Some(rt.block_on(ann.ws(&server))));
    let frames = prop_oneof![
        "(?s).{0,300}",
        client_frame(bob.id.clone()).prop_map(|f| f.to_string()),
        // Valid sends, so the pipeline's success path is fuzzed too.
        ("(?s).{0,40}", "(?s).{1,80}").prop_map({
            let to = bob.id.clone();
            move |(id, text)| json!({ "type": "send", "client_msg_id": id, "to": to, "text": text }).to_string()
        }),
    ];
    let nonce = std::cell::Cell::new(0u64);
    let mut runner = TestRunner::new(config(200));
    // The runner takes an `Fn`: the socket is lent to each case in turn.
    let result = runner.run(&frames, |text| {
        nonce.set(nonce.get() + 1);
        let mut socket = ws.take().ok_or_else(|| fail("the socket was lost by an earlier case"))?;
        let outcome = rt.block_on(probe(&mut socket, &text, nonce.get()));
        ws.set(Some(socket));
        outcome
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(server.stop());
}

/// Sends `text`, then a ping; every frame up to its pong must be a server
/// event, and an unreadable `text` must have got a `bad_frame` error.
async fn probe(ws: &mut common::Ws, text: &str, nonce: u64) -> Result<(), TestCaseError> {
    let unreadable = serde_json::from_str::<ClientEvent>(text).is_err();
    ws.stream.send(Message::Text(text.to_string().into())).await.map_err(fail)?;
    ws.stream.send(Message::Text(json!({ "type": "ping", "nonce": nonce }).to_string().into())).await.map_err(fail)?;
    let mut bad_frame_answered = false;
    loop {
        let msg = match tokio::time::timeout(Duration::from_secs(5), ws.stream.next()).await {
            Ok(Some(Ok(msg))) => msg,
            other => return Err(TestCaseError::fail(format!("no pong for {text:?}: {other:?}"))),
        };
        let Message::Text(reply) = msg else { continue };
        let event = serde_json::from_str::<ServerEvent>(&reply)
            .map_err(|e| TestCaseError::fail(format!("not a server event ({e}): {reply}")))?;
        match event {
            ServerEvent::Pong { nonce: n } if n == nonce => break,
            ServerEvent::Error { code: ErrorCode::BadFrame, .. } => bad_frame_answered = true,
            _ => {}
        }
    }
    prop_assert!(!unreadable || bad_frame_answered, "no bad_frame error for {:?}", text);
    Ok(())
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

// ------------------------------------------------------ REST bodies

/// What a fuzzed REST request sends.
#[derive(Clone, Debug)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

/// Arbitrary JSON and arbitrary bytes, as JSON, to the routes that take
/// JSON bodies: never a 5xx, never a dropped connection (a panic), and the
/// server is healthy afterwards.
#[test]
fn rest_json_bodies_never_get_a_5xx() {
    const ROUTES: [(&str, &str, &[&str]); 9] = [
        ("POST", "/api/auth/signup", &["email", "password", "full_name", "bio"]),
        ("POST", "/api/auth/login", &["email", "password"]),
        ("PUT", "/api/auth/update-profile", &["full_name", "bio"]),
        ("POST", "/api/auth/update-profile", &["full_name", "bio"]),
        ("POST", "/api/messages/send/{peer}", &["text", "image", "client_msg_id"]),
        ("POST", "/api/messages/send/{group}", &["text", "image", "client_msg_id"]),
        // Group changes are rate limited (30 a minute): later cases get 429s, never a 5xx.
        ("POST", "/api/groups", &["name", "member_ids"]),
        ("PATCH", "/api/groups/{group}", &["name"]),
        ("POST", "/api/groups/{group}/members", &["user_ids"]),
    ];
    let rt = runtime();
    let (server, ann, bob, group) = rt.block_on(async {
        let server = TestServer::start_with(|c| {
            c.limits.auth_rate_per_minute = 1_000_000;
            c.limits.send_rate_per_minute = 1_000_000;
        })
        .await;
        let ann = TestUser::signup(&server, "Ann").await;
        let bob = TestUser::signup(&server, "Bob").await;
        let body = json!({ "name": "Fuzz", "member_ids": [bob.id] });
        let (status, group) = common::post_json(&ann.http, &server.url, "/api/groups", body).await;
        assert_eq!(status, StatusCode::CREATED, "{group}");
        let group = group["_id"].as_str().expect("group id").to_string();
        (server, ann, bob, group)
    });
    let bodies = prop_oneof![
        json_value().prop_map(Body::Json),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Body::Bytes),
        object_with(ROUTES[0].2).prop_map(Body::Json),
        object_with(&[
            "email",
            "password",
            "full_name",
            "bio",
            "text",
            "image",
            "client_msg_id",
            "name",
            "member_ids",
            "user_ids"
        ])
        .prop_map(Body::Json),
    ];
    let mut runner = TestRunner::new(config(300));
    let result = runner.run(&(0..ROUTES.len(), bodies), |(route, body)| {
        let (method, path, _) = ROUTES[route];
        let url = format!("{}{}", server.url, path.replace("{peer}", &bob.id).replace("{group}", &group));
        rt.block_on(async {
            let req = match method {
                "PUT" => ann.http.put(&url),
                "PATCH" => ann.http.patch(&url),
                _ => ann.http.post(&url),
            };
            let req = match &body {
                Body::Json(v) => req.json(v),
                Body::Bytes(b) => req.header("content-type", "application/json").body(b.clone()),
            };
            let resp = req.send().await.map_err(|e| fail(format!("{method} {path}: {e}")))?;
            let status = resp.status();
            let text = resp.text().await.map_err(fail)?;
            prop_assert!(!status.is_server_error(), "{} {} with {:?}: {} {}", method, path, body, status, text);
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(async {
        let (status, _) = common::get(&client(), &server.url, "/api/health").await;
        assert_eq!(status, StatusCode::OK);
        server.stop().await;
    });
}

/// Anything in the `Authorization` header or the `token` cookie that is not
/// a valid session is a 401: never a 5xx, never someone's session.
#[test]
fn arbitrary_credentials_are_refused_with_401() {
    let rt = runtime();
    let (server, ann) = rt.block_on(async {
        let server = TestServer::start().await;
        let ann = TestUser::signup(&server, "Ann").await;
        (server, ann)
    });
    let valid = ann.token.clone();
    let credentials = prop_oneof![
        "[ -~]{0,200}",
        // Real tokens with one character changed, cut, or extended.
        (0..valid.len(), "[A-Za-z0-9_.=-]").prop_map({
            let valid = valid.clone();
            move |(i, c)| format!("{}{c}{}", &valid[..i], &valid[i + 1..])
        }),
        (0..valid.len()).prop_map({
            let valid = valid.clone();
            move |i| valid[..i].to_string()
        }),
        "[A-Za-z0-9_-]{0,80}".prop_map({
            let valid = valid.clone();
            move |s| format!("{valid}{s}")
        }),
    ];
    let http = client();
    let mut runner = TestRunner::new(config(300));
    let result = runner.run(&(credentials, any::<bool>()), |(credential, as_cookie)| {
        let url = format!("{}/api/auth/check-auth", server.url);
        rt.block_on(async {
            let req = if as_cookie {
                http.get(&url).header("cookie", format!("token={credential}"))
            } else {
                http.get(&url).header("authorization", format!("Bearer {credential}"))
            };
            let status = req.send().await.map_err(fail)?.status();
            if credential == valid {
                prop_assert_eq!(status, StatusCode::OK);
            } else {
                prop_assert_eq!(status, StatusCode::UNAUTHORIZED, "credential {:?}", credential);
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(server.stop());
}

// ------------------------------------------------------ log records

fn chat_message() -> impl Strategy<Value = ChatMessage> {
    let text = "(?s).{0,80}";
    ("[0-9A-Z]{26}", text, text, text, text, prop::option::of(text), text, prop::option::of(text)).prop_map(
        |(id, conversation_id, sender_id, recipient_id, text, image, created_at, client_msg_id)| ChatMessage {
            id,
            conversation_id,
            sender_id,
            recipient_id,
            text,
            image,
            created_at,
            client_msg_id,
            edited_at: None,
            deleted: false,
            reply_to: None,
        },
    )
}

proptest! {
    #![proptest_config(config(4096))]

    /// The worker's decoder: any payload bytes are a message or a typed error.
    #[test]
    fn any_log_payload_decodes_or_fails_typed(payload in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_record(&payload);
    }

    /// JSON that is almost a message (fields of the wrong type, missing,
    /// extra) is a message or a typed error too.
    #[test]
    fn message_like_payloads_decode_or_fail_typed(payload in object_with(&[
        "_id", "conversation_id", "sender_id", "recipient_id", "text", "image", "created_at", "client_msg_id",
    ])) {
        let _ = decode_record(payload.to_string().as_bytes());
    }

    /// What the send path encodes, the worker decodes to the same message.
    #[test]
    fn encoded_messages_decode_to_themselves(message in chat_message()) {
        let record = SendRecord::of_message(&message).expect("encodes");
        prop_assert_eq!(&record.key, &message.conversation_id);
        prop_assert_eq!(&record.sender_id, &message.sender_id);
        let claimed = message.client_msg_id.clone().unwrap_or_else(|| message.id.clone());
        prop_assert_eq!(&record.client_msg_id, &claimed);
        prop_assert_eq!(decode_record(record.payload.as_bytes()).expect("decodes"), message);
    }
}

/// Through the local log's SQLite file: what is appended is fetched back
/// byte for byte, at increasing offsets, and decodes to the same message.
#[test]
fn the_local_log_returns_what_was_appended() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = rt.block_on(async { LocalLog::open(Path::new(dir.path())) }).expect("log");
    let next = std::cell::Cell::new(0i64);
    let mut runner = TestRunner::new(config(48));
    let result = runner.run(&chat_message(), |message| {
        let record = SendRecord::of_message(&message).map_err(fail)?;
        rt.block_on(async {
            append(&log, record.clone()).await.map_err(fail)?;
            let from = next.get();
            let records = log.fetch(0, from, 10, Duration::from_secs(5)).await.map_err(fail)?;
            prop_assert_eq!(records.len(), 1, "one new record after offset {}", from);
            prop_assert!(records[0].offset >= from);
            next.set(records[0].offset + 1);
            prop_assert_eq!(&records[0].payload, &record.payload.as_bytes().to_vec());
            prop_assert_eq!(decode_record(&records[0].payload).map_err(fail)?, message);
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ------------------------------------------------------ session tokens

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret-0123";
const TTL_SECS: i64 = 3600;

fn tokens() -> TokenService {
    TokenService::new(SECRET, Duration::from_secs(TTL_SECS as u64))
}

fn now() -> i64 {
    charcha::server::clock::now_ms() / 1000
}

/// What any accepted token must satisfy.
fn acceptable(c: &Claims, now: i64) -> bool {
    let lifetime = c.exp.checked_sub(c.iat);
    c.iat <= now + 5 && c.exp >= now - 1 && lifetime.is_some_and(|l| l > 0 && l <= TTL_SECS)
}

/// Times near now and at the edges of the integer range.
fn a_time() -> impl Strategy<Value = i64> {
    let now = now();
    prop_oneof![
        (-2 * TTL_SECS..2 * TTL_SECS).prop_map(move |d| now + d),
        any::<i64>(),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(0),
        Just(-1),
    ]
}

fn b64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

proptest! {
    #![proptest_config(config(2048))]

    /// Arbitrary text, and three arbitrary base64url segments (a JWT's
    /// shape), are refused.
    #[test]
    fn arbitrary_tokens_are_refused(
        text in "(?s).{0,300}",
        parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 3),
    ) {
        let s = tokens();
        prop_assert!(s.verify(&text).is_err());
        let shaped = parts.iter().map(|p| b64url(p)).collect::<Vec<_>>().join(".");
        prop_assert!(s.verify(&shaped).is_err());
    }

    /// Signed with the right key but any `iat`/`exp` (huge, negative,
    /// reversed): never a panic, and accepted only when the times hold.
    #[test]
    fn signed_tokens_with_any_times_are_accepted_only_when_valid(iat in a_time(), exp in a_time()) {
        let s = tokens();
        let claims = Claims { sub: "u1".into(), iat, exp, jti: "j".into() };
        let token = s.sign(&claims).expect("signs");
        let now = now();
        match s.verify(&token) {
            Ok(c) => prop_assert!(acceptable(&c, now), "accepted {:?} at {}", c, now),
            Err(_) => {
                let clearly_valid = iat <= now && exp > now + 2 && exp.checked_sub(iat).is_some_and(|l| l <= TTL_SECS);
                prop_assert!(!clearly_valid, "refused {:?}", claims);
            }
        }
    }

    /// Claims the server's own type cannot even hold: times beyond i64, as
    /// floats or strings, missing. Refused, never a panic.
    #[test]
    fn foreign_claim_shapes_are_refused(
        iat in prop_oneof![json_value(), Just(json!(u64::MAX)), Just(json!(1e300)), Just(json!(now()))],
        exp in prop_oneof![json_value(), Just(json!(u64::MAX)), Just(json!(-1e300)), Just(json!(now() + 60))],
        sub in json_value(),
    ) {
        let claims = json!({ "sub": sub, "iat": iat, "exp": exp, "jti": "j" });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        ).expect("signs");
        let now = now();
        if let Ok(c) = tokens().verify(&token) {
            prop_assert!(acceptable(&c, now) && claims["sub"] == c.sub.as_str(), "accepted {}", claims);
        }
    }

    /// A real token with one character changed is refused, unless the
    /// change only touched base64 padding bits (same bytes, same claims).
    #[test]
    fn tampered_tokens_are_refused(index in any::<prop::sample::Index>(), c in "[A-Za-z0-9_.=+/-]") {
        let s = tokens();
        let (token, claims) = s.issue("u1").expect("issues");
        let i = index.index(token.len());
        let tampered = format!("{}{c}{}", &token[..i], &token[i + 1..]);
        if tampered != token
            && let Ok(got) = s.verify(&tampered)
        {
            prop_assert_eq!(got, claims, "a tampered token {} was accepted with other claims", tampered);
        }
    }
}

// ------------------------------------------------------ images

proptest! {
    #![proptest_config(config(3000))]

    /// The metadata stripper on arbitrary bytes behind each format's magic:
    /// an image or a typed error, never a panic; and stripping what it
    /// produced changes nothing more.
    #[test]
    fn image_stripping_is_total_and_idempotent(kind in 0usize..3, body in prop::collection::vec(any::<u8>(), 0..400)) {
        let (content_type, magic): (&str, &[u8]) = [
            ("image/jpeg", &[0xFF, 0xD8, 0xFF][..]),
            ("image/png", b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR"),
            ("image/webp", b"RIFF\x40\0\0\0WEBPVP8X"),
        ][kind];
        let _ = strip_metadata(content_type, &body);
        let data = [magic, &body].concat();
        if let Ok(once) = strip_metadata(content_type, &data) {
            let twice = strip_metadata(content_type, &once).expect("its own output is valid");
            prop_assert_eq!(twice.as_ref(), once.as_ref());
        }
    }
}
