//! Connection benchmarks: holding many people at once, not moving messages.
//!
//! * `charcha-bench conns`: N authenticated users connect at once (at most
//!   `--batch` upgrades in flight), each watching `--watch` others the way a
//!   sidebar does. Reports the time until every one has its `hello`, connect
//!   latency percentiles, the presence frames the server queued per connect
//!   (its `charcha_watch_frames_total` counter), then, after `--hold` idle
//!   seconds, the server's RSS per held connection and whether any dropped.
//! * `charcha-bench signup`: N sign-ups, then N log-ins, `--concurrency` at a
//!   time, each answered once (no retries): statuses, latency, the server's
//!   peak RSS and its RSS after `--idle` seconds. Only 201/200, or 429/503
//!   with `Retry-After`, count as correct answers.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::{
    http::{self, Base},
    load::{self, AuthPlan},
    stats::{self, Latency},
};

const CONNS_HELP: &str = "\
charcha-bench conns [OPTIONS]

  --url URL             server (default http://127.0.0.1:3000)
  --users N             users to connect at once (default 5000)
  --batch N             WebSocket upgrades in flight at most (default 200)
  --watch K             users each client watches (its neighbours; default 8)
  --hold S              idle seconds before measuring memory (default 20)
  --server-pid PID      the server process, for RSS from /proc
  --metrics-token T     bearer token for the server's /metrics (its CHARCHA_METRICS_TOKEN;
                        default: this process's CHARCHA_METRICS_TOKEN)
  --tokens FILE         token cache (sign-ups are slow: argon2); --tokens-key KEY as in `run`
  --signup-concurrency N  concurrent sign-ups/log-ins for users not cached (default 16)
  --label NAME, --json  as in `run`
";

const SIGNUP_HELP: &str = "\
charcha-bench signup [OPTIONS]

  --url URL             server (default http://127.0.0.1:3000)
  --users N             sign-ups, then as many log-ins (default 1000)
  --concurrency N       requests in flight (default 50)
  --idle S              seconds to wait before the last memory sample (default 60)
  --server-pid PID      the server process, for RSS from /proc
  --label NAME, --json  as in `run`
";

/// The options of the commands that connect bench users (`conns`,
/// `group`): where their tokens are cached, how fast they sign up, and
/// how the report is labelled and printed.
pub struct UserOpts {
    pub tokens: Option<PathBuf>,
    pub tokens_key: Option<String>,
    pub signup_concurrency: usize,
    pub label: String,
    pub json: bool,
}

impl UserOpts {
    pub fn new(label: &str) -> Self {
        Self { tokens: None, tokens_key: None, signup_concurrency: 16, label: label.into(), json: false }
    }

    /// Takes `flag` (and its value) when it is one of these options;
    /// whether it was.
    pub fn parse_flag(&mut self, flag: &str, a: &mut crate::Args) -> Result<bool, String> {
        match flag {
            "--tokens" => self.tokens = Some(PathBuf::from(a.value("--tokens")?)),
            "--tokens-key" => self.tokens_key = Some(a.value("--tokens-key")?),
            "--signup-concurrency" => self.signup_concurrency = a.parse("--signup-concurrency")?,
            "--label" => self.label = a.value("--label")?,
            "--json" => self.json = true,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Bench users 0..`users` of the server at `url`.
    pub fn plan(&self, url: &str, users: usize) -> AuthPlan {
        AuthPlan {
            key: self.tokens_key.clone().unwrap_or_else(|| url.to_string()),
            tokens: self.tokens.clone(),
            users,
            label: self.label.clone(),
            signup_concurrency: self.signup_concurrency,
        }
    }
}

struct ConnsOpts {
    url: String,
    users: usize,
    batch: usize,
    watch: usize,
    hold: f64,
    server_pid: Option<String>,
    /// The server's CHARCHA_METRICS_TOKEN: /metrics is not public.
    metrics_token: Option<String>,
    who: UserOpts,
}

fn parse_conns(args: Vec<String>) -> Result<Option<ConnsOpts>, String> {
    let mut a = crate::Args::new(args);
    let mut o = ConnsOpts {
        url: "http://127.0.0.1:3000".into(),
        users: 5000,
        batch: 200,
        watch: 8,
        hold: 20.0,
        server_pid: None,
        metrics_token: std::env::var("CHARCHA_METRICS_TOKEN").ok().filter(|t| !t.is_empty()),
        who: UserOpts::new("conns"),
    };
    while let Some(flag) = a.next_flag() {
        if o.who.parse_flag(&flag, &mut a)? {
            continue;
        }
        match flag.as_str() {
            "--url" => o.url = a.value("--url")?,
            "--users" => o.users = a.parse("--users")?,
            "--batch" => o.batch = a.parse("--batch")?,
            "--watch" => o.watch = a.parse("--watch")?,
            "--hold" => o.hold = a.parse("--hold")?,
            "--server-pid" => o.server_pid = Some(a.value("--server-pid")?),
            "--metrics-token" => o.metrics_token = Some(a.value("--metrics-token")?),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if o.users < 2 || o.batch == 0 || o.watch >= o.users {
        return Err("need --users >= 2, --batch >= 1 and --watch < --users".into());
    }
    Ok(Some(o))
}

/// What every subcommand does before its work: parse its options (or print
/// its help) and start a runtime. `Err` is the exit code to end with.
pub fn prepare<O>(
    name: &str,
    help: &str,
    args: Vec<String>,
    parse: fn(Vec<String>) -> Result<Option<O>, String>,
) -> Result<(O, tokio::runtime::Runtime), ExitCode> {
    let o = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{help}");
            return Err(ExitCode::SUCCESS);
        }
        Err(e) => {
            eprintln!("charcha-bench {name}: {e}\n\n{help}");
            return Err(ExitCode::from(2));
        }
    };
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => Ok((o, rt)),
        Err(e) => {
            eprintln!("charcha-bench: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

pub fn finish(
    result: Result<serde_json::Value, String>,
    json_out: bool,
    text: impl Fn(&serde_json::Value),
) -> ExitCode {
    match result {
        Ok(report) => {
            if json_out {
                println!("{report}");
            } else {
                text(&report);
            }
            if report["ok"] == true { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("charcha-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn main_conns(args: Vec<String>) -> ExitCode {
    let (o, rt) = match prepare("conns", CONNS_HELP, args, parse_conns) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    finish(rt.block_on(conns(&o)), o.who.json, |r| {
        println!("{}: {} of {} users connected", r["label"], r["connected"], r["users"]);
        println!(
            "  all hello after     {} s (connect p50 {} ms, p99 {} ms)",
            r["all_hello_s"], r["connect"]["p50_ms"], r["connect"]["p99_ms"]
        );
        println!(
            "  presence frames     {} per connect (server counter), {} received",
            r["watch_frames_per_connect"], r["client_presence_frames"]
        );
        println!(
            "  server RSS          {} KiB idle with all held, {} KiB per connection",
            r["server_rss_idle_kb"], r["server_kib_per_connection"]
        );
        println!("  dropped while idle  {}", r["dropped_while_idle"]);
        if let Some(e) = r["first_error"].as_str() {
            println!("  first error         {e}");
        }
    })
}

/// Counts of one client's frames after its `hello`.
#[derive(Default)]
struct Seen {
    /// Live `presence` frames (not the `presence_batch` answers to watches).
    presence: AtomicU64,
    batches: AtomicU64,
    closed: AtomicUsize,
}

/// Reads the server's `charcha_watch_frames_total`.
async fn watch_frames(base: &Base, token: Option<&str>) -> Option<u64> {
    http::metric_counter(base, token, "charcha_watch_frames_total").await
}

fn rss_kb(pid: Option<&str>) -> Option<u64> {
    pid.and_then(|p| stats::sample(p).ok()).map(|s| s.rss_kb)
}

async fn conns(o: &ConnsOpts) -> Result<serde_json::Value, String> {
    let base = Base::parse(&o.url)?;
    let creds = load::obtain_creds_for(&o.who.plan(&o.url, o.users), std::slice::from_ref(&base)).await?;
    let ids: Vec<String> =
        creds.creds.iter().map(|c| c.as_ref().map(|c| c.user_id.clone()).unwrap_or_default()).collect();
    let tokens: Vec<String> =
        creds.creds.iter().map(|c| c.as_ref().map(|c| c.token.clone()).unwrap_or_default()).collect();
    // Let the server settle after the sign-ups before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_base = rss_kb(o.server_pid.as_deref());
    let frames_before = watch_frames(&base, o.metrics_token.as_deref()).await;

    eprintln!("[{}] connecting {} users, {} upgrades in flight", o.who.label, o.users, o.batch);
    let seen = Arc::new(Seen::default());
    let stop = CancellationToken::new();
    let permits = Arc::new(Semaphore::new(o.batch));
    let started = Instant::now();
    let mut set = JoinSet::new();
    let url = format!("{}/ws", base.ws);
    for i in 0..o.users {
        let (url, token, permits, seen, stop) =
            (url.clone(), tokens[i].clone(), permits.clone(), seen.clone(), stop.clone());
        let watched: Vec<String> = (1..=o.watch).map(|k| ids[(i + k) % o.users].clone()).collect();
        set.spawn(async move {
            let permit = permits.acquire_owned().await;
            let attempt = Instant::now();
            let (mut ws, _) = load::try_connect(&url, Some(&token)).await.map_err(load::connect_message)?;
            let connect_us = attempt.elapsed().as_micros().min(u32::MAX as u128) as u32;
            let hello_at = started.elapsed();
            drop(permit);
            let watch = json!({ "type": "watch", "user_ids": watched }).to_string();
            ws.send(Message::Text(watch.into())).await.map_err(|e| format!("send watch: {e}"))?;
            // Hold the connection, reading (which also answers the server's
            // pings) and counting presence frames, until told to stop.
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => {
                            let _ = ws.close(None).await;
                            return;
                        }
                        m = ws.next() => match m {
                            Some(Ok(Message::Text(t))) => {
                                if t.starts_with(r#"{"type":"presence","#) {
                                    seen.presence.fetch_add(1, Ordering::Relaxed);
                                } else if t.starts_with(r#"{"type":"presence_batch","#) {
                                    seen.batches.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => {
                                seen.closed.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        }
                    }
                }
            });
            Ok::<_, String>((connect_us, hello_at))
        });
    }
    let (mut connect_us, mut last_hello, mut failed, mut first_error) = (Vec::new(), Duration::ZERO, 0usize, None);
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok((us, at))) => {
                connect_us.push(us);
                last_hello = last_hello.max(at);
            }
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let connected = connect_us.len();
    eprintln!("[{}] {connected} connected in {:.2} s, {failed} failed", o.who.label, last_hello.as_secs_f64());
    // Presence frames of the connects have been queued by the time the
    // last watch was answered; give the clients a moment to read them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frames_after = watch_frames(&base, o.metrics_token.as_deref()).await;
    let closed_before_idle = seen.closed.load(Ordering::Relaxed);
    eprintln!("[{}] holding {connected} idle connections for {} s", o.who.label, o.hold);
    tokio::time::sleep(Duration::from_secs_f64(o.hold)).await;
    let rss_idle = rss_kb(o.server_pid.as_deref());
    let dropped = seen.closed.load(Ordering::Relaxed) - closed_before_idle;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let frames = match (frames_before, frames_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    let per_conn_kib = match (rss_base, rss_idle) {
        (Some(b), Some(i)) if connected > 0 => {
            Some(((i.saturating_sub(b)) as f64 / connected as f64 * 10.0).round() / 10.0)
        }
        _ => None,
    };
    let connect = Latency::of(connect_us);
    Ok(json!({
        "label": o.who.label,
        "mode": "conns",
        "users": o.users,
        "batch": o.batch,
        "watch": o.watch,
        "connected": connected,
        "failed": failed,
        "first_error": first_error,
        "all_hello_s": (last_hello.as_secs_f64() * 100.0).round() / 100.0,
        "connect": { "p50_ms": connect.p50_ms, "p99_ms": connect.p99_ms, "max_ms": connect.max_ms },
        "watch_frames": frames,
        "watch_frames_per_connect": frames.map(|f| (f as f64 / o.users as f64 * 100.0).round() / 100.0),
        "client_presence_frames": seen.presence.load(Ordering::Relaxed),
        "client_presence_batches": seen.batches.load(Ordering::Relaxed),
        "server_rss_base_kb": rss_base,
        "server_rss_idle_kb": rss_idle,
        "server_kib_per_connection": per_conn_kib,
        "dropped_while_idle": dropped,
        "ok": failed == 0 && dropped == 0,
    }))
}

struct SignupOpts {
    url: String,
    users: usize,
    concurrency: usize,
    idle: f64,
    server_pid: Option<String>,
    label: String,
    json: bool,
}

fn parse_signup(args: Vec<String>) -> Result<Option<SignupOpts>, String> {
    let mut a = crate::Args::new(args);
    let mut o = SignupOpts {
        url: "http://127.0.0.1:3000".into(),
        users: 1000,
        concurrency: 50,
        idle: 60.0,
        server_pid: None,
        label: "signup".into(),
        json: false,
    };
    while let Some(flag) = a.next_flag() {
        match flag.as_str() {
            "--url" => o.url = a.value("--url")?,
            "--users" => o.users = a.parse("--users")?,
            "--concurrency" => o.concurrency = a.parse("--concurrency")?,
            "--idle" => o.idle = a.parse("--idle")?,
            "--server-pid" => o.server_pid = Some(a.value("--server-pid")?),
            "--label" => o.label = a.value("--label")?,
            "--json" => o.json = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if o.users == 0 || o.concurrency == 0 {
        return Err("need --users and --concurrency >= 1".into());
    }
    Ok(Some(o))
}

pub fn main_signup(args: Vec<String>) -> ExitCode {
    let (o, rt) = match prepare("signup", SIGNUP_HELP, args, parse_signup) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    finish(rt.block_on(signups(&o)), o.json, |r| {
        for phase in ["signup", "login"] {
            let p = &r[phase];
            println!(
                "{} {phase}: {} per s, statuses {}, p50 {} ms, p99 {} ms, wrong answers {}",
                r["label"], p["per_s"], p["statuses"], p["latency"]["p50_ms"], p["latency"]["p99_ms"], p["wrong"]
            );
        }
        println!(
            "  server RSS: start {} KiB, peak {} KiB, {} s after {} KiB",
            r["server_rss_start_kb"], r["server_rss_peak_kb"], r["idle_s"], r["server_rss_after_idle_kb"]
        );
    })
}

/// One phase: `n` POSTs to `path`, `concurrency` at a time, no retries.
async fn phase(base: &Base, path: &'static str, bodies: Vec<String>, concurrency: usize) -> serde_json::Value {
    let permits = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for body in bodies {
        let (base, permits) = (base.clone(), permits.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let t = Instant::now();
            let r = http::post_json(&base, path, &body).await;
            (t.elapsed().as_micros().min(u32::MAX as u128) as u32, r)
        });
    }
    let mut statuses: std::collections::BTreeMap<String, u64> = Default::default();
    let (mut latencies, mut wrong, mut first_wrong) = (Vec::new(), 0u64, None);
    while let Some(joined) = set.join_next().await {
        let Ok((us, r)) = joined else {
            wrong += 1;
            continue;
        };
        latencies.push(us);
        match r {
            Ok(r) => {
                *statuses.entry(r.status.to_string()).or_default() += 1;
                let fine = matches!(r.status, 200 | 201)
                    || (matches!(r.status, 429 | 503)
                        && r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok()));
                if !fine {
                    wrong += 1;
                    first_wrong.get_or_insert_with(|| format!("{} {}", r.status, String::from_utf8_lossy(&r.body)));
                }
            }
            Err(e) => {
                *statuses.entry("error".into()).or_default() += 1;
                wrong += 1;
                first_wrong.get_or_insert(e);
            }
        }
    }
    let n = latencies.len();
    let l = Latency::of(latencies);
    json!({
        "requests": n,
        "per_s": (n as f64 / started.elapsed().as_secs_f64()).round(),
        "statuses": statuses,
        "latency": { "p50_ms": l.p50_ms, "p99_ms": l.p99_ms, "max_ms": l.max_ms },
        "wrong": wrong,
        "first_wrong": first_wrong,
    })
}

async fn signups(o: &SignupOpts) -> Result<serde_json::Value, String> {
    let base = Base::parse(&o.url)?;
    // Fresh accounts every run: a prefix no earlier run used.
    let run = format!(
        "{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_millis()
    );
    let email = |i: usize| format!("signup-{run}-{i}@bench.charcha.test");
    let start = o.server_pid.as_deref().and_then(|p| stats::sample(p).ok());
    let bodies = (0..o.users)
        .map(|i| {
            json!({ "email": email(i), "password": http::PASSWORD, "full_name": format!("Signup {i}") }).to_string()
        })
        .collect();
    eprintln!("[{}] {} sign-ups, {} at a time", o.label, o.users, o.concurrency);
    let signup = phase(&base, "/api/auth/signup", bodies, o.concurrency).await;
    let bodies = (0..o.users).map(|i| json!({ "email": email(i), "password": http::PASSWORD }).to_string()).collect();
    eprintln!("[{}] {} log-ins, {} at a time", o.label, o.users, o.concurrency);
    let login = phase(&base, "/api/auth/login", bodies, o.concurrency).await;
    let after = o.server_pid.as_deref().and_then(|p| stats::sample(p).ok());
    eprintln!("[{}] idle for {} s", o.label, o.idle);
    tokio::time::sleep(Duration::from_secs_f64(o.idle)).await;
    let idle = o.server_pid.as_deref().and_then(|p| stats::sample(p).ok());
    let ok = signup["wrong"] == 0 && login["wrong"] == 0;
    Ok(json!({
        "label": o.label,
        "mode": "signup",
        "users": o.users,
        "concurrency": o.concurrency,
        "signup": signup,
        "login": login,
        "server_rss_start_kb": start.map(|s| s.rss_kb),
        "server_rss_after_kb": after.map(|s| s.rss_kb),
        "server_rss_peak_kb": idle.map(|s| s.hwm_kb),
        "idle_s": o.idle,
        "server_rss_after_idle_kb": idle.map(|s| s.rss_kb),
        "ok": ok,
    }))
}
