//! In-process test servers and clients shared by the integration tests.
#![allow(dead_code)]

use std::{path::PathBuf, sync::Arc, time::Duration};

use charcha::server::{self, Drivers, RunningServer, config::Config};
use futures_util::{SinkExt, StreamExt};
use leptos::config::LeptosOptions;
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest},
};

pub const PASSWORD: &str = "correct horse 1";

/// `mongodb://host:port` of a MongoDB URI, without database or options.
pub fn mongo_server(uri: &str) -> String {
    let rest = uri.strip_prefix("mongodb://").unwrap_or(uri);
    let host = rest.split('/').next().unwrap_or(rest);
    format!("mongodb://{host}")
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

/// The test Redis: CHARCHA_TEST_REDIS_URL, by default the one
/// scripts/services.sh starts.
pub fn redis_url() -> String {
    env_or("CHARCHA_TEST_REDIS_URL", "redis://127.0.0.1:16379")
}

/// The test Kafka's bootstrap address: CHARCHA_TEST_KAFKA_BROKERS, by
/// default the one scripts/services.sh starts.
pub fn kafka_brokers() -> String {
    env_or("CHARCHA_TEST_KAFKA_BROKERS", "127.0.0.1:19092")
}

/// `mongodb://host:port` of the test MongoDB-compatible server
/// (CHARCHA_TEST_MONGODB_URI, by default the one scripts/services.sh starts),
/// to which a test appends its own database.
pub fn mongo_base() -> String {
    mongo_server(&env_or("CHARCHA_TEST_MONGODB_URI", "mongodb://127.0.0.1:27018"))
}

/// True when the suite runs against the real services.
pub fn scaled() -> bool {
    std::env::var("CHARCHA_TEST_SCALED").is_ok_and(|v| v == "1")
}

/// The configuration [`TestServer::start_with`] starts from: the test
/// defaults on `data_dir`, plus, with `CHARCHA_TEST_SCALED=1`, the real
/// Redis, Kafka and MongoDB with a fresh key prefix, topic and database.
/// For tests that build drivers themselves
/// ([`charcha::server::connect_drivers`]) or restart on the same backends.
pub fn test_config(data_dir: PathBuf) -> Config {
    let mut config = Config::for_tests(data_dir);
    if scaled() {
        let tag = ulid::Ulid::new().to_string().to_lowercase();
        config.backends.redis_url = Some(redis_url());
        config.backends.redis_prefix = format!("t{tag}");
        config.backends.kafka_brokers = vec![kafka_brokers()];
        config.backends.kafka_topic = format!("charcha-t-{tag}");
        config.backends.kafka_partitions = 3;
        config.backends.mongodb_uri = Some(format!("{}/charcha_t_{tag}", mongo_base()));
    }
    config
}

pub struct TestServer {
    pub url: String,
    /// The configuration it was started with (a restart reuses it).
    pub config: Config,
    pub data_dir: PathBuf,
    /// Owns the temp dir when the server created it.
    _tmp: Option<Arc<tempfile::TempDir>>,
    running: Option<RunningServer>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with a tweaked config (fresh data dir). With
    /// `CHARCHA_TEST_SCALED=1` (set by `./dev test` for its second pass) the
    /// server runs on the real Redis, Kafka and MongoDB instead of the
    /// embedded drivers, each test with its own topic and database.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let tmp = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut config = test_config(tmp.path().to_path_buf());
        tweak(&mut config);
        let mut s = Self::start_config(config, None).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts with explicit drivers (to inject a failing log, say).
    pub async fn start_config(config: Config, drivers: Option<Drivers>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let leptos_options =
            LeptosOptions::builder().output_name("charcha").site_root("target/site").site_addr(addr).build();
        let data_dir = config.data_dir.clone();
        let kept = config.clone();
        let drivers = match drivers {
            Some(d) => d,
            None => server::connect_drivers(&config).await.expect("drivers"),
        };
        let state = server::build_state(config, leptos_options, drivers).await.expect("state");
        let running = server::start(state, listener).await.expect("start");
        Self { url: format!("http://{addr}"), config: kept, data_dir, _tmp: None, running: Some(running) }
    }

    /// Stops and starts again on the same data dir (new port).
    pub async fn restart(self) -> Self {
        self.restart_with(|| {}).await
    }

    /// Stops, runs `while_stopped` (to edit the data dir, say), and starts
    /// again on the same data dir (new port).
    pub async fn restart_with(mut self, while_stopped: impl FnOnce()) -> Self {
        let tmp = self._tmp.take();
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        while_stopped();
        let config = self.config.clone();
        let mut s = Self::start_config(config, None).await;
        s._tmp = tmp;
        s
    }

    pub fn state(&self) -> &charcha::server::state::AppState {
        &self.running.as_ref().expect("running").state
    }

    pub fn ws_url(&self) -> String {
        self.url.replacen("http://", "ws://", 1) + "/ws"
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

/// How long any one test request may take. A request that hangs fails its
/// test with the URL in the error instead of stalling the suite (and CI)
/// until the runner's own time limit.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub fn client() -> reqwest::Client {
    client_builder().cookie_store(true).build().expect("client")
}

/// A client builder with the suite's request timeout.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(REQUEST_TIMEOUT)
}

/// Status, headers and body of a response; the body parsed as JSON, or as
/// a JSON string of the text when it is not JSON.
pub async fn reply(resp: reqwest::Response) -> (StatusCode, Value, HeaderMap) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
}

