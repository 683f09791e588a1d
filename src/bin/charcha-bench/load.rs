//! `charcha-bench run`: the load generator.
//!
//! N users in 1:1 pairs (user 2k talks with 2k+1, both ways), one WebSocket
//! each, a reader and a writer task per connection. Closed loop: each user
//! keeps W sends outstanding and sends again when an ack returns. Open loop
//! (`--rate`): a fixed aggregate rate, spread evenly over the users.
//!
//! The generator holds both ends of every conversation, so it records each
//! send's instant under (sender, seq) and looks it up when the ack (sender)
//! and the `message` (recipient) arrive: send→ack and send→receive latency,
//! and exact counts — lost (acked, never delivered), duplicated, reordered
//! (seq n after a higher seq of the same sender), unacked, errors by code.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    marker::PhantomData,
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use futures_util::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, Visitor, value::MapAccessDeserializer},
};
use serde_json::json;
use tokio::{
    sync::{Notify, Semaphore},
    task::JoinSet,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue},
};
use tokio_util::sync::CancellationToken;

use crate::{
    http::{self, Base, Cred, Obtained, TokenCache},
    stats::{self, Latency, ProcSample},
};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;
type WsSink = SplitSink<Ws, Message>;
type WsStream = SplitStream<Ws>;

const HELP: &str = "\
charcha-bench run [OPTIONS]

  --url URL[,URL...]    server(s) (default http://127.0.0.1:3000); user i uses URL i % count,
                        so with several instances every pair crosses instances
  --target charcha|relay   relay: no sign-up, users connect to /ws?user=ID (default charcha)
  --users N             even: 1:1 pairs, user 2k talks with 2k+1 both ways (default 200)
  --in-flight W         closed loop: sends outstanding per user (default 1)
  --max-backlog N       closed loop: a user also waits while more than N of its messages are sent
                        but not yet delivered to the peer (0 = no limit; default 128, below the
                        servers' 256-frame session queues: acks alone would let a sender outrun a
                        recipient that the OS schedules late, until the server drops it as too slow)
  --rate R              open loop instead: R msg/s in total, spread over the users
  --duration S          measured seconds (default 10)
  --warmup S            seconds of load before measuring (default 2)
  --drain S             at most this long to wait for outstanding acks/deliveries (default 5)
  --server-pid PID[,PID...]  sample server CPU % and RSS from /proc over the measured window
  --tokens FILE         token cache (JSON, keyed by --tokens-key or the --url text)
  --tokens-key KEY      cache key instead of the URL (e.g. when the port changes between runs)
  --connect-batch N     WebSockets opened concurrently (default 200)
  --signup-concurrency N  concurrent sign-ups/log-ins (default 8)
  --label NAME          name of this run in the report
  --json                print one JSON line with every figure instead of the text report
  --check               exit non-zero unless lost, duplicated, reordered, unacked, errors are 0,
                        delivered == acked, and (when CHARCHA_METRICS_TOKEN reads the server's
                        /metrics) history stored every acked message within 60 s
  --quick               a small checked run: 20 users, W=4, 2 s (+0.5 s warmup); implies --check
  --accounts-only       sign up (or log in) the --users accounts into the --tokens cache, then
                        stop: no WebSockets, no messages (./dev bench seeds each run's store so)
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Charcha,
    Relay,
}

#[derive(Debug)]
struct Opts {
    url_arg: String,
    urls: Vec<String>,
    target: Target,
    users: usize,
    in_flight: usize,
    max_backlog: usize,
    rate: Option<f64>,
    duration: f64,
    warmup: f64,
    drain: f64,
    server_pids: Vec<String>,
    tokens: Option<PathBuf>,
    tokens_key: Option<String>,
    connect_batch: usize,
    signup_concurrency: usize,
    label: String,
    json: bool,
    check: bool,
    accounts_only: bool,
}

fn parse_opts(args: Vec<String>) -> Result<Option<Opts>, String> {
    let mut a = crate::Args::new(args);
    let (mut url, mut target, mut users, mut in_flight, mut rate) = (None, Target::Charcha, None, None, None);
    let (mut duration, mut warmup, mut drain, mut max_backlog) = (None, None, None, 128usize);
    let (mut pids, mut tokens, mut tokens_key, mut label) = (Vec::new(), None, None, None);
    let (mut connect_batch, mut signup_concurrency, mut json, mut check, mut quick, mut accounts_only) =
        (200usize, 8usize, false, false, false, false);
    while let Some(flag) = a.next_flag() {
        match flag.as_str() {
            "--url" => url = Some(a.value("--url")?),
            "--target" => {
                target = match a.value("--target")?.as_str() {
                    "charcha" => Target::Charcha,
                    "relay" => Target::Relay,
                    other => return Err(format!("--target: `{other}` is not charcha|relay")),
                }
            }
            "--users" => users = Some(a.parse::<usize>("--users")?),
            "--in-flight" => in_flight = Some(a.parse::<usize>("--in-flight")?),
            "--max-backlog" => max_backlog = a.parse::<usize>("--max-backlog")?,
            "--rate" => rate = Some(a.parse::<f64>("--rate")?),
            "--duration" => duration = Some(a.parse::<f64>("--duration")?),
            "--warmup" => warmup = Some(a.parse::<f64>("--warmup")?),
            "--drain" => drain = Some(a.parse::<f64>("--drain")?),
            "--server-pid" => {
                for p in a.value("--server-pid")?.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    p.parse::<u32>().map_err(|_| format!("--server-pid: `{p}` is not a pid"))?;
                    pids.push(p.to_string());
                }
            }
            "--tokens" => tokens = Some(PathBuf::from(a.value("--tokens")?)),
            "--tokens-key" => tokens_key = Some(a.value("--tokens-key")?),
            "--connect-batch" => connect_batch = a.parse("--connect-batch")?,
            "--signup-concurrency" => signup_concurrency = a.parse("--signup-concurrency")?,
            "--label" => label = Some(a.value("--label")?),
            "--json" => json = true,
            "--check" => check = true,
            "--quick" => quick = true,
            "--accounts-only" => accounts_only = true,
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(None);
            }
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    let url_arg = url.unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let urls: Vec<String> = url_arg.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect();
    if urls.is_empty() {
        return Err("--url: no URL".into());
    }
    if accounts_only && target == Target::Relay {
        return Err("--accounts-only needs --target charcha (the relay has no accounts)".into());
    }
    let users = users.unwrap_or(if quick { 20 } else { 200 });
    if users < 2 || users % 2 != 0 {
        return Err(format!("--users must be even and at least 2 (got {users})"));
    }
    let in_flight = in_flight.unwrap_or(if quick { 4 } else { 1 });
    if in_flight == 0 {
        return Err("--in-flight must be at least 1".into());
    }
    if let Some(r) = rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err("--rate must be positive".into());
    }
    let duration = duration.unwrap_or(if quick { 2.0 } else { 10.0 });
    let warmup = warmup.unwrap_or(if quick { 0.5 } else { 2.0 });
    let drain = drain.unwrap_or(5.0);
    if !(duration > 0.0 && warmup >= 0.0 && drain >= 0.0) {
        return Err("--duration must be positive, --warmup and --drain not negative".into());
    }
    let label = label.unwrap_or_else(|| {
        let load = match rate {
            Some(r) => format!("rate{r}"),
            None => format!("w{in_flight}"),
        };
        format!("{}-{users}u-{load}", if target == Target::Relay { "relay" } else { "charcha" })
    });
    Ok(Some(Opts {
        url_arg,
        urls,
        target,
        users,
        in_flight,
        max_backlog,
        rate,
        duration,
        warmup,
        drain,
        server_pids: pids,
        tokens,
        tokens_key,
        connect_batch: connect_batch.max(1),
        signup_concurrency: signup_concurrency.max(1),
        label,
        json,
        check: check || quick,
        accounts_only,
    }))
}

