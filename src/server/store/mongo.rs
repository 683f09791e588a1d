//! MongoDB driver of the store, written for real MongoDB semantics.
//!
//! Collections: `users` (unique `email`), `messages` (`{conversation_id,
//! _id: -1}` for newest-first pages; `_id` is the ULID message id, so an
//! insert is idempotent), `conversations`, `revoked_tokens` (TTL index on
//! `expires_at`), `media` (binary documents; images are capped at a few
//! MiB, far below the 16 MiB document limit, so GridFS is not needed),
//! `groups` and `group_members` (one document per membership, `_id`
//! `<group>|<user>`: plain inserts and deletes, no array updates),
//! `log_offsets` and `dead_letters` for the worker.
//! Duplicate keys are recognised by error code 11000, never by text.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::{
    Client, Collection, Database, IndexModel,
    bson::{Binary, Bson, DateTime, Document, doc, spec::BinarySubtype},
    error::{Error as MongoError, ErrorKind, WriteFailure},
    options::{ClientOptions, IndexOptions},
};
use serde::{Deserialize, Serialize};

use super::*;

const DUPLICATE_KEY: i32 = 11000;
const NOT_IMPLEMENTED: i32 = 238;

fn command_code(e: &MongoError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// A message as stored: the message itself plus `send_key`, unique per
/// send. A unique index on `(sender_id, client_msg_id)` would treat every
/// message without a client id as the same key (MongoDB indexes a missing
/// field as null) and partial indexes are not available on every
/// MongoDB-compatible server, so the key is spelled out: sender and client
/// id, or, without a client id, the message id.
///
/// `search_words`: the text's [`search_words`] (none once deleted), what
/// message search matches (see [`MongoStore::search_messages`]).
#[derive(Serialize)]
struct MessageDoc<'a> {
    #[serde(flatten)]
    message: &'a ChatMessage,
    send_key: String,
    search_words: Vec<String>,
}

impl<'a> MessageDoc<'a> {
    fn of(message: &'a ChatMessage) -> Self {
        let send_key = match &message.client_msg_id {
            Some(c) => format!("c:{}:{c}", message.sender_id),
            None => format!("m:{}", message.id),
        };
        Self { message, send_key, search_words: indexed_words(message) }
    }
}

/// The distinct [`search_words`] a message is found by.
fn indexed_words(message: &ChatMessage) -> Vec<String> {
    if message.deleted {
        return Vec::new();
    }
    let mut words = search_words(&message.text);
    words.sort();
    words.dedup();
    words
}

#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    /// Whether the server has text indexes (MongoDB does, FerretDB 1.x does
    /// not): message search then narrows by `$text` too.
    text_index: bool,
}

#[derive(Serialize, Deserialize)]
struct UserDoc {
    #[serde(rename = "_id")]
    id: String,
    email: String,
    password_hash: String,
    full_name: String,
    bio: String,
    avatar_media_id: Option<String>,
    created_at_ms: i64,
    /// [`name_key`] of `full_name`: the sort key of search results.
    #[serde(default)]
    name_key: String,
    /// [`search_terms`]: a query matches a user when it is a prefix of one.
    #[serde(default)]
    search_terms: Vec<String>,
}

impl From<&UserRecord> for UserDoc {
    fn from(u: &UserRecord) -> Self {
        Self {
            name_key: name_key(&u.full_name),
            search_terms: search_terms(u),
            id: u.id.clone(),
            email: u.email.clone(),
            password_hash: u.password_hash.clone(),
            full_name: u.full_name.clone(),
            bio: u.bio.clone(),
            avatar_media_id: u.avatar_media_id.clone(),
            created_at_ms: u.created_at_ms,
        }
    }
}

impl From<UserDoc> for UserRecord {
    fn from(u: UserDoc) -> Self {
        Self {
            id: u.id,
            email: u.email,
            password_hash: u.password_hash,
            full_name: u.full_name,
            bio: u.bio,
            avatar_media_id: u.avatar_media_id,
            created_at_ms: u.created_at_ms,
        }
    }
}

