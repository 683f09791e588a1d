//! Group conversations: creation, live delivery to every member, history,
//! unread counts and "Seen by N", typing, edit/delete/react, rename and
//! membership changes announced live, removal taking effect at once, the
//! admins-only rules, leaving, and validation. With `CHARCHA_TEST_SCALED=1`
//! the same tests run on Redis + Kafka + MongoDB, with each member on an
//! instance of their own (three in-process servers sharing the backends).

mod common;

use std::time::Duration;

use charcha::api::dto::MAX_GROUP_MEMBERS;
use common::{TestServer, TestUser, Ws, conversation_entry, eventually, get, post_json, post_read};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

/// One server, or three on the same backends in the scaled pass (so a
/// group's members sit on different instances). The first runs the
/// history worker.
async fn servers() -> Vec<TestServer> {
    let first = TestServer::start().await;
    if !common::scaled() {
        return vec![first];
    }
    let mut all = vec![];
    for _ in 0..2 {
        let mut config = first.config.clone();
        config.worker.enabled = false;
        all.push(TestServer::start_config(config, None).await);
    }
    all.insert(0, first);
    all
}

/// The server for the `i`-th member.
fn on(servers: &[TestServer], i: usize) -> &TestServer {
    &servers[i % servers.len()]
}

/// Signs up `names`, the i-th on the i-th instance, each with a socket there.
async fn members<const N: usize>(servers: &[TestServer], names: [&str; N]) -> ([TestUser; N], [Ws; N]) {
    let (mut users, mut sockets) = (Vec::new(), Vec::new());
    for (i, name) in names.into_iter().enumerate() {
        let user = TestUser::signup(on(servers, i), name).await;
        sockets.push(user.ws(on(servers, i)).await);
        users.push(user);
    }
    let (Ok(users), Ok(sockets)) = (users.try_into(), sockets.try_into()) else { unreachable!("one of each per name") };
    (users, sockets)
}

async fn delete(user: &TestUser, base: &str, path: &str) -> (StatusCode, Value) {
    common::body_json(user.http.delete(format!("{base}{path}")).send().await.expect("request")).await
}

async fn patch(user: &TestUser, base: &str, path: &str, body: Value) -> (StatusCode, Value) {
    common::body_json(user.http.patch(format!("{base}{path}")).json(&body).send().await.expect("request")).await
}

/// Creates a group through REST; its JSON.
async fn create_group(server: &TestServer, creator: &TestUser, name: &str, members: &[&TestUser]) -> Value {
    let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
    let (status, group) =
        post_json(&creator.http, &server.url, "/api/groups", json!({ "name": name, "member_ids": ids })).await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    group
}

fn id_of(group: &Value) -> String {
    group["_id"].as_str().expect("group id").to_string()
}

/// Sends `text` to the group over the WebSocket; the acked message.
async fn send_to_group(ws: &mut Ws, group: &str, text: &str) -> Result<Value, Value> {
    let cid = ulid::Ulid::new().to_string();
    ws.send_json(json!({ "type": "send", "client_msg_id": cid, "conversation_id": group, "text": text })).await;
    ws.reply_to(&cid, WAIT).await.map(|ack| ack["message"].clone())
}

fn is_message(e: &Value, text: &str) -> bool {
    e["type"] == "message" && e["message"]["text"] == text
}