pub fn main(args: Vec<String>) -> ExitCode {
    let opts = match parse_opts(args) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("charcha-bench run: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("charcha-bench run: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if opts.accounts_only {
        let ready = runtime.block_on(async { obtain_creds(&opts, &bases(&opts)?).await });
        return match ready {
            Ok(_) => {
                eprintln!("[{}] {} accounts ready", opts.label, opts.users);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("charcha-bench run ({}): error: {e}", opts.label);
                ExitCode::FAILURE
            }
        };
    }
    let result = runtime.block_on(run(&opts));
    // Tasks still blocked on dead sockets must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(report) => {
            if opts.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            let mut failed = false;
            if report.network_errors > 0 {
                eprintln!(
                    "charcha-bench run: {} network error(s) during the run (see the report)",
                    report.network_errors
                );
                failed = true;
            }
            if opts.check && !report.counts_ok() {
                eprintln!(
                    "charcha-bench run: count check FAILED: lost {} duplicated {} reordered {} unacked {} errors {} delivered {} acked {}",
                    report.lost,
                    report.duplicated,
                    report.reordered,
                    report.unacked,
                    report.errors,
                    report.delivered,
                    report.acked
                );
                failed = true;
            } else if opts.check {
                eprintln!(
                    "charcha-bench run: count check ok: sent {} acked {} delivered {}, lost 0, duplicated 0, reordered 0, unacked 0, errors 0",
                    report.sent, report.acked, report.delivered
                );
            }
            if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            if opts.json {
                println!("{}", json!({ "label": opts.label, "error": e, "ok": false }));
            }
            eprintln!("charcha-bench run ({}): error: {e}", opts.label);
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------

/// One sent message, indexed by its sequence number in the sender's log.
#[derive(Clone, Copy)]
struct Rec {
    /// Nanoseconds since `Shared::base` when it was handed to the socket.
    sent_ns: u64,
    /// Deliveries to the recipient (more than one = duplicated).
    delivered: u32,
    acked: bool,
    errored: bool,
}

struct UserSlot {
    /// The user id the server assigned (from the `hello`).
    id: OnceLock<String>,
    log: Mutex<Vec<Rec>>,
    /// Closed loop: permission to send (one per outstanding slot).
    credits: Semaphore,
    /// 1 + the highest seq of this user's messages the peer has received.
    delivered_hi: AtomicUsize,
    /// Notified on every delivery to the peer (for --max-backlog).
    progress: Notify,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Closed,
    /// Each user sends every `period`.
    Open {
        period: Duration,
    },
}

#[derive(Default)]
struct Errors {
    by_code: BTreeMap<String, u64>,
    samples: Vec<String>,
    /// Connection-level failures (disconnects, read/write errors).
    network: u64,
}

struct Shared {
    users: Vec<UserSlot>,
    runid: String,
    base: Instant,
    /// `base` as milliseconds since the epoch: client ids carry send times.
    base_unix_ms: u64,
    mode: Mode,
    /// Closed loop: most messages a user may have sent but not yet delivered.
    max_backlog: usize,
    win_start_ns: AtomicU64,
    win_end_ns: AtomicU64,
    start_at: OnceLock<Instant>,
    /// Writers start sending.
    start: CancellationToken,
    /// Writers stop sending (end of the measured window).
    stop: CancellationToken,
    /// The run is over: writers send a close frame, disconnects are expected.
    close: CancellationToken,
    /// Readers give up waiting for the server's close.
    hard_stop: CancellationToken,
    sent: AtomicU64,
    resolved: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    writers_done: AtomicUsize,
    errors: Mutex<Errors>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn ns_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    fn in_window(&self, ns: u64) -> bool {
        ns >= self.win_start_ns.load(Relaxed) && ns < self.win_end_ns.load(Relaxed)
    }

    fn error(&self, code: &str, detail: impl FnOnce() -> String, network: bool) {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let count = {
            let c = e.by_code.entry(code.to_string()).or_default();
            *c += 1;
            *c
        };
        if network {
            e.network += 1;
        }
        // A couple of examples per kind of error.
        if count <= 2 && e.samples.len() < 8 {
            let d = detail();
            e.samples.push(format!("{code}: {d}"));
        }
    }

    fn peer(i: usize) -> usize {
        i ^ 1
    }

    /// `<time>-<sender>-<seq>-<runid>` → (sender, seq), for this run's ids only.
    fn parse_cmid(&self, cmid: &str) -> Option<(usize, usize)> {
        let mut parts = cmid.splitn(4, '-');
        parts.next()?;
        let sender = parts.next()?.parse::<usize>().ok()?;
        let seq = parts.next()?.parse::<usize>().ok()?;
        (parts.next()? == self.runid && sender < self.users.len()).then_some((sender, seq))
    }
}

/// `s<sender> n<seq> …` → (sender, seq).
fn parse_text(text: &str) -> Option<(usize, usize)> {
    let rest = text.strip_prefix('s')?;
    let (sender, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix('n')?;
    let (seq, _) = rest.split_once(' ')?;
    Some((sender.parse().ok()?, seq.parse().ok()?))
}

/// Padding for message texts: plain ASCII, nothing JSON must escape.
const PAD: &str = "the quick brown fox jumps over the lazy dog 0123456789 pack my box with five dozen liquor jugs \
                   sphinx of black quartz judge my vow";

/// The `send` frame of `sender`'s message `seq`: text of 40–80 bytes that
/// starts with `s<sender> n<seq> `. Its `client_msg_id` starts with the
/// send's time (`unix_ms`, fixed-width hex), as the web client's version-7
/// UUIDs do, so ids sort in the order they were made, as the store's send
/// index expects of real clients.
fn send_frame(sender: usize, seq: usize, runid: &str, to_json: &str, unix_ms: u64) -> String {
    let mut f = String::with_capacity(208);
    let _ =
        write!(f, r#"{{"type":"send","client_msg_id":"{unix_ms:012x}-{sender}-{seq}-{runid}","to":{to_json},"text":""#);
    let text_start = f.len();
    let _ = write!(f, "s{sender} n{seq} ");
    let want = 40 + (sender.wrapping_mul(7).wrapping_add(seq.wrapping_mul(13))) % 41;
    let pad = want.saturating_sub(f.len() - text_start).min(80);
    let off = (seq.wrapping_mul(5).wrapping_add(sender)) % (PAD.len() - 80);
    f.push_str(&PAD[off..off + pad]);
    f.push_str("\"}");
    f
}

// ---------------------------------------------------------------------------
// Incoming frames: small borrowed structs, one parse per frame.
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct InFrame<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(default)]
    client_msg_id: Option<&'a str>,
    #[serde(default)]
    code: Option<&'a str>,
    #[serde(default, borrow)]
    message: Option<MessageField<'a>>,
}

#[derive(Deserialize)]
struct InMessage<'a> {
    sender_id: &'a str,
    recipient_id: &'a str,
    text: &'a str,
    #[serde(default)]
    client_msg_id: Option<&'a str>,
}

/// `message` is an object in `ack`/`message` frames and a string in `error`
/// frames.
enum MessageField<'a> {
    Chat(InMessage<'a>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for MessageField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = MessageField<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a message object or a string")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                InMessage::deserialize(MapAccessDeserializer::new(map)).map(MessageField::Chat)
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(MessageField::Other)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(MessageField::Other)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A frame in the shape the handler needs, from either parse path.
struct Parsed<'a> {
    ty: &'a str,
    client_msg_id: Option<&'a str>,
    code: Option<&'a str>,
    message: Option<(&'a str, &'a str, &'a str, Option<&'a str>)>,
}

// ---------------------------------------------------------------------------
// Per-connection tasks
// ---------------------------------------------------------------------------

#[derive(Default)]
struct ReaderStats {
    ack_us: Vec<u32>,
    delivery_us: Vec<u32>,
    acked_in_window: u64,
    delivered_in_window: u64,
    duplicated: u64,
    reordered: u64,
    echoes: u64,
    dup_acks: u64,
    /// Acks that came back after the ack of a later message of the same
    /// connection (reported, not part of the count check).
    ack_reordered: u64,
    /// The first few reorderings and duplicates, for the report.
    samples: Vec<String>,
}

fn micros(ns: u64) -> u32 {
    (ns / 1000).min(u32::MAX as u64) as u32
}

async fn reader(mut stream: WsStream, sh: Arc<Shared>, me: usize) -> ReaderStats {
    let mut st = ReaderStats::default();
    let mut last_seq = LastSeqs::default();
    let hard = sh.hard_stop.clone();
    let hard = hard.cancelled();
    tokio::pin!(hard);
    loop {
        let item = tokio::select! {
            biased;
            item = stream.next() => item,
            _ = &mut hard => break,
        };
        match item {
            Some(Ok(Message::Text(text))) => handle_frame(&sh, me, &text, &mut st, &mut last_seq),
            Some(Ok(Message::Binary(_))) => sh.error("binary_frame", || format!("user {me}"), false),
            Some(Ok(Message::Close(frame))) => {
                if !sh.close.is_cancelled() {
                    let why = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                    sh.error("closed_by_server", || format!("user {me}: {why}"), true);
                }
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                if !sh.close.is_cancelled() {
                    sh.error("ws_read", || format!("user {me}: {e}"), true);
                }
                break;
            }
            None => {
                if !sh.close.is_cancelled() {
                    sh.error("disconnected", || format!("user {me}: connection ended"), true);
                }
                break;
            }
        }
    }
    st
}

/// The highest sequence number seen so far, of the peer's deliveries and of
/// this user's acks.
#[derive(Default)]
struct LastSeqs {
    delivered: Option<usize>,
    acked: Option<usize>,
}

fn handle_frame(sh: &Shared, me: usize, text: &str, st: &mut ReaderStats, last_seq: &mut LastSeqs) {
    match serde_json::from_str::<InFrame>(text) {
        Ok(f) => {
            let message = match &f.message {
                Some(MessageField::Chat(m)) => Some((m.sender_id, m.recipient_id, m.text, m.client_msg_id)),
                _ => None,
            };
            handle(
                sh,
                me,
                &Parsed { ty: f.ty, client_msg_id: f.client_msg_id, code: f.code, message },
                text,
                st,
                last_seq,
            )
        }
        // Strings with escapes cannot be borrowed; take the slow path.
        Err(_) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => {
                let get = |k: &str| v.get(k).and_then(|x| x.as_str());
                let m = v.get("message").filter(|m| m.is_object());
                let ms = |k: &str| m.and_then(|m| m.get(k)).and_then(|x| x.as_str());
                let message = match (ms("sender_id"), ms("recipient_id"), ms("text")) {
                    (Some(a), Some(b), Some(t)) => Some((a, b, t, ms("client_msg_id"))),
                    _ => None,
                };
                let Some(ty) = get("type") else {
                    return sh.error("bad_server_frame", || format!("no type: {}", clip(text)), false);
                };
                handle(
                    sh,
                    me,
                    &Parsed { ty, client_msg_id: get("client_msg_id"), code: get("code"), message },
                    text,
                    st,
                    last_seq,
                )
            }
            Err(e) => sh.error("bad_server_frame", || format!("{e}: {}", clip(text)), false),
        },
    }
}

fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

fn handle(sh: &Shared, me: usize, f: &Parsed, raw: &str, st: &mut ReaderStats, last_seq: &mut LastSeqs) {
    let corrupt = |why: &str| sh.error("corrupt", || format!("user {me}: {why}: {}", clip(raw)), false);
    match f.ty {
        "ack" => {
            let Some((sender, seq)) = f.client_msg_id.and_then(|c| sh.parse_cmid(c)) else {
                return corrupt("ack with an unknown client_msg_id");
            };
            if sender != me {
                return corrupt("ack of another user's message");
            }
            let now = sh.now_ns();
            let user = &sh.users[me];
            let (sent_ns, first) = {
                let mut log = user.log.lock().unwrap_or_else(|p| p.into_inner());
                let Some(rec) = log.get_mut(seq) else {
                    drop(log);
                    return corrupt("ack of a message never sent");
                };
                if rec.acked {
                    drop(log);
                    st.dup_acks += 1;
                    return;
                }
                rec.acked = true;
                (rec.sent_ns, !rec.errored)
            };
            sh.acked.fetch_add(1, Relaxed);
            match last_seq.acked {
                Some(last) if seq < last => st.ack_reordered += 1,
                _ => last_seq.acked = Some(seq),
            }
            if sh.in_window(now) {
                st.acked_in_window += 1;
            }
            if sh.in_window(sent_ns) {
                st.ack_us.push(micros(now.saturating_sub(sent_ns)));
            }
            if first {
                sh.resolved.fetch_add(1, Relaxed);
                if matches!(sh.mode, Mode::Closed) {
                    user.credits.add_permits(1);
                }
            }
        }
        "message" => {
            let Some((sender_id, recipient_id, text, cmid)) = f.message else {
                return corrupt("message frame without a message");
            };
            let Some(my_id) = sh.users[me].id.get() else { return };
            if sender_id == my_id {
                // The server echoes a user's own message to their sessions.
                st.echoes += 1;
                return;
            }
            if recipient_id != my_id {
                return corrupt("message for another user");
            }
            let Some((sender, seq)) = cmid.and_then(|c| sh.parse_cmid(c)) else {
                return corrupt("message with an unknown client_msg_id");
            };
            if sender != Shared::peer(me) || sh.users[sender].id.get().map(String::as_str) != Some(sender_id) {
                return corrupt("message from someone who is not the peer");
            }
            if parse_text(text) != Some((sender, seq)) {
                return corrupt("text does not match its client_msg_id");
            }
            let now = sh.now_ns();
            let (sent_ns, count) = {
                let mut log = sh.users[sender].log.lock().unwrap_or_else(|p| p.into_inner());
                let Some(rec) = log.get_mut(seq) else {
                    drop(log);
                    return corrupt("delivery of a message never sent");
                };
                rec.delivered += 1;
                (rec.sent_ns, rec.delivered)
            };
            if count > 1 {
                st.duplicated += 1;
                if st.samples.len() < 3 {
                    st.samples.push(format!("user {me} got {sender}-{seq} {count} times"));
                }
                return;
            }
            sh.delivered.fetch_add(1, Relaxed);
            sh.users[sender].delivered_hi.fetch_max(seq + 1, Relaxed);
            sh.users[sender].progress.notify_one();
            if sh.in_window(now) {
                st.delivered_in_window += 1;
            }
            if sh.in_window(sent_ns) {
                st.delivery_us.push(micros(now.saturating_sub(sent_ns)));
            }
            match last_seq.delivered {
                Some(last) if seq < last => {
                    st.reordered += 1;
                    if st.samples.len() < 3 {
                        let sent_ms = sent_ns as f64 / 1e6;
                        st.samples.push(format!(
                            "user {me} got {sender}-{seq} (sent at {sent_ms:.3} ms) after {sender}-{last}"
                        ));
                    }
                }
                _ => last_seq.delivered = Some(seq),
            }
        }
        "error" => {
            let code = f.code.unwrap_or("error_without_code");
            let detail = || {
                let msg = serde_json::from_str::<serde_json::Value>(raw)
                    .ok()
                    .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
                    .unwrap_or_default();
                format!("user {me}: {msg}")
            };
            sh.error(code, detail, false);
            if let Some((sender, seq)) = f.client_msg_id.and_then(|c| sh.parse_cmid(c))
                && sender == me
            {
                let user = &sh.users[me];
                let first = {
                    let mut log = user.log.lock().unwrap_or_else(|p| p.into_inner());
                    match log.get_mut(seq) {
                        Some(rec) if !rec.acked && !rec.errored => {
                            rec.errored = true;
                            true
                        }
                        _ => false,
                    }
                };
                if first {
                    sh.resolved.fetch_add(1, Relaxed);
                    if matches!(sh.mode, Mode::Closed) {
                        user.credits.add_permits(1);
                    }
                }
            }
        }
        "pong" | "presence" | "contact" | "hello" => {}
        other => sh.error("unknown_frame", || format!("type `{other}`"), false),
    }
}

