//! Local log driver: an append-only table in its own SQLite file
//! (`<data dir>/log.db`), committed with `synchronous=FULL`, so an appended
//! record survives a crash just as a Kafka-acked one does. One partition.
//!
//! **Group commit, pipelined.** One writer thread owns the write
//! connection. It takes every submission waiting at that moment (up to
//! [`MAX_GROUP`]) and writes them in one transaction; a lone send still
//! commits at once (no linger). The idempotency claim (sender +
//! `client_msg_id`) is part of the record's own row, so a send is either
//! wholly in the log or not at all, and a retry finds the first attempt in
//! the same file.
//!
//! **Claims are looked up in memory.** Until 2026-12-05 they had a table of
//! their own keyed by (sender, `client_msg_id`): client ids were random
//! UUIDs, so every send dirtied a random leaf page of that B-tree, written
//! once to the WAL and again at checkpoint. Measured on load (c) (1,000
//! users, 15,700 msg/s), the writer wrote 230 MB/s, 14.6 KB per message,
//! and the disk, not the CPU, bounded the send path. Now the rows carry
//! their claim columns without an index, and the writer keeps a map from a
//! keyed hash of the claim to its offset ([`Claims`]), rebuilt from the
//! rows at start-up. A hit is confirmed against the row itself, so a hash
//! collision costs a read, never a wrong answer.
//!
//! The writer does not wait for the disk: its connection commits with
//! `synchronous=NORMAL` (in WAL mode: consistent, and synced at every
//! checkpoint), and a second thread, the syncer, `fdatasync`s the WAL file
//! and only then acknowledges every group written before that sync began.
//! So group N+1 is written while group N is being flushed, and one fsync
//! covers every group that queued up meanwhile. Nothing is acknowledged,
//! or shown to the worker, before it is on disk: fetches read only up to
//! the last synced offset.
//!
//! Fetches (the worker) use a second connection: WAL readers never wait
//! for the writer.
//!
//! **Checkpoints off the writer.** SQLite checkpoints a WAL from the
//! connection that commits, after the commit: every 1,000 pages (~1,300
//! sends) the writer copied the WAL into `log.db` and fsynced both files,
//! and every send queued behind it waited. Traced over 8 s at 35,000
//! msg/s, the writer spent 372 ms in 181 such fsyncs (up to 10 ms each),
//! while the syncer's own `fdatasync` takes ~0.3 ms. A
//! third thread, the checkpointer, now does that copy on its own connection
//! ([`checkpoint_loop`], every [`CHECKPOINT_EVERY`] while sends arrive),
//! concurrently with the writer. SQLite restarts the WAL from its start
//! only at a transaction that finds it wholly copied, which a checkpoint
//! racing the writer rarely leaves, so the writer still checkpoints once
//! the WAL holds [`WRITER_CHECKPOINT_PAGES`]: by then the checkpointer has
//! copied and synced nearly all of it, and the writer's share is the last
//! few pages.
//!
//! **Retention.** Like a Kafka topic, the log keeps records for a while
//! ([`Retention::keep`], 7 days), not forever: without it `log.db` grew
//! with every message ever sent. Rows carry no timestamp (that would cost
//! every append); instead the writer drops a *mark* (its newest offset and
//! the time) every [`Retention::every`], and records at or below a mark
//! older than `keep` are deleted, a bounded chunk per pass so appends never
//! wait behind a long delete. Freed pages are reused, so the file stops
//! growing. A fetch below what was trimmed answers [`LogError::Expired`],
//! as Kafka's driver does. Claims live 24 h or for the newest
//! [`CLAIM_CAP`] sends, whichever is less; a retry after that is a new
//! message, which history's unique send key still stores once.

use std::{
    collections::HashMap,
    fs::File,
    hash::{BuildHasher, RandomState},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, mpsc, oneshot};

use super::{Appended, Durable, Log, LogError, LogRecord, SendRecord};
use crate::server::store::embedded::open_sqlite;

