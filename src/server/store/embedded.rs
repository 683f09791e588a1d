//! Embedded driver: one SQLite file (`<data dir>/charcha.db`) in WAL mode.
//!
//! SQLite calls block, so each runs on the blocking pool behind a mutex on
//! the single connection; that is plenty for the one-process mode this
//! driver exists for, and keeps transactions trivially serialisable.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use super::*;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    full_name TEXT NOT NULL,
    bio TEXT NOT NULL DEFAULT '',
    avatar_media_id TEXT,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS revoked_tokens_expiry ON revoked_tokens(expires_at_ms);
CREATE TABLE IF NOT EXISTS media (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    conversation_id TEXT,
    content_type TEXT NOT NULL,
    data BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS conversation_members (
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    text TEXT NOT NULL,
    image TEXT,
    created_at TEXT NOT NULL,
    client_msg_id TEXT,
    edited_at TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    reply_to TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id DESC);
-- A send is stored once even if it reached the log twice under two ids
-- (a retry whose claim was lost): see server::claims. Keyed by the client's
-- id first: clients make it time-ordered (a version-7 UUID, the web
-- client's new_client_msg_id), so a batch of history adds to the index's
-- newest pages; keyed by sender first it dirtied a page per sender in every
-- batch, and a random page per message with random ids (BENCHMARKS.md).
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id ON messages(client_msg_id, sender_id);
-- Search: each user's search_terms (store::search_terms), for prefix
-- range scans; users.name_key orders the results.
CREATE TABLE IF NOT EXISTS user_terms (
    term TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (term, user_id)
) WITHOUT ROWID;
-- Each member's conversation list: the newest message per conversation
-- (text cut to a preview), kept by save_messages.
CREATE TABLE IF NOT EXISTS inbox (
    user_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    peer_id TEXT NOT NULL,
    last_id TEXT NOT NULL,
    last_sender_id TEXT NOT NULL,
    last_recipient_id TEXT NOT NULL,
    last_text TEXT NOT NULL,
    last_image TEXT,
    last_created_at TEXT NOT NULL,
    last_client_msg_id TEXT,
    last_edited_at TEXT,
    last_deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conversation_id)
);
CREATE INDEX IF NOT EXISTS inbox_by_recency ON inbox(user_id, last_id DESC);
-- Who reacted to which message with what (ReactionStore).
CREATE TABLE IF NOT EXISTS reactions (
    message_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    emoji TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
) WITHOUT ROWID;
-- How far each user has read each conversation (ReadStore).
CREATE TABLE IF NOT EXISTS read_markers (
    user_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;
-- Group conversations (GroupStore): the group, and one row per current
-- member with their role. A group's id is its conversation id.
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    creator_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS group_members_by_user ON group_members(user_id, group_id);
CREATE TABLE IF NOT EXISTS log_offsets (
    stream TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (stream, partition)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    stream TEXT NOT NULL,
    partition INTEGER NOT NULL,
    log_offset INTEGER NOT NULL,
    payload BLOB NOT NULL,
    error TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (stream, partition, log_offset)
);
"#;

/// Created by [`migrate`], once `messages` has every column the triggers name.
const SEARCH_SCHEMA: &str = r#"
-- Message search (SearchStore): an FTS5 index of each stored message's
-- text and its members' ids, kept in step with `messages` by the triggers
-- below (an edit replaces the indexed text, a delete empties it) and by
-- MessageStore::save_messages (a new message). Contentless:
-- it keeps no copy of the text. Its rows are keyed by
-- message_search_ids.fts_rowid, an explicit INTEGER PRIMARY KEY, which VACUUM
-- keeps (unlike the implicit rowid of `messages`).
CREATE TABLE IF NOT EXISTS message_search_ids (
    fts_rowid INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE
);
CREATE VIRTUAL TABLE IF NOT EXISTS message_search USING fts5(
    text, members, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2'
);
-- New messages are indexed by save_messages itself, after the rest of its
-- batch: an insert trigger made FTS5 flush a segment per message (see there).
DROP TRIGGER IF EXISTS message_search_insert;
CREATE TRIGGER IF NOT EXISTS message_search_update AFTER UPDATE OF text, deleted ON messages BEGIN
    UPDATE message_search
       SET text = CASE WHEN new.deleted THEN '' ELSE new.text END,
           members = new.sender_id || ' ' || new.recipient_id
     WHERE rowid = (SELECT fts_rowid FROM message_search_ids WHERE message_id = new.id);
END;
CREATE TRIGGER IF NOT EXISTS message_search_delete AFTER DELETE ON messages BEGIN
    DELETE FROM message_search WHERE rowid = (SELECT fts_rowid FROM message_search_ids WHERE message_id = old.id);
    DELETE FROM message_search_ids WHERE message_id = old.id;
END;
"#;

#[derive(Clone)]
pub struct EmbeddedStore {
    /// Every write, and reads that are part of one.
    conn: Arc<Mutex<Connection>>,
    /// Reads only (`query_only`). In WAL mode a reader never waits for the
    /// writer, so a read on the send path (a group's members) or a page of
    /// history does not queue behind the history worker's batch
    /// transaction on `conn`; it sees every commit made before it starts.
    reader: Arc<Mutex<Connection>>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) `<data_dir>/charcha.db`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display())))?;
        let conn = open_sqlite(&data_dir.join("charcha.db"))?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        migrate(&conn)?;
        let reader = open_sqlite(&data_dir.join("charcha.db"))?;
        reader.execute_batch("PRAGMA query_only=ON;").map_err(unavailable)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), reader: Arc::new(Mutex::new(reader)) })
    }

    /// Runs `f` with the write connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Self::on(self.conn.clone(), f).await
    }

    /// Runs the read-only `f` with the read connection on the blocking pool.
    async fn call_read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Self::on(self.reader.clone(), f).await
    }

    /// Runs `f` with `conn` on the blocking pool.
    async fn on<T, F>(conn: Arc<Mutex<Connection>>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            // A poisoned lock means a previous call panicked mid-way; SQLite
            // rolled the transaction back, so the connection is still sound.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }

    /// Like [`Self::call`], for the history worker's writes: committed with
    /// `synchronous=NORMAL`, without an fsync of their own. They need none:
    /// every message is durable in the log first, and the worker's
    /// checkpoint is written the same way after its messages, so a crash can
    /// only take back a suffix of both (the WAL is replayed in order), which
    /// the worker then replays idempotently. The next `FULL` commit (an
    /// account, a token, media) or a WAL checkpoint syncs them anyway.
    /// Before this, every history batch fsynced the large database file's
    /// WAL on the same journal as the log's own fsync, and the send path
    /// slowed as history grew (BENCHMARKS.md, "History size matters").
    async fn call_replayable<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.call(move |c| {
            c.execute_batch("PRAGMA synchronous=NORMAL;").map_err(unavailable)?;
            let result = f(c);
            // Back to FULL for everything else, whatever `f` did.
            c.execute_batch("PRAGMA synchronous=FULL;").map_err(unavailable)?;
            result
        })
        .await
    }
}