fn unavailable(e: MongoError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn is_duplicate(e: &MongoError) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// How many inserts an unordered `insert_many` refused when every refusal
/// is a duplicate key (what is already stored: a replay), else `None`.
fn duplicates_only(e: &MongoError) -> Option<usize> {
    match e.kind.as_ref() {
        ErrorKind::InsertMany(im) if im.write_concern_error.is_none() => {
            let errors = im.write_errors.as_ref()?;
            errors.iter().all(|w| w.code == DUPLICATE_KEY).then_some(errors.len())
        }
        _ => None,
    }
}

impl MongoStore {
    /// Connects and creates the indexes. The database is the one named in
    /// the URI, or `charcha`.
    pub async fn connect(uri: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri).await.map_err(unavailable)?;
        options.app_name = Some("charcha".into());
        options.server_selection_timeout = Some(std::time::Duration::from_secs(5));
        let db_name = options.default_database.clone().unwrap_or_else(|| "charcha".into());
        let client = Client::with_options(options).map_err(unavailable)?;
        let mut store = Self { db: client.database(&db_name), text_index: false };
        store.create_indexes().await?;
        store.text_index = store.create_text_index().await?;
        store.index_unsearchable_messages().await?;
        Ok(store)
    }

    /// A text index on the messages' `text` where the server has text
    /// indexes; whether it does. No language: chat is in any language, so
    /// no stemming or stop words (a word is found as written, ignoring
    /// case and diacritics).
    async fn create_text_index(&self) -> Result<bool, StoreError> {
        let options =
            IndexOptions::builder().name("message_text".to_string()).default_language("none".to_string()).build();
        let created = self
            .messages()
            .create_index(IndexModel::builder().keys(doc! { "text": "text" }).options(options).build())
            .await;
        match created {
            Ok(_) => Ok(true),
            // FerretDB 1.x refuses it (its answer is IndexNotFound, code
            // 27, rather than NotImplemented): search matches
            // `search_words` alone there. Any refusal by the server means
            // the same; a connection failure is an error.
            Err(e) if command_code(&e).is_some() => {
                tracing::info!("no text index on messages ({e}); message search matches words by regex instead");
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Gives the messages stored before search existed their
    /// `search_words`, a batch at a time.
    async fn index_unsearchable_messages(&self) -> Result<(), StoreError> {
        let messages = self.messages();
        loop {
            let batch: Vec<ChatMessage> = messages
                .find(doc! { "search_words": { "$exists": false } })
                .limit(500)
                .await
                .map_err(unavailable)?
                .try_collect()
                .await
                .map_err(unavailable)?;
            if batch.is_empty() {
                return Ok(());
            }
            for m in &batch {
                let set = doc! { "search_words": indexed_words(m) };
                messages.update_one(doc! { "_id": &m.id }, doc! { "$set": set }).await.map_err(unavailable)?;
            }
        }
    }

    async fn create_indexes(&self) -> Result<(), StoreError> {
        let unique = IndexOptions::builder().unique(true).build();
        self.users()
            .create_index(IndexModel::builder().keys(doc! { "email": 1 }).options(unique).build())
            .await
            .map_err(unavailable)?;
        self.messages()
            .create_index(IndexModel::builder().keys(doc! { "conversation_id": 1, "_id": -1 }).build())
            .await
            .map_err(unavailable)?;
        // A send is stored once even if it reached the log twice under two
        // ids (a retry whose claim was lost): see server::claims and
        // [`MessageDoc::send_key`].
        self.messages()
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "send_key": 1 })
                    .options(IndexOptions::builder().unique(true).build())
                    .build(),
            )
            .await
            .map_err(unavailable)?;
        self.users()
            .create_index(IndexModel::builder().keys(doc! { "name_key": 1, "_id": 1 }).build())
            .await
            .map_err(unavailable)?;
        self.users()
            .create_index(IndexModel::builder().keys(doc! { "search_terms": 1 }).build())
            .await
            .map_err(unavailable)?;
        // The media clean-up: unexamined uploads by age, avatars by id.
        self.users()
            .create_index(IndexModel::builder().keys(doc! { "avatar_media_id": 1 }).build())
            .await
            .map_err(unavailable)?;
        self.docs("media")
            .create_index(IndexModel::builder().keys(doc! { "kept": 1, "created_at_ms": 1 }).build())
            .await
            .map_err(unavailable)?;
        self.docs("inbox")
            .create_index(IndexModel::builder().keys(doc! { "user_id": 1, "last_id": -1 }).build())
            .await
            .map_err(unavailable)?;
        self.docs("reactions")
            .create_index(IndexModel::builder().keys(doc! { "message_id": 1 }).build())
            .await
            .map_err(unavailable)?;
        // A group's members oldest first; a user's groups.
        for keys in [doc! { "group_id": 1, "joined_at_ms": 1 }, doc! { "user_id": 1 }] {
            self.docs("group_members")
                .create_index(IndexModel::builder().keys(keys).build())
                .await
                .map_err(unavailable)?;
        }
        // Message search: a user's messages by word (sent and received).
        for keys in
            [doc! { "search_words": 1 }, doc! { "sender_id": 1, "_id": -1 }, doc! { "recipient_id": 1, "_id": -1 }]
        {
            self.messages().create_index(IndexModel::builder().keys(keys).build()).await.map_err(unavailable)?;
        }
        let ttl = IndexOptions::builder().expire_after(std::time::Duration::ZERO).build();
        let created = self
            .docs("revoked_tokens")
            .create_index(IndexModel::builder().keys(doc! { "expires_at": 1 }).options(ttl).build())
            .await;
        match created {
            Ok(_) => {}
            // FerretDB 1.x (the MongoDB-compatible server the test suite runs
            // on) has no TTL indexes. The hourly purge task removes expired
            // revocations anyway, so this only costs a little disk there.
            Err(e) if command_code(&e) == Some(NOT_IMPLEMENTED) => {
                tracing::warn!("server has no TTL indexes; expired token revocations are purged hourly instead");
                self.docs("revoked_tokens")
                    .create_index(IndexModel::builder().keys(doc! { "expires_at": 1 }).build())
                    .await
                    .map_err(unavailable)?;
            }
            Err(e) => return Err(unavailable(e)),
        }
        Ok(())
    }

    fn users(&self) -> Collection<UserDoc> {
        self.db.collection("users")
    }

    fn messages(&self) -> Collection<ChatMessage> {
        self.db.collection("messages")
    }

    fn docs(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// Every document of collection `name` matching `filter`.
    async fn find_docs(&self, name: &str, filter: Document) -> Result<Vec<Document>, StoreError> {
        self.docs(name).find(filter).await.map_err(unavailable)?.try_collect().await.map_err(unavailable)
    }
}

#[async_trait]
impl UserStore for MongoStore {
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        match self.users().insert_one(UserDoc::from(user)).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Err(StoreError::Duplicate("email")),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.users().find_one(doc! { "_id": id }).await.map_err(unavailable)?.map(Into::into))
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.users().find_one(doc! { "email": email }).await.map_err(unavailable)?.map(Into::into))
    }

    async fn update_profile(
        &self,
        id: &str,
        change: ProfileChange,
    ) -> Result<Option<(UserRecord, Option<String>)>, StoreError> {
        let Some(before) = self.user_by_id(id).await? else { return Ok(None) };
        let mut set = Document::new();
        if let Some(n) = &change.full_name {
            set.insert("full_name", n);
            set.insert("name_key", name_key(n));
            let renamed = UserRecord { full_name: n.clone(), ..before.clone() };
            set.insert("search_terms", search_terms(&renamed));
        }
        if let Some(b) = &change.bio {
            set.insert("bio", b);
        }
        if let Some(a) = &change.avatar_media_id {
            set.insert("avatar_media_id", a);
        }
        if !set.is_empty() {
            self.users().update_one(doc! { "_id": id }, doc! { "$set": set }).await.map_err(unavailable)?;
        }
        let Some(after) = self.user_by_id(id).await? else { return Ok(None) };
        let replaced = match (&change.avatar_media_id, before.avatar_media_id) {
            (Some(new), Some(old)) if *new != old => Some(old),
            _ => None,
        };
        Ok(Some((after, replaced)))
    }

    async fn users_by_ids(&self, ids: &[String]) -> Result<Vec<UserRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cursor = self.users().find(doc! { "_id": { "$in": ids } }).await.map_err(unavailable)?;
        let docs: Vec<UserDoc> = cursor.try_collect().await.map_err(unavailable)?;
        Ok(docs.into_iter().map(Into::into).collect())
    }

    async fn search_users(
        &self,
        query: &str,
        exclude: &str,
        after: Option<&UserCursor>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let query = normalize_query(query);
        let mut filter = doc! { "_id": { "$ne": exclude } };
        if !query.is_empty() {
            // An anchored, escaped regex is a prefix match MongoDB answers
            // from the multikey index on `search_terms`.
            filter.insert("search_terms", doc! { "$regex": format!("^{}", regex_escape(&query)) });
        }
        if let Some(a) = after {
            filter.insert(
                "$or",
                vec![
                    doc! { "name_key": { "$gt": &a.name_key } },
                    doc! { "name_key": &a.name_key, "_id": { "$gt": &a.id } },
                ],
            );
        }
        let cursor = self
            .users()
            .find(filter)
            .sort(doc! { "name_key": 1, "_id": 1 })
            .limit(limit as i64)
            .await
            .map_err(unavailable)?;
        let docs: Vec<UserDoc> = cursor.try_collect().await.map_err(unavailable)?;
        Ok(docs.into_iter().map(Into::into).collect())
    }
}

