//! Read markers (unread counts, "Seen") and typing indicators, over the
//! WebSocket and the REST route: who hears what, that markers only move
//! forward, that unread counts come back after a reload, and that an
//! outsider can neither mark nor type in someone else's conversation.
//! With `CHARCHA_TEST_SCALED=1` the same tests run on Redis + Kafka + MongoDB.

mod common;

use std::time::Duration;

use charcha::api::dto::direct_conversation_id;
use common::{TestServer, TestUser, conversation_entry, get, post_read};
use reqwest::StatusCode;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn read_markers_clear_unread_counts_and_reach_every_member() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let conversation = direct_conversation_id(&ann.id, &bob.id);
    let mut ann_ws = ann.ws(&server).await;
    let mut bob_tab1 = bob.ws(&server).await;
    let mut bob_tab2 = bob.ws(&server).await;

    let mut sent = Vec::new();
    for text in ["one", "two", "three"] {
        let m = ann_ws.send_acked(&bob.id, text, WAIT).await.expect("acked");
        sent.push(m["_id"].as_str().expect("id").to_string());
    }
    // Bob's own message does not count as unread for him.
    let own = bob_tab1.send_acked(&ann.id, "mine", WAIT).await.expect("acked");
    let last = own["_id"].as_str().expect("id").to_string();

    let bob_entry = conversation_entry(&server, &bob, &conversation, &last).await;
    assert_eq!(bob_entry["unread"], 3, "{bob_entry}");
    let ann_entry = conversation_entry(&server, &ann, &conversation, &last).await;
    assert_eq!(ann_entry["unread"], 1, "Bob's message is unread for Ann: {ann_entry}");
    assert!(bob_entry.get("peer_read").is_none(), "nobody has read anything yet: {bob_entry}");

    // Bob reads up to Ann's second message in one tab: his other tab and Ann hear it.
    bob_tab1.send_json(json!({ "type": "read", "conversation_id": conversation, "message_id": sent[1] })).await;
    for ws in [&mut bob_tab2, &mut ann_ws] {
        let read = ws.next_where(WAIT, |e| e["type"] == "read").await.expect("read event");
        assert_eq!(
            read,
            json!({ "type": "read", "conversation_id": conversation, "user_id": bob.id, "message_id": sent[1] })
        );
    }
    assert!(!bob_tab1.gets_before_pong(|e| e["type"] == "read").await, "the reading tab is not told");
    let bob_entry = conversation_entry(&server, &bob, &conversation, &last).await;
    assert_eq!(bob_entry["unread"], 1, "one of Ann's messages is after the marker: {bob_entry}");
    let ann_entry = conversation_entry(&server, &ann, &conversation, &last).await;
    assert_eq!(ann_entry["peer_read"], sent[1].as_str(), "{ann_entry}");

    // Markers never move back, and a repeat is silent.
    bob_tab1.send_json(json!({ "type": "read", "conversation_id": conversation, "message_id": sent[0] })).await;
    bob_tab1.send_json(json!({ "type": "read", "conversation_id": conversation, "message_id": sent[1] })).await;
    assert!(!bob_tab1.gets_before_pong(|e| e["type"] == "error").await);
    assert!(!ann_ws.gets_before_pong(|e| e["type"] == "read").await, "no event for a marker that did not move");

    // The REST route moves it too; history shows the peer's marker ("Seen").
    let (status, body) = post_read(&bob.http, &server.url, &conversation, &last).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let read = ann_ws.next_where(WAIT, |e| e["type"] == "read").await.expect("read event");
    assert_eq!(read["message_id"], last.as_str());
    assert_eq!(conversation_entry(&server, &bob, &conversation, &last).await["unread"], 0);
    let (_, page) = get(&ann.http, &server.url, &format!("/api/messages/{}", bob.id)).await;
    assert_eq!(page["peer_read"], last.as_str(), "{page}");
}

/// The "@" badge comes from the server's list too (so it is back after a
/// reload): set while an unread message from someone else mentions the
/// user, gone once it is read; a mention in code or of another name is not
/// one, and neither is the user's own.
#[tokio::test]
async fn the_list_says_when_an_unread_message_mentions_the_user() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup_as(&server.url, "bob", "Bob Marsh").await;
    let conversation = direct_conversation_id(&ann.id, &bob.id);
    let mut ann_ws = ann.ws(&server).await;
    let mut bob_ws = bob.ws(&server).await;

    let mut last = String::new();
    for text in ["hello", "`@Bob Marsh` in code", "@Bobby who?"] {
        last = ann_ws.send_acked(&bob.id, text, WAIT).await.expect("acked")["_id"].as_str().expect("id").to_string();
    }
    let entry = conversation_entry(&server, &bob, &conversation, &last).await;
    assert_eq!(entry["unread"], 3, "{entry}");
    assert!(entry.get("mentioned").is_none(), "no mention of Bob yet: {entry}");

    let mention = ann_ws.send_acked(&bob.id, "**@Bob Marsh** can you look?", WAIT).await.expect("acked");
    let mention_id = mention["_id"].as_str().expect("id").to_string();
    // Bob's own message after it (mentioning himself) changes nothing.
    last = bob_ws.send_acked(&ann.id, "on it @Bob Marsh", WAIT).await.expect("acked")["_id"]
        .as_str()
        .expect("id")
        .to_string();
    let entry = conversation_entry(&server, &bob, &conversation, &last).await;
    assert_eq!(entry["mentioned"], true, "{entry}");
    let ann_entry = conversation_entry(&server, &ann, &conversation, &last).await;
    assert!(ann_entry.get("mentioned").is_none(), "Ann is not mentioned: {ann_entry}");

    let (status, body) = post_read(&bob.http, &server.url, &conversation, &mention_id).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let entry = conversation_entry(&server, &bob, &conversation, &last).await;
    assert_eq!(entry["unread"], 0, "{entry}");
    assert!(entry.get("mentioned").is_none(), "read: no badge: {entry}");
}