#[derive(Default)]
struct WriterStats {
    /// Open loop: how late each send was against its schedule.
    lag_us: Vec<u32>,
    /// Closed loop: times a send waited for deliveries (--max-backlog).
    backlog_waits: u64,
}

async fn writer(mut sink: WsSink, sh: Arc<Shared>, me: usize) -> WriterStats {
    let mut ws = WriterStats::default();
    tokio::select! {
        _ = sh.start.cancelled() => {}
        _ = sh.close.cancelled() => {}
    }
    if !sh.close.is_cancelled() {
        let to_json = match sh.users[Shared::peer(me)].id.get() {
            Some(id) => serde_json::to_string(id).unwrap_or_default(),
            None => String::new(),
        };
        let result = if to_json.is_empty() {
            Err("peer not connected".to_string())
        } else {
            match sh.mode {
                Mode::Closed => closed_loop(&mut sink, &sh, me, &to_json, &mut ws.backlog_waits).await,
                Mode::Open { period } => open_loop(&mut sink, &sh, me, &to_json, period, &mut ws.lag_us).await,
            }
        };
        sh.writers_done.fetch_add(1, Relaxed);
        match result {
            Ok(()) => sh.close.cancelled().await,
            Err(e) => {
                if !sh.close.is_cancelled() {
                    sh.error("ws_write", || format!("user {me}: {e}"), true);
                }
                return ws;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(None))).await;
    ws
}

/// Records message `seq` as sent now and queues its frame (not flushed).
async fn feed_one(
    sink: &mut WsSink,
    sh: &Shared,
    me: usize,
    seq: usize,
    to_json: &str,
    sent_ns: u64,
) -> Result<(), String> {
    let frame = send_frame(me, seq, &sh.runid, to_json, sh.base_unix_ms + sent_ns / 1_000_000);
    {
        let mut log = sh.users[me].log.lock().unwrap_or_else(|p| p.into_inner());
        debug_assert_eq!(log.len(), seq);
        log.push(Rec { sent_ns, delivered: 0, acked: false, errored: false });
    }
    sh.sent.fetch_add(1, Relaxed);
    sink.feed(Message::Text(frame.into())).await.map_err(|e| e.to_string())
}

async fn closed_loop(
    sink: &mut WsSink,
    sh: &Shared,
    me: usize,
    to_json: &str,
    backlog_waits: &mut u64,
) -> Result<(), String> {
    let user = &sh.users[me];
    let credits = &user.credits;
    let mut seq = 0usize;
    loop {
        let permit = tokio::select! {
            biased;
            _ = sh.stop.cancelled() => return Ok(()),
            p = credits.acquire() => p,
        };
        let Ok(permit) = permit else { return Ok(()) };
        permit.forget();
        // Every credit available now goes out in one flush.
        let mut taken = 1;
        while taken < 64 {
            match credits.try_acquire() {
                Ok(p) => {
                    p.forget();
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        let mut batch = taken;
        if sh.max_backlog > 0 {
            // Not more than max_backlog sent but undelivered. A delivery
            // stall longer than the timeout lets one batch through, so a
            // server that stopped delivering is still driven (and seen).
            loop {
                let notified = user.progress.notified();
                let backlog = seq.saturating_sub(user.delivered_hi.load(Relaxed));
                if backlog < sh.max_backlog {
                    batch = batch.min(sh.max_backlog - backlog);
                    break;
                }
                *backlog_waits += 1;
                tokio::select! {
                    biased;
                    _ = sh.stop.cancelled() => return Ok(()),
                    r = tokio::time::timeout(BACKLOG_WAIT, notified) => if r.is_err() { break },
                }
            }
            if batch < taken {
                credits.add_permits(taken - batch);
            }
        }
        for _ in 0..batch {
            feed_one(sink, sh, me, seq, to_json, sh.now_ns()).await?;
            seq += 1;
        }
        sink.flush().await.map_err(|e| e.to_string())?;
    }
}

/// Longest a closed-loop send waits for deliveries (see --max-backlog).
const BACKLOG_WAIT: Duration = Duration::from_millis(500);

async fn open_loop(
    sink: &mut WsSink,
    sh: &Shared,
    me: usize,
    to_json: &str,
    period: Duration,
    lag_us: &mut Vec<u32>,
) -> Result<(), String> {
    let start = *sh.start_at.get().ok_or("no start time")?;
    let mut next = start + period.mul_f64(me as f64 / sh.users.len() as f64);
    let mut seq = 0usize;
    loop {
        tokio::select! {
            biased;
            _ = sh.stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        let now = Instant::now();
        let mut sent_any = false;
        // Catch up on every send that is due (a late timer or a slow socket).
        while next <= now {
            if sh.stop.is_cancelled() {
                break;
            }
            let sent_ns = sh.now_ns();
            if sh.in_window(sent_ns) {
                lag_us.push(micros(sent_ns.saturating_sub(sh.ns_of(next))));
            }
            feed_one(sink, sh, me, seq, to_json, sent_ns).await?;
            seq += 1;
            next += period;
            sent_any = true;
        }
        if sent_any {
            sink.flush().await.map_err(|e| e.to_string())?;
        }
    }
}

// ---------------------------------------------------------------------------
// Setup: credentials and connections
// ---------------------------------------------------------------------------

#[derive(Default, Clone, Copy)]
struct AuthCounts {
    cached: usize,
    signed_up: usize,
    logged_in: usize,
    /// Cached tokens the server refused (401 on /ws), then logged in again.
    refreshed: usize,
}

pub struct Creds {
    pub creds: Vec<Option<Cred>>,
    cache: TokenCache,
    key: String,
    counts: AuthCounts,
}

/// The servers of `--url`, parsed.
fn bases(o: &Opts) -> Result<Vec<Base>, String> {
    o.urls.iter().map(|u| Base::parse(u)).collect()
}

/// Whose credentials to get and where to cache them.
pub struct AuthPlan {
    /// Token cache key (`--tokens-key`, or the URL text).
    pub key: String,
    pub tokens: Option<PathBuf>,
    /// Bench users 0..users.
    pub users: usize,
    pub label: String,
    pub signup_concurrency: usize,
}

async fn obtain_creds(o: &Opts, bases: &[Base]) -> Result<Creds, String> {
    let plan = AuthPlan {
        key: o.tokens_key.clone().unwrap_or_else(|| o.url_arg.clone()),
        tokens: o.tokens.clone(),
        users: o.users,
        label: o.label.clone(),
        signup_concurrency: o.signup_concurrency,
    };
    obtain_creds_for(&plan, bases).await
}

/// Credentials of bench users 0..`o.users`: from the token cache, else by
/// signing up (or logging in), `o.signup_concurrency` at a time; the cache
/// is updated.
pub async fn obtain_creds_for(o: &AuthPlan, bases: &[Base]) -> Result<Creds, String> {
    let key = o.key.clone();
    let mut cache = o.tokens.as_deref().map(TokenCache::load).unwrap_or_default();
    let mut creds: Vec<Option<Cred>> = (0..o.users).map(|i| cache.get(&key, i)).collect();
    let mut counts = AuthCounts { cached: creds.iter().filter(|c| c.is_some()).count(), ..Default::default() };
    let missing: Vec<usize> = (0..o.users).filter(|&i| creds[i].is_none()).collect();
    if !missing.is_empty() {
        eprintln!(
            "[{}] signing up / logging in {} bench users ({} concurrently)",
            o.label,
            missing.len(),
            o.signup_concurrency
        );
        let started = Instant::now();
        let limit = Arc::new(Semaphore::new(o.signup_concurrency));
        let mut set = JoinSet::new();
        for i in missing {
            let base = bases[i % bases.len()].clone();
            let limit = limit.clone();
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (i, http::signup_or_login(&base, i).await)
            });
        }
        let (mut failures, mut first_error) = (0usize, None);
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, Ok((cred, how)))) => {
                    match how {
                        Obtained::SignedUp => counts.signed_up += 1,
                        Obtained::LoggedIn => counts.logged_in += 1,
                    }
                    cache.put(&key, i, cred.clone());
                    creds[i] = Some(cred);
                }
                // post_retrying already retried what is worth retrying:
                // stop at the first failure instead of failing N times.
                Ok((_, Err(e))) => {
                    failures += 1;
                    first_error.get_or_insert(e);
                    set.abort_all();
                }
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert(e.to_string());
                    set.abort_all();
                }
            }
        }
        if let Some(path) = &o.tokens
            && let Err(e) = cache.save(path)
        {
            eprintln!("warning: {e}");
        }
        eprintln!(
            "[{}] {} signed up, {} logged in in {:.1} s",
            o.label,
            counts.signed_up,
            counts.logged_in,
            started.elapsed().as_secs_f64()
        );
        if failures > 0 {
            return Err(format!("sign-up/log-in failed: {}", first_error.unwrap_or_default()));
        }
    }
    Ok(Creds { creds, cache, key, counts })
}

