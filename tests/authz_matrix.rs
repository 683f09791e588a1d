//! The authorization matrix: every REST route, every server function and
//! every WebSocket client event, called as three actors:
//!
//! - **anonymous**: no session. Gets 401 (the WebSocket upgrade is refused),
//!   except on the public rows (health, sign-up, log-in, log-out, avatars,
//!   `current_user`, which answers "nobody");
//! - **outsider**: signed in, not a party to the conversation or media the
//!   row is about. Gets 403/404 (or 400 for a forged reference) without the
//!   data, or, where the route is keyed by the caller (history "with Bob",
//!   "my conversations"), only the caller's own data;
//! - **member**: a party. Succeeds, and sees the data.
//!
//! The tables are the spec: adding a route, a server function or a client
//! event means adding a row, and the coverage tests fail until it is there
//! (REST routes are read from `src/server/rest.rs`, server functions from
//! the server-function registry, client events by an exhaustive match).
//!
//! Requests carry the session as a `token` cookie set by hand on a client
//! without a cookie jar, so a row's `Set-Cookie` never changes who the next
//! row runs as.

mod common;

use std::collections::BTreeSet;

use charcha::{
    api::{
        auth::{CurrentUser, Login, Logout, Signup, UpdateProfile},
        chat::{
            AddGroupMembers, Conversation, CreateGroup, GetContact, GetGroup, LeaveGroup, ListConversations,
            RemoveGroupMember, RenameGroup, SearchMessages, SearchUsers, SendMessage, UploadImage,
        },
        dto::direct_conversation_id,
    },
    protocol::ClientEvent,
};
use common::{PASSWORD, TestServer, TestUser, Ws, png, unique_email, ws_request};
use leptos::server_fn::ServerFn;
use reqwest::{RequestBuilder, StatusCode, header, multipart};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Actor {
    Anonymous,
    Outsider,
    Member,
}

const ACTORS: [Actor; 3] = [Actor::Anonymous, Actor::Outsider, Actor::Member];

/// What one actor must get from one row.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// This status; the row is public or about the caller alone.
    Is(u16),
    /// This status, and the member's conversation is in the answer.
    Sees(u16),
    /// This status, and only the caller's own data: no trace of the
    /// member's conversation, and any user or sender in it is the caller.
    Own(u16),
    /// 401, and nothing of the conversation.
    Unauthorized,
    /// 400, 403 or 404 (refused without saying what exists), and nothing
    /// of the conversation.
    Denied,
}

/// The people and data every row is about. Ann (the member) and Bob have a
/// conversation with a secret message and a private image, and a group
/// (Ann its creator) with a secret message of its own; Cat is the
/// outsider; Dave is the account the log-in rows log in to (and the one the
/// group rows add and remove).
struct World {
    server: TestServer,
    ann: TestUser,
    bob: TestUser,
    cat: TestUser,
    dave: TestUser,
    secret: String,
    /// Ann's message carrying `secret`, and a second one of hers (deleted by a row).
    secret_id: String,
    spare_id: String,
    conversation_id: String,
    /// `/api/media/<id>` of the image Ann sent Bob.
    private_image: String,
    /// `/api/media/<id>` of Ann's avatar (public).
    avatar: String,
    /// Ann and Bob's group, its secret message and a second one (deleted by a row).
    group_id: String,
    group_secret: String,
    group_secret_id: String,
    group_spare_id: String,
}

