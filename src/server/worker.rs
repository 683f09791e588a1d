//! The history worker: consumes the log and stores messages, idempotently
//! by message id, then checkpoints each partition's next offset. After a
//! crash it resumes from the checkpoint; records between the last store and
//! the checkpoint are replayed, which the idempotent write makes harmless.
//! A record that cannot be decoded goes to the dead-letter table and is
//! skipped; it never stops the worker.
//!
//! The worker also records each conversation the first time it stores one
//! of its messages, so the send path never writes to the store.

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{
    config::WorkerConfig,
    log::{Log, LogError, LogRecord, RecordError, decode_record},
    store::{Gather, Store},
};
use crate::api::dto::ChatMessage;

/// Records per fetch, and per store write unless the store gathers more
/// ([`MessageStore::gather`](super::store::MessageStore::gather)): large
/// batches are what let the worker keep up with a busy log (one
/// insert-many per batch).
pub const BATCH: usize = 2000;
const POLL: Duration = Duration::from_millis(1000);
const RETRY: Duration = Duration::from_millis(500);

/// The log's partitions this worker owns (WORKER_INDEX of WORKER_COUNT).
pub async fn assigned_partitions(log: &dyn Log, config: &WorkerConfig) -> Result<Vec<i32>, LogError> {
    Ok(log.partitions().await?.into_iter().filter(|p| config.owns(*p)).collect())
}