/// History of `group` as `user`, once it holds `id` (the worker stores shortly after the ack).
async fn history_with(server: &TestServer, user: &TestUser, group: &str, id: &str) -> Value {
    eventually(|| async {
        let (status, page) = get(&user.http, &server.url, &format!("/api/messages/{group}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["messages"].as_array()?.iter().any(|m| m["_id"] == id).then_some(page)
    })
    .await
}

#[tokio::test]
async fn a_group_of_three_chats_live_with_history_unread_and_seen_by() {
    let servers = servers().await;
    let ([ann, bob, cat], [mut ann_ws, mut bob_ws, mut cat_ws]) = members(&servers, ["Ann", "Bob", "Cat"]).await;

    let group = create_group(on(&servers, 0), &ann, "  Launch crew  ", &[&bob, &cat, &bob]).await;
    let gid = id_of(&group);
    assert!(gid.starts_with("grp:"), "{group}");
    assert_eq!(group["name"], "Launch crew", "trimmed");
    assert_eq!(group["creator_id"], ann.id.as_str());
    let roles: Vec<(&str, &str)> = group["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["contact"]["_id"].as_str().unwrap_or(""), m["role"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(roles.len(), 3, "the creator and two members, once each: {group}");
    assert_eq!(roles[0], (ann.id.as_str(), "admin"), "the creator is the first admin");
    assert!(roles[1..].iter().all(|(_, r)| *r == "member"));
    // Every member hears of the new group.
    for ws in [&mut ann_ws, &mut bob_ws, &mut cat_ws] {
        let e = ws.next_where(WAIT, |e| e["type"] == "group").await.expect("group event");
        assert_eq!(e["group"]["_id"], gid.as_str());
    }

    // Before anyone writes, the list (which is built from messages) still
    // names the group, as new: a page loaded now lists it too.
    let (status, page) = get(&cat.http, &on(&servers, 2).url, "/api/conversations").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let new_groups = page["new_groups"].as_array().expect("new_groups");
    assert_eq!(new_groups.len(), 1, "{page}");
    assert_eq!(new_groups[0]["_id"], gid.as_str());
    assert_eq!(new_groups[0]["name"], "Launch crew");
    assert_eq!(new_groups[0]["members"].as_array().map(Vec::len), Some(3));
    // Not on a later page.
    let (_, later) = get(&cat.http, &on(&servers, 2).url, &format!("/api/conversations?cursor={}", &gid[4..])).await;
    assert!(later.get("new_groups").is_none(), "{later}");

    // One message reaches both other members live, on whichever instance.
    let first = send_to_group(&mut ann_ws, &gid, "hello team").await.expect("acked");
    // From then on it is an ordinary entry, no longer a new group.
    let first_id = first["_id"].as_str().expect("id").to_string();
    conversation_entry(on(&servers, 2), &cat, &gid, &first_id).await;
    let (_, page) = get(&cat.http, &on(&servers, 2).url, "/api/conversations").await;
    assert!(page.get("new_groups").is_none(), "{page}");
    assert_eq!(first["conversation_id"], gid.as_str());
    assert_eq!(first["recipient_id"], gid.as_str(), "a group message's recipient is the group");
    for ws in [&mut bob_ws, &mut cat_ws] {
        let e = ws.next_where(WAIT, |e| is_message(e, "hello team")).await.expect("live");
        assert_eq!(e["message"]["_id"], first["_id"]);
    }
    let second = send_to_group(&mut bob_ws, &gid, "hi Ann").await.expect("acked");
    for ws in [&mut ann_ws, &mut cat_ws] {
        ws.next_where(WAIT, |e| is_message(e, "hi Ann")).await.expect("live");
    }
    let (first_id, second_id) = (first["_id"].as_str().unwrap(), second["_id"].as_str().unwrap());

    // History, for every member, on any instance.
    for (i, user) in [&ann, &bob, &cat].into_iter().enumerate() {
        let page = history_with(on(&servers, i), user, &gid, second_id).await;
        let texts: Vec<&str> =
            page["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["hello team", "hi Ann"]);
        assert!(page.get("peer_read").is_none(), "groups have markers, not a peer: {page}");
    }

    // Unread: messages from others after my marker.
    let cat_entry = conversation_entry(on(&servers, 2), &cat, &gid, second_id).await;
    assert_eq!(cat_entry["unread"], 2, "{cat_entry}");
    assert!(cat_entry.get("peer").is_none(), "a group entry has no peer: {cat_entry}");
    assert_eq!(cat_entry["group"]["name"], "Launch crew");
    assert_eq!(cat_entry["group"]["member_count"], 3);
    assert_eq!(cat_entry["seen_by"], 0);
    let bob_entry = conversation_entry(on(&servers, 1), &bob, &gid, second_id).await;
    assert_eq!(bob_entry["unread"], 1, "Bob's own message is not unread for him: {bob_entry}");

    // Cat reads everything: the others hear it, Cat's count clears, and
    // "Seen by" counts Cat for the newest message.
    cat_ws.send_json(json!({ "type": "read", "conversation_id": gid, "message_id": second_id })).await;
    for ws in [&mut ann_ws, &mut bob_ws] {
        let e = ws.next_where(WAIT, |e| e["type"] == "read").await.expect("read event");
        assert_eq!(e["user_id"], cat.id.as_str());
        assert_eq!(e["message_id"], second_id);
    }
    let cat_entry = conversation_entry(on(&servers, 2), &cat, &gid, second_id).await;
    assert_eq!(cat_entry["unread"], 0, "{cat_entry}");
    let ann_entry = conversation_entry(on(&servers, 0), &ann, &gid, second_id).await;
    assert_eq!(ann_entry["seen_by"], 1, "Cat has read the newest message: {ann_entry}");
    assert_eq!(ann_entry["unread"], 1, "Bob's message: {ann_entry}");
    bob_ws.send_json(json!({ "type": "read", "conversation_id": gid, "message_id": first_id })).await;
    ann_ws.next_where(WAIT, |e| e["type"] == "read" && e["user_id"] == bob.id.as_str()).await.expect("read");
    let ann_entry = conversation_entry(on(&servers, 0), &ann, &gid, second_id).await;
    assert_eq!(ann_entry["seen_by"], 1, "Bob has read only the first message: {ann_entry}");
    let page = history_with(on(&servers, 0), &ann, &gid, second_id).await;
    let mut markers: Vec<(String, String)> = page["read_markers"]
        .as_array()
        .expect("markers")
        .iter()
        .map(|m| (m["user_id"].as_str().unwrap().to_string(), m["message_id"].as_str().unwrap().to_string()))
        .collect();
    markers.sort();
    let mut want = vec![(bob.id.clone(), first_id.to_string()), (cat.id.clone(), second_id.to_string())];
    want.sort();
    assert_eq!(markers, want, "the other members' markers, not mine");

    // Typing reaches the others only.
    ann_ws.send_json(json!({ "type": "typing", "conversation_id": gid })).await;
    for ws in [&mut bob_ws, &mut cat_ws] {
        let e = ws.next_where(WAIT, |e| e["type"] == "typing").await.expect("typing");
        assert_eq!(e, json!({ "type": "typing", "conversation_id": gid, "user_id": ann.id }));
    }
    assert!(!ann_ws.gets_before_pong(|e| e["type"] == "typing").await, "not to the typist");

    // The REST routes take the group id too.
    let (status, sent) =
        post_json(&cat.http, &on(&servers, 2).url, &format!("/api/messages/send/{gid}"), json!({ "text": "via rest" }))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    assert_eq!(sent["recipient_id"], gid.as_str());
    for ws in [&mut ann_ws, &mut bob_ws, &mut cat_ws] {
        ws.next_where(WAIT, |e| is_message(e, "via rest")).await.expect("live to every session");
    }

    // Search finds group messages for members.
    let hits = eventually(|| async {
        let (status, page) = get(&bob.http, &on(&servers, 1).url, "/api/messages/search?q=hello%20team").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let results = page["results"].as_array()?.clone();
        (!results.is_empty()).then_some(results)
    })
    .await;
    assert_eq!(hits[0]["message"]["_id"], first["_id"]);
    assert_eq!(hits[0]["group"]["_id"], gid.as_str());
    assert!(hits[0].get("peer").is_none());
}

#[tokio::test]
async fn edit_delete_and_react_in_a_group_reach_every_member() {
    let servers = servers().await;
    let ([ann, bob, cat], [mut ann_ws, mut bob_ws, mut cat_ws]) = members(&servers, ["Ann", "Bob", "Cat"]).await;
    let gid = id_of(&create_group(on(&servers, 0), &ann, "Edits", &[&bob, &cat]).await);
    let m = send_to_group(&mut ann_ws, &gid, "typo here").await.expect("acked");
    let mid = m["_id"].as_str().unwrap().to_string();
    history_with(on(&servers, 1), &bob, &gid, &mid).await;

    // Edit over REST, keyed by the group's conversation id.
    let (status, edited) = patch(
        &ann,
        &on(&servers, 0).url,
        &format!("/api/conversations/{gid}/messages/{mid}"),
        json!({ "text": "fixed" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    for ws in [&mut bob_ws, &mut cat_ws] {
        let e = ws.next_where(WAIT, |e| e["type"] == "updated").await.expect("updated");
        assert_eq!(e["message"]["text"], "fixed");
    }
    // Only the sender edits.
    bob_ws.send_json(json!({ "type": "edit", "client_msg_id": "e1", "message_id": mid, "text": "hijack" })).await;
    let e = bob_ws.reply_to("e1", WAIT).await.expect_err("refused");
    assert_eq!(e["code"], "invalid", "{e}");

    // React: every other member hears it.
    bob_ws.send_json(json!({ "type": "react", "message_id": mid, "emoji": "🎉", "on": true })).await;
    for ws in [&mut ann_ws, &mut cat_ws] {
        let e = ws.next_where(WAIT, |e| e["type"] == "reaction").await.expect("reaction");
        assert_eq!(e["user_id"], bob.id.as_str());
        assert_eq!(e["conversation_id"], gid.as_str());
    }
    let page = eventually(|| async {
        let (_, page) = get(&cat.http, &on(&servers, 2).url, &format!("/api/messages/{gid}")).await;
        let text = page["messages"][0]["text"].as_str()?.to_string();
        (text == "fixed" && page["reactions"].as_array().is_some_and(|r| !r.is_empty())).then_some(page)
    })
    .await;
    assert_eq!(page["reactions"][0]["emoji"][0]["user_ids"][0], bob.id.as_str());

    // Delete over the WebSocket: a tombstone for everyone.
    ann_ws.send_json(json!({ "type": "delete", "client_msg_id": "d1", "message_id": mid })).await;
    let own = ann_ws.next_where(WAIT, |e| e["type"] == "updated" && e["client_msg_id"] == "d1").await.expect("ack");
    assert_eq!(own["message"]["deleted"], true);
    for ws in [&mut bob_ws, &mut cat_ws] {
        let e = ws.next_where(WAIT, |e| e["type"] == "updated" && e["message"]["deleted"] == true).await;
        assert!(e.is_some(), "the tombstone reaches every member");
    }
}

#[tokio::test]
async fn membership_changes_are_live_and_a_removed_member_stops_at_once() {
    let servers = servers().await;
    let ([ann, bob, cat, dan], [mut ann_ws, mut bob_ws, mut cat_ws, mut dan_ws]) =
        members(&servers, ["Ann", "Bob", "Cat", "Dan"]).await;
    let gid = id_of(&create_group(on(&servers, 0), &ann, "Core", &[&bob, &cat]).await);
    let base = |i: usize| on(&servers, i).url.clone();

    // Rename: live to every member.
    let (status, renamed) = patch(&ann, &base(0), &format!("/api/groups/{gid}"), json!({ "name": "Core team" })).await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    for ws in [&mut bob_ws, &mut cat_ws] {
        let e = ws.next_where(WAIT, |e| e["type"] == "group" && e["group"]["name"] == "Core team").await;
        assert!(e.is_some(), "the rename is live");
    }

    // Add Dan: he hears of it and receives from then on.
    let (status, added) =
        post_json(&ann.http, &base(0), &format!("/api/groups/{gid}/members"), json!({ "user_ids": [dan.id] })).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(added["members"].as_array().map(Vec::len), Some(4));
    let e = dan_ws.next_where(WAIT, |e| e["type"] == "group").await.expect("Dan hears he was added");
    assert_eq!(e["group"]["_id"], gid.as_str());
    bob_ws
        .next_where(WAIT, |e| e["type"] == "group" && e["group"]["members"].as_array().map(Vec::len) == Some(4))
        .await
        .expect("the others see the new member");
    send_to_group(&mut bob_ws, &gid, "welcome Dan").await.expect("acked");
    dan_ws.next_where(WAIT, |e| is_message(e, "welcome Dan")).await.expect("Dan receives");

    // Remove Cat: she is told, and gets nothing more, at once (on her own instance).
    let before = send_to_group(&mut ann_ws, &gid, "before removal").await.expect("acked");
    cat_ws.next_where(WAIT, |e| is_message(e, "before removal")).await.expect("still a member");
    history_with(&servers[0], &ann, &gid, before["_id"].as_str().unwrap()).await;
    let (status, after) = delete(&ann, &base(0), &format!("/api/groups/{gid}/members/{}", cat.id)).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert!(!after.to_string().contains(&cat.id), "Cat is gone from the group: {after}");
    let e = cat_ws.next_where(WAIT, |e| e["type"] == "group_removed").await.expect("Cat is told");
    assert_eq!(e["conversation_id"], gid.as_str());
    send_to_group(&mut ann_ws, &gid, "after removal").await.expect("acked");
    bob_ws.send_json(json!({ "type": "typing", "conversation_id": gid })).await;
    bob_ws.next_where(WAIT, |e| is_message(e, "after removal")).await.expect("Bob still receives");
    dan_ws.next_where(WAIT, |e| is_message(e, "after removal")).await.expect("Dan still receives");
    let leaked = cat_ws
        .next_where(Duration::from_secs(1), |e| e.to_string().contains(&gid) && e["type"] != "group_removed")
        .await;
    assert!(leaked.is_none(), "nothing more of the group reaches Cat: {leaked:?}");

    // Cat: history, sends, read markers, typing and the details are refused.
    let (status, body) = get(&cat.http, &base(2), &format!("/api/messages/{gid}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = get(&cat.http, &base(2), &format!("/api/groups/{gid}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let e = send_to_group(&mut cat_ws, &gid, "let me in").await.expect_err("refused");
    assert_eq!(e["code"], "invalid", "{e}");
    let (status, _) = post_read(&cat.http, &base(2), &gid, &before["_id"]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post_json(
        &cat.http,
        &base(2),
        &format!("/api/conversations/{gid}/messages/{}/reactions", before["_id"].as_str().unwrap()),
        json!({ "emoji": "👍", "on": true }),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Her conversation list no longer shows the group; her search finds nothing of it.
    let (_, page) = get(&cat.http, &base(2), "/api/conversations").await;
    assert!(!page.to_string().contains(&gid), "{page}");
    let (_, found) = get(&cat.http, &base(2), "/api/messages/search?q=removal").await;
    assert_eq!(found["results"], json!([]), "{found}");
}

#[tokio::test]
async fn only_admins_change_a_group_and_leaving_promotes_the_oldest_member() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let cat = TestUser::signup(&server, "Cat").await;
    let eve = TestUser::signup(&server, "Eve").await;
    let gid = id_of(&create_group(&server, &ann, "Rules", &[&bob, &cat]).await);
    let url = &server.url;

    // A plain member may not rename, add or remove (403); an outsider learns nothing (404).
    for (user, want) in [(&bob, StatusCode::FORBIDDEN), (&eve, StatusCode::NOT_FOUND)] {
        let (status, body) = patch(user, url, &format!("/api/groups/{gid}"), json!({ "name": "Mine" })).await;
        assert_eq!(status, want, "rename: {body}");
        let (status, body) =
            post_json(&user.http, url, &format!("/api/groups/{gid}/members"), json!({ "user_ids": [eve.id] })).await;
        assert_eq!(status, want, "add: {body}");
        let (status, body) = delete(user, url, &format!("/api/groups/{gid}/members/{}", cat.id)).await;
        assert_eq!(status, want, "remove: {body}");
    }
    let (status, body) = get(&eve.http, url, &format!("/api/groups/{gid}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.to_string().contains("Rules"));

    // Ann leaves (204): the oldest remaining member becomes an admin.
    let mut bob_ws = bob.ws(&server).await;
    let mut ann_ws = ann.ws(&server).await;
    let (status, _) = delete(&ann, url, &format!("/api/groups/{gid}/members/{}", ann.id)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    ann_ws.next_where(WAIT, |e| e["type"] == "group_removed").await.expect("Ann's sessions are told");
    let e = bob_ws.next_where(WAIT, |e| e["type"] == "group").await.expect("the others see it");
    let members = e["group"]["members"].as_array().expect("members").clone();
    assert_eq!(members.len(), 2);
    assert!(
        members.iter().any(|m| m["role"] == "admin"),
        "someone is promoted when the last admin leaves: {members:?}"
    );
    let (_, group) = get(&bob.http, url, &format!("/api/groups/{gid}")).await;
    let admins: Vec<&str> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "admin")
        .map(|m| m["contact"]["_id"].as_str().unwrap())
        .collect();
    assert_eq!(admins.len(), 1, "{group}");
    let (status, _) = get(&ann.http, url, &format!("/api/messages/{gid}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "Ann left: history is refused");

    // The promoted member may now add; the creator may not be removed by an admin.
    let admin = if admins[0] == bob.id { &bob } else { &cat };
    let (status, body) =
        post_json(&admin.http, url, &format!("/api/groups/{gid}/members"), json!({ "user_ids": [ann.id] })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = delete(admin, url, &format!("/api/groups/{gid}/members/{}", ann.id)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an admin cannot remove the creator: {body}");

    // Leaving through the server functions' twin route works for a plain member too.
    let (status, _) = delete(&ann, url, &format!("/api/groups/{gid}/members/{}", ann.id)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = delete(&ann, url, &format!("/api/groups/{gid}/members/{}", ann.id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "leaving twice: not a member any more");
}

#[tokio::test]
async fn invalid_group_requests_are_clear_400s() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let url = &server.url;
    let unknown = ulid::Ulid::new().to_string();
    let too_many: Vec<String> = (0..MAX_GROUP_MEMBERS).map(|_| ulid::Ulid::new().to_string()).collect();
    let cases = [
        (json!({ "name": "   ", "member_ids": [bob.id] }), "name"),
        (json!({ "name": "x".repeat(81), "member_ids": [bob.id] }), "name"),
        (json!({ "name": "two\nlines", "member_ids": [bob.id] }), "name"),
        (json!({ "name": "ok", "member_ids": [unknown] }), "member_ids"),
        (json!({ "name": "ok", "member_ids": ["not-an-id"] }), "member_ids"),
        (json!({ "name": "ok", "member_ids": too_many }), "member_ids"),
    ];
    for (body, field) in cases {
        let (status, answer) = post_json(&ann.http, url, "/api/groups", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer["errors"][field].is_array(), "names the field {field}: {answer}");
    }
    for body in [json!({ "member_ids": [bob.id] }), json!({ "name": 7 }), json!([1])] {
        let (status, answer) = post_json(&ann.http, url, "/api/groups", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    // A group of one (just the creator) is allowed: members can be added later.
    let (status, solo) = post_json(&ann.http, url, "/api/groups", json!({ "name": "Notes" })).await;
    assert_eq!(status, StatusCode::CREATED, "{solo}");
    let gid = id_of(&solo);

    // Malformed group ids: 400; well-formed unknown ones: 404.
    for bad in ["grp:nope", "grp:", "grp:01J00000000000000000000000x", "grp:01j00000000000000000000000"] {
        let (status, body) = get(&ann.http, url, &format!("/api/groups/{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) = get(&ann.http, url, &format!("/api/groups/grp:{}", ulid::Ulid::new())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&ann.http, url, &format!("/api/messages/grp:{}", ulid::Ulid::new())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Adding: unknown or malformed users, and beyond the cap.
    for ids in [json!([unknown]), json!(["x"]), json!(too_many)] {
        let (status, body) =
            post_json(&ann.http, url, &format!("/api/groups/{gid}/members"), json!({ "user_ids": ids })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    // Removing someone who is not a member, or a malformed id.
    let (status, _) = delete(&ann, url, &format!("/api/groups/{gid}/members/{}", bob.id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = delete(&ann, url, &format!("/api/groups/{gid}/members/nope")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A send names a user or a group, not both or neither.
    let mut ws = ann.ws(&server).await;
    for frame in [
        json!({ "type": "send", "client_msg_id": "c1", "to": bob.id, "conversation_id": gid, "text": "x" }),
        json!({ "type": "send", "client_msg_id": "c1", "text": "x" }),
        json!({ "type": "send", "client_msg_id": "c1", "conversation_id": "dm:a:b", "text": "x" }),
    ] {
        ws.send_json(frame.clone()).await;
        let e = ws.reply_to("c1", WAIT).await.expect_err("refused");
        assert_eq!(e["code"], "invalid", "{frame}: {e}");
    }
    // Renaming to an invalid name.
    let (status, body) = patch(&ann, url, &format!("/api/groups/{gid}"), json!({ "name": "" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn group_changes_are_rate_limited() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let mut last = StatusCode::OK;
    for i in 0..=charcha::server::chat::GROUP_RATE_PER_MINUTE {
        let (status, _) = post_json(&ann.http, &server.url, "/api/groups", json!({ "name": format!("g{i}") })).await;
        last = status;
        if status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn group_images_are_visible_to_current_members_only() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let eve = TestUser::signup(&server, "Eve").await;
    let gid = id_of(&create_group(&server, &ann, "Pictures", &[&bob]).await);
    let part = reqwest::multipart::Part::bytes(common::png()).file_name("dot.png").mime_str("image/png").expect("mime");
    let form = reqwest::multipart::Form::new().text("to", gid.clone()).part("image", part);
    let resp = ann.http.post(format!("{}/api/media", server.url)).multipart(form).send().await.expect("upload");
    let (status, body) = common::body_json(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let image = body["url"].as_str().expect("url").to_string();
    let (status, sent) =
        post_json(&ann.http, &server.url, &format!("/api/messages/send/{gid}"), json!({ "image": image })).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let fetch = |user: &TestUser| {
        let req = user.http.get(format!("{}{image}", server.url));
        async move { req.send().await.expect("media").status() }
    };
    assert_eq!(fetch(&bob).await, StatusCode::OK, "a member sees it");
    assert_eq!(fetch(&eve).await, StatusCode::NOT_FOUND, "an outsider does not");
    // Eve may not upload for the group, nor send its image.
    let part = reqwest::multipart::Part::bytes(common::png()).file_name("dot.png").mime_str("image/png").expect("mime");
    let form = reqwest::multipart::Form::new().text("to", gid.clone()).part("image", part);
    let resp = eve.http.post(format!("{}/api/media", server.url)).multipart(form).send().await.expect("upload");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let (status, _) =
        post_json(&eve.http, &server.url, &format!("/api/messages/send/{}", bob.id), json!({ "image": image })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "another conversation's image is refused");
    // Once removed, Bob no longer sees it.
    let (status, _) = delete(&ann, &server.url, &format!("/api/groups/{gid}/members/{}", bob.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetch(&bob).await, StatusCode::NOT_FOUND, "a former member does not");
}