/// `text` with every regex metacharacter escaped.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.^$|?*+()[]{}/-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An inbox entry as stored (`_id` = `<user>|<conversation>`).
#[derive(Serialize, Deserialize)]
struct InboxDoc {
    #[serde(rename = "_id")]
    id: String,
    user_id: String,
    conversation_id: String,
    peer_id: String,
    last_id: String,
    last: ChatMessage,
}

#[async_trait]
impl TokenStore for MongoStore {
    async fn revoke_token(&self, jti: &str, expires_at_ms: i64) -> Result<(), StoreError> {
        let r = self
            .docs("revoked_tokens")
            .insert_one(doc! { "_id": jti, "expires_at": DateTime::from_millis(expires_at_ms) })
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(self.docs("revoked_tokens").find_one(doc! { "_id": jti }).await.map_err(unavailable)?.is_some())
    }

    async fn purge_expired_revocations(&self, now_ms: i64) -> Result<u64, StoreError> {
        // The TTL index does this on MongoDB; doing it here too keeps
        // servers without TTL monitors (some compatible ones) bounded.
        let r = self
            .docs("revoked_tokens")
            .delete_many(doc! { "expires_at": { "$lt": DateTime::from_millis(now_ms) } })
            .await
            .map_err(unavailable)?;
        Ok(r.deleted_count)
    }
}

