//! `charcha-bench worker`: the history worker on its own (issue 7's worker
//! row). Messages are appended straight to the log the environment names
//! (KAFKA_BROKERS, KAFKA_TOPIC: use a fresh topic), then the worker (the
//! server's own code, `server::worker::run`) stores them into the store
//! (MONGODB_URI: use a fresh database):
//!
//! 1. **Throughput:** `--messages` records appended first, then the worker
//!    started; the time until every partition's checkpoint has passed its
//!    last record gives the stored messages per second.
//! 2. **Lag:** with the worker running, `--rate` messages a second for
//!    `--seconds`; the lag of each message is from its append being
//!    submitted to the checkpoint of its partition passing it (the worker
//!    checkpoints only after the batch is stored). Records keep their order
//!    within a partition and a fresh topic starts at offset 0, so the n-th
//!    record sent to a partition is at offset n.
//! 3. **The store's own ceiling:** `--ceiling` further messages handed
//!    straight to the store's `save_messages` (no log, no worker), in
//!    batches of the worker's size from as many concurrent tasks as the log
//!    has partitions, each task's messages in one conversation of its own so
//!    a batch updates two inbox entries. That is what storing the messages
//!    alone costs, with the indexes and the document shape history needs: no
//!    worker over this store can store faster (the 20,000 msg/s target is
//!    judged against it in BENCHMARKS.md).

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use charcha::{
    api::dto::{ChatMessage, direct_conversation_id},
    server::{
        self,
        log::{SendRecord, kafka::partition_for},
        store::Store,
    },
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::stats::Latency;

const HELP: &str = "\
charcha-bench worker [OPTIONS]     (needs KAFKA_BROKERS, KAFKA_TOPIC and MONGODB_URI: a fresh topic and database)

  --messages N          records for the throughput phase (default 60000)
  --conversations N     conversations they are spread over (default 1000)
  --rate R              messages a second offered in the lag phase (default 5000)
  --seconds S           length of the lag phase (default 10)
  --ceiling N           messages for the store's own ceiling, saved without the log (default 60000; 0 skips it)
  --label NAME, --json  as in `run`
";

struct Opts {
    messages: usize,
    conversations: usize,
    rate: usize,
    seconds: u64,
    ceiling: usize,
    label: String,
    json: bool,
}

fn parse(args: Vec<String>) -> Result<Option<Opts>, String> {
    let mut a = crate::Args::new(args);
    let mut o = Opts {
        messages: 60_000,
        conversations: 1000,
        rate: 5000,
        seconds: 10,
        ceiling: 60_000,
        label: "worker".into(),
        json: false,
    };
    while let Some(flag) = a.next_flag() {
        match flag.as_str() {
            "--messages" => o.messages = a.parse("--messages")?,
            "--conversations" => o.conversations = a.parse("--conversations")?,
            "--rate" => o.rate = a.parse("--rate")?,
            "--seconds" => o.seconds = a.parse("--seconds")?,
            "--ceiling" => o.ceiling = a.parse("--ceiling")?,
            "--label" => o.label = a.value("--label")?,
            "--json" => o.json = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if o.messages == 0 || o.conversations == 0 || o.rate < 100 || o.seconds == 0 {
        return Err("need --messages >= 1, --conversations >= 1, --rate >= 100 and --seconds >= 1".into());
    }
    Ok(Some(o))
}

pub fn main(args: Vec<String>) -> ExitCode {
    // The worker's own warnings (a store write it retries, say) on stderr.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .try_init();
    let (o, rt) = match crate::conns::prepare("worker", HELP, args, parse) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    crate::conns::finish(rt.block_on(run(&o)), o.json, |r| {
        println!("{}: {} partitions", r["label"], r["partitions"]);
        println!(
            "  throughput     {} messages appended at {} msg/s, stored by the worker at {} msg/s",
            r["messages"], r["appended_per_s"], r["stored_per_s"]
        );
        println!(
            "  lag at {} msg/s  p50 {} ms, p99 {} ms, max {} ms ({} of {} stored)",
            r["rate"], r["lag"]["p50_ms"], r["lag"]["p99_ms"], r["lag"]["max_ms"], r["lag"]["samples"], r["offered"]
        );
        if !r["ceiling"].is_null() {
            println!(
                "  the store alone  {} messages saved at {} msg/s ({} tasks, batches of up to {}, one conversation each)",
                r["ceiling"]["messages"], r["ceiling"]["stored_per_s"], r["ceiling"]["tasks"], r["ceiling"]["batch"]
            );
        }
    })
}

/// The n-th message of a run: one of `conversations` pairs of bench users.
fn message(n: usize, conversations: usize) -> ChatMessage {
    message_in(n % conversations, n)
}

/// The n-th message of pair `pair` (senders alternate).
fn message_in(pair: usize, n: usize) -> ChatMessage {
    let (a, b) = (format!("bench-worker-a{pair}"), format!("bench-worker-b{pair}"));
    let (sender, recipient) = if n.is_multiple_of(2) { (a, b) } else { (b, a) };
    let id = ulid::Ulid::new().to_string();
    ChatMessage {
        conversation_id: direct_conversation_id(&sender, &recipient),
        client_msg_id: Some(format!("w{id}")),
        text: format!("worker bench message {n}, about sixty bytes of text"),
        created_at: "2026-12-05T00:00:00.000Z".into(),
        sender_id: sender,
        recipient_id: recipient,
        id,
        ..ChatMessage::default()
    }
}

/// Pair numbers of the ceiling phase's conversations, above any
/// `--conversations` of the other phases (one pair per task).
const CEILING_PAIRS: usize = 1_000_000;

/// Phase 3: `messages` fresh messages saved by `tasks` concurrent tasks
/// straight through [`Store::save_messages`], in batches of the worker's
/// size; task `t`'s messages all belong to its own conversation.
async fn store_ceiling(store: Arc<dyn Store>, messages: usize, tasks: usize) -> Result<Value, String> {
    let batch = server::worker::BATCH;
    let per_task = messages.div_ceil(tasks);
    let total = (per_task * tasks) as u64;
    // Built before the clock starts: only the store's work is timed.
    let work: Vec<Vec<Arc<[ChatMessage]>>> = (0..tasks)
        .map(|t| {
            let all: Vec<ChatMessage> = (0..per_task).map(|i| message_in(CEILING_PAIRS + t, i)).collect();
            all.chunks(batch).map(Arc::from).collect()
        })
        .collect();
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for batches in work {
        let store = store.clone();
        running.spawn(async move {
            let mut saved = 0u64;
            for b in batches {
                saved += store.save_messages(b).await.map_err(|e| format!("save: {e}"))?;
            }
            Ok::<u64, String>(saved)
        });
    }
    let mut saved = 0u64;
    while let Some(done) = running.join_next().await {
        saved += done.map_err(|e| format!("ceiling task: {e}"))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if saved != total {
        return Err(format!("the store saved {saved} of {total} messages"));
    }
    Ok(json!({
        "messages": saved,
        "tasks": tasks,
        "batch": batch,
        "stored_per_s": (saved as f64 / elapsed).round(),
    }))
}

/// Records stored so far in each partition: the worker's checkpoint (the
/// next offset to read) of a topic whose offsets start at 0.
async fn stored(store: &dyn Store, stream: &str, partitions: &[i32]) -> Result<Vec<i64>, String> {
    let mut out = Vec::with_capacity(partitions.len());
    for &p in partitions {
        out.push(store.load_offset(stream, p).await.map_err(|e| format!("checkpoint: {e}"))?.unwrap_or(0));
    }
    Ok(out)
}

async fn run(o: &Opts) -> Result<Value, String> {
    let addr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let config = server::config::Config::load(addr).map_err(|e| e.to_string())?;
    if config.backends.kafka_brokers.is_empty() || config.backends.mongodb_uri.is_none() {
        return Err("set KAFKA_BROKERS, KAFKA_TOPIC and MONGODB_URI (a fresh topic and database)".into());
    }
    let drivers = server::connect_drivers(&config).await.map_err(|e| e.to_string())?;
    let (log, store) = (drivers.log.clone(), drivers.store.clone());
    let stream = log.stream().to_string();
    let partitions = log.partitions().await.map_err(|e| e.to_string())?;
    if stored(store.as_ref(), &stream, &partitions).await?.iter().any(|&c| c != 0) {
        return Err(format!("topic {stream} already has checkpoints in this database: use fresh ones"));
    }
    // Where the n-th record goes, and how many each partition has had.
    let mut sent = vec![0i64; partitions.len()];
    let submit = async |n: usize| -> Result<(usize, server::log::Durable), String> {
        let m = message(n, o.conversations);
        let at = partition_for(&m.conversation_id, partitions.len());
        let record = SendRecord::of_message(&m).map_err(|e| e.to_string())?;
        Ok((at, log.submit(record).await.map_err(|e| format!("append: {e}"))?))
    };

    // 1. Throughput: append everything, then let the worker store it.
    let started = Instant::now();
    let mut pending = Vec::with_capacity(o.messages);
    for n in 0..o.messages {
        let (at, durable) = submit(n).await?;
        sent[at] += 1;
        pending.push(durable);
    }
    for durable in futures_util::future::join_all(pending).await {
        durable.map_err(|e| format!("append: {e}"))?;
    }
    let appended_per_s = o.messages as f64 / started.elapsed().as_secs_f64();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(server::worker::run(store.clone(), log.clone(), partitions.clone(), shutdown.clone()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    while stored(store.as_ref(), &stream, &partitions).await? != sent {
        if Instant::now() > deadline {
            return Err("the worker did not store the throughput phase's messages within 600 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stored_per_s = o.messages as f64 / started.elapsed().as_secs_f64();

    // 2. Lag: a steady rate, each message's submit time kept by partition
    // and offset; a poller notes when each checkpoint passes them.
    let offered = o.rate * o.seconds as usize;
    let mut submitted: Vec<Vec<Instant>> = vec![Vec::new(); partitions.len()];
    let base = sent.clone();
    let per_tick = o.rate / 100;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut durables = Vec::with_capacity(offered);
    let mut lag_us: Vec<u32> = Vec::with_capacity(offered);
    let mut seen = base.clone();
    let mut n = o.messages;
    let observe =
        async |seen: &mut Vec<i64>, submitted: &[Vec<Instant>], lag_us: &mut Vec<u32>| -> Result<(), String> {
            let now = Instant::now();
            for (i, c) in stored(store.as_ref(), &stream, &partitions).await?.into_iter().enumerate() {
                for offset in seen[i]..c {
                    if let Some(at) = submitted[i].get((offset - base[i]) as usize) {
                        lag_us.push(now.duration_since(*at).as_micros().min(u32::MAX as u128) as u32);
                    }
                }
                seen[i] = seen[i].max(c);
            }
            Ok(())
        };
    for _ in 0..o.seconds * 100 {
        tick.tick().await;
        for _ in 0..per_tick {
            let now = Instant::now();
            let (at, durable) = submit(n).await?;
            n += 1;
            sent[at] += 1;
            submitted[at].push(now);
            durables.push(durable);
        }
        observe(&mut seen, &submitted, &mut lag_us).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen != sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        observe(&mut seen, &submitted, &mut lag_us).await?;
    }
    let mut failed_appends = 0;
    for durable in futures_util::future::join_all(durables).await {
        failed_appends += usize::from(durable.is_err());
    }
    shutdown.cancel();
    let _ = worker.await;
    let ceiling = match o.ceiling {
        0 => Value::Null,
        n => store_ceiling(store.clone(), n, partitions.len()).await?,
    };
    drivers.shutdown.cancel();

    let lag = Latency::of(lag_us);
    let all_stored = seen == sent && failed_appends == 0;
    Ok(json!({
        "mode": "worker",
        "label": o.label,
        "partitions": partitions.len(),
        "messages": o.messages,
        "conversations": o.conversations,
        "appended_per_s": appended_per_s.round(),
        "stored_per_s": stored_per_s.round(),
        "rate": o.rate,
        "offered": offered,
        "failed_appends": failed_appends,
        "lag": lag,
        "ceiling": ceiling,
        "ok": all_stored,
    }))
}