pub enum ConnectError {
    Unauthorized,
    Other(String),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The generator's WebSocket settings. tungstenite zero-fills its whole
/// read chunk before every socket read; at the default 128 KiB that
/// `memset` was a quarter of the generator's CPU under load (c) (`perf`,
/// BENCHMARKS.md), CPU the server under test then did not get. 8 KiB still
/// takes a burst of acks and deliveries in one read.
fn client_ws_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// Opens one WebSocket and waits for its `hello`; returns the user id the
/// server says this connection belongs to.
pub async fn try_connect(url: &str, token: Option<&str>) -> Result<(Ws, String), ConnectError> {
    let other = |e: String| ConnectError::Other(format!("{url}: {e}"));
    let mut request = url.into_client_request().map_err(|e| other(e.to_string()))?;
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| other(e.to_string()))?;
        request.headers_mut().insert(tungstenite::http::header::AUTHORIZATION, value);
    }
    let (mut ws, _) = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(request, Some(client_ws_config()), true),
    )
    .await
    {
        Err(_) => return Err(other(format!("no upgrade within {} s", CONNECT_TIMEOUT.as_secs()))),
        Ok(Err(tungstenite::Error::Http(resp))) if resp.status().as_u16() == 401 => {
            return Err(ConnectError::Unauthorized);
        }
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>();
            return Err(other(format!("upgrade refused: {} {body}", resp.status())));
        }
        Ok(Err(e)) => return Err(other(e.to_string())),
        Ok(Ok(pair)) => pair,
    };
    #[derive(Deserialize)]
    struct HelloUser {
        #[serde(rename = "_id")]
        id: String,
    }
    #[derive(Deserialize)]
    struct Hello {
        #[serde(rename = "type")]
        ty: String,
        #[serde(default)]
        protocol_version: u32,
        user: Option<HelloUser>,
    }
    let hello = async {
        while let Some(item) = ws.next().await {
            match item {
                Ok(Message::Text(t)) => {
                    let h: Hello =
                        serde_json::from_str(&t).map_err(|e| format!("unreadable first frame: {e}: {}", clip(&t)))?;
                    if h.ty != "hello" {
                        return Err(format!("first frame is `{}`, not hello", h.ty));
                    }
                    if h.protocol_version != charcha::protocol::PROTOCOL_VERSION {
                        return Err(format!(
                            "protocol_version {} (this generator speaks {})",
                            h.protocol_version,
                            charcha::protocol::PROTOCOL_VERSION
                        ));
                    }
                    return h.user.map(|u| u.id).ok_or_else(|| "hello without user".to_string());
                }
                Ok(Message::Close(f)) => return Err(format!("closed before hello: {f:?}")),
                Ok(_) => {}
                Err(e) => return Err(format!("read before hello: {e}")),
            }
        }
        Err("connection ended before hello".to_string())
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, hello).await {
        Ok(Ok(id)) => Ok((ws, id)),
        Ok(Err(e)) => Err(other(e)),
        Err(_) => Err(other(format!("no hello within {} s", CONNECT_TIMEOUT.as_secs()))),
    }
}

/// Connects user `i`; for Charcha a refused cached token means log in again
/// (the new credential is returned for the cache).
async fn connect_user(
    i: usize,
    base: Base,
    target: Target,
    cred: Option<Cred>,
) -> Result<(Ws, String, Option<Cred>), String> {
    match target {
        Target::Relay => {
            let want = relay_user_id(i);
            let (ws, id) = try_connect(&format!("{}/ws?user={want}", base.ws), None).await.map_err(connect_message)?;
            if id != want {
                return Err(format!("user {i}: hello says user {id}, expected {want}"));
            }
            Ok((ws, id, None))
        }
        Target::Charcha => {
            let url = format!("{}/ws", base.ws);
            let cred = cred.ok_or_else(|| format!("user {i}: no credential"))?;
            let (ws, id, refreshed) = match try_connect(&url, Some(&cred.token)).await {
                Ok((ws, id)) => (ws, id, None),
                Err(ConnectError::Unauthorized) => {
                    let (fresh, _) = http::login_or_signup(&base, i).await?;
                    let (ws, id) = try_connect(&url, Some(&fresh.token)).await.map_err(connect_message)?;
                    let expected = fresh.user_id.clone();
                    if id != expected {
                        return Err(format!("user {i}: hello says user {id}, log-in said {expected}"));
                    }
                    (ws, id, Some(fresh))
                }
                Err(e) => return Err(connect_message(e)),
            };
            if refreshed.is_none() && id != cred.user_id {
                return Err(format!("user {i}: hello says user {id}, the token cache says {}", cred.user_id));
            }
            Ok((ws, id, refreshed))
        }
    }
}

pub fn connect_message(e: ConnectError) -> String {
    match e {
        ConnectError::Unauthorized => "WebSocket upgrade refused with 401 after a fresh log-in".into(),
        ConnectError::Other(e) => e,
    }
}