/// Status and body of a response (see [`reply`]).
pub async fn body_json(resp: reqwest::Response) -> (StatusCode, Value) {
    let (status, body, _) = reply(resp).await;
    (status, body)
}

/// `GET {base}{path}` with `http` (a user's cookie client, say).
pub async fn get(http: &reqwest::Client, base: &str, path: &str) -> (StatusCode, Value) {
    body_json(http.get(format!("{base}{path}")).send().await.expect("GET")).await
}

/// `POST {base}{path}` with a JSON body; status, body and headers.
pub async fn post_json_reply(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value, HeaderMap) {
    reply(http.post(format!("{base}{path}")).json(&body).send().await.expect("POST")).await
}

/// `POST {base}{path}` with a JSON body; status and body.
pub async fn post_json(http: &reqwest::Client, base: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, body, _) = post_json_reply(http, base, path, body).await;
    (status, body)
}

/// Every message of `http`'s user's conversation with `peer` on the server
/// at `base` (`http://…`), oldest first, by paging back 100 at a time.
pub async fn history_all(http: &reqwest::Client, base: &str, peer: &str) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            None => format!("/api/messages/{peer}?limit=100"),
            Some(b) => format!("/api/messages/{peer}?limit=100&before={b}"),
        };
        let (status, page) = get(http, base, &path).await;
        assert_eq!(status, StatusCode::OK, "history page: {page}");
        let mut msgs = page["messages"].as_array().expect("messages").clone();
        let has_more = page["has_more"].as_bool().expect("has_more");
        before = msgs.first().map(|m| m["_id"].as_str().expect("_id").to_string());
        msgs.extend(all);
        all = msgs;
        if !has_more {
            return all;
        }
    }
}

pub fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", ulid::Ulid::new().to_string().to_lowercase())
}

/// A signed-up user with its own cookie-carrying client.
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl TestUser {
    pub async fn signup(server: &TestServer, name: &str) -> Self {
        Self::signup_at(&server.url, name).await
    }

    /// Signs up through the REST API of the server at `base` (`http://…`).
    pub async fn signup_at(base: &str, name: &str) -> Self {
        Self::signup_as(base, name, name).await
    }

    /// Signs up with a full name of its own (which may have spaces); the
    /// email is `<tag>-<unique>@example.com`.
    pub async fn signup_as(base: &str, tag: &str, full_name: &str) -> Self {
        let http = client();
        let email = unique_email(tag);
        let name = full_name;
        let resp = http
            .post(format!("{base}/api/auth/signup"))
            .json(&json!({ "email": email, "password": PASSWORD, "full_name": name }))
            .send()
            .await
            .expect("signup request");
        assert_eq!(resp.status(), StatusCode::CREATED, "signup of {name}");
        let body: Value = resp.json().await.expect("json");
        Self {
            id: body["user"]["_id"].as_str().expect("id").to_string(),
            email,
            token: body["token"].as_str().expect("token").to_string(),
            http,
        }
    }

    pub async fn ws(&self, server: &TestServer) -> Ws {
        Ws::connect(server, &self.token).await
    }
}

pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client that skips heartbeats and parses JSON events.
pub struct Ws {
    pub stream: WsStream,
}

