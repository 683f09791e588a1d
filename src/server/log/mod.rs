//! Durable log port: the sender's ack waits for [`Log::append`]; the worker
//! reads the log and writes history. Drivers, one file each: [`local`]
//! (a SQLite file beside the store) and, for the scaled mode, Kafka.

pub mod kafka;
pub mod local;

use std::time::Duration;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The record is not durable; the caller must not acknowledge it.
    #[error("log unavailable: {0}")]
    Unavailable(String),
    /// A fetch asked for records that retention already removed; the oldest
    /// one left is at `earliest`.
    #[error("log records before offset {earliest} have expired")]
    Expired { earliest: i64 },
}

/// One record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
}

#[async_trait]
pub trait Log: Send + Sync {
    /// A name for checkpoints (the Kafka topic, or "local").
    fn stream(&self) -> &str;
    /// Appends one record; `Ok` means it is durable. Records with the same
    /// `key` keep their relative order.
    async fn append(&self, key: &str, payload: Vec<u8>) -> Result<(), LogError>;
    /// Partitions of the stream, for the worker to split between instances.
    async fn partitions(&self) -> Result<Vec<i32>, LogError>;
    /// Up to `max_records` records of `partition` at offsets >= `from`,
    /// waiting up to `max_wait` for the first one. Empty on timeout.
    async fn fetch(
        &self,
        partition: i32,
        from: i64,
        max_records: usize,
        max_wait: Duration,
    ) -> Result<Vec<LogRecord>, LogError>;
}
