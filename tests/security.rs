//! Security hardening: each test names the attack it holds off.

mod common;

use charcha::{api::auth::Login, api::auth::UpdateProfile, server::auth::token::Claims};
use common::{PASSWORD, TestServer, TestUser, client, get, post_json_reply, reply, unique_email};
use leptos::server_fn::ServerFn;
use reqwest::{StatusCode, header};
use serde_json::json;

/// A bio of `</textarea><script>…` is shown as text in the profile form,
/// never as markup (it ran script on /profile).
#[tokio::test]
async fn a_bio_cannot_break_out_of_the_profile_textarea() {
    let server = TestServer::start().await;
    let user = TestUser::signup(&server, "Mallory").await;
    let payload = "</textarea><script>window.__pwned=1</script><textarea>";
    let form = reqwest::multipart::Form::new().text("bio", payload);
    let resp = user.http.put(format!("{}/api/auth/update-profile", server.url)).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let page = user.http.get(format!("{}/profile", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Mallory"), "the signed-in profile page rendered");
    assert!(!page.contains("<script>window.__pwned"), "the bio became markup:\n{page}");
}

/// Cross-site form posts are refused before they log anyone in (login
/// CSRF), on the REST routes and the server functions alike; same-origin
/// browser requests and non-browser clients pass.
#[tokio::test]
async fn cross_site_state_changes_are_refused() {
    let server = TestServer::start().await;
    let user = TestUser::signup(&server, "Victim").await;
    let host = server.url.trim_start_matches("http://").to_string();
    let login_body = json!({ "email": user.email, "password": PASSWORD });
    let attempts: [(&str, &str, &str); 4] = [
        ("origin", "https://evil.example", "a foreign Origin"),
        ("origin", "null", "an opaque Origin (sandboxed frame, data: URL)"),
        ("sec-fetch-site", "cross-site", "Sec-Fetch-Site: cross-site"),
        ("sec-fetch-site", "same-site", "a sibling subdomain"),
    ];
    for (name, value, what) in attempts {
        let resp = client()
            .post(format!("{}/api/auth/login", server.url))
            .header(name, value)
            .json(&login_body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "REST login with {what}");
        assert!(resp.headers().get(header::SET_COOKIE).is_none(), "no session for {what}");
        let form = format!("email={}&password={}", user.email.replace('@', "%40"), PASSWORD.replace(' ', "+"));
        let resp = client()
            .post(format!("{}{}", server.url, Login::PATH))
            .header(name, value)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "server fn login with {what}");
        assert!(resp.headers().get(header::SET_COOKIE).is_none());
        let resp = user.http.post(format!("{}/api/auth/logout", server.url)).header(name, value).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "logout with {what}");
    }
    // The same page's own requests, and clients that are not browsers.
    let same_origin = client()
        .post(format!("{}/api/auth/login", server.url))
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .json(&login_body)
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), StatusCode::OK);
    let (status, _, _) = post_json_reply(&client(), &server.url, "/api/auth/login", login_body.clone()).await;
    assert_eq!(status, StatusCode::OK, "no browser headers: a script or app");
    // Reading is not changing: a cross-site GET of the landing page works.
    let page = client().get(format!("{}/", server.url)).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
}