/// Opens a SQLite file with the settings every Charcha database uses:
/// WAL for concurrent readers, `synchronous=FULL` so a commit is on disk
/// when it returns (the log's durability promise rests on this). Reads go
/// through a memory map and a 16 MiB page cache: profiles of the send path
/// showed SQLite copying pages in with read(2) for every index probe.
pub fn open_sqlite(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(unavailable)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;
         PRAGMA cache_size=-16384; PRAGMA mmap_size=268435456; PRAGMA temp_store=MEMORY;",
    )
    .map_err(unavailable)?;
    Ok(conn)
}

/// Adds `columns` (comma-separated definitions) to `table` unless its
/// column `probe`, the first of them, is there already.
fn add_columns(conn: &Connection, table: &str, probe: &str, columns: &str) -> Result<(), StoreError> {
    if conn.prepare(&format!("SELECT {probe} FROM {table} LIMIT 0")).is_ok() {
        return Ok(());
    }
    let statements: String =
        columns.split(", ").map(|column| format!("ALTER TABLE {table} ADD COLUMN {column};")).collect();
    conn.execute_batch(&statements).map_err(unavailable)
}

/// Brings a database made by an older Charcha up to this schema: adds
/// `users.name_key` and fills the search terms and the inbox from what is
/// stored. Each step runs once (it checks for its own result first). New
/// tables (groups, `group_members`) need no step: [`SCHEMA`] creates them
/// if missing.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    // Whether the search terms must be filled too (checked before adding the column).
    let has_name_key = conn.prepare("SELECT name_key FROM users LIMIT 0").is_ok();
    add_columns(conn, "users", "name_key", "name_key TEXT NOT NULL DEFAULT ''")?;
    conn.execute_batch("CREATE INDEX IF NOT EXISTS users_by_name ON users(name_key, id);").map_err(unavailable)?;
    // Edits and deletes (a message's version and tombstone) and replies, in
    // history and in each conversation's preview.
    add_columns(conn, "messages", "edited_at", "edited_at TEXT, deleted INTEGER NOT NULL DEFAULT 0")?;
    add_columns(conn, "messages", "reply_to", "reply_to TEXT")?;
    // The send index keyed by sender first, replaced by messages_by_client_id
    // (the same uniqueness, the columns the other way round: see SCHEMA).
    conn.execute_batch("DROP INDEX IF EXISTS messages_by_send;").map_err(unavailable)?;
    add_columns(conn, "inbox", "last_edited_at", "last_edited_at TEXT, last_deleted INTEGER NOT NULL DEFAULT 0")?;
    // The media clean-up: `kept` marks uploads found referenced (never
    // looked at again); the partial indexes find references without
    // scanning users or history, and cost nothing for text-only messages.
    add_columns(conn, "media", "kept", "kept INTEGER NOT NULL DEFAULT 0")?;
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS media_unexamined ON media(created_at_ms) WHERE kept = 0;
         CREATE INDEX IF NOT EXISTS users_by_avatar ON users(avatar_media_id) WHERE avatar_media_id IS NOT NULL;
         CREATE INDEX IF NOT EXISTS messages_by_image ON messages(image) WHERE image IS NOT NULL;",
    )
    .map_err(unavailable)?;
    let terms: i64 = conn.query_row("SELECT COUNT(*) FROM user_terms", [], |r| r.get(0)).map_err(unavailable)?;
    if !has_name_key || terms == 0 {
        let users: Vec<UserRecord> = {
            let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users")).map_err(unavailable)?;
            let rows = stmt.query_map([], user_from_row).map_err(unavailable)?;
            rows.collect::<Result<_, _>>().map_err(unavailable)?
        };
        for user in &users {
            index_user(conn, user)?;
        }
    }
    // Message search: index the messages stored before it existed
    // (save_messages indexes everything written since).
    conn.execute_batch(SEARCH_SCHEMA).map_err(unavailable)?;
    let (messages, indexed): (i64, i64) = conn
        .query_row("SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM message_search_ids)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(unavailable)?;
    if indexed < messages {
        conn.execute_batch(
            "BEGIN;
             CREATE TEMP TABLE unindexed AS
               SELECT id FROM messages WHERE id NOT IN (SELECT message_id FROM message_search_ids);
             INSERT INTO message_search_ids (message_id) SELECT id FROM unindexed ORDER BY id;
             INSERT INTO message_search (rowid, text, members)
               SELECT s.fts_rowid, CASE WHEN m.deleted THEN '' ELSE m.text END, m.sender_id || ' ' || m.recipient_id
                 FROM unindexed u JOIN message_search_ids s ON s.message_id = u.id JOIN messages m ON m.id = u.id;
             DROP TABLE unindexed;
             COMMIT;",
        )
        .map_err(unavailable)?;
    }
    let inbox: i64 = conn.query_row("SELECT COUNT(*) FROM inbox", [], |r| r.get(0)).map_err(unavailable)?;
    if inbox == 0 {
        // Each direct conversation's newest message, for both of its
        // members (databases from before the inbox predate groups).
        conn.execute_batch(
            "INSERT OR IGNORE INTO inbox (user_id, conversation_id, peer_id, last_id, last_sender_id,
                                          last_recipient_id, last_text, last_image, last_created_at,
                                          last_client_msg_id, last_edited_at, last_deleted)
               SELECT m.sender_id, m.conversation_id, m.recipient_id, m.id, m.sender_id, m.recipient_id,
                      substr(m.text, 1, 160), m.image, m.created_at, m.client_msg_id, m.edited_at, m.deleted
                 FROM messages m WHERE m.id = (SELECT MAX(id) FROM messages WHERE conversation_id = m.conversation_id)
                  AND m.conversation_id NOT LIKE 'grp:%'
             UNION ALL
               SELECT m.recipient_id, m.conversation_id, m.sender_id, m.id, m.sender_id, m.recipient_id,
                      substr(m.text, 1, 160), m.image, m.created_at, m.client_msg_id, m.edited_at, m.deleted
                 FROM messages m WHERE m.id = (SELECT MAX(id) FROM messages WHERE conversation_id = m.conversation_id)
                  AND m.conversation_id NOT LIKE 'grp:%';",
        )
        .map_err(unavailable)?;
    }
    Ok(())
}

