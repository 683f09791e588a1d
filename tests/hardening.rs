//! Security hardening of the infrastructure (issue 10, items 4, 5, 6 and
//! 11): client IPs behind proxies, per-account log-in throttling, quotas,
//! slowloris timeouts, private metrics. Each test names what it holds off.

mod common;

use std::time::{Duration, Instant};

use charcha::api::auth::Login;
use common::{PASSWORD, TestServer, TestUser, client, eventually_within, png, unique_email};
use leptos::server_fn::ServerFn;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<u64> {
    h.get(header::RETRY_AFTER)?.to_str().ok()?.parse().ok()
}

/// A REST log-in attempt for `email` claiming to come from `forwarded_for`.
async fn login_from(server: &TestServer, email: &str, password: &str, forwarded_for: &str) -> (StatusCode, Value) {
    let resp = client()
        .post(format!("{}/api/auth/login", server.url))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("login");
    let (status, body, _) = common::reply(resp).await;
    (status, body)
}

/// Behind a trusted proxy each client has its own per-IP budget (they
/// used to share the proxy's), on the REST routes and the server
/// functions; from an untrusted peer `X-Forwarded-For` is ignored, so a
/// client cannot dodge its limit by inventing addresses.
#[tokio::test]
async fn per_ip_limits_key_on_the_client_behind_a_trusted_proxy() {
    let behind_proxy = TestServer::start_with(|c| {
        c.limits.auth_rate_per_minute = 2;
        c.trusted_proxies = charcha::server::client_ip::TrustedProxies::parse("127.0.0.1").unwrap();
    })
    .await;
    // nginx appends the address it saw; whatever the client sent is left of it.
    for _ in 0..2 {
        let (status, _) =
            login_from(&behind_proxy, &unique_email("ip"), "wrong password", "6.6.6.6, 198.51.100.1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = login_from(&behind_proxy, &unique_email("ip"), "wrong password", "7.7.7.7, 198.51.100.1").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the same client, whatever it put in front");
    let (status, _) = login_from(&behind_proxy, &unique_email("ip"), "wrong password", "198.51.100.2").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another client behind the same proxy has its own budget");
    // The server functions use the same client address.
    let form = |email: String| format!("email={}&password=wrong+password", email.replace('@', "%40"));
    let server_fn_login = |xff: &'static str| {
        client()
            .post(format!("{}{}", behind_proxy.url, Login::PATH))
            .header("x-forwarded-for", xff)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(unique_email("ip")))
            .send()
    };
    let limited = server_fn_login("198.51.100.1").await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let secs = retry_after(limited.headers()).expect("Retry-After");
    // The log-in form shows the error's message as it is: it says how long to wait.
    let error: Value = limited.json().await.expect("the server function's error");
    assert_eq!(error["retry_after"], secs, "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("try again in {secs} second")), "{message}");
    assert_eq!(server_fn_login("198.51.100.3").await.unwrap().status(), StatusCode::UNAUTHORIZED);

    let direct = TestServer::start_with(|c| c.limits.auth_rate_per_minute = 2).await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let spoofed = format!("203.0.113.{i}");
        statuses.push(login_from(&direct, &unique_email("ip"), "wrong password", &spoofed).await.0);
    }
    assert_eq!(statuses[2], StatusCode::TOO_MANY_REQUESTS, "spoofed X-Forwarded-For is ignored: {statuses:?}");
}

/// Guessing one account's password is throttled whatever the guessers'
/// IPs: after the allowed failures the account is locked (429 with
/// `Retry-After`, even for the right password), the same way for an email
/// that has no account, other accounts are untouched, and a successful
/// log-in starts the count again.
#[tokio::test]
async fn failed_logins_lock_the_account_not_the_others() {
    let server = TestServer::start_with(|c| {
        c.limits.login_max_failures = 3;
        c.limits.auth_rate_per_minute = 1_000;
        c.trusted_proxies = charcha::server::client_ip::TrustedProxies::parse("127.0.0.1").unwrap();
    })
    .await;
    let victim = TestUser::signup(&server, "Victim").await;
    let bystander = TestUser::signup(&server, "Bystander").await;
    let nobody = unique_email("nobody");
    let mut locked_messages = Vec::new();
    for email in [&victim.email, &nobody] {
        for i in 0..3 {
            // A different IP for every guess: a botnet gets no further.
            let (status, body) = login_from(&server, email, "wrong password", &format!("198.51.100.{i}")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        }
        let resp = client()
            .post(format!("{}/api/auth/login", server.url))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        let (status, body, headers) = common::reply(resp).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "locked, even with the right password: {body}");
        let secs = retry_after(&headers).expect("Retry-After");
        assert!((1..=60).contains(&secs), "the first lock is a minute at most: {secs}");
        assert!(headers.get(header::SET_COOKIE).is_none());
        locked_messages.push(body["message"].clone());
    }
    assert_eq!(locked_messages[0], locked_messages[1], "a lock says nothing about whether the account exists");
    // The server function log-in is locked too.
    let form = format!("email={}&password={}", victim.email.replace('@', "%40"), PASSWORD.replace(' ', "+"));
    let resp = client()
        .post(format!("{}{}", server.url, Login::PATH))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(resp.headers()).is_some());
    // Other accounts log in as usual.
    let (status, _) = login_from(&server, &bystander.email, PASSWORD, "198.51.100.9").await;
    assert_eq!(status, StatusCode::OK);
    // A success resets the count: two failures, a success, three failures
    // are all answered (a lock would need four in a row).
    for password in ["wrong one", "wrong two", PASSWORD, "wrong 3", "wrong 4", "wrong 5"] {
        let (status, body) = login_from(&server, &bystander.email, password, "198.51.100.9").await;
        let expected = if password == PASSWORD { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
        assert_eq!(status, expected, "{password}: {body}");
    }
}