/// Pages carry a CSP that allows exactly the render's nonce; nothing may
/// frame Charcha or sniff types; signed-in answers are never cached.
#[tokio::test]
async fn responses_carry_the_security_headers() {
    let server = TestServer::start().await;
    let user = TestUser::signup(&server, "Headers").await;
    let resp = user.http.get(format!("{}/chat", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    let page = resp.text().await.unwrap();
    let csp = h.get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).expect("a page CSP").to_string();
    let nonce = page.split("nonce=\"").nth(1).and_then(|r| r.split('"').next()).expect("inline scripts carry a nonce");
    assert!(csp.contains(&format!("'nonce-{nonce}'")), "CSP {csp} allows the page's nonce {nonce}");
    for part in ["frame-ancestors 'none'", "object-src 'none'", "'wasm-unsafe-eval'", "connect-src 'self'"] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    assert!(!csp.contains("'unsafe-eval'") && !csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(h[header::REFERRER_POLICY], "same-origin");
    assert_eq!(h[header::CACHE_CONTROL], "no-store", "a signed-in page");
    assert!(h.get(header::STRICT_TRANSPORT_SECURITY).is_none(), "HSTS only in production");

    let (status, _, h) = reply(user.http.get(format!("{}/api/auth/get-user", server.url)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    assert!(h[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'none'"));

    let prod = TestServer::start_with(|c| c.mode = charcha::server::config::RunMode::Production).await;
    let resp = client().get(format!("{}/api/health", prod.url)).send().await.unwrap();
    assert!(resp.headers()[header::STRICT_TRANSPORT_SECURITY].to_str().unwrap().contains("max-age="));
}

/// Server functions are bounded like their REST twins: 64 KiB of JSON or
/// form, the avatar limit for the profile form.
#[tokio::test]
async fn server_function_bodies_are_bounded() {
    let server = TestServer::start().await;
    let user = TestUser::signup(&server, "Big").await;
    let limits = &server.config.limits;
    let big_form = format!("email=a%40b.c&password={}", "x".repeat(limits.max_json_bytes + 1));
    let resp = client()
        .post(format!("{}{}", server.url, Login::PATH))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(big_form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let avatar = vec![0u8; limits.avatar_max_bytes + 128 * 1024];
    let form = reqwest::multipart::Form::new()
        .part("avatar", reqwest::multipart::Part::bytes(avatar).file_name("a.png").mime_str("image/png").unwrap());
    let resp = user.http.post(format!("{}{}", server.url, UpdateProfile::PATH)).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A normal profile edit through the server function still works.
    let form = reqwest::multipart::Form::new().text("bio", "fine");
    let resp = user.http.post(format!("{}{}", server.url, UpdateProfile::PATH)).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Tokens from the future, or living longer than the server issues them,
/// are refused even with a valid signature; logging out with a token whose
/// `exp` is huge cannot overflow the revocation time.
#[tokio::test]
async fn tokens_with_impossible_times_are_refused() {
    let server = TestServer::start().await;
    let user = TestUser::signup(&server, "Times").await;
    let tokens = server.state().auth.tokens();
    let now = charcha::server::clock::now_ms() / 1000;
    for (iat, exp, what) in [(now + 600, now + 1200, "issued in the future"), (now, i64::MAX, "never expires")] {
        let t = tokens.sign(&Claims { sub: user.id.clone(), iat, exp, jti: "j".into() }).unwrap();
        let resp = client().get(format!("{}/api/auth/check-auth", server.url)).bearer_auth(&t).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
        let resp = client().post(format!("{}/api/auth/logout", server.url)).bearer_auth(&t).send().await.unwrap();
        assert!(resp.status().is_client_error() || resp.status().is_success(), "{what}: {}", resp.status());
    }
    let (status, _) = get(&user.http, &server.url, "/api/auth/check-auth").await;
    assert_eq!(status, StatusCode::OK, "the real session still works");
}

/// Names that would display as something else are refused.
#[tokio::test]
async fn names_with_bidi_overrides_or_invisible_characters_are_refused() {
    let server = TestServer::start().await;
    for name in ["Admin\u{202E}nimda", "Ad\u{200B}min", "\u{FEFF}Admin"] {
        let (status, body, _) = post_json_reply(
            &client(),
            &server.url,
            "/api/auth/signup",
            json!({ "email": unique_email("bidi"), "password": PASSWORD, "full_name": name }),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {body}");
        assert!(body["errors"]["full_name"].is_array() || body.to_string().contains("full_name"), "{body}");
    }
}

/// A logout closes the sockets opened with that token (on every instance,
/// through the bus) with 4401; sockets of the user's other sessions stay.
/// A token's expiry closes its sockets too.
#[tokio::test]
async fn sockets_do_not_outlive_logout_or_expiry() {
    use charcha::protocol::CLOSE_SESSION_ENDED;
    let server = TestServer::start().await;
    let user = TestUser::signup(&server, "Leaver").await;
    let mut laptop = user.ws(&server).await;
    let (status, body, _) = post_json_reply(
        &client(),
        &server.url,
        "/api/auth/login",
        json!({ "email": user.email, "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let other_token = body["token"].as_str().unwrap().to_string();
    let mut phone = common::Ws::connect(&server, &other_token).await;

    let resp = user.http.post(format!("{}/api/auth/logout", server.url)).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let code = tokio::time::timeout(std::time::Duration::from_secs(5), laptop.close_code()).await;
    assert_eq!(code.expect("closed within 5 s"), Some(CLOSE_SESSION_ENDED));
    phone.send_json(json!({ "type": "ping", "nonce": 5 })).await;
    let pong = phone.next_where(std::time::Duration::from_secs(5), |e| e["type"] == "pong").await;
    assert!(pong.is_some(), "the other session goes on");

    let short = TestServer::start_with(|c| c.jwt_expiration = std::time::Duration::from_secs(2)).await;
    let brief = TestUser::signup(&short, "Brief").await;
    let mut ws = brief.ws(&short).await;
    // close_code waits up to 5 s; the token lives 2.
    assert_eq!(ws.close_code().await, Some(CLOSE_SESSION_ENDED), "closed when the token expired");
}

/// A photo's EXIF location never reaches the people who see it: message
/// images and avatars are stored without it, the picture itself intact.
#[tokio::test]
async fn uploaded_photos_lose_their_gps_location() {
    use common::{GPS_SECRET, JPEG_SCAN, contains_bytes, jpeg_with_gps};
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let photo = jpeg_with_gps();
    assert!(contains_bytes(&photo, GPS_SECRET));

    let form = reqwest::multipart::Form::new().text("to", bob.id.clone()).part(
        "image",
        reqwest::multipart::Part::bytes(photo.clone()).file_name("IMG_0001.jpg").mime_str("image/jpeg").unwrap(),
    );
    let resp = ann.http.post(format!("{}/api/media", server.url)).multipart(form).send().await.unwrap();
    let (status, body, _) = reply(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = body["url"].as_str().expect("url");
    let resp = bob.http.get(format!("{}{url}", server.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "image/jpeg");
    let served = resp.bytes().await.unwrap().to_vec();
    assert!(!contains_bytes(&served, GPS_SECRET) && !contains_bytes(&served, b"Exif"), "EXIF served: {served:02X?}");
    assert!(served.starts_with(&[0xFF, 0xD8]) && served.ends_with(&[0xFF, 0xD9]));
    assert!(contains_bytes(&served, JPEG_SCAN), "the picture itself is kept");

    // The avatar path strips too.
    let form = reqwest::multipart::Form::new()
        .part("avatar", reqwest::multipart::Part::bytes(photo).file_name("me.jpg").mime_str("image/jpeg").unwrap());
    let resp = ann.http.put(format!("{}/api/auth/update-profile", server.url)).multipart(form).send().await.unwrap();
    let (status, body, _) = reply(resp).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let avatar = body["user"]["profile_picture"].as_str().expect("avatar url");
    let served = client().get(format!("{}{avatar}", server.url)).send().await.unwrap().bytes().await.unwrap();
    assert!(!contains_bytes(&served, GPS_SECRET) && contains_bytes(&served, JPEG_SCAN));

    // A JPEG cut off before its image data is refused, not stored half-stripped.
    let form = reqwest::multipart::Form::new()
        .text("to", bob.id.clone())
        .part("image", reqwest::multipart::Part::bytes(jpeg_with_gps()[..40].to_vec()).file_name("cut.jpg"));
    let resp = ann.http.post(format!("{}/api/media", server.url)).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}
