//! Accounts over the REST API: every success and error case of the issue.
#![cfg(feature = "ssr")]

mod common;

use common::{PASSWORD, TestServer, TestUser, client, png, post_json, post_json_reply, unique_email};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

#[tokio::test]
async fn signup_returns_user_token_and_cookie() {
    let s = TestServer::start().await;
    let email = unique_email("ada");
    let (status, body, headers) = post_json_reply(
        &client(),
        &s.url,
        "/api/auth/signup",
        json!({ "email": format!("  {}  ", email.to_uppercase()), "password": PASSWORD, "full_name": "Ada Lovelace", "bio": "first" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(body["message"].is_string());
    let user = &body["user"];
    assert_eq!(user["email"], email, "email is trimmed and lowercased");
    assert_eq!(user["full_name"], "Ada Lovelace");
    assert_eq!(user["bio"], "first");
    assert_eq!(user["profile_picture"], "");
    assert!(user["_id"].as_str().is_some_and(|id| id.len() == 26));
    assert!(user["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let keys: Vec<&String> = user.as_object().unwrap().keys().collect();
    assert!(!keys.iter().any(|k| k.contains("password")), "no password field: {keys:?}");
    assert!(body["token"].as_str().is_some_and(|t| t.split('.').count() == 3));
    let cookie = headers.get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(cookie.starts_with("token="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "cookie has {attr}: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "development cookies are not Secure");
    s.stop().await;
}

#[tokio::test]
async fn production_cookies_are_secure() {
    let s = TestServer::start_with(|c| c.mode = charcha::server::config::RunMode::Production).await;
    let (_, _, headers) = post_json_reply(
        &client(),
        &s.url,
        "/api/auth/signup",
        json!({ "email": unique_email("p"), "password": PASSWORD, "full_name": "P" }),
    )
    .await;
    let cookie = headers.get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(cookie.contains("; Secure"), "{cookie}");
    s.stop().await;
}

#[tokio::test]
async fn signup_validation_errors_per_field() {
    let s = TestServer::start().await;
    let (status, body) = post_json(
        &client(),
        &s.url,
        "/api/auth/signup",
        json!({ "email": "not-an-email", "password": "short", "full_name": "   ", "bio": "x".repeat(501) }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].is_string());
    for field in ["email", "password", "full_name", "bio"] {
        assert!(body["errors"][field][0].is_string(), "error for {field}: {body}");
    }
    // 129-byte password.
    let (status, body) = post_json(
        &client(),
        &s.url,
        "/api/auth/signup",
        json!({ "email": unique_email("long"), "password": "x".repeat(129), "full_name": "L" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["errors"]["password"][0].as_str().unwrap().contains("128"));
    s.stop().await;
}

#[tokio::test]
async fn duplicate_email_is_409_whatever_the_case() {
    let s = TestServer::start().await;
    let u = TestUser::signup(&s, "dup").await;
    let (status, body) = post_json(
        &client(),
        &s.url,
        "/api/auth/signup",
        json!({ "email": format!(" {} ", u.email.to_uppercase()), "password": PASSWORD, "full_name": "Other" }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["message"].as_str().unwrap().contains("already"));
    s.stop().await;
}

#[tokio::test]
async fn login_success_and_one_message_for_bad_credentials() {
    let s = TestServer::start().await;
    let u = TestUser::signup(&s, "login").await;
    let http = client();
    let (status, body, headers) =
        post_json_reply(&http, &s.url, "/api/auth/login", json!({ "email": u.email, "password": PASSWORD })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"]["_id"], u.id.as_str());
    assert!(body["token"].is_string());
    assert!(headers.get(header::SET_COOKIE).is_some());
    // The cookie alone authenticates.
    let me = http.get(format!("{}/api/auth/check-auth", s.url)).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    let (s1, wrong_pw) =
        post_json(&client(), &s.url, "/api/auth/login", json!({ "email": u.email, "password": "wrong password" }))
            .await;
    let (s2, no_user) = post_json(
        &client(),
        &s.url,
        "/api/auth/login",
        json!({ "email": unique_email("nobody"), "password": "wrong password" }),
    )
    .await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!(s2, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_pw["message"], no_user["message"], "same message whether the email exists or not");
    assert_eq!(wrong_pw["message"], "Invalid email or password");
    s.stop().await;
}

#[tokio::test]
async fn protected_routes_need_a_valid_token() {
    let s = TestServer::start().await;
    let u = TestUser::signup(&s, "prot").await;
    let anon = client();
    for path in ["/api/auth/check-auth", "/api/auth/get-user", "/api/messages/users"] {
        let r = anon.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["message"].is_string());
    }
    let bearer = anon.get(format!("{}/api/auth/get-user", s.url)).bearer_auth(&u.token).send().await.unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
    let body: Value = bearer.json().await.unwrap();
    assert_eq!(body["user"]["email"], u.email.as_str());
    assert!(!body.to_string().contains("password"));
    s.stop().await;
}

#[tokio::test]
async fn logout_revokes_the_token_server_side() {
    let s = TestServer::start().await;
    let u = TestUser::signup(&s, "out").await;
    let copied = u.token.clone();
    let r = u.http.post(format!("{}/api/auth/logout", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(cookie.contains("Max-Age=0"), "cookie cleared: {cookie}");
    // The cookie jar is cleared, and a copy of the token is dead too.
    assert_eq!(
        u.http.get(format!("{}/api/auth/check-auth", s.url)).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = client().get(format!("{}/api/auth/check-auth", s.url)).bearer_auth(&copied).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Logging out without a session is fine, not an error.
    assert_eq!(client().post(format!("{}/api/auth/logout", s.url)).send().await.unwrap().status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn expired_tampered_and_unsigned_tokens_are_401() {
    use charcha::server::auth::token::Claims;
    let s = TestServer::start().await;
    let u = TestUser::signup(&s, "tok").await;
    let tokens = s.state().auth.tokens();
    let now = charcha::server::clock::now_ms() / 1000;
    let expired =
        tokens.sign(&Claims { sub: u.id.clone(), iat: now - 7200, exp: now - 3600, jti: "j1".into() }).unwrap();
    // One signature character changed: the first, which is all signature
    // bits (the last one of a 32-byte HMAC also carries padding bits, so
    // changing it may leave the signature as it was).
    let tampered = {
        let (signed, sig) = u.token.rsplit_once('.').expect("header.payload.signature");
        let first = if sig.starts_with('A') { 'B' } else { 'A' };
        format!("{signed}.{first}{}", &sig[1..])
    };
    assert_ne!(tampered, u.token, "the signature really changed");
    // alg: none, same payload, no signature.
    let payload = u.token.split('.').nth(1).unwrap();
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    for (name, t) in [("expired", expired), ("tampered", tampered), ("alg none", unsigned), ("garbage", "a.b.c".into())]
    {
        let r = client().get(format!("{}/api/auth/check-auth", s.url)).bearer_auth(&t).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
        let body: Value = r.json().await.unwrap();
        assert!(body["message"].is_string(), "{name}");
    }
    // A token of a user that no longer exists would also be refused; a
    // token for an unknown subject signed with our key is:
    let ghost = tokens
        .sign(&Claims { sub: "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(), iat: now, exp: now + 60, jti: "j2".into() })
        .unwrap();
    let r = client().get(format!("{}/api/auth/check-auth", s.url)).bearer_auth(&ghost).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_clear_errors() {
    let s = TestServer::start().await;
    let url = format!("{}/api/auth/signup", s.url);
    let http = client();
    // Malformed JSON.
    let r = http.post(&url).header(header::CONTENT_TYPE, "application/json").body("{\"email\":").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().await.unwrap()["message"].is_string());
    // Wrong types.
    let r = http.post(&url).json(&json!({ "email": 5, "password": true, "full_name": [] })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Missing fields.
    let r = http.post(&url).json(&json!({ "email": "a@b.co" })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Wrong content type.
    let r = http.post(&url).header(header::CONTENT_TYPE, "text/plain").body("hello").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Over the 64 KiB JSON limit.
    let big = json!({ "email": "a@b.co", "password": PASSWORD, "full_name": "x".repeat(70 * 1024) });
    let r = http.post(&url).json(&big).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json::<Value>().await.unwrap()["message"].is_string());
    // The server is fine afterwards.
    TestUser::signup(&s, "after").await;
    s.stop().await;
}

/// The server functions' twin of the above: arguments that cannot be read
/// are the caller's mistake (400 with the reason), not a server error.
#[tokio::test]
async fn server_functions_refuse_bad_arguments_with_400() {
    use charcha::api::{auth::Login, chat::GetContact};
    use leptos::server_fn::ServerFn;
    let s = TestServer::start().await;
    let user = TestUser::signup(&s, "sfn").await;
    let http = client();
    let form = |path: &str, body: &str| {
        http.post(format!("{}{path}", s.url))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header(header::COOKIE, format!("token={}", user.token))
            .body(body.to_string())
    };
    for (path, body, missing) in
        [(Login::PATH, "email=a%40b.co", "password"), (Login::PATH, "", "email"), (GetContact::PATH, "x=1", "id")]
    {
        let r = form(path, body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} {body:?}");
        let error: Value = r.json().await.unwrap();
        assert_eq!(error["status"], 400);
        assert!(error["message"].as_str().is_some_and(|m| m.contains(missing)), "{error}");
    }
    // A well-formed call still answers as before.
    let r = form(Login::PATH, &format!("email={}&password=wrong-password", user.email.replace('@', "%40")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn signup_and_login_are_rate_limited_per_ip() {
    let s = TestServer::start_with(|c| c.limits.auth_rate_per_minute = 3).await;
    let http = client();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, _, headers) = post_json_reply(
            &http,
            &s.url,
            "/api/auth/login",
            json!({ "email": "x@example.com", "password": "whatever1" }),
        )
        .await;
        statuses.push((status, headers.get(header::RETRY_AFTER).cloned()));
    }
    assert!(statuses[..3].iter().all(|(st, _)| *st == StatusCode::UNAUTHORIZED), "{statuses:?}");
    let (last, retry_after) = &statuses[3];
    assert_eq!(*last, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 =
        retry_after.as_ref().and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&secs));
    // Signup shares the budget.
    let (status, _) = post_json(
        &http,
        &s.url,
        "/api/auth/signup",
        json!({ "email": unique_email("rl"), "password": PASSWORD, "full_name": "R" }),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    s.stop().await;
}

fn avatar_form(bytes: Vec<u8>, name: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("full_name", name.to_string())
        .text("bio", "hello there")
        .part("avatar", reqwest::multipart::Part::bytes(bytes).file_name("whatever.txt"))
}

#[tokio::test]
async fn update_profile_with_avatar_then_replace_it() {
    let s = TestServer::start().await;
    let u = TestUser::signup(&s, "prof").await;
    let url = format!("{}/api/auth/update-profile", s.url);
    let r = u.http.put(&url).multipart(avatar_form(png(), "New Name")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["full_name"], "New Name");
    assert_eq!(body["user"]["bio"], "hello there");
    let first = body["user"]["profile_picture"].as_str().unwrap().to_string();
    assert!(first.starts_with("/api/media/"), "{first}");

    // Served with the sniffed type (the file name said .txt) and caching.
    let r = client().get(format!("{}{first}", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/png");
    assert!(r.headers()[header::CACHE_CONTROL].to_str().unwrap().contains("max-age"));
    let etag = r.headers()[header::ETAG].clone();
    assert_eq!(r.bytes().await.unwrap().to_vec(), png());
    let r = client().get(format!("{}{first}", s.url)).header(header::IF_NONE_MATCH, etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Replacing removes the old one.
    let r = u.http.post(&url).multipart(avatar_form(png(), "New Name")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let second = r.json::<Value>().await.unwrap()["user"]["profile_picture"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert_eq!(client().get(format!("{}{first}", s.url)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(client().get(format!("{}{second}", s.url)).send().await.unwrap().status(), StatusCode::OK);

    // JSON updates work too, and get-user reflects them.
    let r = u.http.put(&url).json(&json!({ "bio": "json bio" })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = u.http.get(format!("{}/api/auth/get-user", s.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["bio"], "json bio");
    assert_eq!(me["user"]["full_name"], "New Name");
    assert_eq!(me["user"]["profile_picture"], second.as_str());

    // A control character in the bio is a 400 naming the field, and the
    // profile stays as it was (some stores refuse a NUL outright).
    let r = u.http.put(&url).json(&json!({ "bio": "nul \u{0} here" })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("bio"), "{body}");
    let me: Value = u.http.get(format!("{}/api/auth/get-user", s.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["bio"], "json bio");
    s.stop().await;
}

#[tokio::test]
async fn avatar_type_and_size_are_enforced() {
    let s = TestServer::start().await;
    let u = TestUser::signup(&s, "av").await;
    let url = format!("{}/api/auth/update-profile", s.url);
    // An SVG named .png is refused: type by content.
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'></svg>".to_vec();
    let form = reqwest::multipart::Form::new()
        .part("avatar", reqwest::multipart::Part::bytes(svg).file_name("a.png").mime_str("image/png").unwrap());
    let r = u.http.put(&url).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Over 2 MiB.
    let mut big = png();
    big.resize(2 * 1024 * 1024 + 10, 0);
    let r = u.http.put(&url).multipart(avatar_form(big, "Big")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Invalid name.
    let r = u.http.put(&url).json(&json!({ "full_name": "" })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(body["errors"]["full_name"][0].is_string());
    // Not logged in.
    let r = client().put(&url).json(&json!({ "bio": "x" })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Nothing changed.
    let me: Value = u.http.get(format!("{}/api/auth/get-user", s.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["full_name"], "av");
    assert_eq!(me["user"]["profile_picture"], "");
    s.stop().await;
}

#[tokio::test]
async fn accounts_survive_a_restart() {
    let s = TestServer::start().await;
    let u = TestUser::signup(&s, "durable").await;
    let s = s.restart().await;
    let (status, body) =
        post_json(&client(), &s.url, "/api/auth/login", json!({ "email": u.email, "password": PASSWORD })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"]["_id"], u.id.as_str());
    s.stop().await;
}

#[tokio::test]
async fn revocations_survive_a_restart() {
    let s = TestServer::start().await;
    let u = TestUser::signup(&s, "rev").await;
    u.http.post(format!("{}/api/auth/logout", s.url)).bearer_auth(&u.token).send().await.unwrap();
    let s = s.restart().await;
    let r = client().get(format!("{}/api/auth/check-auth", s.url)).bearer_auth(&u.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn pages_render_on_the_server_and_health_answers() {
    let s = TestServer::start().await;
    // The login page, rendered on the server: its title, heading and button.
    let r = client().get(format!("{}/login", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let html = r.text().await.unwrap();
    assert!(html.contains("Welcome back"), "the login heading: {html}");
    assert!(html.contains("Log in"), "the login title and button: {html}");
    let r = client().get(format!("{}/api/health", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Unknown API paths are 404 JSON-or-HTML, never 500.
    let r = client().get(format!("{}/api/nope", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

/// A burst of sign-ups larger than the hashing queue: each one is either
/// created or turned away at once with 503 and `Retry-After` (never a 500,
/// never an unbounded pile of 19 MiB hashes), and the server is fine after.
#[tokio::test]
async fn signup_burst_is_bounded_by_the_hashing_queue() {
    let s = TestServer::start_with(|c| c.limits.auth_rate_per_minute = 100_000).await;
    let http = client();
    let attempts = (0..400).map(|i| {
        let http = http.clone();
        let url = s.url.clone();
        async move {
            let body = json!({ "email": unique_email(&format!("burst{i}")), "password": PASSWORD, "full_name": "B" });
            let (status, _, headers) = post_json_reply(&http, &url, "/api/auth/signup", body).await;
            (status, headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()))
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let created = results.iter().filter(|(st, _)| *st == StatusCode::CREATED).count();
    let busy: Vec<_> = results.iter().filter(|(st, _)| *st == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert_eq!(created + busy.len(), results.len(), "only 201 or 503: {results:?}");
    assert!(created >= 1, "the queue's worth is created");
    assert!(!busy.is_empty(), "400 at once overflow a queue of 32 per core");
    assert!(busy.iter().all(|(_, secs)| secs.is_some_and(|s| (1..=60).contains(&s))), "503s carry Retry-After");
    // Once the burst is over, sign-up works again.
    TestUser::signup(&s, "after-burst").await;
    s.stop().await;
}
