//! Message search (`GET /api/messages/search`, the `search_messages`
//! server function): words and prefixes, case and diacritics, only the
//! caller's own conversations, edits and deletes, pagination without gaps
//! or duplicates, query syntax as plain text, bad input and the rate limit.
//! With `CHARCHA_TEST_SCALED=1` the same tests run on MongoDB (FerretDB in
//! the test services: the regex path; see README, "Message search").

mod common;

use std::collections::HashSet;

use charcha::api::chat::SearchMessages;
use common::{TestServer, TestUser, eventually, get, post_json, reply};
use leptos::server_fn::ServerFn;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn send(from: &TestUser, server: &TestServer, to: &str, text: &str) -> String {
    let (status, m) =
        post_json(&from.http, &server.url, &format!("/api/messages/send/{to}"), json!({ "text": text })).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    m["_id"].as_str().expect("id").to_string()
}

/// Waits until the worker has stored `user`'s conversation with `peer` as
/// `ready` wants it (history, not search: polling search would spend the
/// search rate limit).
async fn stored(server: &TestServer, user: &TestUser, peer: &str, ready: impl Fn(&[Value]) -> bool) {
    eventually(|| async {
        let (_, page) = get(&user.http, &server.url, &format!("/api/messages/{peer}?limit=100")).await;
        ready(page["messages"].as_array()?).then_some(())
    })
    .await
}

fn has_text(messages: &[Value], text: &str) -> bool {
    messages.iter().any(|m| m["text"] == text)
}

/// One page of `GET /api/messages/search`.
async fn search_page(user: &TestUser, server: &TestServer, query: &str) -> (StatusCode, Value) {
    let resp = user
        .http
        .get(format!("{}/api/messages/search", server.url))
        .query(&[("q", query)])
        .send()
        .await
        .expect("GET search");
    let (status, body, _) = reply(resp).await;
    (status, body)
}

/// The texts `user` finds for `query` (first page, newest first).
async fn found(user: &TestUser, server: &TestServer, query: &str) -> Vec<String> {
    let (status, page) = search_page(user, server, query).await;
    assert_eq!(status, StatusCode::OK, "{query:?}: {page}");
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["message"]["text"].as_str().expect("text").to_string())
        .collect()
}