/// Writes `user`'s name key and search terms (replacing old ones).
fn index_user(conn: &Connection, user: &UserRecord) -> Result<(), StoreError> {
    conn.execute("UPDATE users SET name_key = ?2 WHERE id = ?1", params![user.id, name_key(&user.full_name)])
        .map_err(unavailable)?;
    conn.execute("DELETE FROM user_terms WHERE user_id = ?1", [&user.id]).map_err(unavailable)?;
    let mut stmt =
        conn.prepare_cached("INSERT OR IGNORE INTO user_terms (term, user_id) VALUES (?1, ?2)").map_err(unavailable)?;
    for term in search_terms(user) {
        stmt.execute(params![term, user.id]).map_err(unavailable)?;
    }
    Ok(())
}

/// The smallest string above every string that starts with `prefix`
/// (U+10FFFF sorts after every other character in UTF-8 byte order).
pub fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

pub fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get(0)?,
        email: row.get(1)?,
        password_hash: row.get(2)?,
        full_name: row.get(3)?,
        bio: row.get(4)?,
        avatar_media_id: row.get(5)?,
        created_at_ms: row.get(6)?,
    })
}

const USER_COLUMNS: &str = "id, email, password_hash, full_name, bio, avatar_media_id, created_at_ms";

fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChatMessage> {
    Ok(ChatMessage {
        id: row.get(0)?,
        conversation_id: row.get(1)?,
        sender_id: row.get(2)?,
        recipient_id: row.get(3)?,
        text: row.get(4)?,
        image: row.get(5)?,
        created_at: row.get(6)?,
        client_msg_id: row.get(7)?,
        edited_at: row.get(8)?,
        deleted: row.get(9)?,
        reply_to: row.get(10)?,
    })
}

const MESSAGE_COLUMNS: &str = "id, conversation_id, sender_id, recipient_id, text, image, created_at, client_msg_id, edited_at, deleted, reply_to";

#[async_trait]
impl UserStore for EmbeddedStore {
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let u = user.clone();
        self.call(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            tx.execute(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![u.id, u.email, u.password_hash, u.full_name, u.bio, u.avatar_media_id, u.created_at_ms],
            )
            .map_err(|e| if is_unique_violation(&e) { StoreError::Duplicate("email") } else { unavailable(e) })?;
            index_user(&tx, &u)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let id = id.to_string();
        self.call_read(move |c| {
            c.query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"), [id], user_from_row)
                .optional()
                .map_err(unavailable)
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let email = email.to_string();
        self.call_read(move |c| {
            c.query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"), [email], user_from_row)
                .optional()
                .map_err(unavailable)
        })
        .await
    }

    async fn update_profile(
        &self,
        id: &str,
        change: ProfileChange,
    ) -> Result<Option<(UserRecord, Option<String>)>, StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let Some(mut user) = tx
                .query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"), [&id], user_from_row)
                .optional()
                .map_err(unavailable)?
            else {
                return Ok(None);
            };
            let mut replaced = None;
            if let Some(name) = change.full_name {
                user.full_name = name;
            }
            if let Some(bio) = change.bio {
                user.bio = bio;
            }
            if let Some(avatar) = change.avatar_media_id {
                replaced = user.avatar_media_id.replace(avatar);
            }
            tx.execute(
                "UPDATE users SET full_name = ?2, bio = ?3, avatar_media_id = ?4 WHERE id = ?1",
                params![id, user.full_name, user.bio, user.avatar_media_id],
            )
            .map_err(unavailable)?;
            index_user(&tx, &user)?;
            tx.commit().map_err(unavailable)?;
            Ok(Some((user, replaced)))
        })
        .await
    }

    async fn users_by_ids(&self, ids: &[String]) -> Result<Vec<UserRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.call_read(move |c| {
            let placeholders = vec!["?"; ids.len()].join(", ");
            let mut stmt = c
                .prepare(&format!("SELECT {USER_COLUMNS} FROM users WHERE id IN ({placeholders})"))
                .map_err(unavailable)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(ids.iter()), user_from_row).map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn search_users(
        &self,
        query: &str,
        exclude: &str,
        after: Option<&UserCursor>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let query = normalize_query(query);
        let end = prefix_end(&query);
        let exclude = exclude.to_string();
        let after = after.cloned();
        self.call_read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users u WHERE u.id != ?1
                       AND (?2 = '' OR u.id IN (SELECT user_id FROM user_terms WHERE term >= ?2 AND term < ?3))
                       AND (?4 IS NULL OR (u.name_key, u.id) > (?4, ?5))
                     ORDER BY u.name_key, u.id LIMIT ?6"
                ))
                .map_err(unavailable)?;
            let (after_key, after_id) = after.map(|a| (Some(a.name_key), Some(a.id))).unwrap_or_default();
            let rows = stmt
                .query_map(params![exclude, query, end, after_key, after_id, limit as i64], user_from_row)
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }
}

