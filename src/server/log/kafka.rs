//! Kafka log driver (rskafka).
//!
//! * The topic (KAFKA_TOPIC) is created if missing, with KAFKA_PARTITIONS
//!   partitions; a record's partition is a stable hash of its key (the
//!   conversation id), so a conversation lives in one partition.
//! * rskafka produces with `acks = -1`: `append` returns once every
//!   in-sync replica has the record.
//! * rskafka writes a request's length and body in two writes without
//!   TCP_NODELAY, so every produce request could stall ~40 ms (Nagle
//!   against the broker's delayed ACK). Its connections go through
//!   [`super::kafka_relay`], which removes the stall; on top of that, one
//!   producer task per partition aggregates concurrent appends for up to
//!   [`LINGER`] into one request and keeps up to [`IN_FLIGHT`] requests
//!   outstanding.
//! * Retries stop after [`SEND_DEADLINE`] so a sender gets a clear error
//!   while Kafka is down instead of waiting forever.
//! * Kafka cannot refuse a second record for the same send, so a submit
//!   first claims `(sender, client_msg_id)` in [`SendClaims`]; a retry
//!   re-appends the first attempt's record (harmless: history is idempotent
//!   by message id and by `(sender, client_msg_id)`).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use rskafka::{
    BackoffConfig,
    client::{
        Client, ClientBuilder,
        error::{Error as KafkaError, ProtocolError},
        partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling},
    },
    record::Record,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Appended, Durable, Log, LogError, LogRecord, SendRecord};
use crate::server::{claims::SendClaims, outage::Outage};

/// How long a producer waits for more appends before sending a batch.
pub const LINGER: Duration = Duration::from_millis(2);
/// Produce requests outstanding per partition.
pub const IN_FLIGHT: usize = 4;
/// Records per produce request at most.
pub const MAX_BATCH: usize = 500;
/// Give up on a produce (and fail the sends in it) after this long.
pub const SEND_DEADLINE: Duration = Duration::from_secs(5);
/// Appends queued per partition before `append` waits.
const QUEUE: usize = 10_000;

struct Pending {
    record: Record,
    done: oneshot::Sender<Result<i64, String>>,
}

pub struct KafkaLog {
    topic: String,
    /// Partition clients for [`Log::fetch`], one per partition. Separate
    /// from the producers' clients on purpose, see [`KafkaLog::connect`].
    partitions: Vec<Arc<PartitionClient>>,
    producers: Vec<mpsc::Sender<Pending>>,
    claims: Arc<dyn SendClaims>,
}

static CLAIMS_OUTAGE: Outage = Outage::new("send claims unavailable; appending without a claim");

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

/// FNV-1a: stable across processes and releases, unlike `DefaultHasher`.
pub fn partition_for(key: &str, partitions: usize) -> usize {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % partitions.max(1) as u64) as usize
}

impl KafkaLog {
    /// Connects, creates the topic if needed, and starts one producer task
    /// per partition (until `shutdown`).
    pub async fn connect(
        brokers: Vec<String>,
        topic: &str,
        partitions: i32,
        replication: i16,
        claims: Arc<dyn SendClaims>,
        shutdown: CancellationToken,
    ) -> Result<Self, LogError> {
        let relay = super::kafka_relay::NoDelayRelay::start(shutdown.clone()).await.map_err(unavailable)?;
        let client = ClientBuilder::new(brokers)
            .client_id("charcha")
            .socks5_proxy(relay.addr().to_string())
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
                deadline: Some(SEND_DEADLINE),
            })
            .build()
            .await
            .map_err(unavailable)?;
        let ids = ensure_topic(&client, topic, partitions, replication).await?;
        let mut clients = Vec::with_capacity(ids.len());
        let mut producers = Vec::with_capacity(ids.len());
        for id in ids {
            // Each partition client owns one connection to the leader, and a
            // broker handles a connection's requests one at a time. The
            // worker's fetch long-polls (up to its poll interval) when the
            // partition is idle, so a produce sharing that connection would
            // wait behind it: ~1 s per ack at low traffic. Hence two clients,
            // two connections: one to produce, one to fetch.
            let producer = Arc::new(
                client
                    .partition_client(topic.to_string(), id, UnknownTopicHandling::Retry)
                    .await
                    .map_err(unavailable)?,
            );
            let fetcher = Arc::new(
                client
                    .partition_client(topic.to_string(), id, UnknownTopicHandling::Retry)
                    .await
                    .map_err(unavailable)?,
            );
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(produce_loop(producer, rx, shutdown.clone()));
            clients.push(fetcher);
            producers.push(tx);
        }
        Ok(Self { topic: topic.to_string(), partitions: clients, producers, claims })
    }
}

