//! The conversation list and people search, through the REST routes and
//! the server functions: order, previews, pagination without gaps or
//! duplicates, search by word prefix and email, rate limits and bad input.
//! With `CHARCHA_TEST_SCALED=1` the same tests run on MongoDB.

mod common;

use std::collections::HashSet;

use charcha::api::chat::{GetContact, ListConversations, SearchUsers};
use common::{TestServer, TestUser, eventually, get, post_json, reply};
use leptos::server_fn::ServerFn;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Calls a server function the way the UI does: its URL, a form body.
async fn server_fn<F: ServerFn>(user: &TestUser, server: &TestServer, form: &str) -> (StatusCode, Value) {
    let resp = user
        .http
        .post(format!("{}{}", server.url, F::PATH))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .expect("server fn request");
    let (status, body, _) = reply(resp).await;
    (status, body)
}

async fn send(from: &TestUser, server: &TestServer, to: &str, text: &str) -> Value {
    let (status, m) =
        post_json(&from.http, &server.url, &format!("/api/messages/send/{to}"), json!({ "text": text })).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    m
}

/// The peers of `user`'s conversation list, a page of `limit` at a time,
/// following `next_cursor` to the end.
async fn all_conversations(user: &TestUser, server: &TestServer, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) =
            get(&user.http, &server.url, &format!("/api/conversations?limit={limit}&cursor={cursor}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["conversations"].as_array().expect("conversations").clone();
        assert!(items.len() <= limit, "{page}");
        out.extend(items);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return out,
        }
    }
}

fn peer_ids(list: &[Value]) -> Vec<String> {
    list.iter().map(|c| c["peer"]["_id"].as_str().expect("peer id").to_string()).collect()
}

