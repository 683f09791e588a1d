//! Replies (a message answering an earlier one) and reactions (a small set
//! of emoji under a message): live to every member, in history afterwards,
//! repeats harmless, outsiders and bad input refused. With
//! `CHARCHA_TEST_SCALED=1` the same tests run on Redis + Kafka + MongoDB.

mod common;

use std::time::Duration;

use charcha::api::dto::direct_conversation_id;
use common::{TestServer, TestUser, eventually, get, post_json};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

/// `user`'s page of the conversation with `peer` once `ready` holds for it.
async fn page_when(server: &TestServer, user: &TestUser, peer: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(|| async {
        let (_, page) = get(&user.http, &server.url, &format!("/api/messages/{peer}")).await;
        ready(&page).then_some(page)
    })
    .await
}

#[tokio::test]
async fn a_reply_names_the_message_it_answers() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let mut ann_ws = ann.ws(&server).await;
    let mut bob_ws = bob.ws(&server).await;
    let question = ann_ws.send_acked(&bob.id, "lunch?", WAIT).await.expect("acked");
    let question_id = question["_id"].as_str().expect("id").to_string();

    let cid = ulid::Ulid::new().to_string();
    let send = json!({ "type": "send", "client_msg_id": cid, "to": ann.id, "text": "yes!", "reply_to": question_id });
    bob_ws.send_json(send).await;
    let ack = bob_ws.reply_to(&cid, WAIT).await.expect("acked");
    assert_eq!(ack["message"]["reply_to"], question_id.as_str());
    let live = ann_ws.next_where(WAIT, |e| e["type"] == "message").await.expect("live");
    assert_eq!(live["message"]["reply_to"], question_id.as_str());
    let page = page_when(&server, &ann, &bob.id, |p| p["messages"].as_array().is_some_and(|m| m.len() == 2)).await;
    assert_eq!(page["messages"][1]["reply_to"], question_id.as_str(), "{page}");
    assert!(page["messages"][0].get("reply_to").is_none(), "a plain message has none: {page}");

    // Over REST too; and a reply must name an earlier message id.
    let (status, body) = post_json(
        &ann.http,
        &server.url,
        &format!("/api/messages/send/{}", bob.id),
        json!({ "text": "great", "reply_to": ack["message"]["_id"] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["reply_to"], ack["message"]["_id"]);
    let later = ulid::Ulid::from_parts(u64::MAX >> 16, 0).to_string();
    for bad in ["not-an-id", later.as_str()] {
        let cid = ulid::Ulid::new().to_string();
        bob_ws
            .send_json(json!({ "type": "send", "client_msg_id": cid, "to": ann.id, "text": "x", "reply_to": bad }))
            .await;
        let e = bob_ws.reply_to(&cid, WAIT).await.expect_err("refused");
        assert_eq!(e["code"], "invalid", "{bad}: {e}");
    }
}

#[tokio::test]
async fn reactions_are_toggled_counted_and_live() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let cat = TestUser::signup(&server, "Cat").await;
    let mut ann_ws = ann.ws(&server).await;
    let mut bob_tab1 = bob.ws(&server).await;
    let mut bob_tab2 = bob.ws(&server).await;
    let mut cat_ws = cat.ws(&server).await;
    let m = ann_ws.send_acked(&bob.id, "we shipped", WAIT).await.expect("acked");
    let id = m["_id"].as_str().expect("id").to_string();
    page_when(&server, &bob, &ann.id, |p| p["messages"].as_array().is_some_and(|m| !m.is_empty())).await;
    let conversation = direct_conversation_id(&ann.id, &bob.id);

    bob_tab1.send_json(json!({ "type": "react", "message_id": id, "emoji": "🎉", "on": true })).await;
    for ws in [&mut ann_ws, &mut bob_tab2] {
        let e = ws.next_where(WAIT, |e| e["type"] == "reaction").await.expect("reaction event");
        assert_eq!(
            e,
            json!({ "type": "reaction", "conversation_id": conversation, "message_id": id, "user_id": bob.id, "emoji": "🎉", "on": true })
        );
    }
    assert!(!bob_tab1.gets_before_pong(|e| e["type"] == "reaction" || e["type"] == "error").await);
    // A repeat changes nothing and tells nobody.
    bob_tab1.send_json(json!({ "type": "react", "message_id": id, "emoji": "🎉", "on": true })).await;
    assert!(!bob_tab1.gets_before_pong(|e| e["type"] == "error").await);
    assert!(!ann_ws.gets_before_pong(|e| e["type"] == "reaction").await);
    // Ann adds the same emoji and another over REST.
    for emoji in ["🎉", "👍"] {
        let path = format!("/api/conversations/{conversation}/messages/{id}/reactions");
        let (status, body) = post_json(&ann.http, &server.url, &path, json!({ "emoji": emoji, "on": true })).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (_, page) = get(&bob.http, &server.url, &format!("/api/messages/{}", ann.id)).await;
    assert_eq!(
        page["reactions"],
        json!([{ "message_id": id, "emoji": [
            { "emoji": "👍", "user_ids": [ann.id] },
            { "emoji": "🎉", "user_ids": [bob.id, ann.id] },
        ] }]),
        "{page}"
    );
    // Off again.
    bob_tab1.send_json(json!({ "type": "react", "message_id": id, "emoji": "🎉", "on": false })).await;
    let e =
        ann_ws.next_where(WAIT, |e| e["type"] == "reaction" && e["user_id"] == bob.id.as_str()).await.expect("event");
    assert_eq!(e["on"], false);
    let (_, page) = get(&ann.http, &server.url, &format!("/api/messages/{}", bob.id)).await;
    assert_eq!(page["reactions"][0]["emoji"][1]["user_ids"], json!([ann.id]), "{page}");

    // Cat is no member; an emoji outside the set; a deleted message.
    cat_ws.send_json(json!({ "type": "react", "message_id": id, "emoji": "🎉", "on": true })).await;
    let e = cat_ws.next_where(WAIT, |e| e["type"] == "error").await.expect("error");
    assert!(e["message"].as_str().unwrap_or("").contains("No such message"), "{e}");
    bob_tab1.send_json(json!({ "type": "react", "message_id": id, "emoji": "💩", "on": true })).await;
    let e = bob_tab1.next_where(WAIT, |e| e["type"] == "error").await.expect("error");
    assert_eq!(e["code"], "invalid", "{e}");
    let cid = ulid::Ulid::new().to_string();
    ann_ws.send_json(json!({ "type": "delete", "client_msg_id": cid, "message_id": id })).await;
    ann_ws.next_where(WAIT, |e| e["type"] == "updated" && e["client_msg_id"] == cid.as_str()).await.expect("deleted");
    page_when(&server, &bob, &ann.id, |p| p["messages"][0]["deleted"] == true).await;
    bob_tab1.send_json(json!({ "type": "react", "message_id": id, "emoji": "👍", "on": true })).await;
    let e = bob_tab1.next_where(WAIT, |e| e["type"] == "error").await.expect("error");
    assert!(e["message"].as_str().unwrap_or("").contains("deleted"), "{e}");
    let (_, page) = get(&bob.http, &server.url, &format!("/api/messages/{}", ann.id)).await;
    assert!(page.get("reactions").is_none(), "a tombstone shows no reactions: {page}");
}
