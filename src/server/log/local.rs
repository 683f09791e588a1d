//! Local log driver: an append-only table in its own SQLite file
//! (`<data dir>/log.db`), committed with `synchronous=FULL`, so an appended
//! record survives a crash just as a Kafka-acked one does. One partition.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use rusqlite::{params, Connection};
use tokio::sync::Notify;

use super::{Log, LogError, LogRecord};
use crate::server::store::embedded::open_sqlite;

pub struct LocalLog {
    conn: Arc<Mutex<Connection>>,
    /// Wakes fetchers waiting for new records.
    appended: Arc<Notify>,
}

impl LocalLog {
    pub fn open(data_dir: &Path) -> Result<Self, LogError> {
        std::fs::create_dir_all(data_dir).map_err(|e| LogError::Unavailable(e.to_string()))?;
        let conn = open_sqlite(&data_dir.join("log.db")).map_err(|e| LogError::Unavailable(e.to_string()))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS records (
                 offset INTEGER PRIMARY KEY AUTOINCREMENT,
                 key TEXT NOT NULL,
                 payload BLOB NOT NULL
             );",
        )
        .map_err(|e| LogError::Unavailable(e.to_string()))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), appended: Arc::new(Notify::new()) })
    }

    async fn call<T, F>(&self, f: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&guard)
        })
        .await
        .map_err(|e| LogError::Unavailable(e.to_string()))?
        .map_err(|e| LogError::Unavailable(e.to_string()))
    }
}

#[async_trait]
impl Log for LocalLog {
    fn stream(&self) -> &str {
        "local"
    }

    async fn append(&self, key: &str, payload: Vec<u8>) -> Result<(), LogError> {
        let key = key.to_string();
        self.call(move |c| c.execute("INSERT INTO records (key, payload) VALUES (?1, ?2)", params![key, payload]))
            .await?;
        self.appended.notify_waiters();
        Ok(())
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
            let records = self
                .call(move |c| {
                    let mut stmt = c.prepare_cached(
                        "SELECT offset, payload FROM records WHERE offset >= ?1 ORDER BY offset LIMIT ?2",
                    )?;
                    let rows = stmt.query_map(params![from, max_records as i64], |r| {
                        Ok(LogRecord { partition: 0, offset: r.get(0)?, payload: r.get(1)? })
                    })?;
                    rows.collect::<Result<Vec<_>, _>>()
                })
                .await?;
            if !records.is_empty() {
                return Ok(records);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }
}