/// Most records one transaction takes.
pub const MAX_GROUP: usize = 4096;
/// Submissions queued for the writer before `submit` waits (backpressure).
const QUEUE: usize = 16 * 1024;
/// Claims older than this are forgotten (a retry after that is a new
/// message; history's unique `(sender, client_msg_id)` still stores it once).
const CLAIM_TTL: Duration = Duration::from_secs(24 * 3600);
/// At most this many claims are held in memory (~16 bytes each, so at most
/// ~25 MiB, and only after that many sends): the newest ones. Retries come
/// within seconds or minutes of the first attempt.
pub const CLAIM_CAP: usize = 1_000_000;
const CLAIM_PURGE_EVERY: Duration = Duration::from_secs(600);
/// Records one trimming pass deletes at most (a few milliseconds of work).
const TRIM_CHUNK: i64 = 20_000;
/// How often the checkpointer copies the WAL into `log.db` while sends
/// arrive: at ~100 MB/s of WAL (35,000 sends a second) about 5 MB each.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// The WAL size (in 4 KiB pages, 64 MiB) at which the writer checkpoints
/// itself, so the WAL restarts from its beginning instead of growing (see
/// the module docs). SQLite's default is 1,000.
const WRITER_CHECKPOINT_PAGES: u32 = 16_384;

/// How long records stay in the log, and how often the writer marks time.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Records are kept at least this long (Kafka's default `retention.ms`).
    pub keep: Duration,
    /// How often the writer drops a mark and trims: a record lives at most
    /// `keep + every`.
    pub every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self { keep: Duration::from_secs(7 * 24 * 3600), every: CLAIM_PURGE_EVERY }
    }
}

const SCHEMA: &str = "
-- sender_id and client_msg_id are the send's idempotency claim (see the
-- module docs: looked up in memory, so not indexed). NULL only in a
-- retention-era row whose claim had already expired when it was migrated.
CREATE TABLE IF NOT EXISTS records (
    offset INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    payload BLOB NOT NULL,
    sender_id TEXT,
    client_msg_id TEXT
);
-- Retention: the newest offset at a point in time (see the module docs).
CREATE TABLE IF NOT EXISTS marks (
    record_offset INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL
);
-- The first offset retention has not removed (one row, key 'trimmed_below').
CREATE TABLE IF NOT EXISTS log_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

struct Submission {
    record: SendRecord,
    done: oneshot::Sender<Result<Appended, LogError>>,
}

pub struct LocalLog {
    writer: mpsc::Sender<Submission>,
    /// For fetches only; the writer thread has its own connection.
    reader: Arc<Mutex<Connection>>,
    /// Wakes fetchers waiting for new records.
    appended: Arc<Notify>,
    /// Highest offset known to be on disk; fetches read no further.
    synced_upto: Arc<AtomicI64>,
    /// Offsets below this were removed by retention.
    trimmed_below: Arc<AtomicI64>,
}

/// A group the writer has committed, waiting for the syncer.
struct Written {
    replies: Vec<(oneshot::Sender<Result<Appended, LogError>>, Appended)>,
    /// Highest offset in the log after this group.
    last_offset: i64,
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

impl LocalLog {
    pub fn open(data_dir: &Path) -> Result<Self, LogError> {
        Self::open_with_retention(data_dir, Retention::default())
    }

    pub fn open_with_retention(data_dir: &Path, retention: Retention) -> Result<Self, LogError> {
        Self::open_tuned(data_dir, retention, WRITER_CHECKPOINT_PAGES)
    }