/// Creates the topic unless it exists; returns its partition ids in order.
async fn ensure_topic(client: &Client, topic: &str, partitions: i32, replication: i16) -> Result<Vec<i32>, LogError> {
    let find = |topics: Vec<rskafka::topic::Topic>| topics.into_iter().find(|t| t.name == topic);
    if find(client.list_topics().await.map_err(unavailable)?).is_none() {
        let controller = client.controller_client().map_err(unavailable)?;
        match controller.create_topic(topic, partitions, replication, 10_000).await {
            Ok(()) => tracing::info!(topic, partitions, "created Kafka topic"),
            Err(KafkaError::ServerError { protocol_error: ProtocolError::TopicAlreadyExists, .. }) => {}
            Err(e) => return Err(unavailable(e)),
        }
    }
    // Metadata can lag the creation by a moment.
    for _ in 0..50 {
        if let Some(t) = find(client.list_topics().await.map_err(unavailable)?)
            && !t.partitions.is_empty()
        {
            return Ok(t.partitions.into_iter().collect());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LogError::Unavailable(format!("topic {topic} has no partitions")))
}

/// Aggregates appends into batches and keeps several produce requests in
/// flight on one partition.
async fn produce_loop(client: Arc<PartitionClient>, mut rx: mpsc::Receiver<Pending>, shutdown: CancellationToken) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = rx.recv() => match p { Some(p) => p, None => return },
        };
        let mut batch = vec![first];
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                _ = &mut linger => break,
                p = rx.recv() => match p { Some(p) => batch.push(p), None => break },
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let client = client.clone();
        tokio::spawn(async move {
            let (records, waiters): (Vec<Record>, Vec<_>) = batch.into_iter().map(|p| (p.record, p.done)).unzip();
            // rskafka keeps reconnecting to a dead broker on its own
            // schedule; the deadline is ours to enforce. A produce that times
            // out may still have landed: the sender retries with the same
            // client_msg_id and the worker's idempotent write absorbs it.
            let result = match tokio::time::timeout(SEND_DEADLINE, client.produce(records, Compression::Lz4)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no acknowledgement from Kafka within {SEND_DEADLINE:?}")),
            };
            drop(permit);
            match result {
                Ok(offsets) => {
                    for (w, o) in waiters.into_iter().zip(offsets) {
                        let _ = w.send(Ok(o));
                    }
                }
                Err(msg) => {
                    for w in waiters {
                        let _ = w.send(Err(msg.clone()));
                    }
                }
            }
        });
    }
}

#[async_trait]
impl Log for KafkaLog {
    fn stream(&self) -> &str {
        &self.topic
    }

    async fn submit(&self, record: SendRecord) -> Result<Durable, LogError> {
        let first = match self.claims.claim(&record.sender_id, &record.client_msg_id, &record.payload).await {
            Ok(first) => first,
            Err(e) => {
                CLAIMS_OUTAGE.warn(&e);
                None
            }
        };
        let idx = partition_for(&record.key, self.producers.len());
        let (done, result) = oneshot::channel();
        let payload = first.clone().unwrap_or(record.payload);
        let record = Record {
            key: Some(record.key.into_bytes()),
            value: Some(payload.into_bytes()),
            headers: BTreeMap::new(),
            timestamp: rskafka::chrono::DateTime::from_timestamp_millis(crate::server::clock::now_ms())
                .unwrap_or_default(),
        };
        self.producers[idx].send(Pending { record, done }).await.map_err(|_| unavailable("producer stopped"))?;
        Ok(Box::pin(async move {
            match result.await {
                Ok(Ok(_offset)) => Ok(first.map_or(Appended::New, Appended::Duplicate)),
                Ok(Err(e)) => Err(LogError::Unavailable(e)),
                Err(_) => Err(unavailable("producer stopped")),
            }
        }))
    }

    async fn partitions(&self) -> Result<Vec<i32>, LogError> {
        Ok(self.partitions.iter().map(|p| p.partition()).collect())
    }

    async fn fetch(
        &self,
        partition: i32,
        from: i64,
        max_records: usize,
        max_wait: Duration,
    ) -> Result<Vec<LogRecord>, LogError> {
        let Some(client) = self.partitions.iter().find(|p| p.partition() == partition) else {
            return Ok(Vec::new());
        };
        let wait_ms = max_wait.as_millis().min(i32::MAX as u128) as i32;
        let fetched = match client.fetch_records(from, 1..8 * 1024 * 1024, wait_ms).await {
            Ok((records, _high_watermark)) => records,
            Err(KafkaError::ServerError { protocol_error: ProtocolError::OffsetOutOfRange, .. }) => {
                let earliest = client.get_offset(OffsetAt::Earliest).await.map_err(unavailable)?;
                if from < earliest {
                    return Err(LogError::Expired { earliest });
                }
                return Ok(Vec::new());
            }
            Err(e) => return Err(unavailable(e)),
        };
        Ok(fetched
            .into_iter()
            .filter(|r| r.offset >= from)
            .take(max_records)
            .map(|r| LogRecord { partition, offset: r.offset, payload: r.record.value.unwrap_or_default() })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    #[test]
    fn partitioning_is_stable_and_spread() {
        assert_eq!(partition_for("dm:a:b", 6), partition_for("dm:a:b", 6));
        let used: std::collections::HashSet<usize> = (0..100).map(|i| partition_for(&format!("dm:{i}"), 6)).collect();
        assert_eq!(used.len(), 6);
    }
}