#[tokio::test]
async fn finds_words_and_prefixes_ignoring_case_and_diacritics_in_own_conversations_only() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let cat = TestUser::signup(&server, "Cat").await;
    let cafe = "Let's meet at the Café Crème tomorrow";
    send(&ann, &server, &bob.id, cafe).await;
    send(&bob, &server, &ann.id, "quartz for Ann").await;
    send(&ann, &server, &bob.id, "नमस्ते दुनिया").await;
    send(&ann, &server, &cat.id, "quartz for Cat").await;
    stored(&server, &ann, &bob.id, |m| m.len() == 3).await;
    stored(&server, &ann, &cat.id, |m| m.len() == 1).await;

    for q in ["cafe", "CAFÉ", "caf", "crème café", "creme", "meet tomor", "Let's", "let s meet"] {
        assert_eq!(found(&bob, &server, q).await, [cafe], "{q:?}");
    }
    // Every word is needed; only the last one is a prefix.
    assert!(found(&bob, &server, "cafe nowhere").await.is_empty());
    assert!(found(&bob, &server, "tomor meet").await.is_empty());
    assert!(found(&bob, &server, "afe").await.is_empty(), "words, not substrings");
    assert_eq!(found(&bob, &server, "नमस्ते").await, ["नमस्ते दुनिया"], "other scripts");

    // Newest first, from every conversation of the caller, none of others'.
    assert_eq!(found(&ann, &server, "quartz").await, ["quartz for Cat", "quartz for Ann"]);
    assert_eq!(found(&bob, &server, "quartz").await, ["quartz for Ann"]);
    assert_eq!(found(&cat, &server, "quartz").await, ["quartz for Cat"]);
    assert!(found(&cat, &server, "cafe").await.is_empty(), "an outsider finds nothing");

    // Each result names the other member: the conversation to open.
    let (_, page) = search_page(&bob, &server, "cafe").await;
    let hit = &page["results"][0];
    assert_eq!(hit["peer"]["_id"], ann.id.as_str(), "{page}");
    assert_eq!(hit["peer"]["full_name"], "Ann");
    assert!(hit["peer"].get("email").is_none(), "no emails: {hit}");
    assert_eq!(hit["message"]["sender_id"], ann.id.as_str());
    assert!(page["next_cursor"].is_null());
    let (_, page) = search_page(&ann, &server, "quartz").await;
    let peers: Vec<&str> =
        page["results"].as_array().unwrap().iter().map(|r| r["peer"]["_id"].as_str().unwrap()).collect();
    assert_eq!(peers, [cat.id.as_str(), bob.id.as_str()]);

    // The server function the UI calls.
    let resp = bob
        .http
        .post(format!("{}{}", server.url, SearchMessages::PATH))
        .form(&[("q", "crem"), ("limit", "5")])
        .send()
        .await
        .unwrap();
    let (status, page, _) = reply(resp).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["results"][0]["message"]["text"], cafe);
    let resp =
        cat.http.post(format!("{}{}", server.url, SearchMessages::PATH)).form(&[("q", "crem")]).send().await.unwrap();
    let (status, page, _) = reply(resp).await;
    assert_eq!((status, page["results"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{page}");
}

#[tokio::test]
async fn edited_messages_are_found_by_their_new_words_and_deleted_ones_not_at_all() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let edited = send(&ann, &server, &bob.id, "original zebra").await;
    let deleted = send(&ann, &server, &bob.id, "doomed walrus").await;
    stored(&server, &bob, &ann.id, |m| m.len() == 2).await;
    assert_eq!(found(&bob, &server, "zebra").await, ["original zebra"]);
    assert_eq!(found(&bob, &server, "walrus").await, ["doomed walrus"]);

    let conversation = charcha::api::dto::direct_conversation_id(&ann.id, &bob.id);
    let url = format!("{}/api/conversations/{conversation}/messages/{edited}", server.url);
    let (status, body, _) =
        reply(ann.http.patch(url).json(&json!({ "text": "changed giraffe" })).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let url = format!("{}/api/conversations/{conversation}/messages/{deleted}", server.url);
    let (status, body, _) = reply(ann.http.delete(url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    stored(&server, &bob, &ann.id, |m| has_text(m, "changed giraffe") && m.iter().any(|m| m["deleted"] == true)).await;

    assert!(found(&bob, &server, "zebra").await.is_empty(), "the old words are gone");
    assert!(found(&bob, &server, "original").await.is_empty());
    assert_eq!(found(&ann, &server, "giraffe").await, ["changed giraffe"]);
    let (_, page) = search_page(&ann, &server, "giraffe").await;
    assert!(page["results"][0]["message"]["edited_at"].is_string(), "{page}");
    assert!(found(&bob, &server, "walrus").await.is_empty(), "a deleted message is not found");
    assert!(found(&bob, &server, "doomed").await.is_empty());
}

#[tokio::test]
async fn pages_newest_first_without_gaps_or_duplicates() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    let mut ids = Vec::new();
    for i in 0..23 {
        if i % 5 == 0 {
            send(&bob, &server, &ann.id, &format!("unrelated {i}")).await;
        }
        let from = if i % 2 == 0 { (&ann, &bob) } else { (&bob, &ann) };
        ids.push(send(from.0, &server, &from.1.id, &format!("needle number {i}")).await);
    }
    stored(&server, &ann, &bob.id, |m| m.len() == 28).await;
    ids.reverse();

    for limit in [1, 4, 23, 50] {
        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let resp = ann
                .http
                .get(format!("{}/api/messages/search", server.url))
                .query(&[("q", "needle"), ("limit", &limit.to_string()), ("cursor", &cursor)])
                .send()
                .await
                .unwrap();
            let (status, page, _) = reply(resp).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let results = page["results"].as_array().expect("results");
            assert!(results.len() <= limit);
            seen.extend(results.iter().map(|r| r["message"]["_id"].as_str().unwrap().to_string()));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = c.to_string(),
                None => break,
            }
        }
        assert_eq!(seen, ids, "limit {limit}: every match once, newest first");
    }
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 23);
}

#[tokio::test]
async fn query_syntax_is_plain_text_and_never_an_error() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    send(&ann, &server, &bob.id, "find the needle (in a haystack)").await;
    stored(&server, &ann, &bob.id, |m| m.len() == 1).await;
    let needle = ["find the needle (in a haystack)"];
    // FTS5 syntax (quotes, prefix stars, NEAR, column filters, NOT/-,
    // parentheses, ^), LIKE and regex metacharacters.
    for q in [
        "\"needle",
        "needle\"",
        "\"needle\"",
        "needle*",
        "(needle)",
        "-needle",
        "^needle",
        "needle:",
        "needle)",
        ".*needle",
        "\\needle",
        "'needle'",
        "needle%",
        "[needle]",
        "needle +",
        "needle -",
    ] {
        assert_eq!(found(&bob, &server, q).await, needle, "{q:?}");
    }
    for q in [
        "\"",
        "\"\"",
        "*",
        "(",
        ")",
        "-",
        "^",
        ":",
        "NEAR",
        "NEAR(needle haystack)",
        "needle NOT haystack",
        "needle OR nothing",
        "AND",
        "needle AND",
        "OR needle",
        "%",
        ".*",
        "\\",
        "'",
        "a\"b",
        "*needle*)",
        "$where",
        "{",
        "}",
        "{text}: needle",
        "text:needle",
        "members:x",
    ] {
        let (status, page) = search_page(&bob, &server, q).await;
        assert_eq!(status, StatusCode::OK, "{q:?}: {page}");
    }
    // Words in the query are all required, whatever they look like.
    assert!(found(&bob, &server, "needle OR nothing").await.is_empty());
    assert_eq!(found(&bob, &server, "NEAR(needle haystack)").await.len(), 0, "near is a word like any other");
    assert_eq!(found(&bob, &server, "needle AND haystack").await.len(), 0);
    assert_eq!(found(&bob, &server, "needle (haystack)").await, needle);
}