#[async_trait]
impl TokenStore for EmbeddedStore {
    async fn revoke_token(&self, jti: &str, expires_at_ms: i64) -> Result<(), StoreError> {
        let jti = jti.to_string();
        self.call(move |c| {
            c.execute(
                "INSERT INTO revoked_tokens (jti, expires_at_ms) VALUES (?1, ?2) ON CONFLICT(jti) DO NOTHING",
                params![jti, expires_at_ms],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let jti = jti.to_string();
        self.call_read(move |c| {
            c.query_row("SELECT 1 FROM revoked_tokens WHERE jti = ?1", [jti], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
                .map_err(unavailable)
        })
        .await
    }

    async fn purge_expired_revocations(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.call(move |c| {
            c.execute("DELETE FROM revoked_tokens WHERE expires_at_ms < ?1", [now_ms])
                .map(|n| n as u64)
                .map_err(unavailable)
        })
        .await
    }
}

#[async_trait]
impl MediaStore for EmbeddedStore {
    async fn put_media(&self, media: &MediaRecord) -> Result<(), StoreError> {
        let m = media.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO media (id, owner_id, conversation_id, content_type, data, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![m.id, m.owner_id, m.conversation_id, m.content_type, &m.data[..], m.created_at_ms],
            )
            .map_err(|e| if is_unique_violation(&e) { StoreError::Duplicate("media id") } else { unavailable(e) })?;
            Ok(())
        })
        .await
    }

    async fn get_media(&self, id: &str) -> Result<Option<MediaRecord>, StoreError> {
        let id = id.to_string();
        self.call_read(move |c| {
            c.query_row(
                "SELECT id, owner_id, conversation_id, content_type, data, created_at_ms FROM media WHERE id = ?1",
                [id],
                |row| {
                    Ok(MediaRecord {
                        id: row.get(0)?,
                        owner_id: row.get(1)?,
                        conversation_id: row.get(2)?,
                        content_type: row.get(3)?,
                        data: bytes::Bytes::from(row.get::<_, Vec<u8>>(4)?),
                        created_at_ms: row.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn media_info(&self, id: &str) -> Result<Option<MediaInfo>, StoreError> {
        let id = id.to_string();
        self.call_read(move |c| {
            c.query_row("SELECT owner_id, conversation_id, content_type FROM media WHERE id = ?1", [id], |row| {
                Ok(MediaInfo { owner_id: row.get(0)?, conversation_id: row.get(1)?, content_type: row.get(2)? })
            })
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn delete_media(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            c.execute("DELETE FROM media WHERE id = ?1", [id]).map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn sweep_unreferenced_media(&self, created_before_ms: i64, limit: usize) -> Result<MediaSweep, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let kept = tx
                .execute(
                    "UPDATE media SET kept = 1 WHERE id IN (
                       SELECT m.id FROM media m WHERE m.kept = 0 AND m.created_at_ms < ?1
                          AND (EXISTS (SELECT 1 FROM users u WHERE u.avatar_media_id = m.id)
                               OR EXISTS (SELECT 1 FROM messages g WHERE g.image = '/api/media/' || m.id))
                        LIMIT ?2)",
                    params![created_before_ms, limit],
                )
                .map_err(unavailable)?;
            let deleted = tx
                .execute(
                    "DELETE FROM media WHERE id IN (
                       SELECT m.id FROM media m WHERE m.kept = 0 AND m.created_at_ms < ?1
                          AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_media_id = m.id)
                          AND NOT EXISTS (SELECT 1 FROM messages g WHERE g.image = '/api/media/' || m.id)
                        LIMIT ?2)",
                    params![created_before_ms, limit],
                )
                .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(MediaSweep { examined: (kept + deleted) as u64, deleted: deleted as u64 })
        })
        .await
    }
}

#[async_trait]
impl ConversationStore for EmbeddedStore {
    async fn ensure_conversations(&self, conversations: &[(String, Vec<String>)]) -> Result<(), StoreError> {
        if conversations.is_empty() {
            return Ok(());
        }
        let conversations = conversations.to_vec();
        self.call(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let now = crate::server::clock::now_ms();
            for (id, members) in &conversations {
                let created = tx
                    .execute(
                        "INSERT INTO conversations (id, created_at_ms) VALUES (?1, ?2) ON CONFLICT(id) DO NOTHING",
                        params![id, now],
                    )
                    .map_err(unavailable)?;
                if created > 0 {
                    for m in members {
                        tx.execute(
                            "INSERT INTO conversation_members (conversation_id, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                            params![id, m],
                        )
                        .map_err(unavailable)?;
                    }
                }
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn conversation_members(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let id = id.to_string();
        self.call_read(move |c| {
            let mut stmt = c
                .prepare("SELECT user_id FROM conversation_members WHERE conversation_id = ?1 ORDER BY user_id")
                .map_err(unavailable)?;
            let rows = stmt.query_map([id], |r| r.get(0)).map_err(unavailable)?;
            rows.collect::<Result<Vec<String>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn inbox(&self, user_id: &str, before: Option<&str>, limit: usize) -> Result<Vec<InboxEntry>, StoreError> {
        let (user_id, before) = (user_id.to_string(), before.map(str::to_string));
        self.call_read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT last_id, conversation_id, last_sender_id, last_recipient_id, last_text, last_image,
                            last_created_at, last_client_msg_id, last_edited_at, last_deleted, NULL, peer_id
                       FROM inbox WHERE user_id = ?1 AND (?2 IS NULL OR last_id < ?2)
                      ORDER BY last_id DESC LIMIT ?3",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![user_id, before, limit as i64], |r| {
                    let last = message_from_row(r)?;
                    Ok(InboxEntry { conversation_id: last.conversation_id.clone(), peer_id: r.get(11)?, last })
                })
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }
}

#[async_trait]
impl MessageStore for EmbeddedStore {
    /// SQLite writes every page a transaction dirties, once to the WAL and
    /// again at checkpoint, and the history indexes (by conversation, by
    /// send, the conversation lists) dirty about a page per conversation or
    /// sender in the batch whatever its size; full-text search writes one
    /// segment per transaction, merged later. So bigger batches cost far
    /// less per message. Measured on load (c) (1,000 users, W=1, ~22,000
    /// msg/s sent), as the rate history catches up at once the load stops:
    /// batches of at most 2,000 stored 19,200 msg/s (and only ~10,000 a
    /// second while the load ran: history fell ever further behind);
    /// at most 10,000, 33,300 msg/s, keeping within ~2 s of the log
    /// (BENCHMARKS.md). Only a busy log is gathered from (see `worker`), so
    /// history trails it by at most the window more under load, and not at
    /// all when it is quiet.
    fn gather(&self) -> super::Gather {
        super::Gather {
            window: std::time::Duration::from_millis(200),
            up_to: 10_000,
            busy: crate::server::worker::BUSY,
        }
    }

    async fn save_messages(&self, messages: Arc<[ChatMessage]>) -> Result<u64, StoreError> {
        self.call_replayable(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let mut inserted = 0u64;
            {
                // A new message: stored unless its id or its send is
                // already (a replay, a retry under a second id). A plain
                // `OR IGNORE` insert, not the upsert below: SQLite gives
                // an upsert (it may fire the update trigger) a statement
                // journal, a 4 KiB copy of every page it touches, which
                // was ~13 % of history's CPU under load (BENCHMARKS.md).
                let mut insert = tx
                    .prepare_cached(&format!(
                        "INSERT OR IGNORE INTO messages ({MESSAGE_COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                    ))
                    .map_err(unavailable)?;
                let mut upsert = tx
                    .prepare_cached(&format!(
                        // A later version (an edit or a delete) of a stored
                        // message replaces it, by its sender only; anything
                        // else already stored (a replay, a retry under a
                        // second id) is left alone.
                        "INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                         ON CONFLICT (id) DO UPDATE SET
                            text = excluded.text, image = excluded.image,
                            edited_at = excluded.edited_at, deleted = excluded.deleted
                         WHERE excluded.sender_id = messages.sender_id AND messages.deleted = 0
                           AND COALESCE(excluded.edited_at, '') > COALESCE(messages.edited_at, '')
                         ON CONFLICT DO NOTHING"
                    ))
                    .map_err(unavailable)?;
                let mut claim_search_id = tx
                    .prepare_cached("INSERT INTO message_search_ids (message_id) VALUES (?1) ON CONFLICT DO NOTHING")
                    .map_err(unavailable)?;
                // New messages and their search rowids, indexed last (below).
                let mut unindexed = Vec::new();
                for m in messages.iter() {
                    // A new message has no edit time; an edit or a delete has one.
                    let is_new = m.edited_at.is_none();
                    let stmt = if is_new { &mut insert } else { &mut upsert };
                    let changed = stmt
                        .execute(params![
                            m.id,
                            m.conversation_id,
                            m.sender_id,
                            m.recipient_id,
                            m.text,
                            m.image,
                            m.created_at,
                            m.client_msg_id,
                            m.edited_at,
                            m.deleted,
                            m.reply_to
                        ])
                        .map_err(unavailable)? as u64;
                    // New messages only; an applied edit is not one.
                    if is_new {
                        inserted += changed;
                    }
                    // Stored or changed, and without a search row yet: new
                    // (a changed message that has one is an edit, which the
                    // update trigger re-indexes).
                    if changed > 0 && claim_search_id.execute([&m.id]).map_err(unavailable)? > 0 {
                        unindexed.push((tx.last_insert_rowid(), m));
                    }
                }
                let mut inbox = tx
                    .prepare_cached(
                        "INSERT INTO inbox (user_id, conversation_id, peer_id, last_id, last_sender_id, last_recipient_id,
                                            last_text, last_image, last_created_at, last_client_msg_id,
                                            last_edited_at, last_deleted)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                         ON CONFLICT (user_id, conversation_id) DO UPDATE SET
                            peer_id = excluded.peer_id, last_id = excluded.last_id,
                            last_sender_id = excluded.last_sender_id, last_recipient_id = excluded.last_recipient_id,
                            last_text = excluded.last_text, last_image = excluded.last_image,
                            last_created_at = excluded.last_created_at, last_client_msg_id = excluded.last_client_msg_id,
                            last_edited_at = excluded.last_edited_at, last_deleted = excluded.last_deleted
                         WHERE excluded.last_id > inbox.last_id
                            OR (excluded.last_id = inbox.last_id AND inbox.last_deleted = 0
                                AND excluded.last_sender_id = inbox.last_sender_id
                                AND COALESCE(excluded.last_edited_at, '') > COALESCE(inbox.last_edited_at, ''))",
                    )
                    .map_err(unavailable)?;
                // A group's entries go to its members as they are now.
                let mut group_members = std::collections::HashMap::new();
                for id in group_ids_of(&messages) {
                    let members = group_member_ids(&tx, &id)?;
                    group_members.insert(id, members);
                }
                for (user, e) in inbox_updates(&messages, &group_members) {
                    let m = &e.last;
                    inbox
                        .execute(params![
                            user,
                            e.conversation_id,
                            e.peer_id,
                            m.id,
                            m.sender_id,
                            m.recipient_id,
                            m.text,
                            m.image,
                            m.created_at,
                            m.client_msg_id,
                            m.edited_at,
                            m.deleted
                        ])
                        .map_err(unavailable)?;
                }
                // Full-text rows go in last, one single-row statement each.
                // FTS5 keeps a transaction's new terms in memory and writes
                // them as one segment at commit, but it must flush them at
                // every statement savepoint, which SQLite opens for any
                // statement that could half-fail (an upsert, anything with
                // a trigger) once FTS5 is part of the transaction. Indexed
                // from an insert trigger, every message was such a
                // statement: a segment per message, then merged, which was
                // ~17% of the server's CPU at 31,000 msg/s (perf, BENCHMARKS.md).
                let mut index = tx
                    .prepare_cached("INSERT INTO message_search (rowid, text, members) VALUES (?1, ?2, ?3)")
                    .map_err(unavailable)?;
                for (rowid, m) in unindexed {
                    let text = if m.deleted { "" } else { m.text.as_str() };
                    let members = format!("{} {}", m.sender_id, m.recipient_id);
                    index.execute(params![rowid, text, members]).map_err(unavailable)?;
                }
            }
            tx.commit().map_err(unavailable)?;
            Ok(inserted)
        })
        .await
    }

    async fn message_by_id(&self, id: &str) -> Result<Option<ChatMessage>, StoreError> {
        let id = id.to_string();
        self.call_read(move |c| {
            c.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"))
                .and_then(|mut stmt| stmt.query_row([id], message_from_row).optional())
                .map_err(unavailable)
        })
        .await
    }

    async fn messages_before(
        &self,
        conversation_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let conversation_id = conversation_id.to_string();
        let before = before.map(str::to_string);
        self.call_read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
                ))
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![conversation_id, before, limit as i64], message_from_row)
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }
}

/// The FTS5 query for `terms` (see [`SearchStore`]) in the messages of
/// `user_id` and of `groups` (the members column holds the sender's and
/// the recipient's ids; a group message's recipient is the group): each
/// term a quoted string (never FTS syntax, whatever the user typed), the
/// last one a prefix, all required.
fn fts_query(user_id: &str, groups: &[String], terms: &[String]) -> String {
    let quote = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
    let words: Vec<String> = terms.iter().map(|t| quote(t)).collect();
    let members: Vec<String> = std::iter::once(user_id).chain(groups.iter().map(String::as_str)).map(quote).collect();
    format!("{{members}} : ({}) AND {{text}} : ({}*)", members.join(" OR "), words.join(" "))
}

#[async_trait]
impl SearchStore for EmbeddedStore {
    async fn search_messages(
        &self,
        user_id: &str,
        groups: &[String],
        terms: &[String],
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let query = fts_query(user_id, groups, terms);
        let groups = serde_json::to_string(groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (user_id, before) = (user_id.to_string(), before.map(str::to_string));
        self.call_read(move |c| {
            // The index narrows to the user's messages with every word; the
            // membership test is repeated on the stored message all the same.
            let mut stmt = c
                .prepare_cached(
                    "SELECT m.id, m.conversation_id, m.sender_id, m.recipient_id, m.text, m.image, m.created_at,
                            m.client_msg_id, m.edited_at, m.deleted, m.reply_to
                       FROM message_search s
                       JOIN message_search_ids i ON i.fts_rowid = s.rowid
                       JOIN messages m ON m.id = i.message_id
                      WHERE message_search MATCH ?1
                        AND ((m.conversation_id NOT LIKE 'grp:%' AND (m.sender_id = ?2 OR m.recipient_id = ?2))
                             OR m.conversation_id IN (SELECT value FROM json_each(?5)))
                        AND m.deleted = 0 AND (?3 IS NULL OR m.id < ?3)
                      ORDER BY m.id DESC LIMIT ?4",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![query, user_id, before, limit as i64, groups], message_from_row)
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }
}

#[async_trait]
impl ReactionStore for EmbeddedStore {
    async fn set_reaction(&self, message_id: &str, user_id: &str, emoji: &str, on: bool) -> Result<bool, StoreError> {
        let (message_id, user_id, emoji) = (message_id.to_string(), user_id.to_string(), emoji.to_string());
        self.call(move |c| {
            let changed = if on {
                c.execute(
                    "INSERT INTO reactions (message_id, user_id, emoji, created_at_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    params![message_id, user_id, emoji, crate::server::clock::now_ms()],
                )
            } else {
                c.execute(
                    "DELETE FROM reactions WHERE message_id = ?1 AND user_id = ?2 AND emoji = ?3",
                    params![message_id, user_id, emoji],
                )
            };
            Ok(changed.map_err(unavailable)? > 0)
        })
        .await
    }

    async fn reactions_for(&self, message_ids: &[String]) -> Result<Vec<Reactions>, StoreError> {
        let ids = message_ids.to_vec();
        self.call_read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT emoji, user_id FROM reactions WHERE message_id = ?1 ORDER BY emoji, created_at_ms, user_id",
                )
                .map_err(unavailable)?;
            let mut out = Vec::new();
            for id in ids {
                let rows = stmt
                    .query_map([&id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .map_err(unavailable)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(unavailable)?;
                if !rows.is_empty() {
                    out.push(group_reactions(id, rows));
                }
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl ReadStore for EmbeddedStore {
    async fn mark_read(&self, user_id: &str, conversation_id: &str, message_id: &str) -> Result<bool, StoreError> {
        let (user_id, conversation_id, message_id) =
            (user_id.to_string(), conversation_id.to_string(), message_id.to_string());
        self.call(move |c| {
            let moved = c
                .prepare_cached(
                    "INSERT INTO read_markers (user_id, conversation_id, message_id) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, conversation_id) DO UPDATE SET message_id = excluded.message_id
                     WHERE excluded.message_id > read_markers.message_id",
                )
                .and_then(|mut stmt| stmt.execute(params![user_id, conversation_id, message_id]))
                .map_err(unavailable)?;
            Ok(moved > 0)
        })
        .await
    }

    async fn read_states(
        &self,
        user_id: &str,
        conversations: &[(String, String)],
    ) -> Result<Vec<ReadState>, StoreError> {
        let user_id = user_id.to_string();
        let conversations = conversations.to_vec();
        self.call_read(move |c| {
            let mut marker = c
                .prepare_cached("SELECT message_id FROM read_markers WHERE user_id = ?1 AND conversation_id = ?2")
                .map_err(unavailable)?;
            // Walks the conversation index from the marker on, and stops at the cap.
            let mut unread = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM messages
                      WHERE conversation_id = ?1 AND id > ?2 AND sender_id <> ?3 LIMIT ?4)",
                )
                .map_err(unavailable)?;
            let mut out = Vec::with_capacity(conversations.len());
            for (conversation_id, peer_id) in &conversations {
                let mine: Option<String> = marker
                    .query_row(params![user_id, conversation_id], |r| r.get(0))
                    .optional()
                    .map_err(unavailable)?;
                let peer_read: Option<String> = marker
                    .query_row(params![peer_id, conversation_id], |r| r.get(0))
                    .optional()
                    .map_err(unavailable)?;
                let count: i64 = unread
                    .query_row(
                        params![conversation_id, mine.unwrap_or_default(), user_id, crate::api::dto::UNREAD_COUNT_CAP],
                        |r| r.get(0),
                    )
                    .map_err(unavailable)?;
                out.push(ReadState { unread: u32::try_from(count).unwrap_or(0), peer_read });
            }
            Ok(out)
        })
        .await
    }

    async fn read_markers(&self, conversation_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conversation_id = conversation_id.to_string();
        self.call_read(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT user_id, message_id FROM read_markers WHERE conversation_id = ?1")
                .map_err(unavailable)?;
            let rows = stmt.query_map([conversation_id], |r| Ok((r.get(0)?, r.get(1)?))).map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }
}

/// The current members of group `id`, oldest first.
fn group_member_ids(c: &Connection, id: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = c
        .prepare_cached("SELECT user_id FROM group_members WHERE group_id = ?1 ORDER BY joined_at_ms, user_id")
        .map_err(unavailable)?;
    let rows = stmt.query_map([id], |r| r.get(0)).map_err(unavailable)?;
    rows.collect::<Result<Vec<String>, _>>().map_err(unavailable)
}

#[async_trait]
impl GroupStore for EmbeddedStore {
    async fn create_group(&self, group: &GroupRecord) -> Result<(), StoreError> {
        let group = group.clone();
        self.call(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            tx.execute(
                "INSERT INTO groups (id, name, creator_id, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![group.id, group.name, group.creator_id, group.created_at_ms],
            )
            .map_err(|e| if is_unique_violation(&e) { StoreError::Duplicate("group id") } else { unavailable(e) })?;
            insert_group_members(&tx, &group.id, &group.members)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn groups_by_ids(&self, ids: &[String]) -> Result<Vec<GroupRecord>, StoreError> {
        let ids = ids.to_vec();
        self.call_read(move |c| {
            let mut group = c
                .prepare_cached("SELECT name, creator_id, created_at_ms FROM groups WHERE id = ?1")
                .map_err(unavailable)?;
            let mut members = c
                .prepare_cached(
                    "SELECT user_id, role, joined_at_ms FROM group_members WHERE group_id = ?1
                      ORDER BY joined_at_ms, user_id",
                )
                .map_err(unavailable)?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let Some((name, creator_id, created_at_ms)) = group
                    .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
                    .map_err(unavailable)?
                else {
                    continue;
                };
                let rows = members
                    .query_map([&id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)))
                    .map_err(unavailable)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(unavailable)?;
                let members = rows
                    .into_iter()
                    .map(|(user_id, role, joined_at_ms)| {
                        let role = GroupRole::parse(&role)
                            .ok_or_else(|| StoreError::Corrupt(format!("group role {role:?}")))?;
                        Ok(GroupMemberRecord { user_id, role, joined_at_ms })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                out.push(GroupRecord { id, name, creator_id, created_at_ms, members });
            }
            Ok(out)
        })
        .await
    }

    async fn rename_group(&self, id: &str, name: &str) -> Result<bool, StoreError> {
        let (id, name) = (id.to_string(), name.to_string());
        self.call(move |c| {
            let changed =
                c.execute("UPDATE groups SET name = ?2 WHERE id = ?1", params![id, name]).map_err(unavailable)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn add_group_members(&self, id: &str, members: &[GroupMemberRecord]) -> Result<u64, StoreError> {
        let (id, members) = (id.to_string(), members.to_vec());
        self.call(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let added = insert_group_members(&tx, &id, &members)?;
            tx.commit().map_err(unavailable)?;
            Ok(added)
        })
        .await
    }

    async fn remove_group_member(&self, id: &str, user_id: &str) -> Result<bool, StoreError> {
        let (id, user_id) = (id.to_string(), user_id.to_string());
        self.call(move |c| {
            let removed = c
                .execute("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2", params![id, user_id])
                .map_err(unavailable)?;
            Ok(removed > 0)
        })
        .await
    }

    async fn set_group_role(&self, id: &str, user_id: &str, role: GroupRole) -> Result<bool, StoreError> {
        let (id, user_id) = (id.to_string(), user_id.to_string());
        self.call(move |c| {
            let changed = c
                .execute(
                    "UPDATE group_members SET role = ?3 WHERE group_id = ?1 AND user_id = ?2",
                    params![id, user_id, role.as_str()],
                )
                .map_err(unavailable)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn groups_of(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let user_id = user_id.to_string();
        self.call_read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT group_id FROM group_members WHERE user_id = ?1").map_err(unavailable)?;
            let rows = stmt.query_map([user_id], |r| r.get(0)).map_err(unavailable)?;
            rows.collect::<Result<Vec<String>, _>>().map_err(unavailable)
        })
        .await
    }
}

/// Inserts the memberships not there yet; returns how many were new.
fn insert_group_members(c: &Connection, id: &str, members: &[GroupMemberRecord]) -> Result<u64, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "INSERT INTO group_members (group_id, user_id, role, joined_at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
        )
        .map_err(unavailable)?;
    let mut added = 0u64;
    for m in members {
        added += stmt.execute(params![id, m.user_id, m.role.as_str(), m.joined_at_ms]).map_err(unavailable)? as u64;
    }
    Ok(added)
}

#[async_trait]
impl CheckpointStore for EmbeddedStore {
    async fn load_offset(&self, stream: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        let stream = stream.to_string();
        self.call_read(move |c| {
            c.query_row(
                "SELECT next_offset FROM log_offsets WHERE stream = ?1 AND partition = ?2",
                params![stream, partition],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn save_offset(&self, stream: &str, partition: i32, next_offset: i64) -> Result<(), StoreError> {
        let stream = stream.to_string();
        self.call_replayable(move |c| {
            c.execute(
                "INSERT INTO log_offsets (stream, partition, next_offset) VALUES (?1, ?2, ?3)
                 ON CONFLICT(stream, partition) DO UPDATE SET next_offset = excluded.next_offset",
                params![stream, partition, next_offset],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn dead_letter(
        &self,
        stream: &str,
        partition: i32,
        offset: i64,
        payload: &[u8],
        error: &str,
    ) -> Result<(), StoreError> {
        let (stream, payload, error) = (stream.to_string(), payload.to_vec(), error.to_string());
        self.call(move |c| {
            c.execute(
                "INSERT INTO dead_letters (stream, partition, log_offset, payload, error, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                params![stream, partition, offset, payload, error, crate::server::clock::now_ms()],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two users of a direct conversation.
    const A: &str = "01AAAAAAAAAAAAAAAAAAAAAAAA";
    const B: &str = "01BBBBBBBBBBBBBBBBBBBBBBBB";

    /// A's new message `n` to B (id `01M…n`, client id `send-n`).
    fn message(n: u32, text: &str) -> ChatMessage {
        ChatMessage {
            id: format!("01M{n:023}"),
            conversation_id: crate::api::dto::direct_conversation_id(A, B),
            sender_id: A.into(),
            recipient_id: B.into(),
            text: text.into(),
            created_at: "2026-12-05T12:00:00.000Z".into(),
            client_msg_id: Some(format!("send-{n}")),
            ..ChatMessage::default()
        }
    }

    #[tokio::test]
    async fn reads_do_not_wait_for_a_write_transaction() {
        let dir = crate::server::test_dir("store");
        let store = EmbeddedStore::open(&dir).expect("open");
        let user = UserRecord {
            id: ulid::Ulid::new().to_string(),
            email: "reader@example.com".into(),
            password_hash: "x".into(),
            full_name: "Reader".into(),
            bio: String::new(),
            avatar_media_id: None,
            created_at_ms: 1,
        };
        store.insert_user(&user).await.expect("insert");
        // The writer holds its connection, inside a transaction, as the
        // history worker does while it stores a large batch.
        let (held, release) = std::sync::mpsc::channel::<()>();
        let (began_tx, began) = tokio::sync::oneshot::channel();
        let writer = store.clone();
        let write = tokio::spawn(async move {
            writer
                .call(move |c| {
                    let tx = c.transaction().map_err(unavailable)?;
                    tx.execute("UPDATE users SET bio = 'busy' WHERE email = 'reader@example.com'", [])
                        .map_err(unavailable)?;
                    let _ = began_tx.send(());
                    let _ = release.recv_timeout(std::time::Duration::from_secs(10));
                    tx.commit().map_err(unavailable)
                })
                .await
        });
        began.await.expect("write began");
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), store.user_by_id(&user.id))
            .await
            .expect("a read is answered while the writer is busy")
            .expect("read");
        // It sees what was committed before it, not the open transaction.
        assert_eq!(read.map(|u| u.bio), Some(String::new()));
        drop(held);
        write.await.expect("writer task").expect("write");
        assert_eq!(store.user_by_id(&user.id).await.expect("read").map(|u| u.bio), Some("busy".into()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `save_messages` indexes new messages itself (no insert trigger):
    /// each once, whatever else its batch holds.
    #[tokio::test]
    async fn a_batch_is_searchable_once_and_edits_reindex() {
        let dir = crate::server::test_dir("store-search");
        let store = EmbeddedStore::open(&dir).expect("open");
        let search = |user: &'static str, word: &'static str| {
            let store = store.clone();
            async move {
                let found = store.search_messages(user, &[], &[word.to_string()], None, 100).await.expect("search");
                found.into_iter().map(|m| m.id).collect::<Vec<_>>()
            }
        };
        // One batch: 300 new messages, a replay of one of them, and a
        // retry of another under a second id (stored once, by its send key).
        let mut batch: Vec<ChatMessage> = (0..300).map(|n| message(n, &format!("walrus n{n}x"))).collect();
        batch.push(batch[7].clone());
        batch.push(ChatMessage { id: format!("01M{:023}", 999), ..batch[8].clone() });
        assert_eq!(store.save_messages(batch.clone().into()).await.expect("save"), 300);
        assert_eq!(search(A, "walrus").await.len(), 100, "one page of the 300, newest first");
        assert_eq!(search(B, "n7x").await, vec![batch[7].id.clone()], "the replay is indexed once");
        assert_eq!(search(B, "n8x").await, vec![batch[8].id.clone()], "the retry is not stored twice");
        assert!(search("01CCCCCCCCCCCCCCCCCCCCCCCC", "walrus").await.is_empty(), "only its members find it");

        // Replayed whole: nothing new, nothing indexed twice.
        assert_eq!(store.save_messages(batch.clone().into()).await.expect("replay"), 0);
        assert_eq!(search(A, "n9x").await, vec![batch[9].id.clone()]);

        // An edit, a delete and a new message in one batch: the edit is
        // found by its new text only, the deleted one not at all.
        let edited = ChatMessage {
            text: "narwhal".into(),
            edited_at: Some("2026-12-05T12:01:00.000Z".into()),
            ..batch[10].clone()
        };
        let deleted = ChatMessage {
            text: String::new(),
            deleted: true,
            edited_at: Some("2026-12-05T12:01:00.000Z".into()),
            ..batch[11].clone()
        };
        let new = message(400, "narwhal walrus");
        assert_eq!(store.save_messages(Arc::from([edited.clone(), deleted, new.clone()])).await.expect("save"), 1);
        assert!(search(A, "n10x").await.is_empty(), "the edited text is no longer found");
        assert!(search(A, "n11x").await.is_empty(), "a deleted message is not found");
        assert_eq!(search(B, "narwhal").await, vec![new.id.clone(), edited.id.clone()]);
        drop(store);

        // A database from before 2026-12-05 indexed new messages from an
        // insert trigger: opening it drops the trigger, and a message saved
        // afterwards is still indexed, once.
        let conn = Connection::open(dir.join("charcha.db")).expect("open");
        conn.execute_batch(
            "CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN
                INSERT INTO message_search_ids (message_id) VALUES (new.id);
                INSERT INTO message_search (rowid, text, members)
                    SELECT fts_rowid, new.text, new.sender_id || ' ' || new.recipient_id
                      FROM message_search_ids WHERE message_id = new.id;
             END;",
        )
        .expect("the old trigger");
        drop(conn);
        let store = EmbeddedStore::open(&dir).expect("reopen");
        let triggers: i64 = Connection::open(dir.join("charcha.db"))
            .and_then(|c| {
                c.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'message_search_insert'", [], |r| r.get(0))
            })
            .expect("count");
        assert_eq!(triggers, 0, "the insert trigger is gone");
        let later = message(500, "manatee");
        assert_eq!(store.save_messages(Arc::from([later.clone()])).await.expect("save"), 1);
        let found = store.search_messages(A, &[], &["manatee".to_string()], None, 10).await.expect("search");
        assert_eq!(found.into_iter().map(|m| m.id).collect::<Vec<_>>(), vec![later.id]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A database made before 2026-12-06 had its send index keyed by sender
    /// first: opening it swaps that for `messages_by_client_id`, and a retry
    /// under a second id is still stored once.
    #[tokio::test]
    async fn the_send_index_is_keyed_by_client_id_and_still_unique() {
        let dir = crate::server::test_dir("store-send-index");
        drop(EmbeddedStore::open(&dir).expect("open"));
        let conn = Connection::open(dir.join("charcha.db")).expect("open");
        conn.execute_batch(
            "DROP INDEX messages_by_client_id;
             CREATE UNIQUE INDEX messages_by_send ON messages(sender_id, client_msg_id);",
        )
        .expect("the old index");
        drop(conn);
        let store = EmbeddedStore::open(&dir).expect("reopen");
        let index_columns = |name: &str| -> Vec<String> {
            let conn = Connection::open(dir.join("charcha.db")).expect("open");
            let mut stmt = conn.prepare(&format!("PRAGMA index_info({name})")).expect("index_info");
            stmt.query_map([], |r| r.get::<_, String>(2)).expect("query").map(|c| c.expect("column")).collect()
        };
        assert!(index_columns("messages_by_send").is_empty(), "the old index is gone");
        assert_eq!(index_columns("messages_by_client_id"), ["client_msg_id", "sender_id"]);

        let sent =
            ChatMessage { client_msg_id: Some("0193a5b6-c7d8-7fff-bfff-ffffffffffff".into()), ..message(1, "hello") };
        let retried = ChatMessage { id: message(2, "").id, ..sent.clone() };
        // The same client id from another sender is another send.
        let other = ChatMessage { id: message(3, "").id, sender_id: B.into(), recipient_id: A.into(), ..sent.clone() };
        assert_eq!(
            store.save_messages(Arc::from([sent.clone(), retried.clone(), other.clone()])).await.expect("save"),
            2
        );
        assert!(store.message_by_id(&retried.id).await.expect("read").is_none(), "the retry is not stored twice");
        assert!(store.message_by_id(&other.id).await.expect("read").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