impl World {
    async fn new() -> Self {
        let server = TestServer::start().await;
        let ann = TestUser::signup(&server, "Ann").await;
        let bob = TestUser::signup(&server, "Bob").await;
        let cat = TestUser::signup(&server, "Cat").await;
        let dave = TestUser::signup(&server, "Dave").await;
        let secret = format!("secret-{}", ulid::Ulid::new());
        let url = |p: &str| format!("{}{p}", server.url);
        let mut sent = Vec::new();
        for text in [secret.clone(), format!("spare {secret}")] {
            let resp = ann.http.post(url(&format!("/api/messages/send/{}", bob.id))).json(&json!({ "text": text }));
            let (status, body) = common::body_json(resp.send().await.unwrap()).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            sent.push(body["_id"].as_str().expect("message id").to_string());
        }
        let (secret_id, spare_id) = (sent[0].clone(), sent[1].clone());
        let form = multipart::Form::new().text("to", bob.id.clone()).part("image", image_part());
        let (status, body) =
            common::body_json(ann.http.post(url("/api/media")).multipart(form).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let private_image = body["url"].as_str().expect("url").to_string();
        let form = multipart::Form::new().part("avatar", image_part());
        let (status, body) =
            common::body_json(ann.http.put(url("/api/auth/update-profile")).multipart(form).send().await.unwrap())
                .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let avatar = body["user"]["profile_picture"].as_str().expect("avatar").to_string();
        // History is written by the worker shortly after the ack.
        let history = format!("/api/messages/{}", bob.id);
        common::eventually(|| async {
            let (_, page) = common::get(&ann.http, &server.url, &history).await;
            page.to_string().contains(&format!("spare {secret}")).then_some(())
        })
        .await;
        let conversation_id = direct_conversation_id(&ann.id, &bob.id);
        let (status, group) = common::post_json(
            &ann.http,
            &server.url,
            "/api/groups",
            json!({ "name": "Ann and Bob", "member_ids": [bob.id] }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{group}");
        let group_id = group["_id"].as_str().expect("group id").to_string();
        let group_secret = format!("groupsecret-{}", ulid::Ulid::new());
        let mut group_sent = Vec::new();
        for text in [group_secret.clone(), format!("spare {group_secret}")] {
            let path = format!("/api/messages/send/{group_id}");
            let (status, body) = common::post_json(&ann.http, &server.url, &path, json!({ "text": text })).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            group_sent.push(body["_id"].as_str().expect("message id").to_string());
        }
        let group_history = format!("/api/messages/{group_id}");
        common::eventually(|| async {
            let (_, page) = common::get(&ann.http, &server.url, &group_history).await;
            page.to_string().contains(&format!("spare {group_secret}")).then_some(())
        })
        .await;
        Self {
            server,
            ann,
            bob,
            cat,
            dave,
            secret,
            secret_id,
            spare_id,
            conversation_id,
            private_image,
            avatar,
            group_id,
            group_secret,
            group_secret_id: group_sent[0].clone(),
            group_spare_id: group_sent[1].clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }

    /// The user acting as `actor`, if any.
    fn user(&self, actor: Actor) -> Option<&TestUser> {
        match actor {
            Actor::Anonymous => None,
            Actor::Outsider => Some(&self.cat),
            Actor::Member => Some(&self.ann),
        }
    }

    /// Whether `body` shows anything of Ann and Bob's conversation or group.
    fn leaks(&self, body: &str) -> bool {
        let image_id = self.private_image.rsplit('/').next().unwrap_or(&self.private_image);
        body.contains(&self.secret)
            || body.contains(&self.conversation_id)
            || body.contains(image_id)
            || body.contains(&self.group_id)
            || body.contains(&self.group_secret)
    }
}

fn image_part() -> multipart::Part {
    multipart::Part::bytes(png()).file_name("dot.png").mime_str("image/png").expect("mime")
}

/// How a row's request is made.
#[derive(Clone, Copy)]
enum Request {
    /// Any request.
    Build(fn(&World, &reqwest::Client) -> RequestBuilder),
    /// A URL-encoded form post to the row's route (how the UI calls most
    /// server functions).
    Form(fn(&World) -> Vec<(&'static str, String)>),
}

/// One call, as the table lists it.
struct Row {
    /// As the router or the server-function registry names it.
    method: &'static str,
    route: &'static str,
    what: &'static str,
    request: Request,
    /// Run with a session of its own (a log-out revokes the one it uses).
    fresh_session: bool,
    /// Anonymous, outsider, member.
    expect: [Expect; 3],
}

use Expect::{Denied, Is, Own, Sees, Unauthorized};

fn row(
    method: &'static str,
    route: &'static str,
    what: &'static str,
    request: fn(&World, &reqwest::Client) -> RequestBuilder,
    expect: [Expect; 3],
) -> Row {
    Row { method, route, what, request: Request::Build(request), fresh_session: false, expect }
}

fn rest_rows() -> Vec<Row> {
    vec![
        row("GET", "/api/health", "health", |w, c| c.get(w.url("/api/health")), [Is(200); 3]),
        // Gated by configuration (its own address or a token), not by a
        // session: with neither configured, as here, it does not exist.
        row("GET", "/metrics", "metrics", |w, c| c.get(w.url("/metrics")), [Is(404); 3]),
        row(
            "POST",
            "/api/auth/signup",
            "sign up",
            |w, c| {
                let body = json!({ "email": unique_email("m"), "password": PASSWORD, "full_name": "New" });
                c.post(w.url("/api/auth/signup")).json(&body)
            },
            [Is(201); 3],
        ),
        row(
            "POST",
            "/api/auth/login",
            "log in",
            |w, c| c.post(w.url("/api/auth/login")).json(&json!({ "email": w.dave.email, "password": PASSWORD })),
            [Is(200); 3],
        ),
        Row {
            fresh_session: true,
            ..row("POST", "/api/auth/logout", "log out", |w, c| c.post(w.url("/api/auth/logout")), [Is(200); 3])
        },
        row(
            "PUT",
            "/api/auth/update-profile",
            "edit own profile (JSON)",
            |w, c| c.put(w.url("/api/auth/update-profile")).json(&json!({ "bio": "edited" })),
            [Unauthorized, Own(200), Own(200)],
        ),
        row(
            "POST",
            "/api/auth/update-profile",
            "edit own profile (form)",
            |w, c| c.post(w.url("/api/auth/update-profile")).multipart(multipart::Form::new().text("bio", "edited")),
            [Unauthorized, Own(200), Own(200)],
        ),
        row(
            "GET",
            "/api/auth/get-user",
            "who am I",
            |w, c| c.get(w.url("/api/auth/get-user")),
            [Unauthorized, Own(200), Own(200)],
        ),
        row(
            "GET",
            "/api/auth/check-auth",
            "am I signed in",
            |w, c| c.get(w.url("/api/auth/check-auth")),
            [Unauthorized, Own(200), Own(200)],
        ),
        row(
            "GET",
            "/api/messages/users",
            "people",
            |w, c| c.get(w.url("/api/messages/users")),
            [Unauthorized, Is(200), Is(200)],
        ),
        // Searching for the secret: only a member of the conversation finds it.
        row(
            "GET",
            "/api/messages/search",
            "search messages for Ann and Bob's secret",
            |w, c| c.get(w.url("/api/messages/search")).query(&[("q", w.secret.as_str())]),
            [Unauthorized, Own(200), Sees(200)],
        ),
        row(
            "GET",
            "/api/conversations",
            "my conversations",
            |w, c| c.get(w.url("/api/conversations")),
            [Unauthorized, Own(200), Sees(200)],
        ),
        row(
            "POST",
            "/api/conversations/{id}/read",
            "mark Ann and Bob's conversation read",
            |w, c| {
                let body = json!({ "message_id": ulid::Ulid::new().to_string() });
                c.post(w.url(&format!("/api/conversations/{}/read", w.conversation_id))).json(&body)
            },
            [Unauthorized, Denied, Is(204)],
        ),
        row(
            "PATCH",
            "/api/conversations/{id}/messages/{message_id}",
            "edit Ann's message",
            |w, c| {
                let url = w.url(&format!("/api/conversations/{}/messages/{}", w.conversation_id, w.secret_id));
                c.patch(url).json(&json!({ "text": format!("{} (edited)", w.secret) }))
            },
            [Unauthorized, Denied, Sees(200)],
        ),
        row(
            "POST",
            "/api/conversations/{id}/messages/{message_id}/reactions",
            "react to Ann's message",
            |w, c| {
                let url =
                    w.url(&format!("/api/conversations/{}/messages/{}/reactions", w.conversation_id, w.secret_id));
                c.post(url).json(&json!({ "emoji": "👍", "on": true }))
            },
            [Unauthorized, Denied, Is(204)],
        ),
        row(
            "DELETE",
            "/api/conversations/{id}/messages/{message_id}",
            "delete Ann's message",
            |w, c| c.delete(w.url(&format!("/api/conversations/{}/messages/{}", w.conversation_id, w.spare_id))),
            [Unauthorized, Denied, Is(200)],
        ),
        row(
            "POST",
            "/api/messages/send/{id}",
            "send to Bob (a forged sender is ignored)",
            |w, c| {
                let body = json!({ "text": "hi", "sender_id": w.ann.id, "conversation_id": w.conversation_id });
                c.post(w.url(&format!("/api/messages/send/{}", w.bob.id))).json(&body)
            },
            [Unauthorized, Own(201), Is(201)],
        ),
        row(
            "POST",
            "/api/messages/send/{id}",
            "send Ann and Bob's image",
            |w, c| {
                let body = json!({ "image": w.private_image });
                c.post(w.url(&format!("/api/messages/send/{}", w.bob.id))).json(&body)
            },
            [Unauthorized, Denied, Is(201)],
        ),
        row(
            "GET",
            "/api/messages/{id}",
            "history with Bob",
            |w, c| c.get(w.url(&format!("/api/messages/{}", w.bob.id))),
            [Unauthorized, Own(200), Sees(200)],
        ),
        row(
            "POST",
            "/api/media",
            "upload an image for Bob",
            |w, c| {
                c.post(w.url("/api/media"))
                    .multipart(multipart::Form::new().text("to", w.bob.id.clone()).part("image", image_part()))
            },
            [Unauthorized, Own(201), Is(201)],
        ),
        // Private media answers 404 to anonymous too: ids cannot be probed.
        row(
            "GET",
            "/api/media/{id}",
            "Ann and Bob's image",
            |w, c| c.get(w.url(&w.private_image)),
            [Denied, Denied, Is(200)],
        ),
        row("GET", "/api/media/{id}", "an avatar (public)", |w, c| c.get(w.url(&w.avatar)), [Is(200); 3]),
        // Groups: an outsider can do nothing with Ann and Bob's group.
        row(
            "POST",
            "/api/groups",
            "create a group with Bob",
            |w, c| c.post(w.url("/api/groups")).json(&json!({ "name": "Mine", "member_ids": [w.bob.id] })),
            [Unauthorized, Is(201), Is(201)],
        ),
        row(
            "GET",
            "/api/groups/{id}",
            "Ann and Bob's group",
            |w, c| c.get(w.url(&format!("/api/groups/{}", w.group_id))),
            [Unauthorized, Denied, Sees(200)],
        ),
        row(
            "PATCH",
            "/api/groups/{id}",
            "rename Ann and Bob's group",
            |w, c| c.patch(w.url(&format!("/api/groups/{}", w.group_id))).json(&json!({ "name": "Renamed" })),
            [Unauthorized, Denied, Sees(200)],
        ),
        row(
            "POST",
            "/api/groups/{id}/members",
            "add Dave to Ann and Bob's group",
            |w, c| {
                c.post(w.url(&format!("/api/groups/{}/members", w.group_id))).json(&json!({ "user_ids": [w.dave.id] }))
            },
            [Unauthorized, Denied, Sees(200)],
        ),
        row(
            "DELETE",
            "/api/groups/{id}/members/{user_id}",
            "remove Dave from Ann and Bob's group",
            |w, c| c.delete(w.url(&format!("/api/groups/{}/members/{}", w.group_id, w.dave.id))),
            [Unauthorized, Denied, Sees(200)],
        ),
        row(
            "GET",
            "/api/messages/{id}",
            "history of Ann and Bob's group",
            |w, c| c.get(w.url(&format!("/api/messages/{}", w.group_id))),
            [Unauthorized, Denied, Sees(200)],
        ),
        row(
            "POST",
            "/api/messages/send/{id}",
            "send to Ann and Bob's group",
            |w, c| c.post(w.url(&format!("/api/messages/send/{}", w.group_id))).json(&json!({ "text": "hi" })),
            [Unauthorized, Denied, Is(201)],
        ),
        row(
            "GET",
            "/api/messages/search",
            "search messages for the group's secret",
            |w, c| c.get(w.url("/api/messages/search")).query(&[("q", w.group_secret.as_str())]),
            [Unauthorized, Own(200), Sees(200)],
        ),
        row(
            "POST",
            "/api/conversations/{id}/read",
            "mark Ann and Bob's group read",
            |w, c| {
                let body = json!({ "message_id": w.group_secret_id });
                c.post(w.url(&format!("/api/conversations/{}/read", w.group_id))).json(&body)
            },
            [Unauthorized, Denied, Is(204)],
        ),
        row(
            "PATCH",
            "/api/conversations/{id}/messages/{message_id}",
            "edit Ann's group message",
            |w, c| {
                let url = w.url(&format!("/api/conversations/{}/messages/{}", w.group_id, w.group_secret_id));
                c.patch(url).json(&json!({ "text": format!("{} (edited)", w.group_secret) }))
            },
            [Unauthorized, Denied, Sees(200)],
        ),
        row(
            "POST",
            "/api/conversations/{id}/messages/{message_id}/reactions",
            "react to Ann's group message",
            |w, c| {
                let url = w.url(&format!("/api/conversations/{}/messages/{}/reactions", w.group_id, w.group_secret_id));
                c.post(url).json(&json!({ "emoji": "👍", "on": true }))
            },
            [Unauthorized, Denied, Is(204)],
        ),
        row(
            "DELETE",
            "/api/conversations/{id}/messages/{message_id}",
            "delete Ann's group message",
            |w, c| c.delete(w.url(&format!("/api/conversations/{}/messages/{}", w.group_id, w.group_spare_id))),
            [Unauthorized, Denied, Is(200)],
        ),
        row(
            "POST",
            "/api/media",
            "upload an image for Ann and Bob's group",
            |w, c| {
                c.post(w.url("/api/media"))
                    .multipart(multipart::Form::new().text("to", w.group_id.clone()).part("image", image_part()))
            },
            [Unauthorized, Denied, Is(201)],
        ),
        // The upgrade handshake over plain HTTP (101 without reading on);
        // the WebSocket matrix below talks over real sockets.
        row(
            "GET",
            "/ws",
            "WebSocket upgrade",
            |w, c| {
                c.get(w.url("/ws"))
                    .header(header::CONNECTION, "Upgrade")
                    .header(header::UPGRADE, "websocket")
                    .header(header::SEC_WEBSOCKET_VERSION, "13")
                    .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
                    .timeout(std::time::Duration::from_secs(5))
            },
            [Unauthorized, Is(101), Is(101)],
        ),
    ]
}

/// A server function, posted the way the UI posts it.
fn sfn(
    route: &'static str,
    what: &'static str,
    form: fn(&World) -> Vec<(&'static str, String)>,
    expect: [Expect; 3],
) -> Row {
    Row { method: "POST", route, what, request: Request::Form(form), fresh_session: false, expect }
}

/// A multipart server function.
fn sfn_multipart(
    route: &'static str,
    what: &'static str,
    request: fn(&World, &reqwest::Client) -> RequestBuilder,
    expect: [Expect; 3],
) -> Row {
    row("POST", route, what, request, expect)
}

fn server_fn_rows() -> Vec<Row> {
    vec![
        sfn(
            Signup::PATH,
            "sign up",
            |_| vec![("email", unique_email("f")), ("password", PASSWORD.into()), ("full_name", "New".into())],
            [Is(200); 3],
        ),
        sfn(
            Login::PATH,
            "log in",
            |w| vec![("email", w.dave.email.clone()), ("password", PASSWORD.into())],
            [Is(200); 3],
        ),
        Row { fresh_session: true, ..sfn(Logout::PATH, "log out", |_| vec![], [Is(200); 3]) },
        // Answers "nobody" (null) to anonymous callers, by design.
        sfn(CurrentUser::PATH, "who am I", |_| vec![], [Is(200), Own(200), Own(200)]),
        sfn(ListConversations::PATH, "my conversations", |_| vec![], [Unauthorized, Own(200), Sees(200)]),
        sfn(SearchUsers::PATH, "people", |_| vec![("q", String::new())], [Unauthorized, Is(200), Is(200)]),
        sfn(
            SearchMessages::PATH,
            "search messages for Ann and Bob's secret",
            |w| vec![("q", w.secret.clone())],
            [Unauthorized, Own(200), Sees(200)],
        ),
        sfn(
            GetContact::PATH,
            "Bob's contact card",
            |w| vec![("id", w.bob.id.clone())],
            [Unauthorized, Is(200), Is(200)],
        ),
        sfn(
            Conversation::PATH,
            "history with Bob",
            |w| vec![("peer_id", w.bob.id.clone())],
            [Unauthorized, Own(200), Sees(200)],
        ),
        sfn(
            SendMessage::PATH,
            "send to Bob",
            |w| {
                vec![
                    ("peer_id", w.bob.id.clone()),
                    ("client_msg_id", ulid::Ulid::new().to_string()),
                    ("text", "hi".into()),
                ]
            },
            [Unauthorized, Own(200), Is(200)],
        ),
        sfn(
            SendMessage::PATH,
            "send Ann and Bob's image",
            |w| {
                vec![
                    ("peer_id", w.bob.id.clone()),
                    ("client_msg_id", ulid::Ulid::new().to_string()),
                    ("image", w.private_image.clone()),
                ]
            },
            [Unauthorized, Denied, Is(200)],
        ),
        sfn(
            Conversation::PATH,
            "history of Ann and Bob's group",
            |w| vec![("peer_id", w.group_id.clone())],
            [Unauthorized, Denied, Sees(200)],
        ),
        sfn(
            SendMessage::PATH,
            "send to Ann and Bob's group",
            |w| {
                vec![
                    ("peer_id", w.group_id.clone()),
                    ("client_msg_id", ulid::Ulid::new().to_string()),
                    ("text", "hi".into()),
                ]
            },
            [Unauthorized, Denied, Is(200)],
        ),
        sfn(
            CreateGroup::PATH,
            "create a group with Bob",
            |w| vec![("name", "Mine".into()), ("member_ids[0]", w.bob.id.clone())],
            [Unauthorized, Is(200), Is(200)],
        ),
        sfn(
            GetGroup::PATH,
            "Ann and Bob's group",
            |w| vec![("id", w.group_id.clone())],
            [Unauthorized, Denied, Sees(200)],
        ),
        sfn(
            RenameGroup::PATH,
            "rename Ann and Bob's group",
            |w| vec![("id", w.group_id.clone()), ("name", "Renamed".into())],
            [Unauthorized, Denied, Sees(200)],
        ),
        sfn(
            AddGroupMembers::PATH,
            "add Dave to Ann and Bob's group",
            |w| vec![("id", w.group_id.clone()), ("user_ids[0]", w.dave.id.clone())],
            [Unauthorized, Denied, Sees(200)],
        ),
        sfn(
            RemoveGroupMember::PATH,
            "remove Dave from Ann and Bob's group",
            |w| vec![("id", w.group_id.clone()), ("user_id", w.dave.id.clone())],
            [Unauthorized, Denied, Sees(200)],
        ),
        // Last of the group rows: the member leaves.
        sfn(
            LeaveGroup::PATH,
            "leave Ann and Bob's group",
            |w| vec![("id", w.group_id.clone())],
            [Unauthorized, Denied, Is(200)],
        ),
        sfn_multipart(
            UpdateProfile::PATH,
            "edit own profile",
            |w, c| c.post(w.url(UpdateProfile::PATH)).multipart(multipart::Form::new().text("bio", "edited")),
            [Unauthorized, Own(200), Own(200)],
        ),
        sfn_multipart(
            UploadImage::PATH,
            "upload an image for Bob",
            |w, c| {
                let form = multipart::Form::new().text("to", w.bob.id.clone()).part("image", image_part());
                c.post(w.url(UploadImage::PATH)).multipart(form)
            },
            [Unauthorized, Own(200), Is(200)],
        ),
    ]
}

/// The request of `row`.
fn build(w: &World, row: &Row, c: &reqwest::Client) -> RequestBuilder {
    match row.request {
        Request::Build(request) => request(w, c),
        Request::Form(form) => c.post(w.url(row.route)).form(&form(w)),
    }
}

/// Why `body` (with `status`) breaks `expect` for `actor`, if it does.
fn violation(w: &World, actor: Actor, expect: Expect, status: StatusCode, body: &str) -> Option<String> {
    let status_is = |want: u16| (status.as_u16() != want).then(|| format!("status {status}, want {want}"));
    let no_leak = || w.leaks(body).then(|| "shows Ann and Bob's conversation".to_string());
    match expect {
        Is(want) => status_is(want),
        Sees(want) => {
            status_is(want).or_else(|| (!w.leaks(body)).then(|| "does not show the member's data".to_string()))
        }
        Own(want) => status_is(want).or_else(no_leak).or_else(|| {
            let me = w.user(actor).map_or("", |u| u.id.as_str());
            let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            // A user answered (get-user, update-profile, current_user) is
            // the caller; a message sent is from the caller.
            let user = if json["user"].is_object() { &json["user"] } else { &json };
            let user_id = user["email"].is_string().then(|| user["_id"].as_str()).flatten();
            [user_id, json["sender_id"].as_str()]
                .into_iter()
                .flatten()
                .find(|id| *id != me)
                .map(|id| format!("answers about {id}, not the caller"))
        }),
        Unauthorized => status_is(401).or_else(no_leak),
        Denied => (!matches!(status.as_u16(), 400 | 403 | 404))
            .then(|| format!("status {status}, want 400/403/404"))
            .or_else(no_leak),
    }
}

/// Runs `rows` as every actor; fails listing every violation.
async fn run_http_matrix(w: &World, rows: &[Row]) {
    // No cookie jar: the session is set per request, below.
    let http = common::client_builder().build().expect("client");
    let mut failures = Vec::new();
    for row in rows {
        for (actor, expect) in ACTORS.into_iter().zip(row.expect) {
            let token = match w.user(actor) {
                None => None,
                Some(u) if row.fresh_session => Some(w.server.state().auth.tokens().issue(&u.id).expect("token").0),
                Some(u) => Some(u.token.clone()),
            };
            let mut req = build(w, row, &http);
            if let Some(t) = &token {
                req = req.header(header::COOKIE, format!("token={t}"));
            }
            let resp = req.send().await.unwrap_or_else(|e| panic!("{} {}: {e}", row.method, row.route));
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            if let Some(why) = violation(w, actor, expect, status, &body) {
                let body: String = body.chars().take(300).collect();
                failures.push(format!("{} {} ({}) as {actor:?}: {why}\n    {body}", row.method, row.route, row.what));
            }
        }
    }
    assert!(failures.is_empty(), "{} violations:\n{}", failures.len(), failures.join("\n"));
    // The sessions the rows used are all still good (a log-out row used
    // one of its own).
    for user in [&w.ann, &w.cat] {
        let resp = http.get(w.url("/api/auth/check-auth")).bearer_auth(&user.token).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn every_rest_route_as_anonymous_outsider_and_member() {
    let w = World::new().await;
    run_http_matrix(&w, &rest_rows()).await;
}

#[tokio::test]
async fn every_server_function_as_anonymous_outsider_and_member() {
    let w = World::new().await;
    run_http_matrix(&w, &server_fn_rows()).await;
}

/// The REST routes of `src/server/rest.rs` as (METHOD, path): every
/// `.route("path", method(handler).other(handler)…)`.
fn routes_in_router() -> BTreeSet<(String, String)> {
    const SOURCE: &str = include_str!("../src/server/rest.rs");
    let code: String = SOURCE.chars().filter(|c| !c.is_whitespace()).collect();
    let calls = code.matches(".route(").count();
    let mut routes = BTreeSet::new();
    let mut literal_calls = 0;
    for call in code.split(".route(\"").skip(1) {
        literal_calls += 1;
        let Some((path, rest)) = call.split_once('"') else { continue };
        // The rest of the `.route(` call: up to its closing parenthesis.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map_or(rest.len(), |(i, _)| i);
        let handlers = &rest[..end];
        for method in ["get", "post", "put", "patch", "delete"] {
            if handlers.contains(&format!(",{method}(")) || handlers.contains(&format!(".{method}(")) {
                routes.insert((method.to_uppercase(), path.to_string()));
            }
        }
    }
    assert_eq!(calls, literal_calls, "every .route( in rest.rs names its path as a string literal");
    routes
}

#[test]
fn every_rest_route_has_a_row_and_every_row_a_route() {
    let in_router = routes_in_router();
    assert!(in_router.len() >= 15, "found only {in_router:?}");
    let in_table: BTreeSet<(String, String)> =
        rest_rows().iter().map(|r| (r.method.to_string(), r.route.to_string())).collect();
    let missing: Vec<_> = in_router.difference(&in_table).collect();
    let stale: Vec<_> = in_table.difference(&in_router).collect();
    assert!(missing.is_empty(), "routes without a row in rest_rows(): {missing:?}");
    assert!(stale.is_empty(), "rows for routes the router does not have: {stale:?}");
}

#[test]
fn every_server_function_has_a_row() {
    let registered: BTreeSet<(String, String)> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, method)| (method.to_string(), path.to_string()))
        .collect();
    assert!(!registered.is_empty(), "the registry lists the app's server functions");
    let in_table: BTreeSet<(String, String)> =
        server_fn_rows().iter().map(|r| (r.method.to_string(), r.route.to_string())).collect();
    let missing: Vec<_> = registered.difference(&in_table).collect();
    let stale: Vec<_> = in_table.difference(&registered).collect();
    assert!(missing.is_empty(), "server functions without a row in server_fn_rows(): {missing:?}");
    assert!(stale.is_empty(), "rows for unregistered server functions: {stale:?}");
}

// ------------------------------------------------------------ WebSocket

/// The `type` of a client event. The match is exhaustive: a new variant
/// does not compile until it is named here, in [`ALL_EVENTS`] and in a row
/// of [`ws_rows`].
fn event_type(event: &ClientEvent) -> &'static str {
    match event {
        ClientEvent::Send { .. } => "send",
        ClientEvent::Watch { .. } => "watch",
        ClientEvent::Ping { .. } => "ping",
        ClientEvent::Read { .. } => "read",
        ClientEvent::Typing { .. } => "typing",
        ClientEvent::Edit { .. } => "edit",
        ClientEvent::Delete { .. } => "delete",
        ClientEvent::React { .. } => "react",
    }
}

const ALL_EVENTS: [&str; 8] = ["send", "watch", "ping", "read", "typing", "edit", "delete", "react"];

/// What a signed-in actor must get for a WebSocket event.
#[derive(Clone, Copy, Debug)]
enum WsExpect {
    /// A frame of this type.
    Reply(&'static str),
    /// An ack of a message from the caller, in the caller's own conversation.
    OwnAck,
    /// An `error` frame with code `invalid`, showing nothing.
    Refused,
    /// Accepted without an answer to this session: a `ping` sent right
    /// after it gets its `pong` with no error before it.
    Silent,
    /// An `updated` answer: the caller changed its own message.
    Updated,
    /// An ack of a message from the caller to Ann and Bob's group.
    GroupAck,
}

/// What a client event may name.
struct Ids {
    ann: String,
    bob: String,
    private_image: String,
    conversation: String,
    secret: String,
    secret_id: String,
    spare_id: String,
    group: String,
    group_secret: String,
    group_secret_id: String,
    group_spare_id: String,
}

impl World {
    fn ids(&self) -> Ids {
        Ids {
            ann: self.ann.id.clone(),
            bob: self.bob.id.clone(),
            private_image: self.private_image.clone(),
            conversation: self.conversation_id.clone(),
            secret: self.secret.clone(),
            secret_id: self.secret_id.clone(),
            spare_id: self.spare_id.clone(),
            group: self.group_id.clone(),
            group_secret: self.group_secret.clone(),
            group_secret_id: self.group_secret_id.clone(),
            group_spare_id: self.group_spare_id.clone(),
        }
    }
}

struct WsRow {
    what: &'static str,
    event: fn(&Ids) -> ClientEvent,
    /// Outsider, member; anonymous callers never get a socket.
    expect: [WsExpect; 2],
}

fn ws_rows() -> Vec<WsRow> {
    vec![
        WsRow {
            what: "send to Bob",
            event: |w| ClientEvent::Send {
                client_msg_id: ulid::Ulid::new().to_string(),
                to: w.bob.clone(),
                conversation_id: None,
                text: "hi".into(),
                image: None,
                reply_to: None,
            },
            expect: [WsExpect::OwnAck, WsExpect::OwnAck],
        },
        WsRow {
            what: "send Ann and Bob's image",
            event: |w| ClientEvent::Send {
                client_msg_id: ulid::Ulid::new().to_string(),
                to: w.bob.clone(),
                conversation_id: None,
                text: String::new(),
                image: Some(w.private_image.clone()),
                reply_to: None,
            },
            expect: [WsExpect::Refused, WsExpect::OwnAck],
        },
        WsRow {
            what: "watch Ann and Bob",
            event: |w| ClientEvent::Watch { user_ids: vec![w.ann.clone(), w.bob.clone()] },
            expect: [WsExpect::Reply("presence_batch"); 2],
        },
        WsRow { what: "ping", event: |_| ClientEvent::Ping { nonce: 7 }, expect: [WsExpect::Reply("pong"); 2] },
        WsRow {
            what: "mark Ann and Bob's conversation read",
            event: |w| ClientEvent::Read {
                conversation_id: w.conversation.clone(),
                message_id: ulid::Ulid::new().to_string(),
            },
            expect: [WsExpect::Refused, WsExpect::Silent],
        },
        WsRow {
            what: "edit Ann's message",
            event: |w| ClientEvent::Edit {
                client_msg_id: ulid::Ulid::new().to_string(),
                message_id: w.secret_id.clone(),
                text: format!("{} (edited)", w.secret),
            },
            expect: [WsExpect::Refused, WsExpect::Updated],
        },
        WsRow {
            what: "delete Ann's message",
            event: |w| ClientEvent::Delete {
                client_msg_id: ulid::Ulid::new().to_string(),
                message_id: w.spare_id.clone(),
            },
            expect: [WsExpect::Refused, WsExpect::Updated],
        },
        WsRow {
            what: "react to Ann's message",
            event: |w| ClientEvent::React { message_id: w.secret_id.clone(), emoji: "🎉".into(), on: true },
            expect: [WsExpect::Refused, WsExpect::Silent],
        },
        WsRow {
            what: "typing in Ann and Bob's conversation",
            event: |w| ClientEvent::Typing { conversation_id: w.conversation.clone() },
            expect: [WsExpect::Refused, WsExpect::Silent],
        },
        WsRow {
            what: "send to Ann and Bob's group",
            event: |w| ClientEvent::Send {
                client_msg_id: ulid::Ulid::new().to_string(),
                to: String::new(),
                conversation_id: Some(w.group.clone()),
                text: "hi".into(),
                image: None,
                reply_to: None,
            },
            expect: [WsExpect::Refused, WsExpect::GroupAck],
        },
        WsRow {
            what: "mark Ann and Bob's group read",
            event: |w| ClientEvent::Read { conversation_id: w.group.clone(), message_id: w.group_secret_id.clone() },
            expect: [WsExpect::Refused, WsExpect::Silent],
        },
        WsRow {
            what: "edit Ann's group message",
            event: |w| ClientEvent::Edit {
                client_msg_id: ulid::Ulid::new().to_string(),
                message_id: w.group_secret_id.clone(),
                text: format!("{} (edited)", w.group_secret),
            },
            expect: [WsExpect::Refused, WsExpect::Updated],
        },
        WsRow {
            what: "delete Ann's group message",
            event: |w| ClientEvent::Delete {
                client_msg_id: ulid::Ulid::new().to_string(),
                message_id: w.group_spare_id.clone(),
            },
            expect: [WsExpect::Refused, WsExpect::Updated],
        },
        WsRow {
            what: "react to Ann's group message",
            event: |w| ClientEvent::React { message_id: w.group_secret_id.clone(), emoji: "🎉".into(), on: true },
            expect: [WsExpect::Refused, WsExpect::Silent],
        },
        WsRow {
            what: "typing in Ann and Bob's group",
            event: |w| ClientEvent::Typing { conversation_id: w.group.clone() },
            expect: [WsExpect::Refused, WsExpect::Silent],
        },
    ]
}

#[test]
fn every_client_event_has_a_row() {
    let ids = Ids {
        ann: "a".into(),
        bob: "b".into(),
        private_image: "/api/media/x".into(),
        conversation: "dm:a:b".into(),
        secret: "s".into(),
        secret_id: "m1".into(),
        spare_id: "m2".into(),
        group: "grp:g".into(),
        group_secret: "gs".into(),
        group_secret_id: "m3".into(),
        group_spare_id: "m4".into(),
    };
    let covered: BTreeSet<&str> = ws_rows().iter().map(|r| event_type(&(r.event)(&ids))).collect();
    assert_eq!(covered, ALL_EVENTS.into_iter().collect::<BTreeSet<_>>(), "client events without a row in ws_rows()");
}

#[tokio::test]
async fn every_client_event_as_anonymous_outsider_and_member() {
    let w = World::new().await;
    let mut failures = Vec::new();
    for row in ws_rows() {
        // Anonymous: the upgrade itself is refused with 401.
        let req = w.server.ws_url().into_client_request().expect("request");
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) if resp.status() == 401 => {}
            Err(e) => failures.push(format!("{} as Anonymous: upgrade refused with {e}, want 401", row.what)),
            Ok(_) => failures.push(format!("{} as Anonymous: the upgrade succeeded", row.what)),
        }
        for (actor, expect) in [Actor::Outsider, Actor::Member].into_iter().zip(row.expect) {
            let user = w.user(actor).expect("signed in");
            let (mut ws, hello) =
                Ws::connect_request(ws_request(&w.server.ws_url(), &user.token)).await.expect("upgrade");
            assert_eq!(hello["user"]["_id"], user.id.as_str(), "hello names the caller");
            let event = (row.event)(&w.ids());
            let cid = match &event {
                ClientEvent::Send { client_msg_id, .. }
                | ClientEvent::Edit { client_msg_id, .. }
                | ClientEvent::Delete { client_msg_id, .. } => Some(client_msg_id.clone()),
                _ => None,
            };
            ws.send_json(serde_json::to_value(&event).expect("json")).await;
            if matches!(event, ClientEvent::Read { .. } | ClientEvent::Typing { .. } | ClientEvent::React { .. }) {
                // Frames are handled in order: an error about the event comes before this pong.
                ws.send_json(serde_json::to_value(ClientEvent::Ping { nonce: 99 }).expect("json")).await;
            }
            let answer = ws
                .next_where(std::time::Duration::from_secs(5), |e| {
                    let about_this_send = cid.as_deref().is_none_or(|c| e["client_msg_id"] == c);
                    ["ack", "error", "presence_batch", "pong", "updated"].contains(&e["type"].as_str().unwrap_or(""))
                        && about_this_send
                })
                .await
                .unwrap_or(Value::Null);
            let text = answer.to_string();
            let why = match expect {
                WsExpect::Reply(kind) => (answer["type"] != kind).then(|| format!("want {kind}")),
                WsExpect::OwnAck => {
                    let m = &answer["message"];
                    let conversation = direct_conversation_id(&user.id, &w.bob.id);
                    (answer["type"] != "ack"
                        || m["sender_id"] != user.id.as_str()
                        || m["conversation_id"] != conversation)
                        .then(|| "want an ack of the caller's own message".to_string())
                }
                WsExpect::Refused => (answer["type"] != "error" || answer["code"] != "invalid")
                    .then(|| "want an invalid error".to_string()),
                WsExpect::Silent => (answer["type"] != "pong").then(|| "want no answer (then the pong)".to_string()),
                WsExpect::GroupAck => {
                    let m = &answer["message"];
                    (answer["type"] != "ack"
                        || m["sender_id"] != user.id.as_str()
                        || m["conversation_id"] != w.group_id)
                        .then(|| "want an ack of the caller's own group message".to_string())
                }
                WsExpect::Updated => (answer["type"] != "updated"
                    || answer["message"]["sender_id"] != user.id.as_str())
                .then(|| "want the caller's own message, updated".to_string()),
            };
            let leak =
                (actor == Actor::Outsider && w.leaks(&text)).then(|| "shows Ann and Bob's conversation".to_string());
            if let Some(why) = why.or(leak) {
                failures.push(format!("{} as {actor:?}: {why}: {text}", row.what));
            }
            // Closed before the next row, so per-user socket limits never count it.
            let _ = ws.stream.close(None).await;
        }
    }
    assert!(failures.is_empty(), "{} violations:\n{}", failures.len(), failures.join("\n"));
}