async fn upload(user: &TestUser, server: &TestServer, to: &str, data: Vec<u8>) -> (StatusCode, Value, u64) {
    let form = reqwest::multipart::Form::new()
        .text("to", to.to_string())
        .part("image", reqwest::multipart::Part::bytes(data).file_name("i.png"));
    let resp = user.http.post(format!("{}/api/media", server.url)).multipart(form).send().await.expect("upload");
    let (status, body, headers) = common::reply(resp).await;
    (status, body, retry_after(&headers).unwrap_or(0))
}

async fn set_avatar(user: &TestUser, server: &TestServer, data: Vec<u8>) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new()
        .part("avatar", reqwest::multipart::Part::bytes(data).file_name("a.png").mime_str("image/png").unwrap());
    let resp = user.http.put(format!("{}/api/auth/update-profile", server.url)).multipart(form).send().await.unwrap();
    common::body_json(resp).await
}

/// Uploads are bounded per user per hour, by count and by bytes, avatars
/// included; the answer says when to come back.
#[tokio::test]
async fn uploads_are_limited_per_user_per_hour() {
    let server = TestServer::start_with(|c| c.limits.uploads_per_hour = 2).await;
    let a = TestUser::signup(&server, "Uploader").await;
    let b = TestUser::signup(&server, "Peer").await;
    for _ in 0..2 {
        assert_eq!(upload(&a, &server, &b.id, png()).await.0, StatusCode::CREATED);
    }
    let (status, body, secs) = upload(&a, &server, &b.id, png()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!((1..=3600).contains(&secs), "Retry-After {secs}");
    assert!(body["message"].as_str().unwrap_or_default().contains("Upload limit"), "{body}");
    assert_eq!(set_avatar(&a, &server, png()).await.0, StatusCode::TOO_MANY_REQUESTS, "an avatar is an upload");
    assert_eq!(upload(&b, &server, &a.id, png()).await.0, StatusCode::CREATED, "others have their own quota");

    let small = TestServer::start_with(|c| c.limits.upload_bytes_per_hour = 2 * png().len() as u64).await;
    let a = TestUser::signup(&small, "Bytes").await;
    let b = TestUser::signup(&small, "Peer").await;
    assert_eq!(upload(&a, &small, &b.id, png()).await.0, StatusCode::CREATED);
    assert_eq!(set_avatar(&a, &small, png()).await.0, StatusCode::OK);
    let (status, body, _) = upload(&a, &small, &b.id, png()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the hour's bytes are used up: {body}");
}

/// Uploads nothing refers to (never sent, or sent in a message that
/// failed) are deleted after the grace period; images of messages and
/// avatars stay.
#[tokio::test]
async fn unreferenced_media_is_collected_after_the_grace_period() {
    let server = TestServer::start_with(|c| c.limits.media_gc_grace = Duration::from_secs(5)).await;
    let a = TestUser::signup(&server, "Keeper").await;
    let b = TestUser::signup(&server, "Peer").await;
    let (status, orphan, _) = upload(&a, &server, &b.id, png()).await;
    assert_eq!(status, StatusCode::CREATED, "{orphan}");
    let orphan = orphan["url"].as_str().expect("url").to_string();
    let (_, sent, _) = upload(&a, &server, &b.id, png()).await;
    let sent = sent["url"].as_str().expect("url").to_string();
    let (status, profile) = set_avatar(&a, &server, png()).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    let avatar = profile["user"]["profile_picture"].as_str().expect("avatar url").to_string();
    let mut ws = a.ws(&server).await;
    ws.send_json(json!({ "type": "send", "client_msg_id": "img", "to": b.id, "text": "", "image": sent })).await;
    ws.reply_to("img", Duration::from_secs(5)).await.expect("ack");
    // The message is in history well within the grace period.
    let peer = b.id.clone();
    eventually_within(Duration::from_secs(4), || {
        let (http, url, peer) = (a.http.clone(), server.url.clone(), peer.clone());
        async move { (!common::history_all(&http, &url, &peer).await.is_empty()).then_some(()) }
    })
    .await;
    let status = |url: String| {
        let (http, base) = (a.http.clone(), server.url.clone());
        async move { http.get(format!("{base}{url}")).send().await.expect("GET media").status() }
    };
    assert_eq!(status(orphan.clone()).await, StatusCode::OK, "within the grace period");
    let started = Instant::now();
    eventually_within(Duration::from_secs(15), || {
        let orphan = orphan.clone();
        async move { (status(orphan).await == StatusCode::NOT_FOUND).then_some(()) }
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(500), "not before the grace period");
    assert_eq!(status(sent).await, StatusCode::OK, "a message's image stays");
    assert_eq!(status(avatar).await, StatusCode::OK, "an avatar stays");
}

/// What a refused WebSocket gets: its first frame and the close code.
async fn refused_connection(server: &TestServer, token: &str) -> (Value, Option<u16>) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let (mut stream, _) =
        tokio_tungstenite::connect_async(common::ws_request(&server.ws_url(), token)).await.expect("upgrade");
    let (mut first, mut close) = (None, None);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        match msg {
            Message::Text(t) if first.is_none() => first = Some(serde_json::from_str(&t).expect("JSON frame")),
            Message::Close(frame) => {
                close = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    (first.expect("a frame before the close"), close)
}

/// A user's open WebSockets are capped: the next upgrade gets an error
/// frame saying why, with its own code (`too_many_connections`, so a client
/// knows reconnecting will not help), and a 1008 close; the open ones go
/// on, and a slot freed by a closed tab can be used again.
#[tokio::test]
async fn websockets_per_user_are_capped() {
    let server = TestServer::start_with(|c| c.limits.ws_per_user = 2).await;
    let user = TestUser::signup(&server, "Tabs").await;
    let first = user.ws(&server).await;
    let mut second = user.ws(&server).await;
    let refused = common::Ws::try_connect_url(&server.ws_url(), &user.token).await;
    let reason = refused.err().expect("the third connection is refused");
    assert!(reason.contains("Too many open connections"), "{reason}");
    let (frame, close) = refused_connection(&server, &user.token).await;
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], "too_many_connections", "{frame}");
    assert!(frame.get("client_msg_id").is_none() && frame.get("retry_after").is_none(), "{frame}");
    assert_eq!(close, Some(1008));
    second.send_json(json!({ "type": "ping", "nonce": 1 })).await;
    assert!(second.next_where(Duration::from_secs(5), |e| e["type"] == "pong").await.is_some(), "the others go on");
    let other = TestUser::signup(&server, "Other").await;
    other.ws(&server).await;
    drop(first);
    let url = server.ws_url();
    eventually_within(Duration::from_secs(5), || {
        let (url, token) = (url.clone(), user.token.clone());
        async move { common::Ws::try_connect_url(&url, &token).await.ok() }
    })
    .await;
}

/// `watch` changes (each one a presence lookup, and a Redis event per
/// instance when scaled) are rate limited per user.
#[tokio::test]
async fn watch_changes_are_rate_limited() {
    let server = TestServer::start_with(|c| c.limits.watch_rate_per_minute = 3).await;
    let user = TestUser::signup(&server, "Watcher").await;
    let mut ws = user.ws(&server).await;
    let others: Vec<String> = (0..4).map(|_| ulid::Ulid::new().to_string()).collect();
    for id in &others[..3] {
        ws.watch(&[id]).await;
    }
    ws.send_json(json!({ "type": "watch", "user_ids": [others[3]] })).await;
    let e = ws.next_where(Duration::from_secs(5), |e| e["type"] == "error" || e["type"] == "presence_batch").await;
    let e = e.expect("an answer");
    assert_eq!(e["code"], "rate_limited", "{e}");
    // Not about a send; says when the client may send its watch set again.
    assert!(e.get("client_msg_id").is_none(), "{e}");
    let secs = e["retry_after"].as_u64().expect("retry_after");
    assert!((1..=60).contains(&secs), "within the minute's window: {e}");
    ws.send_json(json!({ "type": "ping", "nonce": 2 })).await;
    assert!(ws.next_where(Duration::from_secs(5), |e| e["type"] == "pong").await.is_some(), "the socket stays");
}

/// Profile edits (each one broadcast to every watcher) are rate limited.
#[tokio::test]
async fn profile_updates_are_rate_limited() {
    let server = TestServer::start_with(|c| c.limits.profile_updates_per_hour = 2).await;
    let user = TestUser::signup(&server, "Editor").await;
    let edit = |bio: &'static str| {
        user.http.put(format!("{}/api/auth/update-profile", server.url)).json(&json!({ "bio": bio })).send()
    };
    assert_eq!(edit("one").await.unwrap().status(), StatusCode::OK);
    assert_eq!(edit("two").await.unwrap().status(), StatusCode::OK);
    let resp = edit("three").await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(resp.headers()).is_some_and(|s| (1..=3600).contains(&s)));
}