#[async_trait]
impl MediaStore for MongoStore {
    async fn put_media(&self, media: &MediaRecord) -> Result<(), StoreError> {
        let d = doc! {
            "_id": &media.id,
            "owner_id": &media.owner_id,
            "conversation_id": media.conversation_id.as_deref().map(Bson::from).unwrap_or(Bson::Null),
            "content_type": &media.content_type,
            "data": Binary { subtype: BinarySubtype::Generic, bytes: media.data.to_vec() },
            "created_at_ms": media.created_at_ms,
            // Set once the clean-up finds it referenced (see sweep_unreferenced_media).
            "kept": false,
        };
        match self.docs("media").insert_one(d).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Err(StoreError::Duplicate("media id")),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get_media(&self, id: &str) -> Result<Option<MediaRecord>, StoreError> {
        let Some(d) = self.docs("media").find_one(doc! { "_id": id }).await.map_err(unavailable)? else {
            return Ok(None);
        };
        let corrupt = |what: &str| StoreError::Corrupt(format!("media {id}: {what}"));
        Ok(Some(MediaRecord {
            id: id.to_string(),
            owner_id: d.get_str("owner_id").map_err(|_| corrupt("owner_id"))?.to_string(),
            conversation_id: d.get_str("conversation_id").ok().map(str::to_string),
            content_type: d.get_str("content_type").map_err(|_| corrupt("content_type"))?.to_string(),
            data: bytes::Bytes::from(d.get_binary_generic("data").map_err(|_| corrupt("data"))?.clone()),
            created_at_ms: d.get_i64("created_at_ms").unwrap_or_default(),
        }))
    }

    async fn media_info(&self, id: &str) -> Result<Option<MediaInfo>, StoreError> {
        let Some(d) = self
            .docs("media")
            .find_one(doc! { "_id": id })
            .projection(doc! { "data": 0 })
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let corrupt = |what: &str| StoreError::Corrupt(format!("media {id}: {what}"));
        Ok(Some(MediaInfo {
            owner_id: d.get_str("owner_id").map_err(|_| corrupt("owner_id"))?.to_string(),
            conversation_id: d.get_str("conversation_id").ok().map(str::to_string),
            content_type: d.get_str("content_type").map_err(|_| corrupt("content_type"))?.to_string(),
        }))
    }

    async fn delete_media(&self, id: &str) -> Result<(), StoreError> {
        self.docs("media").delete_one(doc! { "_id": id }).await.map_err(unavailable)?;
        Ok(())
    }

    /// Candidates come from the `{kept, created_at_ms}` index without their
    /// bytes. A message image can only be referenced in its own
    /// conversation (the send checks that), so it is looked for there
    /// (the `{conversation_id, _id}` index) rather than across all history;
    /// an avatar (no conversation) among the users' `avatar_media_id`s.
    /// Uploads from before `kept` existed are never examined.
    async fn sweep_unreferenced_media(&self, created_before_ms: i64, limit: usize) -> Result<MediaSweep, StoreError> {
        let media = self.docs("media");
        let candidates: Vec<Document> = media
            .find(doc! { "kept": false, "created_at_ms": { "$lt": created_before_ms } })
            .projection(doc! { "_id": 1, "conversation_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let mut sweep = MediaSweep::default();
        for d in candidates {
            let Ok(id) = d.get_str("_id") else { continue };
            let referenced = match d.get_str("conversation_id") {
                Ok(conversation) => self
                    .docs("messages")
                    .find_one(doc! { "conversation_id": conversation, "image": media_url(id) })
                    .projection(doc! { "_id": 1 })
                    .await
                    .map_err(unavailable)?
                    .is_some(),
                Err(_) => self
                    .docs("users")
                    .find_one(doc! { "avatar_media_id": id })
                    .projection(doc! { "_id": 1 })
                    .await
                    .map_err(unavailable)?
                    .is_some(),
            };
            sweep.examined += 1;
            if referenced {
                media.update_one(doc! { "_id": id }, doc! { "$set": { "kept": true } }).await.map_err(unavailable)?;
            } else {
                let r = media.delete_one(doc! { "_id": id, "kept": false }).await.map_err(unavailable)?;
                sweep.deleted += r.deleted_count;
            }
        }
        Ok(sweep)
    }
}

#[async_trait]
impl ConversationStore for MongoStore {
    async fn ensure_conversations(&self, conversations: &[(String, Vec<String>)]) -> Result<(), StoreError> {
        if conversations.is_empty() {
            return Ok(());
        }
        let now = crate::server::clock::now_ms();
        let docs =
            conversations.iter().map(|(id, members)| doc! { "_id": id, "members": members, "created_at_ms": now });
        // Unordered: the ones that exist already fail alone, as duplicates.
        match self.docs("conversations").insert_many(docs).ordered(false).await {
            Ok(_) => Ok(()),
            Err(e) if duplicates_only(&e).is_some() => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn conversation_members(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let Some(d) = self.docs("conversations").find_one(doc! { "_id": id }).await.map_err(unavailable)? else {
            return Ok(Vec::new());
        };
        Ok(d.get_array("members")
            .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_string)).collect())
            .unwrap_or_default())
    }

    async fn inbox(&self, user_id: &str, before: Option<&str>, limit: usize) -> Result<Vec<InboxEntry>, StoreError> {
        let filter = match before {
            Some(b) => doc! { "user_id": user_id, "last_id": { "$lt": b } },
            None => doc! { "user_id": user_id },
        };
        let cursor = self
            .db
            .collection::<InboxDoc>("inbox")
            .find(filter)
            .sort(doc! { "last_id": -1 })
            .limit(limit as i64)
            .await
            .map_err(unavailable)?;
        let docs: Vec<InboxDoc> = cursor.try_collect().await.map_err(unavailable)?;
        Ok(docs
            .into_iter()
            .map(|d| InboxEntry { conversation_id: d.conversation_id, peer_id: d.peer_id, last: d.last })
            .collect())
    }
}

impl MongoStore {
    /// Replaces stored messages by their later versions in `messages`
    /// (edits and deletes, by the same sender; never a deleted one).
    async fn apply_edits(&self, messages: &[ChatMessage]) -> Result<(), StoreError> {
        for m in messages {
            let Some(edited_at) = &m.edited_at else { continue };
            let filter = doc! {
                "_id": &m.id,
                "sender_id": &m.sender_id,
                "deleted": { "$ne": true },
                "$or": [
                    { "edited_at": { "$exists": false } },
                    { "edited_at": null },
                    { "edited_at": { "$lt": edited_at } },
                ],
            };
            let image = m.image.as_ref().map_or(Bson::Null, |i| Bson::String(i.clone()));
            let set = doc! {
                "text": &m.text, "image": image, "edited_at": edited_at, "deleted": m.deleted,
                "search_words": indexed_words(m),
            };
            self.messages().update_one(filter, doc! { "$set": set }).await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Moves each member's inbox entry to the batch's newest message of the
    /// conversation, unless a newer one is stored: the filter then matches
    /// nothing and the upsert's insert hits the `_id` (duplicate key), which
    /// is exactly "keep the newer one".
    async fn update_inbox(&self, messages: &[ChatMessage]) -> Result<(), StoreError> {
        use futures_util::StreamExt;
        let inbox = self.db.collection::<Document>("inbox");
        // A group's entries go to its members as they are now.
        let group_members: std::collections::HashMap<String, Vec<String>> = self
            .groups_by_ids(&group_ids_of(messages))
            .await?
            .into_iter()
            .map(|g| (g.id.clone(), g.member_ids()))
            .collect();
        let updates = inbox_updates(messages, &group_members).into_iter().map(|(user, e)| {
            let inbox = inbox.clone();
            async move {
                let id = format!("{user}|{}", e.conversation_id);
                let last = mongodb::bson::to_document(&e.last).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let version = e.last.edited_at.clone().unwrap_or_default();
                let set = doc! {
                    "user_id": &user, "conversation_id": &e.conversation_id, "peer_id": &e.peer_id,
                    "last_id": &e.last.id, "last_version": &version, "last": last,
                };
                // Newer message, or a later version (edit, delete) of the same one.
                let filter = doc! { "_id": &id, "$or": [
                    { "last_id": { "$lt": &e.last.id } },
                    { "last_id": &e.last.id, "last.sender_id": &e.last.sender_id, "last.deleted": { "$ne": true },
                      "last_version": { "$lt": &version } },
                    { "last_id": &e.last.id, "last.sender_id": &e.last.sender_id, "last.deleted": { "$ne": true },
                      "last_version": { "$exists": false } },
                ] };
                match inbox.update_one(filter, doc! { "$set": set }).upsert(true).await {
                    Ok(_) => Ok(()),
                    Err(err) if is_duplicate(&err) => Ok(()),
                    Err(err) => Err(unavailable(err)),
                }
            }
        });
        let results: Vec<Result<(), StoreError>> =
            futures_util::stream::iter(updates).buffer_unordered(16).collect().await;
        results.into_iter().collect()
    }
}

#[async_trait]
impl MessageStore for MongoStore {
    /// A batch costs one insert of its messages plus one inbox upsert per
    /// (member, conversation) it touches, whatever its size: over 1,000
    /// busy conversations a batch of 2,000 did about one upsert per
    /// message. So once the worker is behind (a fetch returns 1,000
    /// records or more) it gathers up to 10,000 for up to 200 ms: it
    /// stored 9,253-9,662 msg/s into the stand-in instead of 3,927-4,095.
    /// Keeping up, it stores each fetch at once: gathering from 64 records
    /// on, as the embedded store does, put the lag p99 at 5,000 msg/s at
    /// 0.2-2.7 s, against 0.2-0.7 s without gathering and 0.2-0.35 s with
    /// this mark (BENCHMARKS.md, item 12).
    fn gather(&self) -> super::Gather {
        super::Gather { window: std::time::Duration::from_millis(200), up_to: 10_000, busy: 1_000 }
    }

    async fn save_messages(&self, messages: Arc<[ChatMessage]>) -> Result<u64, StoreError> {
        let messages = &messages[..];
        if messages.is_empty() {
            return Ok(0);
        }
        // Unordered: one duplicate (a replay) must not stop the others.
        let docs: Vec<MessageDoc<'_>> = messages.iter().map(MessageDoc::of).collect();
        let inserted = self.db.collection::<MessageDoc<'_>>("messages").insert_many(docs).ordered(false).await;
        // The worker retries the whole batch on any error, so the inbox is
        // updated after the messages and a retry repeats both harmlessly.
        let new = match inserted {
            Ok(r) => r.inserted_ids.len() as u64,
            Err(e) => match duplicates_only(&e) {
                Some(dups) => (messages.len() - dups) as u64,
                None => return Err(unavailable(e)),
            },
        };
        // Edits and deletes: the insert above found their id taken.
        let edits = messages.iter().filter(|m| m.edited_at.is_some()).count() as u64;
        self.apply_edits(messages).await?;
        self.update_inbox(messages).await?;
        Ok(new.saturating_sub(edits))
    }

    async fn message_by_id(&self, id: &str) -> Result<Option<ChatMessage>, StoreError> {
        self.messages().find_one(doc! { "_id": id }).await.map_err(unavailable)
    }

    async fn messages_before(
        &self,
        conversation_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let filter = match before {
            Some(b) => doc! { "conversation_id": conversation_id, "_id": { "$lt": b } },
            None => doc! { "conversation_id": conversation_id },
        };
        let cursor =
            self.messages().find(filter).sort(doc! { "_id": -1 }).limit(limit as i64).await.map_err(unavailable)?;
        cursor.try_collect().await.map_err(unavailable)
    }
}

#[async_trait]
impl ReactionStore for MongoStore {
    async fn set_reaction(&self, message_id: &str, user_id: &str, emoji: &str, on: bool) -> Result<bool, StoreError> {
        let id = format!("{message_id}|{emoji}|{user_id}");
        let reactions = self.docs("reactions");
        if on {
            let doc = doc! {
                "_id": &id, "message_id": message_id, "user_id": user_id, "emoji": emoji,
                "created_at_ms": crate::server::clock::now_ms(),
            };
            match reactions.insert_one(doc).await {
                Ok(_) => Ok(true),
                Err(e) if is_duplicate(&e) => Ok(false),
                Err(e) => Err(unavailable(e)),
            }
        } else {
            let deleted = reactions.delete_one(doc! { "_id": &id }).await.map_err(unavailable)?;
            Ok(deleted.deleted_count > 0)
        }
    }

    async fn reactions_for(&self, message_ids: &[String]) -> Result<Vec<Reactions>, StoreError> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let cursor = self
            .docs("reactions")
            .find(doc! { "message_id": { "$in": message_ids } })
            .sort(doc! { "created_at_ms": 1, "user_id": 1 })
            .await
            .map_err(unavailable)?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(unavailable)?;
        let mut by_message: std::collections::HashMap<String, Vec<(String, String)>> = Default::default();
        for d in docs {
            let (Ok(m), Ok(e), Ok(u)) = (d.get_str("message_id"), d.get_str("emoji"), d.get_str("user_id")) else {
                continue;
            };
            by_message.entry(m.to_string()).or_default().push((e.to_string(), u.to_string()));
        }
        // In the order asked for.
        Ok(message_ids
            .iter()
            .filter_map(|id| by_message.remove(id).map(|rows| group_reactions(id.clone(), rows)))
            .collect())
    }
}

#[async_trait]
impl SearchStore for MongoStore {
    /// Every term must be one of the message's `search_words`, the last
    /// as a prefix (an anchored, escaped regex: served by the multikey
    /// index, never regex syntax from the user). Where the server has a
    /// text index, the complete terms also go through `$text` (as quoted
    /// phrases, all required), which narrows through that index first.
    async fn search_messages(
        &self,
        user_id: &str,
        groups: &[String],
        terms: &[String],
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let Some((last, complete)) = terms.split_last() else { return Ok(Vec::new()) };
        let mut all: Vec<Document> = complete.iter().map(|t| doc! { "search_words": t }).collect();
        all.push(doc! { "search_words": { "$regex": format!("^{}", regex_escape(last)) } });
        // Direct chats by the user's id (the recipient of a group message
        // is the group, so `recipient_id` = user is always direct); groups
        // by the ids the caller found the user a member of.
        all.push(doc! { "$or": [
            { "sender_id": user_id, "conversation_id": { "$regex": "^dm:" } },
            { "recipient_id": user_id },
            { "conversation_id": { "$in": groups } },
        ] });
        all.push(doc! { "deleted": { "$ne": true } });
        if let Some(b) = before {
            all.push(doc! { "_id": { "$lt": b } });
        }
        let mut filter = doc! { "$and": all };
        if self.text_index && !complete.is_empty() {
            let phrases: Vec<String> = complete.iter().map(|t| format!("\"{t}\"")).collect();
            filter.insert("$text", doc! { "$search": phrases.join(" "), "$diacriticSensitive": false });
        }
        let cursor =
            self.messages().find(filter).sort(doc! { "_id": -1 }).limit(limit as i64).await.map_err(unavailable)?;
        cursor.try_collect().await.map_err(unavailable)
    }
}

#[async_trait]
impl ReadStore for MongoStore {
    /// The upsert's filter matches nothing when the stored marker is at or
    /// past `message_id`; its insert then hits the `_id` (duplicate key),
    /// which is exactly "keep the further one".
    async fn mark_read(&self, user_id: &str, conversation_id: &str, message_id: &str) -> Result<bool, StoreError> {
        let id = format!("{user_id}|{conversation_id}");
        let set = doc! { "user_id": user_id, "conversation_id": conversation_id, "message_id": message_id };
        match self
            .docs("read_markers")
            .update_one(doc! { "_id": &id, "message_id": { "$lt": message_id } }, doc! { "$set": set })
            .upsert(true)
            .await
        {
            Ok(r) => Ok(r.modified_count > 0 || r.upserted_id.is_some()),
            Err(e) if is_duplicate(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn read_states(
        &self,
        user_id: &str,
        conversations: &[(String, String)],
    ) -> Result<Vec<ReadState>, StoreError> {
        let markers = self.docs("read_markers");
        let marker = |user: &str, conversation: &str| {
            let markers = markers.clone();
            let id = format!("{user}|{conversation}");
            async move {
                let found = markers.find_one(doc! { "_id": id }).await.map_err(unavailable)?;
                Ok::<_, StoreError>(found.and_then(|d| d.get_str("message_id").ok().map(str::to_string)))
            }
        };
        let mut out = Vec::with_capacity(conversations.len());
        for (conversation_id, peer_id) in conversations {
            let (mine, peer_read) =
                futures_util::try_join!(marker(user_id, conversation_id), marker(peer_id, conversation_id))?;
            let filter = doc! {
                "conversation_id": conversation_id,
                "_id": { "$gt": mine.unwrap_or_default() },
                "sender_id": { "$ne": user_id },
            };
            let count = self
                .messages()
                .count_documents(filter)
                .limit(u64::from(crate::api::dto::UNREAD_COUNT_CAP))
                .await
                .map_err(unavailable)?;
            out.push(ReadState { unread: u32::try_from(count).unwrap_or(u32::MAX), peer_read });
        }
        Ok(out)
    }

    async fn read_markers(&self, conversation_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let docs = self.find_docs("read_markers", doc! { "conversation_id": conversation_id }).await?;
        Ok(docs
            .into_iter()
            .filter_map(|d| Some((d.get_str("user_id").ok()?.to_string(), d.get_str("message_id").ok()?.to_string())))
            .collect())
    }
}

/// One membership as stored in `group_members`.
fn membership_doc(group_id: &str, m: &GroupMemberRecord) -> Document {
    doc! {
        "_id": format!("{group_id}|{}", m.user_id), "group_id": group_id, "user_id": &m.user_id,
        "role": m.role.as_str(), "joined_at_ms": m.joined_at_ms,
    }
}

#[async_trait]
impl GroupStore for MongoStore {
    /// Members first, then the group: a group document is only ever seen
    /// with its members (a failure in between leaves memberships of a
    /// group that does not exist, which nothing reads).
    async fn create_group(&self, group: &GroupRecord) -> Result<(), StoreError> {
        self.add_group_members(&group.id, &group.members).await?;
        let d = doc! {
            "_id": &group.id, "name": &group.name, "creator_id": &group.creator_id,
            "created_at_ms": group.created_at_ms,
        };
        match self.docs("groups").insert_one(d).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Err(StoreError::Duplicate("group id")),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn groups_by_ids(&self, ids: &[String]) -> Result<Vec<GroupRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self.find_docs("groups", doc! { "_id": { "$in": ids } }).await?;
        let memberships = self.find_docs("group_members", doc! { "group_id": { "$in": ids } }).await?;
        let corrupt = |what: &str| StoreError::Corrupt(format!("group document without {what}"));
        let mut members: std::collections::HashMap<String, Vec<GroupMemberRecord>> = Default::default();
        for d in memberships {
            let group_id = d.get_str("group_id").map_err(|_| corrupt("group_id"))?;
            let role = d.get_str("role").ok().and_then(GroupRole::parse).ok_or_else(|| corrupt("a role"))?;
            members.entry(group_id.to_string()).or_default().push(GroupMemberRecord {
                user_id: d.get_str("user_id").map_err(|_| corrupt("user_id"))?.to_string(),
                role,
                joined_at_ms: d.get_i64("joined_at_ms").map_err(|_| corrupt("joined_at_ms"))?,
            });
        }
        groups
            .into_iter()
            .map(|d| {
                let id = d.get_str("_id").map_err(|_| corrupt("_id"))?.to_string();
                let mut members = members.remove(&id).unwrap_or_default();
                sort_members(&mut members);
                Ok(GroupRecord {
                    name: d.get_str("name").map_err(|_| corrupt("name"))?.to_string(),
                    creator_id: d.get_str("creator_id").map_err(|_| corrupt("creator_id"))?.to_string(),
                    created_at_ms: d.get_i64("created_at_ms").map_err(|_| corrupt("created_at_ms"))?,
                    id,
                    members,
                })
            })
            .collect()
    }

    async fn rename_group(&self, id: &str, name: &str) -> Result<bool, StoreError> {
        let r = self
            .docs("groups")
            .update_one(doc! { "_id": id }, doc! { "$set": { "name": name } })
            .await
            .map_err(unavailable)?;
        Ok(r.matched_count > 0)
    }

    async fn add_group_members(&self, id: &str, members: &[GroupMemberRecord]) -> Result<u64, StoreError> {
        if members.is_empty() {
            return Ok(0);
        }
        // Unordered: an existing membership (duplicate `_id`) keeps its
        // role and must not stop the others.
        let docs: Vec<Document> = members.iter().map(|m| membership_doc(id, m)).collect();
        match self.docs("group_members").insert_many(docs).ordered(false).await {
            Ok(r) => Ok(r.inserted_ids.len() as u64),
            Err(e) => match e.kind.as_ref() {
                ErrorKind::InsertMany(im)
                    if im.write_concern_error.is_none()
                        && im.write_errors.as_ref().is_some_and(|w| w.iter().all(|w| w.code == DUPLICATE_KEY)) =>
                {
                    Ok((members.len() - im.write_errors.as_ref().map_or(0, Vec::len)) as u64)
                }
                _ => Err(unavailable(e)),
            },
        }
    }

    async fn remove_group_member(&self, id: &str, user_id: &str) -> Result<bool, StoreError> {
        let r = self
            .docs("group_members")
            .delete_one(doc! { "_id": format!("{id}|{user_id}") })
            .await
            .map_err(unavailable)?;
        Ok(r.deleted_count > 0)
    }

    async fn set_group_role(&self, id: &str, user_id: &str, role: GroupRole) -> Result<bool, StoreError> {
        let r = self
            .docs("group_members")
            .update_one(doc! { "_id": format!("{id}|{user_id}") }, doc! { "$set": { "role": role.as_str() } })
            .await
            .map_err(unavailable)?;
        Ok(r.matched_count > 0)
    }

    async fn groups_of(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let docs = self.find_docs("group_members", doc! { "user_id": user_id }).await?;
        Ok(docs.into_iter().filter_map(|d| d.get_str("group_id").ok().map(str::to_string)).collect())
    }
}

#[async_trait]
impl CheckpointStore for MongoStore {
    async fn load_offset(&self, stream: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        let id = format!("{stream}/{partition}");
        let d = self.docs("log_offsets").find_one(doc! { "_id": id }).await.map_err(unavailable)?;
        Ok(d.and_then(|d| d.get_i64("next_offset").ok()))
    }

    async fn save_offset(&self, stream: &str, partition: i32, next_offset: i64) -> Result<(), StoreError> {
        let id = format!("{stream}/{partition}");
        self.docs("log_offsets")
            .replace_one(doc! { "_id": &id }, doc! { "_id": &id, "next_offset": next_offset })
            .upsert(true)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        stream: &str,
        partition: i32,
        offset: i64,
        payload: &[u8],
        error: &str,
    ) -> Result<(), StoreError> {
        let d = doc! {
            "_id": format!("{stream}/{partition}/{offset}"),
            "payload": Binary { subtype: BinarySubtype::Generic, bytes: payload.to_vec() },
            "error": error,
            "created_at_ms": crate::server::clock::now_ms(),
        };
        match self.docs("dead_letters").insert_one(d).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}