impl Ws {
    pub async fn connect(server: &TestServer, token: &str) -> Self {
        Self::connect_url(&server.ws_url(), token).await
    }

    /// Connects to a `ws://…/ws` URL with a bearer token; panics with the
    /// reason when that fails.
    pub async fn connect_url(url: &str, token: &str) -> Self {
        Self::try_connect_url(url, token).await.unwrap_or_else(|e| panic!("ws connect to {url}: {e}"))
    }

    /// Like [`Ws::connect_url`], but returns the reason instead of panicking.
    pub async fn try_connect_url(url: &str, token: &str) -> Result<Self, String> {
        Self::connect_request(ws_request(url, token)).await.map(|(ws, _)| ws)
    }

    /// Upgrades with `req` and reads the first frame, which must be `hello`;
    /// returns the client and that frame, or why it failed.
    pub async fn connect_request(req: WsRequest) -> Result<(Self, Value), String> {
        let (stream, _) = tokio_tungstenite::connect_async(req).await.map_err(|e| format!("upgrade failed: {e}"))?;
        let mut ws = Self { stream };
        match ws.try_next_event(Duration::from_secs(5)).await {
            Some(hello) if hello["type"] == "hello" => Ok((ws, hello)),
            Some(other) => Err(format!("first frame is not hello: {other}")),
            None => Err("no hello within 5 s".to_string()),
        }
    }

    pub async fn send_json(&mut self, v: Value) {
        self.stream.send(Message::Text(v.to_string().into())).await.expect("ws send");
    }

    /// Makes `user_ids` the set of users this client shows (`watch`) and
    /// returns the server's `presence_batch` for them. Every id must be new
    /// to the set (otherwise there is nothing to answer).
    pub async fn watch(&mut self, user_ids: &[&str]) -> Value {
        self.send_json(json!({ "type": "watch", "user_ids": user_ids })).await;
        self.next_where(Duration::from_secs(5), |e| e["type"] == "presence_batch")
            .await
            .unwrap_or_else(|| panic!("no presence_batch for a watch of {user_ids:?}"))
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.stream.send(m).await.expect("ws send");
    }

    /// Next JSON event, within 5 s.
    pub async fn next_event(&mut self) -> Value {
        self.try_next_event(Duration::from_secs(5)).await.expect("an event within 5 s")
    }

    /// Next JSON event, or `None` on timeout or close.
    pub async fn try_next_event(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next()).await.ok()??.ok()?;
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).ok(),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The first event matching `pred` within `within`, skipping others;
    /// `None` on timeout or close (also for asserting absence).
    /// Whether an event matching `pred` comes before the answer to a ping
    /// sent now: the server handles a connection's frames in order, so on
    /// one instance whatever an earlier frame caused is queued before that
    /// pong. A cheap "nothing happened" check that needs no sleep.
    pub async fn gets_before_pong(&mut self, pred: impl Fn(&Value) -> bool) -> bool {
        let nonce = ulid::Ulid::new().random() as u64;
        self.send_json(json!({ "type": "ping", "nonce": nonce })).await;
        let seen =
            self.next_where(Duration::from_secs(5), |e| pred(e) || (e["type"] == "pong" && e["nonce"] == nonce)).await;
        seen.is_some_and(|e| e["type"] != "pong")
    }

    pub async fn next_where(&mut self, within: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let e = self.try_next_event(left).await?;
            if pred(&e) {
                return Some(e);
            }
        }
    }

    /// The server's answer to the send with `client_msg_id`, skipping other
    /// events: `Ok(ack)`, or `Err` with the error frame, or with
    /// `{"error":"no reply"}` when neither comes within `within`.
    pub async fn reply_to(&mut self, client_msg_id: &str, within: Duration) -> Result<Value, Value> {
        let e = self
            .next_where(within, |e| (e["type"] == "ack" || e["type"] == "error") && e["client_msg_id"] == client_msg_id)
            .await
            .ok_or_else(|| json!({ "error": "no reply" }))?;
        if e["type"] == "ack" { Ok(e) } else { Err(e) }
    }

    /// Sends `text` to `to` with a fresh client_msg_id and waits for the
    /// answer: `Ok` with the acked message, `Err` as [`Ws::reply_to`].
    pub async fn send_acked(&mut self, to: &str, text: &str, within: Duration) -> Result<Value, Value> {
        let cid = ulid::Ulid::new().to_string();
        self.send_text(&cid, to, text).await;
        self.reply_to(&cid, within).await.map(|ack| ack["message"].clone())
    }

    /// Waits for the close frame; returns its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await.ok()?? {
                Ok(Message::Close(Some(f))) => return Some(f.code.into()),
                Ok(Message::Close(None)) => return None,
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    pub async fn send_text(&mut self, client_msg_id: &str, to: &str, text: &str) {
        self.send_json(json!({ "type": "send", "client_msg_id": client_msg_id, "to": to, "text": text })).await;
    }
}

