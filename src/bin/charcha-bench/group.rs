//! `charcha-bench group`: one group of `--members` users (100 by default),
//! every member connected; the first member sends `--messages` messages to
//! the group, `--window` in flight at a time, and every other member's
//! session must receive each one exactly once. Reports the delivered
//! frames per second (from the first send to the last delivery) and the
//! send→receive latency of every delivery, p50/p99: the cost of a group's
//! fan-out (one frame per member session, on top of one log append).

use std::{
    collections::HashSet,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    conns::{UserOpts, finish, prepare},
    http::{self, Base},
    load,
    stats::Latency,
};

const HELP: &str = "\
charcha-bench group [OPTIONS]

  --url URL             server (default http://127.0.0.1:3000)
  --members N           group members, all connected, the first one sending (default 100, 2..256)
  --messages N          messages sent to the group (default 200; at most the server's send rate a minute)
  --window W            sends in flight at once (default 1: each waits for the previous ack)
  --drain S             seconds to wait for outstanding deliveries (default 5)
  --tokens FILE         token cache (sign-ups are slow: argon2); --tokens-key KEY as in `run`
  --signup-concurrency N  concurrent sign-ups/log-ins for users not cached (default 16)
  --label NAME, --json  as in `run`
";

struct Opts {
    url: String,
    members: usize,
    messages: usize,
    window: usize,
    drain: f64,
    who: UserOpts,
}

fn parse(args: Vec<String>) -> Result<Option<Opts>, String> {
    let mut a = crate::Args::new(args);
    let mut o = Opts {
        url: "http://127.0.0.1:3000".into(),
        members: 100,
        messages: 200,
        window: 1,
        drain: 5.0,
        who: UserOpts::new("group"),
    };
    while let Some(flag) = a.next_flag() {
        if o.who.parse_flag(&flag, &mut a)? {
            continue;
        }
        match flag.as_str() {
            "--url" => o.url = a.value("--url")?,
            "--members" => o.members = a.parse("--members")?,
            "--messages" => o.messages = a.parse("--messages")?,
            "--window" => o.window = a.parse("--window")?,
            "--drain" => o.drain = a.parse("--drain")?,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if !(2..=256).contains(&o.members) || o.messages == 0 || o.window == 0 {
        return Err("need --members 2..256, --messages >= 1 and --window >= 1".into());
    }
    Ok(Some(o))
}

pub fn main(args: Vec<String>) -> ExitCode {
    let (o, rt) = match prepare("group", HELP, args, parse) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    finish(rt.block_on(run(&o)), o.who.json, |r| {
        println!("{}: 1 sender, {} members, {} messages", r["label"], r["members"], r["messages"]);
        println!(
            "  delivered      {} of {} frames, {} frames/s ({} msg/s acked)",
            r["delivered"], r["expected"], r["delivered_per_s"], r["acked_per_s"]
        );
        println!(
            "  send→recv      p50 {} ms, p99 {} ms, max {} ms",
            r["delivery_latency"]["p50_ms"], r["delivery_latency"]["p99_ms"], r["delivery_latency"]["max_ms"]
        );
        println!("  duplicated     {}   errors {}", r["duplicated"], r["errors"]);
    })
}

/// What the receivers saw.
#[derive(Default)]
struct Seen {
    delivered: AtomicU64,
    duplicated: AtomicU64,
    /// Microseconds since the start of the first send, of the last delivery.
    last_us: AtomicU64,
    latency_us: Mutex<Vec<u32>>,
}

async fn run(o: &Opts) -> Result<Value, String> {
    let base = Base::parse(&o.url)?;
    let creds = load::obtain_creds_for(&o.who.plan(&o.url, o.members), std::slice::from_ref(&base)).await?;
    let creds: Vec<http::Cred> = creds.creds.into_iter().collect::<Option<_>>().ok_or("a member has no credentials")?;

    // The group: the first member creates it with all the others.
    let others: Vec<&str> = creds[1..].iter().map(|c| c.user_id.as_str()).collect();
    let body = json!({ "name": format!("bench {}", o.members), "member_ids": others }).to_string();
    let auth = format!("Authorization: Bearer {}\r\n", creds[0].token);
    let created = http::post_json_with(&base, "/api/groups", &body, &auth).await?;
    if created.status != 201 {
        return Err(format!("POST /api/groups answered {}: {}", created.status, created.body_text()));
    }
    let group: Value = serde_json::from_slice(&created.body).map_err(|e| format!("group JSON: {e}"))?;
    let group_id = group["_id"].as_str().ok_or("no group id")?.to_string();

    // Everyone connects; the receivers count and time each message.
    let url = format!("{}/ws", base.ws);
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..o.messages).map(|_| AtomicU64::new(0)).collect());
    let seen = Arc::new(Seen::default());
    let start = Instant::now();
    let mut receivers = JoinSet::new();
    for cred in &creds[1..] {
        let (mut ws, _) = load::try_connect(&url, Some(&cred.token)).await.map_err(load::connect_message)?;
        let (sent_at, seen, group_id) = (sent_at.clone(), seen.clone(), group_id.clone());
        let messages = o.messages;
        receivers.spawn(async move {
            let mut got = HashSet::new();
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                if v["type"] != "message" || v["message"]["conversation_id"] != group_id.as_str() {
                    continue;
                }
                let Some(seq) = v["message"]["text"].as_str().and_then(|t| t.strip_prefix('g')?.parse::<usize>().ok())
                else {
                    continue;
                };
                let now_us = start.elapsed().as_micros() as u64;
                if !got.insert(seq) {
                    seen.duplicated.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let sent = sent_at.get(seq).map_or(now_us, |s| s.load(Ordering::Relaxed));
                seen.latency_us.lock().unwrap_or_else(|p| p.into_inner()).push(now_us.saturating_sub(sent) as u32);
                seen.delivered.fetch_add(1, Ordering::Relaxed);
                seen.last_us.fetch_max(now_us, Ordering::Relaxed);
                if got.len() == messages {
                    return;
                }
            }
        });
    }

    // The sender: `window` sends in flight, each freed by its ack.
    let (mut sender, _) = load::try_connect(&url, Some(&creds[0].token)).await.map_err(load::connect_message)?;
    let first_send_us = start.elapsed().as_micros() as u64;
    let (mut next, mut acked, mut errors, mut first_error) = (0usize, 0usize, 0usize, None::<String>);
    while acked + errors < o.messages {
        while next < o.messages && next - acked - errors < o.window {
            sent_at[next].store(start.elapsed().as_micros() as u64, Ordering::Relaxed);
            let frame = json!({
                "type": "send", "client_msg_id": format!("bench-{}-{next}", ulid::Ulid::new()),
                "conversation_id": group_id, "text": format!("g{next}"),
            });
            sender.send(Message::Text(frame.to_string().into())).await.map_err(|e| format!("send: {e}"))?;
            next += 1;
        }
        let m = tokio::time::timeout(Duration::from_secs(10), sender.next())
            .await
            .map_err(|_| "no ack within 10 s".to_string())?
            .ok_or("the sender's socket closed")?
            .map_err(|e| format!("sender socket: {e}"))?;
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(&t).map_err(|e| format!("frame: {e}"))?;
        match v["type"].as_str() {
            Some("ack") => acked += 1,
            Some("error") if v["client_msg_id"].is_string() => {
                errors += 1;
                first_error.get_or_insert_with(|| v["message"].to_string());
            }
            _ => {}
        }
    }
    let acked_us = start.elapsed().as_micros() as u64;
    let expected = ((o.members - 1) * acked) as u64;
    let drained = tokio::time::timeout(Duration::from_secs_f64(o.drain), async {
        while receivers.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        receivers.abort_all();
    }
    let _ = sender.close(None).await;

    let delivered = seen.delivered.load(Ordering::Relaxed);
    let window_s = (seen.last_us.load(Ordering::Relaxed).saturating_sub(first_send_us)) as f64 / 1e6;
    let per_s = |n: f64, s: f64| if s > 0.0 { (n / s * 10.0).round() / 10.0 } else { 0.0 };
    let latency = Latency::of(std::mem::take(&mut *seen.latency_us.lock().unwrap_or_else(|p| p.into_inner())));
    let duplicated = seen.duplicated.load(Ordering::Relaxed);
    Ok(json!({
        "label": o.who.label,
        "mode": "group",
        "members": o.members,
        "messages": o.messages,
        "window": o.window,
        "acked": acked,
        "errors": errors,
        "first_error": first_error,
        "expected": expected,
        "delivered": delivered,
        "duplicated": duplicated,
        "delivered_per_s": per_s(delivered as f64, window_s),
        "acked_per_s": per_s(acked as f64, (acked_us.saturating_sub(first_send_us)) as f64 / 1e6),
        "delivery_latency": latency,
        "ok": errors == 0 && duplicated == 0 && delivered == expected,
    }))
}
