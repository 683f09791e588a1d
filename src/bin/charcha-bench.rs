//! `charcha-bench`: the load generator and the bare relay used to benchmark
//! Charcha's message hot path (scripts/bench.sh, `./dev bench`).
//!
//! ```text
//! charcha-bench relay [--addr 127.0.0.1:3100]
//!     A bare WebSocket relay on the same axum/tokio stack as Charcha, speaking
//!     the same frames (hello, send -> ack + message, ping -> pong), with no
//!     auth, storage or bus: the ceiling Charcha is measured against.
//! charcha-bench run [options]
//!     Connects N users (1:1 pairs), sends messages both ways (closed loop with
//!     W in flight per user, or open loop at a fixed aggregate rate), and
//!     reports throughput, latency percentiles and the counts that must hold
//!     (no loss, no duplicates, no reordering). `--help` lists the options.
//! charcha-bench conns [options] / charcha-bench signup [options]
//!     Connection benchmarks (many users connecting and idling; sign-up and
//!     log-in bursts): see conns.rs.
//! charcha-bench group [options]
//!     One message at a time (or a window of them) to a group of 100
//!     members, all connected: delivered frames/s and send→receive p50/p99
//!     of the fan-out (group.rs).
//! charcha-bench worker [options]
//!     The history worker alone: its storing rate into the store, and the
//!     lag of history behind the log at a steady rate, and the store's own
//!     ceiling for the same messages without log or worker (worker.rs).
//! charcha-bench table [--figure COLUMN/LOAD POINTER] FILE.jsonl
//!     The comparison table of a scripts/bench.sh run, from its JSON lines
//!     (or one figure of it: a load's median).
//! ```
//!
//! Built with `--features bench` (feature `ssr` plus tokio-tungstenite).

// The report's `json!` literal is deep.
#![recursion_limit = "256"]

// The crate root is src/bin/charcha-bench.rs; its modules live beside it.
#[path = "charcha-bench/conns.rs"]
mod conns;
#[path = "charcha-bench/group.rs"]
mod group;
#[path = "charcha-bench/http.rs"]
mod http;
#[path = "charcha-bench/load.rs"]
mod load;
#[path = "charcha-bench/relay.rs"]
mod relay;
#[path = "charcha-bench/stats.rs"]
mod stats;
#[path = "charcha-bench/table.rs"]
mod table;
#[path = "charcha-bench/worker.rs"]
mod worker;

use std::process::ExitCode;

const USAGE: &str = "\
charcha-bench — load generator and bare relay for Charcha's message hot path

USAGE:
    charcha-bench relay [--addr 127.0.0.1:3100]
    charcha-bench run [OPTIONS]          (charcha-bench run --help for the options)
    charcha-bench conns [OPTIONS]        N users connect at once and idle: time to hello, presence
                                         frames per connect, server RSS per connection
    charcha-bench signup [OPTIONS]       sign-ups then log-ins at a concurrency: statuses, server RSS
    charcha-bench group [OPTIONS]        messages to a group of 100 connected members: delivered frames/s,
                                         send→recv p50/p99 of the fan-out
    charcha-bench worker [OPTIONS]       the history worker alone (KAFKA_BROKERS, MONGODB_URI): stored msg/s,
                                         history lag p50/p99 at a steady rate, the store's own ceiling
    charcha-bench table FILE.jsonl       comparison table of a scripts/bench.sh run
                                         (--figure COLUMN/LOAD POINTER before FILE: one figure, a median)
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match cmd.as_str() {
        "relay" => relay::main(rest),
        "run" => load::main(rest),
        "conns" => conns::main_conns(rest),
        "signup" => conns::main_signup(rest),
        "group" => group::main(rest),
        "table" => table::main(rest),
        "worker" => worker::main(rest),
        "" | "help" | "-h" | "--help" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("charcha-bench: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// A tiny `--name value` / `--flag` parser: no new dependency for six
/// options.
pub struct Args {
    items: Vec<String>,
    pos: usize,
}

impl Args {
    pub fn new(items: Vec<String>) -> Self {
        Self { items, pos: 0 }
    }

    /// The next option name (`--x`), with an inline `--x=v` value split off
    /// and pushed back so `value()` finds it.
    pub fn next_flag(&mut self) -> Option<String> {
        let item = self.items.get(self.pos)?.clone();
        self.pos += 1;
        if let Some((name, value)) = item.split_once('=')
            && name.starts_with("--")
        {
            self.items.insert(self.pos, value.to_string());
            return Some(name.to_string());
        }
        Some(item)
    }

    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        let v = self.items.get(self.pos).cloned().ok_or_else(|| format!("{flag} needs a value"))?;
        self.pos += 1;
        Ok(v)
    }

    pub fn parse<T: std::str::FromStr>(&mut self, flag: &str) -> Result<T, String> {
        let v = self.value(flag)?;
        v.parse().map_err(|_| format!("{flag}: `{v}` is not valid"))
    }
}