pub type WsRequest = tokio_tungstenite::tungstenite::handshake::client::Request;

/// An upgrade request for `url` (`ws://…/ws`) carrying `Bearer {token}`.
pub fn ws_request(url: &str, token: &str) -> WsRequest {
    let mut req = url.into_client_request().unwrap_or_else(|e| panic!("ws request for {url}: {e}"));
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("authorization header"));
    req
}

/// A tiny valid PNG (1×1).
pub fn png() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00,
        0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF,
        0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ]
}

/// POSTs a read marker for `conversation`, as `http`'s user, through the REST route
/// (`message_id` as given, a wrong type included): status and body.
pub async fn post_read(
    http: &reqwest::Client,
    base: &str,
    conversation: &str,
    message_id: impl serde::Serialize,
) -> (StatusCode, Value) {
    post_json(http, base, &format!("/api/conversations/{conversation}/read"), json!({ "message_id": message_id })).await
}

/// `user`'s conversation list entry for `conversation_id`, once the worker
/// has stored up to `last_id` (its last message).
pub async fn conversation_entry(server: &TestServer, user: &TestUser, conversation_id: &str, last_id: &str) -> Value {
    eventually(|| async {
        let (status, page) = get(&user.http, &server.url, "/api/conversations").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["conversations"]
            .as_array()?
            .iter()
            .find(|c| c["conversation_id"] == conversation_id && c["last_message"]["_id"] == last_id)
            .cloned()
    })
    .await
}

/// Polls `f` until it returns `Some`, up to 5 s (history is written by
/// the worker shortly after the ack).
pub async fn eventually<T, F, Fut>(f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(Duration::from_secs(5), f).await
}

/// [`eventually`] with a deadline of `within`.
pub async fn eventually_within<T, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl TestServer {
    /// Where `/metrics` is served when the config gives it its own address.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.running.as_ref().and_then(|r| r.metrics_addr)
    }
}

/// The location a [`jpeg_with_gps`] photo gives away.
pub const GPS_SECRET: &[u8] = b"GPS 48.8584N 2.2945E";

/// The entropy-coded data of [`jpeg_with_gps`], which must survive upload.
pub const JPEG_SCAN: &[u8] = &[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0x78];

/// A JPEG as a phone writes it: JFIF, then an EXIF segment whose GPS IFD
/// holds [`GPS_SECRET`], then tables and one scan of [`JPEG_SCAN`].
pub fn jpeg_with_gps() -> Vec<u8> {
    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&u16::try_from(payload.len() + 2).expect("small").to_be_bytes());
        s.extend_from_slice(payload);
        s
    }
    // TIFF, big-endian: IFD0 at 8 with a GPSInfo pointer to the GPS IFD at
    // 26, whose GPSProcessingMethod (UNDEFINED) points at the secret at 44.
    let mut tiff =
        b"MM\x00\x2A\x00\x00\x00\x08\x00\x01\x88\x25\x00\x04\x00\x00\x00\x01\x00\x00\x00\x1A\0\0\0\0".to_vec();
    tiff.extend_from_slice(b"\x00\x01\x00\x1B\x00\x07\x00\x00\x00");
    tiff.push(u8::try_from(GPS_SECRET.len()).expect("short"));
    tiff.extend_from_slice(b"\x00\x00\x00\x2C\0\0\0\0");
    tiff.extend_from_slice(GPS_SECRET);
    let mut j = vec![0xFF, 0xD8];
    j.extend(segment(0xE0, b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00"));
    j.extend(segment(0xE1, &[b"Exif\0\0".as_slice(), &tiff].concat()));
    j.extend(segment(0xDB, &[0u8; 65]));
    j.extend(segment(0xC0, &[8, 0, 1, 0, 1, 1, 1, 0x11, 0]));
    j.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
    j.extend_from_slice(JPEG_SCAN);
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}

/// Whether `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
