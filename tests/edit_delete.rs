//! Editing and deleting one's own messages: through the log like a send,
//! live to every member's sessions, in history and the conversation list
//! afterwards, never undone by a replay, and refused to anyone but the
//! sender. With `CHARCHA_TEST_SCALED=1` the same tests run on Redis + Kafka
//! + MongoDB.

mod common;

use std::{sync::Arc, time::Duration};

use charcha::api::dto::{ChatMessage, direct_conversation_id};
use common::{TestServer, TestUser, Ws, eventually, get, post_read};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

/// The stored version of message `id` in `user`'s conversation with `peer`,
/// once `ready` holds for it (the worker stores changes shortly after the
/// answer).
async fn stored(server: &TestServer, user: &TestUser, peer: &str, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(|| async {
        let (_, page) = get(&user.http, &server.url, &format!("/api/messages/{peer}")).await;
        page["messages"].as_array()?.iter().find(|m| m["_id"] == id && ready(m)).cloned()
    })
    .await
}

/// Sends `frame` and returns the answer about `client_msg_id`.
async fn answer(ws: &mut Ws, frame: Value, client_msg_id: &str) -> Value {
    ws.send_json(frame).await;
    ws.next_where(WAIT, |e| (e["type"] == "updated" || e["type"] == "error") && e["client_msg_id"] == client_msg_id)
        .await
        .expect("an answer")
}

fn cid() -> String {
    ulid::Ulid::new().to_string()
}

#[tokio::test]
async fn edits_and_deletes_reach_every_member_and_history() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let mut ann_ws = ann.ws(&server).await;
    let mut ann_tab2 = ann.ws(&server).await;
    let mut bob_ws = bob.ws(&server).await;
    let first = ann_ws.send_acked(&bob.id, "frist", WAIT).await.expect("acked");
    let id = first["_id"].as_str().expect("id").to_string();
    stored(&server, &bob, &ann.id, &id, |_| true).await;

    // Edit: the asking session gets it with its client_msg_id, the others live.
    let edit_id = cid();
    let edit = json!({ "type": "edit", "client_msg_id": edit_id, "message_id": id, "text": "first" });
    let edited = answer(&mut ann_ws, edit.clone(), &edit_id).await;
    assert_eq!(edited["type"], "updated", "{edited}");
    assert_eq!(edited["message"]["text"], "first");
    assert_eq!(edited["message"]["created_at"], first["created_at"], "same message, same time");
    let edited_at = edited["message"]["edited_at"].as_str().expect("edited_at").to_string();
    for ws in [&mut bob_ws, &mut ann_tab2] {
        let live = ws.next_where(WAIT, |e| e["type"] == "updated").await.expect("live update");
        assert_eq!(live, json!({ "type": "updated", "message": edited["message"] }));
    }
    let in_history = stored(&server, &bob, &ann.id, &id, |m| m["text"] == "first").await;
    assert_eq!(in_history["edited_at"], edited_at.as_str());
    // The conversation list's preview is the edited text (it is the last message).
    let conversation = direct_conversation_id(&ann.id, &bob.id);
    let preview = eventually(|| async {
        let (_, page) = get(&bob.http, &server.url, "/api/conversations").await;
        let entry = page["conversations"].as_array()?.iter().find(|c| c["conversation_id"] == conversation)?.clone();
        (entry["last_message"]["text"] == "first").then_some(entry)
    })
    .await;
    assert_eq!(preview["last_message"]["edited_at"], edited_at.as_str());

    // A retried edit (same client_msg_id) answers with the first attempt.
    let again = answer(&mut ann_ws, edit, &edit_id).await;
    assert_eq!(again["message"]["edited_at"], edited_at.as_str(), "{again}");

    // Delete: a tombstone everywhere.
    let delete_id = cid();
    let deleted =
        answer(&mut ann_ws, json!({ "type": "delete", "client_msg_id": delete_id, "message_id": id }), &delete_id)
            .await;
    assert_eq!(deleted["message"]["deleted"], true, "{deleted}");
    assert_eq!(deleted["message"]["text"], "");
    let live = bob_ws.next_where(WAIT, |e| e["type"] == "updated" && e["message"]["deleted"] == true).await;
    assert!(live.is_some(), "Bob sees the delete live");
    let tombstone = stored(&server, &bob, &ann.id, &id, |m| m["deleted"] == true).await;
    // (Checks read history: the next frame must find the tombstone there.)
    assert_eq!(tombstone["text"], "");
    assert!(tombstone.get("image").is_none_or(Value::is_null), "{tombstone}");

    // Nothing changes a deleted message.
    let late_id = cid();
    let late = json!({ "type": "edit", "client_msg_id": late_id, "message_id": id, "text": "back" });
    let refused = answer(&mut ann_ws, late, &late_id).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "invalid");
}