    /// [`Self::open_with_retention`], with the writer checkpointing at
    /// `writer_checkpoint_pages` (tests use a small WAL).
    fn open_tuned(data_dir: &Path, retention: Retention, writer_checkpoint_pages: u32) -> Result<Self, LogError> {
        std::fs::create_dir_all(data_dir).map_err(unavailable)?;
        let path = data_dir.join("log.db");
        let mut conn = open_sqlite(&path).map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        migrate_claims(&mut conn).map_err(unavailable)?;
        // Durability comes from the syncer's fdatasync of the WAL; see the module docs.
        conn.execute_batch("PRAGMA synchronous=NORMAL;").map_err(unavailable)?;
        conn.pragma_update(None, "wal_autocheckpoint", writer_checkpoint_pages).map_err(unavailable)?;
        let last_offset: i64 =
            conn.query_row("SELECT COALESCE(MAX(offset), 0) FROM records", [], |r| r.get(0)).map_err(unavailable)?;
        let trimmed_below = Arc::new(AtomicI64::new(load_trimmed_below(&conn).map_err(unavailable)?));
        let claims = Claims::load(&conn, last_offset, crate::server::clock::now_ms()).map_err(unavailable)?;
        let mut wal = WalFile::new(data_dir.join("log.db-wal"));
        // Whatever an earlier process committed is on disk from here on.
        wal.sync().map_err(unavailable)?;
        let reader = open_sqlite(&path).map_err(unavailable)?;
        let appended = Arc::new(Notify::new());
        let synced_upto = Arc::new(AtomicI64::new(last_offset));
        let (writer, queue) = mpsc::channel(QUEUE);
        let (written_tx, written_rx) = std::sync::mpsc::channel::<Written>();
        let (wake, upto) = (appended.clone(), synced_upto.clone());
        let trimmer = Trimmer { retention, trimmed_below: trimmed_below.clone(), last_pass: None, behind: false };
        // `synchronous=NORMAL` (from open_sqlite's FULL): a checkpoint syncs
        // the WAL before it copies and `log.db` after, which is what keeps
        // acknowledged records safe once the WAL is reused.
        let checkpointer = open_sqlite(&path).map_err(unavailable)?;
        checkpointer.execute_batch("PRAGMA synchronous=NORMAL;").map_err(unavailable)?;
        let (synced_tx, synced_rx) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("charcha-log-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, synced_rx))
            .map_err(unavailable)?;
        std::thread::Builder::new()
            .name("charcha-log-sync".into())
            .spawn(move || sync_loop(wal, written_rx, upto, wake, synced_tx))
            .map_err(unavailable)?;
        std::thread::Builder::new()
            .name("charcha-log-writer".into())
            .spawn(move || write_loop(conn, last_offset, claims, queue, written_tx, trimmer))
            .map_err(unavailable)?;
        Ok(Self { writer, reader: Arc::new(Mutex::new(reader)), appended, synced_upto, trimmed_below })
    }
}

/// The WAL file, reopened if SQLite ever replaced it (a new inode), so an
/// fdatasync always reaches the file SQLite writes.
struct WalFile {
    path: PathBuf,
    open: Option<(File, u64)>,
}

impl WalFile {
    fn new(path: PathBuf) -> Self {
        Self { path, open: None }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let inode = std::fs::metadata(&self.path)?.ino();
        let file = match self.open.take() {
            Some((file, ino)) if ino == inode => file,
            _ => File::open(&self.path)?,
        };
        let synced = file.sync_data();
        self.open = Some((file, inode));
        synced
    }
}

/// Flushes the WAL and acknowledges what was written before the flush, then
/// tells the checkpointer there is more to copy. Ends when the writer does
/// (its channel closes), after the last groups; the checkpointer ends with it.
fn sync_loop(
    mut wal: WalFile,
    written: std::sync::mpsc::Receiver<Written>,
    synced_upto: Arc<AtomicI64>,
    appended: Arc<Notify>,
    synced: std::sync::mpsc::Sender<()>,
) {
    while let Ok(first) = written.recv() {
        let mut groups = vec![first];
        groups.extend(written.try_iter());
        let upto = groups.iter().map(|g| g.last_offset).max().unwrap_or(0);
        match wal.sync() {
            Ok(()) => {
                synced_upto.fetch_max(upto, Ordering::Release);
                for (reply, outcome) in groups.into_iter().flat_map(|g| g.replies) {
                    let _ = reply.send(Ok(outcome));
                }
                appended.notify_waiters();
                let _ = synced.send(());
            }
            Err(e) => {
                // Not known to be on disk: not acknowledged. A retry finds
                // its claim (the rows are committed) and is answered with
                // the same message once a sync succeeds.
                tracing::error!("log sync failed: {e}");
                for (reply, _) in groups.into_iter().flat_map(|g| g.replies) {
                    let _ = reply.send(Err(unavailable(&e)));
                }
            }
        }
    }
}

/// Copies the WAL into `log.db` at most every [`CHECKPOINT_EVERY`] while
/// syncs come in (a `PASSIVE` checkpoint: it never waits for the writer or
/// for readers, and copies what it can). Ends when the syncer does.
fn checkpoint_loop(conn: Connection, synced: std::sync::mpsc::Receiver<()>) {
    let mut due = synced.recv().is_ok();
    while due {
        let began = Instant::now();
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            // The writer's own checkpoint at WRITER_CHECKPOINT_PAGES still
            // bounds the WAL; nothing waits on this one.
            tracing::warn!("log checkpoint failed: {e}");
        }
        if let Some(rest) = CHECKPOINT_EVERY.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
        // What was synced while this one ran or slept is copied by the next
        // at once, not left in the WAL until some later send; otherwise wait.
        due = synced.try_iter().count() > 0 || synced.recv().is_ok();
    }
}

/// Runs until every [`LocalLog`] handle is dropped (the channel closes):
/// that is the writer's shutdown path, after the queue is drained.
/// `last_offset` is the log's highest offset when it starts; the loop keeps
/// it up to date from its own inserts (it is the only writer).
fn write_loop(
    mut conn: Connection,
    mut last_offset: i64,
    mut claims: Claims,
    mut queue: mpsc::Receiver<Submission>,
    written: std::sync::mpsc::Sender<Written>,
    mut trimmer: Trimmer,
) {
    let mut batch = Vec::with_capacity(256);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let now_ms = crate::server::clock::now_ms();
        match commit_group(&mut conn, &mut claims, &batch) {
            Ok((outcomes, newest)) => {
                last_offset = last_offset.max(newest.unwrap_or(0));
                let replies = batch.drain(..).map(|s| s.done).zip(outcomes).collect();
                if written.send(Written { replies, last_offset }).is_err() {
                    return; // the syncer is gone: nothing can be acknowledged
                }
            }
            Err(e) => {
                tracing::error!("log append failed: {e}");
                for s in batch.drain(..) {
                    let _ = s.done.send(Err(unavailable(&e)));
                }
            }
        }
        claims.keep_newest(last_offset);
        if let Err(e) = trimmer.maybe_trim(&conn, &mut claims, last_offset, now_ms) {
            tracing::warn!("log retention pass failed: {e}");
        }
    }
}