/// Runs until `shutdown`, one task per assigned partition.
pub async fn run(store: Arc<dyn Store>, log: Arc<dyn Log>, partitions: Vec<i32>, shutdown: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    for p in partitions {
        tasks.spawn(consume_partition(store.clone(), log.clone(), p, shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

async fn consume_partition(store: Arc<dyn Store>, log: Arc<dyn Log>, partition: i32, shutdown: CancellationToken) {
    let stream = log.stream().to_string();
    let mut next = loop {
        match store.load_offset(&stream, partition).await {
            Ok(o) => break o.unwrap_or(0),
            Err(e) => {
                tracing::warn!(partition, "worker cannot load checkpoint, retrying: {e}");
                if sleep_or_shutdown(RETRY, &shutdown).await {
                    return;
                }
            }
        }
    };
    tracing::info!(partition, next, "history worker started");
    // Conversations this task has recorded (bounded: cleared when large).
    let mut known_conversations: HashSet<String> = HashSet::new();
    loop {
        let fetched = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = log.fetch(partition, next, BATCH, POLL) => r,
        };
        let records = match fetched {
            Ok(r) => gather(log.as_ref(), partition, r, store.gather(), &shutdown).await,
            Err(LogError::Expired { earliest }) => {
                // Retention removed records before they were stored. Nothing
                // can bring them back: say so loudly and go on from what is left.
                tracing::error!(partition, from = next, earliest, "log records expired before the worker stored them");
                next = earliest;
                continue;
            }
            Err(e) => {
                tracing::warn!(partition, "worker fetch failed, retrying: {e}");
                if sleep_or_shutdown(RETRY, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        let Some(last) = records.last().map(|r| r.offset) else { continue };
        let (messages, undecodable) = match decode_batch(records).await {
            Ok(decoded) => decoded,
            Err(e) => {
                // Only a panic in the decoder gets here; the batch is
                // fetched again from `next`.
                tracing::error!(partition, "decoding a batch failed, retrying: {e}");
                if sleep_or_shutdown(RETRY, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        for (r, e) in undecodable {
            tracing::error!(partition, offset = r.offset, "{e}");
            super::metrics::inc(&super::metrics::METRICS.dead_letters);
            // Keep retrying the dead-letter write: skipping the record
            // without recording it would lose it silently.
            while let Err(err) = store.dead_letter(&stream, partition, r.offset, &r.payload, &e.to_string()).await {
                tracing::warn!("dead-letter write failed, retrying: {err}");
                if sleep_or_shutdown(RETRY, &shutdown).await {
                    return;
                }
            }
        }
        // Store, then checkpoint; on failure retry the same batch.
        loop {
            let recorded = record_conversations(store.as_ref(), &messages, &mut known_conversations).await;
            let stored = match recorded {
                Err(e) => Err(e),
                Ok(()) => store.save_messages(messages.clone()).await,
            };
            let stored = match stored {
                Ok(new) => {
                    super::metrics::add(&super::metrics::METRICS.messages_stored, new);
                    store.save_offset(&stream, partition, last + 1).await
                }
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(partition, "worker store failed, retrying: {e}");
                    if sleep_or_shutdown(RETRY, &shutdown).await {
                        return;
                    }
                }
            }
        }
        next = last + 1;
    }
}

/// The busy mark ([`Gather::busy`]) of a store that gathers as soon as the
/// log is more than trickling (the embedded one): a fetch of this many
/// records means messages arrive faster than one batch at a time.
pub const BUSY: usize = 64;

/// When the log is busy (a fetch returned at least `how.busy` records),
/// tops `records` (that fetch's answer) up to `how.up_to` with what
/// arrives within `how.window`; a quiet conversation's message is stored at
/// once, not a gathering window later
/// ([`MessageStore::gather`](super::store::MessageStore::gather)).
/// A failed or empty top-up ends the gathering: what was fetched is stored
/// either way.
async fn gather(
    log: &dyn Log,
    partition: i32,
    mut records: Vec<LogRecord>,
    how: Gather,
    shutdown: &CancellationToken,
) -> Vec<LogRecord> {
    if records.len() < how.busy || how.window.is_zero() {
        return records;
    }
    let deadline = tokio::time::Instant::now() + how.window;
    while records.len() < how.up_to {
        let Some(next) = records.last().map(|r| r.offset + 1) else { break };
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        if wait.is_zero() {
            break;
        }
        let more = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = log.fetch(partition, next, how.up_to - records.len(), wait) => r,
        };
        match more {
            Ok(more) if !more.is_empty() => records.extend(more),
            _ => break,
        }
    }
    records
}

/// A batch's messages, and the records that are not one (with why).
type Decoded = (Arc<[ChatMessage]>, Vec<(LogRecord, RecordError)>);

/// Decodes a batch on the blocking pool: up to 10,000 records of JSON is
/// tens of milliseconds of CPU, which on a runtime thread would hold up
/// every socket task queued behind it (the embedded mode's live traffic
/// shares the runtime with this worker).
async fn decode_batch(records: Vec<LogRecord>) -> Result<Decoded, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let mut messages = Vec::with_capacity(records.len());
        let mut undecodable = Vec::new();
        for r in records {
            match decode_record(&r.payload) {
                Ok(m) => messages.push(m),
                Err(e) => undecodable.push((r, e)),
            }
        }
        (Arc::from(messages), undecodable)
    })
    .await
}

/// Makes sure every conversation of `messages` exists with its members.
async fn record_conversations(
    store: &dyn Store,
    messages: &[ChatMessage],
    known: &mut HashSet<String>,
) -> Result<(), super::store::StoreError> {
    if known.len() > 100_000 {
        known.clear();
    }
    // The batch's conversations this task has not recorded, once each.
    // (`known` grows only once they are stored: a failed batch is retried.)
    let mut in_batch: HashSet<&str> = HashSet::new();
    let new: Vec<(String, Vec<String>)> = messages
        .iter()
        .filter(|m| !known.contains(&m.conversation_id) && in_batch.insert(&m.conversation_id))
        .map(|m| (m.conversation_id.clone(), vec![m.sender_id.clone(), m.recipient_id.clone()]))
        .collect();
    store.ensure_conversations(&new).await?;
    known.extend(new.into_iter().map(|(id, _)| id));
    Ok(())
}

/// Sleeps; true when shutdown was requested meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::log::{SendRecord, append, local::LocalLog};

    fn record(i: usize) -> SendRecord {
        crate::server::log::local::test_record("a", &format!("m{i}"), &format!("p{i}"))
    }

    /// `records` are those [`record`] made for 0..`n`, in that order:
    /// none skipped, none repeated.
    fn assert_records_in_order(records: &[crate::server::log::LogRecord], n: usize) {
        let payloads: Vec<String> = records.iter().map(|r| String::from_utf8_lossy(&r.payload).into_owned()).collect();
        let want: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        assert_eq!(payloads, want);
    }

    #[tokio::test]
    async fn a_busy_log_is_gathered_into_one_batch_in_order() {
        let dir = crate::server::test_dir("worker");
        let log = Arc::new(LocalLog::open(&dir).expect("open"));
        for i in 0..BUSY {
            append(log.as_ref(), record(i)).await.expect("durable");
        }
        let first = log.fetch(0, 0, BATCH, Duration::ZERO).await.expect("fetch");
        assert_eq!(first.len(), BUSY);
        // More arrive while the worker gathers.
        let writer = log.clone();
        let more = tokio::spawn(async move {
            for i in BUSY..BUSY + 50 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                append(writer.as_ref(), record(i)).await.expect("durable");
            }
        });
        let shutdown = CancellationToken::new();
        let mut gathered = gather(
            log.as_ref(),
            0,
            first,
            Gather { window: Duration::from_secs(1), up_to: BATCH, busy: BUSY },
            &shutdown,
        )
        .await;
        more.await.expect("appender");
        // The window may close between two appends: fetch the rest, as the
        // worker's next round would, and check nothing was skipped or repeated.
        let next = gathered.last().map(|r| r.offset + 1).expect("records");
        gathered.extend(log.fetch(0, next, BATCH, Duration::ZERO).await.expect("fetch"));
        assert_records_in_order(&gathered, BUSY + 50);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh local log holding the records 0..`n`.
    async fn log_holding(n: usize) -> (std::path::PathBuf, LocalLog) {
        let dir = crate::server::test_dir("worker");
        let log = LocalLog::open(&dir).expect("open");
        for i in 0..n {
            append(&log, record(i)).await.expect("durable");
        }
        (dir, log)
    }

    /// `gather` from `log`'s first `fetched` records, which must come back
    /// within 5 s: well before `how.window`, which is longer.
    async fn gather_at_once(log: &LocalLog, fetched: usize, how: Gather) -> Vec<crate::server::log::LogRecord> {
        let first = log.fetch(0, 0, fetched, Duration::ZERO).await.expect("fetch");
        let shutdown = CancellationToken::new();
        tokio::time::timeout(Duration::from_secs(5), gather(log, 0, first, how, &shutdown))
            .await
            .expect("gathered without waiting out the window")
    }

    #[tokio::test]
    async fn gathering_stops_at_the_stores_limit() {
        let (dir, log) = log_holding(BUSY + 300).await;
        // Full before the window closes: back at once, with exactly the limit.
        let how = Gather { window: Duration::from_secs(3600), up_to: BUSY + 200, busy: BUSY };
        assert_records_in_order(&gather_at_once(&log, BUSY, how).await, BUSY + 200);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_quiet_log_is_not_held_back() {
        let (dir, log) = log_holding(1).await;
        // A lone record comes back at once, not after the window.
        let how = Gather { window: Duration::from_secs(3600), up_to: BATCH, busy: BUSY };
        assert_eq!(gather_at_once(&log, BATCH, how).await.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_fetch_below_the_stores_busy_mark_is_not_held_back() {
        let (dir, log) = log_holding(300).await;
        // 300 records are a quiet log for a store that gathers from 1,000.
        let how = Gather { window: Duration::from_secs(3600), up_to: BATCH, busy: 1_000 };
        assert_eq!(gather_at_once(&log, BATCH, how).await.len(), 300);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