#[tokio::test]
async fn only_the_sender_may_change_a_message() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let cat = TestUser::signup(&server, "Cat").await;
    let mut ann_ws = ann.ws(&server).await;
    let mut bob_ws = bob.ws(&server).await;
    let mut cat_ws = cat.ws(&server).await;
    let m = ann_ws.send_acked(&bob.id, "Ann's words", WAIT).await.expect("acked");
    let id = m["_id"].as_str().expect("id").to_string();
    stored(&server, &bob, &ann.id, &id, |_| true).await;
    let conversation = direct_conversation_id(&ann.id, &bob.id);

    // Bob is a member but not the sender; Cat is not even a member.
    for (ws, who, want) in [(&mut bob_ws, "Bob", "only change your own"), (&mut cat_ws, "Cat", "No such message")] {
        for frame in [
            json!({ "type": "edit", "client_msg_id": "c1", "message_id": id, "text": "mine now" }),
            json!({ "type": "delete", "client_msg_id": "c1", "message_id": id }),
        ] {
            let e = answer(ws, frame, "c1").await;
            assert_eq!(e["type"], "error", "{who}: {e}");
            assert!(e["message"].as_str().unwrap_or("").contains(want), "{who}: {e}");
            assert!(!e.to_string().contains("Ann's words"), "{who}: {e}");
        }
    }
    // Bad input from the sender.
    for (frame, why) in [
        (json!({ "type": "edit", "client_msg_id": "c2", "message_id": "nope", "text": "x" }), "No such message"),
        (json!({ "type": "edit", "client_msg_id": "c2", "message_id": id, "text": "  " }), "text or an image"),
        (json!({ "type": "edit", "client_msg_id": "c2", "message_id": id, "text": "x".repeat(4_001) }), "limited"),
        (json!({ "type": "edit", "client_msg_id": "", "message_id": id, "text": "x" }), "1 to 64 bytes"),
    ] {
        let cid = frame["client_msg_id"].as_str().unwrap_or("").to_string();
        let e = answer(&mut ann_ws, frame, &cid).await;
        assert_eq!(e["type"], "error", "{e}");
        assert!(e["message"].as_str().unwrap_or("").contains(why), "want {why:?}: {e}");
    }
    ann_ws.send_json(json!({ "type": "edit", "client_msg_id": "c3", "message_id": id })).await;
    let e = ann_ws.next_where(WAIT, |e| e["type"] == "error").await.expect("error");
    assert_eq!(e["code"], "bad_frame", "{e}");

    // The same over REST.
    let path = format!("/api/conversations/{conversation}/messages/{id}");
    let patch =
        |user: &TestUser, path: &str, body: Value| user.http.patch(format!("{}{path}", server.url)).json(&body).send();
    assert_eq!(patch(&bob, &path, json!({ "text": "x" })).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(patch(&cat, &path, json!({ "text": "x" })).await.unwrap().status(), StatusCode::NOT_FOUND);
    let elsewhere = format!("/api/conversations/{}/messages/{id}", direct_conversation_id(&ann.id, &cat.id));
    assert_eq!(patch(&ann, &elsewhere, json!({ "text": "x" })).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert!(patch(&ann, &path, json!({ "text": 5 })).await.unwrap().status().is_client_error());
    let resp = patch(&ann, &path, json!({ "text": "Ann's better words" })).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["text"], "Ann's better words");
    let live = bob_ws.next_where(WAIT, |e| e["type"] == "updated").await.expect("Bob sees the REST edit live");
    assert_eq!(live["message"]["text"], "Ann's better words");
    let delete = |user: &TestUser| user.http.delete(format!("{}{path}", server.url)).send();
    assert_eq!(delete(&cat).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(delete(&bob).await.unwrap().status(), StatusCode::FORBIDDEN);
    let resp = delete(&ann).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap()["deleted"], true);
    // Once stored (checks read history, which the worker writes just after the answer).
    stored(&server, &bob, &ann.id, &id, |m| m["deleted"] == true).await;
    assert_eq!(delete(&ann).await.unwrap().status(), StatusCode::CONFLICT, "already deleted");
    // Cat still learns nothing of it.
    let (status, _) = post_read(&cat.http, &server.url, &conversation, &id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_replay_never_undoes_an_edit() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let mut ann_ws = ann.ws(&server).await;
    let m = ann_ws.send_acked(&bob.id, "v1", WAIT).await.expect("acked");
    let original: ChatMessage = serde_json::from_value(m.clone()).expect("message");
    stored(&server, &bob, &ann.id, &original.id, |_| true).await;
    let edit_id = cid();
    let frame = json!({ "type": "edit", "client_msg_id": edit_id, "message_id": original.id, "text": "v2" });
    let edited: ChatMessage =
        serde_json::from_value(answer(&mut ann_ws, frame, &edit_id).await["message"].clone()).expect("message");
    stored(&server, &bob, &ann.id, &original.id, |m| m["text"] == "v2").await;

    // The worker replaying the log (after a crash) stores the original and
    // the edit again, in any order: the edit stays. A forged later version
    // from someone else changes nothing either.
    let store = &server.state().store;
    store.save_messages(Arc::from([original.clone()])).await.expect("replay");
    store.save_messages(Arc::from([edited.clone(), original.clone()])).await.expect("replay");
    let forged = ChatMessage {
        sender_id: bob.id.clone(),
        text: "forged".into(),
        edited_at: Some("2999-01-01T00:00:00.000Z".into()),
        ..edited.clone()
    };
    store.save_messages(Arc::from([forged])).await.expect("save");
    let now = store.message_by_id(&original.id).await.expect("read").expect("stored");
    assert_eq!(now, edited);
    let (_, page) = get(&bob.http, &server.url, "/api/conversations").await;
    assert_eq!(page["conversations"][0]["last_message"]["text"], "v2", "{page}");
}