/// Relay user ids are 26 characters like Charcha's ULIDs, so the relay's
/// frames (ids, conversation ids) have the same sizes as Charcha's.
fn relay_user_id(i: usize) -> String {
    format!("01BENCHRELAY{i:014}")
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

async fn run(o: &Opts) -> Result<Report, String> {
    let bases = bases(o)?;
    let n = o.users;
    let mut creds = match o.target {
        Target::Charcha => Some(obtain_creds(o, &bases).await?),
        Target::Relay => None,
    };
    let mode = match o.rate {
        Some(rate) => Mode::Open { period: Duration::from_secs_f64(n as f64 / rate) },
        None => Mode::Closed,
    };
    let run_ulid = ulid::Ulid::new();
    let ulid = run_ulid.to_string();
    let sh = Arc::new(Shared {
        users: (0..n)
            .map(|_| UserSlot {
                id: OnceLock::new(),
                log: Mutex::new(Vec::with_capacity(256)),
                credits: Semaphore::new(if matches!(mode, Mode::Closed) { o.in_flight } else { 0 }),
                delivered_hi: AtomicUsize::new(0),
                progress: Notify::new(),
            })
            .collect(),
        runid: ulid[14..].to_string(),
        base: Instant::now(),
        base_unix_ms: run_ulid.timestamp_ms(),
        mode,
        max_backlog: o.max_backlog,
        win_start_ns: AtomicU64::new(u64::MAX),
        win_end_ns: AtomicU64::new(u64::MAX),
        start_at: OnceLock::new(),
        start: CancellationToken::new(),
        stop: CancellationToken::new(),
        close: CancellationToken::new(),
        hard_stop: CancellationToken::new(),
        sent: AtomicU64::new(0),
        resolved: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        writers_done: AtomicUsize::new(0),
        errors: Mutex::new(Errors::default()),
    });

    // Connect everyone, batch by batch; readers start at once (the server
    // may send presence and contact frames before the load begins).
    let connect_started = Instant::now();
    let mut readers = Vec::with_capacity(n);
    let mut writers = Vec::with_capacity(n);
    let mut refreshed = 0usize;
    let mut failures: Vec<String> = Vec::new();
    let all: Vec<usize> = (0..n).collect();
    for batch in all.chunks(o.connect_batch) {
        let mut set = JoinSet::new();
        for &i in batch {
            let base = bases[i % bases.len()].clone();
            let cred = creds.as_ref().and_then(|c| c.creds[i].clone());
            let target = o.target;
            set.spawn(async move { (i, connect_user(i, base, target, cred).await) });
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, Ok((ws, id, fresh)))) => {
                    if let (Some(fresh), Some(c)) = (fresh, creds.as_mut()) {
                        refreshed += 1;
                        c.cache.put(&c.key, i, fresh.clone());
                        c.creds[i] = Some(fresh);
                    }
                    let _ = sh.users[i].id.set(id);
                    let (sink, stream) = ws.split();
                    readers.push((i, tokio::spawn(reader(stream, sh.clone(), i))));
                    writers.push(tokio::spawn(writer(sink, sh.clone(), i)));
                }
                Ok((_, Err(e))) => failures.push(e),
                Err(e) => failures.push(format!("connect task: {e}")),
            }
        }
        if !failures.is_empty() {
            break;
        }
    }
    if let Some(c) = &creds
        && refreshed > 0
        && let Some(path) = &o.tokens
        && let Err(e) = c.cache.save(path)
    {
        eprintln!("warning: {e}");
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    if !failures.is_empty() {
        shut_down(&sh, readers, writers).await;
        return Err(format!("{} of {n} WebSocket connection(s) failed; first: {}", failures.len(), failures[0]));
    }
    eprintln!("[{}] {n} WebSockets connected in {connect_secs:.2} s", o.label);

    // History's counter before the load (see `history_catch_up`).
    let history_base = match (o.target, bases.as_slice()) {
        (Target::Charcha, [base]) => stored_total(base).await.map(|stored| (base, stored)),
        _ => None,
    };

    // Load: warm-up, measured window, drain.
    let start = Instant::now() + Duration::from_millis(20);
    let win_start = start + Duration::from_secs_f64(o.warmup);
    let win_end = win_start + Duration::from_secs_f64(o.duration);
    sh.win_start_ns.store(sh.ns_of(win_start), Relaxed);
    sh.win_end_ns.store(sh.ns_of(win_end), Relaxed);
    let _ = sh.start_at.set(start);
    tokio::time::sleep_until(start.into()).await;
    sh.start.cancel();

    tokio::time::sleep_until(win_start.into()).await;
    let sample_start = Instant::now();
    let server_before = sample_server(&sh, &o.server_pids);
    let self_before = stats::sample("self").ok();
    tokio::time::sleep_until(win_end.into()).await;
    let server_after = sample_server(&sh, &o.server_pids);
    let self_after = stats::sample("self").ok();
    let sampled_secs = sample_start.elapsed().as_secs_f64();
    sh.stop.cancel();

    let drain_started = Instant::now();
    let drain_deadline = drain_started + Duration::from_secs_f64(o.drain);
    loop {
        let writers_done = sh.writers_done.load(Relaxed) >= writers.len();
        let sent = sh.sent.load(Relaxed);
        let acked = sh.acked.load(Relaxed);
        if writers_done && sh.resolved.load(Relaxed) >= sent && sh.delivered.load(Relaxed) >= acked {
            break;
        }
        // Past the limit, or every connection is gone: nothing more can arrive.
        if Instant::now() >= drain_deadline || readers.iter().all(|(_, r)| r.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let (reader_stats, writer_stats) = shut_down(&sh, readers, writers).await;

    // Counts from the senders' logs.
    let mut r = Report {
        label: o.label.clone(),
        target: o.target,
        urls: o.urls.clone(),
        users: n,
        mode,
        in_flight: o.in_flight,
        max_backlog: o.max_backlog,
        rate: o.rate,
        duration: o.duration,
        warmup: o.warmup,
        drain_limit: o.drain,
        connect_secs,
        drain_secs,
        auth: creds.as_ref().map(|c| AuthCounts { refreshed, ..c.counts }),
        ..Default::default()
    };
    for user in &sh.users {
        let log = user.log.lock().unwrap_or_else(|p| p.into_inner());
        for rec in log.iter() {
            r.sent += 1;
            if sh.in_window(rec.sent_ns) {
                r.sent_in_window += 1;
            }
            if rec.acked {
                r.acked += 1;
                if rec.delivered == 0 {
                    r.lost += 1;
                }
            } else if !rec.errored {
                r.unacked += 1;
            }
            if rec.errored {
                r.errored_messages += 1;
            }
            if rec.delivered > 0 {
                r.delivered += 1;
            }
        }
    }
    if let Some((base, stored_before)) = history_base {
        r.history = history_catch_up(base, stored_before, r.acked).await;
    }
    let mut ack_us = Vec::new();
    let mut delivery_us = Vec::new();
    for s in reader_stats {
        ack_us.extend_from_slice(&s.ack_us);
        delivery_us.extend_from_slice(&s.delivery_us);
        r.acked_in_window += s.acked_in_window;
        r.delivered_in_window += s.delivered_in_window;
        r.duplicated += s.duplicated;
        r.reordered += s.reordered;
        r.echoes += s.echoes;
        r.dup_acks += s.dup_acks;
        r.ack_reordered += s.ack_reordered;
        for sample in s.samples {
            if r.order_samples.len() < 8 {
                r.order_samples.push(sample);
            }
        }
    }
    r.ack_latency = Latency::of(ack_us);
    r.delivery_latency = Latency::of(delivery_us);
    r.backlog_waits = writer_stats.backlog_waits;
    if matches!(mode, Mode::Open { .. }) {
        r.schedule_lag = Some(Latency::of(writer_stats.lag_us));
    }
    {
        let e = sh.errors.lock().unwrap_or_else(|p| p.into_inner());
        r.errors_by_code = e.by_code.clone();
        r.error_samples = e.samples.clone();
        r.errors = e.by_code.values().sum();
        r.network_errors = e.network;
    }
    if let (Some(before), Some(after)) = (server_before, server_after) {
        r.server = Some(ServerFigures {
            pids: o.server_pids.clone(),
            cpu_percent: (after.cpu_secs - before.cpu_secs) / sampled_secs * 100.0,
            rss_mb: after.rss_kb as f64 / 1024.0,
            hwm_mb: after.hwm_kb as f64 / 1024.0,
        });
    }
    if let (Some(before), Some(after)) = (self_before, self_after) {
        r.generator_cpu_percent = Some((after.cpu_secs - before.cpu_secs) / sampled_secs * 100.0);
    }
    Ok(r)
}

fn sample_server(sh: &Shared, pids: &[String]) -> Option<ProcSample> {
    if pids.is_empty() {
        return None;
    }
    match stats::sample_all(pids) {
        Ok(s) => Some(s),
        Err(e) => {
            sh.error("server_pid", || e, false);
            None
        }
    }
}

/// Ends the run: writers close their sockets, readers get a moment to see
/// the server's close, then stop regardless. Returns what the tasks measured.
async fn shut_down(
    sh: &Shared,
    readers: Vec<(usize, tokio::task::JoinHandle<ReaderStats>)>,
    writers: Vec<tokio::task::JoinHandle<WriterStats>>,
) -> (Vec<ReaderStats>, WriterStats) {
    sh.stop.cancel();
    sh.close.cancel();
    let grace = Instant::now() + Duration::from_secs(3);
    let mut stats = Vec::with_capacity(readers.len());
    for (i, mut handle) in readers {
        let result = match tokio::time::timeout_at(grace.into(), &mut handle).await {
            Ok(r) => r,
            Err(_) => {
                // Past the grace period: stop waiting for server closes.
                sh.hard_stop.cancel();
                match tokio::time::timeout(Duration::from_secs(2), &mut handle).await {
                    Ok(r) => r,
                    Err(_) => {
                        handle.abort();
                        continue;
                    }
                }
            }
        };
        match result {
            Ok(s) => stats.push(s),
            Err(e) => sh.error("reader_task", || format!("user {i}: {e}"), false),
        }
    }
    sh.hard_stop.cancel();
    let mut all = WriterStats::default();
    for w in writers {
        match tokio::time::timeout(Duration::from_secs(3), w).await {
            Ok(Ok(ws)) => {
                all.lag_us.extend_from_slice(&ws.lag_us);
                all.backlog_waits += ws.backlog_waits;
            }
            Ok(Err(e)) => sh.error("writer_task", || e.to_string(), false),
            Err(_) => {}
        }
    }
    (stats, all)
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

#[derive(Default)]
struct ServerFigures {
    pids: Vec<String>,
    cpu_percent: f64,
    rss_mb: f64,
    hwm_mb: f64,
}

/// How far the server's history (its own worker) trailed the log when
/// the load stopped, and how long it took to catch up: a send rate that
/// history cannot keep up with is not one a server can sustain.
struct HistoryFigures {
    /// Messages sent (appended to the log) but not yet stored.
    behind_at_end: u64,
    /// Seconds until every one was stored; `None` past [`HISTORY_PATIENCE`].
    caught_up_s: Option<f64>,
}

/// How long the report waits for history to catch up.
const HISTORY_PATIENCE: Duration = Duration::from_secs(60);

/// The server's `charcha_messages_stored_total`, read from `/metrics` with
/// CHARCHA_METRICS_TOKEN from the environment (as `./dev bench` sets it).
async fn stored_total(base: &Base) -> Option<u64> {
    let token = std::env::var("CHARCHA_METRICS_TOKEN").ok().filter(|t| !t.is_empty());
    http::metric_counter(base, token.as_deref(), "charcha_messages_stored_total").await
}

/// Waits until the server's history holds the `acked` messages of this run
/// on top of the `stored_before` it held before the load. `None` when the
/// counter cannot be read, or did not move at all: the server stores
/// nothing itself (scaled instances leave history to a separate worker).
async fn history_catch_up(base: &Base, stored_before: u64, acked: u64) -> Option<HistoryFigures> {
    let started = Instant::now();
    let want = stored_before + acked;
    let at_end = stored_total(base).await?;
    if at_end == stored_before && acked > 0 {
        return None;
    }
    let mut caught_up_s = (at_end >= want).then_some(0.0);
    while caught_up_s.is_none() && started.elapsed() < HISTORY_PATIENCE {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if stored_total(base).await.is_some_and(|stored| stored >= want) {
            caught_up_s = Some(started.elapsed().as_secs_f64());
        }
    }
    Some(HistoryFigures { behind_at_end: want.saturating_sub(at_end), caught_up_s })
}

struct Report {
    label: String,
    target: Target,
    urls: Vec<String>,
    users: usize,
    mode: Mode,
    in_flight: usize,
    rate: Option<f64>,
    duration: f64,
    warmup: f64,
    drain_limit: f64,
    connect_secs: f64,
    drain_secs: f64,
    auth: Option<AuthCounts>,
    sent: u64,
    acked: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    unacked: u64,
    errored_messages: u64,
    errors: u64,
    network_errors: u64,
    errors_by_code: BTreeMap<String, u64>,
    error_samples: Vec<String>,
    order_samples: Vec<String>,
    echoes: u64,
    dup_acks: u64,
    ack_reordered: u64,
    backlog_waits: u64,
    max_backlog: usize,
    sent_in_window: u64,
    acked_in_window: u64,
    delivered_in_window: u64,
    ack_latency: Latency,
    delivery_latency: Latency,
    schedule_lag: Option<Latency>,
    server: Option<ServerFigures>,
    generator_cpu_percent: Option<f64>,
    history: Option<HistoryFigures>,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            label: String::new(),
            target: Target::Charcha,
            urls: Vec::new(),
            users: 0,
            mode: Mode::Closed,
            in_flight: 0,
            rate: None,
            duration: 0.0,
            warmup: 0.0,
            drain_limit: 0.0,
            connect_secs: 0.0,
            drain_secs: 0.0,
            auth: None,
            sent: 0,
            acked: 0,
            delivered: 0,
            lost: 0,
            duplicated: 0,
            reordered: 0,
            unacked: 0,
            errored_messages: 0,
            errors: 0,
            network_errors: 0,
            errors_by_code: BTreeMap::new(),
            error_samples: Vec::new(),
            order_samples: Vec::new(),
            echoes: 0,
            dup_acks: 0,
            ack_reordered: 0,
            backlog_waits: 0,
            max_backlog: 0,
            sent_in_window: 0,
            acked_in_window: 0,
            delivered_in_window: 0,
            ack_latency: Latency::default(),
            delivery_latency: Latency::default(),
            schedule_lag: None,
            server: None,
            generator_cpu_percent: None,
            history: None,
        }
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

impl Report {
    fn counts_ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.errors == 0
            && self.unacked == 0
            && self.delivered == self.acked
            && self.sent > 0
            // Every acked message reached history too, when the server's
            // counter could be read.
            && self.history.as_ref().is_none_or(|h| h.caught_up_s.is_some())
    }

    fn per_s(&self, count: u64) -> f64 {
        count as f64 / self.duration
    }

    fn target_name(&self) -> &'static str {
        match self.target {
            Target::Charcha => "charcha",
            Target::Relay => "relay",
        }
    }

    fn latency_json(l: &Latency) -> serde_json::Value {
        json!({
            "samples": l.samples,
            "p50_ms": round(l.p50_ms, 3),
            "p90_ms": round(l.p90_ms, 3),
            "p99_ms": round(l.p99_ms, 3),
            "p999_ms": round(l.p999_ms, 3),
            "max_ms": round(l.max_ms, 3),
            "mean_ms": round(l.mean_ms, 3),
        })
    }

    fn to_json(&self) -> serde_json::Value {
        let (mode, in_flight) = match self.mode {
            Mode::Closed => ("closed", Some(self.in_flight)),
            Mode::Open { .. } => ("open", None),
        };
        json!({
            "label": self.label,
            "target": self.target_name(),
            "urls": self.urls,
            "instances": self.urls.len(),
            "users": self.users,
            "mode": mode,
            "in_flight": in_flight,
            "rate": self.rate,
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "drain_limit_s": self.drain_limit,
            "connect_s": round(self.connect_secs, 3),
            "drain_s": round(self.drain_secs, 3),
            "auth": self.auth.map(|a| json!({
                "cached": a.cached, "signed_up": a.signed_up, "logged_in": a.logged_in, "refreshed": a.refreshed,
            })),
            "sent": self.sent,
            "acked": self.acked,
            "delivered": self.delivered,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "unacked": self.unacked,
            "errored_messages": self.errored_messages,
            "errors": self.errors,
            "network_errors": self.network_errors,
            "errors_by_code": self.errors_by_code,
            "error_samples": self.error_samples,
            "order_samples": self.order_samples,
            "echoes": self.echoes,
            "duplicate_acks": self.dup_acks,
            "acks_out_of_order": self.ack_reordered,
            "max_backlog": if matches!(self.mode, Mode::Closed) { Some(self.max_backlog) } else { None },
            "backlog_waits": self.backlog_waits,
            "window": { "sent": self.sent_in_window, "acked": self.acked_in_window, "delivered": self.delivered_in_window },
            "sent_per_s": round(self.per_s(self.sent_in_window), 1),
            "acked_per_s": round(self.per_s(self.acked_in_window), 1),
            "delivered_per_s": round(self.per_s(self.delivered_in_window), 1),
            "ack_latency": Self::latency_json(&self.ack_latency),
            "delivery_latency": Self::latency_json(&self.delivery_latency),
            "schedule_lag": self.schedule_lag.as_ref().map(Self::latency_json),
            "server": self.server.as_ref().map(|s| json!({
                "pids": s.pids,
                "cpu_percent": round(s.cpu_percent, 1),
                "rss_mb": round(s.rss_mb, 1),
                "hwm_mb": round(s.hwm_mb, 1),
            })),
            "generator_cpu_percent": self.generator_cpu_percent.map(|c| round(c, 1)),
            "history": self.history.as_ref().map(|h| json!({
                "behind_at_end": h.behind_at_end,
                "caught_up_s": h.caught_up_s.map(|s| round(s, 2)),
            })),
            "ok": self.counts_ok() && self.network_errors == 0,
        })
    }

    fn latency_line(l: &Latency) -> String {
        format!(
            "p50 {:.2} ms  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (n={})",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.samples
        )
    }

    fn to_text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "== charcha-bench: {} ==", self.label);
        let _ = writeln!(
            t,
            "target       {} at {} ({} instance{})",
            self.target_name(),
            self.urls.join(", "),
            self.urls.len(),
            if self.urls.len() == 1 { "" } else { "s" }
        );
        let load = match self.mode {
            Mode::Closed => format!(
                "closed loop, {} in flight per user (at most {} undelivered)",
                self.in_flight,
                if self.max_backlog == 0 { "∞".to_string() } else { self.max_backlog.to_string() }
            ),
            Mode::Open { .. } => format!("open loop at {} msg/s in total", self.rate.unwrap_or_default()),
        };
        let _ = writeln!(t, "load         {} users ({} pairs, both directions), {load}", self.users, self.users / 2);
        let _ = writeln!(
            t,
            "phases       connect {:.2} s, warm-up {} s, measured {} s, drain {:.2} s (limit {} s)",
            self.connect_secs, self.warmup, self.duration, self.drain_secs, self.drain_limit
        );
        if let Some(a) = self.auth {
            let _ = writeln!(
                t,
                "accounts     {} cached token(s), {} signed up, {} logged in, {} refreshed after 401",
                a.cached, a.signed_up, a.logged_in, a.refreshed
            );
        }
        let _ = writeln!(
            t,
            "throughput   delivered {:.1} msg/s   acked {:.1} msg/s   sent {:.1} msg/s",
            self.per_s(self.delivered_in_window),
            self.per_s(self.acked_in_window),
            self.per_s(self.sent_in_window)
        );
        let _ = writeln!(t, "send→ack     {}", Self::latency_line(&self.ack_latency));
        let _ = writeln!(t, "send→recv    {}", Self::latency_line(&self.delivery_latency));
        if let Some(lag) = &self.schedule_lag {
            let _ = writeln!(t, "send lag     {}  (sends behind the open-loop schedule)", Self::latency_line(lag));
        }
        let _ = writeln!(
            t,
            "counts       sent {}  acked {}  delivered {}  lost {}  duplicated {}  reordered {}  unacked {}  errors {}",
            self.sent,
            self.acked,
            self.delivered,
            self.lost,
            self.duplicated,
            self.reordered,
            self.unacked,
            self.errors
        );
        if self.backlog_waits > 0 {
            let _ = writeln!(
                t,
                "backlog      sends waited {} time(s) for deliveries (more than {} undelivered)",
                self.backlog_waits, self.max_backlog
            );
        }
        if self.echoes > 0 || self.dup_acks > 0 || self.ack_reordered > 0 {
            let _ = writeln!(
                t,
                "             echoes to the sender {}  duplicate acks {}  acks out of order {}",
                self.echoes, self.dup_acks, self.ack_reordered
            );
        }
        if !self.errors_by_code.is_empty() {
            let codes: Vec<String> = self.errors_by_code.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(t, "errors       {}", codes.join(", "));
            for s in &self.error_samples {
                let _ = writeln!(t, "             e.g. {s}");
            }
        }
        for s in &self.order_samples {
            let _ = writeln!(t, "order        {s}");
        }
        if let Some(s) = &self.server {
            let _ = writeln!(
                t,
                "server       CPU {:.1} %  RSS {:.1} MB  peak RSS {:.1} MB  (pid {})",
                s.cpu_percent,
                s.rss_mb,
                s.hwm_mb,
                s.pids.join(",")
            );
        }
        if let Some(c) = self.generator_cpu_percent {
            let _ = writeln!(t, "generator    CPU {c:.1} %");
        }
        if let Some(h) = &self.history {
            let caught_up = match h.caught_up_s {
                Some(s) => format!("all stored {s:.2} s later"),
                None => format!("not all stored {} s later", HISTORY_PATIENCE.as_secs()),
            };
            let _ = writeln!(
                t,
                "history      {} sent messages not yet stored when the load ended; {caught_up}",
                h.behind_at_end
            );
        }
        let _ =
            writeln!(t, "result       {}", if self.counts_ok() && self.network_errors == 0 { "ok" } else { "NOT OK" });
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_only_is_an_option_of_its_own() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse_opts(args(&["--accounts-only", "--users", "1000", "--tokens", "t.json"])).unwrap().unwrap();
        assert!(o.accounts_only);
        assert_eq!(o.users, 1000);
        assert_eq!(o.tokens.as_deref(), Some(std::path::Path::new("t.json")));
        let o = parse_opts(args(&["--users", "4"])).unwrap().unwrap();
        assert!(!o.accounts_only);
        assert!(parse_opts(args(&["--accounts-only", "--target", "relay"])).is_err(), "the relay has no accounts");
    }

    #[test]
    fn frames_carry_sender_and_seq() {
        for (sender, seq) in [(0, 0), (7, 12), (999, 1_000_000), (12345, 99)] {
            let frame = send_frame(sender, seq, "RUNID", "\"peer\"", 0x0193_a5b6_c7d8);
            let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
            let text = v["text"].as_str().unwrap();
            assert!((40..=80).contains(&text.len()), "{text:?}");
            assert_eq!(parse_text(text), Some((sender, seq)));
            assert_eq!(v["client_msg_id"], format!("0193a5b6c7d8-{sender}-{seq}-RUNID"));
            let event: charcha::protocol::ClientEvent = serde_json::from_str(&frame).unwrap();
            assert!(matches!(event, charcha::protocol::ClientEvent::Send { .. }));
        }
    }

    #[test]
    fn parses_frames_borrowed() {
        let f: InFrame =
            serde_json::from_str(r#"{"type":"error","code":"invalid","message":"no","client_msg_id":"1-2-x"}"#)
                .unwrap();
        assert!(matches!(f.message, Some(MessageField::Other)));
        let f: InFrame = serde_json::from_str(
            r#"{"type":"message","message":{"_id":"X","conversation_id":"c","sender_id":"a","recipient_id":"b","text":"s1 n2 pad","image":null,"created_at":"t","client_msg_id":"1-2-x"}}"#,
        )
        .unwrap();
        assert!(matches!(
            f.message,
            Some(MessageField::Chat(InMessage { sender_id: "a", client_msg_id: Some("1-2-x"), .. }))
        ));
    }
}