/// The writer's retention work (see the module docs): marks, claim expiry,
/// and trimming old records a chunk at a time.
struct Trimmer {
    retention: Retention,
    trimmed_below: Arc<AtomicI64>,
    /// When the last mark was dropped (none yet: the first call drops one,
    /// so a server restarted often still leaves marks behind).
    last_pass: Option<Instant>,
    /// The last pass left records to trim: keep going on the next call.
    behind: bool,
}

impl Trimmer {
    /// Every `retention.every`: drops a mark and forgets expired claims.
    /// Then, on every call until it has caught up, deletes one chunk of
    /// records covered by a mark older than `retention.keep`.
    fn maybe_trim(
        &mut self,
        conn: &Connection,
        claims: &mut Claims,
        last_offset: i64,
        now_ms: i64,
    ) -> rusqlite::Result<()> {
        let pass_due = self.last_pass.is_none_or(|t| t.elapsed() >= self.retention.every);
        if !pass_due && !self.behind {
            return Ok(()); // the common case: nothing to do on this group
        }
        if pass_due {
            self.last_pass = Some(Instant::now());
            // An empty log has nothing to mark (offsets start at 1).
            if last_offset > 0 {
                conn.execute(
                    "INSERT INTO marks (record_offset, at_ms) VALUES (?1, ?2)
                     ON CONFLICT (record_offset) DO UPDATE SET at_ms = excluded.at_ms",
                    params![last_offset, now_ms],
                )?;
            }
            claims.forget_upto(claim_horizon(conn, now_ms)?);
        }
        self.behind = false;
        let cutoff = now_ms - i64::try_from(self.retention.keep.as_millis()).unwrap_or(i64::MAX);
        let horizon: Option<i64> =
            conn.query_row("SELECT MAX(record_offset) FROM marks WHERE at_ms <= ?1", [cutoff], |r| r.get(0))?;
        let Some(horizon) = horizon else { return Ok(()) };
        let from = self.trimmed_below.load(Ordering::Acquire);
        if horizon < from {
            return Ok(());
        }
        // Everything up to and including `horizon` may go, a chunk per pass.
        let below = (horizon + 1).min(from.saturating_add(TRIM_CHUNK));
        // The floor rises before the rows go, so a fetch never finds a gap
        // where it should have been told `Expired` (those records are past
        // retention either way).
        self.trimmed_below.fetch_max(below, Ordering::Release);
        let tx = conn.unchecked_transaction()?;
        tx.execute("DELETE FROM records WHERE offset < ?1", [below])?;
        tx.execute("DELETE FROM marks WHERE record_offset < ?1", [below])?;
        tx.execute(
            "INSERT INTO log_meta (key, value) VALUES ('trimmed_below', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [below],
        )?;
        tx.commit()?;
        self.behind = below <= horizon;
        Ok(())
    }
}

