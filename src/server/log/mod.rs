//! Durable log port: the sender's ack waits for the record to be durable;
//! the worker reads the log and writes history. Drivers, one file each:
//! [`local`] (a SQLite file beside the store, group-committed) and, for the
//! scaled mode, [`kafka`].
//!
//! Appends are *idempotent per send*: a record carries its sender and
//! `client_msg_id`, and a second append of the same pair yields the first
//! attempt's record instead of a new message. The local log does that in
//! the same transaction as the append; Kafka has no such check, so its
//! driver asks a [`crate::server::claims::SendClaims`] store first.
//!
//! Appending is split in two so one connection can pipeline sends without
//! reordering them: [`Log::submit`] returns as soon as the record is queued
//! (records queued one after another are appended in that order), and the
//! [`Durable`] it returns resolves once the record is durable.

pub mod kafka;
pub mod kafka_relay;
pub mod local;

use std::{future::Future, pin::Pin, time::Duration};

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

/// One message to append, with what makes its append idempotent.
#[derive(Clone, Debug)]
pub struct SendRecord {
    /// Ordering key (the conversation id): records with the same key keep
    /// their relative order, and with Kafka share a partition.
    pub key: String,
    pub sender_id: String,
    pub client_msg_id: String,
    /// The message as JSON: the record's payload.
    pub payload: String,
}

impl SendRecord {
    /// The record of `message`, claimed under its sender and client id.
    pub fn of_message(message: &crate::api::dto::ChatMessage) -> Result<Self, serde_json::Error> {
        Ok(Self {
            key: message.conversation_id.clone(),
            sender_id: message.sender_id.clone(),
            client_msg_id: message.client_msg_id.clone().unwrap_or_else(|| message.id.clone()),
            payload: serde_json::to_string(message)?,
        })
    }
}

/// A log record whose payload is not a message: the worker dead-letters it.
#[derive(Debug, thiserror::Error)]
#[error("undecodable log record: {0}")]
pub struct RecordError(#[from] serde_json::Error);

/// The message a record's payload carries: the inverse of
/// [`SendRecord::of_message`]. Payloads come from the log, which other
/// writers (an older version, a tool, a corrupted disk) may have touched,
/// so any bytes give a message or a [`RecordError`], never a panic.
pub fn decode_record(payload: &[u8]) -> Result<crate::api::dto::ChatMessage, RecordError> {
    Ok(serde_json::from_slice(payload)?)
}

/// How an append ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The record is durable.
    New,
    /// The sender had already sent this `client_msg_id`: the first
    /// attempt's payload, which is durable.
    Duplicate(String),
}

/// Resolves once a submitted record is durable (acknowledge only then).
pub type Durable = Pin<Box<dyn Future<Output = Result<Appended, LogError>> + Send>>;

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
    /// Queues `record` for appending and returns once it is queued; the
    /// returned future resolves when it is durable. Records one caller
    /// submits one after another are appended in that order.
    async fn submit(&self, record: SendRecord) -> Result<Durable, LogError>;
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

/// Submits `record` and waits until it is durable.
pub async fn append(log: &dyn Log, record: SendRecord) -> Result<Appended, LogError> {
    log.submit(record).await?.await
}