/// Reads until the server closes the connection; what it sent and how long
/// that took, or `None` if it was still open after `within`.
async fn read_until_closed(tcp: &mut tokio::net::TcpStream, within: Duration) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(tokio::time::Instant::from_std(started + within), tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((got, started.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Slowloris: a request whose headers never finish is closed once the
/// header-read timeout passes (it used to stay open for a minute and
/// more), and so is a kept-alive connection that sends nothing more;
/// complete requests are served as before.
#[tokio::test]
async fn half_sent_requests_and_idle_connections_are_closed() {
    let server = TestServer::start_with(|c| c.limits.header_read_timeout = Duration::from_secs(1)).await;
    let addr = server.url.trim_start_matches("http://").to_string();

    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (_, after) = read_until_closed(&mut slow, Duration::from_secs(5)).await.expect("closed within 5 s");
    assert!(after >= Duration::from_millis(800), "not before the timeout: {after:?}");

    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (answer, _) = read_until_closed(&mut idle, Duration::from_secs(5)).await.expect("idle keep-alive closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "the complete request was answered: {answer}");

    // The rest still works: pages, the API, WebSockets (with ConnectInfo).
    let user = TestUser::signup(&server, "Patient").await;
    let mut ws = user.ws(&server).await;
    ws.send_json(json!({ "type": "ping", "nonce": 3 })).await;
    assert!(ws.next_where(Duration::from_secs(5), |e| e["type"] == "pong").await.is_some());
}

/// `/metrics` is not public: 404 unless configured; with a token only for
/// requests that carry it; with its own address only there.
#[tokio::test]
async fn metrics_are_private() {
    let default = TestServer::start().await;
    let resp = client().get(format!("{}/metrics", default.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let token = "metrics-token-0123456789";
    let with_token = TestServer::start_with(|c| c.metrics_token = Some(token.to_string())).await;
    let get = |auth: Option<&'static str>| {
        let mut req = client().get(format!("{}/metrics", with_token.url));
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        req.send()
    };
    assert_eq!(get(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some("Bearer metrics-token-0123456788")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let resp = get(Some("Bearer metrics-token-0123456789")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("charcha_ws_sessions "));

    let own_addr = TestServer::start_with(|c| c.metrics_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let resp = client().get(format!("{}/metrics", own_addr.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "not on the site address");
    let metrics_addr = own_addr.metrics_addr().expect("a metrics address");
    let resp = client().get(format!("http://{metrics_addr}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("charcha_watch_frames_total "));
    let resp = client().get(format!("http://{metrics_addr}/api/health")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "only /metrics there");
}

/// Pages keep answering while another router is built in the same process.
/// Building one generates the route list, during which Leptos suspends
/// resource loading process-wide (leptos-rs/leptos#4773): a page whose
/// session resource was first polled in that window never answered, which
/// once stalled this suite in CI. The server generates the list once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_answer_while_another_router_is_built() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    /// Stops the builder however the test ends (a blocking task left
    /// running would keep the runtime from shutting down).
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    let server = TestServer::start().await;
    let user = TestUser::signup(&server, "Builder").await;
    let state = server.state().clone();
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let builder = {
        let stop = stop.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut built = 0u32;
            while !stop.load(Ordering::Relaxed) && built < 1_000 {
                drop(charcha::server::router(state.clone()));
                built += 1;
            }
            built
        })
    };
    for _ in 0..40 {
        let resp = user
            .http
            .get(format!("{}/chat", server.url))
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .expect("the chat page answers");
        assert_eq!(resp.status(), StatusCode::OK);
        let page = resp.text().await.expect("the whole page");
        assert!(page.contains("</html>"), "a complete page");
    }
    drop(stop);
    assert!(builder.await.expect("builder") > 0, "routers were built meanwhile");
}