#[tokio::test]
async fn typing_reaches_the_other_member_only() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let conversation = direct_conversation_id(&ann.id, &bob.id);
    let mut ann_tab1 = ann.ws(&server).await;
    let mut ann_tab2 = ann.ws(&server).await;
    let mut bob_ws = bob.ws(&server).await;

    ann_tab1.send_json(json!({ "type": "typing", "conversation_id": conversation })).await;
    let typing = bob_ws.next_where(WAIT, |e| e["type"] == "typing").await.expect("typing event");
    assert_eq!(typing, json!({ "type": "typing", "conversation_id": conversation, "user_id": ann.id }));
    for ws in [&mut ann_tab1, &mut ann_tab2] {
        assert!(
            !ws.gets_before_pong(|e| e["type"] == "typing" || e["type"] == "error").await,
            "the typist's tabs hear nothing"
        );
    }
    // Typing is never stored: nothing shows up in history or the list.
    let (_, page) = get(&bob.http, &server.url, &format!("/api/messages/{}", ann.id)).await;
    assert_eq!(page["messages"], json!([]), "{page}");

    // Repeats beyond the per-conversation rate are dropped without an error.
    let rate = charcha::server::chat::TYPING_RATE_PER_MINUTE;
    for _ in 0..rate + 5 {
        ann_tab1.send_json(json!({ "type": "typing", "conversation_id": conversation })).await;
    }
    assert!(!ann_tab1.gets_before_pong(|e| e["type"] == "error").await);
    let mut forwarded = 0;
    while bob_ws.next_where(Duration::from_millis(500), |e| e["type"] == "typing").await.is_some() {
        forwarded += 1;
    }
    // One was forwarded before the burst, in the same one-minute window
    // (or, if the window turned in between, none).
    assert!((rate - 1..=rate).contains(&forwarded), "{forwarded} of {} forwarded", rate + 5);
}

#[tokio::test]
async fn outsiders_and_bad_input_are_refused() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let cat = TestUser::signup(&server, "Cat").await;
    let conversation = direct_conversation_id(&ann.id, &bob.id);
    let mut bob_ws = bob.ws(&server).await;
    let mut cat_ws = cat.ws(&server).await;
    let m = bob_ws.send_acked(&ann.id, "hello", WAIT).await.expect("acked");
    let message_id = m["_id"].as_str().expect("id").to_string();

    let future_id = ulid::Ulid::from_parts(now_ms() + 3_600_000, 0).to_string();
    let upper = conversation.to_uppercase();
    let cases = [
        json!({ "type": "read", "conversation_id": conversation, "message_id": message_id }),
        json!({ "type": "typing", "conversation_id": conversation }),
        json!({ "type": "read", "conversation_id": "dm:nope", "message_id": message_id }),
        json!({ "type": "typing", "conversation_id": format!("dm:{}:{}", cat.id, "01ARZ3NDEKTSV4RRFFQ69G5FAV") }),
        json!({ "type": "typing", "conversation_id": upper }),
        json!({ "type": "read", "conversation_id": 7, "message_id": message_id }),
    ];
    for frame in cases {
        cat_ws.send_json(frame.clone()).await;
        let answer = cat_ws.next_where(WAIT, |e| e["type"] == "error").await.expect("an error");
        assert!(["invalid", "bad_frame"].contains(&answer["code"].as_str().unwrap_or("")), "{frame}: {answer}");
        assert!(!answer.to_string().contains(&conversation), "{answer}");
    }
    // Bob, a member, with a malformed or future marker.
    for bad in ["not-an-id", future_id.as_str()] {
        bob_ws.send_json(json!({ "type": "read", "conversation_id": conversation, "message_id": bad })).await;
        let answer = bob_ws.next_where(WAIT, |e| e["type"] == "error").await.expect("an error");
        assert_eq!(answer["code"], "invalid", "{bad}: {answer}");
    }
    let (status, _) = post_read(&cat.http, &server.url, &conversation, &message_id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post_read(&bob.http, &server.url, &conversation, 5).await;
    assert!(status.is_client_error(), "{status}");
    // Nothing Cat or the bad frames did reached Bob, or moved a marker.
    assert!(!bob_ws.gets_before_pong(|e| e["type"] == "typing" || e["type"] == "read").await);
    let ann_entry = conversation_entry(&server, &ann, &conversation, &message_id).await;
    assert_eq!(ann_entry["unread"], 1, "{ann_entry}");
    assert!(ann_entry.get("peer_read").is_none(), "{ann_entry}");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