#[tokio::test]
async fn conversations_list_most_recent_first_with_previews_and_pages() {
    let server = TestServer::start().await;
    let me = TestUser::signup(&server, "Me").await;
    let mut peers = Vec::new();
    for name in ["Ann", "Bob", "Cat", "Dan", "Eve"] {
        peers.push(TestUser::signup(&server, name).await);
    }
    // Alternate who writes; the last message decides the order.
    for (i, p) in peers.iter().enumerate() {
        if i % 2 == 0 {
            send(&me, &server, &p.id, &format!("hello {i}")).await;
        } else {
            send(p, &server, &me.id, &format!("hi from {i}")).await;
        }
    }
    // Ann writes again: she moves to the top. A long text is cut to a preview.
    let long = "x".repeat(500);
    send(&peers[0], &server, &me.id, &long).await;

    let want: Vec<String> = [0, 4, 3, 2, 1].iter().map(|&i| peers[i].id.clone()).collect();
    // History is the worker's: wait until it has stored everything.
    let list = eventually(|| async {
        let list = all_conversations(&me, &server, 100).await;
        (peer_ids(&list) == want && list[0]["last_message"]["text"].as_str().is_some_and(|t| t.starts_with('x')))
            .then_some(list)
    })
    .await;
    assert_eq!(list[0]["last_message"]["text"].as_str().map(str::len), Some(160), "preview length");
    assert_eq!(list[0]["last_message"]["sender_id"], peers[0].id.as_str());
    assert_eq!(list[1]["last_message"]["text"], "hello 4");
    assert_eq!(list[1]["peer"]["full_name"], "Eve");
    assert_eq!(list[1]["peer"]["online"], false);
    let keys: HashSet<&str> = list[1]["peer"].as_object().unwrap().keys().map(String::as_str).collect();
    assert!(!keys.contains("email"), "no emails in the list: {keys:?}");

    // Pages of two: the same order, nothing twice, nothing missing.
    let paged = all_conversations(&me, &server, 2).await;
    assert_eq!(peer_ids(&paged), want);

    // The other side sees the conversation too, with the same last message.
    let ann = all_conversations(&peers[0], &server, 10).await;
    assert_eq!(peer_ids(&ann), [me.id.as_str()]);
    assert!(ann[0]["last_message"]["text"].as_str().is_some_and(|t| t.starts_with('x')));

    // The same through the server function the UI calls.
    let (status, page) = server_fn::<ListConversations>(&me, &server, "limit=1").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(peer_ids(page["conversations"].as_array().unwrap()), want[..1]);
    assert!(page["next_cursor"].is_string());

    // Bad cursors and limits are clear errors.
    for bad in ["cursor=nope", "cursor=--------------------------", "limit=-1", "limit=many"] {
        let (status, body) = get(&me.http, &server.url, &format!("/api/conversations?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) = get(&common::client(), &server.url, "/api/conversations").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// `GET /api/messages/users?q=&cursor=&limit=`: every page and its cursor.
async fn search_all(user: &TestUser, server: &TestServer, q: &str, limit: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut url = format!("{}/api/messages/users?q={q}&limit={limit}", server.url);
    loop {
        let (status, body, headers) = reply(user.http.get(&url).send().await.expect("GET")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = body.as_array().expect("the original's array shape");
        assert!(page.len() <= limit);
        names.extend(page.iter().map(|u| u["full_name"].as_str().unwrap().to_string()));
        match headers.get("x-next-cursor") {
            Some(cursor) => {
                let link = headers.get("link").and_then(|l| l.to_str().ok()).expect("a Link header with the cursor");
                let cursor = cursor.to_str().unwrap();
                assert!(link.contains(cursor) && link.ends_with("rel=\"next\""), "{link}");
                let path = link.trim_start_matches('<').split('>').next().unwrap();
                url = format!("{}{path}", server.url);
            }
            None => return names,
        }
    }
}

#[tokio::test]
async fn people_search_by_word_prefix_or_email_paged_alphabetically() {
    let server = TestServer::start().await;
    let me = TestUser::signup_as(&server.url, "me", "Zed Searcher").await;
    let asha = TestUser::signup_as(&server.url, "asha", "Asha Rao").await;
    TestUser::signup_as(&server.url, "ashok", "ashok Kumar").await;
    TestUser::signup_as(&server.url, "ravi", "Ravi Ashwin").await;
    TestUser::signup_as(&server.url, "bob", "Bob Stone").await;

    assert_eq!(search_all(&me, &server, "ash", 10).await, ["Asha Rao", "ashok Kumar", "Ravi Ashwin"]);
    assert_eq!(search_all(&me, &server, "ASH", 1).await, ["Asha Rao", "ashok Kumar", "Ravi Ashwin"], "paged");
    assert_eq!(search_all(&me, &server, "rao", 10).await, ["Asha Rao"], "a later word");
    assert_eq!(search_all(&me, &server, "asha%20r", 10).await, ["Asha Rao"], "the whole name");
    assert_eq!(search_all(&me, &server, "bob-", 10).await, ["Bob Stone"], "an email prefix");
    assert!(search_all(&me, &server, "tone", 10).await.is_empty(), "prefixes only");
    assert!(search_all(&me, &server, "zed", 10).await.is_empty(), "never myself");
    // No query: everyone else, alphabetically, in pages.
    assert_eq!(search_all(&me, &server, "", 2).await, ["Asha Rao", "ashok Kumar", "Bob Stone", "Ravi Ashwin"]);
    // Regex and LIKE metacharacters are plain text.
    assert!(search_all(&me, &server, ".%2A", 10).await.is_empty());
    assert!(search_all(&me, &server, "%25", 10).await.is_empty());

    // The server function the UI calls.
    let (status, page) = server_fn::<SearchUsers>(&me, &server, "q=ash&limit=2").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["contacts"].as_array().map(Vec::len), Some(2));
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (status, more) = server_fn::<SearchUsers>(&me, &server, &format!("q=ash&limit=2&cursor={cursor}")).await;
    assert_eq!(status, StatusCode::OK, "{more}");
    assert_eq!(more["contacts"][0]["full_name"], "Ravi Ashwin");
    assert!(more["next_cursor"].is_null());

    // One person by id (a chat opened from a link), with presence.
    let (status, c) = server_fn::<GetContact>(&me, &server, &format!("id={}", asha.id)).await;
    assert_eq!((status, c["full_name"].as_str()), (StatusCode::OK, Some("Asha Rao")), "{c}");
    let (status, _) = server_fn::<GetContact>(&me, &server, &format!("id={}", ulid::Ulid::new())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad input: clear errors.
    for bad in ["cursor=zz", "cursor=41", &format!("q={}", "a".repeat(101)), "limit=x"] {
        let (status, body) = get(&me.http, &server.url, &format!("/api/messages/users?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn people_search_is_rate_limited_per_user() {
    let server = TestServer::start().await;
    let me = TestUser::signup(&server, "Me").await;
    let other = TestUser::signup(&server, "Other").await;
    let limit = charcha::server::chat::SEARCH_RATE_PER_MINUTE;
    for _ in 0..limit {
        let (status, body) = get(&me.http, &server.url, "/api/messages/users?q=o").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body, headers) =
        reply(me.http.get(format!("{}/api/messages/users?q=o", server.url)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.contains_key("retry-after"));
    // Someone else is not affected.
    let (status, _) = get(&other.http, &server.url, "/api/messages/users?q=m").await;
    assert_eq!(status, StatusCode::OK);
}

/// A database from before the conversation list and search existed gets
/// both on open, from the users and messages it holds.
#[tokio::test]
async fn an_older_embedded_database_is_indexed_on_open() {
    if common::scaled() {
        // This migration is the embedded driver's (a MongoDB database gets
        // its fields as users and messages are written).
        return;
    }
    let server = TestServer::start().await;
    let me = TestUser::signup(&server, "Me").await;
    let ann = TestUser::signup_as(&server.url, "ann", "Ann Lee").await;
    send(&me, &server, &ann.id, "kept").await;
    eventually(|| async { (all_conversations(&me, &server, 10).await.len() == 1).then_some(()) }).await;
    let db = server.data_dir.join("charcha.db");
    let server = server
        .restart_with(|| {
            let conn = rusqlite::Connection::open(&db).expect("open db");
            conn.execute_batch("DELETE FROM inbox; DELETE FROM user_terms; UPDATE users SET name_key = '';")
                .expect("make it look old");
        })
        .await;
    let list = all_conversations(&me, &server, 10).await;
    assert_eq!(peer_ids(&list), [ann.id.as_str()]);
    assert_eq!(list[0]["last_message"]["text"], "kept");
    assert_eq!(search_all(&me, &server, "lee", 10).await, ["Ann Lee"]);
}