#[tokio::test]
async fn bad_queries_are_refused_and_search_is_rate_limited() {
    let server = TestServer::start().await;
    let me = TestUser::signup(&server, "Me").await;
    let other = TestUser::signup(&server, "Other").await;
    let long = "a".repeat(101);
    for bad in [
        String::new(),
        "q=".into(),
        "q=%20%20".into(),
        format!("q={long}"),
        "q=x&cursor=nope".into(),
        "q=x&limit=x".into(),
    ] {
        let (status, body) = get(&me.http, &server.url, &format!("/api/messages/search?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, body) = get(&me.http, &server.url, &format!("/api/messages/search?q={}", "a".repeat(100))).await;
    assert_eq!(status, StatusCode::OK, "100 characters: {body}");
    let (status, _) = get(&common::client(), &server.url, "/api/messages/search?q=x").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let limit = charcha::server::chat::SEARCH_RATE_PER_MINUTE;
    let mut ok = 0;
    let mut limited = None;
    for _ in 0..=limit {
        let (status, body, headers) =
            reply(other.http.get(format!("{}/api/messages/search?q=o", server.url)).send().await.unwrap()).await;
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(headers.contains_key("retry-after"), "{body}");
                limited = Some(body);
                break;
            }
            s => panic!("{s}: {body}"),
        }
    }
    assert_eq!(ok, limit, "the limit, then 429");
    assert!(limited.is_some());
    // Someone else is not affected.
    let (status, _) = get(&me.http, &server.url, "/api/messages/search?q=o").await;
    assert_eq!(status, StatusCode::OK);
}

/// A database from before message search gets its index on open, from the
/// messages it holds: the embedded driver's FTS5 index (and its triggers),
/// or, on MongoDB, each message's `search_words`.
#[tokio::test]
async fn an_older_database_is_indexed_on_open() {
    let server = TestServer::start().await;
    let ann = TestUser::signup(&server, "Ann").await;
    let bob = TestUser::signup(&server, "Bob").await;
    send(&ann, &server, &bob.id, "kept before search").await;
    let gone = send(&ann, &server, &bob.id, "gone before search").await;
    stored(&server, &ann, &bob.id, |m| m.len() == 2).await;
    let server = if common::scaled() {
        let uri = server.config.backends.mongodb_uri.clone().expect("a MongoDB URI");
        let client = mongodb::Client::with_uri_str(&uri).await.expect("mongo client");
        let db = client.default_database().expect("a database in the URI");
        let messages = db.collection::<mongodb::bson::Document>("messages");
        use mongodb::bson::doc;
        messages.update_many(doc! {}, doc! { "$unset": { "search_words": "" } }).await.expect("make it look old");
        messages
            .update_one(doc! { "_id": &gone }, doc! { "$set": { "text": "", "deleted": true } })
            .await
            .expect("delete one");
        server.restart().await
    } else {
        let db = server.data_dir.join("charcha.db");
        server
            .restart_with(|| {
                let conn = rusqlite::Connection::open(&db).expect("open db");
                conn.execute_batch(
                    "DROP TRIGGER IF EXISTS message_search_insert; DROP TRIGGER message_search_update;
                     DROP TRIGGER message_search_delete; DROP TABLE message_search; DROP TABLE message_search_ids;
                     UPDATE messages SET text = '', deleted = 1 WHERE text = 'gone before search';",
                )
                .expect("make it look old");
            })
            .await
    };
    assert_eq!(found(&bob, &server, "before").await, ["kept before search"]);
    // And it keeps up afterwards.
    send(&bob, &server, &ann.id, "after the upgrade").await;
    stored(&server, &ann, &bob.id, |m| m.len() == 3).await;
    assert_eq!(found(&ann, &server, "upgrade").await, ["after the upgrade"]);
}