/// The first offset retention has not removed (0: nothing removed yet).
fn load_trimmed_below(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row("SELECT value FROM log_meta WHERE key = 'trimmed_below'", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Writes one group in one transaction; the outcome of each submission, in
/// order, and the offset of its newest record (none if all were retries).
/// `claims` learns the group's new claims only once it is committed.
fn commit_group(
    conn: &mut Connection,
    claims: &mut Claims,
    batch: &[Submission],
) -> rusqlite::Result<(Vec<Appended>, Option<i64>)> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut newest = None;
    // This group's claims (a retry may follow its first attempt in one group).
    let mut claimed: HashMap<u64, i64> = HashMap::new();
    {
        let mut insert_record =
            tx.prepare_cached("INSERT INTO records (key, payload, sender_id, client_msg_id) VALUES (?1, ?2, ?3, ?4)")?;
        let mut first_attempt = tx.prepare_cached(
            "SELECT payload FROM records WHERE offset = ?1 AND sender_id = ?2 AND client_msg_id = ?3",
        )?;
        for s in batch {
            let r = &s.record;
            let claim = claims.key(&r.sender_id, &r.client_msg_id);
            // A hit is a candidate only: the row confirms it (a hash
            // collision, or a record retention removed, finds nothing).
            if let Some(offset) = claimed.get(&claim).copied().or_else(|| claims.offset_of(claim)) {
                let first: Option<Vec<u8>> = first_attempt
                    .query_row(params![offset, r.sender_id, r.client_msg_id], |row| row.get(0))
                    .optional()?;
                if let Some(first) = first {
                    outcomes.push(Appended::Duplicate(String::from_utf8_lossy(&first).into_owned()));
                    continue;
                }
            }
            insert_record.execute(params![r.key, r.payload.as_bytes(), r.sender_id, r.client_msg_id])?;
            let offset = tx.last_insert_rowid();
            claimed.insert(claim, offset);
            outcomes.push(Appended::New);
            newest = Some(offset);
        }
    }
    tx.commit()?;
    claims.by_key.extend(claimed);
    Ok((outcomes, newest))
}

/// The claims of recent sends: a keyed hash of (sender, `client_msg_id`)
/// → the offset of the record that made it. Owned by the writer thread.
#[derive(Default)]
struct Claims {
    /// Random keys per process, so a client cannot choose ids that collide
    /// with another user's claim.
    hasher: RandomState,
    by_key: HashMap<u64, i64>,
}

impl Claims {
    /// The claims of the newest [`CLAIM_CAP`] records younger than
    /// [`CLAIM_TTL`], read from the log's rows (a range scan of the newest
    /// offsets: no index needed).
    fn load(conn: &Connection, last_offset: i64, now_ms: i64) -> rusqlite::Result<Self> {
        let mut claims = Self::default();
        let from = claim_horizon(conn, now_ms)?.max(last_offset - CLAIM_CAP as i64);
        let mut stmt = conn.prepare(
            "SELECT offset, sender_id, client_msg_id FROM records
             WHERE offset > ?1 AND sender_id IS NOT NULL AND client_msg_id IS NOT NULL",
        )?;
        let mut rows = stmt.query([from])?;
        while let Some(row) = rows.next()? {
            let (offset, sender, id): (i64, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let key = claims.key(&sender, &id);
            claims.by_key.insert(key, offset);
        }
        Ok(claims)
    }

    fn key(&self, sender_id: &str, client_msg_id: &str) -> u64 {
        self.hasher.hash_one((sender_id, client_msg_id))
    }

    fn offset_of(&self, key: u64) -> Option<i64> {
        self.by_key.get(&key).copied()
    }

    /// Forgets claims whose records are at or below `offset`.
    fn forget_upto(&mut self, offset: i64) {
        if offset > 0 {
            self.by_key.retain(|_, o| *o > offset);
        }
    }

    /// Keeps about the newest [`CLAIM_CAP`] claims: once a quarter more
    /// have piled up, those older than the newest `CLAIM_CAP` offsets go (one
    /// pass per `CLAIM_CAP / 4` sends, so the cost per send stays constant).
    fn keep_newest(&mut self, last_offset: i64) {
        if self.by_key.len() > CLAIM_CAP + CLAIM_CAP / 4 {
            self.forget_upto(last_offset - CLAIM_CAP as i64);
        }
    }
}

/// The newest offset older than [`CLAIM_TTL`] by the retention marks (0:
/// none is that old yet).
fn claim_horizon(conn: &Connection, now_ms: i64) -> rusqlite::Result<i64> {
    let cutoff = now_ms - CLAIM_TTL.as_millis() as i64;
    conn.query_row("SELECT COALESCE(MAX(record_offset), 0) FROM marks WHERE at_ms <= ?1", [cutoff], |r| r.get(0))
}

/// Moves a log written before claims lived in the records (a `sends` table
/// of its own) to the current schema, in one transaction: the claim columns
/// are added and filled from `sends`, which is then dropped.
fn migrate_claims(conn: &mut Connection) -> rusqlite::Result<()> {
    let has_claim_columns: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('records') WHERE name = 'client_msg_id'",
        [],
        |r| r.get(0),
    )?;
    let has_sends: bool =
        conn.query_row("SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'sends'", [], |r| {
            r.get(0)
        })?;
    if has_claim_columns && !has_sends {
        return Ok(());
    }
    let tx = conn.transaction()?;
    if !has_claim_columns {
        tx.execute_batch(
            "ALTER TABLE records ADD COLUMN sender_id TEXT; ALTER TABLE records ADD COLUMN client_msg_id TEXT;",
        )?;
    }
    if has_sends {
        tx.execute_batch(
            "UPDATE records SET sender_id = s.sender_id, client_msg_id = s.client_msg_id
               FROM sends s WHERE s.record_offset = records.offset;
             DROP TABLE sends;",
        )?;
    }
    tx.commit()
}

#[async_trait]
impl Log for LocalLog {
    fn stream(&self) -> &str {
        "local"
    }

    async fn submit(&self, record: SendRecord) -> Result<Durable, LogError> {
        let (done, outcome) = oneshot::channel();
        self.writer.send(Submission { record, done }).await.map_err(|_| unavailable("log writer stopped"))?;
        Ok(Box::pin(async move { outcome.await.map_err(|_| unavailable("log writer stopped"))? }))
    }

    async fn partitions(&self) -> Result<Vec<i32>, LogError> {
        Ok(vec![0])
    }

    async fn fetch(
        &self,
        partition: i32,
        from: i64,
        max_records: usize,
        max_wait: Duration,
    ) -> Result<Vec<LogRecord>, LogError> {
        if partition != 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            // Register interest before reading, so an append between the
            // read and the wait still wakes us.
            let notified = self.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let reader = self.reader.clone();
            // Only what is on disk: the worker must not store a message
            // whose log record a crash could still take back.
            let synced_upto = self.synced_upto.load(Ordering::Acquire);
            let records = tokio::task::spawn_blocking(move || {
                let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
                let mut stmt = conn.prepare_cached(
                    "SELECT offset, payload FROM records WHERE offset >= ?1 AND offset <= ?3 ORDER BY offset LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![from, max_records as i64, synced_upto], |r| {
                    Ok(LogRecord { partition: 0, offset: r.get(0)?, payload: r.get(1)? })
                })?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
            // Checked after the read, not before: a trim raises its floor
            // before its rows go, so a read that missed rows (found none,
            // or a gap) sees the new floor here and answers `Expired`,
            // never a silent gap (a check before the read let a trim slip
            // in between; a CI run caught the empty page).
            let earliest = self.trimmed_below.load(Ordering::Acquire);
            if from < earliest {
                return Err(LogError::Expired { earliest });
            }
            if !records.is_empty() {
                return Ok(records);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }
}

/// A send record for tests: one conversation, `payload` as the message.
#[cfg(test)]
pub(crate) fn test_record(sender: &str, id: &str, payload: &str) -> SendRecord {
    SendRecord { key: "k".into(), sender_id: sender.into(), client_msg_id: id.into(), payload: payload.into() }
}

#[cfg(test)]
mod tests {
    use super::{test_record as record, *};

    /// Appends and waits until durable: what the log answered.
    async fn outcome(log: &LocalLog, sender: &str, id: &str, payload: &str) -> Appended {
        super::super::append(log, record(sender, id, payload)).await.expect("durable")
    }

    #[tokio::test]
    async fn a_group_keeps_order_and_retries_get_the_first_attempt() {
        let dir = crate::server::test_dir("log");
        let log = LocalLog::open(&dir).expect("open");
        // Submitted back to back: they land in one or a few groups, in order.
        let mut pending = Vec::new();
        for i in 0..100 {
            pending.push(log.submit(record("a", &format!("m{i}"), &format!("p{i}"))).await.expect("submit"));
        }
        pending.push(log.submit(record("a", "m7", "second attempt")).await.expect("submit"));
        let mut outcomes = Vec::new();
        for p in pending {
            outcomes.push(p.await.expect("durable"));
        }
        assert!(outcomes[..100].iter().all(|o| *o == Appended::New));
        assert_eq!(outcomes[100], Appended::Duplicate("p7".into()));
        // Another sender may reuse the same client id.
        assert_eq!(outcome(&log, "b", "m7", "b's").await, Appended::New);
        let records = log.fetch(0, 0, 1000, Duration::ZERO).await.expect("fetch");
        let payloads: Vec<String> = records.iter().map(|r| String::from_utf8(r.payload.clone()).unwrap()).collect();
        let mut want: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        want.push("b's".into());
        assert_eq!(payloads, want);
        drop(log);
        // Durable: a reopened log still knows the claims.
        let log = LocalLog::open(&dir).expect("reopen");
        assert_eq!(outcome(&log, "a", "m3", "again").await, Appended::Duplicate("p3".into()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Appends `n` records of 4 KiB from `sender`, in large groups.
    async fn append_many(log: &LocalLog, sender: &str, n: usize) {
        let payload = "x".repeat(4096);
        let mut pending = Vec::new();
        for i in 0..n {
            pending.push(log.submit(record(sender, &format!("big{i}"), &payload)).await.expect("submit"));
        }
        for p in pending {
            assert_eq!(p.await.expect("durable"), Appended::New);
        }
    }

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn the_checkpointer_copies_the_wal_and_the_writer_restarts_it() {
        // The writer never checkpoints here: only the checkpointer can move
        // records from the WAL into log.db.
        let dir = crate::server::test_dir("log-checkpoint");
        let log = LocalLog::open_tuned(&dir, Retention::default(), u32::MAX).expect("open");
        let db = dir.join("log.db");
        let before = file_len(&db);
        append_many(&log, "a", 1_000).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while file_len(&db) < before + 4_000_000 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(file_len(&db) >= before + 4_000_000, "log.db grew from {before} to {}", file_len(&db));
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);

        // With the writer checkpointing at 1,000 pages (4 MiB), ~20 MiB of
        // appends reuse the WAL from its start instead of growing it.
        let dir = crate::server::test_dir("log-checkpoint");
        let log = LocalLog::open_tuned(&dir, Retention::default(), 1_000).expect("open");
        for round in 0..5 {
            append_many(&log, &format!("s{round}"), 500).await;
        }
        let wal = file_len(&dir.join("log.db-wal"));
        assert!(wal < 12 * 1024 * 1024, "the WAL is {wal} bytes");
        // Everything is still there, in order.
        let records = log.fetch(0, 0, 5_000, Duration::ZERO).await.expect("fetch");
        assert_eq!(records.len(), 2_500);
        assert!(records.windows(2).all(|w| w[0].offset < w[1].offset));
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn retention_trims_old_records_and_fetches_below_it_expire() {
        let dir = crate::server::test_dir("log");
        // Keep for an hour: nothing goes.
        let keep_hour = Retention { keep: Duration::from_secs(3600), every: Duration::ZERO };
        let log = LocalLog::open_with_retention(&dir, keep_hour).expect("open");
        for i in 0..50 {
            outcome(&log, "a", &format!("m{i}"), &format!("p{i}")).await;
        }
        assert_eq!(log.fetch(0, 0, 1000, Duration::ZERO).await.expect("fetch").len(), 50);
        drop(log);

        // Keep nothing: every record up to the newest mark goes right after
        // the next group (the writer trims after handing the group to the
        // syncer, so the ack may come first: wait for the floor).
        let keep_none = Retention { keep: Duration::ZERO, every: Duration::ZERO };
        let log = LocalLog::open_with_retention(&dir, keep_none).expect("reopen");
        outcome(&log, "a", "m50", "p50").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let earliest = loop {
            let waiting = std::time::Instant::now() < deadline;
            match log.fetch(0, 0, 1000, Duration::ZERO).await {
                Err(LogError::Expired { earliest }) if earliest > 50 => break earliest,
                // Not trimmed yet (every record is still there, never a
                // gap), or trimmed up to the previous run's newest mark only
                // (a pass may come before this group's mark is written).
                Ok(records) if records.len() == 51 && waiting => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(LogError::Expired { earliest }) if earliest <= 50 && waiting => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                other => panic!("expected Expired above record 50, got {other:?}"),
            }
        };
        assert!(earliest > 50, "every record up to the mark is gone (floor {earliest})");
        assert!(log.fetch(0, earliest, 1000, Duration::ZERO).await.expect("fetch above the floor").len() <= 1);
        // A retry whose first attempt was trimmed is a new record, not an error.
        assert_eq!(outcome(&log, "a", "m7", "again").await, Appended::New);
        drop(log);

        // The floor survives a restart.
        let log = LocalLog::open_with_retention(&dir, keep_hour).expect("reopen");
        assert!(matches!(log.fetch(0, 0, 10, Duration::ZERO).await, Err(LogError::Expired { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_log_with_a_claims_table_is_migrated_and_keeps_its_claims() {
        let dir = crate::server::test_dir("log");
        {
            // The schema before claims moved into the records.
            let conn = open_sqlite(&dir.join("log.db")).expect("open");
            conn.execute_batch(
                "CREATE TABLE records (offset INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, payload BLOB NOT NULL);
                 CREATE TABLE sends (sender_id TEXT NOT NULL, client_msg_id TEXT NOT NULL, record_offset INTEGER NOT NULL,
                                     created_at_ms INTEGER NOT NULL, PRIMARY KEY (sender_id, client_msg_id)) WITHOUT ROWID;
                 CREATE INDEX sends_by_age ON sends(created_at_ms);
                 INSERT INTO records (key, payload) VALUES ('k', CAST('old p1' AS BLOB)), ('k', CAST('old p2' AS BLOB));
                 INSERT INTO sends VALUES ('a', 'm1', 1, 0), ('a', 'm2', 2, 0);",
            )
            .expect("old schema");
        }
        let log = LocalLog::open(&dir).expect("open migrates");
        assert_eq!(outcome(&log, "a", "m2", "retry").await, Appended::Duplicate("old p2".into()));
        assert_eq!(outcome(&log, "a", "m3", "p3").await, Appended::New);
        let payloads: Vec<Vec<u8>> =
            log.fetch(0, 0, 10, Duration::ZERO).await.expect("fetch").into_iter().map(|r| r.payload).collect();
        assert_eq!(payloads, vec![b"old p1".to_vec(), b"old p2".to_vec(), b"p3".to_vec()]);
        drop(log);
        // Opening again finds nothing left to migrate and the same claims.
        let log = LocalLog::open(&dir).expect("reopen");
        assert_eq!(outcome(&log, "a", "m1", "retry").await, Appended::Duplicate("old p1".into()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn claims_keep_the_newest_and_forget_by_offset() {
        let mut claims = Claims::default();
        let over = CLAIM_CAP + CLAIM_CAP / 4 + 1;
        let keys: Vec<(u64, i64)> = (1..=over as i64).map(|o| (claims.key("a", &o.to_string()), o)).collect();
        claims.by_key.extend(keys);
        claims.keep_newest(over as i64);
        assert_eq!(claims.by_key.len(), CLAIM_CAP);
        assert_eq!(claims.offset_of(claims.key("a", &over.to_string())), Some(over as i64));
        assert_eq!(claims.offset_of(claims.key("a", "1")), None);
        claims.forget_upto(over as i64 - 10);
        assert_eq!(claims.by_key.len(), 10);
    }
}
