//! `charcha-bench table FILE.jsonl`: the comparison table of one
//! scripts/bench.sh run. Every line is one `run --json` report whose label
//! is `<column>/<load>`: column relay, embedded, scaled1 or scaled3; load
//! a–e (see scripts/bench.sh).

use std::{collections::BTreeMap, fmt::Write as _, process::ExitCode};

use serde_json::Value;

/// The original (Node) figures from the issue: (a), (b), (c) delivered
/// msg/s and (d) p50 ms of the idle pair. None for (e).
const ORIGINAL: [Option<f64>; 5] = [Some(1620.0), Some(3540.0), Some(2650.0), Some(54.0), None];

const COLUMNS: [(&str, &str); 4] = [
    ("relay", "relay"),
    ("embedded", "Charcha embedded"),
    ("scaled1", "scaled 1 inst."),
    ("scaled3", "scaled 3 inst."),
];

/// Load, row title, figure (JSON pointer), unit, true when higher is better.
const ROWS: [(&str, &str, &str, &str); 5] = [
    ("a", "(a) 200 users, W=1", "/delivered_per_s", "msg/s"),
    ("b", "(b) 200 users, W=8", "/delivered_per_s", "msg/s"),
    ("c", "(c) 1000 users, W=1", "/delivered_per_s", "msg/s"),
    ("d", "(d) idle pair, p50 send→recv", "/delivery_latency/p50_ms", "ms"),
    ("e", "(e) rate R, p99 send→recv", "/delivery_latency/p99_ms", "ms"),
];

pub fn main(args: Vec<String>) -> ExitCode {
    let Some(path) = args.first() else {
        eprintln!("usage: charcha-bench table FILE.jsonl");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("charcha-bench table: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut runs: BTreeMap<(String, String), Value> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            eprintln!(
                "charcha-bench table: skipping a line that is not JSON: {}",
                line.chars().take(80).collect::<String>()
            );
            continue;
        };
        let label = v.get("label").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some((col, load)) = label.split_once('/') {
            runs.insert((col.to_string(), load.to_string()), v);
        }
    }
    print!("{}", render(&runs));
    ExitCode::SUCCESS
}

fn figure(runs: &BTreeMap<(String, String), Value>, col: &str, load: &str, pointer: &str) -> Result<Option<f64>, ()> {
    match runs.get(&(col.to_string(), load.to_string())) {
        None => Ok(None),
        Some(v) if v.get("error").is_some() => Err(()),
        Some(v) => Ok(v.pointer(pointer).and_then(Value::as_f64)),
    }
}

fn fmt_value(v: Result<Option<f64>, ()>, unit: &str) -> String {
    match v {
        Err(()) => "FAILED".into(),
        Ok(None) => "–".into(),
        Ok(Some(x)) if unit == "msg/s" => format!("{x:.0}"),
        Ok(Some(x)) => format!("{x:.2}"),
    }
}

fn render(runs: &BTreeMap<(String, String), Value>) -> String {
    let mut t = String::new();
    let rate = runs.iter().find(|((_, load), _)| load == "e").and_then(|(_, v)| v.get("rate").and_then(Value::as_f64));
    let title = |row: &str| match rate {
        Some(r) if row.starts_with("(e)") => row.replace("rate R", &format!("{r:.0} msg/s")),
        _ => row.to_string(),
    };
    let w0 = 38;
    let _ = write!(t, "{:<w0$}{:>12}{:>12}", "load", COLUMNS[0].1, "original");
    for (_, name) in &COLUMNS[1..] {
        let _ = write!(t, "{name:>18}");
    }
    t.push('\n');
    for (i, (load, row, pointer, unit)) in ROWS.iter().enumerate() {
        let _ = write!(t, "{:<w0$}", format!("{} {unit}", title(row)));
        let _ = write!(t, "{:>12}", fmt_value(figure(runs, "relay", load, pointer), unit));
        let _ = write!(t, "{:>12}", fmt_value(Ok(ORIGINAL[i]), unit));
        for (col, _) in &COLUMNS[1..] {
            let _ = write!(t, "{:>18}", fmt_value(figure(runs, col, load, pointer), unit));
        }
        t.push('\n');
    }
    for (versus, name) in [("relay", "Charcha / relay"), ("original", "Charcha / original")] {
        let _ = writeln!(t, "\n{name} (msg/s rows: higher is better; ms rows: lower is better)");
        for (i, (load, row, pointer, _)) in ROWS.iter().enumerate() {
            let base =
                if versus == "relay" { figure(runs, "relay", load, pointer).ok().flatten() } else { ORIGINAL[i] };
            let _ = write!(t, "{:<w0$}{:>12}{:>12}", title(row), "", "");
            for (col, _) in &COLUMNS[1..] {
                let cell = match (figure(runs, col, load, pointer), base) {
                    (Ok(Some(x)), Some(b)) if b > 0.0 && x / b < 0.1 => format!("{:.4}×", x / b),
                    (Ok(Some(x)), Some(b)) if b > 0.0 => format!("{:.2}×", x / b),
                    (Err(()), _) => "FAILED".into(),
                    _ => "–".into(),
                };
                let _ = write!(t, "{cell:>18}");
            }
            t.push('\n');
        }
    }
    let _ =
        writeln!(t, "\nAll runs (latencies in ms; CPU % of one core over the measured window, server and generator;");
    let _ = writeln!(t, "unstored: sent but not yet in history when the load ended, all stored that many s later)");
    let _ = writeln!(
        t,
        "{:<14}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>8}{:>8}{:>8}{:>7}{:>6}{:>6}{:>7}{:>10}{:>9}  result",
        "run",
        "msg/s",
        "ack p50",
        "ack p99",
        "recv p50",
        "recv p99",
        "p99.9",
        "CPU %",
        "RSS MB",
        "gen CPU",
        "lost",
        "dup",
        "reord",
        "errors",
        "unstored",
        "stored s"
    );
    // Column order (relay first), then load; unknown columns last.
    let rank = |col: &str| COLUMNS.iter().position(|(c, _)| *c == col).unwrap_or(COLUMNS.len());
    let mut ordered: Vec<_> = runs.iter().collect();
    ordered.sort_by_key(|((col, load), _)| (rank(col), col.clone(), load.clone()));
    for ((col, load), v) in ordered {
        let label = format!("{col}/{load}");
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            let _ = writeln!(t, "{label:<14}FAILED: {e}");
            continue;
        }
        let f = |p: &str| v.pointer(p).and_then(Value::as_f64);
        let num = |p: &str, d: usize| f(p).map(|x| format!("{x:.d$}")).unwrap_or_else(|| "–".into());
        let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false);
        let _ = writeln!(
            t,
            "{label:<14}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>8}{:>8}{:>8}{:>7}{:>6}{:>6}{:>7}{:>10}{:>9}  {}",
            num("/delivered_per_s", 0),
            num("/ack_latency/p50_ms", 2),
            num("/ack_latency/p99_ms", 2),
            num("/delivery_latency/p50_ms", 2),
            num("/delivery_latency/p99_ms", 2),
            num("/delivery_latency/p999_ms", 2),
            num("/server/cpu_percent", 0),
            num("/server/rss_mb", 0),
            num("/generator_cpu_percent", 0),
            num("/lost", 0),
            num("/duplicated", 0),
            num("/reordered", 0),
            num("/errors", 0),
            num("/history/behind_at_end", 0),
            num("/history/caught_up_s", 2),
            if ok { "ok" } else { "NOT OK" }
        );
    }
    t
}
