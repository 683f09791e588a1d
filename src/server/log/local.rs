//! Local log driver: an append-only table in its own SQLite file
//! (`<data dir>/log.db`), committed with `synchronous=FULL`, so an appended
//! record survives a crash just as a Kafka-acked one does. One partition.
//!
//! **Group commit, pipelined.** One writer thread owns the write
//! connection. It takes every submission waiting at that moment (up to
//! [`MAX_GROUP`]) and writes them in one transaction; a lone send still
//! commits at once (no linger). The idempotency claim (`sends`: sender +
//! `client_msg_id` → offset) is written in the same transaction as its
//! record, so a send is either wholly in the log or not at all, and a
//! retry finds the first attempt in the same file.
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

use std::{
    fs::File,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use rusqlite::{Connection, params};
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
const CLAIM_PURGE_EVERY: Duration = Duration::from_secs(600);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    offset INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sends (
    sender_id TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    record_offset INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (sender_id, client_msg_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sends_by_age ON sends(created_at_ms);
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
        std::fs::create_dir_all(data_dir).map_err(unavailable)?;
        let path = data_dir.join("log.db");
        let conn = open_sqlite(&path).map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        // Durability comes from the syncer's fdatasync of the WAL; see the module docs.
        conn.execute_batch("PRAGMA synchronous=NORMAL;").map_err(unavailable)?;
        let last_offset: i64 =
            conn.query_row("SELECT COALESCE(MAX(offset), 0) FROM records", [], |r| r.get(0)).map_err(unavailable)?;
        let mut wal = WalFile::new(data_dir.join("log.db-wal"));
        // Whatever an earlier process committed is on disk from here on.
        wal.sync().map_err(unavailable)?;
        let reader = open_sqlite(&path).map_err(unavailable)?;
        let appended = Arc::new(Notify::new());
        let synced_upto = Arc::new(AtomicI64::new(last_offset));
        let (writer, queue) = mpsc::channel(QUEUE);
        let (written_tx, written_rx) = std::sync::mpsc::channel::<Written>();
        let (wake, upto) = (appended.clone(), synced_upto.clone());
        std::thread::Builder::new()
            .name("charcha-log-sync".into())
            .spawn(move || sync_loop(wal, written_rx, upto, wake))
            .map_err(unavailable)?;
        std::thread::Builder::new()
            .name("charcha-log-writer".into())
            .spawn(move || write_loop(conn, last_offset, queue, written_tx))
            .map_err(unavailable)?;
        Ok(Self { writer, reader: Arc::new(Mutex::new(reader)), appended, synced_upto })
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

/// Flushes the WAL and acknowledges what was written before the flush.
/// Ends when the writer does (its channel closes), after the last groups.
fn sync_loop(
    mut wal: WalFile,
    written: std::sync::mpsc::Receiver<Written>,
    synced_upto: Arc<AtomicI64>,
    appended: Arc<Notify>,
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

/// Runs until every [`LocalLog`] handle is dropped (the channel closes):
/// that is the writer's shutdown path, after the queue is drained.
/// `last_offset` is the log's highest offset when it starts; the loop keeps
/// it up to date from its own inserts (it is the only writer).
fn write_loop(
    mut conn: Connection,
    mut last_offset: i64,
    mut queue: mpsc::Receiver<Submission>,
    written: std::sync::mpsc::Sender<Written>,
) {
    let mut batch = Vec::with_capacity(256);
    let mut last_purge = Instant::now();
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let now_ms = crate::server::clock::now_ms();
        match commit_group(&mut conn, &batch, now_ms) {
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
        if last_purge.elapsed() >= CLAIM_PURGE_EVERY {
            last_purge = Instant::now();
            let cutoff = now_ms - CLAIM_TTL.as_millis() as i64;
            if let Err(e) = conn.execute("DELETE FROM sends WHERE created_at_ms < ?1", [cutoff]) {
                tracing::warn!("purging old send claims failed: {e}");
            }
        }
    }
}

/// Writes one group in one transaction; the outcome of each submission, in
/// order, and the offset of its newest record (none if all were retries).
fn commit_group(
    conn: &mut Connection,
    batch: &[Submission],
    now_ms: i64,
) -> rusqlite::Result<(Vec<Appended>, Option<i64>)> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut newest = None;
    {
        let mut insert_record = tx.prepare_cached("INSERT INTO records (key, payload) VALUES (?1, ?2)")?;
        let mut insert_claim = tx.prepare_cached(
            "INSERT INTO sends (sender_id, client_msg_id, record_offset, created_at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
        )?;
        for s in batch {
            let r = &s.record;
            // Optimistic: append, then claim. Retries are rare, so the
            // common case is two inserts and no lookup.
            insert_record.execute(params![r.key, r.payload.as_bytes()])?;
            let offset = tx.last_insert_rowid();
            if insert_claim.execute(params![r.sender_id, r.client_msg_id, offset, now_ms])? == 1 {
                outcomes.push(Appended::New);
                newest = Some(offset);
                continue;
            }
            // Claimed before: undo this append, answer with the first attempt.
            tx.execute("DELETE FROM records WHERE offset = ?1", [offset])?;
            let first: Vec<u8> = tx.query_row(
                "SELECT r.payload FROM sends s JOIN records r ON r.offset = s.record_offset
                 WHERE s.sender_id = ?1 AND s.client_msg_id = ?2",
                params![r.sender_id, r.client_msg_id],
                |row| row.get(0),
            )?;
            outcomes.push(Appended::Duplicate(String::from_utf8_lossy(&first).into_owned()));
        }
    }
    tx.commit()?;
    Ok((outcomes, newest))
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
            if !records.is_empty() {
                return Ok(records);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sender: &str, id: &str, payload: &str) -> SendRecord {
        SendRecord { key: "k".into(), sender_id: sender.into(), client_msg_id: id.into(), payload: payload.into() }
    }

    #[tokio::test]
    async fn a_group_keeps_order_and_retries_get_the_first_attempt() {
        let dir = tempfile_dir();
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
        assert_eq!(super::super::append(&log, record("b", "m7", "b's")).await.expect("durable"), Appended::New);
        let records = log.fetch(0, 0, 1000, Duration::ZERO).await.expect("fetch");
        let payloads: Vec<String> = records.iter().map(|r| String::from_utf8(r.payload.clone()).unwrap()).collect();
        let mut want: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        want.push("b's".into());
        assert_eq!(payloads, want);
        drop(log);
        // Durable: a reopened log still knows the claims.
        let log = LocalLog::open(&dir).expect("reopen");
        assert_eq!(
            super::super::append(&log, record("a", "m3", "again")).await.expect("durable"),
            Appended::Duplicate("p3".into())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("charcha-log-test-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
